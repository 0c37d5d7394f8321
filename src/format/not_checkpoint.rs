//! Files that are not checkpoints, named for what they are: the answer a
//! person needs when a download went wrong or the wrong file was picked
//! (a Git LFS pointer, an HTML error page saved as weights, a pre-GGUF
//! llama.cpp file, a Keras, NumPy or ONNX file, a plain pickle). Each is an
//! `unsupported_format` error with a stable `cause` id, the evidence from
//! the file's first bytes and the fix. Consulted only when no checkpoint
//! reader recognises the bytes.

use super::pytorch::{self, audit, pickle};
use crate::checkpoint::PickleAudit;
use crate::error::{err, Error, ErrorKind};
use crate::source::{read_vec, ByteSource};

/// What a plain pickle stream holds, read symbolically (nothing imported or
/// called): the audit of every pickle in it, one after another to the end
/// of the file, or why it could not be read to its end.
pub(super) enum StreamAudit {
    Read {
        audit: PickleAudit,
        pickles: usize,
    },
    /// Cut short: the globals are not all known; `reached` audits those
    /// named before the end (CPython has imported them by then).
    Truncated {
        error: Error,
        reached: PickleAudit,
    },
    /// Not a well-formed pickle (bad opcodes, stack or memo tricks): CPython
    /// may still run part of it, so it gets no benefit of the doubt.
    Malformed {
        error: Error,
        reached: PickleAudit,
    },
}

impl StreamAudit {
    /// Whether the bytes read as a pickle at all: read to the end, or
    /// naming a global before they broke off.
    pub(super) fn is_pickle(&self) -> bool {
        match self {
            StreamAudit::Read { .. } => true,
            StreamAudit::Truncated { reached, .. } | StreamAudit::Malformed { reached, .. } => {
                !reached.globals.is_empty()
            }
        }
    }
}

fn audit_stream(source: &dyn ByteSource, start: u64) -> StreamAudit {
    let mut budget = pickle::MAX_WORK;
    audit_stream_until(source, start, source.len(), &mut budget)
}

/// The pickles between `start` and `end` (one entry of a zip), drawing on
/// `budget`, the work left for every pickle of the file (an archive's
/// entries share one `MAX_WORK`, both readings included).
pub(super) fn audit_stream_until(
    source: &dyn ByteSource,
    start: u64,
    stream_end: u64,
    budget: &mut u64,
) -> StreamAudit {
    let (pickles, broken) = pickle::read_stream(source, start, stream_end, budget, false);
    // Globals an appended pickle named before it broke off: a second
    // `pickle.load` imports them before it chokes (bytes after a complete
    // pickle that are not one are otherwise what it would choke on, not
    // code it would run).
    let mut trailing: Vec<(String, String)> = Vec::new();
    match broken {
        Some(broken) if !pickles.is_empty() => trailing = broken.reached,
        Some(broken) => {
            let reached = pytorch::audit_reached(&broken.reached);
            return if broken.error.kind == ErrorKind::Truncated {
                StreamAudit::Truncated {
                    error: broken.error,
                    reached,
                }
            } else {
                StreamAudit::Malformed {
                    error: broken.error,
                    reached,
                }
            };
        }
        None => {}
    }
    let all: Vec<&pickle::Pickle> = pickles.iter().collect();
    let mut whole = audit(&all);
    if !trailing.is_empty() {
        pytorch::merge_audit(&mut whole, pytorch::audit_reached(&trailing));
    }
    // joblib.load skips an array's inline bytes; pickle.load reads them as
    // opcodes, so bytes dressed as an array can hold a payload only
    // pickle.load runs. Read that way too, and keep what it reaches.
    let joblib = whole
        .globals
        .iter()
        .any(|g| g.module.starts_with("joblib.numpy_pickle"));
    if joblib {
        let plain = plain_reading(source, start, stream_end, budget);
        let new: Vec<(String, String)> = plain
            .into_iter()
            .filter(|(m, n)| !whole.globals.iter().any(|g| &g.module == m && &g.name == n))
            .collect();
        if !new.is_empty() {
            pytorch::merge_audit(&mut whole, pytorch::audit_reached(&new));
        }
    }
    StreamAudit::Read {
        audit: whole,
        pickles: pickles.len(),
    }
}

/// The globals CPython's plain `pickle.load` reaches in the stream, pickle
/// after pickle, up to where it would fail.
fn plain_reading(
    source: &dyn ByteSource,
    start: u64,
    stream_end: u64,
    budget: &mut u64,
) -> Vec<(String, String)> {
    let (pickles, broken) = pickle::read_stream(source, start, stream_end, budget, true);
    let mut reached: Vec<(String, String)> = pickles
        .iter()
        .flat_map(|p| p.globals.iter().cloned())
        .collect();
    reached.extend(broken.map(|b| b.reached).unwrap_or_default());
    reached
}

/// The not-a-checkpoint error of a file that is (or holds) a plain pickle,
/// with the pickle's own verdict: `unsafe_pickle` when it references a
/// dangerous global or does not parse as a pickle, else what it needs.
pub(super) fn pickle_file_error(
    source: &dyn ByteSource,
    stream: StreamAudit,
    cause: &'static str,
    what: String,
    fix: &str,
) -> Error {
    let name = source.name();
    let loader = "`pickle.load`, `joblib.load` or `numpy.load(allow_pickle=True)`";
    match stream {
        StreamAudit::Read { audit, pickles } if audit.is_unsafe() => err(
            ErrorKind::UnsafePickle,
            format!(
                "{what}, and unsafe: {} {}, which {loader} would import and call{}",
                if pickles > 1 { format!("its {pickles} pickles reference") } else { "its pickle references".to_string() },
                audit.unsafe_globals(),
                if audit.calls.is_empty() { String::new() } else { format!(": {}", audit.calls.join(", ")) }
            ),
        )
        .in_file(name)
        .because(
            "unsafe-pickle",
            "do not load it; get the data from its source in a format without code (safetensors, or .npy without objects)",
        ),
        StreamAudit::Read { audit, pickles } => {
            let globals: Vec<String> = audit
                .globals
                .iter()
                .map(|g| format!("{}.{}", g.module, g.name))
                .collect();
            let named = if globals.is_empty() {
                "no globals".to_string()
            } else {
                format!("{}, each known to be harmless", globals.join(", "))
            };
            err(
                ErrorKind::UnsupportedFormat,
                format!(
                    "{what}; {} reference{} {named}",
                    if pickles > 1 { format!("its {pickles} pickles") } else { "its pickle".to_string() },
                    if pickles > 1 { "" } else { "s" },
                ),
            )
            .in_file(name)
            .because(cause, fix)
        }
        StreamAudit::Truncated { error, reached } if reached.is_unsafe() => err(
            ErrorKind::UnsafePickle,
            format!(
                "{what}, and unsafe: its pickle is cut short ({}), but before that it references {}, which {loader} imports as it reads (and calls at a REDUCE before the end)",
                error.message,
                reached.unsafe_globals()
            ),
        )
        .in_file(name)
        .because(
            "unsafe-pickle",
            "do not load it; get the data from its source in a format without code (safetensors, or .npy without objects)",
        ),
        StreamAudit::Truncated { error, .. } => err(
            ErrorKind::UnsupportedFormat,
            format!("{what}; its pickle is cut short ({}), so not every global it needs could be read", error.message),
        )
        .in_file(name)
        .because(cause, fix),
        StreamAudit::Malformed { error, reached } => err(
            ErrorKind::UnsafePickle,
            format!(
                "{what}, and unsafe: its pickle is not well formed ({}{}){}; a malformed pickle is how exploits hide what {loader} would run",
                error.message,
                error.offset.map(|o| format!(" at byte {o}")).unwrap_or_default(),
                if reached.is_unsafe() { format!(", and before that it references {}", reached.unsafe_globals()) } else { String::new() }
            ),
        )
        .in_file(name)
        .because(
            "unsafe-pickle",
            "do not load it; get the data from its source in a format without code (safetensors, or .npy without objects)",
        ),
    }
}

/// Where a `.npy` file's data starts (after its header), from its first
/// bytes (None when they are not a .npy header numpy writes).
pub(super) fn npy_data_start(prefix: &[u8]) -> Option<u64> {
    crate::npy::header_span(prefix)
        .ok()
        .map(|(start, len)| (start + len) as u64)
}

/// What the file is, when its first bytes say; `prefix` is its first 512
/// bytes.
pub fn identify(source: &dyn ByteSource, prefix: &[u8]) -> Option<Error> {
    let name = source.name();
    let found = |cause: &'static str, what: String, fix: &str| {
        Some(
            err(ErrorKind::UnsupportedFormat, what)
                .in_file(name)
                .because(cause, fix),
        )
    };
    let text = String::from_utf8_lossy(prefix);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if let Some(pointer) = trimmed.strip_prefix("version https://git-lfs.github.com/spec/") {
        let field = |key: &str| {
            pointer
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::trim)
        };
        let size = field("size ")
            .and_then(|size| size.parse::<u64>().ok())
            .map_or("an unknown number of".to_string(), |size| size.to_string());
        let oid = field("oid ").unwrap_or("?");
        return found(
            "git-lfs-pointer",
            format!(
                "a \"Git LFS pointer\" ({} bytes of text), not the file: the real file has {size} bytes ({oid})",
                source.len()
            ),
            "`git lfs install && git lfs pull` in the repository (or download the file itself, not its pointer)",
        );
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || lower.starts_with("<head")
    {
        let title = html_title(source);
        return found(
            "html-page",
            format!(
                "an HTML page saved as weights{}: the download returned a web page (a login, quota or error page), not the file",
                title.map(|t| format!(" (title: {t:?})")).unwrap_or_default()
            ),
            "download the file again (from the file's own link, logged in if the hub needs it)",
        );
    }
    if let Some(format) = legacy_llama_cpp(prefix) {
        return found(
            "ggml-legacy",
            format!("a pre-GGUF llama.cpp file ({format}): current llama.cpp and ckptcheck read GGUF only"),
            "convert it to GGUF with llama.cpp's `convert_llama_ggml_to_gguf.py` (or download the GGUF release)",
        );
    }
    if prefix.starts_with(b"\x89HDF\r\n\x1a\n") {
        return found(
            "keras-h5",
            "an HDF5 file (a Keras/TensorFlow `.h5` model or weights), not a PyTorch checkpoint".to_string(),
            "load it with Keras (`keras.models.load_model(path)` or `model.load_weights(path)`); for PyTorch, convert the weights first",
        );
    }
    if prefix.starts_with(b"\x93NUMPY") {
        let object = text.contains("'descr': '|O'");
        if let Some(start) = npy_data_start(prefix).filter(|_| object) {
            return Some(pickle_file_error(
                source,
                audit_stream(source, start),
                "numpy-npy",
                "a NumPy array file (.npy, holding pickled Python objects), not a checkpoint"
                    .to_string(),
                "`numpy.load(path, allow_pickle=True)` runs a pickle: only on a file you trust",
            ));
        }
        return found(
            "numpy-npy",
            format!(
                "a NumPy array file (.npy{}), not a checkpoint",
                if object {
                    ", holding pickled Python objects"
                } else {
                    ""
                }
            ),
            if object {
                "`numpy.load(path, allow_pickle=True)` runs a pickle: only on a file you trust"
            } else {
                "`numpy.load(path)`"
            },
        );
    }
    if prefix.starts_with(b"7z\xbc\xaf\x27\x1c") {
        return Some(super::archive_pickles::seven_zip(source, prefix));
    }
    if is_onnx(prefix) {
        return found(
            "onnx",
            "an ONNX model (a protobuf ModelProto), not a PyTorch checkpoint".to_string(),
            "run it with onnxruntime (`onnxruntime.InferenceSession(path)`); torch cannot load ONNX weights",
        );
    }
    if prefix.first() == Some(&0x80) {
        return Some(pickle_file_error(
            source,
            audit_stream(source, 0),
            "plain-pickle",
            "a plain pickle (`pickle.dump` or `joblib.dump`), not a `torch.save` file: torch.load reads zip, legacy and tar files".to_string(),
            "load it with `pickle.load` or `joblib.load`, only if you trust it (a pickle can run code); save weights with `torch.save(model.state_dict(), path)` or safetensors",
        ));
    }
    // Protocols 0 and 1 have no PROTO header: a file is one when its first
    // pickle reads to its STOP (the stream is read once, for both).
    if prefix
        .first()
        .is_some_and(|b| b"(}])cNIKJLFSVXUTGMdlitop".contains(b))
    {
        let stream = audit_stream(source, 0);
        if stream.is_pickle() {
            return Some(pickle_file_error(
                source,
                stream,
                "plain-pickle",
                "a plain pickle (protocol 0 or 1), not a `torch.save` file: torch.load reads zip, legacy and tar files".to_string(),
                "load it with `pickle.load`, only if you trust it (a pickle can run code); save weights with `torch.save(model.state_dict(), path)` or safetensors",
            ));
        }
    }
    None
}

/// A zip without `data.pkl`: what it is by its entry names.
pub fn identify_zip(name: &str, entries: &[&str]) -> Option<Error> {
    let found = |cause: &'static str, what: &str, fix: &str| {
        Some(
            err(ErrorKind::UnsupportedFormat, what)
                .in_file(name)
                .because(cause, fix),
        )
    };
    if !entries.is_empty() && entries.iter().all(|entry| entry.ends_with(".npy")) {
        return found(
            "numpy-npz",
            "a NumPy `.npz` archive of arrays, not a torch.save checkpoint",
            "`numpy.load(path)` gives the arrays by name",
        );
    }
    let has = |wanted: &str| entries.iter().any(|entry| entry.ends_with(wanted));
    if has("model.weights.h5") || (has("config.json") && has("metadata.json")) {
        return found(
            "keras-v3",
            "a Keras 3 `.keras` archive (config.json, model.weights.h5), not a PyTorch checkpoint",
            "load it with `keras.saving.load_model(path)`",
        );
    }
    None
}

/// GGML's magics before GGUF (llama.cpp `llama_file_version`): the u32 at
/// the start, little-endian, spells `ggml`, `ggmf` or `ggjt`.
fn legacy_llama_cpp(prefix: &[u8]) -> Option<String> {
    let magic = prefix.get(0..4)?;
    let version = prefix
        .get(4..8)
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    match magic {
        b"lmgg" => Some("GGML, unversioned".to_string()),
        b"fmgg" => Some(format!("GGMF v{}", version.unwrap_or(0))),
        b"tjgg" => Some(format!("GGJT v{}", version.unwrap_or(0))),
        _ => None,
    }
}

/// ONNX ModelProto: field 1 (`ir_version`, a small varint) first, then one
/// of the fields a real model has next (producer name or version, domain,
/// model version, doc string, graph, opset import).
fn is_onnx(prefix: &[u8]) -> bool {
    matches!(
        prefix,
        [
            0x08,
            3..=12,
            0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42,
            ..
        ]
    )
}

/// The `<title>` of an HTML page, from its first 16 KiB.
fn html_title(source: &dyn ByteSource) -> Option<String> {
    let head = read_vec(source, 0, source.len().min(16 * 1024)).ok()?;
    let text = String::from_utf8_lossy(&head);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = lower[start..].find('>')? + start + 1;
    let close = lower[open_end..].find("</title")? + open_end;
    let title: String = text[open_end..close]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!title.is_empty()).then(|| title.chars().take(120).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    fn cause(bytes: &[u8]) -> Option<&'static str> {
        let source = SliceSource::new("x.bin", bytes);
        let prefix = &bytes[..bytes.len().min(512)];
        identify(&source, prefix).and_then(|e| e.cause())
    }

    #[test]
    fn each_kind_of_file_is_named() {
        let cases: Vec<(&[u8], Option<&str>)> = vec![
            (
                b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n",
                Some("git-lfs-pointer"),
            ),
            (
                b"\xef\xbb\xbf<!DOCTYPE html><html><head><title>Quota exceeded</title>",
                Some("html-page"),
            ),
            (b"<html>", Some("html-page")),
            (b"tjgg\x03\x00\x00\x00", Some("ggml-legacy")),
            (b"lmgg", Some("ggml-legacy")),
            (b"\x89HDF\r\n\x1a\n\x00", Some("keras-h5")),
            (
                b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                Some("numpy-npy"),
            ),
            (b"\x08\x07\x12\x07pytorch", Some("onnx")),
            (b"\x80\x04\x95\x10\x00", Some("plain-pickle")),
            (b"plain text", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                cause(bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    fn identified(name: &str, bytes: &[u8]) -> Error {
        let source = SliceSource::new(name, bytes);
        identify(&source, &bytes[..bytes.len().min(512)]).expect("identified")
    }

    /// A .npy file (format 1) of `descr` whose data is `data`.
    fn npy(descr: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn a_plain_pickle_gets_a_verdict_on_what_it_would_run() {
        // pickle.dumps of an object reducing to os.system("id"), protocol 4.
        let evil: &[u8] = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.";
        // pickle.dumps({"a": 1}, protocol=2): no globals at all.
        let benign: &[u8] = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.";
        let mut appended = benign.to_vec();
        appended.extend_from_slice(evil);
        // (file, bytes, kind, cause, words the message must hold)
        let cases: Vec<(&str, Vec<u8>, ErrorKind, &str, &str)> = vec![
            (
                "evil.pkl",
                evil.to_vec(),
                ErrorKind::UnsafePickle,
                "unsafe-pickle",
                "references posix.system (dangerous)",
            ),
            (
                "dict.pkl",
                benign.to_vec(),
                ErrorKind::UnsupportedFormat,
                "plain-pickle",
                "references no globals",
            ),
            // A second pickle after the first: a loader that reads on runs it.
            (
                "two.pkl",
                appended,
                ErrorKind::UnsafePickle,
                "unsafe-pickle",
                "its 2 pickles reference posix.system",
            ),
            // Not a pickle past its header: fails closed.
            (
                "bad.pkl",
                b"\x80\x02\xff.".to_vec(),
                ErrorKind::UnsafePickle,
                "unsafe-pickle",
                "not well formed",
            ),
            // Cut short: not every global known, but nothing malformed seen.
            (
                "cut.pkl",
                evil[..20].to_vec(),
                ErrorKind::UnsupportedFormat,
                "plain-pickle",
                "cut short",
            ),
            // numpy object arrays hold a pickle after the header.
            (
                "objects.npy",
                npy("|O", evil),
                ErrorKind::UnsafePickle,
                "unsafe-pickle",
                "references posix.system",
            ),
            (
                "dicts.npy",
                npy("|O", benign),
                ErrorKind::UnsupportedFormat,
                "numpy-npy",
                "holding pickled Python objects",
            ),
        ];
        for (name, bytes, kind, cause, words) in cases {
            let error = identified(name, &bytes);
            assert_eq!(error.kind, kind, "{name}: {error}");
            assert_eq!(error.cause(), Some(cause), "{name}: {error}");
            assert!(error.message.contains(words), "{name}: {error}");
            assert_eq!(error.file.as_deref(), Some(name));
        }
    }

    #[test]
    fn the_pointer_tells_the_real_size_and_the_page_its_title() {
        let pointer =
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 3826543210\n";
        let source = SliceSource::new("model.bin", pointer);
        let error = identify(&source, pointer).expect("pointer");
        assert!(error.message.contains("3826543210 bytes"), "{error}");
        assert!(error.to_string().contains("git lfs pull"), "{error}");
        let page = b"<!doctype html><title>\n  Google Drive - Quota exceeded </title>";
        let source = SliceSource::new("model.bin", page);
        let error = identify(&source, page).expect("page");
        assert!(
            error.message.contains("\"Google Drive - Quota exceeded\""),
            "{error}"
        );
    }
}
