//! The comparison of a `check` report with a load the real library made
//! (tests/hf.rs, tests/zoo.rs; tests/cn_clip.rs and tests/open_clip.rs use
//! `mismatches_of`): the fixture case's `missing_keys`,
//! `unexpected_keys` and `mismatched_keys` (sorted; mismatches as
//! `[key, checkpoint shape, model shape]`). Included with
//! `#[path = "support/load_case.rs"] mod load_case;`.

use ckptcheck::diagnosis::CheckReport;
use serde_json::Value;

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
