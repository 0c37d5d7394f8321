//! The diagnosis: the answer a person gets. `check` picks the state dict
//! in the checkpoint, has the loader prepare it, has the check compare it
//! with the model, infers which config the checkpoint really matches, and
//! explains the findings in config terms (`explain`) with the fix (`fix`).
//! The `CheckReport` is plain serializable data that the CLI and the page
//! both render (`render`). It reads the check's result; nothing below it
//! reads a `CheckReport`.

mod explain;
mod fix;
mod layout;
pub mod render;

pub use explain::explain;
pub use fix::fix;
pub use render::{to_markdown, to_text, verdict_line};

use crate::arch::{self, Inferred, ModelSpec};
use crate::checkpoint::Checkpoint;
use crate::loader::{self, Loader};
use crate::state_dict::{select_state_dict, strip_common_prefix, SizeMismatch};
use serde::Serialize;
use serde_json::Value;

/// One line of the explanation: a cause and how many findings it explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    /// A stable id of the kind of cause: `wrapper-prefix`,
    /// `torch-compile-prefix`, `ddp-prefix`, `model-family`, `config-field`,
    /// `unexplained-keys` ...
    pub cause: String,
    /// `vision_width`, `prefix`, `layers`, ...
    pub field: String,
    pub checkpoint: serde_json::Value,
    pub model: serde_json::Value,
    pub missing: usize,
    pub unexpected: usize,
    pub size_mismatches: usize,
    /// The sentence a person reads.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    /// One-line summary: "this checkpoint is ViT-L-14-336@...; run with ...".
    pub summary: String,
    /// Copyable remedies: command-line flags, a config JSON, a Python snippet.
    pub remedies: Vec<Remedy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remedy {
    pub label: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub file: String,
    pub format: String,
    pub file_bytes: u64,
    pub bytes_read: u64,
    pub loads: bool,
    pub loader: Loader,
    /// The model checked against: preset name or "config JSON".
    pub model: String,
    pub model_family: String,
    pub class_name: String,
    /// Keys from the checkpoint's root to the state dict that was checked.
    pub state_dict_path: Vec<String>,
    pub n_checkpoint_tensors: usize,
    pub n_model_tensors: usize,
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    pub size_mismatches: Vec<SizeMismatch>,
    /// `str(RuntimeError)` that `load_state_dict` raises, or null.
    pub pytorch_error: Option<String>,
    /// Not errors: container unwrapped, dtype casts, loader actions.
    pub notes: Vec<String>,
    /// Causes, most findings first.
    pub explanation: Vec<Cause>,
    pub fix: Option<Fix>,
    pub inferred: Inferred,
    /// `weights_only=True` would refuse the file (pickle audit).
    pub unsafe_globals: Vec<String>,
}

/// Check a checkpoint against a model with a loader.
pub fn check(checkpoint: &Checkpoint, model: &ModelSpec, loader: Loader) -> CheckReport {
    let (path, state_dict) = select_state_dict(checkpoint);
    let mut notes = Vec::new();
    if !path.is_empty() {
        let others: Vec<String> = checkpoint
            .values
            .iter()
            .filter(|v| v.path.len() == 1)
            .map(|v| v.path[0].clone())
            .collect();
        notes.push(format!(
            "unwrapped the state dict at checkpoint[{}]{}",
            path.iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join("]["),
            if others.is_empty() {
                String::new()
            } else {
                format!(" (the file also holds {})", others.join(", "))
            }
        ));
    }
    let prepared = loader::prepare(loader, &state_dict, model);
    notes.extend(prepared.notes.iter().cloned());
    let model_dtypes: Vec<String> = model.tensors.iter().map(|t| t.dtype.clone()).collect();
    let comparison = crate::check::compare(&prepared, &model_dtypes);
    notes.extend(comparison.notes.iter().cloned());
    let result = comparison.result;
    let mut loads = comparison.error.is_none();
    let (common_prefix, names) = strip_common_prefix(&state_dict.entries);
    let (inferred, explanation, fix) = match layout::recognise(&state_dict.entries) {
        // Shapes that are not the architecture's: that is the explanation,
        // and nothing is read off them.
        Some(layout) => {
            let mut cause = layout.cause;
            cause.missing = result.missing_keys.len();
            cause.unexpected = result.unexpected_keys.len();
            cause.size_mismatches = result.size_mismatches.len();
            let inferred = Inferred {
                family: "unknown".to_string(),
                undetermined: vec![layout.why_not_inferred],
                ..Inferred::default()
            };
            // An adapter, placeholders or packed weights never load as this
            // model's weights, whatever a lenient loader would tolerate
            // (from_pretrained would leave every weight newly initialized).
            loads = false;
            (inferred, vec![cause], (!loads).then_some(layout.fix))
        }
        None => {
            let inferred = arch::infer(&names);
            let explanation = explain(
                &result,
                &prepared,
                model,
                &inferred,
                common_prefix.as_deref(),
                loader,
            );
            let fix = fix(loads, model, &inferred, loader, &explanation);
            (inferred, explanation, fix)
        }
    };
    let unsafe_globals = checkpoint
        .pickle_audit
        .as_ref()
        .map(|a| a.dangerous.clone())
        .unwrap_or_default();
    CheckReport {
        file: checkpoint.file.clone(),
        format: checkpoint.format.clone(),
        file_bytes: checkpoint.file_bytes,
        bytes_read: checkpoint.bytes_read,
        loads,
        loader,
        model: model
            .preset
            .clone()
            .unwrap_or_else(|| "config JSON".to_string()),
        model_family: model.family.clone(),
        class_name: prepared.class_name.clone(),
        state_dict_path: path,
        n_checkpoint_tensors: state_dict.entries.len(),
        n_model_tensors: model.tensors.len(),
        missing_keys: result.missing_keys,
        unexpected_keys: result.unexpected_keys,
        size_mismatches: result.size_mismatches,
        pytorch_error: comparison.error,
        notes,
        explanation,
        fix,
        inferred,
        unsafe_globals,
    }
}

/// The config the checkpoint's own state dict matches (any wrapper prefix
/// its keys share set aside): what `infer` prints and what a run without a
/// named model falls back on.
pub fn infer_checkpoint(checkpoint: &Checkpoint) -> Inferred {
    let (_, state_dict) = select_state_dict(checkpoint);
    let (_, names) = strip_common_prefix(&state_dict.entries);
    arch::infer(&names)
}

/// A family's name for people.
fn family_name(family: &str) -> &str {
    match family {
        "cn_clip" => "Chinese-CLIP",
        "open_clip" => "OpenAI CLIP / open_clip",
        "hf" => "Hugging Face transformers",
        other => other,
    }
}

/// A config value as text (strings without quotes).
fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
