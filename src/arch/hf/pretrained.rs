//! What transformers' `from_pretrained` knows of each class, as data for
//! `loader::hf`: conversion_mapping.py renames, the base-model prefix, tied
//! weights, ignored keys and non-persistent buffers.

use super::*;

// ---------------------------------------------------------------------------
// What from_pretrained knows of each class (data for loader::hf)
// ---------------------------------------------------------------------------

/// conversion_mapping.py "legacy": appended for every model.
pub(super) const LEGACY: &[KeyRename] = &[
    KeyRename::rename("LayerNorm.gamma", "LayerNorm.weight"),
    KeyRename::rename("LayerNorm.beta", "LayerNorm.bias"),
    KeyRename::rename(".weight_g", ".parametrizations.weight.original0"),
    KeyRename::rename(".weight_v", ".parametrizations.weight.original1"),
    KeyRename::rename_at_start("model.language_model.model", "model.language_model"),
    KeyRename::rename_at_start("language_model.model.model", "model.language_model"),
];

/// What `from_pretrained` needs to know of this model's class: its renames
/// (conversion_mapping.py), base-model prefix, tied weights and the keys it
/// ignores. A model the zoo did not build (a dump has its own) gets the
/// legacy renames only.
pub fn pretrained_class(model: &ModelSpec) -> PretrainedClass {
    if model.family == "dump" {
        return dumped_class(model);
    }
    if let Some(facts) = zoo_facts(model) {
        let mut renames = facts.renames;
        renames.extend_from_slice(LEGACY);
        // modeling_utils.py `_adjust_missing_and_unexpected_keys`: a model
        // with a `rotary_emb.inv_freq` buffer ignores old checkpoints'
        // per-layer copies, one with a `position_ids` buffer any
        // `position_ids` (once persistent, now mostly not).
        let (mut inv_freq, mut position_ids) = (false, false);
        for name in facts
            .non_persistent
            .iter()
            .copied()
            .chain(model.tensors.iter().map(|t| t.name.as_str()))
        {
            inv_freq |= name.ends_with("rotary_emb.inv_freq");
            position_ids |= name.ends_with("position_ids");
        }
        let mut adjusted = Vec::new();
        if inv_freq {
            adjusted.push(IgnoreKey::Regex(r"rotary_emb\.inv_freq"));
        }
        if position_ids {
            adjusted.push(IgnoreKey::Regex(r"(^|\.)position_ids$"));
        }
        let ignore_unexpected = facts
            .non_persistent
            .iter()
            .copied()
            .map(IgnoreKey::BufferPattern)
            .chain(
                facts
                    .ignore_unexpected
                    .iter()
                    .copied()
                    .map(IgnoreKey::Regex),
            )
            .chain(adjusted)
            .collect();
        return PretrainedClass {
            renames,
            base_model_prefix: model.base_model_prefix.clone(),
            tied: facts.tied,
            ignore_unexpected,
            merges: facts.merges,
            unmodeled: facts.unmodeled,
        };
    }
    PretrainedClass {
        renames: LEGACY.to_vec(),
        ..PretrainedClass::default()
    }
}

/// The zoo's facts, for a model the zoo built.
fn zoo_facts(model: &ModelSpec) -> Option<super::super::zoo::PretrainedFacts> {
    zoo_model_type(&model.config)?;
    super::super::zoo::pretrained_facts(model)
}

/// What a model dump of a `PreTrainedModel` tells from_pretrained's rules:
/// its base-model prefix, the tensors it ties (the same tensor under two
/// names) and its non-persistent buffers; the legacy renames apply to every
/// class.
fn dumped_class(model: &ModelSpec) -> PretrainedClass {
    let tied = model.config["tied"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| {
                    Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    PretrainedClass {
        renames: LEGACY.to_vec(),
        base_model_prefix: model.base_model_prefix.clone(),
        tied,
        ignore_unexpected: model
            .non_persistent
            .iter()
            .map(|buffer| IgnoreKey::Buffer(buffer.clone()))
            .collect(),
        ..PretrainedClass::default()
    }
}

/// `(target, source)` of the weights this model ties (`tie_word_embeddings`):
/// transformers does not report one of a pair missing when the other loads.
pub fn tied_weights(model: &ModelSpec) -> Vec<(String, String)> {
    pretrained_class(model).tied
}

/// The class's `_keys_to_ignore_on_load_unexpected` patterns.
pub fn ignore_unexpected(model: &ModelSpec) -> Vec<String> {
    zoo_facts(model)
        .map(|facts| {
            facts
                .ignore_unexpected
                .iter()
                .map(|pattern| pattern.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Buffers the model has but does not save (`persistent=False`); stale
/// copies of them in a checkpoint are ignored, not unexpected.
pub fn non_persistent_buffers(model: &ModelSpec) -> Vec<String> {
    if let Some(facts) = zoo_facts(model) {
        // Patterns with `*` for a layer index, made names for each layer.
        return expand_buffer_patterns(&facts.non_persistent, model);
    }
    Vec::new()
}

/// A zoo class's non-persistent buffer patterns as names, one per layer the
/// model has (the layer indices its tensors use).
fn expand_buffer_patterns(patterns: &[&str], model: &ModelSpec) -> Vec<String> {
    let mut names = Vec::new();
    for pattern in patterns {
        let Some((before, after)) = pattern.split_once(".*.") else {
            names.push(pattern.to_string());
            continue;
        };
        let mut seen = Vec::new();
        for tensor in &model.tensors {
            let Some(rest) = tensor
                .name
                .strip_prefix(before)
                .and_then(|r| r.strip_prefix('.'))
            else {
                continue;
            };
            let index = rest.split('.').next().unwrap_or("");
            if !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
                && !seen.contains(&index)
            {
                seen.push(index);
                names.push(format!("{before}.{index}.{after}"));
            }
        }
    }
    names
}
