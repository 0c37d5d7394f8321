//! The hostile corpus (tests/fixtures/hostile, written with the error each
//! file must produce by tests/fixtures/hostile/make_hostile.py): every file
//! fails with exactly its `ErrorKind`, the error names the file, and reading
//! it stays within a memory and time budget, whatever the file claims. Unsafe
//! pickles are read (never run) and their dangerous globals named. The
//! weight scan gives the same verdict on each.
//!
//! Memory is measured by a counting global allocator: the peak of bytes live
//! on the reading thread while one file is read.

use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::{arch, format, Error};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::peak_during;

/// What reading any hostile file may cost. Every file here is under 1 MB
/// and claims up to exabytes; the caps keep each read to a few MiB of
/// working memory (plus the pickle and GGUF work budgets, which only the
/// "bomb" files touch and which stop them early).
const MEMORY_LIMIT: usize = 64 * 1024 * 1024;
const TIME_LIMIT: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> serde_json::Map<String, Value> {
    let path = fixtures().join("hostile/expected.json");
    let text = std::fs::read_to_string(&path).expect("expected.json");
    match serde_json::from_str(&text).expect("valid json") {
        Value::Object(map) => map,
        _ => panic!("expected.json is not an object"),
    }
}

enum Outcome {
    Checkpoint(Box<ckptcheck::Checkpoint>),
    Config,
}

/// Read one corpus entry the way the CLI would.
fn read(name: &str, entry: &Value) -> Result<Outcome, Error> {
    let mut paths = vec![fixtures().join("hostile").join(name)];
    for other in entry["with"].as_array().into_iter().flatten() {
        paths.push(fixtures().join(other.as_str().expect("path")));
    }
    if entry["entry"] == "config" {
        let texts: Vec<(String, String)> = paths
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p).expect("read config");
                (
                    p.display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                )
            })
            .collect();
        return arch::model_from_config_json(&texts).map(|_| Outcome::Config);
    }
    let sources: Vec<FileSource> = paths
        .iter()
        .map(|p| FileSource::open(p).expect("open"))
        .collect();
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    format::read_files(&refs).map(|c| Outcome::Checkpoint(Box::new(c)))
}

fn scan(name: &str, entry: &Value) -> Result<ckptcheck::scan::ScanReport, Error> {
    let mut paths = vec![fixtures().join("hostile").join(name)];
    for other in entry["with"].as_array().into_iter().flatten() {
        paths.push(fixtures().join(other.as_str().expect("path")));
    }
    let sources: Vec<FileSource> = paths
        .iter()
        .map(|p| FileSource::open(p).expect("open"))
        .collect();
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    ckptcheck::scan::scan_sources(&refs, &mut |_, _| true)
}

fn kind_name(error: &Error) -> String {
    serde_json::to_value(error.kind)
        .expect("kind")
        .as_str()
        .expect("string")
        .to_string()
}

#[test]
fn every_hostile_file_fails_with_its_error_kind_within_bounds() {
    let expected = expected();
    assert!(expected.len() >= 100, "corpus has {} files", expected.len());
    let mut failures = Vec::new();
    for (name, entry) in &expected {
        if entry["auxiliary"] == true {
            continue;
        }
        let start = Instant::now();
        let (result, peak) = peak_during(|| read(name, entry));
        let elapsed = start.elapsed();
        if peak > MEMORY_LIMIT {
            failures.push(format!("{name}: peak allocation {peak} bytes"));
        }
        if elapsed > TIME_LIMIT {
            failures.push(format!("{name}: took {elapsed:?}"));
        }
        if entry["entry"] != "config" {
            // The weight scan reads through the same parsers: same verdict.
            let (scanned, peak) = peak_during(|| scan(name, entry));
            let expected = entry.get("kind").and_then(Value::as_str);
            match (&scanned, expected) {
                (Err(error), Some(kind)) if kind_name(error) == kind => {}
                (Ok(_), None) => {}
                _ => failures.push(format!(
                    "{name}: scan gives {:?}, expected {expected:?}",
                    scanned.as_ref().map(|r| r.ok).map_err(|e| e.to_string())
                )),
            }
            if peak > MEMORY_LIMIT {
                failures.push(format!("{name}: scan peak allocation {peak} bytes"));
            }
        }
        match (entry.get("kind").and_then(Value::as_str), result) {
            (Some(kind), Err(error)) => {
                if kind_name(&error) != kind {
                    failures.push(format!(
                        "{name}: expected {kind}, got {}: {error}",
                        kind_name(&error)
                    ));
                }
                let text = error.to_string();
                let named = error.file.as_deref().is_some_and(|f| f.contains(name));
                if !named || !text.contains(name) {
                    failures.push(format!("{name}: error does not name the file: {text}"));
                }
            }
            (Some(kind), Ok(_)) => failures.push(format!("{name}: expected {kind}, read fine")),
            (None, Err(error)) => failures.push(format!("{name}: expected success, got {error}")),
            (None, Ok(Outcome::Config)) => {}
            (None, Ok(Outcome::Checkpoint(checkpoint))) => {
                let want: Vec<String> = entry["dangerous"]
                    .as_array()
                    .expect("dangerous")
                    .iter()
                    .map(|v| v.as_str().expect("name").to_string())
                    .collect();
                let audit = checkpoint.pickle_audit.expect("pickle audit");
                if audit.dangerous != want {
                    failures.push(format!(
                        "{name}: dangerous {:?}, expected {want:?}",
                        audit.dangerous
                    ));
                }
                if !want.is_empty() && audit.weights_only_loads {
                    failures.push(format!("{name}: weights_only would not load it"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_is_what_its_script_wrote() {
    let dir = fixtures().join("hostile");
    let expected = expected();
    let mut total = 0;
    for file in std::fs::read_dir(&dir).expect("dir") {
        let file = file.expect("entry");
        let name = file.file_name().to_string_lossy().into_owned();
        total += file.metadata().expect("metadata").len();
        assert!(
            expected.contains_key(&name)
                || [
                    "expected.json",
                    "make_hostile.py",
                    "README.md",
                    "web_corpus.rs"
                ]
                .contains(&name.as_str()),
            "{name} is not in expected.json"
        );
    }
    assert!(total < 1_000_000, "corpus is {total} bytes");
}

/// ckptcheck restates the safetensors crate's header rules in u64 (so that
/// wasm32 agrees with 64-bit targets); on every safetensors file here the
/// crate's own `Metadata` must reach the same verdict on the header.
#[test]
fn safetensors_header_rules_agree_with_the_safetensors_crate() {
    let mut files = Vec::new();
    for dir in ["hostile", "formats", "formats/sharded", "scan"] {
        for file in std::fs::read_dir(fixtures().join(dir)).expect("dir") {
            let path = file.expect("entry").path();
            if path.extension().is_some_and(|e| e == "safetensors") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 25);
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        let Some(length) = bytes.get(..8) else {
            continue;
        };
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
        let Some(text) = bytes
            .get(8..8usize.saturating_add(length))
            .and_then(|h| std::str::from_utf8(h).ok())
        else {
            continue;
        };
        let theirs = serde_json::from_str::<safetensors::tensor::Metadata>(text);
        let source = FileSource::open(&path).expect("open");
        let ours = format::safetensors::read(&source);
        let header_error = ours
            .as_ref()
            .err()
            .filter(|e| e.message.starts_with("invalid safetensors header"));
        match (&theirs, header_error) {
            (Ok(_), None) => {}
            (Err(_), Some(_)) => {}
            // Duplicate names: serde merges them for the crate; ckptcheck
            // refuses them (after the same header rules pass).
            (Ok(_), Some(e)) => panic!("{}: crate accepts, ckptcheck: {e}", path.display()),
            (Err(e), None) => {
                let refused_anyway = ours
                    .as_ref()
                    .err()
                    .is_some_and(|o| o.message.contains("duplicate") || o.message.contains("JSON"));
                assert!(
                    refused_anyway,
                    "{}: crate refuses ({e}), ckptcheck: {:?}",
                    path.display(),
                    ours.as_ref().map(|c| c.tensors.len())
                );
            }
        }
    }
}
