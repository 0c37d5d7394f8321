//! Which of the zoo's descriptions a config gets: the model types and
//! classes it describes, and for a class the description whose `when`
//! holds for the config (generate.py derives one per other value of a name
//! that chooses modules, such as ResNet-18's `layer_type` "basic" or
//! wav2vec2-large's `feat_extract_norm` "layer", and of a flag that
//! resizes tensors, Falcon-40B's `new_decoder_architecture`), else its
//! default one.

use super::{fixed_disagreement, model_type, model_types, read_path};
use crate::error::{err, ErrorKind, Result};
use serde_json::Value;

/// Whether the zoo describes this `model_type`.
pub fn knows(name: &str) -> bool {
    model_type(name).is_some()
}

/// Every model type the zoo describes, in the data's order.
pub fn described_model_types() -> Vec<&'static str> {
    model_types().iter().map(|entry| entry.name).collect()
}

/// The classes the zoo describes for a model type, base model first.
pub fn classes(name: &str) -> Vec<&'static str> {
    model_type(name)
        .map(|entry| {
            entry
                .classes
                .iter()
                .filter(|(_, desc)| desc.get("when").is_none())
                .map(|(class, _)| *class)
                .collect()
        })
        .unwrap_or_default()
}

/// The description of one class (`architectures[0]`, or the model type's
/// base model when the config names none): of the class's descriptions,
/// the one whose `when` names the config's value of a name that chooses
/// modules (ResNet-18's `layer_type` "basic"), else its default one.
pub(super) fn description(
    name: &str,
    architecture: Option<&str>,
    config: &Value,
) -> Result<(&'static str, &'static Value)> {
    let entry = model_type(name).ok_or_else(|| {
        err(
            ErrorKind::BadConfig,
            format!("model_type {name:?} is not one ckptcheck describes"),
        )
    })?;
    let wanted_class = architecture.or_else(|| entry.classes.first().map(|(class, _)| *class));
    let of_class = || {
        entry
            .classes
            .iter()
            .filter(move |(class, _)| Some(*class) == wanted_class)
    };
    // Where the config names other values of two names or flags
    // (wav2vec2-large's `feat_extract_norm` "layer" with `conv_bias`
    // true), each description derived at one of them may hold the other at
    // its default: the one whose fixed fields the config agrees with is
    // taken, else the first (whose refusal then names the field).
    let holding = || of_class().filter(|(_, desc)| named_variant_holds(desc, config));
    let found = holding()
        .find(|(_, desc)| fixed_disagreement(desc, config).is_none())
        .or_else(|| holding().next())
        .or_else(|| of_class().find(|(_, desc)| desc.get("when").is_none()));
    found.copied().ok_or_else(|| {
        let wanted = architecture.unwrap_or("");
        let belongs = match model_type_of_class(wanted) {
            Some(other) => format!(
                " ({wanted} belongs to model_type {other:?}; the class does not belong to {name:?})"
            ),
            None => String::new(),
        };
        err(
            ErrorKind::BadConfig,
            format!(
                "architectures[0] = {wanted:?} is not a class ckptcheck describes for model_type {name:?}{belongs}; it describes {}",
                classes(name).join(", ")
            ),
        )
    })
}

/// Whether a description derived for other values of names (`when`) is
/// the one for this config: the config gives each of them that value.
fn named_variant_holds(desc: &Value, config: &Value) -> bool {
    match desc.get("when").and_then(Value::as_object) {
        Some(when) => when
            .iter()
            .all(|(field, value)| read_path(config, field) == Some(value)),
        None => false,
    }
}

/// The model type whose described classes include `class` (the first, in
/// the data's order), for a config.json without `model_type`.
pub fn model_type_of_class(class: &str) -> Option<&'static str> {
    model_types()
        .iter()
        .find(|entry| entry.classes.iter().any(|(name, _)| *name == class))
        .map(|entry| entry.name)
}
