//! open_clip's shipped model configs (open_clip/model_configs/*.json) as
//! presets named `open_clip/<model config name>`, with their `-quickgelu`
//! aliases and the one-line summaries `ckptcheck presets` lists. A preset is
//! its config JSON built by `tensors.rs` like any user config.

use super::tensors::from_config_value;
use crate::arch::ModelSpec;
use crate::error::Result;
use serde_json::Value;

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

/// A shipped config by name (`ViT-B-32`), parsed.
pub(super) fn shipped_config(name: &str) -> Option<Value> {
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
