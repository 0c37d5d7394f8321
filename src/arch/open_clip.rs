//! OpenAI CLIP and open_clip (PyPI `open-clip-torch`) models from open_clip's
//! model-config JSON `{"embed_dim", "vision_cfg": {..}, "text_cfg": {..}}`:
//! ViT and ModifiedResNet visual towers, the text transformer, LayerScale
//! (`ls_1.gamma` / `ls_2.gamma` when `ls_init_value` is set), open_clip's
//! custom attention blocks, attentional pooling and `custom_text` models.
//! Names, shapes and `state_dict()` order follow open_clip/model.py,
//! transformer.py and modified_resnet.py (open_clip 3.x);
//! tests/fixtures/open_clip/ (made by the real library) checks them.
//!
//! Not covered: towers built by other libraries (`vision_cfg.timm_model_name`,
//! `text_cfg.hf_model_name`) and CoCa (`multimodal_cfg`); those configs are
//! reported as unsupported. Presets are named `open_clip/<model config name>`.

use super::{
    count_blocks, exact_sqrt, rank_presets, shape_of, Inferred, InferredField, ModelSpec,
    TensorListBuilder,
};
use crate::error::{err, ErrorKind, Result};
use serde_json::{json, Map, Value};

/// Every preset name starts with this.
pub const PRESET_PREFIX: &str = "open_clip/";

/// Model configs as open_clip ships them (open_clip/model_configs/*.json),
/// chosen so that no two have the same state dict.
pub const MODEL_CONFIGS: &[(&str, &str)] = &[
    (
        "RN50",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "RN101",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": [3, 4, 23, 3], "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "RN50x4",
        r#"{"embed_dim": 640, "vision_cfg": {"image_size": 288, "layers": [4, 6, 10, 6], "width": 80, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 640, "heads": 10, "layers": 12}}"#,
    ),
    (
        "RN50x16",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 384, "layers": [6, 8, 18, 8], "width": 96, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#,
    ),
    (
        "RN50x64",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 448, "layers": [3, 15, 36, 10], "width": 128, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 12}}"#,
    ),
    (
        "ViT-B-32",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "ViT-B-32-256",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 256, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "ViT-B-16",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "ViT-B-16-plus-240",
        r#"{"embed_dim": 640, "vision_cfg": {"image_size": 240, "layers": 12, "width": 896, "patch_size": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 640, "heads": 10, "layers": 12}}"#,
    ),
    (
        "ViT-L-14",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#,
    ),
    (
        "ViT-L-14-336",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#,
    ),
    (
        "ViT-H-14",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}"#,
    ),
    (
        "ViT-g-14",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 40, "width": 1408, "head_width": 88, "mlp_ratio": 4.3637, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}"#,
    ),
    (
        "ViT-bigG-14",
        r#"{"embed_dim": 1280, "vision_cfg": {"image_size": 224, "layers": 48, "width": 1664, "head_width": 104, "mlp_ratio": 4.9231, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1280, "heads": 20, "layers": 32}}"#,
    ),
    (
        "ViT-M-16-alt",
        r#"{"embed_dim": 384, "vision_cfg": {"image_size": 224, "layers": 12, "width": 512, "patch_size": 16, "ls_init_value": 0.0001}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 384, "heads": 6, "layers": 12}}"#,
    ),
    (
        "ViT-L-14-CLIPA",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14, "no_ln_pre": true, "pool_type": "avg", "final_ln_after_pool": true}, "text_cfg": {"context_length": 32, "vocab_size": 32000, "hf_tokenizer_name": "bert-base-uncased", "tokenizer_kwargs": {"strip_sep_token": true}, "width": 768, "heads": 12, "layers": 12, "pool_type": "last", "no_causal_mask": true}}"#,
    ),
];

/// Configs open_clip also ships as `<name>-quickgelu`: the same JSON plus
/// `"quick_gelu": true`, so the same tensors. They are aliases, not presets
/// of their own (inference could not tell them apart).
const QUICKGELU_TWINS: &[&str] = &[
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B-32",
    "ViT-B-16",
    "ViT-L-14",
    "ViT-L-14-336",
    "ViT-H-14",
    "ViT-bigG-14",
];

fn shipped_config(name: &str) -> Option<Value> {
    let text = MODEL_CONFIGS.iter().find(|(n, _)| *n == name)?.1;
    serde_json::from_str(text).ok()
}

pub fn preset_list() -> Vec<(String, &'static str, String)> {
    MODEL_CONFIGS
        .iter()
        .map(|(name, _)| {
            let config = shipped_config(name).unwrap_or(Value::Null);
            let mut description = format!("open_clip {}", summary(&config));
            if QUICKGELU_TWINS.contains(name) {
                description.push_str(&format!("; also {PRESET_PREFIX}{name}-quickgelu"));
            }
            (format!("{PRESET_PREFIX}{name}"), "open_clip", description)
        })
        .collect()
}

/// "ViT 12x768 patch 32 at 224, text 12x512, embed 512".
fn summary(config: &Value) -> String {
    let vision = &config["vision_cfg"];
    let text = &config["text_cfg"];
    let tower = match &vision["layers"] {
        Value::Array(stages) => format!(
            "ModifiedResNet [{}] width {}",
            stages
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(","),
            vision["width"]
        ),
        layers => format!(
            "ViT {}x{} patch {}",
            layers, vision["width"], vision["patch_size"]
        ),
    };
    format!(
        "{tower} at {}, text {}x{}, embed {}",
        vision["image_size"], text["layers"], text["width"], config["embed_dim"]
    )
}

pub fn from_preset(name: &str) -> Result<Option<ModelSpec>> {
    let Some(rest) = name.strip_prefix(PRESET_PREFIX) else {
        return Ok(None);
    };
    let (base, quick_gelu) = match rest.strip_suffix("-quickgelu") {
        Some(base) if QUICKGELU_TWINS.contains(&base) => (base, true),
        _ => (rest, false),
    };
    let Some(mut config) = shipped_config(base) else {
        return Ok(None);
    };
    if quick_gelu {
        if let Some(object) = config.as_object_mut() {
            object.insert("quick_gelu".into(), Value::Bool(true));
        }
    }
    from_config_value(&config, Some(name)).map(Some)
}

pub fn looks_like_config(value: &Value) -> bool {
    value.get("vision_cfg").is_some() && value.get("text_cfg").is_some()
}

// ---------------------------------------------------------------------------
// The config, read with open_clip's defaults (CLIPVisionCfg, CLIPTextCfg)
// ---------------------------------------------------------------------------

/// Field names of one tower, for error messages and `depends_on`.
struct Fields {
    width: &'static str,
    layers: &'static str,
    /// `vision_cfg.head_width` or `text_cfg.heads`.
    heads: &'static str,
    mlp_ratio: &'static str,
    ls_init_value: &'static str,
    qk_norm: &'static str,
    scaled_cosine_attn: &'static str,
    scale_heads: &'static str,
    scale_attn_inner: &'static str,
    scale_attn: &'static str,
    scale_fc: &'static str,
}

const VISION: Fields = Fields {
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

const TEXT: Fields = Fields {
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
type Section<'a> = super::ConfigSection<'a>;

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
struct BlockFlags {
    custom: bool,
    qk_norm: bool,
    scaled_cosine_attn: bool,
    scale_heads: bool,
    scale_attn_inner: bool,
    scale_attn: bool,
    scale_fc: bool,
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
struct Stack {
    width: u64,
    layers: u64,
    heads: u64,
    mlp_width: u64,
    layer_scale: bool,
    flags: BlockFlags,
}

/// `int(d_model * mlp_ratio)` as Python computes it.
fn mlp_width(width: u64, ratio: f64) -> u64 {
    (width as f64 * ratio) as u64
}

enum Pool {
    None,
    /// `attentional_pool: true`: one `attn_pool`.
    Single,
    /// `"parallel"` or `"cascade"`: `attn_pool` + `attn_pool_contrastive`.
    Two,
}

enum VisionKind {
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

struct Vision {
    width: u64,
    image_size: (u64, u64),
    kind: VisionKind,
}

enum TextProjection {
    /// `nn.Parameter(width, embed_dim)`, saved as `text_projection`.
    Parameter,
    /// `proj_bias`: `nn.Linear(width, embed_dim)`.
    Linear,
    /// `proj_type: "none"`.
    None,
}

struct Text {
    context_length: u64,
    vocab_size: u64,
    embed_cls: bool,
    projection: TextProjection,
    stack: Stack,
}

struct Config {
    embed_dim: u64,
    vision: Vision,
    text: Text,
    custom_text: bool,
    logit_bias: bool,
    nonscalar_logit_scale: bool,
}

const MAX_WIDTH: u64 = 1 << 16;
const MAX_LAYERS: u64 = 1024;

fn read_config(value: &Value) -> Result<(Config, Value)> {
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

// ---------------------------------------------------------------------------
// Building the state_dict() list
// ---------------------------------------------------------------------------

pub fn from_config_value(value: &Value, preset: Option<&str>) -> Result<ModelSpec> {
    let (config, normalised) = read_config(value)?;
    let mut b = TensorListBuilder::default();
    let e = config.embed_dim;
    let text = &config.text;
    let tw = text.stack.width;
    let positions = text.context_length + u64::from(text.embed_cls);
    let position_fields: &[&'static str] = &[
        "text_cfg.context_length",
        "text_cfg.embed_cls",
        "text_cfg.width",
    ];
    let logit_shape: &[u64] = if config.nonscalar_logit_scale {
        &[1]
    } else {
        &[]
    };
    if config.custom_text {
        // CustomTextCLIP: visual, text, logit_scale, logit_bias; own
        // parameters first.
        logit_parameters(&mut b, &config, logit_shape);
        visual(&mut b, &config)?;
        if text.embed_cls {
            b.push_depends(&["text_cfg.embed_cls"]);
            b.tensor("text.cls_emb", &[tw], &["text_cfg.width"]);
            b.pop_depends(1);
        }
        b.tensor(
            "text.positional_embedding",
            &[positions, tw],
            position_fields,
        );
        if let TextProjection::Parameter = text.projection {
            text_projection_parameter(&mut b, "text.text_projection", tw, e);
        }
        b.embedding(
            "text.token_embedding",
            text.vocab_size,
            tw,
            &["text_cfg.vocab_size", "text_cfg.width"],
        );
        transformer(&mut b, "text.transformer", &text.stack, &TEXT);
        b.norm("text.ln_final", tw, true, &["text_cfg.width"]);
        if let TextProjection::Linear = text.projection {
            text_projection_linear(&mut b, "text.text_projection", tw, e);
        }
    } else {
        // CLIP copies the text tower's pieces onto itself (no cls_emb).
        b.tensor("positional_embedding", &[positions, tw], position_fields);
        if let TextProjection::Parameter = text.projection {
            text_projection_parameter(&mut b, "text_projection", tw, e);
        }
        logit_parameters(&mut b, &config, logit_shape);
        visual(&mut b, &config)?;
        transformer(&mut b, "transformer", &text.stack, &TEXT);
        b.embedding(
            "token_embedding",
            text.vocab_size,
            tw,
            &["text_cfg.vocab_size", "text_cfg.width"],
        );
        b.norm("ln_final", tw, true, &["text_cfg.width"]);
        if let TextProjection::Linear = text.projection {
            text_projection_linear(&mut b, "text_projection", tw, e);
        }
    }
    Ok(ModelSpec {
        family: "open_clip".to_string(),
        class_name: if config.custom_text {
            "CustomTextCLIP"
        } else {
            "CLIP"
        }
        .to_string(),
        preset: preset.map(str::to_string),
        config: normalised,
        tensors: b.tensors,
        batchnorm_modules: b.batchnorm_modules,
        base_model_prefix: String::new(),
        tied_keys: Vec::new(),
    })
}

fn logit_parameters(b: &mut TensorListBuilder, config: &Config, shape: &[u64]) {
    b.tensor("logit_scale", shape, &["nonscalar_logit_scale"]);
    if config.logit_bias {
        b.push_depends(&["init_logit_bias"]);
        b.tensor("logit_bias", shape, &["nonscalar_logit_scale"]);
        b.pop_depends(1);
    }
}

fn text_projection_parameter(b: &mut TensorListBuilder, name: &str, width: u64, embed: u64) {
    b.push_depends(&["text_cfg.proj_type", "text_cfg.proj_bias"]);
    b.tensor(name, &[width, embed], &["text_cfg.width", "embed_dim"]);
    b.pop_depends(2);
}

fn text_projection_linear(b: &mut TensorListBuilder, name: &str, width: u64, embed: u64) {
    b.push_depends(&["text_cfg.proj_type", "text_cfg.proj_bias"]);
    b.linear(name, embed, width, true, &["text_cfg.width", "embed_dim"]);
    b.pop_depends(2);
}

/// `Transformer.resblocks`: `ResidualAttentionBlock` (nn.MultiheadAttention)
/// or `CustomResidualAttentionBlock` (open_clip's `Attention`).
fn transformer(b: &mut TensorListBuilder, prefix: &str, stack: &Stack, f: &Fields) {
    let w = stack.width;
    let width: &[&'static str] = &[f.width];
    let heads: &[&'static str] = &[f.width, f.heads];
    let mlp: &[&'static str] = &[f.width, f.mlp_ratio];
    let flags = stack.flags;
    for i in 0..stack.layers {
        let p = format!("{prefix}.resblocks.{i}");
        let layer_exists: &[&'static str] = if i > 0 { &[f.layers] } else { &[] };
        b.push_depends(layer_exists);
        b.norm(&format!("{p}.ln_1"), w, true, width);
        b.tensor(format!("{p}.attn.in_proj_weight"), &[3 * w, w], width);
        b.tensor(format!("{p}.attn.in_proj_bias"), &[3 * w], width);
        if flags.custom {
            // Attention's own parameters come before its submodules.
            optional(b, f.scaled_cosine_attn, flags.scaled_cosine_attn, |b| {
                b.tensor(format!("{p}.attn.logit_scale"), &[stack.heads, 1, 1], heads)
            });
            optional(b, f.scale_heads, flags.scale_heads, |b| {
                b.tensor(format!("{p}.attn.head_scale"), &[stack.heads, 1, 1], heads)
            });
            optional(b, f.qk_norm, flags.qk_norm, |b| {
                let head_dim = w / stack.heads;
                b.norm(&format!("{p}.attn.ln_q"), head_dim, true, heads);
                b.norm(&format!("{p}.attn.ln_k"), head_dim, true, heads);
            });
            optional(b, f.scale_attn_inner, flags.scale_attn_inner, |b| {
                b.norm(&format!("{p}.attn.ln_inner"), w, true, width)
            });
        }
        b.linear(&format!("{p}.attn.out_proj"), w, w, true, width);
        optional(b, f.scale_attn, flags.custom && flags.scale_attn, |b| {
            b.norm(&format!("{p}.ln_attn"), w, true, width)
        });
        optional(b, f.ls_init_value, stack.layer_scale, |b| {
            b.tensor(format!("{p}.ls_1.gamma"), &[w], width)
        });
        b.norm(&format!("{p}.ln_2"), w, true, width);
        b.linear(&format!("{p}.mlp.c_fc"), stack.mlp_width, w, true, mlp);
        optional(b, f.scale_fc, flags.custom && flags.scale_fc, |b| {
            b.norm(&format!("{p}.mlp.ln"), stack.mlp_width, true, mlp)
        });
        b.linear(&format!("{p}.mlp.c_proj"), w, stack.mlp_width, true, mlp);
        optional(b, f.ls_init_value, stack.layer_scale, |b| {
            b.tensor(format!("{p}.ls_2.gamma"), &[w], width)
        });
        b.pop_depends(layer_exists.len());
    }
}

/// Tensors that exist only when `field` says so.
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

fn visual(b: &mut TensorListBuilder, config: &Config) -> Result<()> {
    let vision = &config.vision;
    let w = vision.width;
    let e = config.embed_dim;
    let width: &[&'static str] = &["vision_cfg.width"];
    match &vision.kind {
        VisionKind::Vit {
            patch,
            stack,
            no_ln_pre,
            pool,
            pool_queries,
            ..
        } => {
            let grid = (vision.image_size.0 / patch.0) * (vision.image_size.1 / patch.1);
            if grid == 0 {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!(
                        "vision_cfg: image_size {:?} is smaller than patch_size {:?}",
                        vision.image_size, patch
                    ),
                ));
            }
            let pool_dim = if matches!(pool, Pool::None) { w } else { e };
            let pool_fields: &[&'static str] = if matches!(pool, Pool::None) {
                &["vision_cfg.width"]
            } else {
                &["embed_dim", "vision_cfg.attentional_pool"]
            };
            b.tensor("visual.class_embedding", &[w], width);
            b.tensor(
                "visual.positional_embedding",
                &[grid + 1, w],
                &[
                    "vision_cfg.image_size",
                    "vision_cfg.patch_size",
                    "vision_cfg.width",
                ],
            );
            b.tensor(
                "visual.proj",
                &[pool_dim, e],
                &[pool_fields, &["embed_dim"]].concat(),
            );
            b.tensor(
                "visual.conv1.weight",
                &[w, 3, patch.0, patch.1],
                &["vision_cfg.width", "vision_cfg.patch_size"],
            );
            optional(b, "vision_cfg.no_ln_pre", !no_ln_pre, |b| {
                b.norm("visual.ln_pre", w, true, width)
            });
            transformer(b, "visual.transformer", stack, &VISION);
            match pool {
                Pool::None => {}
                Pool::Single => {
                    b.push_depends(&["vision_cfg.attentional_pool"]);
                    attentional_pooler(b, "visual.attn_pool", e, w, *pool_queries, true);
                    b.pop_depends(1);
                }
                Pool::Two => {
                    b.push_depends(&["vision_cfg.attentional_pool"]);
                    attentional_pooler(b, "visual.attn_pool", e, w, *pool_queries, true);
                    attentional_pooler(b, "visual.attn_pool_contrastive", e, w, 1, false);
                    b.pop_depends(1);
                }
            }
            b.norm("visual.ln_post", pool_dim, true, pool_fields);
        }
        VisionKind::ResNet { stages } => {
            super::modified_resnet(
                b,
                w,
                stages,
                vision.image_size.0,
                e,
                &super::ResNetFields {
                    width: "vision_cfg.width",
                    layers: "vision_cfg.layers",
                    resolution: "vision_cfg.image_size",
                    embed_dim: "embed_dim",
                },
            );
        }
    }
    Ok(())
}

/// `AttentionalPooler(d_model, context_dim, n_queries)`: an
/// nn.MultiheadAttention with `kdim = vdim = context_dim`, which keeps
/// separate q/k/v weights when they differ from `d_model`.
fn attentional_pooler(
    b: &mut TensorListBuilder,
    prefix: &str,
    d_model: u64,
    context: u64,
    queries: u64,
    queries_from_config: bool,
) {
    let both: &[&'static str] = &["embed_dim", "vision_cfg.width"];
    let d: &[&'static str] = &["embed_dim"];
    let query_fields: &[&'static str] = if queries_from_config {
        &["vision_cfg.attn_pooler_queries", "embed_dim"]
    } else {
        d
    };
    b.tensor(format!("{prefix}.query"), &[queries, d_model], query_fields);
    if context == d_model {
        b.tensor(
            format!("{prefix}.attn.in_proj_weight"),
            &[3 * d_model, d_model],
            d,
        );
    } else {
        b.tensor(
            format!("{prefix}.attn.q_proj_weight"),
            &[d_model, d_model],
            d,
        );
        b.tensor(
            format!("{prefix}.attn.k_proj_weight"),
            &[d_model, context],
            both,
        );
        b.tensor(
            format!("{prefix}.attn.v_proj_weight"),
            &[d_model, context],
            both,
        );
    }
    b.tensor(format!("{prefix}.attn.in_proj_bias"), &[3 * d_model], d);
    b.linear(
        &format!("{prefix}.attn.out_proj"),
        d_model,
        d_model,
        true,
        d,
    );
    b.norm(&format!("{prefix}.ln_q"), d_model, true, d);
    b.norm(
        &format!("{prefix}.ln_k"),
        context,
        true,
        &["vision_cfg.width"],
    );
}

// ---------------------------------------------------------------------------
// Inference from names and shapes
// ---------------------------------------------------------------------------

/// Inferred fields, kept both as a list with evidence and as the nested
/// config JSON (`vision_cfg.width` goes to `config["vision_cfg"]["width"]`).
#[derive(Default)]
struct Findings {
    fields: Vec<InferredField>,
    top: Map<String, Value>,
    vision: Map<String, Value>,
    text: Map<String, Value>,
    undetermined: Vec<String>,
}

impl Findings {
    fn set(&mut self, name: &str, value: Value, evidence: impl Into<String>) {
        self.fields.push(InferredField {
            field: name.to_string(),
            value: value.clone(),
            evidence: evidence.into(),
        });
        self.insert(name, value);
    }

    /// Into the config only (values shapes cannot tell, chosen for rebuilding).
    fn insert(&mut self, name: &str, value: Value) {
        match name.split_once('.') {
            Some(("vision_cfg", key)) => self.vision.insert(key.to_string(), value),
            Some(("text_cfg", key)) => self.text.insert(key.to_string(), value),
            _ => self.top.insert(name.to_string(), value),
        };
    }

    fn replace(&mut self, name: &str, value: Value) {
        if let Some(field) = self.fields.iter_mut().find(|f| f.field == name) {
            field.value = value.clone();
        }
        self.insert(name, value);
    }
}

/// The `mlp_ratio` that gives this MLP width: a ratio some shipped config
/// uses if one fits (so a checkpoint of ViT-bigG-14 says 4.9231), else the
/// quotient.
fn mlp_ratio_for(width: u64, mlp: u64) -> Value {
    let mut candidates = vec![4.0];
    for (_, text) in MODEL_CONFIGS {
        if let Ok(config) = serde_json::from_str::<Value>(text) {
            for section in ["vision_cfg", "text_cfg"] {
                if let Some(ratio) = config[section]["mlp_ratio"].as_f64() {
                    candidates.push(ratio);
                }
            }
        }
    }
    if let Some(ratio) = candidates.into_iter().find(|r| mlp_width(width, *r) == mlp) {
        return json!(ratio);
    }
    let mut ratio = mlp as f64 / width.max(1) as f64;
    if mlp_width(width, ratio) != mlp {
        ratio = (mlp as f64 + 0.5) / width.max(1) as f64;
    }
    json!(ratio)
}

/// Read one residual stack's visible options; returns the attention heads
/// when some tensor shows them.
fn infer_stack(
    names: &[(String, Vec<u64>)],
    found: &mut Findings,
    prefix: &str,
    width: u64,
    f: &Fields,
) -> Option<(u64, String)> {
    let has = |name: &str| shape_of(names, name).is_some();
    let dim = |name: &str, index: usize| shape_of(names, name).and_then(|s| s.get(index).copied());
    let block = format!("{prefix}.resblocks.0");
    let layers = count_blocks(names, &format!("{prefix}.resblocks."));
    found.set(
        f.layers,
        json!(layers),
        format!("count of {prefix}.resblocks.N"),
    );
    if let Some(mlp) = dim(&format!("{block}.mlp.c_fc.weight"), 0) {
        found.set(
            f.mlp_ratio,
            mlp_ratio_for(width, mlp),
            format!("{block}.mlp.c_fc.weight shape[0] = {mlp} = int(width {width} x mlp_ratio)"),
        );
    }
    let layer_scale = has(&format!("{block}.ls_1.gamma"));
    found.set(
        f.ls_init_value,
        if layer_scale {
            json!(1e-5)
        } else {
            Value::Null
        },
        if layer_scale {
            format!(
                "{block}.ls_1.gamma exists (LayerScale); its initial value is not in the shapes"
            )
        } else {
            format!("no {block}.ls_1.gamma (no LayerScale)")
        },
    );
    let flags = [
        (f.qk_norm, "attn.ln_q.weight"),
        (f.scaled_cosine_attn, "attn.logit_scale"),
        (f.scale_heads, "attn.head_scale"),
        (f.scale_attn_inner, "attn.ln_inner.weight"),
        (f.scale_attn, "ln_attn.weight"),
        (f.scale_fc, "mlp.ln.weight"),
    ];
    for (field, tensor) in flags {
        let present = has(&format!("{block}.{tensor}"));
        found.set(
            field,
            json!(present),
            format!(
                "{block}.{tensor} {}",
                if present { "exists" } else { "is absent" }
            ),
        );
    }
    for tensor in ["attn.head_scale", "attn.logit_scale"] {
        if let Some(heads) = dim(&format!("{block}.{tensor}"), 0) {
            return Some((heads, format!("{block}.{tensor} shape[0]")));
        }
    }
    dim(&format!("{block}.attn.ln_q.weight"), 0)
        .filter(|head_dim| *head_dim > 0 && width.is_multiple_of(*head_dim))
        .map(|head_dim| {
            (
                width / head_dim,
                format!("{block}.attn.ln_q.weight shape[0] = head width {head_dim}"),
            )
        })
}

/// Infer an open_clip config from (prefix-free) names and shapes; `None`
/// unless the names are OpenAI CLIP's / open_clip's (`visual.*` with
/// `token_embedding.weight` / `transformer.resblocks.*`, or `text.*` for
/// CustomTextCLIP).
pub fn infer(names: &[(String, Vec<u64>)]) -> Option<Inferred> {
    let has = |name: &str| shape_of(names, name).is_some();
    let any_prefix = |prefix: &str| names.iter().any(|(n, _)| n.starts_with(prefix));
    let dim = |name: &str, index: usize| shape_of(names, name).and_then(|s| s.get(index).copied());
    if !any_prefix("visual.") {
        return None;
    }
    let custom_text = any_prefix("text.");
    let tp = if custom_text { "text." } else { "" };
    let clip_text = has(&format!("{tp}token_embedding.weight"))
        || any_prefix(&format!("{tp}transformer.resblocks."));
    if !clip_text && !custom_text {
        return None;
    }
    let mut found = Findings::default();
    let mut embed_dim = None;
    let mut vision_heads = None;
    let mut resnet = false;

    if let Some(width) = dim("visual.conv1.weight", 0)
        .filter(|_| has("visual.class_embedding") || has("visual.proj"))
    {
        let (ph, pw) = (
            dim("visual.conv1.weight", 2).unwrap_or(0),
            dim("visual.conv1.weight", 3).unwrap_or(0),
        );
        found.set(
            "vision_cfg.width",
            json!(width),
            "visual.conv1.weight shape[0]",
        );
        found.set(
            "vision_cfg.patch_size",
            if ph == pw { json!(ph) } else { json!([ph, pw]) },
            "visual.conv1.weight shape[2:]",
        );
        vision_heads = infer_stack(names, &mut found, "visual.transformer", width, &VISION);
        let positions = dim("visual.positional_embedding", 0).unwrap_or(1);
        match exact_sqrt(positions.saturating_sub(1)).filter(|_| ph == pw) {
            Some(grid) => found.set(
                "vision_cfg.image_size",
                json!(ph * grid),
                format!(
                    "visual.positional_embedding has {positions} rows = {grid}x{grid}+1 patches of {ph}"
                ),
            ),
            None => found.undetermined.push(format!(
                "vision_cfg.image_size: visual.positional_embedding has {positions} rows, {} patches of {ph}x{pw} in a grid whose aspect the shapes do not tell",
                positions.saturating_sub(1)
            )),
        }
        let no_ln_pre = !has("visual.ln_pre.weight");
        found.set(
            "vision_cfg.no_ln_pre",
            json!(no_ln_pre),
            if no_ln_pre {
                "no visual.ln_pre.weight"
            } else {
                "visual.ln_pre.weight exists"
            },
        );
        if let Some(queries) = dim("visual.attn_pool.query", 0) {
            let two = has("visual.attn_pool_contrastive.query");
            found.set(
                "vision_cfg.attentional_pool",
                if two { json!("parallel") } else { json!(true) },
                if two {
                    "visual.attn_pool and visual.attn_pool_contrastive exist (\"parallel\" or \"cascade\")"
                } else {
                    "visual.attn_pool exists"
                },
            );
            found.set(
                "vision_cfg.attn_pooler_queries",
                json!(queries),
                "visual.attn_pool.query shape[0]",
            );
        } else {
            found.set(
                "vision_cfg.attentional_pool",
                json!(false),
                "no visual.attn_pool",
            );
        }
        embed_dim = dim("visual.proj", 1).map(|e| (e, "visual.proj shape[1]"));
    } else if let Some(width) = dim("visual.layer1.0.conv1.weight", 0) {
        resnet = true;
        let stages: Vec<u64> = (1..=4)
            .map(|s| count_blocks(names, &format!("visual.layer{s}.")))
            .collect();
        let positions = dim("visual.attnpool.positional_embedding", 0).unwrap_or(1);
        let spatial = exact_sqrt(positions.saturating_sub(1)).unwrap_or(0);
        found.set(
            "vision_cfg.width",
            json!(width),
            "visual.layer1.0.conv1.weight shape[0]",
        );
        found.set(
            "vision_cfg.layers",
            json!(stages),
            "count of visual.layerS.N blocks per stage",
        );
        found.set(
            "vision_cfg.image_size",
            json!(spatial * 32),
            format!(
                "visual.attnpool.positional_embedding has {positions} rows = {spatial}x{spatial}+1"
            ),
        );
        found.insert("vision_cfg.patch_size", Value::Null);
        embed_dim = dim("visual.attnpool.c_proj.weight", 0)
            .map(|e| (e, "visual.attnpool.c_proj.weight shape[0]"));
        found.undetermined.push(
            "vision_cfg.head_width: the attention pool's heads (width*32/head_width) are not visible in shapes"
                .to_string(),
        );
    } else {
        found.undetermined.push(
            "the visual tower is neither a ViT nor a ModifiedResNet (a timm tower, vision_cfg.timm_model_name?)"
                .to_string(),
        );
    }

    let mut text_heads = None;
    let mut text_width = None;
    if clip_text {
        let width = dim(&format!("{tp}ln_final.weight"), 0)
            .or_else(|| dim(&format!("{tp}token_embedding.weight"), 1))
            .unwrap_or(0);
        text_width = Some(width);
        found.set(
            "text_cfg.width",
            json!(width),
            format!("{tp}ln_final.weight shape[0]"),
        );
        let vocab = dim(&format!("{tp}token_embedding.weight"), 0).unwrap_or(0);
        found.set(
            "text_cfg.vocab_size",
            json!(vocab),
            format!("{tp}token_embedding.weight shape[0]"),
        );
        let embed_cls = custom_text && has("text.cls_emb");
        let positions = dim(&format!("{tp}positional_embedding"), 0).unwrap_or(0);
        found.set(
            "text_cfg.context_length",
            json!(positions.saturating_sub(u64::from(embed_cls))),
            format!(
                "{tp}positional_embedding shape[0]{}",
                if embed_cls { " - 1 (cls_emb)" } else { "" }
            ),
        );
        found.set(
            "text_cfg.embed_cls",
            json!(embed_cls),
            if embed_cls {
                "text.cls_emb exists"
            } else {
                "no text.cls_emb"
            },
        );
        text_heads = infer_stack(names, &mut found, &format!("{tp}transformer"), width, &TEXT);
        let linear = format!("{tp}text_projection.weight");
        let parameter = format!("{tp}text_projection");
        let (proj_bias, proj_type, evidence) = if has(&linear) {
            (true, "linear", format!("{linear} exists (nn.Linear)"))
        } else if has(&parameter) {
            (false, "linear", format!("{parameter} is a parameter"))
        } else {
            (false, "none", format!("no {parameter}"))
        };
        found.set("text_cfg.proj_bias", json!(proj_bias), evidence.clone());
        found.set("text_cfg.proj_type", json!(proj_type), evidence);
        if embed_dim.is_none() {
            embed_dim = dim(&linear, 0)
                .map(|e| (e, "text_projection.weight shape[0]"))
                .or_else(|| dim(&parameter, 1).map(|e| (e, "text_projection shape[1]")));
        }
    } else {
        found.undetermined.push(
            "text_cfg.hf_model_name: the text tower (text.*) is a Hugging Face model, which ckptcheck does not build for open_clip"
                .to_string(),
        );
        found.insert(
            "text_cfg.hf_model_name",
            json!("(a Hugging Face text tower; its name is not in the checkpoint)"),
        );
    }
    if let Some((embed, evidence)) = embed_dim {
        found.set("embed_dim", json!(embed), evidence);
    }
    found.set(
        "custom_text",
        json!(custom_text),
        if custom_text {
            "text tower under text.* (CustomTextCLIP)"
        } else {
            "text tower at the top level (CLIP)"
        },
    );
    let nonscalar = shape_of(names, "logit_scale").is_some_and(|s| s.len() == 1);
    found.set(
        "nonscalar_logit_scale",
        json!(nonscalar),
        format!(
            "logit_scale shape {:?}",
            shape_of(names, "logit_scale").cloned().unwrap_or_default()
        ),
    );
    let bias = has("logit_bias");
    found.set(
        "init_logit_bias",
        if bias { json!(-10.0) } else { Value::Null },
        if bias {
            "logit_bias exists (SigLIP-style); its initial value is not in the shapes"
        } else {
            "no logit_bias"
        },
    );

    // Rank every preset by findings.
    let models: Vec<ModelSpec> = MODEL_CONFIGS
        .iter()
        .filter_map(|(name, _)| {
            from_preset(&format!("{PRESET_PREFIX}{name}"))
                .ok()
                .flatten()
        })
        .collect();
    let ranking = rank_presets(names, models);
    let preset = ranking
        .first()
        .filter(|s| s.exact)
        .map(|s| s.preset.clone());
    let closest = ranking
        .first()
        .and_then(|s| s.preset.strip_prefix(PRESET_PREFIX))
        .and_then(shipped_config)
        .unwrap_or(Value::Null);

    // Heads are not in the shapes unless a custom block shows them.
    let vision_width = found.vision.get("width").and_then(Value::as_u64);
    if let Some(width) = vision_width {
        let same_width = closest["vision_cfg"]["width"].as_u64() == Some(width);
        match vision_heads {
            Some((heads, evidence)) if heads > 0 => {
                found.set("vision_cfg.head_width", json!(width / heads), evidence)
            }
            _ => {
                let head_width = closest["vision_cfg"]["head_width"]
                    .as_u64()
                    .filter(|_| same_width)
                    .unwrap_or(if width % 64 == 0 { 64 } else { width });
                found.insert("vision_cfg.head_width", json!(head_width));
                if !resnet {
                    found.undetermined.push(format!(
                        "vision_cfg.head_width: attention heads are not visible in shapes (assumed {head_width}; open_clip's ViT-H-14 uses 80, ViT-g-14 88, ViT-bigG-14 104, most others 64)"
                    ));
                }
            }
        }
    }
    if let Some(width) = text_width {
        match text_heads {
            Some((heads, evidence)) => found.set("text_cfg.heads", json!(heads), evidence),
            None => {
                let heads = closest["text_cfg"]["heads"]
                    .as_u64()
                    .filter(|_| closest["text_cfg"]["width"].as_u64() == Some(width))
                    .unwrap_or(if width % 64 == 0 {
                        (width / 64).max(1)
                    } else {
                        1
                    });
                found.insert("text_cfg.heads", json!(heads));
                found.undetermined.push(format!(
                    "text_cfg.heads: attention heads are not visible in shapes (assumed {heads}; OpenAI CLIP uses width/64)"
                ));
            }
        }
    }
    // LayerScale's initial value is not in the shapes: take the closest
    // preset's when it has one.
    for section in ["vision_cfg", "text_cfg"] {
        let name = format!("{section}.ls_init_value");
        let layer_scale = found
            .fields
            .iter()
            .any(|f| f.field == name && !f.value.is_null());
        if layer_scale {
            if let Some(value) = closest[section]["ls_init_value"].as_f64() {
                found.replace(&name, json!(value));
            }
            found.undetermined.push(format!(
                "{name}: LayerScale is present; its initial value is not in the shapes"
            ));
        }
    }
    if bias {
        found.undetermined.push(
            "init_logit_bias: logit_bias is present; its initial value is not in the shapes (assumed -10, open_clip's SigLIP setting)"
                .to_string(),
        );
    }

    // Fill what is left (quick_gelu, pooling types, ...) from the closest
    // preset; every field that decides a tensor is already set above.
    for (key, value) in closest.as_object().into_iter().flatten() {
        match key.as_str() {
            "vision_cfg" | "text_cfg" => {
                let target = if key == "vision_cfg" {
                    &mut found.vision
                } else {
                    &mut found.text
                };
                for (inner, inner_value) in value.as_object().into_iter().flatten() {
                    target
                        .entry(inner.clone())
                        .or_insert_with(|| inner_value.clone());
                }
            }
            _ => {
                found
                    .top
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
    }
    let mut config = found.top;
    config.insert("vision_cfg".into(), Value::Object(found.vision));
    config.insert("text_cfg".into(), Value::Object(found.text));
    Some(Inferred {
        family: "open_clip".to_string(),
        fields: found.fields,
        config: Value::Object(config),
        preset,
        ranking,
        undetermined: found.undetermined,
    })
}
