//! Hugging Face transformers models from `config.json`, and what
//! `PreTrainedModel.from_pretrained` does with a checkpoint's keys.
//!
//! Families: BERT, RoBERTa, LLaMA, Mistral, Qwen2, GPT-2, ViT and CLIP (dual,
//! text and vision towers). The class comes from `architectures[0]` (task
//! heads, the base-model prefix, tied weights); without it, the base model
//! `AutoModel` builds. Names, shapes and `state_dict()` order follow
//! transformers 5.x modeling files; tests/fixtures/hf/ (made by the real
//! library) checks them.
//!
//! `from_pretrained` follows modeling_utils.py / core_model_loading.py of
//! transformers 5.x: every checkpoint key goes through the class's weight
//! renamings (legacy `LayerNorm.gamma`/`beta`, ViT's old
//! `encoder.layer.N.attention.attention.*` layout, CLIP's `text_model.`
//! prefix changes), then gains or loses the base-model prefix when that
//! makes it a model key; keys that still match nothing are unexpected.
//! Tied weights present on one side are not missing, stale buffers
//! (`position_ids`, `rotary_emb.inv_freq`, GPT-2's `attn.bias`) are not
//! unexpected, and only size mismatches raise: missing keys are a warning.
//!
//! Not covered: quantized checkpoints, remote code, a user `key_mapping`,
//! and `ignore_mismatched_sizes=True` (the verdict is for the default).

use super::{
    count_blocks, IgnoreKey, Inferred, InferredField, KeyRename, ModelSpec, PretrainedClass,
    RenameScope, TensorListBuilder,
};
use crate::error::{err, ErrorKind, Result};
use rustc_hash::FxHashMap as HashMap;
use serde_json::{json, Map, Value};

mod bert;
mod clip;
mod decoder;
mod gpt2;
mod infer;
mod pretrained;
mod vit;

use bert::*;
use clip::*;
use decoder::*;
use gpt2::*;
pub use infer::infer;
pub use pretrained::{ignore_unexpected, non_persistent_buffers, pretrained_class, tied_weights};
use vit::*;

// ---------------------------------------------------------------------------
// Families and classes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Bert,
    Roberta,
    Llama,
    Mistral,
    Qwen2,
    Gpt2,
    Vit,
    /// `model_type: "clip"`: text_config + vision_config.
    Clip,
    /// `model_type: "clip_text_model"`.
    ClipText,
    /// `model_type: "clip_vision_model"`.
    ClipVision,
}

/// `config.json` `model_type` values this module builds.
const MODEL_TYPES: &[(&str, Family)] = &[
    ("bert", Family::Bert),
    ("roberta", Family::Roberta),
    ("llama", Family::Llama),
    ("mistral", Family::Mistral),
    ("qwen2", Family::Qwen2),
    ("gpt2", Family::Gpt2),
    ("vit", Family::Vit),
    ("clip", Family::Clip),
    ("clip_text_model", Family::ClipText),
    ("clip_vision_model", Family::ClipVision),
];

/// What sits on top of the base model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// The base model itself (`BertModel`, `LlamaModel`, `CLIPModel` ...).
    Base,
    /// BERT/RoBERTa masked or causal LM heads (`cls.predictions`, `lm_head`).
    MaskedLm,
    PreTraining,
    NextSentence,
    SequenceClassification,
    TokenClassification,
    QuestionAnswering,
    MultipleChoice,
    /// `lm_head.weight` on a decoder.
    CausalLm,
    DoubleHeads,
    ImageClassification,
    MaskedImageModeling,
    /// CLIP text or vision tower with its projection.
    WithProjection,
}

/// `(class, family, head)`: every class `from_config_value` builds.
const CLASSES: &[(&str, Family, Head)] = &[
    ("BertModel", Family::Bert, Head::Base),
    ("BertForMaskedLM", Family::Bert, Head::MaskedLm),
    ("BertLMHeadModel", Family::Bert, Head::MaskedLm),
    ("BertForPreTraining", Family::Bert, Head::PreTraining),
    (
        "BertForNextSentencePrediction",
        Family::Bert,
        Head::NextSentence,
    ),
    (
        "BertForSequenceClassification",
        Family::Bert,
        Head::SequenceClassification,
    ),
    (
        "BertForTokenClassification",
        Family::Bert,
        Head::TokenClassification,
    ),
    (
        "BertForQuestionAnswering",
        Family::Bert,
        Head::QuestionAnswering,
    ),
    ("BertForMultipleChoice", Family::Bert, Head::MultipleChoice),
    ("RobertaModel", Family::Roberta, Head::Base),
    ("RobertaForMaskedLM", Family::Roberta, Head::MaskedLm),
    ("RobertaForCausalLM", Family::Roberta, Head::MaskedLm),
    (
        "RobertaForSequenceClassification",
        Family::Roberta,
        Head::SequenceClassification,
    ),
    (
        "RobertaForTokenClassification",
        Family::Roberta,
        Head::TokenClassification,
    ),
    (
        "RobertaForQuestionAnswering",
        Family::Roberta,
        Head::QuestionAnswering,
    ),
    (
        "RobertaForMultipleChoice",
        Family::Roberta,
        Head::MultipleChoice,
    ),
    ("LlamaModel", Family::Llama, Head::Base),
    ("LlamaForCausalLM", Family::Llama, Head::CausalLm),
    (
        "LlamaForSequenceClassification",
        Family::Llama,
        Head::SequenceClassification,
    ),
    (
        "LlamaForTokenClassification",
        Family::Llama,
        Head::TokenClassification,
    ),
    (
        "LlamaForQuestionAnswering",
        Family::Llama,
        Head::QuestionAnswering,
    ),
    ("MistralModel", Family::Mistral, Head::Base),
    ("MistralForCausalLM", Family::Mistral, Head::CausalLm),
    (
        "MistralForSequenceClassification",
        Family::Mistral,
        Head::SequenceClassification,
    ),
    (
        "MistralForTokenClassification",
        Family::Mistral,
        Head::TokenClassification,
    ),
    (
        "MistralForQuestionAnswering",
        Family::Mistral,
        Head::QuestionAnswering,
    ),
    ("Qwen2Model", Family::Qwen2, Head::Base),
    ("Qwen2ForCausalLM", Family::Qwen2, Head::CausalLm),
    (
        "Qwen2ForSequenceClassification",
        Family::Qwen2,
        Head::SequenceClassification,
    ),
    (
        "Qwen2ForTokenClassification",
        Family::Qwen2,
        Head::TokenClassification,
    ),
    (
        "Qwen2ForQuestionAnswering",
        Family::Qwen2,
        Head::QuestionAnswering,
    ),
    ("GPT2Model", Family::Gpt2, Head::Base),
    ("GPT2LMHeadModel", Family::Gpt2, Head::CausalLm),
    ("GPT2DoubleHeadsModel", Family::Gpt2, Head::DoubleHeads),
    (
        "GPT2ForSequenceClassification",
        Family::Gpt2,
        Head::SequenceClassification,
    ),
    (
        "GPT2ForTokenClassification",
        Family::Gpt2,
        Head::TokenClassification,
    ),
    (
        "GPT2ForQuestionAnswering",
        Family::Gpt2,
        Head::QuestionAnswering,
    ),
    ("ViTModel", Family::Vit, Head::Base),
    (
        "ViTForImageClassification",
        Family::Vit,
        Head::ImageClassification,
    ),
    (
        "ViTForMaskedImageModeling",
        Family::Vit,
        Head::MaskedImageModeling,
    ),
    ("CLIPModel", Family::Clip, Head::Base),
    (
        "CLIPForImageClassification",
        Family::Clip,
        Head::ImageClassification,
    ),
    ("CLIPTextModel", Family::ClipText, Head::Base),
    (
        "CLIPTextModelWithProjection",
        Family::ClipText,
        Head::WithProjection,
    ),
    ("CLIPVisionModel", Family::ClipVision, Head::Base),
    (
        "CLIPVisionModelWithProjection",
        Family::ClipVision,
        Head::WithProjection,
    ),
];

fn base_model_prefix(class: &str, family: Family) -> &'static str {
    match (family, class) {
        (_, "CLIPTextModelWithProjection") => "text_model",
        (_, "CLIPVisionModelWithProjection") => "vision_model",
        (Family::Bert, _) => "bert",
        (Family::Roberta, _) => "roberta",
        // LlamaForQuestionAnswering and Qwen2ForQuestionAnswering keep the
        // base model as `self.transformer`; Mistral's uses `self.model`.
        (
            Family::Llama | Family::Qwen2,
            "LlamaForQuestionAnswering" | "Qwen2ForQuestionAnswering",
        ) => "transformer",
        (Family::Llama | Family::Mistral | Family::Qwen2, _) => "model",
        (Family::Gpt2, _) => "transformer",
        (Family::Vit, _) => "vit",
        (Family::Clip | Family::ClipText | Family::ClipVision, _) => "clip",
    }
}

// ---------------------------------------------------------------------------
// Reading config.json with the library's defaults
// ---------------------------------------------------------------------------

/// One (sub-)config and its path, so errors say `text_config.hidden_size`.
type Conf<'a> = super::ConfigSection<'a>;

const MAX_DIM: u64 = 1 << 20;
const MAX_VOCAB: u64 = 1 << 24;
const MAX_LAYERS: u64 = 1024;

impl Conf<'_> {
    fn opt_u64(&self, field: &str, max: u64) -> Result<Option<u64>> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        let n = v
            .as_u64()
            .ok_or_else(|| self.bad(field, "a non-negative integer", v))?;
        if n == 0 || n > max {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {:?} = {n} is outside 1..={max}",
                    self.field_name(field)
                ),
            ));
        }
        Ok(Some(n))
    }

    fn u64(&self, field: &str, default: u64, max: u64) -> Result<u64> {
        Ok(self.opt_u64(field, max)?.unwrap_or(default))
    }

    fn bool(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.bad(field, "true or false", v)),
        }
    }

    /// An int or a `[height, width]` pair (`image_size`, `patch_size`).
    fn pair(&self, field: &str, default: u64) -> Result<(u64, u64)> {
        let pair = match self.get(field) {
            None => (default, default),
            Some(Value::Array(items)) => match items.as_slice() {
                [a, b] => (a.as_u64().unwrap_or(0), b.as_u64().unwrap_or(0)),
                _ => (0, 0),
            },
            Some(v) => {
                let n = v.as_u64().unwrap_or(0);
                (n, n)
            }
        };
        if pair.0 == 0 || pair.1 == 0 || pair.0 > MAX_DIM || pair.1 > MAX_DIM {
            return Err(self.bad(
                field,
                "a positive integer or two",
                self.get(field).unwrap_or(&Value::Null),
            ));
        }
        Ok(pair)
    }

    /// `num_labels`: the size of `id2label` when present (that is what
    /// PreTrainedConfig does), else `num_labels`, else 2.
    fn num_labels(&self) -> Result<u64> {
        if let Some(Value::Object(labels)) = self.get("id2label") {
            return Ok(labels.len() as u64);
        }
        match self.get("num_labels") {
            None => Ok(2),
            Some(v) => v
                .as_u64()
                .filter(|n| *n <= MAX_VOCAB)
                .ok_or_else(|| self.bad("num_labels", "a non-negative integer", v)),
        }
    }
}

// ---------------------------------------------------------------------------
// config.json -> ModelSpec
// ---------------------------------------------------------------------------

/// The class a config builds, resolved from `model_type` and
/// `architectures[0]`.
struct Resolved {
    class: &'static str,
    family: Family,
    head: Head,
}

fn resolve(value: &Value) -> Result<Resolved> {
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
    let class_entry = architecture.map(|name| CLASSES.iter().find(|(n, _, _)| *n == name));
    let family = match value.get("model_type").and_then(Value::as_str) {
        Some(model_type) => MODEL_TYPES
            .iter()
            .find(|(t, _)| *t == model_type)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                err(
                    ErrorKind::BadConfig,
                    format!(
                        "model_type {model_type:?} is not supported; ckptcheck builds {} and the {} model types of its zoo (src/arch/zoo/COVERAGE.md says why others are not described)",
                        MODEL_TYPES
                            .iter()
                            .map(|(t, _)| *t)
                            .collect::<Vec<_>>()
                            .join(", "),
                        super::zoo::described_model_types().len()
                    ),
                )
            })?,
        None => match class_entry {
            Some(Some((_, family, _))) => *family,
            _ => {
                return Err(err(
                    ErrorKind::BadConfig,
                    "config.json has no \"model_type\" (and no architecture ckptcheck knows)",
                ))
            }
        },
    };
    let (class, class_family, head) = match (architecture, class_entry) {
        (None, _) => {
            // AutoModel: the base model of the model_type.
            let base = CLASSES
                .iter()
                .find(|(_, f, h)| *f == family && *h == Head::Base)
                .copied()
                .unwrap_or(("BertModel", Family::Bert, Head::Base));
            (base.0, base.1, base.2)
        }
        (Some(name), Some(None)) | (Some(name), None) => {
            let known: Vec<&str> = CLASSES
                .iter()
                .filter(|(_, f, _)| compatible(family, *f))
                .map(|(n, _, _)| *n)
                .collect();
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "architectures[0] = {name:?} is not a class ckptcheck builds; for this model_type it knows {}",
                    known.join(", ")
                ),
            ));
        }
        (Some(_), Some(Some((name, f, h)))) => (*name, *f, *h),
    };
    if !compatible(family, class_family) {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "architectures[0] = {class:?} does not belong to model_type {:?}",
                value
                    .get("model_type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
        ));
    }
    Ok(Resolved {
        class,
        family: class_family,
        head,
    })
}

/// A `clip` config (text_config + vision_config) can also build the towers.
fn compatible(model_type: Family, class: Family) -> bool {
    model_type == class
        || (model_type == Family::Clip && matches!(class, Family::ClipText | Family::ClipVision))
}

pub fn from_config_value(value: &Value) -> Result<ModelSpec> {
    if let Some(model_type) = zoo_model_type(value) {
        let architecture = value
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .and_then(Value::as_str);
        return super::zoo::from_config_value(value, model_type, architecture);
    }
    let resolved = resolve(value)?;
    let conf = Conf { value, path: "" };
    let mut b = TensorListBuilder::default();
    let mut normalised = value.clone();
    let mut defaults: Vec<(&str, Value)> = Vec::new();
    let tied: Vec<(String, String)> = match resolved.family {
        Family::Bert | Family::Roberta => {
            let c = bert_config(&conf, resolved.family)?;
            defaults.extend(c.defaults());
            build_bert(&mut b, &c, resolved.head)?
        }
        Family::Llama | Family::Mistral | Family::Qwen2 => {
            let c = decoder_config(&conf, resolved.family)?;
            defaults.extend(c.defaults());
            build_decoder(&mut b, &c, resolved.head)
        }
        Family::Gpt2 => {
            let c = gpt2_config(&conf)?;
            defaults.extend(c.defaults());
            build_gpt2(&mut b, &c, resolved.head)
        }
        Family::Vit => {
            let c = vit_config(&conf)?;
            defaults.extend(c.defaults());
            build_vit(&mut b, &c, resolved.head);
            Vec::new()
        }
        Family::Clip | Family::ClipText | Family::ClipVision => {
            build_clip(&mut b, value, &resolved, &mut normalised)?;
            Vec::new()
        }
    };
    // The config as ModelSpec keeps it: what the user gave plus the
    // library's defaults for every field that decides a tensor, so an
    // explanation can compare a checkpoint's value with the model's.
    if let Some(object) = normalised.as_object_mut() {
        for (key, default) in defaults {
            object.entry(key).or_insert(default);
        }
        object
            .entry("architectures")
            .or_insert_with(|| json!([resolved.class]));
    }
    Ok(ModelSpec {
        family: "hf".to_string(),
        class_name: resolved.class.to_string(),
        preset: None,
        config: normalised,
        tensors: b.tensors,
        batchnorm_modules: b.batchnorm_modules,
        module_kinds: b.module_kinds,
        module_names: Vec::new(),
        non_persistent: Vec::new(),
        base_model_prefix: base_model_prefix(resolved.class, resolved.family).to_string(),
        tied_keys: tied.into_iter().map(|(target, _)| target).collect(),
    })
}

/// The config's `model_type` when no hand-written family builds it and the
/// zoo describes it.
pub(crate) fn zoo_model_type(value: &Value) -> Option<&str> {
    let model_type = value.get("model_type")?.as_str()?;
    let hand_written = MODEL_TYPES.iter().any(|(known, _)| *known == model_type);
    (!hand_written && super::zoo::knows(model_type)).then_some(model_type)
}

/// Tensors of layer `index` exist only if the layer count reaches it.
fn layer<T>(
    b: &mut TensorListBuilder,
    field: &'static str,
    index: u64,
    add: impl FnOnce(&mut TensorListBuilder) -> T,
) -> T {
    let exists: &[&'static str] = if index > 0 { &[field] } else { &[] };
    b.push_depends(exists);
    let out = add(b);
    b.pop_depends(exists.len());
    out
}
