//! Chinese-CLIP (OFA-Sys/Chinese-CLIP, PyPI `cn-clip`): a ViT or ModifiedResNet
//! vision tower, a BERT text tower, `text_projection` and `logit_scale`.
//! A model is `<vision>@<text>`: the vision JSON with every key of the text
//! JSON added on top (cn_clip/clip/utils.py `create_model`). Names, shapes and
//! `state_dict()` order follow cn_clip/clip/model.py and modeling_bert.py;
//! tests/fixtures/cn_clip/models.json (made by the real library) checks them.

use super::{
    config_u64, config_u64_or, count_blocks, exact_sqrt, rank_presets, shape_of, Inferred,
    InferredField, ModelSpec, TensorListBuilder,
};
use crate::arch::dotted;
use crate::error::{err, ErrorKind, Result};
use serde_json::{json, Value};

/// The six vision configs as cn_clip ships them (model_configs/*.json).
pub const VISION_CONFIGS: &[(&str, &str)] = &[
    (
        "ViT-B-32",
        r#"{"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768, "vision_patch_size": 32}"#,
    ),
    (
        "ViT-B-16",
        r#"{"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768, "vision_patch_size": 16}"#,
    ),
    (
        "ViT-L-14",
        r#"{"embed_dim": 768, "image_resolution": 224, "vision_layers": 24, "vision_width": 1024, "vision_patch_size": 14}"#,
    ),
    (
        "ViT-L-14-336",
        r#"{"embed_dim": 768, "image_resolution": 336, "vision_layers": 24, "vision_width": 1024, "vision_patch_size": 14}"#,
    ),
    (
        "ViT-H-14",
        r#"{"embed_dim": 1024, "image_resolution": 224, "vision_layers": 32, "vision_width": 1280, "vision_head_width": 80, "vision_patch_size": 14}"#,
    ),
    (
        "RN50",
        r#"{"embed_dim": 1024, "image_resolution": 224, "vision_layers": "[3,4,6,3]", "vision_width": 64, "vision_patch_size": null}"#,
    ),
];

/// The three text configs (BERT towers).
pub const TEXT_CONFIGS: &[(&str, &str)] = &[
    (
        "RBT3-chinese",
        r#"{"vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu", "text_hidden_dropout_prob": 0.1, "text_hidden_size": 768, "text_initializer_range": 0.02, "text_intermediate_size": 3072, "text_max_position_embeddings": 512, "text_num_attention_heads": 12, "text_num_hidden_layers": 3, "text_type_vocab_size": 2}"#,
    ),
    (
        "RoBERTa-wwm-ext-base-chinese",
        r#"{"vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu", "text_hidden_dropout_prob": 0.1, "text_hidden_size": 768, "text_initializer_range": 0.02, "text_intermediate_size": 3072, "text_max_position_embeddings": 512, "text_num_attention_heads": 12, "text_num_hidden_layers": 12, "text_type_vocab_size": 2}"#,
    ),
    (
        "RoBERTa-wwm-ext-large-chinese",
        r#"{"vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu", "text_hidden_dropout_prob": 0.1, "text_hidden_size": 1024, "text_initializer_range": 0.02, "text_intermediate_size": 4096, "text_max_position_embeddings": 512, "text_num_attention_heads": 16, "text_num_hidden_layers": 24, "text_type_vocab_size": 2}"#,
    ),
];

/// The released checkpoints' file stems and what they are.
pub const RELEASED: &[(&str, &str)] = &[
    ("clip_cn_rn50", "RN50@RBT3-chinese"),
    ("clip_cn_vit-b-16", "ViT-B-16@RoBERTa-wwm-ext-base-chinese"),
    ("clip_cn_vit-l-14", "ViT-L-14@RoBERTa-wwm-ext-base-chinese"),
    (
        "clip_cn_vit-l-14-336",
        "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese",
    ),
    ("clip_cn_vit-h-14", "ViT-H-14@RoBERTa-wwm-ext-large-chinese"),
];

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

pub fn preset_list() -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for (vision, _) in VISION_CONFIGS {
        for (text, _) in TEXT_CONFIGS {
            let name = format!("{vision}@{text}");
            let released = RELEASED
                .iter()
                .find(|(_, full)| *full == name)
                .map(|(stem, _)| *stem);
            let description = match released {
                Some(stem) => format!("Chinese-CLIP, released as {stem}.pt"),
                None => "Chinese-CLIP".to_string(),
            };
            out.push((name, "cn_clip", description));
        }
    }
    out
}

/// Merge the vision and text JSONs as create_model does.
pub fn merged_config(vision: &str, text: &str) -> Option<Value> {
    let vision_config = VISION_CONFIGS.iter().find(|(n, _)| *n == vision)?.1;
    let text_config = TEXT_CONFIGS.iter().find(|(n, _)| *n == text)?.1;
    let mut merged = parse(vision_config);
    if let (Some(target), Value::Object(source)) = (merged.as_object_mut(), parse(text_config)) {
        for (key, value) in source {
            target.insert(key, value);
        }
    }
    Some(merged)
}

pub fn from_preset(name: &str) -> Result<Option<ModelSpec>> {
    let full = RELEASED
        .iter()
        .find(|(stem, _)| *stem == name || dotted(stem, "pt") == name)
        .map(|(_, full)| full.to_string())
        .unwrap_or_else(|| name.to_string());
    let Some((vision, text)) = full.split_once('@') else {
        return Ok(None);
    };
    let Some(config) = merged_config(vision, text) else {
        return Ok(None);
    };
    let mut model = build(&config, false)?;
    model.preset = Some(full);
    Ok(Some(model))
}

pub fn looks_like_config(value: &Value) -> bool {
    [
        "vision_width",
        "text_hidden_size",
        "text_num_hidden_layers",
        "vision_layers",
    ]
    .iter()
    .any(|field| value.get(field).is_some())
}

/// A vision JSON and a text JSON (either order), or one merged JSON.
pub fn from_config_values(values: &[(String, Value)]) -> Result<ModelSpec> {
    let mut merged = serde_json::Map::new();
    for (_, value) in values {
        if let Value::Object(object) = value {
            for (key, field) in object {
                merged.insert(key.clone(), field.clone());
            }
        }
    }
    let files: Vec<&str> = values.iter().map(|(f, _)| f.as_str()).collect();
    let config = Value::Object(merged);
    let use_flash = config
        .get("use_flash_attention")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    build(&config, use_flash).map_err(|e| e.in_file(&files.join(" + ")))
}

/// `vision_layers` is an int for ViT and a list (or its string, as in
/// RN50.json, which create_model `eval`s) for ModifiedResNet.
fn vision_layers(config: &Value) -> Result<VisionLayers> {
    match config.get("vision_layers") {
        Some(Value::Number(n)) => n.as_u64().map(VisionLayers::Vit).ok_or_else(|| {
            err(
                ErrorKind::BadConfig,
                "config field \"vision_layers\" must be a positive integer",
            )
        }),
        Some(Value::String(text)) => {
            parse_stage_list(&serde_json::from_str(text).unwrap_or(Value::Null))
        }
        Some(list @ Value::Array(_)) => parse_stage_list(list),
        Some(other) => Err(err(
            ErrorKind::BadConfig,
            format!("config field \"vision_layers\" has an invalid value {other}"),
        )),
        None => Err(err(
            ErrorKind::BadConfig,
            "config field \"vision_layers\" is missing",
        )),
    }
}

fn parse_stage_list(value: &Value) -> Result<VisionLayers> {
    let stages: Option<Vec<u64>> = value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect());
    match stages {
        Some(s) if s.len() == 4 && value.as_array().is_some_and(|a| a.len() == 4) => {
            Ok(VisionLayers::ResNet([s[0], s[1], s[2], s[3]]))
        }
        _ => Err(err(
            ErrorKind::BadConfig,
            "config field \"vision_layers\" must be an integer or a list of four stage depths",
        )),
    }
}

enum VisionLayers {
    Vit(u64),
    ResNet([u64; 4]),
}

/// Guard against configs that would make absurd tensor lists.
fn bounded(field: &str, value: u64, max: u64) -> Result<u64> {
    if value == 0 || value > max {
        return Err(err(
            ErrorKind::BadConfig,
            format!("config field {field:?} = {value} is outside 1..={max}"),
        ));
    }
    Ok(value)
}

pub fn build(config: &Value, use_flash_attention: bool) -> Result<ModelSpec> {
    let embed_dim = bounded("embed_dim", config_u64(config, "embed_dim")?, 1 << 16)?;
    let resolution = bounded(
        "image_resolution",
        config_u64(config, "image_resolution")?,
        1 << 14,
    )?;
    let width = bounded("vision_width", config_u64(config, "vision_width")?, 1 << 16)?;
    let layers = vision_layers(config)?;
    let hidden = bounded(
        "text_hidden_size",
        config_u64(config, "text_hidden_size")?,
        1 << 16,
    )?;
    let intermediate = bounded(
        "text_intermediate_size",
        config_u64(config, "text_intermediate_size")?,
        1 << 18,
    )?;
    let text_layers = bounded(
        "text_num_hidden_layers",
        config_u64(config, "text_num_hidden_layers")?,
        512,
    )?;
    let vocab = bounded("vocab_size", config_u64(config, "vocab_size")?, 1 << 24)?;
    let max_positions = bounded(
        "text_max_position_embeddings",
        config_u64(config, "text_max_position_embeddings")?,
        1 << 20,
    )?;
    let type_vocab = bounded(
        "text_type_vocab_size",
        config_u64(config, "text_type_vocab_size")?,
        1 << 16,
    )?;
    config_u64(config, "text_num_attention_heads")?;

    let mut b = TensorListBuilder::default();
    // CLIP's own parameters come first in state_dict().
    b.tensor(
        "text_projection",
        &[hidden, embed_dim],
        &["text_hidden_size", "embed_dim"],
    );
    b.tensor("logit_scale", &[], &[]);
    match layers {
        VisionLayers::Vit(vision_layers) => {
            bounded("vision_layers", vision_layers, 512)?;
            let patch = bounded(
                "vision_patch_size",
                config_u64(config, "vision_patch_size")?,
                4096,
            )?;
            let grid = resolution / patch;
            let w = &["vision_width"];
            b.tensor("visual.class_embedding", &[width], w);
            b.tensor(
                "visual.positional_embedding",
                &[grid * grid + 1, width],
                &["image_resolution", "vision_patch_size", "vision_width"],
            );
            b.tensor(
                "visual.proj",
                &[width, embed_dim],
                &["vision_width", "embed_dim"],
            );
            b.tensor(
                "visual.conv1.weight",
                &[width, 3, patch, patch],
                &["vision_width", "vision_patch_size"],
            );
            b.norm("visual.ln_pre", width, true, w);
            for i in 0..vision_layers {
                let p = format!("visual.transformer.resblocks.{i}");
                let depends: &[&'static str] = &["vision_width"];
                let layer_depends: Vec<&'static str> =
                    if i > 0 { vec!["vision_layers"] } else { vec![] };
                b.push_depends(&layer_depends);
                if use_flash_attention {
                    b.linear(&format!("{p}.attn.Wqkv"), 3 * width, width, true, depends);
                } else {
                    b.tensor(
                        format!("{p}.attn.in_proj_weight"),
                        &[3 * width, width],
                        depends,
                    );
                    b.tensor(format!("{p}.attn.in_proj_bias"), &[3 * width], depends);
                }
                b.linear(&format!("{p}.attn.out_proj"), width, width, true, depends);
                b.norm(&dotted(&p, "ln_1"), width, true, depends);
                b.linear(&format!("{p}.mlp.c_fc"), 4 * width, width, true, depends);
                b.linear(&format!("{p}.mlp.c_proj"), width, 4 * width, true, depends);
                b.norm(&dotted(&p, "ln_2"), width, true, depends);
                b.pop_depends(layer_depends.len());
            }
            b.norm("visual.ln_post", width, true, w);
        }
        VisionLayers::ResNet(stages) => {
            for (index, depth) in stages.iter().enumerate() {
                bounded(&format!("vision_layers[{index}]"), *depth, 256)?;
            }
            super::modified_resnet(
                &mut b,
                width,
                &stages,
                resolution,
                embed_dim,
                &super::ResNetFields {
                    width: "vision_width",
                    layers: "vision_layers",
                    resolution: "image_resolution",
                    embed_dim: "embed_dim",
                },
            );
        }
    }
    let h = &["text_hidden_size"];
    b.embedding(
        "bert.embeddings.word_embeddings",
        vocab,
        hidden,
        &["vocab_size", "text_hidden_size"],
    );
    b.embedding(
        "bert.embeddings.position_embeddings",
        max_positions,
        hidden,
        &["text_max_position_embeddings", "text_hidden_size"],
    );
    b.embedding(
        "bert.embeddings.token_type_embeddings",
        type_vocab,
        hidden,
        &["text_type_vocab_size", "text_hidden_size"],
    );
    b.norm("bert.embeddings.LayerNorm", hidden, true, h);
    for i in 0..text_layers {
        let p = format!("bert.encoder.layer.{i}");
        let layer_depends: Vec<&'static str> = if i > 0 {
            vec!["text_num_hidden_layers"]
        } else {
            vec![]
        };
        b.push_depends(&layer_depends);
        if use_flash_attention {
            b.linear(
                &format!("{p}.attention.self.Wqkv"),
                3 * hidden,
                hidden,
                true,
                h,
            );
            b.linear(
                &format!("{p}.attention.self.out_proj"),
                hidden,
                hidden,
                true,
                h,
            );
        } else {
            for projection in ["query", "key", "value"] {
                b.linear(
                    &format!("{p}.attention.self.{projection}"),
                    hidden,
                    hidden,
                    true,
                    h,
                );
            }
            b.linear(
                &format!("{p}.attention.output.dense"),
                hidden,
                hidden,
                true,
                h,
            );
        }
        b.norm(&format!("{p}.attention.output.LayerNorm"), hidden, true, h);
        b.linear(
            &format!("{p}.intermediate.dense"),
            intermediate,
            hidden,
            true,
            &["text_intermediate_size", "text_hidden_size"],
        );
        b.linear(
            &format!("{p}.output.dense"),
            hidden,
            intermediate,
            true,
            &["text_intermediate_size", "text_hidden_size"],
        );
        b.norm(&format!("{p}.output.LayerNorm"), hidden, true, h);
        b.pop_depends(layer_depends.len());
    }
    Ok(ModelSpec {
        family: "cn_clip".to_string(),
        class_name: "CLIP".to_string(),
        preset: None,
        config: config.clone(),
        tensors: b.tensors,
        batchnorm_modules: b.batchnorm_modules,
        module_kinds: b.module_kinds,
        module_names: Vec::new(),
        non_persistent: Vec::new(),
        base_model_prefix: String::new(),
        tied_keys: Vec::new(),
    })
}

fn field(fields: &mut Vec<InferredField>, name: &str, value: Value, evidence: String) {
    fields.push(InferredField {
        field: name.to_string(),
        value,
        evidence,
        range: None,
        given: Vec::new(),
    });
}

/// Infer a Chinese-CLIP config from (prefix-free) names and shapes; `None`
/// when the names are not Chinese-CLIP's.
pub fn infer(names: &[(String, Vec<u64>)]) -> Option<Inferred> {
    let has_bert = names.iter().any(|(n, _)| n.starts_with("bert.embeddings."));
    let has_visual = names.iter().any(|(n, _)| n.starts_with("visual."));
    if !(has_bert && has_visual) {
        return None;
    }
    let mut fields = Vec::new();
    let mut undetermined = Vec::new();
    let mut config = serde_json::Map::new();
    let dim = |name: &str, index: usize| shape_of(names, name).and_then(|s| s.get(index).copied());
    let flash = names
        .iter()
        .any(|(n, _)| n.contains("attn.Wqkv") || n.contains("attention.self.Wqkv"));
    if let Some(width) =
        dim("visual.conv1.weight", 0).filter(|_| shape_of(names, "visual.proj").is_some())
    {
        let patch = dim("visual.conv1.weight", 3).unwrap_or(0);
        let layers = count_blocks(names, "visual.transformer.resblocks.");
        let positions = dim("visual.positional_embedding", 0).unwrap_or(1);
        let grid = exact_sqrt(positions.saturating_sub(1)).unwrap_or(0);
        let embed = dim("visual.proj", 1).unwrap_or(0);
        field(
            &mut fields,
            "vision_width",
            json!(width),
            "visual.conv1.weight shape[0]".into(),
        );
        field(
            &mut fields,
            "vision_patch_size",
            json!(patch),
            "visual.conv1.weight shape[3]".into(),
        );
        field(
            &mut fields,
            "vision_layers",
            json!(layers),
            "count of visual.transformer.resblocks.N".into(),
        );
        field(&mut fields, "image_resolution", json!(patch * grid), format!("visual.positional_embedding has {positions} rows = {grid}x{grid}+1 patches of {patch}"));
        field(
            &mut fields,
            "embed_dim",
            json!(embed),
            "visual.proj shape[1]".into(),
        );
        config.insert("embed_dim".into(), json!(embed));
        config.insert("image_resolution".into(), json!(patch * grid));
        config.insert("vision_layers".into(), json!(layers));
        config.insert("vision_width".into(), json!(width));
        config.insert("vision_patch_size".into(), json!(patch));
        undetermined.push("vision_head_width: attention heads are not visible in shapes (64 for every released model but ViT-H-14, which uses 80)".to_string());
    } else if let Some(width) = dim("visual.layer1.0.conv1.weight", 0) {
        let stages: Vec<u64> = (1..=4)
            .map(|s| count_blocks(names, &format!("visual.layer{s}.")))
            .collect();
        let positions = dim("visual.attnpool.positional_embedding", 0).unwrap_or(1);
        let spatial = exact_sqrt(positions.saturating_sub(1)).unwrap_or(0);
        let embed = dim("visual.attnpool.c_proj.weight", 0).unwrap_or(0);
        let text = format!(
            "[{}]",
            stages
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        field(
            &mut fields,
            "vision_width",
            json!(width),
            "visual.layer1.0.conv1.weight shape[0]".into(),
        );
        field(
            &mut fields,
            "vision_layers",
            json!(text),
            "count of visual.layerS.N blocks per stage".into(),
        );
        field(
            &mut fields,
            "image_resolution",
            json!(spatial * 32),
            format!(
                "visual.attnpool.positional_embedding has {positions} rows = {spatial}x{spatial}+1"
            ),
        );
        field(
            &mut fields,
            "embed_dim",
            json!(embed),
            "visual.attnpool.c_proj.weight shape[0]".into(),
        );
        config.insert("embed_dim".into(), json!(embed));
        config.insert("image_resolution".into(), json!(spatial * 32));
        config.insert("vision_layers".into(), json!(text));
        config.insert("vision_width".into(), json!(width));
        config.insert("vision_patch_size".into(), Value::Null);
        undetermined.push(
            "attention pool heads: not visible in shapes (cn_clip uses vision_width*32/64)"
                .to_string(),
        );
    }
    if let Some(hidden) = dim("bert.embeddings.word_embeddings.weight", 1) {
        let vocab = dim("bert.embeddings.word_embeddings.weight", 0).unwrap_or(0);
        let positions = dim("bert.embeddings.position_embeddings.weight", 0).unwrap_or(0);
        let types = dim("bert.embeddings.token_type_embeddings.weight", 0).unwrap_or(0);
        let layers = count_blocks(names, "bert.encoder.layer.");
        let intermediate = dim("bert.encoder.layer.0.intermediate.dense.weight", 0).unwrap_or(0);
        field(
            &mut fields,
            "text_hidden_size",
            json!(hidden),
            "bert.embeddings.word_embeddings.weight shape[1]".into(),
        );
        field(
            &mut fields,
            "text_num_hidden_layers",
            json!(layers),
            "count of bert.encoder.layer.N".into(),
        );
        field(
            &mut fields,
            "text_intermediate_size",
            json!(intermediate),
            "bert.encoder.layer.0.intermediate.dense.weight shape[0]".into(),
        );
        field(
            &mut fields,
            "vocab_size",
            json!(vocab),
            "bert.embeddings.word_embeddings.weight shape[0]".into(),
        );
        field(
            &mut fields,
            "text_max_position_embeddings",
            json!(positions),
            "bert.embeddings.position_embeddings.weight shape[0]".into(),
        );
        field(
            &mut fields,
            "text_type_vocab_size",
            json!(types),
            "bert.embeddings.token_type_embeddings.weight shape[0]".into(),
        );
        for (key, value) in [
            ("vocab_size", vocab),
            ("text_hidden_size", hidden),
            ("text_intermediate_size", intermediate),
            ("text_max_position_embeddings", positions),
            ("text_num_hidden_layers", layers),
            ("text_type_vocab_size", types),
        ] {
            config.insert(key.into(), json!(value));
        }
        undetermined.push(
            "text_num_attention_heads: not visible in shapes (12 for base models, 16 for large)"
                .to_string(),
        );
    }
    if flash {
        config.insert("use_flash_attention".into(), json!(true));
    }
    // Rank every preset (in the naming this checkpoint uses) by findings.
    let models: Vec<ModelSpec> = preset_list()
        .into_iter()
        .filter_map(|(name, _, _)| {
            let (vision, text) = name.split_once('@')?;
            let mut model = build(&merged_config(vision, text)?, flash).ok()?;
            model.preset = Some(name);
            Some(model)
        })
        .collect();
    let ranking = rank_presets(names, &models);
    let preset = ranking
        .first()
        .filter(|s| s.exact)
        .map(|s| s.preset.clone());
    // Fill what shapes cannot tell from the closest preset's config.
    if let Some((vision, text)) = ranking.first().and_then(|s| s.preset.split_once('@')) {
        if let Some(Value::Object(closest)) = merged_config(vision, text) {
            for (key, value) in closest {
                config.entry(key).or_insert(value);
            }
        }
    }
    Some(Inferred {
        family: "cn_clip".to_string(),
        fields,
        config: Value::Object(config),
        preset,
        ranking,
        undetermined,
        shaped_like: None,
        conditional: Vec::new(),
    })
}

/// The remedy in cn_clip's own terms for a preset `<vision>@<text>`.
pub fn fix_for_preset(preset: &str) -> Vec<String> {
    let Some((vision, text)) = preset.split_once('@') else {
        return Vec::new();
    };
    vec![
        format!("--vision-model {vision} --text-model {text}"),
        format!("cn_clip.clip.utils.create_model(\"{preset}\", checkpoint)"),
    ]
}

pub fn vision_name_for(config: &Value) -> Option<String> {
    VISION_CONFIGS.iter().find_map(|(name, text)| {
        let preset = parse(text);
        let same = preset
            .as_object()?
            .iter()
            .all(|(k, v)| config.get(k) == Some(v));
        same.then(|| name.to_string())
    })
}

pub fn config_u64_field(config: &Value, field: &str) -> Option<u64> {
    config_u64_or(config, field, 0).ok()
}
