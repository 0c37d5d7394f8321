//! Released Hugging Face model sizes as presets (`hf/llama-3-8b`,
//! `hf/qwen2.5-3b`, ...), and released diffusers components
//! (`diffusers/sd3.5-medium/transformer`, `diffusers/sdxl-base/unet`):
//! presets.json holds the shape-deciding fields of
//! each model's published config.json, read like any dropped config. After
//! inference, the presets of the inferred model type are ranked against the
//! checkpoint: an exact one names it, a close one says how the checkpoint
//! departs from the release ("Qwen2.5 3B-shaped, vocab_size 151666 where
//! the release has 151936").

use crate::arch::{rank_presets, Inferred, ModelSpec};
use crate::error::Result;
use serde_json::Value;
use std::sync::OnceLock;

const DATA: &str = include_str!("presets.json");

/// `(name, title, config)` of every preset, in the file's order.
fn presets() -> &'static [(String, String, Value)] {
    static PRESETS: OnceLock<Vec<(String, String, Value)>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        let value: Value = serde_json::from_str(DATA).unwrap_or(Value::Null);
        value["presets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                Some((
                    item.get(0)?.as_str()?.to_string(),
                    item.get(1)?.as_str()?.to_string(),
                    item.get(2)?.clone(),
                ))
            })
            .collect()
    })
}

/// The diffusers class a config names (`_class_name`); `None` for a
/// transformers config.
fn diffusers_class_of(config: &Value) -> Option<&str> {
    config.get("_class_name").and_then(Value::as_str)
}

/// What a preset's config (or an inferred one) is a model of: its
/// `model_type`, or `diffusers/<class>` for a diffusers component.
fn kind_of(config: &Value) -> Option<String> {
    if let Some(class) = diffusers_class_of(config) {
        return Some(format!("{}{class}", super::diffusers::PREFIX));
    }
    config
        .get("model_type")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Every preset as `(name, family, description)` for `ckptcheck presets`.
pub fn preset_list() -> Vec<(String, &'static str, String)> {
    presets()
        .iter()
        .map(|(name, title, config)| {
            let (family, kind) = match diffusers_class_of(config) {
                Some(class) => ("diffusers", class),
                None => ("hf", config["model_type"].as_str().unwrap_or("")),
            };
            (
                name.clone(),
                family,
                format!("{title} ({kind}, shapes only)"),
            )
        })
        .collect()
}

/// The model of a preset name, `None` when the name is not one of these.
pub fn from_preset(name: &str) -> Result<Option<ModelSpec>> {
    let Some((name, _, config)) = presets().iter().find(|(n, _, _)| n == name) else {
        return Ok(None);
    };
    let mut model = if diffusers_class_of(config).is_some() {
        super::diffusers::from_diffusers_config(config)?
    } else {
        crate::arch::hf::from_config_value(config)?
    };
    model.preset = Some(name.clone());
    Ok(Some(model))
}

/// Ranks the presets against the checkpoint: an exact one becomes
/// `inferred.preset`; otherwise the closest is described with the fields
/// where the checkpoint departs from it. Every preset of the library takes
/// part, not only the inferred model type's: names and shapes alone cannot
/// tell Gemma from LLaMA, and the released size that matches says which it
/// is. transformers' and diffusers' keys never meet, so a checkpoint is
/// ranked against its own library's presets only.
pub fn name_inferred(inferred: &mut Inferred, names_shapes: &[(String, Vec<u64>)]) {
    let Some(model_type) = kind_of(&inferred.config) else {
        return;
    };
    // Built once per library: every drop ranks them.
    static TRANSFORMERS: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    static DIFFUSERS: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    let diffusers = model_type.starts_with(super::diffusers::PREFIX);
    let models = if diffusers { &DIFFUSERS } else { &TRANSFORMERS }.get_or_init(|| {
        presets()
            .iter()
            .filter(|(_, _, config)| diffusers_class_of(config).is_some() == diffusers)
            .filter_map(|(name, _, _)| from_preset(name).ok().flatten())
            .collect()
    });
    let ranking = rank_presets(names_shapes, models);
    if let Some(best) = ranking.first() {
        if best.exact {
            inferred.preset = Some(best.preset.clone());
        } else if let Some((_, title, config)) = presets()
            .iter()
            .find(|(n, _, _)| *n == best.preset)
            .filter(|(_, _, config)| kind_of(config).as_ref() == Some(&model_type))
        {
            let compared = inferred
                .fields
                .iter()
                .filter(|f| config.get(&f.field).is_some())
                .count();
            let departures: Vec<String> = inferred
                .fields
                .iter()
                .filter_map(|field| {
                    let released = config.get(&field.field)?;
                    // A field shown as a range agrees with any value in it.
                    let within = |[least, most]: [u64; 2]| {
                        released
                            .as_u64()
                            .is_some_and(|v| (least..=most).contains(&v))
                    };
                    (released != &field.value && !field.range.is_some_and(within)).then(|| {
                        format!(
                            "{} {} where the release has {released}",
                            field.field, field.value
                        )
                    })
                })
                .collect();
            // Close means: the same model type, and every shape-determined
            // field but one or two agrees.
            if !departures.is_empty() && departures.len() <= 2 && compared >= departures.len() + 3 {
                inferred.shaped_like = Some(format!(
                    "{title}-shaped ({}), {}",
                    best.preset,
                    departures.join(", ")
                ));
            }
        }
    }
    // The ranking people see: the exact match, and releases of the same
    // model type (a distant release of another type is no hint).
    let same_type = |name: &str| {
        presets()
            .iter()
            .any(|(n, _, config)| n == name && kind_of(config).as_ref() == Some(&model_type))
    };
    inferred.ranking = ranking
        .into_iter()
        .filter(|score| score.exact || same_type(&score.preset))
        .collect();
}
