//! CLIP (`CLIPModel` and the text and vision towers on their own): the
//! nested `text_config`/`vision_config` with defaults, and the tensor list
//! in `state_dict()` order.

use super::*;
use crate::arch::dotted;

// --- CLIP -------------------------------------------------------------------

/// Field names of one CLIP tower: plain in a `clip_text_model` config,
/// under `text_config.` in a `clip` config.
pub(super) struct ClipFields {
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

pub(super) const CLIP_TEXT: ClipFields = ClipFields {
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
pub(super) const CLIP_NESTED_TEXT: ClipFields = ClipFields {
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
pub(super) const CLIP_NESTED_VISION: ClipFields = ClipFields {
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

pub(super) struct ClipTower {
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

pub(super) fn clip_tower(c: &Conf, text: bool) -> Result<(ClipTower, Vec<(&'static str, Value)>)> {
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

pub(super) fn clip_encoder(b: &mut TensorListBuilder, p: &str, t: &ClipTower, f: &ClipFields) {
    let h = t.hidden;
    let hf: &[&'static str] = &[f.hidden];
    let hi: &[&'static str] = &[f.hidden, f.intermediate];
    for i in 0..t.layers {
        layer(b, f.layers, i, |b| {
            let l = format!("{p}encoder.layers.{i}");
            for name in ["k_proj", "v_proj", "q_proj", "out_proj"] {
                b.linear(&format!("{l}.self_attn.{name}"), h, h, true, hf);
            }
            b.norm(&dotted(&l, "layer_norm1"), h, true, hf);
            b.linear(&format!("{l}.mlp.fc1"), t.intermediate, h, true, hi);
            b.linear(&format!("{l}.mlp.fc2"), h, t.intermediate, true, hi);
            b.norm(&dotted(&l, "layer_norm2"), h, true, hf);
        });
    }
}

pub(super) fn clip_text(b: &mut TensorListBuilder, p: &str, t: &ClipTower, f: &ClipFields) {
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

pub(super) fn clip_vision(b: &mut TensorListBuilder, p: &str, t: &ClipTower, f: &ClipFields) {
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

pub(super) fn build_clip(
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
