//! The weight scan against numpy, torch and gguf-py: every tensor of the
//! format fixtures and of tests/fixtures/scan (quantized GGUF blocks, NaN,
//! Inf, all zeros, big-endian storages, shared storages and views) has the
//! NaN/Inf/zero counts and min/max/mean/std that
//! tests/fixtures/scan/make_scan_fixtures.py computed with those libraries.
//! Then the CLI's exit codes and JSON, and memory that stays flat while a
//! file many times the chunk size is scanned.

use ckptcheck::scan::{scan_sources, ScanReport, CHUNK_BYTES};
use ckptcheck::source::{ByteSource, FileSource};
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scan(paths: &[PathBuf]) -> ScanReport {
    let sources: Vec<FileSource> = paths
        .iter()
        .map(|p| FileSource::open(p).expect("open"))
        .collect();
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    scan_sources(&refs, &mut |_, _| true).unwrap_or_else(|e| panic!("{paths:?}: {e}"))
}

fn close(mine: Option<f64>, theirs: &Value) -> bool {
    match (mine, theirs.as_f64()) {
        (None, None) => theirs.is_null(),
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
        _ => false,
    }
}

#[test]
fn statistics_match_numpy_torch_and_gguf() {
    let text = std::fs::read_to_string(fixtures().join("scan/expected_stats.json")).expect("read");
    let expected: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("json");
    let mut failures = Vec::new();
    let mut compared = 0;
    for (file, tensors) in &expected {
        let report = scan(&[fixtures().join(file)]);
        let tensors = tensors.as_object().expect("tensors");
        assert_eq!(report.tensors.len(), tensors.len(), "{file}: tensor count");
        for mine in &report.tensors {
            let name = mine.display_name();
            let Some(theirs) = tensors.get(&name) else {
                failures.push(format!("{file}: {name} not expected"));
                continue;
            };
            if theirs["skipped"] == true {
                if mine.scanned {
                    failures.push(format!("{file}: {name} should be skipped"));
                }
                continue;
            }
            compared += 1;
            let counts = [
                ("values", mine.values),
                ("nan", mine.nan),
                ("inf", mine.inf),
                ("zeros", mine.zeros),
            ];
            for (field, value) in counts {
                if theirs[field].as_u64() != Some(value) {
                    failures.push(format!(
                        "{file}: {name} {field} {value} vs {}",
                        theirs[field]
                    ));
                }
            }
            for (field, value) in [
                ("min", mine.min),
                ("max", mine.max),
                ("mean", mine.mean),
                ("std", mine.std),
            ] {
                if !close(value, &theirs[field]) {
                    failures.push(format!(
                        "{file}: {name} {field} {value:?} vs {}",
                        theirs[field]
                    ));
                }
            }
            if !mine.scanned {
                failures.push(format!("{file}: {name} not scanned: {:?}", mine.note));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared > 100, "compared {compared} tensors");
}

#[test]
fn problems_are_summarised_and_shared_storages_said_so() {
    let report = scan(&[fixtures().join("scan/nan_inf.safetensors")]);
    assert!(!report.ok);
    let summary = &report.summary;
    for name in ["f32", "f16", "bf16", "f64", "f8_e5m2"] {
        assert!(summary.with_nan.iter().any(|n| n == name), "{name}");
    }
    assert!(summary.with_inf.iter().any(|n| n == "f32"));
    assert_eq!(summary.all_zero, vec!["negative_zeros", "zeros"]);
    // Integer zeros are listed as all-zero but are not a problem.
    let ints = report
        .tensors
        .iter()
        .find(|t| t.name == "int_zeros")
        .expect("int_zeros");
    assert!(ints.all_zero && !summary.problems.iter().any(|p| p.contains("int_zeros")));

    let quants = scan(&[fixtures().join("scan/quants.gguf")]);
    assert_eq!(
        quants.summary.skipped.len(),
        1,
        "{:?}",
        quants.summary.skipped
    );
    assert!(quants.summary.skipped[0].starts_with("blk.iq2_xxs: not dequantized"));

    let dtypes = scan(&[fixtures().join("formats/dtypes.pt")]);
    let shared: Vec<_> = dtypes
        .tensors
        .iter()
        .filter(|t| {
            t.note
                .as_deref()
                .is_some_and(|n| n.contains("read once") || n.contains("strided view"))
        })
        .collect();
    assert!(shared.len() >= 4, "views and tied weights: {shared:?}");
}

#[test]
fn memory_stays_flat_on_a_file_many_chunks_long() {
    // 12 chunks of F32 (48 MiB) in one tensor, plus a BF16 one.
    let dir = std::env::temp_dir().join(format!("ckptcheck-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("big.safetensors");
    let n = 12 * CHUNK_BYTES / 4;
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}},"h":{{"dtype":"BF16","shape":[8],"data_offsets":[{},{}]}}}}"#,
        4 * n,
        4 * n,
        4 * n + 16
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for i in 0..n {
        bytes.extend_from_slice(&((i % 1000) as f32 - 499.5).to_le_bytes());
    }
    bytes.extend_from_slice(&[0x80, 0x3f].repeat(8));
    std::fs::write(&path, &bytes).expect("write");
    drop(bytes);
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let report = scan(std::slice::from_ref(&path));
    let peak = (PEAK.with(Cell::get) - base) as usize;
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(report.bytes_scanned, 4 * n as u64 + 16);
    // Sorted by name: "h" then "w".
    assert_eq!(report.tensors[0].mean, Some(1.0));
    assert_eq!(report.tensors[1].min, Some(-499.5));
    assert_eq!(report.tensors[1].max, Some(499.5));
    assert!(
        peak < CHUNK_BYTES + 2 * 1024 * 1024,
        "peak allocation {peak} bytes while scanning {} bytes",
        report.bytes_scanned
    );
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(args)
        .output()
        .expect("run ckptcheck");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn cli_exit_codes_and_json() {
    let clean = fixtures().join("formats/small.safetensors");
    let (code, stdout, stderr) = run(&["scan", clean.to_str().expect("path"), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["ok"], true);
    for field in [
        "files",
        "bytes_total",
        "bytes_scanned",
        "tensors",
        "summary",
    ] {
        assert!(report.get(field).is_some(), "{field}");
    }
    // Not a terminal: no progress bar on stderr.
    assert!(stderr.is_empty(), "{stderr}");

    let broken = fixtures().join("scan/nan_inf.safetensors");
    let quants = fixtures().join("scan/quants.gguf");
    let (code, stdout, _) = run(&[
        "scan",
        broken.to_str().expect("path"),
        quants.to_str().expect("path"),
    ]);
    assert_eq!(code, 1);
    assert!(stdout.contains("f32: 1 NaN of 8 values"), "{stdout}");
    assert!(stdout.contains("blk.q6_k"), "{stdout}");

    let hostile = fixtures().join("hostile/st_overlap.safetensors");
    let (code, _, stderr) = run(&["scan", hostile.to_str().expect("path")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("st_overlap.safetensors"), "{stderr}");
}
