//! The comparison of a `check` report with a load the real library made
//! (tests/hf.rs, tests/zoo.rs, tests/diffusers.rs; tests/cn_clip.rs and
//! tests/open_clip.rs use `mismatches_of`): the fixture case's `missing_keys`,
//! `unexpected_keys` and `mismatched_keys` (sorted; mismatches as
//! `[key, checkpoint shape, model shape]`). Included with
//! `#[path = "support/load_case.rs"] mod load_case;`.

use ckptcheck::diagnosis::CheckReport;
use ckptcheck::{Checkpoint, TensorInfo};
use serde_json::Value;

/// A checkpoint holding a fixture's `[[name, shape, dtype], ...]` listing,
/// each dtype named by `dtype` in ckptcheck's terms.
#[allow(dead_code)] // not every test file that includes this builds one
pub fn checkpoint_of(file: &str, listing: &Value, dtype: impl Fn(&str) -> String) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(file, "safetensors", 0);
    for tensor in listing.as_array().expect("listing") {
        let shape: Vec<u64> = serde_json::from_value(tensor[1].clone()).expect("shape");
        checkpoint.tensors.push(TensorInfo::new(
            tensor[0].as_str().expect("name").to_string(),
            dtype(tensor[2].as_str().expect("dtype")),
            shape,
        ));
    }
    checkpoint
}

/// A fixture's listing (`[[name, [shape], dtype], ...]`) as names and shapes.
// Not every test file that includes this module reads listings this way.
#[allow(dead_code)]
pub fn names_and_shapes(listing: &Value) -> Vec<(String, Vec<u64>)> {
    listing
        .as_array()
        .expect("a listing")
        .iter()
        .map(|t| {
            (
                t[0].as_str().expect("a name").to_string(),
                serde_json::from_value(t[1].clone()).expect("a shape"),
            )
        })
        .collect()
}

fn sorted_strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = serde_json::from_value(value.clone()).expect("strings");
    list.sort();
    list
}

/// The report's size mismatches as `(key, checkpoint shape, model shape)`,
/// in the report's (PyTorch's) order.
pub fn mismatches_of(report: &CheckReport) -> Vec<(String, Vec<u64>, Vec<u64>)> {
    report
        .size_mismatches
        .iter()
        .map(|m| {
            (
                m.key.clone(),
                m.checkpoint_shape.clone(),
                m.model_shape.clone(),
            )
        })
        .collect()
}

/// The report's missing, unexpected and mismatched keys are the case's.
pub fn assert_same_keys(report: &CheckReport, case: &Value, label: &str) {
    let mut missing = report.missing_keys.clone();
    missing.sort();
    assert_eq!(missing, sorted_strings(&case["missing_keys"]), "{label}");
    let mut unexpected = report.unexpected_keys.clone();
    unexpected.sort();
    assert_eq!(
        unexpected,
        sorted_strings(&case["unexpected_keys"]),
        "{label}"
    );
    let mut mismatched = mismatches_of(report);
    mismatched.sort();
    let want: Vec<(String, Vec<u64>, Vec<u64>)> =
        serde_json::from_value(case["mismatched_keys"].clone()).expect("mismatches");
    assert_eq!(mismatched, want, "{label}");
}

/// assemble.py's digest of a listing (FNV-1a over `name|dims|dtype` lines),
/// for fixtures that keep a state dict as its count and digest.
#[allow(dead_code)] // not every test file that includes this compares digests
pub fn digest(listing: &[(String, Vec<u64>, String)]) -> String {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for (key, shape, dtype) in listing {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        for byte in format!("{key}|{}|{dtype}\n", dims.join(",")).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01B3);
        }
    }
    format!("{hash:016x}")
}
