//! Never read the wrong bytes, never call a bad file clean. The fixtures in
//! tests/fixtures/integrity were written by torch through
//! make_integrity_fixtures.py, which also recorded, from torch and numpy,
//! where every tensor's bytes really are and what its elements hold
//! (integrity.expected.json; mean and std exact, from fractions):
//!
//! - a valid torch zip whose unsampled storage `data/7` (and, in a second
//!   file, the sampled `data/5`) carries 64 more bytes of local-header
//!   padding: `torch.load` reads the same tensors as from the original;
//! - views sharing storages (columns, a transpose, `expand`, slices with an
//!   offset, tied weights);
//! - extreme f64/f32/f16/bf16 values (near the largest finite, subnormal).
//!
//! Offsets are either read from the file or marked `offset_predicted`; the
//! scan and the forward pass's weight reader use the real bytes; each
//! tensor's statistics are of its own elements; the summary counts a shared
//! NaN once. Then the CLI on inputs that are not regular files.

use ckptcheck::checkpoint::Checkpoint;
use ckptcheck::format;
use ckptcheck::scan::{scan_checkpoints, ScanReport};
use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::weights::{CheckpointWeights, WeightSource};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/integrity")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("integrity.expected.json")).expect("read");
    serde_json::from_str(&text).expect("json")
}

fn read(name: &str) -> (FileSource, Checkpoint) {
    let source = FileSource::open(&fixture(name)).expect("open");
    let checkpoint = format::read_checkpoint(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
    (source, checkpoint)
}

fn scan(source: &FileSource, checkpoint: &Checkpoint) -> ScanReport {
    scan_checkpoints(
        &[(checkpoint, vec![source as &dyn ByteSource])],
        &mut |_, _| true,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", checkpoint.file))
}

/// Within a few ulps: mean and std are summed in another order than the
/// exact oracle's.
fn close(mine: Option<f64>, theirs: &Value) -> bool {
    match (mine, theirs.as_f64()) {
        (None, None) => theirs.is_null(),
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-12 * b.abs(),
        _ => false,
    }
}

/// Every figure of every tensor of `file` against integrity.expected.json.
fn compare_scan(file: &str, report: &ScanReport, expected: &Value) -> Vec<String> {
    let tensors = expected["tensors"].as_object().expect("tensors");
    let mut failures = Vec::new();
    assert_eq!(report.tensors.len(), tensors.len(), "{file}: tensor count");
    for mine in &report.tensors {
        let theirs = &tensors[&mine.name];
        if !mine.scanned {
            failures.push(format!(
                "{file}: {} not scanned: {:?}",
                mine.name, mine.note
            ));
            continue;
        }
        for (field, value) in [
            ("values", mine.values),
            ("nan", mine.nan),
            ("inf", mine.inf),
            ("zeros", mine.zeros),
        ] {
            if theirs[field].as_u64() != Some(value) {
                failures.push(format!(
                    "{file}: {} {field} {value} vs {}",
                    mine.name, theirs[field]
                ));
            }
        }
        for (field, value) in [("min", mine.min), ("max", mine.max)] {
            if value != theirs[field].as_f64() {
                failures.push(format!(
                    "{file}: {} {field} {value:?} vs {}",
                    mine.name, theirs[field]
                ));
            }
        }
        for (field, value) in [("mean", mine.mean), ("std", mine.std)] {
            if !close(value, &theirs[field]) {
                failures.push(format!(
                    "{file}: {} {field} {value:?} vs {}",
                    mine.name, theirs[field]
                ));
            }
        }
    }
    let summary = &expected["summary"];
    for (field, value) in [
        ("nan_values", report.summary.nan_values),
        ("inf_values", report.summary.inf_values),
    ] {
        if summary[field].as_u64() != Some(value) {
            failures.push(format!(
                "{file}: summary {field} {value} vs {}",
                summary[field]
            ));
        }
    }
    failures
}

#[test]
fn every_offset_is_read_or_marked_predicted_and_the_scan_reads_the_real_bytes() {
    let expected = expected();
    let mut failures = Vec::new();
    for (file, figures) in expected["files"].as_object().expect("files") {
        let (source, mut checkpoint) = read(file);
        let tensors = figures["tensors"].as_object().expect("tensors");
        for tensor in &checkpoint.tensors {
            let real = tensors[&tensor.name]["offset"].as_u64();
            if tensor.predicted_offset.is_none() && tensor.offset != real {
                failures.push(format!(
                    "{file}: {} offset {:?} reported as read, but the bytes are at {real:?}",
                    tensor.name, tensor.offset
                ));
            }
        }
        failures.extend(compare_scan(file, &scan(&source, &checkpoint), figures));
        // Confirmed, every offset is the real one and none is a prediction.
        format::confirm_offsets(&mut checkpoint, &[&source]).expect("confirm");
        let exact = format::pytorch::read_zip_with(&source, true);
        for checkpoint in std::iter::once(&checkpoint).chain(exact.as_ref().ok()) {
            for tensor in &checkpoint.tensors {
                let real = tensors[&tensor.name]["offset"].as_u64();
                if tensor.offset != real || tensor.predicted_offset.is_some() {
                    failures.push(format!(
                        "{file}: {} confirmed offset {:?} vs {real:?}",
                        tensor.name, tensor.offset
                    ));
                }
            }
            let json = serde_json::to_string(checkpoint).expect("json");
            assert!(!json.contains("offset_predicted"), "{file}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_unsampled_repadded_storage_is_marked_predicted_and_scanned_where_torch_reads_it() {
    let (source, checkpoint) = read("repadded_unsampled.pt");
    let t07 = checkpoint
        .tensors
        .iter()
        .find(|t| t.name == "t07")
        .expect("t07");
    // The prediction (torch's 64-byte rule) is 64 bytes short of the real
    // data, and says it is a prediction.
    assert_eq!(t07.offset, Some(4736));
    assert!(t07.predicted_offset.is_some());
    let json = serde_json::to_value(&checkpoint).expect("json");
    let t07_json = json["tensors"]
        .as_array()
        .and_then(|tensors| tensors.iter().find(|t| t["name"] == "t07"))
        .expect("t07 in JSON");
    assert_eq!(t07_json["offset_predicted"], true);
    assert!(checkpoint
        .notes
        .iter()
        .any(|n| n.starts_with("storage offsets predicted")));
    let report = scan(&source, &checkpoint);
    let t07 = report
        .tensors
        .iter()
        .find(|t| t.name == "t07")
        .expect("t07");
    assert_eq!(t07.nan, 8);
    // Padding ('Z' bytes) read as f32 would be 1.5e16.
    assert!(t07.max.expect("max") < 10.0);
    assert!(!report.ok);

    // When a sampled header disagrees, every header is read.
    let (_, sampled) = read("repadded_sampled.pt");
    assert!(sampled.tensors.iter().all(|t| t.predicted_offset.is_none()));
}

#[test]
fn the_forward_pass_weight_reader_follows_the_real_local_header() {
    let clock = || 0.0;
    let (original_source, original) = read("original.pt");
    let reference =
        CheckpointWeights::new(&original, vec![&original_source], &clock).expect("weights");
    for file in ["repadded_unsampled.pt", "repadded_sampled.pt"] {
        let (source, checkpoint) = read(file);
        let weights = CheckpointWeights::new(&checkpoint, vec![&source], &clock).expect("weights");
        for index in 0..40 {
            let name = format!("t{index:02}");
            let bits = |w: &CheckpointWeights| -> Vec<u32> {
                w.load(&name, &[4, 4])
                    .unwrap_or_else(|e| panic!("{file}: {name}: {e}"))
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&weights), bits(&reference), "{file}: {name}");
        }
    }
}

#[test]
fn strided_views_report_their_own_elements_and_a_shared_nan_once() {
    let (source, checkpoint) = read("strided_views.pt");
    let report = scan(&source, &checkpoint);
    let by_name = |name: &str| report.tensors.iter().find(|t| t.name == name).expect(name);
    // The NaN sits in column 2, which no saved tensor holds.
    assert_eq!((by_name("col0").nan, by_name("col1").nan), (0, 0));
    assert!(
        by_name("zero_col").all_zero && report.summary.all_zero.contains(&"zero_col".to_string())
    );
    assert_eq!((by_name("tied_a").nan, by_name("tied_b").nan), (1, 1));
    assert_eq!(report.summary.nan_values, 3);
}

#[test]
fn the_cli_exits_1_on_the_repadded_file_and_exact_offsets_are_real() {
    let file = fixture("repadded_unsampled.pt");
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .arg("scan")
        .arg(&file)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("t07: 8 NaN of 16 values"), "{stdout}");
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(["inspect", "--json", "--exact-offsets"])
        .arg(&file)
        .output()
        .expect("run");
    let json: Value = serde_json::from_slice(&output.stdout).expect("json");
    let t07 = json["tensors"]
        .as_array()
        .and_then(|tensors| tensors.iter().find(|t| t["name"] == "t07"))
        .expect("t07");
    assert_eq!(t07["offset"], 4800);
    assert!(t07.get("offset_predicted").is_none());
}

/// Run the CLI with a deadline: a hang is a failure, not a stuck test.
fn run_with_deadline(command: &mut Command) -> (Option<i32>, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("output");
            return (
                status.code(),
                String::from_utf8_lossy(&output.stderr).to_string(),
            );
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("ckptcheck hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_fifos_and_pipes_get_clear_answers() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir().join(format!("ckptcheck-integrity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let odd_name = dir.join(std::ffi::OsStr::from_bytes(b"ckpt-\xff\xfe.pt"));
    std::fs::copy(fixture("original.pt"), &odd_name).expect("copy");
    let (code, stderr) = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .arg("inspect")
            .arg(&odd_name),
    );
    assert_eq!(code, Some(0), "{stderr}");

    let fifo = dir.join("pipe.pt");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let preset = ["--config", "ViT-B-16@RoBERTa-wwm-ext-base-chinese"];
    for (command, extra) in [("inspect", &[][..]), ("scan", &[]), ("check", &preset)] {
        let (code, stderr) = run_with_deadline(
            Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
                .arg(command)
                .arg(&fifo)
                .args(extra),
        );
        assert_eq!(code, Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("pipe.pt") && stderr.contains("not a regular file"),
            "{stderr}"
        );
    }
    // A pipe handed over as /dev/stdin.
    let (code, stderr) = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .args(["inspect", "/dev/stdin"])
            .stdin(Stdio::piped()),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
