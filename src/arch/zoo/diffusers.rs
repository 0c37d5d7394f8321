//! diffusers models in the zoo: a `config.json` with `_class_name`
//! (`UNet2DConditionModel`, `AutoencoderKL`, ...) is one of the class's
//! variants, the structures released models use (SD 1.x, SD 2.x, SDXL base
//! and refiner), each derived by diffusers_models.py from the library with
//! its naming fields (`down_block_types`, `addition_embed_type`) fixed.
//! A config takes the first variant whose fixed fields it matches and whose
//! numbers and lists are where the variant has them; a config no variant
//! fits is refused with each variant's reason, never built from a guess.

use super::{check_fixed, model_type, read_path, ModelType};
use crate::arch::ModelSpec;
use crate::error::{err, ErrorKind, Result};
use serde_json::{json, Value};

/// Model types of diffusers classes carry this prefix in the data.
pub const PREFIX: &str = "diffusers/";

/// The diffusers class a config.json names (`_class_name`), when the zoo
/// describes it.
pub fn diffusers_class(config: &Value) -> Option<&str> {
    let name = config.get("_class_name")?.as_str()?;
    described(name).map(|_| name)
}

fn described(name: &str) -> Option<&'static ModelType> {
    model_type(&format!("{PREFIX}{name}"))
}

/// The diffusers classes the zoo describes, with their variants.
pub fn described_classes() -> Vec<(&'static str, Vec<&'static str>)> {
    super::model_types()
        .iter()
        .filter_map(|entry| {
            let name = entry.name.strip_prefix(PREFIX)?;
            Some((name, entry.classes.iter().map(|(v, _)| *v).collect()))
        })
        .collect()
}

/// The fields a variant holds fixed (its naming fields, and lists of layer
/// indices such as SD3.5 Medium's `dual_attention_layers`), with its values.
pub fn variant_fixed(
    class: &str,
    variant: &str,
) -> Option<&'static serde_json::Map<String, Value>> {
    described(class)?
        .classes
        .iter()
        .find(|(name, _)| *name == variant)?
        .1
        .get("fixed")?
        .as_object()
}

/// The model a diffusers config.json describes.
pub fn from_diffusers_config(config: &Value) -> Result<ModelSpec> {
    let name = config
        .get("_class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            err(
                ErrorKind::BadConfig,
                "a diffusers config names its class in _class_name",
            )
        })?;
    let entry = described(name).ok_or_else(|| {
        let known: Vec<&str> = described_classes().into_iter().map(|(n, _)| n).collect();
        err(
            ErrorKind::BadConfig,
            format!(
                "diffusers class {name:?} is not one ckptcheck describes; it describes {}",
                known.join(", ")
            ),
        )
    })?;
    let mut refusals = Vec::new();
    for (variant, desc) in &entry.classes {
        if let Err(refusal) = variant_fits(config, desc, name) {
            refusals.push(format!("{variant}: {}", refusal.message));
            continue;
        }
        let mut spec = super::from_config_value(config, entry.name, Some(variant))?;
        spec.family = "diffusers".to_string();
        spec.class_name = name.to_string();
        if let Some(object) = spec.config.as_object_mut() {
            if config.get("architectures").is_none() {
                object.remove("architectures");
            }
            // Which released structure the config is, for explanations and
            // for inference's round trip.
            object.insert("_ckptcheck_variant".into(), json!(variant));
        }
        return Ok(spec);
    }
    Err(err(
        ErrorKind::BadConfig,
        format!(
            "this {name} config fits none of the structures ckptcheck describes ({}): {}",
            entry
                .classes
                .iter()
                .map(|(v, _)| *v)
                .collect::<Vec<_>>()
                .join(", "),
            refusals.join("; ")
        ),
    ))
}

/// Whether a config is this variant: its fixed fields are the variant's,
/// its lists are lists (of the variant's lengths) and its numbers numbers.
fn variant_fits(config: &Value, desc: &'static Value, class: &str) -> Result<()> {
    check_fixed(config, desc, class, class)?;
    let given = |field: &str| read_path(config, field).filter(|value| !value.is_null());
    for field in desc["lists"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(f, _)| f)
    {
        if given(field).is_some_and(|value| !value.is_array()) {
            return Err(err(
                ErrorKind::BadConfig,
                format!("config field {field:?} is not a list, where this structure has one"),
            ));
        }
    }
    for field in desc["fields"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(f, _)| f)
    {
        if !field.contains('.') && given(field).is_some_and(|value| value.is_array()) {
            return Err(err(
                ErrorKind::BadConfig,
                format!("config field {field:?} is a list, where this structure has one number"),
            ));
        }
    }
    Ok(())
}

/// A config.json for an inferred variant: the class, the variant's fixed
/// fields (the names that make it that structure) and the given fields.
pub fn inferred_config(
    model_type: &str,
    variant: &str,
    desc: &Value,
    fields: &mut serde_json::Map<String, Value>,
) {
    let Some(name) = model_type.strip_prefix(PREFIX) else {
        return;
    };
    fields.remove("model_type");
    fields.remove("architectures");
    fields.insert("_class_name".into(), json!(name));
    for (field, value) in desc["fixed"].as_object().into_iter().flatten() {
        if !field.contains('.') && !value.is_null() && !fields.contains_key(field) {
            fields.insert(field.clone(), value.clone());
        }
    }
    // List entries fixed one by one (`block_out_channels.0`) go in whole.
    for (list, length) in desc["lists"].as_object().into_iter().flatten() {
        if fields.contains_key(list) {
            continue;
        }
        let entries: Option<Vec<Value>> = (0..length.as_u64().unwrap_or(0))
            .map(|i| desc["fixed"].get(format!("{list}.{i}")).cloned())
            .collect();
        if let Some(entries) = entries {
            fields.insert(list.clone(), Value::Array(entries));
        }
    }
    fields.insert("_ckptcheck_variant".into(), json!(variant));
}
