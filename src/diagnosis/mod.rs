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
use crate::state_dict::{
    select_state_dict, state_dict_at, strip_common_prefix, tensor_groups, SizeMismatch,
};
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
    /// When the weights are nested (a training checkpoint): what
    /// `model.load_state_dict(torch.load(f))` on the whole file raises.
    pub whole_file_pytorch_error: Option<String>,
}

/// Check a checkpoint against a model with a loader.
pub fn check(checkpoint: &Checkpoint, model: &ModelSpec, loader: Loader) -> CheckReport {
    let (path, state_dict) = select_state_dict(checkpoint);
    check_state_dict(checkpoint, model, loader, path, state_dict)
}

/// `check` with the weights picked at `state_dict_path` (keys from the
/// root), for files that hold several sets (raw and EMA weights).
pub fn check_at(
    checkpoint: &Checkpoint,
    model: &ModelSpec,
    loader: Loader,
    state_dict_path: &[String],
) -> crate::error::Result<CheckReport> {
    let state_dict = state_dict_at(checkpoint, state_dict_path).ok_or_else(|| {
        let candidates: Vec<String> = tensor_groups(checkpoint)
            .iter()
            .map(|(path, members)| format!("{:?} ({} tensors)", path.join("/"), members.len()))
            .collect();
        crate::error::err(
            crate::error::ErrorKind::BadArgument,
            format!(
                "no dict of tensors at {:?}; the file has {}",
                state_dict_path.join("/"),
                candidates.join(", ")
            ),
        )
        .in_file(&checkpoint.file)
    })?;
    Ok(check_state_dict(
        checkpoint,
        model,
        loader,
        state_dict_path.to_vec(),
        state_dict,
    ))
}

fn check_state_dict(
    checkpoint: &Checkpoint,
    model: &ModelSpec,
    loader: Loader,
    path: Vec<String>,
    state_dict: crate::state_dict::StateDict,
) -> CheckReport {
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
    let whole_file_pytorch_error = whole_file_error(checkpoint, model, &path);
    if let Some(error) = &whole_file_pytorch_error {
        let unexpected = error
            .lines()
            .find(|line| line.trim_start().starts_with("Unexpected key(s)"))
            .map(str::trim)
            .unwrap_or("");
        notes.push(format!(
            "a training checkpoint, not a state dict: `model.load_state_dict(torch.load(f))` on the whole file fails ({unexpected}); load `torch.load(f){}` instead",
            path.iter().map(|p| format!("[{p:?}]")).collect::<String>()
        ));
    }
    notes.extend(other_weight_sets(checkpoint, &path, &state_dict));
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
        whole_file_pytorch_error,
    }
}

/// What `model.load_state_dict(torch.load(f))` raises when the weights sit
/// at `path` inside the file's root dict: the root's keys are unexpected and
/// every model key is missing (PyTorch's text verbatim).
fn whole_file_error(checkpoint: &Checkpoint, model: &ModelSpec, path: &[String]) -> Option<String> {
    if path.is_empty() || checkpoint.root_keys.is_empty() {
        return None;
    }
    let whole = crate::state_dict::StateDict {
        entries: checkpoint
            .root_keys
            .iter()
            .map(|key| crate::state_dict::StateEntry {
                key: key.clone(),
                shape: Vec::new(),
                dtype: String::new(),
            })
            .collect(),
        metadata: None,
    };
    let model_keys: Vec<(String, Vec<u64>)> = model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let result = crate::check::load_state_dict(&whole, &model_keys, &model.batchnorm_modules);
    crate::check::pytorch_error_text(&model.class_name, &result)
}

/// Other sets of weights in the file (EMA copies, most often), so that the
/// user knows which one was checked and how to pick another.
fn other_weight_sets(
    checkpoint: &Checkpoint,
    path: &[String],
    state_dict: &crate::state_dict::StateDict,
) -> Vec<String> {
    let mut notes = Vec::new();
    let keys: std::collections::HashSet<&str> =
        state_dict.entries.iter().map(|e| e.key.as_str()).collect();
    for (other, members) in tensor_groups(checkpoint) {
        if other.as_slice() == path {
            continue;
        }
        let shared = members
            .iter()
            .filter(|i| keys.contains(checkpoint.tensors[**i].name.as_str()))
            .count();
        if shared * 2 >= keys.len().max(1) && shared > 0 {
            notes.push(format!(
                "checkpoint[{}] holds another set of {} weights with the same keys (EMA weights?); this check used checkpoint[{}]: `--state-dict-path {}` checks the other",
                other.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join("]["),
                members.len(),
                if path.is_empty() { "the root".to_string() } else { path.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join("][") },
                other.join("/")
            ));
        }
    }
    let ema = state_dict
        .entries
        .iter()
        .filter(|e| e.key.starts_with("model_ema.") || e.key.starts_with("ema."))
        .count();
    if ema > 0 {
        notes.push(format!(
            "{ema} keys under `model_ema.`/`ema.` are EMA copies of the weights (with `decay`/`num_updates`), not modules of the model: strict load_state_dict reports them unexpected; drop them, or load them in place of the raw weights"
        ));
    }
    notes
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
