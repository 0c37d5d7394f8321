//! The `hf` loader: what transformers 5.x `Class.from_pretrained` does with
//! a checkpoint's keys (modeling_utils.py / core_model_loading.py). Every
//! key goes through the class's renames (`arch::PretrainedClass`, from
//! conversion_mapping.py: legacy `LayerNorm.gamma`/`beta`, ViT's pre-5.0
//! layout, CLIP's tower prefixes), then gains or loses the base-model prefix
//! when that makes it a model key. The load is then judged as
//! `from_pretrained` reports it (`Judgement::FromPretrained`): tied weights,
//! ignored stale buffers, only size mismatches raise.
//!
//! Not covered: quantized checkpoints, remote code, a user `key_mapping`,
//! and `ignore_mismatched_sizes=True` (the verdict is for the default).

use super::{Judgement, Prepared};
use crate::arch::{self, KeyRename, ModelSpec};
use crate::state_dict::StateDict;
use rustc_hash::FxHashSet as HashSet;

pub fn prepare(state_dict: &StateDict, model: &ModelSpec) -> Prepared {
    let class = arch::hf::pretrained_class(model);
    let mut prepared = Prepared::unchanged(state_dict, model);
    let expected: HashSet<&str> = model.tensors.iter().map(|t| t.name.as_str()).collect();
    let base = class.base_model_prefix.as_str();
    let (mut renamed_count, mut prefix_added, mut prefix_stripped) = (0usize, 0usize, 0usize);
    for entry in &mut prepared.state_dict.entries {
        let mut renamed = rename_key(&entry.key, &class.renames, base, &expected);
        if !expected.contains(renamed.as_str()) && expected.contains(entry.key.as_str()) {
            renamed = rename_key(&entry.key, &[], base, &expected);
        }
        if expected.contains(renamed.as_str()) && renamed != entry.key {
            if renamed == format!("{base}.{}", entry.key) {
                prefix_added += 1;
            } else if entry.key.len() == renamed.len() + base.len() + 1
                && entry.key.ends_with(renamed.as_str())
            {
                prefix_stripped += 1;
            } else {
                renamed_count += 1;
            }
        }
        entry.key = renamed;
    }
    // Merged keys then gain or lose the base-model prefix like any other.
    let (merged_from, merged_into) =
        arch::zoo::merge::merge_weights(&mut prepared.state_dict.entries, &class.merges, &|key| {
            rename_key(key, &[], base, &expected)
        });
    let notes = &mut prepared.notes;
    if merged_into > 0 {
        notes.push(format!(
            "from_pretrained merges {merged_from} per-expert weight(s) into {merged_into} tensor(s) (transformers' weight converters)"
        ));
    }
    if !class.unmodeled.is_empty() {
        notes.push(format!(
            "from_pretrained also converts keys in ways ckptcheck does not model ({}); the verdict for the keys they touch may differ",
            class.unmodeled.join("; ")
        ));
    }
    if prefix_added > 0 {
        notes.push(format!(
            "from_pretrained adds the base-model prefix `{base}.` to {prefix_added} key(s)"
        ));
    }
    if prefix_stripped > 0 {
        notes.push(format!(
            "from_pretrained strips the base-model prefix `{base}.` from {prefix_stripped} key(s)"
        ));
    }
    if renamed_count > 0 {
        notes.push(format!(
            "from_pretrained renames {renamed_count} key(s) from an older layout (transformers' weight conversion mapping)"
        ));
    }
    prepared.judgement = Judgement::FromPretrained {
        tied: class.tied,
        ignore_unexpected: class.ignore_unexpected,
    };
    prepared
}

/// The state dict's entries merge as transformers merges them.
impl arch::zoo::merge::Entry for crate::state_dict::StateEntry {
    fn key(&self) -> &str {
        &self.key
    }
    fn shape(&self) -> &[u64] {
        &self.shape
    }
    fn remade(&self, key: String, shape: Vec<u64>) -> Self {
        crate::state_dict::StateEntry {
            key,
            shape,
            dtype: self.dtype.clone(),
        }
    }
}

/// core_model_loading.py `rename_source_key`: every rename in turn, then
/// the base-model prefix stripped or added when that names a model key.
fn rename_key(key: &str, renames: &[KeyRename], base: &str, expected: &HashSet<&str>) -> String {
    let mut renamed = key.to_string();
    for rename in renames {
        if let Some(next) = rename.apply(&renamed) {
            renamed = next;
        }
    }
    if base.is_empty() {
        return renamed;
    }
    if let Some(stripped) = renamed
        .strip_prefix(base)
        .and_then(|after| after.strip_prefix('.'))
    {
        if expected.contains(stripped) {
            return stripped.to_string();
        }
    }
    let added = format!("{base}.{renamed}");
    if expected.contains(added.as_str()) {
        return added;
    }
    renamed
}
