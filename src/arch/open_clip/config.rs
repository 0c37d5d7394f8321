//! The open_clip model-config JSON read with open_clip's defaults
//! (`CLIPVisionCfg`, `CLIPTextCfg` in open_clip/model.py) into the plain
//! structs the tensor-list builders use, with every field checked and
//! capped; also the normalised config (what the user gave plus every
//! default that decides a tensor) that `ModelSpec` keeps. Configs whose
//! towers other libraries build (timm, Hugging Face) and CoCa are refused
//! here with a message saying why.

use crate::error::{err, ErrorKind, Result};
use serde_json::{json, Value};

/// Whether a JSON value looks like an open_clip model config (has both
/// tower sections).
pub fn looks_like_config(value: &Value) -> bool {
    value.get("vision_cfg").is_some() && value.get("text_cfg").is_some()
}

/// Field names of one tower, for error messages and `depends_on`.
pub(super) struct Fields {
    pub(super) width: &'static str,
    pub(super) layers: &'static str,
    /// `vision_cfg.head_width` or `text_cfg.heads`.
    pub(super) heads: &'static str,
    pub(super) mlp_ratio: &'static str,
    pub(super) ls_init_value: &'static str,
    pub(super) qk_norm: &'static str,
    pub(super) scaled_cosine_attn: &'static str,
    pub(super) scale_heads: &'static str,
    pub(super) scale_attn_inner: &'static str,
    pub(super) scale_attn: &'static str,
    pub(super) scale_fc: &'static str,
}

pub(super) const VISION: Fields = Fields {
    width: "vision_cfg.width",
    layers: "vision_cfg.layers",
    heads: "vision_cfg.head_width",
    mlp_ratio: "vision_cfg.mlp_ratio",
    ls_init_value: "vision_cfg.ls_init_value",
    qk_norm: "vision_cfg.qk_norm",
    scaled_cosine_attn: "vision_cfg.scaled_cosine_attn",
    scale_heads: "vision_cfg.scale_heads",
    scale_attn_inner: "vision_cfg.scale_attn_inner",
    scale_attn: "vision_cfg.scale_attn",
    scale_fc: "vision_cfg.scale_fc",
};

pub(super) const TEXT: Fields = Fields {
    width: "text_cfg.width",
    layers: "text_cfg.layers",
    heads: "text_cfg.heads",
    mlp_ratio: "text_cfg.mlp_ratio",
    ls_init_value: "text_cfg.ls_init_value",
    qk_norm: "text_cfg.qk_norm",
    scaled_cosine_attn: "text_cfg.scaled_cosine_attn",
    scale_heads: "text_cfg.scale_heads",
    scale_attn_inner: "text_cfg.scale_attn_inner",
    scale_attn: "text_cfg.scale_attn",
    scale_fc: "text_cfg.scale_fc",
};

/// One section of the config with its name, so errors say `vision_cfg.width`.
type Section<'a> = crate::arch::ConfigSection<'a>;

impl Section<'_> {
    fn u64_or(&self, field: &str, default: u64, max: u64) -> Result<u64> {
        let value = match self.get(field) {
            None => default,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.bad(field, "a non-negative integer", v))?,
        };
        if value == 0 || value > max {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {:?} = {value} is outside 1..={max}",
                    self.field_name(field)
                ),
            ));
        }
        Ok(value)
    }

    /// An int or a `[height, width]` pair (`image_size`, `patch_size`).
    fn pair_or(&self, field: &str, default: u64, max: u64) -> Result<(u64, u64)> {
        let pair = match self.get(field) {
            None => (default, default),
            Some(Value::Array(items)) => match items.as_slice() {
                [a, b] => match (a.as_u64(), b.as_u64()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(self.bad(field, "an integer or two integers", &json!(items))),
                },
                _ => return Err(self.bad(field, "an integer or two integers", &json!(items))),
            },
            Some(v) => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| self.bad(field, "an integer or two integers", v))?;
                (n, n)
            }
        };
        if pair.0 == 0 || pair.1 == 0 || pair.0 > max || pair.1 > max {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {:?} = {:?} is outside 1..={max}",
                    self.field_name(field),
                    pair
                ),
            ));
        }
        Ok(pair)
    }

    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0 && *x <= 64.0)
                .ok_or_else(|| self.bad(field, "a number in (0, 64]", v)),
        }
    }

    /// Python truthiness of a flag that is a bool in the dataclass.
    fn flag(&self, field: &str) -> Result<bool> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Number(n)) => Ok(n.as_f64() != Some(0.0)),
            Some(v) => Err(self.bad(field, "true or false", v)),
        }
    }

    /// Set and not None (`ls_init_value`, `init_logit_bias`): a value of 0 still
    /// creates the parameter.
    fn is_set(&self, field: &str) -> Result<bool> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Number(_)) => Ok(true),
            Some(v) => Err(self.bad(field, "a number or null", v)),
        }
    }

    fn non_empty_string(&self, field: &str) -> Option<String> {
        match self.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
}

/// open_clip's `Attention` options (`CustomResidualAttentionBlock`).
#[derive(Clone, Copy, Default)]
pub(super) struct BlockFlags {
    pub(super) custom: bool,
    pub(super) qk_norm: bool,
    pub(super) scaled_cosine_attn: bool,
    pub(super) scale_heads: bool,
    pub(super) scale_attn_inner: bool,
    pub(super) scale_attn: bool,
    pub(super) scale_fc: bool,
}

fn block_flags(section: &Section) -> Result<BlockFlags> {
    let mut flags = BlockFlags {
        custom: false,
        qk_norm: section.flag("qk_norm")?,
        scaled_cosine_attn: section.flag("scaled_cosine_attn")?,
        scale_heads: section.flag("scale_heads")?,
        scale_attn_inner: section.flag("scale_attn_inner")?,
        scale_attn: section.flag("scale_attn")?,
        scale_fc: section.flag("scale_fc")?,
    };
    if flags.qk_norm && flags.scaled_cosine_attn {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "{}: qk_norm and scaled_cosine_attn cannot both be set (open_clip asserts \"Cannot activate both scaled cosine and QK normalization\")",
                section.path
            ),
        ));
    }
    // Transformer(): block_type None means custom when any custom feature is on.
    flags.custom = match section.get("block_type") {
        None => {
            flags.qk_norm
                || flags.scaled_cosine_attn
                || flags.scale_heads
                || flags.scale_attn_inner
                || flags.scale_attn
                || flags.scale_fc
        }
        Some(Value::String(kind)) => kind == "custom",
        Some(v) => return Err(section.bad("block_type", "\"default\" or \"custom\"", v)),
    };
    Ok(flags)
}

/// A residual-attention stack (`Transformer`) as the builder needs it.
pub(super) struct Stack {
    pub(super) width: u64,
    pub(super) layers: u64,
    pub(super) heads: u64,
    pub(super) mlp_width: u64,
    pub(super) layer_scale: bool,
    pub(super) flags: BlockFlags,
}

/// `int(d_model * mlp_ratio)` as Python computes it.
pub(super) fn mlp_width(width: u64, ratio: f64) -> u64 {
    (width as f64 * ratio) as u64
}

pub(super) enum Pool {
    None,
    /// `attentional_pool: true`: one `attn_pool`.
    Single,
    /// `"parallel"` or `"cascade"`: `attn_pool` + `attn_pool_contrastive`.
    Two,
}

pub(super) enum VisionKind {
    Vit {
        patch: (u64, u64),
        stack: Stack,
        no_ln_pre: bool,
        pool: Pool,
        pool_queries: u64,
    },
    ResNet {
        stages: [u64; 4],
    },
}

pub(super) struct Vision {
    pub(super) width: u64,
    pub(super) image_size: (u64, u64),
    pub(super) kind: VisionKind,
}

pub(super) enum TextProjection {
    /// `nn.Parameter(width, embed_dim)`, saved as `text_projection`.
    Parameter,
    /// `proj_bias`: `nn.Linear(width, embed_dim)`.
    Linear,
    /// `proj_type: "none"`.
    None,
}

pub(super) struct Text {
    pub(super) context_length: u64,
    pub(super) vocab_size: u64,
    pub(super) embed_cls: bool,
    pub(super) projection: TextProjection,
    pub(super) stack: Stack,
}

pub(super) struct Config {
    pub(super) embed_dim: u64,
    pub(super) vision: Vision,
    pub(super) text: Text,
    pub(super) custom_text: bool,
    pub(super) logit_bias: bool,
    pub(super) nonscalar_logit_scale: bool,
}

const MAX_WIDTH: u64 = 1 << 16;
const MAX_LAYERS: u64 = 1024;

/// The config as the builders' structs, and the normalised JSON `ModelSpec`
/// keeps (see `from_config_value`).
pub(super) fn read_config(value: &Value) -> Result<(Config, Value)> {
    if !value.is_object() {
        return Err(err(
            ErrorKind::BadConfig,
            "an open_clip config must be a JSON object",
        ));
    }
    let top = Section { path: "", value };
    if top.get("multimodal_cfg").is_some() {
        return Err(err(
            ErrorKind::BadConfig,
            "config field \"multimodal_cfg\" makes this a CoCa model, which ckptcheck does not build",
        ));
    }
    let (Some(vision_value), Some(text_value)) = (top.get("vision_cfg"), top.get("text_cfg"))
    else {
        return Err(err(
            ErrorKind::BadConfig,
            "an open_clip config needs \"vision_cfg\" and \"text_cfg\" objects",
        ));
    };
    let vision = Section {
        path: "vision_cfg",
        value: vision_value,
    };
    let text = Section {
        path: "text_cfg",
        value: text_value,
    };
    if !vision_value.is_object() || !text_value.is_object() {
        return Err(err(
            ErrorKind::BadConfig,
            "config fields \"vision_cfg\" and \"text_cfg\" must be objects",
        ));
    }
    if let Some(name) = text.non_empty_string("hf_model_name") {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field \"text_cfg.hf_model_name\" = {name:?}: the text tower is a Hugging Face transformers model (CustomTextCLIP `text.transformer.*`), which ckptcheck does not build for open_clip; check the text tower against its own Hugging Face config.json"
            ),
        ));
    }
    if let Some(name) = vision.non_empty_string("timm_model_name") {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field \"vision_cfg.timm_model_name\" = {name:?}: the image tower is a timm model, which ckptcheck does not build"
            ),
        ));
    }
    let embed_dim = top.u64_or("embed_dim", 0, MAX_WIDTH)?;
    if top.get("embed_dim").is_none() {
        return Err(err(
            ErrorKind::BadConfig,
            "config field \"embed_dim\" is missing",
        ));
    }
    let mut normalised = value.clone();
    let resnet = matches!(vision.get("layers"), Some(Value::Array(_)));

    // Vision tower (_build_vision_tower).
    let width = vision.u64_or("width", 768, MAX_WIDTH)?;
    let head_width = vision.u64_or("head_width", 64, MAX_WIDTH)?;
    let image_size = vision.pair_or("image_size", 224, 1 << 14)?;
    let vision_defaults: Vec<(&str, Value)>;
    let kind = match vision.get("layers") {
        Some(Value::Array(items)) => {
            let stages: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
            let [a, b, c, d] = stages.as_slice() else {
                return Err(vision.bad(
                    "layers",
                    "an integer or a list of four stage depths",
                    &json!(items),
                ));
            };
            for depth in [a, b, c, d] {
                if *depth == 0 || *depth > 256 {
                    return Err(vision.bad(
                        "layers",
                        "four stage depths in 1..=256",
                        &json!(items),
                    ));
                }
            }
            if image_size.0 != image_size.1 {
                return Err(vision.bad(
                    "image_size",
                    "one integer for a ModifiedResNet",
                    &json!([image_size.0, image_size.1]),
                ));
            }
            vision_defaults = vec![
                ("image_size", json!(224)),
                ("width", json!(768)),
                ("head_width", json!(64)),
                ("patch_size", Value::Null),
            ];
            VisionKind::ResNet {
                stages: [*a, *b, *c, *d],
            }
        }
        _ => {
            let layers = vision.u64_or("layers", 12, MAX_LAYERS)?;
            let heads = width / head_width;
            check_heads(&vision, VISION.heads, width, heads)?;
            let mlp_ratio = vision.f64_or("mlp_ratio", 4.0)?;
            let patch = vision.pair_or("patch_size", 16, 4096)?;
            let pool = match vision.get("attentional_pool") {
                None | Some(Value::Bool(false)) => Pool::None,
                Some(Value::Bool(true)) => Pool::Single,
                Some(Value::String(kind)) if kind == "parallel" || kind == "cascade" => Pool::Two,
                Some(v) => {
                    return Err(vision.bad(
                        "attentional_pool",
                        "false, true, \"parallel\" or \"cascade\"",
                        v,
                    ))
                }
            };
            let pool_heads = vision.u64_or("attn_pooler_heads", 8, MAX_WIDTH)?;
            if !matches!(pool, Pool::None) {
                check_heads(
                    &vision,
                    "vision_cfg.attn_pooler_heads",
                    embed_dim,
                    pool_heads,
                )?;
            }
            if let Some(v) = vision.get("pos_embed_type") {
                if v != "learnable" && v != "sin_cos_2d" {
                    return Err(vision.bad("pos_embed_type", "\"learnable\" or \"sin_cos_2d\"", v));
                }
            }
            vision_defaults = vec![
                ("image_size", json!(224)),
                ("layers", json!(12)),
                ("width", json!(768)),
                ("head_width", json!(64)),
                ("mlp_ratio", json!(4.0)),
                ("patch_size", json!(16)),
                ("ls_init_value", Value::Null),
                ("no_ln_pre", json!(false)),
                ("attentional_pool", json!(false)),
                ("attn_pooler_queries", json!(256)),
            ];
            VisionKind::Vit {
                patch,
                stack: Stack {
                    width,
                    layers,
                    heads,
                    mlp_width: mlp_width(width, mlp_ratio),
                    layer_scale: vision.is_set("ls_init_value")?,
                    flags: block_flags(&vision)?,
                },
                no_ln_pre: vision.flag("no_ln_pre")?,
                pool,
                pool_queries: vision.u64_or("attn_pooler_queries", 256, 1 << 20)?,
            }
        }
    };

    // Text tower (_build_text_tower, TextTransformer).
    let text_width = text.u64_or("width", 512, MAX_WIDTH)?;
    let text_heads = text.u64_or("heads", 8, MAX_WIDTH)?;
    check_heads(&text, TEXT.heads, text_width, text_heads)?;
    let projection = if text
        .get("proj_type")
        .is_some_and(|v| v.as_str() == Some("none"))
    {
        TextProjection::None
    } else if text.flag("proj_bias")? {
        TextProjection::Linear
    } else {
        TextProjection::Parameter
    };
    let text_mlp_ratio = text.f64_or("mlp_ratio", 4.0)?;
    let text_cfg = Text {
        context_length: text.u64_or("context_length", 77, 1 << 20)?,
        vocab_size: text.u64_or("vocab_size", 49408, 1 << 24)?,
        embed_cls: text.flag("embed_cls")?,
        projection,
        stack: Stack {
            width: text_width,
            layers: text.u64_or("layers", 12, MAX_LAYERS)?,
            heads: text_heads,
            mlp_width: mlp_width(text_width, text_mlp_ratio),
            layer_scale: text.is_set("ls_init_value")?,
            flags: block_flags(&text)?,
        },
    };
    let text_defaults = [
        ("context_length", json!(77)),
        ("vocab_size", json!(49408)),
        ("width", json!(512)),
        ("heads", json!(8)),
        ("layers", json!(12)),
        ("mlp_ratio", json!(4.0)),
        ("ls_init_value", Value::Null),
        ("embed_cls", json!(false)),
        ("proj_bias", json!(false)),
        ("proj_type", json!("linear")),
    ];
    let flag_defaults = [
        "qk_norm",
        "scaled_cosine_attn",
        "scale_heads",
        "scale_attn_inner",
        "scale_attn",
        "scale_fc",
    ];
    // The config as ModelSpec keeps it: what the user gave plus open_clip's
    // defaults for every field that decides a tensor, so explanations can
    // compare a checkpoint's value with the model's.
    if let Some(object) = normalised.as_object_mut() {
        for (key, value) in [
            ("custom_text", json!(false)),
            ("init_logit_bias", Value::Null),
            ("nonscalar_logit_scale", json!(false)),
        ] {
            object.entry(key).or_insert(value);
        }
    }
    for (section, defaults) in [
        ("vision_cfg", vision_defaults.as_slice()),
        ("text_cfg", text_defaults.as_slice()),
    ] {
        if let Some(object) = normalised.get_mut(section).and_then(Value::as_object_mut) {
            for (key, value) in defaults {
                object.entry(*key).or_insert(value.clone());
            }
            if section == "text_cfg" || !resnet {
                for key in flag_defaults {
                    object.entry(key).or_insert(json!(false));
                }
            }
        }
    }
    let config = Config {
        embed_dim,
        vision: Vision {
            width,
            image_size,
            kind,
        },
        text: text_cfg,
        custom_text: top.flag("custom_text")?,
        logit_bias: top.is_set("init_logit_bias")?,
        nonscalar_logit_scale: top.flag("nonscalar_logit_scale")?,
    };
    Ok((config, normalised))
}

/// nn.MultiheadAttention asserts `embed_dim % num_heads == 0`.
fn check_heads(section: &Section, field: &str, width: u64, heads: u64) -> Result<()> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "{}: width {width} is not divisible into {heads} attention heads (from {field})",
                section.path
            ),
        ));
    }
    Ok(())
}
