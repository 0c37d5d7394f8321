//! The check: what `model.load_state_dict(state_dict, strict=True)` would say
//! for this checkpoint and this model, exactly (missing keys, unexpected keys,
//! size mismatches, in PyTorch's order, and PyTorch's error text verbatim),
//! after the key handling of the chosen loader (`strict`, `cn-clip`,
//! `cn-clip-resume`, `hf`). Then the explanation in config terms and the fix.
//!
//! The traversal mirrors torch/nn/modules/module.py `_load_from_state_dict`:
//! modules in pre-order; per module its parameters then persistent buffers;
//! a key is unexpected at the deepest module its prefix reaches.

use crate::arch::{self, Inferred, ModelSpec};
use crate::checkpoint::Checkpoint;
use crate::error::{err, ErrorKind, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loader {
    Strict,
    CnClip,
    CnClipResume,
    Hf,
}

impl Loader {
    pub fn parse(text: &str) -> Result<Loader> {
        Ok(match text {
            "strict" => Loader::Strict,
            "cn-clip" => Loader::CnClip,
            "cn-clip-resume" => Loader::CnClipResume,
            "hf" => Loader::Hf,
            other => {
                return Err(err(
                    ErrorKind::BadArgument,
                    format!("unknown loader {other:?}: use strict, cn-clip, cn-clip-resume or hf"),
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Loader::Strict => "strict",
            Loader::CnClip => "cn-clip",
            Loader::CnClipResume => "cn-clip-resume",
            Loader::Hf => "hf",
        }
    }
}

/// One entry of the state dict handed to `load_state_dict`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    pub key: String,
    pub shape: Vec<u64>,
    pub dtype: String,
}

/// The state dict as PyTorch would receive it, plus its `_metadata`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateDict {
    pub entries: Vec<StateEntry>,
    /// `None` for a plain dict (no `_metadata` attribute).
    pub metadata: Option<BTreeMap<String, Option<i64>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeMismatch {
    pub key: String,
    pub checkpoint_shape: Vec<u64>,
    pub model_shape: Vec<u64>,
}

/// One line of the explanation: a cause and how many findings it explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
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

/// Container keys that training scripts nest weights under, most likely
/// first (used to break ties between equally large candidates).
const CONTAINER_KEYS: &[&str] = &[
    "state_dict",
    "model",
    "model_state_dict",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "ema",
];

/// Pick the state dict inside a checkpoint: the dict holding the most
/// tensors, preferring the root and then well-known container keys.
pub fn select_state_dict(checkpoint: &Checkpoint) -> (Vec<String>, StateDict) {
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for (index, tensor) in checkpoint.tensors.iter().enumerate() {
        let parent: Vec<String> = if checkpoint.format.starts_with("pytorch") {
            tensor.path[..tensor.path.len().saturating_sub(1)].to_vec()
        } else {
            Vec::new()
        };
        match groups.iter_mut().find(|(p, _)| *p == parent) {
            Some((_, members)) => members.push(index),
            None => groups.push((parent, vec![index])),
        }
    }
    let rank = |path: &Vec<String>| -> usize {
        if path.is_empty() {
            return 0;
        }
        CONTAINER_KEYS
            .iter()
            .position(|k| path.last().map(String::as_str) == Some(*k))
            .map_or(CONTAINER_KEYS.len() + 1, |p| p + 1)
    };
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(rank(&a.0).cmp(&rank(&b.0))));
    let Some((path, members)) = groups.into_iter().next() else {
        return (Vec::new(), StateDict::default());
    };
    let entries = members
        .iter()
        .map(|i| {
            let t = &checkpoint.tensors[*i];
            StateEntry {
                key: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype.clone(),
            }
        })
        .collect();
    let metadata = checkpoint
        .state_dict_metadata
        .iter()
        .find(|m| m.path == path)
        .map(|m| m.versions.clone());
    (path, StateDict { entries, metadata })
}

/// The literal `load_state_dict` on a state dict and a model.
pub struct LoadResult {
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    pub size_mismatches: Vec<SizeMismatch>,
    /// Keys PyTorch filled itself (BatchNorm `num_batches_tracked`).
    pub filled: Vec<String>,
}

#[derive(Default)]
struct ModuleNode {
    local: Vec<String>,
    children: Vec<String>,
}

/// `keys` are the model's state-dict keys (prefixed for wrappers);
/// `batchnorm_modules` likewise.
pub fn load_state_dict(
    state_dict: &StateDict,
    keys: &[(String, Vec<u64>)],
    batchnorm_modules: &[String],
) -> LoadResult {
    // Module tree from the model's keys, children in first-appearance order.
    let mut modules: HashMap<String, ModuleNode> = HashMap::new();
    let mut order: Vec<String> = vec![String::new()];
    modules.insert(String::new(), ModuleNode::default());
    for (key, _) in keys {
        let (module, local) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
        let mut prefix = String::new();
        if !module.is_empty() {
            for part in module.split('.') {
                let child = if prefix.is_empty() {
                    part.to_string()
                } else {
                    format!("{prefix}.{part}")
                };
                if !modules.contains_key(&child) {
                    if let Some(node) = modules.get_mut(&prefix) {
                        node.children.push(part.to_string());
                    }
                    modules.insert(child.clone(), ModuleNode::default());
                    order.push(child.clone());
                }
                prefix = child;
            }
        }
        if let Some(node) = modules.get_mut(module) {
            node.local.push(local.to_string());
        }
    }
    // Pre-order index: a parent's own keys come before its children's, and
    // children in registration order, which is how first appearance in
    // state_dict() orders them.
    let mut preorder: HashMap<String, usize> = HashMap::new();
    let mut stack = vec![String::new()];
    while let Some(module) = stack.pop() {
        preorder.insert(module.clone(), preorder.len());
        if let Some(node) = modules.get(&module) {
            for child in node.children.iter().rev() {
                stack.push(if module.is_empty() {
                    child.clone()
                } else {
                    format!("{module}.{child}")
                });
            }
        }
    }

    let present: HashMap<&str, &StateEntry> = state_dict
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e))
        .collect();
    // BatchNorm of version < 2 (or without metadata) fills num_batches_tracked.
    let mut filled = Vec::new();
    for module in batchnorm_modules {
        let version = state_dict
            .metadata
            .as_ref()
            .and_then(|m| m.get(module).cloned().flatten());
        let key = format!("{module}.num_batches_tracked");
        if version.is_none_or(|v| v < 2) && !present.contains_key(key.as_str()) {
            filled.push(key);
        }
    }
    let filled_set: HashSet<&str> = filled.iter().map(String::as_str).collect();

    let mut missing_keys = Vec::new();
    let mut size_mismatches = Vec::new();
    for (key, model_shape) in keys {
        match present.get(key.as_str()) {
            None => {
                if !filled_set.contains(key.as_str()) {
                    missing_keys.push(key.clone());
                }
            }
            Some(entry) => {
                // A 1-element 1-d tensor loads into a 0-d parameter.
                let scalar_compat = model_shape.is_empty() && entry.shape == [1];
                if entry.shape != *model_shape && !scalar_compat {
                    size_mismatches.push(SizeMismatch {
                        key: key.clone(),
                        checkpoint_shape: entry.shape.clone(),
                        model_shape: model_shape.clone(),
                    });
                }
            }
        }
    }

    let mut flagged: Vec<(usize, usize, String)> = Vec::new();
    for (index, entry) in state_dict.entries.iter().enumerate() {
        let mut module = String::new();
        let mut rest = entry.key.as_str();
        loop {
            let node = &modules[&module];
            match rest.split_once('.') {
                Some((first, tail)) => {
                    if node.children.iter().any(|c| c == first) {
                        module = if module.is_empty() {
                            first.to_string()
                        } else {
                            format!("{module}.{first}")
                        };
                        rest = tail;
                        continue;
                    }
                    flagged.push((preorder[&module], index, entry.key.clone()));
                }
                None => {
                    if !node.local.iter().any(|l| l == rest) {
                        flagged.push((preorder[&module], index, entry.key.clone()));
                    }
                }
            }
            break;
        }
    }
    flagged.sort();
    LoadResult {
        missing_keys,
        unexpected_keys: flagged.into_iter().map(|(_, _, k)| k).collect(),
        size_mismatches,
        filled,
    }
}

/// `torch.Size([1024, 768])`.
pub fn torch_size(shape: &[u64]) -> String {
    format!(
        "torch.Size([{}])",
        shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// PyTorch's RuntimeError text for a strict load, or `None` if it loads.
pub fn pytorch_error_text(class_name: &str, result: &LoadResult) -> Option<String> {
    let mut messages = Vec::new();
    let quote = |keys: &[String]| {
        keys.iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !result.missing_keys.is_empty() {
        messages.push(format!(
            "Missing key(s) in state_dict: {}. ",
            quote(&result.missing_keys)
        ));
    }
    if !result.unexpected_keys.is_empty() {
        messages.push(format!(
            "Unexpected key(s) in state_dict: {}. ",
            quote(&result.unexpected_keys)
        ));
    }
    for mismatch in &result.size_mismatches {
        messages.push(format!(
            "size mismatch for {}: copying a param with shape {} from checkpoint, the shape in current model is {}.",
            mismatch.key,
            torch_size(&mismatch.checkpoint_shape),
            torch_size(&mismatch.model_shape)
        ));
    }
    if messages.is_empty() {
        return None;
    }
    Some(format!(
        "Error(s) in loading state_dict for {class_name}:\n\t{}",
        messages.join("\n\t")
    ))
}

/// What a loader does to the keys before `load_state_dict`, and to the model
/// (a DDP wrapper prefixes it). Returns the state dict, the model keys, the
/// BatchNorm prefixes, the class name and notes.
pub struct Prepared {
    pub state_dict: StateDict,
    pub model_keys: Vec<(String, Vec<u64>)>,
    pub batchnorm_modules: Vec<String>,
    pub class_name: String,
    pub notes: Vec<String>,
}

pub fn prepare(loader: Loader, state_dict: &StateDict, model: &ModelSpec) -> Prepared {
    let mut notes = Vec::new();
    let mut model_keys: Vec<(String, Vec<u64>)> = model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let mut batchnorm_modules = model.batchnorm_modules.clone();
    let mut class_name = model.class_name.clone();
    let mut state_dict = state_dict.clone();
    match loader {
        Loader::Strict => {}
        Loader::CnClip => {
            // cn_clip.clip.utils.create_model: only when the FIRST key starts
            // with "module", cut 7 characters off every key and drop
            // bert.pooler; the result is a plain dict.
            if state_dict
                .entries
                .first()
                .is_some_and(|e| e.key.starts_with("module"))
            {
                let before = state_dict.entries.len();
                state_dict.entries = state_dict
                    .entries
                    .into_iter()
                    .filter(|e| !e.key.contains("bert.pooler"))
                    .map(|mut e| {
                        e.key = e.key.chars().skip(7).collect();
                        e
                    })
                    .collect();
                state_dict.metadata = None;
                notes.push(
                    "cn-clip loader: stripped the 7-character `module.` prefix from every key"
                        .to_string(),
                );
                if before != state_dict.entries.len() {
                    notes.push(format!(
                        "cn-clip loader: dropped {} bert.pooler keys",
                        before - state_dict.entries.len()
                    ));
                }
            } else {
                notes.push("cn-clip loader: the first key does not start with `module`, so create_model passes the state dict through unchanged".to_string());
            }
        }
        Loader::CnClipResume => {
            // training/main.py --resume: drop bert.pooler, resize the position
            // grid, load into the DDP-wrapped model (keys gain "module.").
            let before = state_dict.entries.len();
            state_dict
                .entries
                .retain(|e| !e.key.contains("bert.pooler"));
            state_dict.metadata = None;
            if before != state_dict.entries.len() {
                notes.push(format!(
                    "cn-clip-resume loader: dropped {} bert.pooler keys",
                    before - state_dict.entries.len()
                ));
            }
            let model_positions = model
                .tensors
                .iter()
                .find(|t| t.name == "visual.positional_embedding")
                .map(|t| t.shape.clone());
            if let Some(model_shape) = model_positions {
                if let Some(entry) = state_dict
                    .entries
                    .iter_mut()
                    .find(|e| e.key == "module.visual.positional_embedding")
                {
                    let new_len = model_shape.first().copied().unwrap_or(0);
                    if entry.shape.first().copied() != Some(new_len) && entry.shape.len() == 2 {
                        let old_grid = arch::exact_sqrt(entry.shape[0].saturating_sub(1));
                        notes.push(format!(
                            "cn-clip-resume loader: resize_pos_embed interpolates visual.positional_embedding from {} to {} positions (grid {}x{} -> {})",
                            entry.shape[0],
                            new_len,
                            old_grid.unwrap_or(0),
                            old_grid.unwrap_or(0),
                            arch::exact_sqrt(new_len.saturating_sub(1)).map_or(String::new(), |g| format!("{g}x{g}"))
                        ));
                        entry.shape = vec![new_len, entry.shape[1]];
                    }
                }
            }
            model_keys = model_keys
                .into_iter()
                .map(|(k, s)| (format!("module.{k}"), s))
                .collect();
            batchnorm_modules = batchnorm_modules
                .into_iter()
                .map(|m| format!("module.{m}"))
                .collect();
            class_name = "DistributedDataParallel".to_string();
        }
        Loader::Hf => {}
    }
    Prepared {
        state_dict,
        model_keys,
        batchnorm_modules,
        class_name,
        notes,
    }
}

/// Names and shapes with a prefix every key shares removed (`module.`), for
/// inference.
pub fn strip_common_prefix(entries: &[StateEntry]) -> (Option<String>, Vec<(String, Vec<u64>)>) {
    for prefix in [
        "module.",
        "model.module.",
        "_orig_mod.",
        "module._orig_mod.",
    ] {
        if !entries.is_empty() && entries.iter().all(|e| e.key.starts_with(prefix)) {
            let stripped = entries
                .iter()
                .map(|e| (e.key[prefix.len()..].to_string(), e.shape.clone()))
                .collect();
            return (Some(prefix.to_string()), stripped);
        }
    }
    (
        None,
        entries
            .iter()
            .map(|e| (e.key.clone(), e.shape.clone()))
            .collect(),
    )
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
    let prepared = prepare(loader, &state_dict, model);
    notes.extend(prepared.notes.iter().cloned());
    let result = if loader == Loader::Hf {
        crate::arch::hf::from_pretrained(&prepared.state_dict, model, &mut notes)
    } else {
        load_state_dict(
            &prepared.state_dict,
            &prepared.model_keys,
            &prepared.batchnorm_modules,
        )
    };
    if !result.filled.is_empty() {
        notes.push(format!(
            "PyTorch fills {} missing BatchNorm num_batches_tracked buffer(s) itself (state dict without _metadata version 2)",
            result.filled.len()
        ));
    }
    // Dtype differences are casts, not errors.
    let model_dtypes: HashMap<&str, &str> = prepared
        .model_keys
        .iter()
        .zip(&model.tensors)
        .map(|((k, _), t)| (k.as_str(), t.dtype.as_str()))
        .collect();
    let mut casts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for entry in &prepared.state_dict.entries {
        if let Some(model_dtype) = model_dtypes.get(entry.key.as_str()) {
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
    let pytorch_error = if loader == Loader::Hf {
        crate::arch::hf::error_text(&prepared.class_name, &result)
    } else {
        pytorch_error_text(&prepared.class_name, &result)
    };
    let loads = pytorch_error.is_none();
    let (common_prefix, names) = strip_common_prefix(&state_dict.entries);
    let inferred = arch::infer(&names);
    let explanation = crate::report::explain(
        &result,
        &prepared,
        model,
        &inferred,
        common_prefix.as_deref(),
        loader,
    );
    let fix = crate::report::fix(loads, model, &inferred, loader, &explanation);
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
        pytorch_error,
        notes,
        explanation,
        fix,
        inferred,
        unsafe_globals,
    }
}

/// Two checkpoints compared tensor by tensor (state dicts, prefixes kept).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointDiff {
    pub a: String,
    pub b: String,
    /// In B, not in A.
    pub added: Vec<String>,
    /// In A, not in B.
    pub removed: Vec<String>,
    pub shape_changed: Vec<SizeMismatch>,
    /// `(key, dtype in A, dtype in B)`.
    pub dtype_changed: Vec<(String, String, String)>,
    pub same: usize,
    /// Counts grouped by the first two name parts: `(group, added, removed, shape, dtype)`.
    pub groups: Vec<(String, usize, usize, usize, usize)>,
}

pub fn diff(a: &Checkpoint, b: &Checkpoint) -> CheckpointDiff {
    let (_, left) = select_state_dict(a);
    let (_, right) = select_state_dict(b);
    let right_map: HashMap<&str, &StateEntry> =
        right.entries.iter().map(|e| (e.key.as_str(), e)).collect();
    let left_map: HashMap<&str, &StateEntry> =
        left.entries.iter().map(|e| (e.key.as_str(), e)).collect();
    let mut out = CheckpointDiff {
        a: a.file.clone(),
        b: b.file.clone(),
        added: Vec::new(),
        removed: Vec::new(),
        shape_changed: Vec::new(),
        dtype_changed: Vec::new(),
        same: 0,
        groups: Vec::new(),
    };
    let mut groups: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let group_of = |key: &str| key.split('.').take(2).collect::<Vec<_>>().join(".");
    for entry in &left.entries {
        match right_map.get(entry.key.as_str()) {
            None => {
                out.removed.push(entry.key.clone());
                groups.entry(group_of(&entry.key)).or_default().1 += 1;
            }
            Some(other) => {
                let mut same = true;
                if other.shape != entry.shape {
                    out.shape_changed.push(SizeMismatch {
                        key: entry.key.clone(),
                        checkpoint_shape: entry.shape.clone(),
                        model_shape: other.shape.clone(),
                    });
                    groups.entry(group_of(&entry.key)).or_default().2 += 1;
                    same = false;
                }
                if other.dtype != entry.dtype {
                    out.dtype_changed.push((
                        entry.key.clone(),
                        entry.dtype.clone(),
                        other.dtype.clone(),
                    ));
                    groups.entry(group_of(&entry.key)).or_default().3 += 1;
                    same = false;
                }
                if same {
                    out.same += 1;
                }
            }
        }
    }
    for entry in &right.entries {
        if !left_map.contains_key(entry.key.as_str()) {
            out.added.push(entry.key.clone());
            groups.entry(group_of(&entry.key)).or_default().0 += 1;
        }
    }
    out.groups = groups
        .into_iter()
        .map(|(g, (a, r, s, d))| (g, a, r, s, d))
        .collect();
    out
}

pub fn diff_text(diff: &CheckpointDiff) -> String {
    let mut out = format!(
        "A = {}\nB = {}\n{} same, {} added in B, {} removed from A, {} shape changes, {} dtype changes\n",
        diff.a,
        diff.b,
        diff.same,
        diff.added.len(),
        diff.removed.len(),
        diff.shape_changed.len(),
        diff.dtype_changed.len()
    );
    for (group, added, removed, shape, dtype) in &diff.groups {
        out.push_str(&format!(
            "  {group:<50} +{added} -{removed} ~shape {shape} ~dtype {dtype}\n"
        ));
    }
    for change in diff.shape_changed.iter().take(20) {
        out.push_str(&format!(
            "  shape {}: {:?} -> {:?}\n",
            change.key, change.checkpoint_shape, change.model_shape
        ));
    }
    out
}
