//! What to run: a `ModelDesc` (an image tower and/or a text tower with
//! their hyperparameters) from a ckptcheck preset, a Chinese-CLIP or
//! open_clip config JSON, or a Hugging Face `config.json` (bert, roberta,
//! gpt2, llama, mistral, qwen2); the inputs a forward pass takes; and
//! `forward`, which runs the right graph on any `Backend`.
//!
//! Hyperparameters (the structs in `config`) are filled in here from the
//! config values themselves, with the defaults the model code uses
//! (transformers' `PretrainedConfig` classes, open_clip's `CLIPVisionCfg` /
//! `CLIPTextCfg`). Models the forward
//! pass does not cover yet (ModifiedResNet, timm or HF towers inside
//! open_clip, LayerScale, RoPE scaling) are described with the reason, so the
//! verdict says so instead of failing silently.

use super::{bert, gpt2, llama, vit, Activation, Backend};
// The config structs live in `config` so that the graphs need not import
// this file; re-exported so `reference::model::VitConfig` and the rest still
// name them.
pub use super::config::{BertConfig, ClipTextConfig, Gpt2Config, LlamaConfig, VitConfig};
use crate::arch::{self, ModelSpec};
use crate::error::{err, ErrorKind, Result};
use crate::weights::WeightSource;
use serde::Serialize;
use serde_json::Value;

/// One runnable tower.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tower {
    Vit(VitConfig),
    ClipText(ClipTextConfig),
    Bert(BertConfig),
    Gpt2(Gpt2Config),
    Llama(LlamaConfig),
}

impl Tower {
    pub fn layers(&self) -> usize {
        match self {
            Tower::Vit(c) => c.layers,
            Tower::ClipText(c) => c.layers,
            Tower::Bert(c) => c.layers,
            Tower::Gpt2(c) => c.n_layer,
            Tower::Llama(c) => c.layers,
        }
    }

    /// Name of the output, as the model's API calls it.
    pub fn output_name(&self) -> &'static str {
        match self {
            Tower::Vit(_) => "encode_image",
            Tower::ClipText(_) => "encode_text",
            Tower::Bert(c) if c.projection.is_some() => "encode_text",
            Tower::Bert(_) => "last_hidden_state",
            Tower::Gpt2(_) | Tower::Llama(_) => "logits",
        }
    }

    /// Output shape for an input of `tokens` tokens (batch 1 included).
    pub fn output_shape(&self, tokens: usize) -> Vec<usize> {
        match self {
            Tower::Vit(c) => vec![1, c.embed_dim],
            Tower::ClipText(c) => vec![1, c.embed_dim],
            Tower::Bert(c) => match c.projection {
                Some(e) => vec![1, e],
                None => vec![1, tokens, c.hidden],
            },
            Tower::Gpt2(c) => vec![1, tokens, c.vocab],
            Tower::Llama(c) => vec![1, tokens, c.vocab],
        }
    }

    /// The prefix a bare model saves without (`BertModel` vs
    /// `BertForMaskedLM`), looked up both ways.
    pub fn base_prefix(&self) -> String {
        match self {
            Tower::Bert(c) => c.prefix.clone(),
            Tower::Gpt2(_) => "transformer.".into(),
            Tower::Llama(_) => "model.".into(),
            Tower::Vit(_) | Tower::ClipText(_) => String::new(),
        }
    }

    pub fn vocab(&self) -> Option<usize> {
        match self {
            Tower::Vit(_) => None,
            Tower::ClipText(c) => Some(c.vocab),
            Tower::Bert(c) => Some(c.vocab),
            Tower::Gpt2(c) => Some(c.vocab),
            Tower::Llama(c) => Some(c.vocab),
        }
    }
}

/// A model as the forward pass sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDesc {
    /// `cn_clip ViT-B-16@RoBERTa-wwm-ext-base-chinese`, `hf llama`, ...
    pub name: String,
    pub image_tower: Option<Tower>,
    pub text_tower: Option<Tower>,
    /// Why a tower the model has cannot run yet (ModifiedResNet, ...).
    pub unsupported: Vec<String>,
}

/// What goes in: a preprocessed image or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `[3, res, res]` channel-major, already normalised.
    Image {
        res: usize,
        data: Vec<f32>,
    },
    Tokens(Vec<u32>),
}

impl Input {
    pub fn describe(&self) -> String {
        match self {
            Input::Image { res, .. } => format!("image [1, 3, {res}, {res}]"),
            Input::Tokens(ids) => format!("token ids [1, {}]", ids.len()),
        }
    }
}

/// CLIP's normalisation constants (Chinese-CLIP and OpenAI use the same).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// The default image: a smooth deterministic RGB pattern in [0, 1],
/// `r = x/(R-1)`, `g = y/(R-1)`, `b = ((x + 2y) mod 17)/16`, normalised with
/// CLIP's mean and std, as `[3, R, R]`.
pub fn default_image(res: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * res * res);
    let last = (res.max(2) - 1) as f32;
    for c in 0..3 {
        for y in 0..res {
            for x in 0..res {
                let raw = match c {
                    0 => x as f32 / last,
                    1 => y as f32 / last,
                    _ => ((x + 2 * y) % 17) as f32 / 16.0,
                };
                out.push((raw - CLIP_MEAN[c]) / CLIP_STD[c]);
            }
        }
    }
    out
}

/// Default sequence length of the token input.
pub const DEFAULT_TOKENS: usize = 8;

/// The default token ids: `id_i = (17 + 31·i) mod vocab` for i in 0..8, and
/// for BERT towers with a vocab of at least 103 ids `[CLS] = 101` first and
/// `[SEP] = 102` last (open_clip text: the largest id is the end of text).
/// Id 0 (BERT's padding) is replaced by 1.
pub fn default_tokens(tower: &Tower) -> Vec<u32> {
    let vocab = tower.vocab().unwrap_or(1).max(2) as u32;
    let mut ids: Vec<u32> = (0..DEFAULT_TOKENS as u32)
        .map(|i| (17 + 31 * i) % vocab)
        .map(|id| if id == 0 { 1 } else { id })
        .collect();
    if let Tower::Bert(c) = tower {
        if c.vocab >= 103 {
            ids[0] = 101;
            ids[DEFAULT_TOKENS - 1] = 102;
        }
        if let Some(pad) = c.roberta_padding_idx {
            for id in &mut ids {
                if *id == pad {
                    *id = pad + 1;
                }
            }
        }
    }
    ids
}

/// Run `tower` on `input` through `layers` blocks.
pub fn forward<B: Backend>(
    backend: &mut B,
    weights: &dyn WeightSource,
    tower: &Tower,
    input: &Input,
    layers: usize,
) -> Result<B::Tensor> {
    match (tower, input) {
        (Tower::Vit(c), Input::Image { res, data }) => {
            if *res != c.resolution {
                return Err(err(
                    ErrorKind::BadArgument,
                    format!(
                        "the image is {res}x{res} but the model takes {0}x{0}",
                        c.resolution
                    ),
                ));
            }
            vit::encode_image(backend, weights, c, data.clone(), layers)
        }
        (Tower::ClipText(c), Input::Tokens(ids)) => {
            check_tokens(ids, c.vocab, c.context)?;
            vit::encode_text(backend, weights, c, ids, layers)
        }
        (Tower::Bert(c), Input::Tokens(ids)) => {
            let offset = c.roberta_padding_idx.map_or(0, |p| p as usize + 1);
            check_tokens(ids, c.vocab, c.max_positions.saturating_sub(offset))?;
            bert::forward(backend, weights, c, ids, layers)
        }
        (Tower::Gpt2(c), Input::Tokens(ids)) => {
            check_tokens(ids, c.vocab, c.n_positions)?;
            gpt2::forward(backend, weights, c, ids, layers)
        }
        (Tower::Llama(c), Input::Tokens(ids)) => {
            check_tokens(ids, c.vocab, usize::MAX)?;
            llama::forward(backend, weights, c, ids, layers)
        }
        _ => Err(err(
            ErrorKind::BadArgument,
            format!("a {} cannot go into this tower", input.describe()),
        )),
    }
}

fn check_tokens(ids: &[u32], vocab: usize, max_len: usize) -> Result<()> {
    if ids.is_empty() {
        return Err(err(ErrorKind::BadArgument, "the token sequence is empty"));
    }
    if ids.len() > max_len {
        return Err(err(
            ErrorKind::BadArgument,
            format!("{} tokens, the model takes at most {max_len}", ids.len()),
        ));
    }
    if let Some(bad) = ids.iter().find(|id| **id as usize >= vocab) {
        return Err(err(
            ErrorKind::BadArgument,
            format!("token id {bad} is outside the vocabulary of {vocab}"),
        ));
    }
    Ok(())
}

// ---- configs -------------------------------------------------------------

fn bad(message: impl Into<String>) -> crate::Error {
    err(ErrorKind::BadConfig, message)
}

fn get_usize(v: &Value, field: &str) -> Result<usize> {
    match v.get(field) {
        Some(n) => n
            .as_u64()
            .filter(|n| *n > 0 && *n < (1 << 31))
            .map(|n| n as usize)
            .ok_or_else(|| {
                bad(format!(
                    "config field {field:?} must be a positive integer, got {n}"
                ))
            }),
        None => Err(bad(format!("config field {field:?} is missing"))),
    }
}

fn get_usize_or(v: &Value, field: &str, default: usize) -> Result<usize> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(_) => get_usize(v, field),
    }
}

fn get_f32_or(v: &Value, field: &str, default: f32) -> Result<f32> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(n) => n
            .as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| bad(format!("config field {field:?} must be a number, got {n}"))),
    }
}

fn get_bool_or(v: &Value, field: &str, default: bool) -> bool {
    v.get(field).and_then(Value::as_bool).unwrap_or(default)
}

fn activation_named(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu" | "gelu_python" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "quick_gelu" => Activation::QuickGelu,
        "silu" | "swish" => Activation::Silu,
        other => return Err(bad(format!("activation {other:?} is not implemented"))),
    })
}

fn divide(what: &str, width: usize, by: usize) -> Result<usize> {
    if by == 0 || !width.is_multiple_of(by) {
        return Err(bad(format!("{what}: {width} is not divisible by {by}")));
    }
    Ok(width / by)
}

/// From a built-in preset or the `ModelSpec` `arch` built from config JSONs.
pub fn from_spec(spec: &ModelSpec) -> Result<ModelDesc> {
    match spec.family.as_str() {
        "cn_clip" => cn_clip(spec),
        "open_clip" => open_clip(&spec.config, spec.preset.as_deref().unwrap_or("open_clip")),
        "hf" => hf(&spec.config),
        other => Err(bad(format!("no forward pass for the {other} family"))),
    }
}

pub fn from_preset(name: &str) -> Result<ModelDesc> {
    from_spec(&arch::model_from_preset(name)?)
}

/// From config JSON texts `(file, text)`: one HF `config.json`, one
/// open_clip model config, or Chinese-CLIP's vision + text pair.
pub fn from_config_texts(texts: &[(String, String)]) -> Result<ModelDesc> {
    if let [(file, text)] = texts {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| bad(format!("config is not valid JSON: {e}")).in_file(file))?;
        if value.get("model_type").is_some() {
            return hf(&value).map_err(|e| e.in_file(file));
        }
        if value.get("vision_cfg").is_some() || value.get("text_cfg").is_some() {
            return open_clip(&value, file).map_err(|e| e.in_file(file));
        }
    }
    from_spec(&arch::model_from_config_json(texts)?)
}

fn cn_clip(spec: &ModelSpec) -> Result<ModelDesc> {
    let c = &spec.config;
    let embed_dim = get_usize(c, "embed_dim")?;
    let mut unsupported = Vec::new();
    let image_tower = match c.get("vision_layers") {
        Some(Value::Number(_)) => {
            let width = get_usize(c, "vision_width")?;
            let head_width = get_usize_or(c, "vision_head_width", 64)?;
            Some(Tower::Vit(VitConfig {
                prefix: "visual.".into(),
                width,
                layers: get_usize(c, "vision_layers")?,
                heads: divide("vision_width / vision_head_width", width, head_width)?,
                patch: get_usize(c, "vision_patch_size")?,
                resolution: get_usize(c, "image_resolution")?,
                mlp_width: 4 * width,
                embed_dim,
                act: Activation::QuickGelu,
                eps: 1e-5,
            }))
        }
        _ => {
            unsupported.push(
                "the ModifiedResNet (RN50) image tower has no forward pass yet; the text tower runs"
                    .to_string(),
            );
            None
        }
    };
    let hidden = get_usize(c, "text_hidden_size")?;
    let text = BertConfig {
        prefix: "bert.".into(),
        hidden,
        layers: get_usize(c, "text_num_hidden_layers")?,
        heads: get_usize(c, "text_num_attention_heads")?,
        intermediate: get_usize(c, "text_intermediate_size")?,
        eps: 1e-12,
        vocab: get_usize(c, "vocab_size")?,
        max_positions: get_usize(c, "text_max_position_embeddings")?,
        type_vocab: get_usize(c, "text_type_vocab_size")?,
        act: activation_named(
            c.get("text_hidden_act")
                .and_then(Value::as_str)
                .unwrap_or("gelu"),
        )?,
        pad_token_id: 0,
        roberta_padding_idx: None,
        projection: Some(embed_dim),
    };
    divide(
        "text_hidden_size / text_num_attention_heads",
        hidden,
        text.heads,
    )?;
    Ok(ModelDesc {
        name: format!("cn_clip {}", spec.preset.as_deref().unwrap_or("(config)")),
        image_tower,
        text_tower: Some(Tower::Bert(text)),
        unsupported,
    })
}

fn open_clip(config: &Value, name: &str) -> Result<ModelDesc> {
    let embed_dim = get_usize(config, "embed_dim")?;
    let act = if get_bool_or(config, "quick_gelu", false) {
        Activation::QuickGelu
    } else {
        Activation::GeluErf
    };
    let mut unsupported = Vec::new();
    let empty = Value::Object(Default::default());
    let v = config.get("vision_cfg").unwrap_or(&empty);
    let refuse = |cfg: &Value, tower: &str, out: &mut Vec<String>| -> bool {
        let unsupported_fields = [
            "timm_model_name",
            "hf_model_name",
            "ls_init_value",
            "no_ln_pre",
            "attentional_pool",
            "final_ln_after_pool",
            "no_causal_mask",
            "proj_bias",
            "embed_cls",
        ];
        for field in unsupported_fields {
            if cfg
                .get(field)
                .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
            {
                out.push(format!(
                    "the {tower} tower sets {field}, which the forward pass does not implement yet"
                ));
                return true;
            }
        }
        if let Some(pool) = cfg.get("pool_type").and_then(Value::as_str) {
            if !matches!(pool, "tok" | "argmax") {
                out.push(format!(
                    "the {tower} tower pools with {pool:?}, not implemented yet"
                ));
                return true;
            }
        }
        false
    };
    let image_tower = if v.get("layers").is_some_and(Value::is_array) {
        unsupported.push("the ModifiedResNet image tower has no forward pass yet".to_string());
        None
    } else if v.get("width").is_none() || refuse(v, "image", &mut unsupported) {
        None
    } else {
        let width = get_usize(v, "width")?;
        let resolution = match v.get("image_size") {
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).unwrap_or(0) as usize,
            _ => get_usize(v, "image_size")?,
        };
        let head_width = get_usize_or(v, "head_width", 64)?;
        let mlp_ratio = get_f32_or(v, "mlp_ratio", 4.0)?;
        let mlp_ratio = v
            .get("mlp_ratio")
            .and_then(Value::as_f64)
            .unwrap_or(mlp_ratio as f64);
        Some(Tower::Vit(VitConfig {
            prefix: "visual.".into(),
            width,
            layers: get_usize(v, "layers")?,
            heads: divide("vision width / head_width", width, head_width)?,
            patch: get_usize(v, "patch_size")?,
            resolution,
            mlp_width: (width as f64 * mlp_ratio) as usize,
            embed_dim,
            act,
            eps: 1e-5,
        }))
    };
    let t = config.get("text_cfg").unwrap_or(&empty);
    let text_tower = if t.get("width").is_none() || refuse(t, "text", &mut unsupported) {
        None
    } else {
        let width = get_usize(t, "width")?;
        let heads = get_usize_or(t, "heads", 8)?;
        divide("text width / heads", width, heads)?;
        let mlp_ratio = get_f32_or(t, "mlp_ratio", 4.0)?;
        let mlp_ratio = t
            .get("mlp_ratio")
            .and_then(Value::as_f64)
            .unwrap_or(mlp_ratio as f64);
        Some(Tower::ClipText(ClipTextConfig {
            width,
            layers: get_usize(t, "layers")?,
            heads,
            mlp_width: (width as f64 * mlp_ratio) as usize,
            context: get_usize_or(t, "context_length", 77)?,
            vocab: get_usize_or(t, "vocab_size", 49408)?,
            embed_dim,
            act,
            eps: 1e-5,
        }))
    };
    Ok(ModelDesc {
        name: format!("open_clip {name}"),
        image_tower,
        text_tower,
        unsupported,
    })
}

fn hf(c: &Value) -> Result<ModelDesc> {
    let model_type = c.get("model_type").and_then(Value::as_str).unwrap_or("");
    let tower = match model_type {
        "bert" | "roberta" | "xlm-roberta" => {
            if let Some(kind) = c.get("position_embedding_type").and_then(Value::as_str) {
                if kind != "absolute" {
                    return Err(bad(format!("position_embedding_type {kind:?} is not implemented")));
                }
            }
            let roberta = model_type != "bert";
            let pad = match c.get("pad_token_id") {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("config field \"pad_token_id\" must be a token id, got {n}")))?,
                _ => u32::from(roberta),
            };
            let hidden = get_usize(c, "hidden_size")?;
            let heads = get_usize(c, "num_attention_heads")?;
            divide("hidden_size / num_attention_heads", hidden, heads)?;
            Tower::Bert(BertConfig {
                prefix: if roberta { "roberta.".into() } else { "bert.".into() },
                hidden,
                layers: get_usize(c, "num_hidden_layers")?,
                heads,
                intermediate: get_usize(c, "intermediate_size")?,
                eps: get_f32_or(c, "layer_norm_eps", 1e-12)?,
                vocab: get_usize(c, "vocab_size")?,
                max_positions: get_usize_or(c, "max_position_embeddings", 512)?,
                type_vocab: get_usize_or(c, "type_vocab_size", 2)?,
                act: activation_named(c.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu"))?,
                pad_token_id: pad,
                roberta_padding_idx: roberta.then_some(pad),
                projection: None,
            })
        }
        "gpt2" => {
            let n_embd = get_usize_or(c, "n_embd", 768)?;
            let n_head = get_usize_or(c, "n_head", 12)?;
            divide("n_embd / n_head", n_embd, n_head)?;
            if !get_bool_or(c, "scale_attn_weights", true)
                || get_bool_or(c, "scale_attn_by_inverse_layer_idx", false)
                || get_bool_or(c, "reorder_and_upcast_attn", false)
            {
                return Err(bad("GPT-2 attention scaling options other than the default are not implemented"));
            }
            Tower::Gpt2(Gpt2Config {
                n_embd,
                n_layer: get_usize_or(c, "n_layer", 12)?,
                n_head,
                n_inner: get_usize_or(c, "n_inner", 4 * n_embd)?,
                eps: get_f32_or(c, "layer_norm_epsilon", 1e-5)?,
                vocab: get_usize_or(c, "vocab_size", 50257)?,
                n_positions: get_usize_or(c, "n_positions", 1024)?,
                act: activation_named(
                    c.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new"),
                )?,
            })
        }
        "llama" | "mistral" | "qwen2" => {
            let hidden = get_usize(c, "hidden_size")?;
            let heads = get_usize(c, "num_attention_heads")?;
            let kv_heads = get_usize_or(c, "num_key_value_heads", heads)?;
            let head_dim = match c.get("head_dim") {
                None | Some(Value::Null) => divide("hidden_size / num_attention_heads", hidden, heads)?,
                Some(_) => get_usize(c, "head_dim")?,
            };
            divide("num_attention_heads / num_key_value_heads", heads, kv_heads)?;
            if head_dim % 2 != 0 {
                return Err(bad("head_dim must be even for rotary embeddings"));
            }
            let act = c.get("hidden_act").and_then(Value::as_str).unwrap_or("silu");
            if activation_named(act)? != Activation::Silu {
                return Err(bad(format!("hidden_act {act:?}: only silu gates are implemented")));
            }
            // transformers 4.x: rope_theta and rope_scaling; 5.x:
            // rope_parameters {rope_type, rope_theta}.
            let params = c.get("rope_parameters").filter(|v| v.is_object());
            let rope_type = params
                .and_then(|p| p.get("rope_type"))
                .or_else(|| c.get("rope_scaling").and_then(|s| s.get("rope_type").or(s.get("type"))))
                .and_then(Value::as_str)
                .unwrap_or("default");
            if rope_type != "default" {
                return Err(bad(format!("rope scaling {rope_type:?} is not implemented")));
            }
            let theta = match params {
                Some(p) if p.get("rope_theta").is_some() => get_f32_or(p, "rope_theta", 10000.0)?,
                _ => get_f32_or(c, "rope_theta", if model_type == "qwen2" { 1e6 } else { 1e4 })?,
            };
            let attention_bias = get_bool_or(c, "attention_bias", false);
            Tower::Llama(LlamaConfig {
                hidden,
                layers: get_usize(c, "num_hidden_layers")?,
                heads,
                kv_heads,
                head_dim,
                intermediate: get_usize(c, "intermediate_size")?,
                eps: get_f32_or(c, "rms_norm_eps", 1e-6)?,
                rope_theta: theta,
                vocab: get_usize(c, "vocab_size")?,
                qkv_bias: model_type == "qwen2" || attention_bias,
                o_bias: model_type != "qwen2" && attention_bias,
                mlp_bias: get_bool_or(c, "mlp_bias", false),
            })
        }
        other => {
            return Err(bad(format!(
                "no forward pass for model_type {other:?} (bert, roberta, gpt2, llama, mistral and qwen2 run)"
            )))
        }
    };
    Ok(ModelDesc {
        name: format!("hf {model_type}"),
        image_tower: None,
        text_tower: Some(tower),
        unsupported: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_clip_presets_give_head_width_64_and_80_for_vit_h() {
        let b16 = from_preset("ViT-B-16@RoBERTa-wwm-ext-base-chinese").unwrap();
        let Some(Tower::Vit(v)) = &b16.image_tower else {
            panic!("no vit")
        };
        assert_eq!(
            (v.width, v.heads, v.patch, v.resolution, v.embed_dim),
            (768, 12, 16, 224, 512)
        );
        let h14 = from_preset("clip_cn_vit-h-14").unwrap();
        let Some(Tower::Vit(v)) = &h14.image_tower else {
            panic!("no vit")
        };
        assert_eq!((v.width, v.heads), (1280, 16));
        let Some(Tower::Bert(t)) = &h14.text_tower else {
            panic!("no bert")
        };
        assert_eq!(
            (t.hidden, t.heads, t.layers, t.projection),
            (1024, 16, 24, Some(1024))
        );
        let rn50 = from_preset("clip_cn_rn50").unwrap();
        assert!(rn50.image_tower.is_none());
        assert!(rn50.unsupported[0].contains("RN50"));
    }

    #[test]
    fn open_clip_presets_give_heads_from_head_width_and_name_what_cannot_run() {
        let h14 = from_preset("open_clip/ViT-H-14").unwrap();
        let Some(Tower::Vit(v)) = &h14.image_tower else {
            panic!("no vit")
        };
        assert_eq!(
            (v.width, v.heads, v.mlp_width, v.act),
            (1280, 16, 5120, Activation::GeluErf)
        );
        let Some(Tower::ClipText(t)) = &h14.text_tower else {
            panic!("no text")
        };
        assert_eq!((t.width, t.heads, t.context), (1024, 16, 77));
        let g14 = from_preset("open_clip/ViT-g-14").unwrap();
        let Some(Tower::Vit(v)) = &g14.image_tower else {
            panic!("no vit")
        };
        assert_eq!((v.heads, v.mlp_width), (16, 6144));
        let rn50 = from_preset("open_clip/RN50").unwrap();
        assert!(rn50.image_tower.is_none() && rn50.text_tower.is_some());
        assert!(rn50.unsupported[0].contains("ModifiedResNet"));
    }

    #[test]
    fn hf_configs_read_gqa_rope_and_defaults() {
        let text = r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 96,
            "vocab_size": 100, "rope_theta": 500000.0, "rms_norm_eps": 1e-5}"#;
        let desc = from_config_texts(&[("config.json".into(), text.into())]).unwrap();
        let Some(Tower::Llama(c)) = desc.text_tower else {
            panic!("not llama")
        };
        assert_eq!(
            (c.head_dim, c.kv_heads, c.rope_theta, c.qkv_bias),
            (16, 2, 500000.0, false)
        );
        let gpt2 =
            r#"{"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "vocab_size": 50}"#;
        let desc = from_config_texts(&[("config.json".into(), gpt2.into())]).unwrap();
        let Some(Tower::Gpt2(c)) = desc.text_tower else {
            panic!("not gpt2")
        };
        assert_eq!(
            (c.n_inner, c.act, c.n_positions),
            (128, Activation::GeluTanh, 1024)
        );
        let scaled = r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 100,
            "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}"#;
        let error = from_config_texts(&[("config.json".into(), scaled.into())]).unwrap_err();
        assert!(error.message.contains("yarn"), "{error}");
    }

    #[test]
    fn default_inputs_are_deterministic_and_inside_the_vocabulary() {
        let desc = from_preset("clip_cn_vit-b-16").unwrap();
        let text = desc.text_tower.unwrap();
        let ids = default_tokens(&text);
        assert_eq!(ids, vec![101, 48, 79, 110, 141, 172, 203, 102]);
        let image = default_image(4);
        assert_eq!(image.len(), 48);
        assert!((image[0] - (0.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
    }
}
