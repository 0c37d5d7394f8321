//! Building an open_clip model's `state_dict()` tensor list from its
//! config: names, shapes and order as open_clip/model.py (`CLIP`,
//! `CustomTextCLIP`), transformer.py (`VisionTransformer`, `Transformer`,
//! `CustomResidualAttentionBlock`, `AttentionalPooler`) and
//! modified_resnet.py create them, each tensor tagged with the config
//! fields that decide it.

use super::config::{
    read_config, Config, Fields, Pool, Stack, TextProjection, VisionKind, TEXT, VISION,
};
use crate::arch::dotted;
use crate::arch::{modified_resnet, ModelSpec, ResNetFields, TensorListBuilder};
use crate::error::{err, ErrorKind, Result};
use serde_json::Value;

/// The model a config describes (`preset` is the name it came by, if any).
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
        module_kinds: b.module_kinds,
        module_names: Vec::new(),
        non_persistent: Vec::new(),
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
        b.norm(&dotted(&p, "ln_1"), w, true, width);
        b.tensor(format!("{p}.attn.in_proj_weight"), &[3 * w, w], width);
        b.tensor(format!("{p}.attn.in_proj_bias"), &[3 * w], width);
        if flags.custom {
            // Attention's own parameters come before its submodules.
            b.optional(f.scaled_cosine_attn, flags.scaled_cosine_attn, |b| {
                b.tensor(format!("{p}.attn.logit_scale"), &[stack.heads, 1, 1], heads)
            });
            b.optional(f.scale_heads, flags.scale_heads, |b| {
                b.tensor(format!("{p}.attn.head_scale"), &[stack.heads, 1, 1], heads)
            });
            b.optional(f.qk_norm, flags.qk_norm, |b| {
                let head_dim = w / stack.heads;
                b.norm(&format!("{p}.attn.ln_q"), head_dim, true, heads);
                b.norm(&format!("{p}.attn.ln_k"), head_dim, true, heads);
            });
            b.optional(f.scale_attn_inner, flags.scale_attn_inner, |b| {
                b.norm(&format!("{p}.attn.ln_inner"), w, true, width)
            });
        }
        b.linear(&format!("{p}.attn.out_proj"), w, w, true, width);
        b.optional(f.scale_attn, flags.custom && flags.scale_attn, |b| {
            b.norm(&dotted(&p, "ln_attn"), w, true, width)
        });
        b.optional(f.ls_init_value, stack.layer_scale, |b| {
            b.tensor(format!("{p}.ls_1.gamma"), &[w], width)
        });
        b.norm(&dotted(&p, "ln_2"), w, true, width);
        b.linear(&format!("{p}.mlp.c_fc"), stack.mlp_width, w, true, mlp);
        b.optional(f.scale_fc, flags.custom && flags.scale_fc, |b| {
            b.norm(&format!("{p}.mlp.ln"), stack.mlp_width, true, mlp)
        });
        b.linear(&format!("{p}.mlp.c_proj"), w, stack.mlp_width, true, mlp);
        b.optional(f.ls_init_value, stack.layer_scale, |b| {
            b.tensor(format!("{p}.ls_2.gamma"), &[w], width)
        });
        b.pop_depends(layer_exists.len());
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
            b.optional("vision_cfg.no_ln_pre", !no_ln_pre, |b| {
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
            modified_resnet(
                b,
                w,
                stages,
                vision.image_size.0,
                e,
                &ResNetFields {
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
    b.tensor(dotted(prefix, "query"), &[queries, d_model], query_fields);
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
    b.norm(&dotted(prefix, "ln_q"), d_model, true, d);
    b.norm(
        &dotted(prefix, "ln_k"),
        context,
        true,
        &["vision_cfg.width"],
    );
}
