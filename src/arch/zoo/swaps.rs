//! A composite model (LLaVA, PaliGemma, BLIP-2) whose config names another
//! sub-model than the composite's default: llava-v1.6-mistral's
//! `text_config` names `mistral` where LLaVA's default is LLaMA. transformers
//! builds the sub-model from the sub-config alone
//! (`AutoModel.from_config(config.text_config)`), so the composite is its
//! own modules around that type's own. sub_models.py checked, type by type,
//! that the library's state dict is exactly the composite's description
//! with the sub-model's subtree replaced by that type's description, and
//! lists the types it checked (`swaps`: `[sub-config, module path,
//! [[model type, class], ...]]`); a type it did not check is refused, never
//! guessed.

use super::{description, field_name, model_type, read_path, Fields};
use crate::arch::{ExpectedTensor, ModelSpec};
use crate::error::{err, ErrorKind, Result};
use serde_json::Value;
use std::sync::OnceLock;

/// The sub-model built from its own description, to put in place of the
/// composite's default subtree at `prefix` (`model.language_model.`).
pub(super) struct Graft {
    pub sub_config: &'static str,
    pub prefix: String,
    pub model: ModelSpec,
}

/// The composite's default model type for a sub-config (`llama` for LLaVA's
/// `text_config`), from the data's sub-config facts.
fn default_sub_model(composite_type: &str, sub_config: &str) -> Option<&'static str> {
    model_type(composite_type)?
        .sub_configs?
        .get(sub_config)?
        .get("model_type")?
        .as_str()
}

/// A model type checked in a composite's place: its type, the class
/// transformers builds there, and its config class's aliases
/// (`{"hidden_size": "d_model"}`).
#[derive(Clone, Copy)]
pub(super) struct Listed {
    pub model_type: &'static str,
    pub class: &'static str,
    aliases: Option<&'static Value>,
}

/// The `swaps` entries of a description: `(sub-config, module path,
/// [listed])`.
pub(super) fn swaps_of(desc: &'static Value) -> Vec<(&'static str, &'static str, Vec<Listed>)> {
    desc.get("swaps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let listed = entry
                .get(2)?
                .as_array()?
                .iter()
                .filter_map(|item| {
                    Some(Listed {
                        model_type: item.get(0)?.as_str()?,
                        class: item.get(1)?.as_str()?,
                        aliases: item.get(2),
                    })
                })
                .collect();
            Some((entry.get(0)?.as_str()?, entry.get(1)?.as_str()?, listed))
        })
        .collect()
}

/// The sub-configs of `config` that name another model type than the
/// composite's default, as `(sub-config, path, listed)`; an error for a
/// type sub_models.py did not check.
fn swapped(
    config: &Value,
    desc: &'static Value,
    composite_type: &str,
    class: &str,
) -> Result<Vec<(&'static str, &'static str, Listed)>> {
    let mut found = Vec::new();
    for (sub_config, path, listed) in swaps_of(desc) {
        let Some(given) = read_path(config, sub_config)
            .and_then(|sub| sub.get("model_type"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(default) = default_sub_model(composite_type, sub_config) else {
            continue;
        };
        if given == default {
            continue;
        }
        match listed.iter().find(|item| item.model_type == given) {
            Some(item) => found.push((sub_config, path, *item)),
            None => {
                let names: Vec<&str> = listed.iter().map(|item| item.model_type).collect();
                return Err(err(
                    ErrorKind::BadConfig,
                    format!(
                        "config field \"{sub_config}.model_type\" names {given:?}; ckptcheck's description of {class} holds for {composite_type}'s default {default:?} and for the sub-models checked against transformers in its place: {}",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(found)
}

/// The composite's config with each swapped sub-config removed: the
/// composite's own checks (fixed fields, head multiples, names) hold for
/// its default sub-model, and the sub-model's own description checks its
/// sub-config.
pub(super) fn without_swapped(config: &Value, grafts: &[Graft]) -> Value {
    let mut config = config.clone();
    if let Some(object) = config.as_object_mut() {
        for graft in grafts {
            object.remove(graft.sub_config);
        }
    }
    config
}

/// Each swapped sub-model built from its own description, and the config
/// with each swapped sub-config's fields filled in as that description
/// resolves them (the composite reads some outside the sub-model: the LM
/// head's `text_config.vocab_size`, where config.json leaves it to the
/// sub-model type's default).
pub(super) fn grafts(
    config: &Value,
    desc: &'static Value,
    composite_type: &str,
    class: &str,
) -> Result<(Vec<Graft>, Value)> {
    let mut merged = config.clone();
    let mut grafts = Vec::new();
    for (sub_config, path, listed) in swapped(config, desc, composite_type, class)? {
        let sub = read_path(config, sub_config)
            .cloned()
            .unwrap_or(Value::Null);
        let model =
            super::build(&sub, listed.model_type, Some(listed.class), false).map_err(|e| {
                err(
                    e.kind,
                    format!(
                        "{sub_config} ({}, {}): {}",
                        listed.model_type, listed.class, e.message
                    ),
                )
            })?;
        let mut resolved = model.config.clone();
        if let Some(object) = resolved.as_object_mut() {
            // The composite reads the common name (`hidden_size`), the
            // sub-config class stores its own (`d_model`).
            for (alias, field) in listed
                .aliases
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(value) = field.as_str().and_then(|field| object.get(field)).cloned() {
                    object.entry(alias.clone()).or_insert(value);
                }
            }
        }
        if let Some(object) = merged.as_object_mut() {
            object.insert(sub_config.to_string(), resolved);
        }
        grafts.push(Graft {
            sub_config,
            prefix: format!("{path}."),
            model,
        });
    }
    Ok((grafts, merged))
}

/// A grafted tensor as the composite lists it: its name under the module
/// path, the fields it depends on named as the composite names them
/// (`text_config.hidden_size`; one the composite does not know is left
/// out of the explanation, not of the shape).
pub(super) fn grafted_tensor(
    graft: &Graft,
    tensor: &ExpectedTensor,
    composite: &'static Value,
) -> ExpectedTensor {
    let rename = |fields: &[&'static str]| -> Vec<&'static str> {
        fields
            .iter()
            .map(|field| field_name(composite, &format!("{}.{field}", graft.sub_config)))
            .filter(|field| !field.is_empty())
            .collect()
    };
    ExpectedTensor {
        name: format!("{}{}", graft.prefix, tensor.name),
        shape: tensor.shape.clone(),
        dtype: tensor.dtype.clone(),
        depends_on: rename(&tensor.depends_on),
        exists_if: rename(&tensor.exists_if),
    }
}

/// Resolve every top-level field of a sub-model's description (the
/// composite may read any of them), as sub_models.py's Python twin
/// resolves the whole description: a field that fails to resolve is left
/// to the composite's default.
pub(super) fn resolve_all(fields: &mut Fields) {
    let names: Vec<&'static str> = fields
        .desc
        .get("fields")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, _)| name.as_str())
        .filter(|name| !name.contains('.') && *name != "num_labels")
        .collect();
    for name in names {
        let _ = fields.value_at(name, 0);
    }
}

/// The non-persistent buffer patterns of the swapped sub-models, under
/// their module paths (`model.language_model.rotary_emb.inv_freq`).
pub(super) fn swapped_non_persistent(
    config: &Value,
    desc: &'static Value,
    composite_type: &str,
    class: &str,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (path, _, sub_desc) in swapped_descriptions(config, desc, composite_type, class) {
        for pattern in super::strings(sub_desc, "non_persistent") {
            out.push(interned(format!("{path}.{pattern}")));
        }
    }
    out
}

/// Each swapped-in sub-model: its module path, its sub-config and its
/// own description (those the zoo cannot describe are left out).
fn swapped_descriptions(
    config: &Value,
    desc: &'static Value,
    composite_type: &str,
    class: &str,
) -> Vec<(&'static str, Value, &'static Value)> {
    swapped(config, desc, composite_type, class)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(sub_config, path, listed)| {
            let sub = read_path(config, sub_config)
                .cloned()
                .unwrap_or(Value::Null);
            let (_, sub_desc) = description(listed.model_type, Some(listed.class), &sub).ok()?;
            Some((path, sub, sub_desc))
        })
        .collect()
}

/// The weights a composite ties for this config: its own pairs, where a
/// checked sub-model is swapped in, less those under its module and with
/// the sub-model's own pairs under it (BLIP-2 around Flan-T5 ties
/// `language_model.encoder.embed_tokens.weight` to
/// `language_model.shared.weight`, which save_pretrained leaves out).
pub(super) fn tied_pairs_with_swaps(
    config: &Value,
    desc: &'static Value,
    composite_type: &str,
    class: &str,
) -> Vec<(String, String)> {
    let mut pairs = super::tied_pairs(config, desc);
    for (path, sub, sub_desc) in swapped_descriptions(config, desc, composite_type, class) {
        let prefix = format!("{path}.");
        pairs.retain(|(target, _)| !target.starts_with(&prefix));
        pairs.extend(
            super::tied_pairs(&sub, sub_desc)
                .into_iter()
                .map(|(target, source)| (format!("{prefix}{target}"), format!("{prefix}{source}"))),
        );
    }
    pairs
}

/// A name made from the compiled-in data, kept for the life of the program
/// (a bounded set: module paths times the checked types' buffers).
fn interned(name: String) -> &'static str {
    static NAMES: OnceLock<std::sync::Mutex<rustc_hash::FxHashSet<&'static str>>> = OnceLock::new();
    let Ok(mut names) = NAMES.get_or_init(Default::default).lock() else {
        return "";
    };
    if let Some(known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// For each sub-config of a composite config with checked sub-models: its
/// name, the module path, the model type the config gives it (or the
/// composite's default), and every type that may stand there (the default
/// and the checked ones), for explanations that try each.
pub fn sub_model_choices(
    config: &Value,
    composite_type: &str,
    class: &str,
) -> Vec<(&'static str, &'static str, String, Vec<&'static str>)> {
    let Ok((_, desc)) = description(composite_type, Some(class), config) else {
        return Vec::new();
    };
    swaps_of(desc)
        .into_iter()
        .filter_map(|(sub_config, path, listed)| {
            let default = default_sub_model(composite_type, sub_config)?;
            let given = read_path(config, sub_config)
                .and_then(|sub| sub.get("model_type"))
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string();
            let mut types = vec![default];
            types.extend(listed.iter().map(|item| item.model_type));
            Some((sub_config, path, given, types))
        })
        .collect()
}
