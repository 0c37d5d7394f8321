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

/// conversion_mapping.py "ViTModel": the pre-5.0 layout that every ViT
/// checkpoint on the Hub still uses (save_pretrained writes it back).
pub(super) const VIT_RENAMES: &[(&str, &str)] = &[
    ("encoder.layer.", "layers."),
    ("attention.query", "q_proj"),
    ("attention.key", "k_proj"),
    ("attention.value", "v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
];

/// What `from_pretrained` needs to know of this model's class: its renames
/// (conversion_mapping.py), base-model prefix, tied weights and the keys it
/// ignores. Classes that do not resolve get the legacy renames only.
pub fn pretrained_class(model: &ModelSpec) -> PretrainedClass {
    if model.family == "dump" {
        return dumped_class(model);
    }
    if let Some(facts) = zoo_facts(model) {
        let mut renames = facts.renames;
        renames.extend_from_slice(LEGACY);
        return PretrainedClass {
            renames,
            base_model_prefix: model.base_model_prefix.clone(),
            tied: facts.tied,
            ignore_unexpected: facts
                .non_persistent
                .into_iter()
                .map(IgnoreKey::BufferPattern)
                .chain(facts.ignore_unexpected.into_iter().map(IgnoreKey::Regex))
                .collect(),
            merges: facts.merges,
            unmodeled: facts.unmodeled,
        };
    }
    let Ok(resolved) = resolve(&model.config) else {
        return PretrainedClass {
            renames: LEGACY.to_vec(),
            ..PretrainedClass::default()
        };
    };
    let base = base_model_prefix(resolved.class, resolved.family);
    let root = resolved.head == Head::Base;
    let scoped = |scope: &'static str| {
        Some(RenameScope {
            scope,
            base_model_prefix: base,
        })
    };
    let mut renames = Vec::new();
    match resolved.family {
        Family::Vit => {
            let scope = if root { None } else { scoped("") };
            for (find, replace) in VIT_RENAMES {
                renames.push(KeyRename::rename(find, replace).within(scope));
            }
        }
        Family::Clip => {
            if root {
                renames.push(KeyRename::remove_prefix("text_model").within(scoped("text_model")));
            }
            renames.push(KeyRename::remove_prefix("vision_model").within(scoped("vision_model")));
        }
        Family::ClipText => renames.push(KeyRename::remove_prefix("text_model").within(if root {
            None
        } else {
            scoped("")
        })),
        Family::ClipVision => {
            renames.push(KeyRename::remove_prefix("vision_model").within(if root {
                None
            } else {
                scoped("")
            }))
        }
        _ => {}
    }
    renames.extend_from_slice(LEGACY);
    let mut ignore_unexpected = Vec::new();
    if resolved.family == Family::Gpt2 {
        // _keys_to_ignore_on_load_unexpected of GPT2's classes.
        ignore_unexpected.push(IgnoreKey::ClassPattern("attn.bias"));
        ignore_unexpected.push(IgnoreKey::ClassPattern("crossattention.bias"));
    }
    if matches!(
        resolved.family,
        Family::Bert | Family::Roberta | Family::Clip | Family::ClipText | Family::ClipVision
    ) {
        ignore_unexpected.push(IgnoreKey::Named("position_ids"));
    }
    if matches!(
        resolved.family,
        Family::Llama | Family::Mistral | Family::Qwen2
    ) {
        ignore_unexpected.push(IgnoreKey::Containing("rotary_emb.inv_freq"));
    }
    PretrainedClass {
        renames,
        base_model_prefix: base.to_string(),
        tied: tied_pairs(model, &resolved).unwrap_or_default(),
        ignore_unexpected,
        ..PretrainedClass::default()
    }
}

/// The zoo's facts, for a model the zoo built (a model type no
/// hand-written family builds).
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
    pretrained_class(model)
        .ignore_unexpected
        .iter()
        .filter_map(|rule| match rule {
            IgnoreKey::ClassPattern(pattern) => Some(pattern.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) fn tied_pairs(model: &ModelSpec, resolved: &Resolved) -> Result<Vec<(String, String)>> {
    // Rebuild to learn the pairs; the spec keeps only their targets.
    let mut b = TensorListBuilder::default();
    let conf = Conf {
        value: &model.config,
        path: "",
    };
    Ok(match resolved.family {
        Family::Bert | Family::Roberta => {
            build_bert(&mut b, &bert_config(&conf, resolved.family)?, resolved.head)?
        }
        Family::Llama | Family::Mistral | Family::Qwen2 => build_decoder(
            &mut b,
            &decoder_config(&conf, resolved.family)?,
            resolved.head,
        ),
        Family::Gpt2 => build_gpt2(&mut b, &gpt2_config(&conf)?, resolved.head),
        _ => Vec::new(),
    })
}

/// Buffers the model has but does not save (`persistent=False`); stale
/// copies of them in a checkpoint are ignored, not unexpected.
pub fn non_persistent_buffers(model: &ModelSpec) -> Vec<String> {
    if let Some(facts) = zoo_facts(model) {
        // Patterns with `*` for a layer index, made names for each layer.
        return expand_buffer_patterns(&facts.non_persistent, model);
    }
    let Ok(resolved) = resolve(&model.config) else {
        return Vec::new();
    };
    let base = base_model_prefix(resolved.class, resolved.family);
    let nested = resolved.head != Head::Base;
    let p = |name: &str| {
        if nested {
            format!("{base}.{name}")
        } else {
            name.to_string()
        }
    };
    match resolved.family {
        Family::Bert | Family::Roberta => {
            vec![p("embeddings.position_ids"), p("embeddings.token_type_ids")]
        }
        Family::Llama | Family::Mistral | Family::Qwen2 => {
            vec![p("rotary_emb.inv_freq"), p("rotary_emb.original_inv_freq")]
        }
        Family::Clip if resolved.head == Head::Base => vec![
            "text_model.embeddings.position_ids".to_string(),
            "vision_model.embeddings.position_ids".to_string(),
        ],
        Family::Clip => vec!["vision_model.embeddings.position_ids".to_string()],
        Family::ClipText | Family::ClipVision => {
            let tower = if resolved.family == Family::ClipText {
                "text_model"
            } else {
                "vision_model"
            };
            if nested {
                vec![format!("{tower}.embeddings.position_ids")]
            } else {
                vec!["embeddings.position_ids".to_string()]
            }
        }
        Family::Gpt2 | Family::Vit => Vec::new(),
    }
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
