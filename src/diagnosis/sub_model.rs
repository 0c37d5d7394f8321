//! A composite (LLaVA, PaliGemma) checked against a config whose
//! sub-config names another sub-model than the checkpoint holds: a Qwen2
//! LLaVA's file against a Mistral LLaVA's config has its language model's
//! q/k/v biases unexpected. Each type the zoo builds in that place (the
//! composite's default and those sub_models.py checked) is built for the
//! same config with only the sub-config's `model_type` changed; where the
//! checkpoint's tensors under the module are exactly one's (names and
//! shapes), the cause is that name, never a guess from a few keys.

use super::explain::{counts_suffix, Findings};
use super::Cause;
use crate::arch::ModelSpec;
use crate::state_dict::LoadResult;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};

type Listing = BTreeSet<(String, Vec<u64>)>;

/// The cause and the keys it accounts for, or None.
pub(super) fn sub_model_cause(
    f: &Findings,
    counted: &LoadResult,
    checkpoint_model: Option<&ModelSpec>,
) -> Option<(Cause, HashSet<String>)> {
    if f.model.family != "hf" {
        return None;
    }
    let model_type = f.model.config.get("model_type")?.as_str()?;
    let class = f.model.class_name.as_str();
    for (sub_config, path, given, types) in
        crate::arch::zoo::sub_model_choices(&f.model.config, model_type, class)
    {
        let prefix = format!("{path}.");
        let under = |key: &str| f.bare(key).starts_with(&prefix);
        let missing = counted.missing_keys.iter().filter(|k| under(k)).count();
        let unexpected = counted.unexpected_keys.iter().filter(|k| under(k)).count();
        let mismatched = counted
            .size_mismatches
            .iter()
            .filter(|m| under(&m.key))
            .count();
        if missing + unexpected + mismatched == 0 {
            continue;
        }
        let checkpoint: Listing = f
            .prepared
            .state_dict
            .entries
            .iter()
            .filter(|entry| under(&entry.key))
            .map(|entry| (f.bare(&entry.key), entry.shape.clone()))
            .collect();
        if checkpoint.is_empty() {
            continue;
        }
        let matching: Vec<&str> = types
            .iter()
            .copied()
            .filter(|candidate| *candidate != given)
            .filter(|candidate| {
                listing_with(f, sub_config, candidate, model_type, class, &prefix)
                    .is_some_and(|theirs| theirs == checkpoint)
            })
            .collect();
        // No type builds the checkpoint's tensors with the config's sizes
        // (a Flan-T5 BLIP-2 against the OPT config: T5 reads none of OPT's
        // fields): the sub-model inference read from the tensors, where
        // its model has exactly them, with the sub-config it read.
        let (matching, read) = if matching.is_empty() {
            let read = checkpoint_model.and_then(|model| {
                read_from_tensors(f, model, sub_config, &given, &types, &prefix, &checkpoint)
            });
            match read {
                Some((read_type, sub)) => (vec![read_type], Some(sub)),
                None => continue,
            }
        } else {
            (matching, None)
        };
        let first = matching[0];
        let mut keys: HashSet<String> = HashSet::new();
        keys.extend(counted.missing_keys.iter().filter(|k| under(k)).cloned());
        keys.extend(counted.unexpected_keys.iter().filter(|k| under(k)).cloned());
        keys.extend(
            counted
                .size_mismatches
                .iter()
                .filter(|m| under(&m.key))
                .map(|m| m.key.clone()),
        );
        let quoted: Vec<String> = matching.iter().map(|t| format!("{t:?}")).collect();
        let (named, build) = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => {
                (format!("{} or {last}", rest.join(", ")), "build (alike)")
            }
            _ => (quoted.join(""), "builds"),
        };
        let text = match read {
            None => format!(
                "sub-model (\"{sub_config}.model_type\"): the checkpoint's `{path}` is exactly what {named} {build} there for these sizes ({} tensors); the config names {given:?}: set \"{sub_config}\": {{\"model_type\": {first:?}}}{}",
                checkpoint.len(),
                counts_suffix(missing, unexpected, mismatched)
            ),
            Some(sub) => format!(
                "sub-model (\"{sub_config}.model_type\"): the checkpoint's `{path}` is exactly what {first:?} builds there with the sizes its tensors show ({} tensors); the config names {given:?}: set \"{sub_config}\": {sub}{}",
                checkpoint.len(),
                counts_suffix(missing, unexpected, mismatched)
            ),
        };
        let cause = Cause {
            cause: "sub-model".to_string(),
            field: format!("{sub_config}.model_type"),
            checkpoint: Value::from(first),
            model: Value::from(given),
            missing,
            unexpected,
            size_mismatches: mismatched,
            text,
        };
        return Some((cause, keys));
    }
    None
}

/// The type the inference from the tensors alone reads in the place (one
/// of `types`, not the config's), with the sub-config it read, where the
/// inferred config's model (`model`) has exactly the checkpoint's tensors
/// there.
fn read_from_tensors<'a>(
    f: &Findings,
    model: &ModelSpec,
    sub_config: &str,
    given: &str,
    types: &[&'a str],
    prefix: &str,
    checkpoint: &Listing,
) -> Option<(&'a str, Value)> {
    let sub = f.inferred.config.get(sub_config)?;
    let read = sub.get("model_type")?.as_str()?;
    let read = *types.iter().find(|t| **t == read && **t != given)?;
    // Tied weights save_pretrained leaves out (T5's `encoder.embed_tokens`
    // is its `shared`) are not asked of the file.
    let theirs: Listing = model
        .tensors
        .iter()
        .filter(|t| t.name.starts_with(prefix))
        .map(|t| (t.name.clone(), t.shape.clone()))
        .filter(|named| checkpoint.contains(named) || !model.tied_keys.contains(&named.0))
        .collect();
    (theirs == *checkpoint).then(|| (read, sub.clone()))
}

/// The tensors under `prefix` of the model the config builds with the
/// sub-config's `model_type` set to `candidate`; None where the zoo does
/// not build it.
fn listing_with(
    f: &Findings,
    sub_config: &str,
    candidate: &str,
    model_type: &str,
    class: &str,
    prefix: &str,
) -> Option<Listing> {
    let mut config = f.model.config.clone();
    let sub = config.get_mut(sub_config)?.as_object_mut()?;
    sub.insert("model_type".to_string(), Value::from(candidate));
    let model = crate::arch::zoo::from_config_value(&config, model_type, Some(class)).ok()?;
    Some(
        model
            .tensors
            .iter()
            .filter(|t| t.name.starts_with(prefix))
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect(),
    )
}
