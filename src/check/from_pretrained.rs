//! transformers' `from_pretrained` load report (modeling_utils.py,
//! `_adjust_missing_and_unexpected_keys`, `log_state_dict_report`): keys
//! already renamed by the `hf` loader are matched to the model's; one of a
//! tied pair present makes the other not missing; ignored keys are not
//! unexpected; missing and unexpected keys are a logged warning and only
//! size mismatches raise. `report_table` writes that warning as
//! transformers 5.x logs it (utils/loading_report.py, the LOAD REPORT).

use super::torch_size;
use crate::arch::IgnoreKey;
use crate::loader::Prepared;
use crate::state_dict::{LoadResult, SizeMismatch};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeSet;

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
    let mut loaded: HashSet<&str> = HashSet::default();
    let mut mismatched: HashMap<&str, SizeMismatch> = HashMap::default();
    let mut unexpected: Vec<String> = Vec::new();
    let mut seen_unexpected: HashSet<&str> = HashSet::default();
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

/// The table transformers logs after loading (loading_report.py
/// `create_loading_report`, an 80-column terminal): UNEXPECTED, then
/// MISSING, then MISMATCH rows, keys that differ only in layer numbers
/// merged (`encoder.layer.{0, 1}.x`), then the notes. `None` when nothing
/// is reported. transformers keeps the keys in sets; here they come in the
/// checkpoint's and the model's order.
pub fn report_table(result: &LoadResult) -> Option<String> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut tips = String::from("\n\nNotes:");
    if !result.unexpected_keys.is_empty() {
        tips.push_str("\n- UNEXPECTED:\tcan be ignored when loading from different task/architecture; not ok if you expect identical arch.");
        for (key, _) in merge_layer_numbers(result.unexpected_keys.iter().map(|k| (k.as_str(), ())))
        {
            rows.push(vec![key, "UNEXPECTED".into(), String::new(), String::new()]);
        }
    }
    if !result.missing_keys.is_empty() {
        tips.push_str("\n- MISSING:\tthose params were newly initialized because missing from the checkpoint. Consider training on your downstream task.");
        for (key, _) in merge_layer_numbers(result.missing_keys.iter().map(|k| (k.as_str(), ()))) {
            rows.push(vec![key, "MISSING".into(), String::new()]);
        }
    }
    if !result.size_mismatches.is_empty() {
        tips.push_str("\n- MISMATCH:\tckpt weights were loaded, but they did not match the original empty weight shapes.");
        let shapes = result.size_mismatches.iter().map(|m| {
            (
                m.key.as_str(),
                (torch_size(&m.checkpoint_shape), torch_size(&m.model_shape)),
            )
        });
        for (key, (checkpoint, model)) in merge_layer_numbers(shapes) {
            rows.push(vec![
                key,
                "MISMATCH".into(),
                format!("Reinit due to size mismatch - ckpt: {checkpoint} vs model:{model}"),
            ]);
        }
    }
    if rows.is_empty() {
        return None;
    }
    let headers: Vec<String> = ["Key", "Status", "", ""].map(String::from).to_vec();
    // Python's zip: as many columns as the shortest row.
    let columns = rows.iter().map(Vec::len).fold(headers.len(), usize::min);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            std::iter::once(&headers)
                .chain(&rows)
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        row.iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut table = vec![
        line(&headers),
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    ];
    table.extend(rows.iter().map(|row| line(row)));
    Some(table.join("\n") + &tips)
}

/// loading_report.py `update_key_name`: keys with the same pattern once
/// the numbers between dots are starred are merged into one, the numbers
/// of each star listed (`{0, 1}`, or `first...last` past ten); the value
/// kept is the last one's.
fn merge_layer_numbers<'a, V>(entries: impl Iterator<Item = (&'a str, V)>) -> Vec<(String, V)> {
    let mut order: Vec<String> = Vec::new();
    let mut buckets: HashMap<String, (Vec<BTreeSet<u64>>, V)> = HashMap::default();
    for (key, value) in entries {
        let parts: Vec<&str> = key.split('.').collect();
        let mut numbers = Vec::new();
        let pattern: Vec<&str> = parts
            .iter()
            .enumerate()
            .map(|(index, part)| {
                let numeric =
                    index > 0 && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
                match part.parse::<u64>() {
                    Ok(number) if numeric => {
                        numbers.push(number);
                        "*"
                    }
                    _ => part,
                }
            })
            .collect();
        let pattern = pattern.join(".");
        match buckets.get_mut(&pattern) {
            Some((sets, kept)) => {
                for (set, number) in sets.iter_mut().zip(&numbers) {
                    set.insert(*number);
                }
                *kept = value;
            }
            None => {
                order.push(pattern.clone());
                let sets = numbers.iter().map(|n| BTreeSet::from([*n])).collect();
                buckets.insert(pattern, (sets, value));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|pattern| {
            let (sets, value) = buckets.remove(&pattern)?;
            let mut sets = sets.into_iter();
            let merged: Vec<String> = pattern
                .split('.')
                .map(|part| {
                    if part != "*" {
                        return part.to_string();
                    }
                    let Some(set) = sets.next() else {
                        return "*".to_string();
                    };
                    let numbers: Vec<u64> = set.into_iter().collect();
                    match numbers.as_slice() {
                        [one] => one.to_string(),
                        [first, .., last] if numbers.len() > 10 => format!("{{{first}...{last}}}"),
                        _ => format!(
                            "{{{}}}",
                            numbers
                                .iter()
                                .map(u64::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                })
                .collect();
            Some((merged.join("."), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_dict::SizeMismatch;

    #[test]
    fn the_load_report_is_laid_out_as_transformers_logs_it() {
        // BertModel.from_pretrained on a file without the pooler and with
        // one stray key (transformers 5.24, 80 columns).
        let result = LoadResult {
            missing_keys: vec!["pooler.dense.weight".into(), "pooler.dense.bias".into()],
            unexpected_keys: vec!["extra.weight".into()],
            size_mismatches: Vec::new(),
            filled: Vec::new(),
        };
        let expected = "Key                 | Status     | \n\
--------------------+------------+-\n\
extra.weight        | UNEXPECTED | \n\
pooler.dense.weight | MISSING    | \n\
pooler.dense.bias   | MISSING    | \n\
\n\
Notes:\n\
- UNEXPECTED:\tcan be ignored when loading from different task/architecture; not ok if you expect identical arch.\n\
- MISSING:\tthose params were newly initialized because missing from the checkpoint. Consider training on your downstream task.";
        assert_eq!(report_table(&result).unwrap(), expected);
        let mismatched = LoadResult {
            size_mismatches: vec![SizeMismatch {
                key: "classifier.bias".into(),
                checkpoint_shape: vec![5],
                model_shape: vec![3],
            }],
            ..LoadResult::default()
        };
        let table = report_table(&mismatched).unwrap();
        assert!(table.contains("classifier.bias | MISMATCH | Reinit due to size mismatch - ckpt: torch.Size([5]) vs model:torch.Size([3])"), "{table}");
        assert_eq!(report_table(&LoadResult::default()), None);
    }

    #[test]
    fn keys_that_differ_in_layer_numbers_are_merged() {
        let keys = [
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.1.attention.self.query.weight",
            "pooler.dense.weight",
        ];
        let merged: Vec<String> = merge_layer_numbers(keys.iter().map(|k| (*k, ())))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            merged,
            [
                "encoder.layer.{0, 1}.attention.self.query.weight",
                "pooler.dense.weight"
            ]
        );
        let many: Vec<String> = (0..12).map(|i| format!("layers.{i}.w")).collect();
        let merged = merge_layer_numbers(many.iter().map(|k| (k.as_str(), ())));
        assert_eq!(merged[0].0, "layers.{0...11}.w");
    }
}
