//! Every format fixture against what the real libraries report for it
//! (tests/fixtures/formats/*.expected.json, written by
//! tests/fixtures/formats/make_format_fixtures.py with torch, safetensors,
//! gguf and zipfile): names, key paths, dtypes, shapes, strides and absolute
//! byte offsets must agree exactly, and the pickle audit must name the same
//! dangerous globals.

use ckptcheck::checkpoint::Checkpoint;
use ckptcheck::format;
use ckptcheck::source::{ByteSource, FileSource};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture(&format!("{name}.expected.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("expected json"))
        .expect("valid json")
}

fn read(names: &[&str]) -> Checkpoint {
    let sources: Vec<FileSource> = names
        .iter()
        .map(|n| FileSource::open(&fixture(n)).expect("open"))
        .collect();
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    format::read_files(&refs).unwrap_or_else(|e| panic!("{names:?}: {e}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

fn u64s(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("u64"))
        .collect()
}

/// Torch files: every tensor's path, dtype, shape, stride, offset, storage.
fn check_torch(file: &str, format_name: &str) {
    let want = expected(file);
    let got = read(&[file]);
    assert_eq!(got.format, format_name, "{file}");
    let tensors = want["tensors"].as_array().expect("tensors");
    assert_eq!(got.tensors.len(), tensors.len(), "{file}: tensor count");
    for (mine, theirs) in got.tensors.iter().zip(tensors) {
        let path = strings(&theirs["path"]);
        assert_eq!(mine.path, path, "{file}: path");
        assert_eq!(mine.name, *path.last().expect("name"), "{file}");
        assert_eq!(mine.dtype, theirs["dtype"], "{file}: {path:?} dtype");
        assert_eq!(mine.shape, u64s(&theirs["shape"]), "{file}: {path:?} shape");
        assert_eq!(
            mine.stride.clone().expect("stride"),
            u64s(&theirs["stride"]),
            "{file}: {path:?} stride"
        );
        assert_eq!(
            mine.offset,
            theirs["offset"].as_u64(),
            "{file}: {path:?} offset"
        );
        assert_eq!(
            mine.storage.as_deref(),
            theirs["storage_key"].as_str(),
            "{file}: {path:?} storage"
        );
    }
    let unsafe_globals = strings(&want["unsafe_globals"]);
    let audit = got.pickle_audit.as_ref().expect("audit");
    assert_eq!(audit.dangerous, unsafe_globals, "{file}: dangerous globals");
    let weights_only_ok = want["weights_only_load"]["ok"].as_bool().expect("ok");
    if format_name != "pytorch-legacy" {
        assert_eq!(
            audit.weights_only_loads, weights_only_ok,
            "{file}: weights_only verdict"
        );
    }
    // Plain values: everything torch lists is found with the same value.
    for value in want["values"].as_array().expect("values") {
        let path = strings(&value["path"]);
        let mine = got
            .values
            .iter()
            .find(|v| v.path == path)
            .unwrap_or_else(|| panic!("{file}: value {path:?} missing"));
        if value["value"].is_number() {
            assert_eq!(
                mine.value.as_f64(),
                value["value"].as_f64(),
                "{file}: {path:?}"
            );
        } else {
            assert_eq!(mine.value, value["value"], "{file}: {path:?}");
        }
    }
    // Reading never touches tensor data beyond a fraction of the file.
    assert!(
        got.bytes_read <= got.file_bytes + 2048,
        "{file}: read {} of {}",
        got.bytes_read,
        got.file_bytes
    );
}

#[test]
fn torch_zip_files_match_torch() {
    // repacked.pt has no 64-byte alignment: its offsets must come from the
    // local headers, not from torch's rule.
    for file in [
        "dtypes.pt",
        "repacked.pt",
        "nested.pt",
        "bigendian.pt",
        "evil_os_system.pt",
        "evil_eval.pt",
        "evil_subprocess.pt",
    ] {
        check_torch(file, "pytorch-zip");
    }
}

#[test]
fn legacy_and_tar_files_match_torch() {
    for file in ["legacy.pt", "legacy_nested.pt", "legacy_newdtypes.pt"] {
        check_torch(file, "pytorch-legacy");
    }
    check_torch("tar.pt", "pytorch-tar");
}

#[test]
fn big_endian_byteorder_is_reported() {
    let got = read(&["bigendian.pt"]);
    assert_eq!(got.metadata["byteorder"], "big");
    assert!(got.notes.iter().any(|n| n.contains("big-endian")));
}

#[test]
fn state_dict_metadata_is_kept_for_batchnorm_semantics() {
    let got = read(&["dtypes.pt"]);
    assert!(
        !got.state_dict_metadata.is_empty(),
        "OrderedDict _metadata must be recorded"
    );
}

#[test]
fn safetensors_matches_the_safetensors_library() {
    let want = expected("small.safetensors");
    let got = read(&["small.safetensors"]);
    assert_eq!(got.format, "safetensors");
    let tensors = want["tensors"].as_array().expect("tensors");
    assert_eq!(got.tensors.len(), tensors.len());
    for (mine, theirs) in got.tensors.iter().zip(tensors) {
        assert_eq!(mine.name, theirs["name"]);
        assert_eq!(mine.dtype, theirs["dtype"], "{}", mine.name);
        assert_eq!(mine.shape, u64s(&theirs["shape"]), "{}", mine.name);
        assert_eq!(mine.offset, theirs["offset"].as_u64(), "{}", mine.name);
        assert_eq!(mine.nbytes, theirs["nbytes"].as_u64(), "{}", mine.name);
    }
    for (key, value) in want["metadata"].as_object().expect("metadata") {
        assert_eq!(got.metadata[key], *value);
    }
    // The header, plus the 512 bytes format detection looks at.
    assert!(got.bytes_read <= want["data_start"].as_u64().expect("data_start") + 512);
}

fn check_sharded(dir: &str, index: &str, format_name: &str) {
    let want = expected(&format!("{dir}/{index}"));
    let files: Vec<String> = want["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| format!("{dir}/{}", f.as_str().expect("file")))
        .collect();
    let mut names: Vec<&str> = files.iter().map(String::as_str).collect();
    let index_path = format!("{dir}/{index}");
    names.push(&index_path);
    let got = read(&names);
    assert_eq!(got.format, format_name);
    let tensors = want["tensors"].as_array().expect("tensors");
    assert_eq!(got.tensors.len(), tensors.len());
    for theirs in tensors {
        let mine = got
            .tensors
            .iter()
            .find(|t| t.name == theirs["name"])
            .unwrap_or_else(|| panic!("{} missing", theirs["name"]));
        assert_eq!(mine.file.as_deref(), theirs["file"].as_str());
        assert_eq!(mine.shape, u64s(&theirs["shape"]));
        assert_eq!(mine.dtype, theirs["dtype"]);
        assert_eq!(mine.offset, theirs["offset"].as_u64(), "{}", mine.name);
    }
    assert!(got.notes.is_empty(), "{:?}", got.notes);
    // Without one shard: a clear error naming it.
    let error = {
        let sources: Vec<FileSource> = names[1..]
            .iter()
            .map(|n| FileSource::open(&fixture(n)).expect("open"))
            .collect();
        let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
        format::read_files(&refs).expect_err("a shard is missing")
    };
    assert_eq!(error.kind, ckptcheck::ErrorKind::BadShards);
    assert!(
        error
            .message
            .contains(files[0].rsplit('/').next().expect("name")),
        "{error}"
    );
}

#[test]
fn sharded_checkpoints_match_their_index() {
    check_sharded(
        "sharded",
        "model.safetensors.index.json",
        "safetensors-sharded",
    );
    check_sharded(
        "sharded_bin",
        "pytorch_model.bin.index.json",
        "pytorch-sharded",
    );
}

#[test]
fn gguf_matches_the_gguf_library() {
    let want = expected("small.gguf");
    let got = read(&["small.gguf"]);
    assert_eq!(got.format, "gguf");
    assert_eq!(got.metadata["gguf.version"], want["version"]);
    assert_eq!(got.metadata["gguf.alignment"], want["alignment"]);
    let tensors = want["tensors"].as_array().expect("tensors");
    assert_eq!(got.tensors.len(), tensors.len());
    let outermost_first = want["shape_order"]
        .as_str()
        .expect("shape_order")
        .contains("outermost");
    for (mine, theirs) in got.tensors.iter().zip(tensors) {
        assert_eq!(mine.name, theirs["name"]);
        assert_eq!(mine.dtype, theirs["type"], "{}", mine.name);
        let mut shape = u64s(&theirs["shape"]);
        if !outermost_first {
            shape.reverse();
        }
        assert_eq!(mine.shape, shape, "{}", mine.name);
        assert_eq!(mine.offset, theirs["offset"].as_u64(), "{}", mine.name);
        assert_eq!(mine.nbytes, theirs["n_bytes"].as_u64(), "{}", mine.name);
    }
    for kv in want["kv"].as_array().expect("kv") {
        let key = kv["key"].as_str().expect("key");
        let mine = got
            .metadata
            .get(key)
            .unwrap_or_else(|| panic!("kv {key} missing"));
        match (&kv["value"], mine) {
            (Value::Number(a), Value::Number(b)) => {
                let (a, b) = (a.as_f64().expect("f64"), b.as_f64().expect("f64"));
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "{key}: {a} vs {b}"
                );
            }
            (Value::Array(a), Value::Array(b)) => assert_eq!(a.len(), b.len(), "{key}"),
            (a, b) => assert_eq!(a, b, "{key}"),
        }
    }
}

/// tests/fixtures/pickle_opcodes: torch.save files, some saved with pickle
/// protocol 4 or 5 and some with one opcode added to data.pkl, each with
/// what `torch.load(weights_only=True)` (torch 2.15) did with it
/// (make_opcode_fixtures.py). The audit's `weights_only_loads` must be
/// torch's verdict, and a refusal must name the opcode torch names.
#[test]
fn the_weights_only_verdict_follows_torch_on_opcodes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle_opcodes");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let files = expected["files"].as_object().expect("files");
    assert!(files.len() >= 14);
    for (name, verdict) in files {
        let verdict = verdict.as_str().expect("verdict");
        let source = FileSource::open(&dir.join(name)).expect("open");
        let checkpoint = format::read_checkpoint(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The weights are read whatever the verdict.
        let mut names: Vec<&str> = checkpoint.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["b", "w"], "{name}");
        let audit = checkpoint.pickle_audit.as_ref().expect("audit");
        assert!(audit.dangerous.is_empty(), "{name}");
        let torch_loads = verdict == "loads";
        assert_eq!(
            audit.weights_only_loads, torch_loads,
            "{name}: torch says {verdict}"
        );
        if let Some(operand) =
            verdict.strip_prefix("refused: UnpicklingError: Unsupported operand ")
        {
            let operand: u8 = operand.parse().expect("opcode number");
            let named = format!(
                "{} (0x{operand:02x})",
                format::pytorch::opcode_name(operand)
            );
            assert!(
                audit.unsupported_opcodes.contains(&named),
                "{name}: torch refuses {named}, the audit lists {:?}",
                audit.unsupported_opcodes
            );
            assert!(
                checkpoint
                    .notes
                    .iter()
                    .any(|note| note.contains(&named) && note.contains("Unsupported operand")),
                "{name}: {:?}",
                checkpoint.notes
            );
        } else {
            assert!(
                audit.unsupported_opcodes.is_empty(),
                "{name}: {:?}",
                audit.unsupported_opcodes
            );
        }
    }
}
