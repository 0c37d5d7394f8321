//! Inferring an open_clip config from a checkpoint's names and shapes:
//! every field a tensor shows is set with its evidence, the presets are
//! ranked against the checkpoint, and what shapes cannot tell (attention
//! heads, LayerScale's initial value, quick_gelu ...) is taken from the
//! closest preset and listed as undetermined.

use super::config::{mlp_width, Fields, TEXT, VISION};
use super::presets::{from_preset, shipped_config, MODEL_CONFIGS, PRESET_PREFIX};
use crate::arch::dotted;
use crate::arch::{
    count_blocks, exact_sqrt, rank_presets, shape_of, Inferred, InferredField, ModelSpec,
};
use serde_json::{json, Map, Value};

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
            range: None,
            given: Vec::new(),
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
    let ranking = rank_presets(names, &models);
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
        let name = dotted(section, "ls_init_value");
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
        shaped_like: None,
        conditional: Vec::new(),
    })
}
