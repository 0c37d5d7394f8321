//! The explanation when a diffusers checkpoint and the model are two
//! released structures of one class (an SD3.5 Medium transformer checked
//! with SD3 Medium's config): the fields that choose modules by name or by
//! layer index (`qk_norm`, `dual_attention_layers`), which the zoo holds
//! fixed per structure, decide which tensors exist and how wide the
//! shared ones are, so the findings the size fields leave are theirs. The
//! cause names both structures and the fields that differ, with the keys
//! the checkpoint's structure accounts for.

use super::explain::{counts_suffix, Findings};
use super::{display, Cause};
use crate::arch::{zoo, ModelSpec};
use crate::state_dict::LoadResult;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::Value;

/// A list of consecutive layer indices is written as its ends.
fn compact(value: &Value) -> String {
    if let Some(items) = value.as_array() {
        let numbers: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
        let consecutive = numbers.windows(2).all(|pair| pair[1] == pair[0] + 1);
        if numbers.len() == items.len() && numbers.len() > 3 && consecutive {
            return format!("[{}, …, {}]", numbers[0], numbers[numbers.len() - 1]);
        }
    }
    display(value)
}

/// A config's value of a structure field, or the structure's own when the
/// config leaves it out (a config.json without `dual_attention_layers`).
fn value_of(config: &Value, fixed: &serde_json::Map<String, Value>, field: &str) -> Value {
    match config.get(field) {
        Some(value) if !value.is_null() => value.clone(),
        _ => fixed.get(field).cloned().unwrap_or(Value::Null),
    }
}

/// The structure cause, with the keys it accounts for, when the checkpoint
/// is another released structure of the model's diffusers class.
pub(super) fn variant_cause(
    f: &Findings,
    counted: &LoadResult,
    attributed: &HashSet<String>,
    checkpoint_model: &ModelSpec,
) -> Option<(Cause, HashSet<String>)> {
    if f.model.family != "diffusers" || f.inferred.family != "diffusers" {
        return None;
    }
    let class = f.model.config.get("_class_name")?.as_str()?;
    if f.inferred.config.get("_class_name")?.as_str()? != class {
        return None;
    }
    let model_variant = f.model.config.get("_ckptcheck_variant")?.as_str()?;
    let checkpoint_variant = f.inferred.config.get("_ckptcheck_variant")?.as_str()?;
    if model_variant == checkpoint_variant {
        return None;
    }
    let model_fixed = zoo::diffusers::variant_fixed(class, model_variant)?;
    let checkpoint_fixed = zoo::diffusers::variant_fixed(class, checkpoint_variant)?;
    let mut fields: Vec<&String> = checkpoint_fixed.keys().collect();
    fields.extend(
        model_fixed
            .keys()
            .filter(|k| !checkpoint_fixed.contains_key(*k)),
    );
    let differing: Vec<(String, Value, Value)> = fields
        .into_iter()
        .filter_map(|field| {
            let ours = value_of(&f.inferred.config, checkpoint_fixed, field);
            let theirs = value_of(&f.model.config, model_fixed, field);
            (ours != theirs).then(|| (field.clone(), ours, theirs))
        })
        .collect();
    if differing.is_empty() {
        return None;
    }
    // The keys the checkpoint's own structure accounts for: unexpected
    // ones it has, missing ones it lacks, and sizes it gives as the file
    // has them, among what no size field explained.
    let theirs: HashMap<&str, &Vec<u64>> = checkpoint_model
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.shape))
        .collect();
    let open = |key: &String| !attributed.contains(key);
    let unexpected: Vec<&String> = counted
        .unexpected_keys
        .iter()
        .filter(|k| open(k) && theirs.contains_key(f.bare(k).as_str()))
        .collect();
    let missing: Vec<&String> = counted
        .missing_keys
        .iter()
        .filter(|k| open(k) && !theirs.contains_key(f.bare(k).as_str()))
        .collect();
    let mismatched: Vec<&String> = counted
        .size_mismatches
        .iter()
        .filter(|m| {
            open(&m.key)
                && theirs
                    .get(f.bare(&m.key).as_str())
                    .is_some_and(|shape| **shape == m.checkpoint_shape)
        })
        .map(|m| &m.key)
        .collect();
    let keys: HashSet<String> = missing
        .iter()
        .chain(&unexpected)
        .chain(&mismatched)
        .map(|k| (*k).clone())
        .collect();
    let side = |values: &dyn Fn(&(String, Value, Value)) -> &Value| {
        differing
            .iter()
            .map(|entry| format!("{} {}", entry.0, compact(values(entry))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut cause = Cause::new(
        "diffusers-structure",
        &differing
            .iter()
            .map(|entry| entry.0.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        format!(
            "structure: the checkpoint is {class} as {checkpoint_variant} ({}), the model {model_variant} ({}){}",
            side(&|entry| &entry.1),
            side(&|entry| &entry.2),
            counts_suffix(missing.len(), unexpected.len(), mismatched.len())
        ),
    );
    cause.checkpoint = Value::String(checkpoint_variant.to_string());
    cause.model = Value::String(model_variant.to_string());
    cause.missing = missing.len();
    cause.unexpected = unexpected.len();
    cause.size_mismatches = mismatched.len();
    Some((cause, keys))
}
