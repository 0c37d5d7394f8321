//! OpenAI CLIP and open_clip models (ViT and ModifiedResNet visual towers,
//! the text transformer, LayerScale) from open_clip's model-config JSON.
//! Presets are named `open_clip/<model config name>`.

use super::{Inferred, ModelSpec};
use crate::error::Result;
use serde_json::Value;

pub fn preset_list() -> Vec<(String, &'static str, String)> {
    Vec::new()
}

pub fn from_preset(_name: &str) -> Result<Option<ModelSpec>> {
    Ok(None)
}

pub fn looks_like_config(value: &Value) -> bool {
    value.get("vision_cfg").is_some() && value.get("text_cfg").is_some()
}

pub fn from_config_value(_value: &Value, _preset: Option<&str>) -> Result<ModelSpec> {
    Err(crate::error::err(
        crate::error::ErrorKind::BadConfig,
        "open_clip configs are not built yet",
    ))
}

pub fn infer(_names: &[(String, Vec<u64>)]) -> Option<Inferred> {
    None
}
