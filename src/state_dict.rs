//! The state dict as `load_state_dict` receives it: which dict inside a
//! checkpoint holds the weights (`select_state_dict`), its entries and
//! `_metadata`, and the plain data of a load's outcome (`LoadResult`) that
//! loaders, the check and the diagnosis all speak. Knows no model family
//! and no loader.

use crate::checkpoint::Checkpoint;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// The literal `load_state_dict` on a state dict and a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadResult {
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    pub size_mismatches: Vec<SizeMismatch>,
    /// Keys PyTorch filled itself (BatchNorm `num_batches_tracked`).
    pub filled: Vec<String>,
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

/// The dicts of a checkpoint that hold tensors: the path to each and its
/// tensors' indices, the most tensors first, ties broken by the root and
/// then well-known container keys.
pub fn tensor_groups(checkpoint: &Checkpoint) -> Vec<(Vec<String>, Vec<usize>)> {
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
    groups
}

/// Pick the state dict inside a checkpoint: the dict holding the most
/// tensors, preferring the root and then well-known container keys.
pub fn select_state_dict(checkpoint: &Checkpoint) -> (Vec<String>, StateDict) {
    match tensor_groups(checkpoint).into_iter().next() {
        Some((path, members)) => (path.clone(), state_dict_of(checkpoint, &path, &members)),
        None => (Vec::new(), StateDict::default()),
    }
}

/// The state dict at `path` (keys from the root), when a dict there holds
/// tensors.
pub fn state_dict_at(checkpoint: &Checkpoint, path: &[String]) -> Option<StateDict> {
    tensor_groups(checkpoint)
        .into_iter()
        .find(|(group, _)| group == path)
        .map(|(group, members)| state_dict_of(checkpoint, &group, &members))
}

fn state_dict_of(checkpoint: &Checkpoint, path: &[String], members: &[usize]) -> StateDict {
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
    StateDict { entries, metadata }
}

/// Names and shapes with a prefix every key shares removed (`module.`), for
/// inference.
pub fn strip_common_prefix(entries: &[StateEntry]) -> (Option<String>, Vec<(String, Vec<u64>)>) {
    // Longest first: `module._orig_mod.` (a compiled model inside DDP) is
    // one wrapper pair, not `module.` plus a leftover.
    for prefix in [
        "module._orig_mod.",
        "_orig_mod.module.",
        "model.module.",
        "module.",
        "_orig_mod.",
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
