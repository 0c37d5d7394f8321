//! In-process inspect timing for bench/inspect_bench.py: opens and reads each
//! file given on the command line 20 times (after a warm-up) and prints one
//! JSON line per file with the median seconds and the bytes read. Run through
//! `cargo bench --bench inspect -- FILE...`; with no files it prints nothing.

use ckptcheck::format;
use ckptcheck::source::{ByteSource, FileSource};
use std::time::Instant;

fn main() {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for file in files {
        let path = std::path::Path::new(&file);
        let mut times = Vec::new();
        let mut bytes_read = 0;
        let mut tensors = 0;
        for run in 0..21 {
            let start = Instant::now();
            let source = FileSource::open(path).expect("open");
            let checkpoint = format::read_checkpoint(&source).expect("read");
            let elapsed = start.elapsed().as_secs_f64();
            bytes_read = source.bytes_read();
            tensors = checkpoint.tensors.len();
            if run > 0 {
                times.push(elapsed);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{{\"file\": {:?}, \"median_s\": {}, \"bytes_read\": {bytes_read}, \"tensors\": {tensors}}}",
            file,
            times[times.len() / 2]
        );
    }
}
