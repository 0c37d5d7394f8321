//! transformers' `from_pretrained` load report (modeling_utils.py,
//! `_adjust_missing_and_unexpected_keys`, `log_state_dict_report`): keys
//! already renamed by the `hf` loader are matched to the model's; one of a
//! tied pair present makes the other not missing; ignored keys are not
//! unexpected; missing and unexpected keys are a logged warning and only
//! size mismatches raise.

use crate::arch::IgnoreKey;
use crate::loader::Prepared;
use crate::state_dict::{LoadResult, SizeMismatch};
use std::collections::{HashMap, HashSet};

/// The report for `prepared` (whose judgement carries `tied` and
/// `ignore_unexpected`); `notes` says what transformers did on the way.
pub fn load_report(
    prepared: &Prepared,
    tied: &[(String, String)],
    ignore_unexpected: &[IgnoreKey],
    notes: &mut Vec<String>,
) -> LoadResult {
    let expected: HashMap<&str, &Vec<u64>> = prepared
        .model_keys
        .iter()
        .map(|(key, shape)| (key.as_str(), shape))
        .collect();
    let mut missing: HashSet<&str> = expected.keys().copied().collect();
    let mut loaded: HashSet<&str> = HashSet::new();
    let mut mismatched: HashMap<&str, SizeMismatch> = HashMap::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut seen_unexpected: HashSet<&str> = HashSet::new();
    for entry in &prepared.state_dict.entries {
        let key = entry.key.as_str();
        match expected.get(key) {
            Some(shape) => {
                missing.remove(key);
                // A later duplicate of a loaded key is dropped.
                if !loaded.insert(key) {
                    continue;
                }
                if entry.shape != **shape {
                    mismatched.insert(
                        key,
                        SizeMismatch {
                            key: key.to_string(),
                            checkpoint_shape: entry.shape.clone(),
                            model_shape: shape.to_vec(),
                        },
                    );
                }
            }
            None => {
                if seen_unexpected.insert(key) {
                    unexpected.push(key.to_string());
                }
            }
        }
    }
    // tie_weights(missing_keys): one side of a tied pair present makes the
    // other one not missing (a mismatched key counts as present).
    let mut tied_notes = Vec::new();
    for (target, source) in tied {
        let source_there = !missing.contains(source.as_str());
        let target_there = !missing.contains(target.as_str());
        if source_there && !target_there {
            missing.remove(target.as_str());
            tied_notes.push(format!("{target} (tied to {source})"));
        } else if target_there && !source_there {
            missing.remove(source.as_str());
            tied_notes.push(format!("{source} (tied to {target})"));
        }
    }
    let before = unexpected.len();
    unexpected.retain(|key| !ignore_unexpected.iter().any(|rule| rule.matches(key)));
    let ignored = before - unexpected.len();
    if !tied_notes.is_empty() {
        notes.push(format!(
            "not missing because tied weights are re-tied on load: {}",
            tied_notes.join(", ")
        ));
    }
    if ignored > 0 {
        notes.push(format!(
            "from_pretrained ignores {ignored} stale buffer key(s) (position_ids, rotary_emb.inv_freq, attn.bias)"
        ));
    }
    if !missing.is_empty() {
        notes.push(format!(
            "transformers only warns about the {} missing key(s): they are newly initialized, and the model loads unless sizes mismatch",
            missing.len()
        ));
    }
    LoadResult {
        missing_keys: prepared
            .model_keys
            .iter()
            .filter(|(key, _)| missing.contains(key.as_str()))
            .map(|(key, _)| key.clone())
            .collect(),
        unexpected_keys: unexpected,
        size_mismatches: prepared
            .model_keys
            .iter()
            .filter_map(|(key, _)| mismatched.remove(key.as_str()))
            .collect(),
        filled: Vec::new(),
    }
}

/// What `from_pretrained` raises, verbatim (`str(RuntimeError)`), or `None`
/// when it loads: only size mismatches raise.
pub fn error_text(result: &LoadResult) -> Option<String> {
    (!result.size_mismatches.is_empty()).then(|| {
        "You set `ignore_mismatched_sizes` to `False`, thus raising an error. For details look at the above report!"
            .to_string()
    })
}
