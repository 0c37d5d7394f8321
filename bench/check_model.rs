//! In-process check timing for bench/check_bench.py: the same checkpoint
//! checked against a built-in preset and against a model dump of the same
//! model (`ckptcheck snippet`'s JSON), alternating, 21 times each (the first
//! of each is a warm-up). Each run does what `ckptcheck check` does: build
//! the model (the preset, or parse the dump), read the checkpoint, check.
//! Prints one JSON line with both medians and their ratio. Run through
//! `cargo bench --bench check_model -- FILE PRESET DUMP`.

use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::source::FileSource;
use ckptcheck::{arch, format};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [file, preset, dump] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench check_model -- FILE PRESET DUMP.json");
        return;
    };
    let path = std::path::Path::new(file);
    let run = |by_dump: bool| -> (f64, bool) {
        let start = Instant::now();
        let model = if by_dump {
            let text = std::fs::read_to_string(dump).expect("dump");
            let value: serde_json::Value = serde_json::from_str(&text).expect("json");
            arch::dump::model_from_dump(dump, &value).expect("model")
        } else {
            arch::model_from_preset(preset).expect("preset")
        };
        let source = FileSource::open(path).expect("open");
        let checkpoint = format::read_checkpoint(&source).expect("read");
        let report = check(&checkpoint, &model, Loader::Strict);
        (start.elapsed().as_secs_f64(), report.loads)
    };
    let (mut by_preset, mut by_dump) = (Vec::new(), Vec::new());
    let mut verdicts = (false, false);
    for round in 0..21 {
        let (preset_time, preset_loads) = run(false);
        let (dump_time, dump_loads) = run(true);
        verdicts = (preset_loads, dump_loads);
        if round > 0 {
            by_preset.push(preset_time);
            by_dump.push(dump_time);
        }
    }
    let median = |times: &mut Vec<f64>| {
        times.sort_by(|a, b| a.total_cmp(b));
        times[times.len() / 2]
    };
    let (preset_s, dump_s) = (median(&mut by_preset), median(&mut by_dump));
    println!(
        "{{\"file\": {file:?}, \"preset\": {preset:?}, \"dump\": {dump:?}, \"preset_median_s\": {preset_s}, \"dump_median_s\": {dump_s}, \"dump_over_preset\": {}, \"loads_by_preset\": {}, \"loads_by_dump\": {}}}",
        dump_s / preset_s,
        verdicts.0,
        verdicts.1
    );
}
