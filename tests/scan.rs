//! The weight scan against numpy, torch and gguf-py: every tensor of the
//! format fixtures and of tests/fixtures/scan (quantized GGUF blocks, NaN,
//! Inf, all zeros, big-endian storages, shared storages and views) has the
//! NaN/Inf/zero counts and min/max/mean/std that
//! tests/fixtures/scan/make_scan_fixtures.py computed with those libraries.
//! Then the CLI's exit codes and JSON, and memory that stays flat while a
//! file many times the chunk size is scanned.

use ckptcheck::scan::{scan_sources, ScanReport, CHUNK_BYTES};
use ckptcheck::source::{ByteSource, FileSource, SliceSource};
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

// Allocations are counted on tracked threads only: the test's own thread
// and the workers of the rayon pool it scans in (the parallel scan reads on
// them), not the other tests running in this process.
thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn note(delta: isize) {
    if TRACKED.try_with(Cell::get).unwrap_or(false) {
        let now = LIVE.fetch_add(delta, Ordering::SeqCst) + delta;
        PEAK.fetch_max(now, Ordering::SeqCst);
    }
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

/// A rayon pool of `threads` workers whose allocations are counted.
fn tracked_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| TRACKED.with(|tracked| tracked.set(true)))
        .build()
        .expect("rayon pool")
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

/// A safetensors file of one F32 tensor `chunks` scan chunks long (values
/// cycling through -499.5..=499.5, a NaN and an Inf among them), one small
/// BF16 tensor of 1.0 and, between them (by name and by offset), `small`
/// tensors of every plain dtype in sizes around the chunk size, whose bytes
/// are pseudo-random (so NaN, Inf and extreme magnitudes among the floats).
fn many_chunk_file(name: &str, chunks: usize, small: usize) -> (PathBuf, usize) {
    let dir = std::env::temp_dir().join(format!("ckptcheck-scan-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("big.safetensors");
    let n = chunks * CHUNK_BYTES / 4;
    let mut entries = vec![format!(
        r#""h":{{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}}"#
    )];
    let mut data = [0x80, 0x3f].repeat(8);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let dtypes = [
        ("F32", 4),
        ("F16", 2),
        ("BF16", 2),
        ("F64", 8),
        ("I64", 8),
        ("U8", 1),
    ];
    let counts = [1, 7, 1000, 40_000, CHUNK_BYTES / 4, CHUNK_BYTES / 4 + 1];
    for i in 0..small {
        let (dtype, size) = dtypes[i % dtypes.len()];
        let count = counts[(i / dtypes.len() + i) % counts.len()];
        let begin = data.len();
        for _ in 0..count * size {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            data.push((state >> 56) as u8);
        }
        entries.push(format!(
            r#""s{i:03}":{{"dtype":"{dtype}","shape":[{count}],"data_offsets":[{begin},{}]}}"#,
            data.len()
        ));
    }
    let begin = data.len();
    entries.push(format!(
        r#""w":{{"dtype":"F32","shape":[{n}],"data_offsets":[{begin},{}]}}"#,
        begin + 4 * n
    ));
    let header = format!("{{{}}}", entries.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    for i in 0..n {
        let value = match i {
            _ if i == n / 3 => f32::NAN,
            _ if i == n / 2 => f32::INFINITY,
            _ => (i % 1000) as f32 - 499.5,
        };
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&path, &bytes).expect("write");
    (path, n)
}

#[test]
fn memory_stays_flat_on_a_file_many_chunks_long() {
    // 12 chunks of F32 (48 MiB) in one tensor, plus a BF16 one, scanned by
    // two workers, each reading its chunks in 1 MiB pieces into one buffer:
    // about 2 MiB whatever the file size, less than one 4 MiB chunk.
    let (path, n) = many_chunk_file("flat", 12, 0);
    let pool = tracked_pool(2);
    TRACKED.with(|tracked| tracked.set(true));
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let report = pool.install(|| scan(std::slice::from_ref(&path)));
    let peak = (PEAK.load(Ordering::SeqCst) - base) as usize;
    TRACKED.with(|tracked| tracked.set(false));
    std::fs::remove_dir_all(path.parent().expect("dir")).expect("cleanup");
    assert_eq!(report.bytes_scanned, 4 * n as u64 + 16);
    // Sorted by name: "h" then "w".
    assert_eq!(report.tensors[0].mean, Some(1.0));
    assert_eq!(report.tensors[1].min, Some(-499.5));
    assert_eq!(report.tensors[1].max, Some(499.5));
    assert_eq!((report.tensors[1].nan, report.tensors[1].inf), (1, 1));
    assert!(
        peak > 1024 * 1024 && peak < 3 * 1024 * 1024,
        "peak allocation {peak} bytes while scanning {} bytes on 2 workers",
        report.bytes_scanned
    );
}

#[test]
fn the_parallel_scan_is_the_sequential_scan_bit_for_bit() {
    // A native file is read by every thread of the pool, chunk by chunk
    // across tensors of any size, and the chunks are merged in file order;
    // the same bytes in memory are read on one thread. Every figure must be
    // identical, not merely close, whatever the number of threads.
    let (path, _) = many_chunk_file("parallel", 9, 30);
    let bytes = std::fs::read(&path).expect("read");
    let in_memory = SliceSource::new("big.safetensors", &bytes);
    let sequential = scan_sources(&[&in_memory], &mut |_, _| true).expect("sequential scan");
    assert_eq!(sequential.tensors.len(), 32);
    for threads in [2, 3, 5] {
        let mut reports = Vec::new();
        // An untracked pool: its allocations must not count against the
        // memory test running beside it.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool");
        let parallel = pool.install(|| {
            let file = FileSource::open(&path).expect("open");
            scan_sources(&[&file], &mut |done, total| {
                reports.push((done, total));
                true
            })
            .expect("parallel scan")
        });
        assert_eq!(parallel.tensors, sequential.tensors, "{threads} threads");
        assert_eq!(parallel.summary, sequential.summary);
        assert_eq!(parallel.bytes_scanned, sequential.bytes_scanned);
        // Progress only grows, and ends at every byte.
        assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "{reports:?}");
        let total = parallel.bytes_total;
        assert_eq!(reports.last(), Some(&(total, total)));
    }
    std::fs::remove_dir_all(path.parent().expect("dir")).expect("cleanup");
}

/// A file whose reads fail from `failing_from` on: as if the disk failed
/// after the header was read. Threads may share it.
struct FailingSource {
    file: FileSource,
    failing_from: u64,
}

impl ByteSource for FailingSource {
    fn name(&self) -> &str {
        self.file.name()
    }
    fn len(&self) -> u64 {
        self.file.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> ckptcheck::error::Result<()> {
        if offset + buf.len() as u64 > self.failing_from {
            return Err(ckptcheck::error::err(
                ckptcheck::error::ErrorKind::Io,
                format!("read at byte {offset} failed"),
            ));
        }
        self.file.read_exact_at(offset, buf)
    }
    fn bytes_read(&self) -> u64 {
        self.file.bytes_read()
    }
    fn as_sync(&self) -> Option<&(dyn ByteSource + Sync)> {
        Some(self)
    }
}

#[test]
fn the_parallel_scan_cancels_and_names_the_tensor_it_could_not_read() {
    let (path, n) = many_chunk_file("failing", 6, 12);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool");
    let file_length = std::fs::metadata(&path).expect("stat").len();
    pool.install(|| {
        // Cancelled at the first report: nothing more is read than the
        // chunks already taken.
        let file = FileSource::open(&path).expect("open");
        let mut calls = 0;
        let cancelled = scan_sources(&[&file], &mut |done, _| {
            calls += 1;
            done == 0
        })
        .expect_err("cancelled");
        assert_eq!(cancelled.kind, ckptcheck::error::ErrorKind::Cancelled);
        assert_eq!(calls, 2, "the start, then the first chunk");
        // The disk fails inside the big tensor "w" (the file's last 4n
        // bytes): the error names the file and that tensor, the one in
        // file order, whichever thread met it first.
        let failing = FailingSource {
            file: FileSource::open(&path).expect("open"),
            failing_from: file_length - 4 * n as u64 + 3 * CHUNK_BYTES as u64,
        };
        let failed = scan_sources(&[&failing], &mut |_, _| true).expect_err("read error");
        assert_eq!(failed.kind, ckptcheck::error::ErrorKind::Io, "{failed:?}");
        assert_eq!(failed.tensor.as_deref(), Some("w"), "{failed:?}");
        assert!(failed
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("big.safetensors")));
        // Failing in the last small tensor, just before "w", names it.
        let early = FailingSource {
            file: FileSource::open(&path).expect("open"),
            failing_from: file_length - 4 * n as u64 - 1,
        };
        let failed = scan_sources(&[&early], &mut |_, _| true).expect_err("read error");
        assert_eq!(failed.tensor.as_deref(), Some("s011"), "{failed:?}");
    });
    std::fs::remove_dir_all(path.parent().expect("dir")).expect("cleanup");
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
