//! The check: what loading this state dict into this model through this
//! loader would report, exactly. The loader (`crate::loader`) prepares the
//! keys; this module compares them with the model's, the way the loader's
//! code path judges them: PyTorch's `load_state_dict(strict=True)`
//! (`module_tree`, its order and error text verbatim) or transformers'
//! `from_pretrained` report (`from_pretrained`). It knows no model family
//! and explains nothing: `crate::diagnosis` reads its result.

pub mod diff;
mod from_pretrained;
mod module_tree;

pub use diff::{diff, diff_text, CheckpointDiff};
pub use module_tree::{load_state_dict, load_state_dict_in_tree, pytorch_error_text, torch_size};

use crate::loader::{Judgement, Prepared};
use crate::state_dict::LoadResult;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// The outcome of one prepared load.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub result: LoadResult,
    /// The text the load raises, verbatim, or `None` when it loads.
    pub error: Option<String>,
    /// What the load did that is not an error (casts, filled buffers).
    pub notes: Vec<String>,
    /// The report the loader logs as a warning (transformers' LOAD REPORT
    /// table), when it logs one.
    pub load_report: Option<String>,
}

/// What `load_state_dict(strict=False)` raises: the size mismatches only.
fn mismatch_error_text(class_name: &str, result: &LoadResult) -> Option<String> {
    let mismatches_only = LoadResult {
        size_mismatches: result.size_mismatches.clone(),
        ..LoadResult::default()
    };
    pytorch_error_text(class_name, &mismatches_only)
}

/// What diffusers' `load_model_dict_into_meta` raises at the first size
/// mismatch. from_pretrained does not pass it the model's path, so the
/// text has an empty name and two spaces where the path would go.
fn diffusers_error_text(mismatch: &crate::state_dict::SizeMismatch) -> String {
    format!(
        "Cannot load  because {} expected shape {}, but got {}. If you want to instead overwrite randomly initialized weights, please make sure to pass both `low_cpu_mem_usage=False` and `ignore_mismatched_sizes=True`. For more information, see also: https://github.com/huggingface/diffusers/issues/1619#issuecomment-1345604389 as an example.",
        mismatch.key,
        torch_size(&mismatch.model_shape),
        torch_size(&mismatch.checkpoint_shape)
    )
}

/// Compare a prepared state dict with the model's keys. `model_dtypes` are
/// the model's dtypes in `prepared.model_keys` order (dtype differences
/// are casts, not errors).
pub fn compare(prepared: &Prepared, model_dtypes: &[String]) -> Comparison {
    let mut notes = Vec::new();
    let mut load_report = None;
    let (result, error) = match &prepared.judgement {
        Judgement::Strict | Judgement::NonStrict | Judgement::Diffusers => {
            let result = load_state_dict_in_tree(
                &prepared.state_dict,
                &prepared.model_keys,
                &prepared.batchnorm_modules,
                &prepared.module_names,
            );
            let error = match prepared.judgement {
                Judgement::Strict => pytorch_error_text(&prepared.class_name, &result),
                Judgement::Diffusers => result.size_mismatches.first().map(diffusers_error_text),
                _ => mismatch_error_text(&prepared.class_name, &result),
            };
            (result, error)
        }
        Judgement::FromPretrained {
            tied,
            ignore_unexpected,
        } => {
            let result =
                from_pretrained::load_report(prepared, tied, ignore_unexpected, &mut notes);
            let error = from_pretrained::error_text(&result);
            load_report = from_pretrained::report_table(&result);
            (result, error)
        }
        Judgement::Peft { raises, .. } => {
            let result = load_state_dict(
                &prepared.state_dict,
                &prepared.model_keys,
                &prepared.batchnorm_modules,
            );
            // strict=False: only size mismatches are errors; PEFT keeps
            // the missing keys of its own adapter layers as a warning.
            let error = raises
                .clone()
                .or_else(|| mismatch_error_text(&prepared.class_name, &result));
            let adapter_missing: Vec<String> = result
                .missing_keys
                .iter()
                .filter(|key| key.contains("lora_") && key.contains(".default"))
                .cloned()
                .collect();
            if !adapter_missing.is_empty() {
                load_report = Some(format!(
                    "Found missing adapter keys while loading the checkpoint: [{}].",
                    adapter_missing
                        .iter()
                        .map(|k| format!("'{k}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            (
                LoadResult {
                    missing_keys: adapter_missing,
                    ..result
                },
                error,
            )
        }
    };
    if !result.filled.is_empty() {
        notes.push(format!(
            "PyTorch fills {} missing BatchNorm num_batches_tracked buffer(s) itself (state dict without _metadata version 2)",
            result.filled.len()
        ));
    }
    let dtype_of: HashMap<&str, &str> = prepared
        .model_keys
        .iter()
        .zip(model_dtypes)
        .map(|((key, _), dtype)| (key.as_str(), dtype.as_str()))
        .collect();
    let mut casts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for entry in &prepared.state_dict.entries {
        if let Some(model_dtype) = dtype_of.get(entry.key.as_str()) {
            if *model_dtype != entry.dtype {
                *casts
                    .entry((entry.dtype.clone(), model_dtype.to_string()))
                    .or_insert(0) += 1;
            }
        }
    }
    for ((from, to), count) in casts {
        notes.push(format!("{count} tensor(s) are {from} in the checkpoint and {to} in the model: load_state_dict casts them"));
    }
    Comparison {
        result,
        error,
        notes,
        load_report,
    }
}
