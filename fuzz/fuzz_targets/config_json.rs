//! Config JSON recognition and model building. A NUL byte splits the input
//! into two files, so the Chinese-CLIP vision + text pair path runs too.
#![no_main]
use ckptcheck::arch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let texts: Vec<(String, String)> = data
        .split(|b| *b == 0)
        .take(2)
        .enumerate()
        .map(|(i, part)| {
            (
                format!("config{i}.json"),
                String::from_utf8_lossy(part).into_owned(),
            )
        })
        .collect();
    if let Ok(model) = arch::model_from_config_json(&texts) {
        // A model built from a hostile config must stay small enough to list.
        assert!(model.tensors.len() < 10_000_000);
    }
});
