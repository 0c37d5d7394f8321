//! Hugging Face transformers models from `config.json` by `model_type`, and
//! what `from_pretrained` tolerates when loading a state dict.

use super::{Inferred, ModelSpec};
use crate::check::{LoadResult, StateDict};
use crate::error::Result;
use serde_json::Value;

pub fn from_config_value(_value: &Value) -> Result<ModelSpec> {
    Err(crate::error::err(
        crate::error::ErrorKind::BadConfig,
        "Hugging Face configs are not built yet",
    ))
}

pub fn infer(_names: &[(String, Vec<u64>)]) -> Option<Inferred> {
    None
}

pub fn from_pretrained(
    state_dict: &StateDict,
    model: &ModelSpec,
    _notes: &mut Vec<String>,
) -> LoadResult {
    let keys: Vec<(String, Vec<u64>)> = model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    crate::check::load_state_dict(state_dict, &keys, &model.batchnorm_modules)
}

pub fn error_text(class_name: &str, result: &LoadResult) -> Option<String> {
    crate::check::pytorch_error_text(class_name, result)
}
