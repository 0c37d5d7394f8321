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
use serde_json::{json, Map, Value};
use std::collections::HashMap;

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
                        "model_type {model_type:?} is not supported; ckptcheck builds {}",
                        MODEL_TYPES
                            .iter()
                            .map(|(t, _)| *t)
                            .collect::<Vec<_>>()
                            .join(", ")
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
        base_model_prefix: base_model_prefix(resolved.class, resolved.family).to_string(),
        tied_keys: tied.into_iter().map(|(target, _)| target).collect(),
    })
}

/// Linear layer whose existence depends on a flag.
fn optional(
    b: &mut TensorListBuilder,
    field: &'static str,
    present: bool,
    add: impl FnOnce(&mut TensorListBuilder),
) {
    if present {
        b.push_depends(&[field]);
        add(b);
        b.pop_depends(1);
    }
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

// --- BERT and RoBERTa -------------------------------------------------------

struct BertConfig {
    vocab: u64,
    hidden: u64,
    layers: u64,
    intermediate: u64,
    positions: u64,
    type_vocab: u64,
    num_labels: u64,
    cross_attention: bool,
    tie: bool,
    roberta: bool,
}

impl BertConfig {
    fn defaults(&self) -> Vec<(&'static str, Value)> {
        let vocab = if self.roberta { 50265 } else { 30522 };
        vec![
            ("vocab_size", json!(vocab)),
            ("hidden_size", json!(768)),
            ("num_hidden_layers", json!(12)),
            ("num_attention_heads", json!(12)),
            ("intermediate_size", json!(3072)),
            ("max_position_embeddings", json!(512)),
            ("type_vocab_size", json!(2)),
            ("add_cross_attention", json!(false)),
            ("tie_word_embeddings", json!(true)),
        ]
    }
}

fn bert_config(c: &Conf, family: Family) -> Result<BertConfig> {
    let roberta = family == Family::Roberta;
    let hidden = c.u64("hidden_size", 768, MAX_DIM)?;
    let heads = c.u64("num_attention_heads", 12, MAX_DIM)?;
    check_heads(c, hidden, heads)?;
    Ok(BertConfig {
        vocab: c.u64("vocab_size", if roberta { 50265 } else { 30522 }, MAX_VOCAB)?,
        hidden,
        layers: c.u64("num_hidden_layers", 12, MAX_LAYERS)?,
        intermediate: c.u64("intermediate_size", 3072, MAX_DIM)?,
        positions: c.u64("max_position_embeddings", 512, MAX_DIM)?,
        type_vocab: c.u64("type_vocab_size", 2, MAX_VOCAB)?,
        num_labels: c.num_labels()?,
        cross_attention: c.bool("add_cross_attention", false)?,
        tie: c.bool("tie_word_embeddings", true)?,
        roberta,
    })
}

fn check_heads(c: &Conf, hidden: u64, heads: u64) -> Result<()> {
    if !hidden.is_multiple_of(heads) {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field {:?} = {hidden} is not a multiple of {:?} = {heads}",
                c.field_name("hidden_size"),
                c.field_name("num_attention_heads")
            ),
        ));
    }
    Ok(())
}

const H: &[&str] = &["hidden_size"];
const HI: &[&str] = &["hidden_size", "intermediate_size"];
const HL: &[&str] = &["hidden_size", "num_labels"];
const HV: &[&str] = &["hidden_size", "vocab_size"];

/// BertAttention / RobertaAttention under `p`.
fn bert_attention(b: &mut TensorListBuilder, p: &str, h: u64) {
    for projection in ["query", "key", "value"] {
        b.linear(&format!("{p}.self.{projection}"), h, h, true, H);
    }
    b.linear(&format!("{p}.output.dense"), h, h, true, H);
    b.norm(&format!("{p}.output.LayerNorm"), h, true, H);
}

fn build_bert(
    b: &mut TensorListBuilder,
    c: &BertConfig,
    head: Head,
) -> Result<Vec<(String, String)>> {
    let base = if c.roberta { "roberta" } else { "bert" };
    let p = if head == Head::Base {
        String::new()
    } else {
        format!("{base}.")
    };
    let h = c.hidden;
    let pooler = match head {
        Head::Base | Head::PreTraining | Head::NextSentence | Head::MultipleChoice => true,
        Head::SequenceClassification => !c.roberta,
        _ => false,
    };
    b.embedding(&format!("{p}embeddings.word_embeddings"), c.vocab, h, HV);
    let positions = |b: &mut TensorListBuilder| {
        b.embedding(
            &format!("{p}embeddings.position_embeddings"),
            c.positions,
            h,
            &["max_position_embeddings", "hidden_size"],
        )
    };
    if !c.roberta {
        positions(b);
    }
    b.embedding(
        &format!("{p}embeddings.token_type_embeddings"),
        c.type_vocab,
        h,
        &["type_vocab_size", "hidden_size"],
    );
    b.norm(&format!("{p}embeddings.LayerNorm"), h, true, H);
    if c.roberta {
        // RobertaEmbeddings registers position_embeddings last.
        positions(b);
    }
    for i in 0..c.layers {
        layer(b, "num_hidden_layers", i, |b| {
            let l = format!("{p}encoder.layer.{i}");
            bert_attention(b, &format!("{l}.attention"), h);
            optional(b, "add_cross_attention", c.cross_attention, |b| {
                bert_attention(b, &format!("{l}.crossattention"), h)
            });
            b.linear(
                &format!("{l}.intermediate.dense"),
                c.intermediate,
                h,
                true,
                HI,
            );
            b.linear(&format!("{l}.output.dense"), h, c.intermediate, true, HI);
            b.norm(&format!("{l}.output.LayerNorm"), h, true, H);
        });
    }
    if pooler {
        b.linear(&format!("{p}pooler.dense"), h, h, true, H);
    }
    let mut tied = Vec::new();
    match (head, c.roberta) {
        (Head::MaskedLm | Head::PreTraining, false) => {
            b.tensor("cls.predictions.bias", &[c.vocab], &["vocab_size"]);
            b.linear("cls.predictions.transform.dense", h, h, true, H);
            b.norm("cls.predictions.transform.LayerNorm", h, true, H);
            b.linear("cls.predictions.decoder", c.vocab, h, true, HV);
            if head == Head::PreTraining {
                b.linear("cls.seq_relationship", 2, h, true, H);
            }
            if c.tie {
                tied.push((
                    "cls.predictions.decoder.weight".to_string(),
                    "bert.embeddings.word_embeddings.weight".to_string(),
                ));
                tied.push((
                    "cls.predictions.decoder.bias".to_string(),
                    "cls.predictions.bias".to_string(),
                ));
            }
        }
        (Head::MaskedLm, true) => {
            b.tensor("lm_head.bias", &[c.vocab], &["vocab_size"]);
            b.linear("lm_head.dense", h, h, true, H);
            b.norm("lm_head.layer_norm", h, true, H);
            b.linear("lm_head.decoder", c.vocab, h, true, HV);
            if c.tie {
                tied.push((
                    "lm_head.decoder.weight".to_string(),
                    "roberta.embeddings.word_embeddings.weight".to_string(),
                ));
                tied.push((
                    "lm_head.decoder.bias".to_string(),
                    "lm_head.bias".to_string(),
                ));
            }
        }
        (Head::NextSentence, _) => b.linear("cls.seq_relationship", 2, h, true, H),
        (Head::SequenceClassification, false) | (Head::TokenClassification, _) => {
            b.linear("classifier", c.num_labels, h, true, HL)
        }
        (Head::SequenceClassification, true) => {
            b.linear("classifier.dense", h, h, true, H);
            b.linear("classifier.out_proj", c.num_labels, h, true, HL);
        }
        (Head::QuestionAnswering, _) => b.linear("qa_outputs", 2, h, true, H),
        (Head::MultipleChoice, _) => b.linear("classifier", 1, h, true, H),
        _ => {}
    }
    Ok(tied)
}

// --- LLaMA, Mistral, Qwen2 --------------------------------------------------

struct DecoderConfig {
    family: Family,
    vocab: u64,
    hidden: u64,
    intermediate: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    head_dim_set: bool,
    attention_bias: bool,
    mlp_bias: bool,
    tie: bool,
    num_labels: u64,
}

impl DecoderConfig {
    fn defaults(&self) -> Vec<(&'static str, Value)> {
        let (vocab, intermediate) = match self.family {
            Family::Mistral => (32000, 14336),
            Family::Qwen2 => (151936, 22016),
            _ => (32000, 11008),
        };
        let mut out = vec![
            ("vocab_size", json!(vocab)),
            ("hidden_size", json!(4096)),
            ("intermediate_size", json!(intermediate)),
            ("num_hidden_layers", json!(32)),
            ("num_attention_heads", json!(32)),
            ("num_key_value_heads", json!(self.kv_heads)),
            ("head_dim", json!(self.head_dim)),
            ("tie_word_embeddings", json!(false)),
        ];
        if self.family == Family::Llama {
            out.push(("attention_bias", json!(false)));
            out.push(("mlp_bias", json!(false)));
        }
        out
    }
}

fn decoder_config(c: &Conf, family: Family) -> Result<DecoderConfig> {
    let (vocab, intermediate) = match family {
        Family::Mistral => (32000, 14336),
        Family::Qwen2 => (151936, 22016),
        _ => (32000, 11008),
    };
    let hidden = c.u64("hidden_size", 4096, MAX_DIM)?;
    let heads = c.u64("num_attention_heads", 32, MAX_DIM)?;
    // An explicit null means "same as num_attention_heads" for all three;
    // an absent field takes the config class's default.
    let kv_default = match (family, c.value.get("num_key_value_heads")) {
        (_, Some(Value::Null)) => heads,
        (Family::Mistral, None) => 8,
        (Family::Qwen2, None) => 32,
        _ => heads,
    };
    let head_dim_set = c.get("head_dim").is_some();
    let head_dim = match c.opt_u64("head_dim", MAX_DIM)? {
        Some(d) => d,
        None => {
            check_heads(c, hidden, heads)?;
            hidden / heads
        }
    };
    let llama = family == Family::Llama;
    Ok(DecoderConfig {
        family,
        vocab: c.u64("vocab_size", vocab, MAX_VOCAB)?,
        hidden,
        intermediate: c.u64("intermediate_size", intermediate, MAX_DIM)?,
        layers: c.u64("num_hidden_layers", 32, MAX_LAYERS)?,
        heads,
        kv_heads: c.u64("num_key_value_heads", kv_default, MAX_DIM)?,
        head_dim,
        head_dim_set,
        attention_bias: llama && c.bool("attention_bias", false)?,
        mlp_bias: llama && c.bool("mlp_bias", false)?,
        tie: c.bool("tie_word_embeddings", false)?,
        num_labels: c.num_labels()?,
    })
}

fn build_decoder(
    b: &mut TensorListBuilder,
    c: &DecoderConfig,
    head: Head,
) -> Vec<(String, String)> {
    let p = match head {
        Head::Base => "",
        Head::QuestionAnswering if c.family != Family::Mistral => "transformer.",
        _ => "model.",
    };
    let h = c.hidden;
    let head_fields: &[&'static str] = if c.head_dim_set {
        &["num_attention_heads", "head_dim", "hidden_size"]
    } else {
        &["num_attention_heads", "hidden_size"]
    };
    let kv_fields: &[&'static str] = if c.head_dim_set {
        &["num_key_value_heads", "head_dim", "hidden_size"]
    } else {
        &["num_key_value_heads", "num_attention_heads", "hidden_size"]
    };
    // Qwen2 always has q/k/v biases; LLaMA has them with attention_bias.
    let qkv_bias = c.family == Family::Qwen2 || c.attention_bias;
    let qkv_bias_field = if c.family == Family::Qwen2 {
        "model_type"
    } else {
        "attention_bias"
    };
    b.embedding(&format!("{p}embed_tokens"), c.vocab, h, HV);
    for i in 0..c.layers {
        layer(b, "num_hidden_layers", i, |b| {
            let l = format!("{p}layers.{i}");
            let q = c.heads * c.head_dim;
            let kv = c.kv_heads * c.head_dim;
            for (name, rows, fields) in [
                ("q_proj", q, head_fields),
                ("k_proj", kv, kv_fields),
                ("v_proj", kv, kv_fields),
            ] {
                b.tensor(format!("{l}.self_attn.{name}.weight"), &[rows, h], fields);
                optional(b, qkv_bias_field, qkv_bias, |b| {
                    b.tensor(format!("{l}.self_attn.{name}.bias"), &[rows], fields)
                });
            }
            b.tensor(format!("{l}.self_attn.o_proj.weight"), &[h, q], head_fields);
            optional(b, "attention_bias", c.attention_bias, |b| {
                b.tensor(format!("{l}.self_attn.o_proj.bias"), &[h], H)
            });
            for (name, out, inp) in [
                ("gate_proj", c.intermediate, h),
                ("up_proj", c.intermediate, h),
                ("down_proj", h, c.intermediate),
            ] {
                b.tensor(format!("{l}.mlp.{name}.weight"), &[out, inp], HI);
                optional(b, "mlp_bias", c.mlp_bias, |b| {
                    b.tensor(format!("{l}.mlp.{name}.bias"), &[out], HI)
                });
            }
            b.norm(&format!("{l}.input_layernorm"), h, false, H);
            b.norm(&format!("{l}.post_attention_layernorm"), h, false, H);
        });
    }
    b.norm(&format!("{p}norm"), h, false, H);
    let mut tied = Vec::new();
    match head {
        Head::CausalLm => {
            b.linear("lm_head", c.vocab, h, false, HV);
            if c.tie {
                tied.push((
                    "lm_head.weight".to_string(),
                    "model.embed_tokens.weight".to_string(),
                ));
            }
        }
        Head::SequenceClassification => b.linear("score", c.num_labels, h, false, HL),
        Head::TokenClassification => b.linear("score", c.num_labels, h, true, HL),
        Head::QuestionAnswering => b.linear("qa_outputs", 2, h, true, H),
        _ => {}
    }
    tied
}

// --- GPT-2 ------------------------------------------------------------------

struct Gpt2Config {
    vocab: u64,
    positions: u64,
    embed: u64,
    layers: u64,
    inner: u64,
    cross_attention: bool,
    tie: bool,
    num_labels: u64,
    summary_use_proj: bool,
    summary_proj_to_labels: bool,
}

impl Gpt2Config {
    fn defaults(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("vocab_size", json!(50257)),
            ("n_positions", json!(1024)),
            ("n_embd", json!(768)),
            ("n_layer", json!(12)),
            ("n_head", json!(12)),
            ("n_inner", Value::Null),
            ("add_cross_attention", json!(false)),
            ("tie_word_embeddings", json!(true)),
        ]
    }
}

fn gpt2_config(c: &Conf) -> Result<Gpt2Config> {
    let embed = c.u64("n_embd", 768, MAX_DIM)?;
    let heads = c.u64("n_head", 12, MAX_DIM)?;
    if !embed.is_multiple_of(heads) {
        return Err(err(
            ErrorKind::BadConfig,
            format!("config field \"n_embd\" = {embed} is not a multiple of \"n_head\" = {heads}"),
        ));
    }
    Ok(Gpt2Config {
        vocab: c.u64("vocab_size", 50257, MAX_VOCAB)?,
        positions: c.u64("n_positions", 1024, MAX_DIM)?,
        embed,
        layers: c.u64("n_layer", 12, MAX_LAYERS)?,
        inner: c.u64("n_inner", 4 * embed, MAX_DIM)?,
        cross_attention: c.bool("add_cross_attention", false)?,
        tie: c.bool("tie_word_embeddings", true)?,
        num_labels: c.num_labels()?,
        summary_use_proj: c.bool("summary_use_proj", true)?,
        summary_proj_to_labels: c.bool("summary_proj_to_labels", true)?,
    })
}

const E: &[&str] = &["n_embd"];
const EI: &[&str] = &["n_embd", "n_inner"];

fn build_gpt2(b: &mut TensorListBuilder, c: &Gpt2Config, head: Head) -> Vec<(String, String)> {
    let p = if head == Head::Base {
        ""
    } else {
        "transformer."
    };
    let e = c.embed;
    b.embedding(&format!("{p}wte"), c.vocab, e, &["vocab_size", "n_embd"]);
    b.embedding(
        &format!("{p}wpe"),
        c.positions,
        e,
        &["n_positions", "n_embd"],
    );
    for i in 0..c.layers {
        layer(b, "n_layer", i, |b| {
            let l = format!("{p}h.{i}");
            // Conv1D stores its weight as [in, out].
            b.norm(&format!("{l}.ln_1"), e, true, E);
            b.tensor(format!("{l}.attn.c_attn.weight"), &[e, 3 * e], E);
            b.tensor(format!("{l}.attn.c_attn.bias"), &[3 * e], E);
            b.tensor(format!("{l}.attn.c_proj.weight"), &[e, e], E);
            b.tensor(format!("{l}.attn.c_proj.bias"), &[e], E);
            b.norm(&format!("{l}.ln_2"), e, true, E);
            optional(b, "add_cross_attention", c.cross_attention, |b| {
                b.tensor(format!("{l}.crossattention.c_attn.weight"), &[e, 2 * e], E);
                b.tensor(format!("{l}.crossattention.c_attn.bias"), &[2 * e], E);
                b.tensor(format!("{l}.crossattention.q_attn.weight"), &[e, e], E);
                b.tensor(format!("{l}.crossattention.q_attn.bias"), &[e], E);
                b.tensor(format!("{l}.crossattention.c_proj.weight"), &[e, e], E);
                b.tensor(format!("{l}.crossattention.c_proj.bias"), &[e], E);
                b.norm(&format!("{l}.ln_cross_attn"), e, true, E);
            });
            b.tensor(format!("{l}.mlp.c_fc.weight"), &[e, c.inner], EI);
            b.tensor(format!("{l}.mlp.c_fc.bias"), &[c.inner], EI);
            b.tensor(format!("{l}.mlp.c_proj.weight"), &[c.inner, e], EI);
            b.tensor(format!("{l}.mlp.c_proj.bias"), &[e], E);
        });
    }
    b.norm(&format!("{p}ln_f"), e, true, E);
    let mut tied = Vec::new();
    let labels: &[&'static str] = &["n_embd", "num_labels"];
    match head {
        Head::CausalLm | Head::DoubleHeads => {
            b.linear("lm_head", c.vocab, e, false, &["vocab_size", "n_embd"]);
            if head == Head::DoubleHeads && c.summary_use_proj {
                // GPT2DoubleHeadsModel sets num_labels = 1 before building
                // its SequenceSummary.
                let classes = if c.summary_proj_to_labels { 1 } else { e };
                b.linear("multiple_choice_head.summary", classes, e, true, E);
            }
            if c.tie {
                tied.push((
                    "lm_head.weight".to_string(),
                    "transformer.wte.weight".to_string(),
                ));
            }
        }
        Head::SequenceClassification => b.linear("score", c.num_labels, e, false, labels),
        Head::TokenClassification => b.linear("classifier", c.num_labels, e, true, labels),
        Head::QuestionAnswering => b.linear("qa_outputs", 2, e, true, E),
        _ => {}
    }
    tied
}

// --- ViT --------------------------------------------------------------------

struct VitConfig {
    hidden: u64,
    layers: u64,
    intermediate: u64,
    patch: (u64, u64),
    patches: u64,
    channels: u64,
    qkv_bias: bool,
    encoder_stride: u64,
    pooler_size: u64,
    num_labels: u64,
}

impl VitConfig {
    fn defaults(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("hidden_size", json!(768)),
            ("num_hidden_layers", json!(12)),
            ("num_attention_heads", json!(12)),
            ("intermediate_size", json!(3072)),
            ("image_size", json!(224)),
            ("patch_size", json!(16)),
            ("num_channels", json!(3)),
            ("qkv_bias", json!(true)),
            ("encoder_stride", json!(16)),
            ("pooler_output_size", json!(self.hidden)),
        ]
    }
}

fn vit_config(c: &Conf) -> Result<VitConfig> {
    let hidden = c.u64("hidden_size", 768, MAX_DIM)?;
    let heads = c.u64("num_attention_heads", 12, MAX_DIM)?;
    check_heads(c, hidden, heads)?;
    let patch = c.pair("patch_size", 16)?;
    Ok(VitConfig {
        hidden,
        layers: c.u64("num_hidden_layers", 12, MAX_LAYERS)?,
        intermediate: c.u64("intermediate_size", 3072, MAX_DIM)?,
        patch,
        patches: patch_count(c.pair("image_size", 224)?, patch, c)?,
        channels: c.u64("num_channels", 3, 4096)?,
        qkv_bias: c.bool("qkv_bias", true)?,
        encoder_stride: c.u64("encoder_stride", 16, 4096)?,
        pooler_size: c.u64("pooler_output_size", hidden, MAX_DIM)?,
        num_labels: c.num_labels()?,
    })
}

fn patch_count(image: (u64, u64), patch: (u64, u64), c: &Conf) -> Result<u64> {
    let n = (image.0 / patch.0) * (image.1 / patch.1);
    if n == 0 {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field {:?} {image:?} is smaller than {:?} {patch:?}",
                c.field_name("image_size"),
                c.field_name("patch_size")
            ),
        ));
    }
    Ok(n)
}

fn build_vit(b: &mut TensorListBuilder, c: &VitConfig, head: Head) {
    let p = if head == Head::Base { "" } else { "vit." };
    let h = c.hidden;
    let patches = c.patches;
    b.tensor(format!("{p}embeddings.cls_token"), &[1, 1, h], H);
    if head == Head::MaskedImageModeling {
        b.tensor(format!("{p}embeddings.mask_token"), &[1, 1, h], H);
    }
    b.tensor(
        format!("{p}embeddings.position_embeddings"),
        &[1, patches + 1, h],
        &["image_size", "patch_size", "hidden_size"],
    );
    b.tensor(
        format!("{p}embeddings.patch_embeddings.projection.weight"),
        &[h, c.channels, c.patch.0, c.patch.1],
        &["hidden_size", "num_channels", "patch_size"],
    );
    b.tensor(
        format!("{p}embeddings.patch_embeddings.projection.bias"),
        &[h],
        H,
    );
    for i in 0..c.layers {
        layer(b, "num_hidden_layers", i, |b| {
            let l = format!("{p}layers.{i}");
            for name in ["q_proj", "k_proj", "v_proj"] {
                b.tensor(format!("{l}.attention.{name}.weight"), &[h, h], H);
                optional(b, "qkv_bias", c.qkv_bias, |b| {
                    b.tensor(format!("{l}.attention.{name}.bias"), &[h], H)
                });
            }
            b.linear(&format!("{l}.attention.o_proj"), h, h, true, H);
            b.norm(&format!("{l}.layernorm_before"), h, true, H);
            b.norm(&format!("{l}.layernorm_after"), h, true, H);
            b.linear(&format!("{l}.mlp.fc1"), c.intermediate, h, true, HI);
            b.linear(&format!("{l}.mlp.fc2"), h, c.intermediate, true, HI);
        });
    }
    b.norm(&format!("{p}layernorm"), h, true, H);
    match head {
        Head::Base => b.linear(
            "pooler.dense",
            c.pooler_size,
            h,
            true,
            &["pooler_output_size", "hidden_size"],
        ),
        Head::ImageClassification if c.num_labels > 0 => {
            b.linear("classifier", c.num_labels, h, true, HL)
        }
        Head::MaskedImageModeling => {
            let out = c.encoder_stride * c.encoder_stride * c.channels;
            let fields: &[&'static str] = &["encoder_stride", "num_channels", "hidden_size"];
            b.tensor("decoder.0.weight", &[out, h, 1, 1], fields);
            b.tensor("decoder.0.bias", &[out], fields);
        }
        _ => {}
    }
}

// --- CLIP -------------------------------------------------------------------

/// Field names of one CLIP tower: plain in a `clip_text_model` config,
/// under `text_config.` in a `clip` config.
struct ClipFields {
    section: &'static str,
    hidden: &'static str,
    layers: &'static str,
    intermediate: &'static str,
    vocab: &'static str,
    positions: &'static str,
    image: &'static str,
    patch: &'static str,
    channels: &'static str,
    projection: &'static str,
}

const CLIP_TEXT: ClipFields = ClipFields {
    section: "",
    hidden: "hidden_size",
    layers: "num_hidden_layers",
    intermediate: "intermediate_size",
    vocab: "vocab_size",
    positions: "max_position_embeddings",
    image: "image_size",
    patch: "patch_size",
    channels: "num_channels",
    projection: "projection_dim",
};
const CLIP_NESTED_TEXT: ClipFields = ClipFields {
    section: "text_config",
    hidden: "text_config.hidden_size",
    layers: "text_config.num_hidden_layers",
    intermediate: "text_config.intermediate_size",
    vocab: "text_config.vocab_size",
    positions: "text_config.max_position_embeddings",
    image: "text_config.image_size",
    patch: "text_config.patch_size",
    channels: "text_config.num_channels",
    projection: "text_config.projection_dim",
};
const CLIP_NESTED_VISION: ClipFields = ClipFields {
    section: "vision_config",
    hidden: "vision_config.hidden_size",
    layers: "vision_config.num_hidden_layers",
    intermediate: "vision_config.intermediate_size",
    vocab: "vision_config.vocab_size",
    positions: "vision_config.max_position_embeddings",
    image: "vision_config.image_size",
    patch: "vision_config.patch_size",
    channels: "vision_config.num_channels",
    projection: "vision_config.projection_dim",
};

struct ClipTower {
    hidden: u64,
    layers: u64,
    intermediate: u64,
    /// Text: vocabulary and positions. Vision: patches + 1 and channels.
    vocab: u64,
    positions: u64,
    patch: (u64, u64),
    channels: u64,
    projection: u64,
}

fn clip_tower(c: &Conf, text: bool) -> Result<(ClipTower, Vec<(&'static str, Value)>)> {
    let (hidden, intermediate, layers, heads) = if text {
        (512, 2048, 12, 8)
    } else {
        (768, 3072, 12, 12)
    };
    let hidden = c.u64("hidden_size", hidden, MAX_DIM)?;
    let heads = c.u64("num_attention_heads", heads, MAX_DIM)?;
    check_heads(c, hidden, heads)?;
    let mut defaults = vec![
        ("hidden_size", json!(if text { 512 } else { 768 })),
        ("intermediate_size", json!(if text { 2048 } else { 3072 })),
        ("num_hidden_layers", json!(12)),
        ("num_attention_heads", json!(if text { 8 } else { 12 })),
        ("projection_dim", json!(512)),
    ];
    let tower = if text {
        defaults.push(("vocab_size", json!(49408)));
        defaults.push(("max_position_embeddings", json!(77)));
        ClipTower {
            hidden,
            layers: c.u64("num_hidden_layers", layers, MAX_LAYERS)?,
            intermediate: c.u64("intermediate_size", intermediate, MAX_DIM)?,
            vocab: c.u64("vocab_size", 49408, MAX_VOCAB)?,
            positions: c.u64("max_position_embeddings", 77, MAX_DIM)?,
            patch: (0, 0),
            channels: 0,
            projection: c.u64("projection_dim", 512, MAX_DIM)?,
        }
    } else {
        defaults.push(("image_size", json!(224)));
        defaults.push(("patch_size", json!(32)));
        defaults.push(("num_channels", json!(3)));
        let image = c.pair("image_size", 224)?;
        let patch = c.pair("patch_size", 32)?;
        ClipTower {
            hidden,
            layers: c.u64("num_hidden_layers", layers, MAX_LAYERS)?,
            intermediate: c.u64("intermediate_size", intermediate, MAX_DIM)?,
            vocab: 0,
            positions: patch_count(image, patch, c)? + 1,
            patch,
            channels: c.u64("num_channels", 3, 4096)?,
            projection: c.u64("projection_dim", 512, MAX_DIM)?,
        }
    };
    Ok((tower, defaults))
}

fn clip_encoder(b: &mut TensorListBuilder, p: &str, t: &ClipTower, f: &ClipFields) {
    let h = t.hidden;
    let hf: &[&'static str] = &[f.hidden];
    let hi: &[&'static str] = &[f.hidden, f.intermediate];
    for i in 0..t.layers {
        layer(b, f.layers, i, |b| {
            let l = format!("{p}encoder.layers.{i}");
            for name in ["k_proj", "v_proj", "q_proj", "out_proj"] {
                b.linear(&format!("{l}.self_attn.{name}"), h, h, true, hf);
            }
            b.norm(&format!("{l}.layer_norm1"), h, true, hf);
            b.linear(&format!("{l}.mlp.fc1"), t.intermediate, h, true, hi);
            b.linear(&format!("{l}.mlp.fc2"), h, t.intermediate, true, hi);
            b.norm(&format!("{l}.layer_norm2"), h, true, hf);
        });
    }
}

fn clip_text(b: &mut TensorListBuilder, p: &str, t: &ClipTower, f: &ClipFields) {
    let h = t.hidden;
    b.embedding(
        &format!("{p}embeddings.token_embedding"),
        t.vocab,
        h,
        &[f.vocab, f.hidden],
    );
    b.embedding(
        &format!("{p}embeddings.position_embedding"),
        t.positions,
        h,
        &[f.positions, f.hidden],
    );
    clip_encoder(b, p, t, f);
    b.norm(&format!("{p}final_layer_norm"), h, true, &[f.hidden]);
}

fn clip_vision(b: &mut TensorListBuilder, p: &str, t: &ClipTower, f: &ClipFields) {
    let h = t.hidden;
    b.tensor(format!("{p}embeddings.class_embedding"), &[h], &[f.hidden]);
    b.tensor(
        format!("{p}embeddings.patch_embedding.weight"),
        &[h, t.channels, t.patch.0, t.patch.1],
        &[f.hidden, f.channels, f.patch],
    );
    b.embedding(
        &format!("{p}embeddings.position_embedding"),
        t.positions,
        h,
        &[f.image, f.patch, f.hidden],
    );
    b.norm(&format!("{p}pre_layrnorm"), h, true, &[f.hidden]);
    clip_encoder(b, p, t, f);
    b.norm(&format!("{p}post_layernorm"), h, true, &[f.hidden]);
}

fn build_clip(
    b: &mut TensorListBuilder,
    value: &Value,
    resolved: &Resolved,
    normalised: &mut Value,
) -> Result<()> {
    let nested = value.get("model_type").and_then(Value::as_str) == Some("clip");
    let sub = |name: &'static str| -> Result<Conf> {
        match value.get(name) {
            None | Some(Value::Null) => Ok(Conf {
                value: &Value::Null,
                path: name,
            }),
            Some(v @ Value::Object(_)) => Ok(Conf {
                value: v,
                path: name,
            }),
            Some(other) => Err(err(
                ErrorKind::BadConfig,
                format!("config field {name:?} must be an object, got {other}"),
            )),
        }
    };
    let (text_conf, vision_conf, text_fields, vision_fields) = if nested {
        (
            sub("text_config")?,
            sub("vision_config")?,
            &CLIP_NESTED_TEXT,
            &CLIP_NESTED_VISION,
        )
    } else {
        let own = Conf { value, path: "" };
        (own, own, &CLIP_TEXT, &CLIP_TEXT)
    };
    let mut fill = |section: &str, defaults: Vec<(&'static str, Value)>| {
        let target = if section.is_empty() {
            normalised.as_object_mut()
        } else {
            if normalised.get(section).is_none_or(Value::is_null) {
                if let Some(object) = normalised.as_object_mut() {
                    object.insert(section.to_string(), json!({}));
                }
            }
            normalised.get_mut(section).and_then(Value::as_object_mut)
        };
        if let Some(object) = target {
            for (key, default) in defaults {
                object.entry(key).or_insert(default);
            }
        }
    };
    match (resolved.family, resolved.head) {
        (Family::Clip, Head::Base) => {
            let (text, text_defaults) = clip_tower(&text_conf, true)?;
            let (vision, vision_defaults) = clip_tower(&vision_conf, false)?;
            let top = Conf { value, path: "" };
            let projection = top.u64("projection_dim", 512, MAX_DIM)?;
            b.tensor("logit_scale", &[], &[]);
            clip_text(b, "text_model.", &text, text_fields);
            clip_vision(b, "vision_model.", &vision, vision_fields);
            b.linear(
                "visual_projection",
                projection,
                vision.hidden,
                false,
                &["projection_dim", vision_fields.hidden],
            );
            b.linear(
                "text_projection",
                projection,
                text.hidden,
                false,
                &["projection_dim", text_fields.hidden],
            );
            fill("text_config", text_defaults);
            fill("vision_config", vision_defaults);
            fill("", vec![("projection_dim", json!(512))]);
        }
        (Family::Clip, _) => {
            // CLIPForImageClassification.
            let (vision, vision_defaults) = clip_tower(&vision_conf, false)?;
            let labels = Conf { value, path: "" }.num_labels()?;
            clip_vision(b, "vision_model.", &vision, vision_fields);
            if labels > 0 {
                b.linear(
                    "classifier",
                    labels,
                    vision.hidden,
                    true,
                    &["num_labels", vision_fields.hidden],
                );
            }
            fill("vision_config", vision_defaults);
        }
        (Family::ClipText, head) => {
            let (text, defaults) = clip_tower(&text_conf, true)?;
            if head == Head::WithProjection {
                clip_text(b, "text_model.", &text, text_fields);
                b.linear(
                    "text_projection",
                    text.projection,
                    text.hidden,
                    false,
                    &[text_fields.projection, text_fields.hidden],
                );
            } else {
                clip_text(b, "", &text, text_fields);
            }
            fill(text_fields.section, defaults);
        }
        (_, head) => {
            let (vision, defaults) = clip_tower(&vision_conf, false)?;
            if head == Head::WithProjection {
                clip_vision(b, "vision_model.", &vision, vision_fields);
                b.linear(
                    "visual_projection",
                    vision.projection,
                    vision.hidden,
                    false,
                    &[vision_fields.projection, vision_fields.hidden],
                );
            } else {
                clip_vision(b, "", &vision, vision_fields);
            }
            fill(vision_fields.section, defaults);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What from_pretrained knows of each class (data for loader::hf)
// ---------------------------------------------------------------------------

/// conversion_mapping.py "legacy": appended for every model.
const LEGACY: &[KeyRename] = &[
    KeyRename::rename("LayerNorm.gamma", "LayerNorm.weight"),
    KeyRename::rename("LayerNorm.beta", "LayerNorm.bias"),
    KeyRename::rename(".weight_g", ".parametrizations.weight.original0"),
    KeyRename::rename(".weight_v", ".parametrizations.weight.original1"),
    KeyRename::rename_at_start("model.language_model.model", "model.language_model"),
    KeyRename::rename_at_start("language_model.model.model", "model.language_model"),
];

/// conversion_mapping.py "ViTModel": the pre-5.0 layout that every ViT
/// checkpoint on the Hub still uses (save_pretrained writes it back).
const VIT_RENAMES: &[(&str, &str)] = &[
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
        base_model_prefix: base,
        tied: tied_pairs(model, &resolved).unwrap_or_default(),
        ignore_unexpected,
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

fn tied_pairs(model: &ModelSpec, resolved: &Resolved) -> Result<Vec<(String, String)>> {
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

// ---------------------------------------------------------------------------
// Inference from names and shapes
// ---------------------------------------------------------------------------

struct Names<'a> {
    shapes: HashMap<&'a str, &'a Vec<u64>>,
    names: &'a [(String, Vec<u64>)],
}

impl<'a> Names<'a> {
    fn new(names: &'a [(String, Vec<u64>)]) -> Self {
        Names {
            shapes: names.iter().map(|(n, s)| (n.as_str(), s)).collect(),
            names,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn dim(&self, name: &str, index: usize) -> Option<u64> {
        self.shapes.get(name).and_then(|s| s.get(index).copied())
    }

    /// The prefix before the first name ending with `suffix` (`bert.` in
    /// `bert.embeddings.word_embeddings.weight`), if the prefix is one of
    /// `allowed`.
    fn prefix_of(&self, suffix: &str, allowed: &[&'static str]) -> Option<&'static str> {
        allowed
            .iter()
            .find(|p| self.has(&format!("{p}{suffix}")))
            .copied()
    }

    fn any_prefix(&self, prefix: &str) -> bool {
        self.names.iter().any(|(n, _)| n.starts_with(prefix))
    }
}

/// Collects fields with evidence and the config.json they make.
struct Found {
    fields: Vec<InferredField>,
    config: Map<String, Value>,
    undetermined: Vec<String>,
}

impl Found {
    fn new(model_type: &str, class: &str) -> Self {
        let mut config = Map::new();
        config.insert("model_type".into(), json!(model_type));
        config.insert("architectures".into(), json!([class]));
        Found {
            fields: Vec::new(),
            config,
            undetermined: Vec::new(),
        }
    }

    fn set(&mut self, name: &str, value: Value, evidence: impl Into<String>) {
        self.fields.push(InferredField {
            field: name.to_string(),
            value: value.clone(),
            evidence: evidence.into(),
        });
        self.insert(name, value);
    }

    fn insert(&mut self, name: &str, value: Value) {
        match name.split_once('.') {
            Some((section, key)) => {
                let entry = self
                    .config
                    .entry(section.to_string())
                    .or_insert_with(|| json!({}));
                if let Some(object) = entry.as_object_mut() {
                    object.insert(key.to_string(), value);
                }
            }
            None => {
                self.config.insert(name.to_string(), value);
            }
        }
    }

    /// Attention heads are not in the shapes: assume 64-wide heads.
    fn heads(&mut self, field: &str, hidden: u64) {
        let heads = if hidden.is_multiple_of(64) {
            (hidden / 64).max(1)
        } else {
            1
        };
        self.insert(field, json!(heads));
        self.undetermined.push(format!(
            "{field}: attention heads are not visible in shapes (assumed {heads}, 64-wide heads)"
        ));
    }

    fn finish(self, class: &str) -> Inferred {
        let mut undetermined = self.undetermined;
        undetermined.insert(
            0,
            format!("architecture {class}: read from the task-head tensors"),
        );
        Inferred {
            family: "hf".to_string(),
            fields: self.fields,
            config: Value::Object(self.config),
            preset: None,
            ranking: Vec::new(),
            undetermined,
        }
    }
}

/// Infer a transformers `config.json` (model_type, architecture, sizes) from
/// (prefix-free) names and shapes; `None` unless the names are one of the
/// families this module builds.
pub fn infer(names: &[(String, Vec<u64>)]) -> Option<Inferred> {
    let n = Names::new(names);
    if let Some(p) = n.prefix_of(
        "embeddings.word_embeddings.weight",
        &["", "bert.", "roberta."],
    ) {
        if n.any_prefix(&format!("{p}encoder.layer.")) {
            return Some(infer_bert(&n, p));
        }
    }
    if let Some(p) = n.prefix_of("embed_tokens.weight", &["", "model.", "transformer."]) {
        if n.has(&format!("{p}layers.0.self_attn.q_proj.weight")) {
            return Some(infer_decoder(&n, p));
        }
    }
    if let Some(p) = n.prefix_of("wte.weight", &["", "transformer."]) {
        if n.has(&format!("{p}h.0.attn.c_attn.weight")) {
            return Some(infer_gpt2(&n, p));
        }
    }
    if let Some(p) = n.prefix_of("embeddings.cls_token", &["", "vit."]) {
        if n.has(&format!("{p}embeddings.patch_embeddings.projection.weight")) {
            return Some(infer_vit(&n, p));
        }
    }
    let clip_text = n.prefix_of("embeddings.token_embedding.weight", &["text_model.", ""]);
    let clip_vision = n.prefix_of("embeddings.class_embedding", &["vision_model.", ""]);
    if clip_text.is_some() || clip_vision.is_some() {
        return infer_clip(&n, clip_text, clip_vision);
    }
    None
}

fn infer_bert(n: &Names, p: &'static str) -> Inferred {
    let word = format!("{p}embeddings.word_embeddings.weight");
    let (vocab, hidden) = (n.dim(&word, 0).unwrap_or(0), n.dim(&word, 1).unwrap_or(0));
    let type_vocab = n
        .dim(&format!("{p}embeddings.token_type_embeddings.weight"), 0)
        .unwrap_or(2);
    let roberta = p == "roberta."
        || n.has("lm_head.dense.weight")
        || n.has("classifier.out_proj.weight")
        || (p.is_empty() && !n.any_prefix("cls.") && type_vocab == 1);
    let pooler = n.has(&format!("{p}pooler.dense.weight"));
    let labels = n
        .dim("classifier.weight", 0)
        .or(n.dim("classifier.out_proj.weight", 0));
    let (class, num_labels) = if roberta {
        if n.has("lm_head.dense.weight") {
            ("RobertaForMaskedLM", None)
        } else if n.has("classifier.out_proj.weight") {
            ("RobertaForSequenceClassification", labels)
        } else if n.has("qa_outputs.weight") {
            ("RobertaForQuestionAnswering", None)
        } else if labels == Some(1) && pooler {
            ("RobertaForMultipleChoice", None)
        } else if labels.is_some() {
            ("RobertaForTokenClassification", labels)
        } else {
            ("RobertaModel", None)
        }
    } else if n.has("cls.predictions.bias") || n.has("cls.predictions.transform.dense.weight") {
        if n.has("cls.seq_relationship.weight") {
            ("BertForPreTraining", None)
        } else {
            ("BertForMaskedLM", None)
        }
    } else if n.has("cls.seq_relationship.weight") {
        ("BertForNextSentencePrediction", None)
    } else if n.has("qa_outputs.weight") {
        ("BertForQuestionAnswering", None)
    } else if labels == Some(1) && pooler {
        ("BertForMultipleChoice", None)
    } else if labels.is_some() && pooler {
        ("BertForSequenceClassification", labels)
    } else if labels.is_some() {
        ("BertForTokenClassification", labels)
    } else {
        ("BertModel", None)
    };
    let mut f = Found::new(if roberta { "roberta" } else { "bert" }, class);
    if p.is_empty() && !roberta && type_vocab != 1 && !n.any_prefix("cls.") {
        f.undetermined.push(
            "model_type: a bare BERT and RoBERTa encoder have the same names (bert assumed)"
                .to_string(),
        );
    }
    f.set("vocab_size", json!(vocab), format!("{word} shape[0]"));
    f.set("hidden_size", json!(hidden), format!("{word} shape[1]"));
    f.set(
        "num_hidden_layers",
        json!(count_blocks(n.names, &format!("{p}encoder.layer."))),
        format!("count of {p}encoder.layer.N"),
    );
    let intermediate = format!("{p}encoder.layer.0.intermediate.dense.weight");
    f.set(
        "intermediate_size",
        json!(n.dim(&intermediate, 0).unwrap_or(0)),
        format!("{intermediate} shape[0]"),
    );
    let positions = format!("{p}embeddings.position_embeddings.weight");
    f.set(
        "max_position_embeddings",
        json!(n.dim(&positions, 0).unwrap_or(0)),
        format!("{positions} shape[0]"),
    );
    f.set(
        "type_vocab_size",
        json!(type_vocab),
        format!("{p}embeddings.token_type_embeddings.weight shape[0]"),
    );
    let cross = n.has(&format!(
        "{p}encoder.layer.0.crossattention.self.query.weight"
    ));
    f.set(
        "add_cross_attention",
        json!(cross),
        format!(
            "{p}encoder.layer.0.crossattention {}",
            if cross { "exists" } else { "is absent" }
        ),
    );
    if cross {
        f.insert("is_decoder", json!(true));
    }
    if let Some(labels) = num_labels {
        f.set("num_labels", json!(labels), "classifier rows");
    }
    f.heads("num_attention_heads", hidden);
    f.finish(class)
}

fn infer_decoder(n: &Names, p: &'static str) -> Inferred {
    let embed = format!("{p}embed_tokens.weight");
    let (vocab, hidden) = (n.dim(&embed, 0).unwrap_or(0), n.dim(&embed, 1).unwrap_or(0));
    let l0 = format!("{p}layers.0");
    let q_rows = n
        .dim(&format!("{l0}.self_attn.q_proj.weight"), 0)
        .unwrap_or(hidden);
    let k_rows = n
        .dim(&format!("{l0}.self_attn.k_proj.weight"), 0)
        .unwrap_or(q_rows);
    let q_bias = n.has(&format!("{l0}.self_attn.q_proj.bias"));
    let o_bias = n.has(&format!("{l0}.self_attn.o_proj.bias"));
    let mlp_bias = n.has(&format!("{l0}.mlp.gate_proj.bias"));
    let qwen2 = q_bias && !o_bias;
    let (class, labels) = if p.is_empty() {
        (if qwen2 { "Qwen2Model" } else { "LlamaModel" }, None)
    } else if let Some(rows) = n.dim("score.weight", 0) {
        if n.has("score.bias") {
            (
                if qwen2 {
                    "Qwen2ForTokenClassification"
                } else {
                    "LlamaForTokenClassification"
                },
                Some(rows),
            )
        } else {
            (
                if qwen2 {
                    "Qwen2ForSequenceClassification"
                } else {
                    "LlamaForSequenceClassification"
                },
                Some(rows),
            )
        }
    } else if n.has("qa_outputs.weight") {
        let class = match (qwen2, p) {
            (true, _) => "Qwen2ForQuestionAnswering",
            (false, "model.") => "MistralForQuestionAnswering",
            _ => "LlamaForQuestionAnswering",
        };
        (class, None)
    } else {
        (
            if qwen2 {
                "Qwen2ForCausalLM"
            } else {
                "LlamaForCausalLM"
            },
            None,
        )
    };
    let model_type = if qwen2 {
        "qwen2"
    } else if class.starts_with("Mistral") {
        "mistral"
    } else {
        "llama"
    };
    let mut f = Found::new(model_type, class);
    if model_type == "llama" && !o_bias && !mlp_bias {
        f.undetermined.push(
            "model_type: LLaMA and Mistral checkpoints have the same tensors (llama assumed)"
                .to_string(),
        );
    }
    f.set("vocab_size", json!(vocab), format!("{embed} shape[0]"));
    f.set("hidden_size", json!(hidden), format!("{embed} shape[1]"));
    f.set(
        "num_hidden_layers",
        json!(count_blocks(n.names, &format!("{p}layers."))),
        format!("count of {p}layers.N"),
    );
    let gate = format!("{l0}.mlp.gate_proj.weight");
    f.set(
        "intermediate_size",
        json!(n.dim(&gate, 0).unwrap_or(0)),
        format!("{gate} shape[0]"),
    );
    // Heads: only the widths of q_proj and k_proj are visible. Assume the
    // usual head width (128 from 4096 up, else 64) when it divides both.
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let preferred = if hidden >= 4096 { 128 } else { 64 };
    let head_dim = [preferred, 64, 128]
        .into_iter()
        .find(|d| q_rows.is_multiple_of(*d) && k_rows.is_multiple_of(*d))
        .unwrap_or_else(|| gcd(q_rows, k_rows).max(1));
    let heads = q_rows / head_dim;
    let kv_heads = k_rows / head_dim;
    f.insert("num_attention_heads", json!(heads));
    f.set(
        "num_key_value_heads",
        json!(kv_heads),
        format!(
            "{l0}.self_attn.k_proj.weight has {k_rows} rows, q_proj {q_rows}: {} query heads per key/value head",
            q_rows.checked_div(k_rows).unwrap_or(0)
        ),
    );
    if q_rows != hidden {
        f.set(
            "head_dim",
            json!(head_dim),
            format!("q_proj has {q_rows} rows, not hidden_size {hidden}"),
        );
    }
    f.undetermined.push(format!(
        "num_attention_heads / num_key_value_heads: shapes show {q_rows} query and {k_rows} key/value features; {heads} and {kv_heads} heads assume head_dim {head_dim}"
    ));
    if model_type == "llama" {
        f.set(
            "attention_bias",
            json!(q_bias || o_bias),
            format!(
                "{l0}.self_attn.o_proj.bias {}",
                if o_bias { "exists" } else { "is absent" }
            ),
        );
        f.set(
            "mlp_bias",
            json!(mlp_bias),
            format!(
                "{l0}.mlp.gate_proj.bias {}",
                if mlp_bias { "exists" } else { "is absent" }
            ),
        );
    }
    if class.ends_with("ForCausalLM") {
        let head = n.has("lm_head.weight");
        f.set(
            "tie_word_embeddings",
            json!(!head),
            if head {
                "lm_head.weight is saved (untied, or saved with its tied twin)"
            } else {
                "no lm_head.weight: tied to model.embed_tokens.weight"
            },
        );
    }
    if let Some(labels) = labels {
        f.set("num_labels", json!(labels), "score.weight shape[0]");
    }
    f.finish(class)
}

fn infer_gpt2(n: &Names, p: &'static str) -> Inferred {
    let class = if p.is_empty() {
        "GPT2Model"
    } else if n.has("multiple_choice_head.summary.weight") {
        "GPT2DoubleHeadsModel"
    } else if n.has("score.weight") {
        "GPT2ForSequenceClassification"
    } else if n.has("classifier.weight") {
        "GPT2ForTokenClassification"
    } else if n.has("qa_outputs.weight") {
        "GPT2ForQuestionAnswering"
    } else {
        "GPT2LMHeadModel"
    };
    let mut f = Found::new("gpt2", class);
    let wte = format!("{p}wte.weight");
    let e = n.dim(&wte, 1).unwrap_or(0);
    f.set(
        "vocab_size",
        json!(n.dim(&wte, 0).unwrap_or(0)),
        format!("{wte} shape[0]"),
    );
    f.set("n_embd", json!(e), format!("{wte} shape[1]"));
    let wpe = format!("{p}wpe.weight");
    f.set(
        "n_positions",
        json!(n.dim(&wpe, 0).unwrap_or(0)),
        format!("{wpe} shape[0]"),
    );
    f.set(
        "n_layer",
        json!(count_blocks(n.names, &format!("{p}h."))),
        format!("count of {p}h.N"),
    );
    let fc = format!("{p}h.0.mlp.c_fc.weight");
    let inner = n.dim(&fc, 1).unwrap_or(4 * e);
    f.set(
        "n_inner",
        if inner == 4 * e {
            Value::Null
        } else {
            json!(inner)
        },
        format!("{fc} shape[1] = {inner} (Conv1D stores [in, out])"),
    );
    let cross = n.has(&format!("{p}h.0.crossattention.c_attn.weight"));
    f.set(
        "add_cross_attention",
        json!(cross),
        format!(
            "{p}h.0.crossattention {}",
            if cross { "exists" } else { "is absent" }
        ),
    );
    if let Some(labels) = n.dim("score.weight", 0).or(n.dim("classifier.weight", 0)) {
        f.set("num_labels", json!(labels), "classification head rows");
    }
    if class == "GPT2DoubleHeadsModel" {
        f.insert("num_labels", json!(1));
    }
    f.heads("n_head", e);
    f.finish(class)
}

fn infer_vit(n: &Names, p: &'static str) -> Inferred {
    let class = if n.has("decoder.0.weight") {
        "ViTForMaskedImageModeling"
    } else if p == "vit." {
        "ViTForImageClassification"
    } else {
        "ViTModel"
    };
    let mut f = Found::new("vit", class);
    let projection = format!("{p}embeddings.patch_embeddings.projection.weight");
    let hidden = n.dim(&projection, 0).unwrap_or(0);
    let channels = n.dim(&projection, 1).unwrap_or(3);
    let (ph, pw) = (
        n.dim(&projection, 2).unwrap_or(0),
        n.dim(&projection, 3).unwrap_or(0),
    );
    f.set(
        "hidden_size",
        json!(hidden),
        format!("{projection} shape[0]"),
    );
    f.set(
        "num_channels",
        json!(channels),
        format!("{projection} shape[1]"),
    );
    f.set(
        "patch_size",
        if ph == pw { json!(ph) } else { json!([ph, pw]) },
        format!("{projection} shape[2:]"),
    );
    let positions = n
        .dim(&format!("{p}embeddings.position_embeddings"), 1)
        .unwrap_or(1);
    match super::exact_sqrt(positions.saturating_sub(1)).filter(|_| ph == pw) {
        Some(grid) => f.set(
            "image_size",
            json!(grid * ph),
            format!(
                "{p}embeddings.position_embeddings has {positions} positions = {grid}x{grid}+1"
            ),
        ),
        None => f.undetermined.push(format!(
            "image_size: {} patches in a grid whose aspect the shapes do not tell",
            positions.saturating_sub(1)
        )),
    }
    // Old (encoder.layer.N.attention.attention.query) or new (layers.N.attention.q_proj) names.
    let old = n.any_prefix(&format!("{p}encoder.layer."));
    let (layers_prefix, q, fc1) = if old {
        (
            format!("{p}encoder.layer."),
            format!("{p}encoder.layer.0.attention.attention.query.bias"),
            format!("{p}encoder.layer.0.intermediate.dense.weight"),
        )
    } else {
        (
            format!("{p}layers."),
            format!("{p}layers.0.attention.q_proj.bias"),
            format!("{p}layers.0.mlp.fc1.weight"),
        )
    };
    f.set(
        "num_hidden_layers",
        json!(count_blocks(n.names, &layers_prefix)),
        format!("count of {layers_prefix}N"),
    );
    f.set(
        "intermediate_size",
        json!(n.dim(&fc1, 0).unwrap_or(0)),
        format!("{fc1} shape[0]"),
    );
    let qkv_bias = n.has(&q);
    f.set(
        "qkv_bias",
        json!(qkv_bias),
        format!("{q} {}", if qkv_bias { "exists" } else { "is absent" }),
    );
    if let Some(rows) = n.dim("pooler.dense.weight", 0) {
        f.set(
            "pooler_output_size",
            json!(rows),
            "pooler.dense.weight shape[0]",
        );
    }
    if let Some(labels) = n.dim("classifier.weight", 0) {
        f.set("num_labels", json!(labels), "classifier.weight shape[0]");
    } else if class == "ViTForImageClassification" {
        f.set("num_labels", json!(0), "no classifier");
    }
    if let Some(out) = n.dim("decoder.0.weight", 0) {
        let stride = super::exact_sqrt(out / channels.max(1)).unwrap_or(0);
        f.set(
            "encoder_stride",
            json!(stride),
            format!("decoder.0.weight shape[0] = {out} = stride^2 x {channels} channels"),
        );
    }
    f.heads("num_attention_heads", hidden);
    f.finish(class)
}

/// A CLIP tower's sizes into `f` under `section` ("" or "text_config").
fn infer_clip_tower(f: &mut Found, n: &Names, p: &str, section: &str, text: bool) -> u64 {
    let field = |name: &str| {
        if section.is_empty() {
            name.to_string()
        } else {
            format!("{section}.{name}")
        }
    };
    let q = format!("{p}encoder.layers.0.self_attn.q_proj.weight");
    let hidden = n.dim(&q, 0).unwrap_or(0);
    f.set(
        &field("hidden_size"),
        json!(hidden),
        format!("{q} shape[0]"),
    );
    f.set(
        &field("num_hidden_layers"),
        json!(count_blocks(n.names, &format!("{p}encoder.layers."))),
        format!("count of {p}encoder.layers.N"),
    );
    let fc1 = format!("{p}encoder.layers.0.mlp.fc1.weight");
    f.set(
        &field("intermediate_size"),
        json!(n.dim(&fc1, 0).unwrap_or(0)),
        format!("{fc1} shape[0]"),
    );
    if text {
        let token = format!("{p}embeddings.token_embedding.weight");
        f.set(
            &field("vocab_size"),
            json!(n.dim(&token, 0).unwrap_or(0)),
            format!("{token} shape[0]"),
        );
        let position = format!("{p}embeddings.position_embedding.weight");
        f.set(
            &field("max_position_embeddings"),
            json!(n.dim(&position, 0).unwrap_or(0)),
            format!("{position} shape[0]"),
        );
    } else {
        let patch = format!("{p}embeddings.patch_embedding.weight");
        let (channels, size) = (n.dim(&patch, 1).unwrap_or(3), n.dim(&patch, 3).unwrap_or(0));
        f.set(
            &field("num_channels"),
            json!(channels),
            format!("{patch} shape[1]"),
        );
        f.set(
            &field("patch_size"),
            json!(size),
            format!("{patch} shape[3]"),
        );
        let position = format!("{p}embeddings.position_embedding.weight");
        let positions = n.dim(&position, 0).unwrap_or(1);
        let grid = super::exact_sqrt(positions.saturating_sub(1)).unwrap_or(0);
        f.set(
            &field("image_size"),
            json!(grid * size),
            format!("{position} has {positions} rows = {grid}x{grid}+1"),
        );
    }
    f.heads(&field("num_attention_heads"), hidden);
    hidden
}

fn infer_clip(
    n: &Names,
    text: Option<&'static str>,
    vision: Option<&'static str>,
) -> Option<Inferred> {
    let text = text.filter(|p| n.has(&format!("{p}encoder.layers.0.self_attn.q_proj.weight")));
    let vision = vision.filter(|p| {
        n.has(&format!("{p}encoder.layers.0.self_attn.q_proj.weight"))
            && n.has(&format!("{p}pre_layrnorm.weight"))
    });
    let (class, model_type) = match (text, vision) {
        (Some(_), Some(_)) => ("CLIPModel", "clip"),
        (None, Some(_)) if n.has("classifier.weight") => ("CLIPForImageClassification", "clip"),
        (None, Some(_)) if n.has("visual_projection.weight") => {
            ("CLIPVisionModelWithProjection", "clip_vision_model")
        }
        (None, Some(_)) => ("CLIPVisionModel", "clip_vision_model"),
        (Some(_), None) if n.has("text_projection.weight") => {
            ("CLIPTextModelWithProjection", "clip_text_model")
        }
        (Some(_), None) => ("CLIPTextModel", "clip_text_model"),
        (None, None) => return None,
    };
    let mut f = Found::new(model_type, class);
    let nested = model_type == "clip";
    if let Some(p) = text {
        infer_clip_tower(&mut f, n, p, if nested { "text_config" } else { "" }, true);
    }
    if let Some(p) = vision {
        infer_clip_tower(
            &mut f,
            n,
            p,
            if nested { "vision_config" } else { "" },
            false,
        );
    }
    if let Some(rows) = n
        .dim("text_projection.weight", 0)
        .or(n.dim("visual_projection.weight", 0))
    {
        f.set("projection_dim", json!(rows), "projection weight shape[0]");
    }
    if let Some(labels) = n.dim("classifier.weight", 0) {
        f.set("num_labels", json!(labels), "classifier.weight shape[0]");
    }
    Some(f.finish(class))
}
