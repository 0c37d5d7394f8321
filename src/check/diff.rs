//! `ckptcheck diff A B`: two checkpoints' state dicts compared key by key
//! (prefixes kept), grouped by the first two name parts.

use crate::checkpoint::Checkpoint;
use crate::state_dict::{select_state_dict, SizeMismatch, StateEntry};
use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;
use std::collections::BTreeMap;

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
