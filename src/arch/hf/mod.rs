//! Hugging Face transformers models from `config.json`, and what
//! `PreTrainedModel.from_pretrained` does with a checkpoint's keys.
//!
//! Every model type is built by the zoo (`super::zoo`): its description,
//! derived from transformers itself by src/arch/zoo/generate.py, gives the
//! class's tensors in `state_dict()` order for any config. The class comes
//! from `architectures[0]` (task heads, the base-model prefix, tied
//! weights); without it, the base model `AutoModel` builds. The BERT,
//! RoBERTa, LLaMA, Mistral, Qwen2, GPT-2, ViT and CLIP fixtures in
//! tests/fixtures/hf/ (made by the real library) check them, as they
//! checked the hand-written builders the zoo replaced.
//!
//! `from_pretrained` follows modeling_utils.py / core_model_loading.py of
//! transformers 5.x (`pretrained.rs`): every checkpoint key goes through the
//! class's weight renamings, then gains or loses the base-model prefix when
//! that makes it a model key; keys that still match nothing are unexpected.
//! Tied weights present on one side are not missing, stale buffers are not
//! unexpected, and only size mismatches raise: missing keys are a warning.
//!
//! Not covered: quantized checkpoints, remote code, a user `key_mapping`,
//! and `ignore_mismatched_sizes=True` (the verdict is for the default).

use super::{
    count_blocks, IgnoreKey, Inferred, InferredField, KeyRename, ModelSpec, PretrainedClass,
};
use crate::error::{err, ErrorKind, Result};
use rustc_hash::FxHashMap as HashMap;
use serde_json::{json, Map, Value};

mod infer;
mod pretrained;

pub use infer::infer;
pub use pretrained::{ignore_unexpected, non_persistent_buffers, pretrained_class, tied_weights};

/// The model a transformers `config.json` describes.
pub fn from_config_value(value: &Value) -> Result<ModelSpec> {
    if !value.is_object() {
        return Err(err(
            ErrorKind::BadConfig,
            "a Hugging Face config.json must be a JSON object",
        ));
    }
    let architecture = match value.get("architectures") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => match items.first() {
            None => None,
            Some(Value::String(name)) => Some(name.as_str()),
            Some(other) => {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!("config field \"architectures\" must hold class names, got {other}"),
                ))
            }
        },
        Some(other) => {
            return Err(err(
                ErrorKind::BadConfig,
                format!("config field \"architectures\" must be a list, got {other}"),
            ))
        }
    };
    let model_type = match value.get("model_type") {
        Some(Value::String(model_type)) => model_type.as_str(),
        Some(other) => {
            return Err(err(
                ErrorKind::BadConfig,
                format!("config field \"model_type\" must be a name, got {other}"),
            ))
        }
        // An old config.json without model_type: the class names it.
        None => architecture
            .and_then(super::zoo::model_type_of_class)
            .ok_or_else(|| {
                err(
                    ErrorKind::BadConfig,
                    format!(
                        "config.json has no \"model_type\" (and architectures[0] = {:?} is no class ckptcheck describes)",
                        architecture.unwrap_or("")
                    ),
                )
            })?,
    };
    if !super::zoo::knows(model_type) {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "model_type {model_type:?} is not supported; ckptcheck describes {} model types of transformers {} (src/arch/zoo/COVERAGE.md lists them, and says why the others are not described)",
                super::zoo::described_model_types().len(),
                super::zoo::transformers_version()
            ),
        ));
    }
    super::zoo::from_config_value(value, model_type, architecture)
}

/// The config's `model_type` when the zoo describes it.
pub(crate) fn zoo_model_type(value: &Value) -> Option<&str> {
    let model_type = value.get("model_type")?.as_str()?;
    super::zoo::knows(model_type).then_some(model_type)
}
