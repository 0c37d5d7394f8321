//! The diagnosis: the answer a person gets. `check` picks the state dict
//! in the checkpoint, has the loader prepare it, has the check compare it
//! with the model, infers which config the checkpoint really matches, and
//! explains the findings in config terms (`explain`) with the fix (`fix`).
//! The `CheckReport` is plain serializable data that the CLI and the page
//! both render (`render`). It reads the check's result; nothing below it
//! reads a `CheckReport`.

mod adapter;
mod explain;
mod fix;
mod layout;
pub mod render;
mod resized;
mod stable_diffusion;
mod structure;
mod sub_model;
mod variant;

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

impl Cause {
    /// A cause with no counts or values yet: the caller sets what it knows.
    pub(crate) fn new(cause: &str, field: &str, text: String) -> Cause {
        Cause {
            cause: cause.to_string(),
            field: field.to_string(),
            checkpoint: Value::Null,
            model: Value::Null,
            missing: 0,
            unexpected: 0,
            size_mismatches: 0,
            text,
        }
    }
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

/// The answer in one word: loads, loads with warnings (transformers'
/// `from_pretrained` newly initializes weights or drops keys, and only
/// logs it), or won't load (the load raises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Loads,
    LoadsWithWarnings,
    WontLoad,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub file: String,
    pub format: String,
    pub file_bytes: u64,
    pub bytes_read: u64,
    /// The load does not raise (`verdict` says whether it warns).
    pub loads: bool,
    pub verdict: Verdict,
    /// What a load that does not raise still warns about: weights newly
    /// initialized, checkpoint keys dropped.
    pub warnings: Vec<String>,
    /// The loader's own warning text when it logs one (transformers' LOAD
    /// REPORT table, with its `from:` line).
    pub load_report: Option<String>,
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
    // LDM and sgm read `torch.load(f)["state_dict"]` themselves: the whole
    // file is never handed to load_state_dict, so no note says it fails.
    let whole_file_pytorch_error = if matches!(loader, Loader::Ldm | Loader::Diffusers) {
        None
    } else {
        whole_file_error(checkpoint, model, &path)
    };
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
    let prepared = loader::prepare(
        loader,
        &state_dict,
        model,
        checkpoint.adapter_config.as_ref(),
    );
    notes.extend(prepared.notes.iter().cloned());
    let model_dtypes: Vec<String> = model.tensors.iter().map(|t| t.dtype.clone()).collect();
    let comparison = crate::check::compare(&prepared, &model_dtypes);
    notes.extend(comparison.notes.iter().cloned());
    let result = comparison.result;
    let mut loads = comparison.error.is_none();
    let (common_prefix, names) = strip_common_prefix(&state_dict.entries);
    let layout = match &prepared.judgement {
        // An adapter onto its base: the adapter's own story, below.
        loader::Judgement::Peft { .. } => None,
        _ => layout::recognise(&state_dict.entries),
    };
    let (inferred, explanation, fix) = match layout {
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
            // (from_pretrained would leave every weight newly initialized);
            // only a model of the same layout (a reference of it) takes them
            // without a finding.
            let clean = result.missing_keys.is_empty()
                && result.unexpected_keys.is_empty()
                && result.size_mismatches.is_empty();
            loads = loads && clean;
            (inferred, vec![cause], (!loads).then_some(layout.fix))
        }
        None if matches!(prepared.judgement, loader::Judgement::Peft { .. }) => {
            let loader::Judgement::Peft { raises, config, .. } = &prepared.judgement else {
                unreachable!("matched above")
            };
            let (explanation, fix) =
                adapter::explain_adapter(&result, raises.as_deref(), config, model);
            let inferred = Inferred {
                family: "unknown".to_string(),
                undetermined: vec![
                    "a PEFT adapter: its shapes are low-rank factors, not the base model's config"
                        .to_string(),
                ],
                ..Inferred::default()
            };
            (inferred, explanation, fix)
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
    let (verdict, warnings) = verdict_and_warnings(loads, &result, model.tensors.len(), loader);
    let load_report = comparison.load_report.as_ref().map(|table| match loader {
        Loader::Peft => format!("UserWarning: {table}"),
        _ => format!(
            "{} LOAD REPORT from: {}\n{table}",
            prepared.class_name, checkpoint.file
        ),
    });
    if loader == Loader::Strict && model.family == "sd" && !loads {
        let code = crate::arch::stable_diffusion::loaders_of_class(&model.class_name);
        notes.push(format!("{code} load with load_state_dict(strict=False): only size mismatches stop them; `--loader ldm` judges as they do"));
    }
    if loader != Loader::Peft
        && checkpoint.adapter_config.is_some()
        && explanation.iter().any(|c| c.cause == "lora-adapter")
    {
        {
            notes.push("adapter_config.json is beside the weights: `--loader peft` checks the adapter against this base model, as PeftModel.from_pretrained loads it".to_string());
        }
    }
    let unsafe_globals = checkpoint
        .pickle_audit
        .as_ref()
        .map(|a| a.unsafe_names())
        .unwrap_or_default();
    CheckReport {
        file: checkpoint.file.clone(),
        format: checkpoint.format.clone(),
        file_bytes: checkpoint.file_bytes,
        bytes_read: checkpoint.bytes_read,
        loads,
        verdict,
        warnings,
        load_report,
        loader,
        model: match (&model.preset, model.family.as_str()) {
            (Some(preset), _) => preset.clone(),
            (None, "dump") => format!("model dump of {}", model.class_name),
            (None, "reference") => format!(
                "reference checkpoint {}",
                model.config["reference"].as_str().unwrap_or("")
            ),
            (None, "sd") => "inference YAML".to_string(),
            (None, _) => "config JSON".to_string(),
        },
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

/// The verdict, and what a load that does not raise warns about (only a
/// lenient judgement, `from_pretrained`'s, lets keys be missing or
/// unexpected without raising).
fn verdict_and_warnings(
    loads: bool,
    result: &crate::state_dict::LoadResult,
    model_tensors: usize,
    loader: Loader,
) -> (Verdict, Vec<String>) {
    if !loads {
        return (Verdict::WontLoad, Vec::new());
    }
    let mut warnings = Vec::new();
    if loader == Loader::Peft {
        if !result.missing_keys.is_empty() {
            warnings.push(format!(
                "{} LoRA weight(s) missing from the adapter (PEFT warns; those layers stay at their initialization)",
                result.missing_keys.len()
            ));
        }
        if !result.unexpected_keys.is_empty() {
            warnings.push(format!(
                "{} adapter tensor(s) match no layer and are dropped without a warning",
                result.unexpected_keys.len()
            ));
        }
        let verdict = if warnings.is_empty() {
            Verdict::Loads
        } else {
            Verdict::LoadsWithWarnings
        };
        return (verdict, warnings);
    }
    let missing = result.missing_keys.len();
    if missing > 0 {
        warnings.push(format!(
            "{missing} of {model_tensors} weights newly initialized (MISSING from the checkpoint){}",
            if missing >= model_tensors {
                ": nothing was loaded"
            } else {
                ""
            }
        ));
    }
    let unexpected = result.unexpected_keys.len();
    if unexpected > 0 {
        warnings.push(format!(
            "{unexpected} checkpoint key(s) not used (UNEXPECTED): dropped without an error"
        ));
    }
    let verdict = if warnings.is_empty() {
        Verdict::Loads
    } else {
        Verdict::LoadsWithWarnings
    };
    (verdict, warnings)
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
    let result = crate::check::load_state_dict_in_tree(
        &whole,
        &model_keys,
        &model.batchnorm_modules,
        &model.module_names,
    );
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
    let keys: rustc_hash::FxHashSet<&str> =
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

/// The model a reference checkpoint describes ("will my fine-tune load
/// where the official weights load?"): its state dict's keys, shapes and
/// dtypes, in order. The class name is not in a state dict, so PyTorch's
/// text names it `<reference model>`.
pub fn model_from_reference(reference: &Checkpoint) -> ModelSpec {
    let (path, state_dict) = select_state_dict(reference);
    ModelSpec {
        family: "reference".to_string(),
        class_name: "<reference model>".to_string(),
        preset: None,
        config: serde_json::json!({
            "reference": reference.file,
            "state_dict_path": path,
        }),
        tensors: state_dict
            .entries
            .iter()
            .map(|entry| arch::ExpectedTensor {
                name: entry.key.clone(),
                shape: entry.shape.clone(),
                dtype: entry.dtype.clone(),
                depends_on: Vec::new(),
                exists_if: Vec::new(),
            })
            .collect(),
        // BatchNorm layers show by their buffers: PyTorch fills their
        // num_batches_tracked for old state dicts.
        batchnorm_modules: state_dict
            .entries
            .iter()
            .filter_map(|entry| entry.key.strip_suffix(".num_batches_tracked"))
            .map(str::to_string)
            .collect(),
        base_model_prefix: String::new(),
        tied_keys: Vec::new(),
        module_kinds: Vec::new(),
        module_names: Vec::new(),
        non_persistent: Vec::new(),
    }
}

/// `diff A B`'s answer: does B load into the model A's tensors describe,
/// and if not, why (the structural causes) and what to change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffVerdict {
    pub loads: bool,
    pub explanation: Vec<Cause>,
    pub fix: Option<Fix>,
    /// "B loads into A's model: yes" or "... no: 12 missing ...; because ...".
    pub text: String,
}

pub fn diff_verdict(report: &CheckReport) -> DiffVerdict {
    let mut text = if report.loads {
        "B loads into A's model: yes".to_string()
    } else {
        format!(
            "B loads into A's model: no ({} missing, {} unexpected, {} size mismatches)",
            report.missing_keys.len(),
            report.unexpected_keys.len(),
            report.size_mismatches.len()
        )
    };
    for cause in &report.explanation {
        text.push_str(&format!("\n  because: {}", cause.text));
    }
    if let Some(fix) = &report.fix {
        text.push_str(&format!("\n  fix: {}", fix.summary));
    }
    DiffVerdict {
        loads: report.loads,
        explanation: report.explanation.clone(),
        fix: report.fix.clone(),
        text,
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
        "diffusers" => "diffusers",
        "sd" => "Stable Diffusion single-file",
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
