//! ViT (`ViTModel`, `ViTForImageClassification`): config with defaults, the
//! patch count, and the tensor list in `state_dict()` order.

use super::*;
use crate::arch::dotted;

// --- ViT --------------------------------------------------------------------

pub(super) struct VitConfig {
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
    pub(super) fn defaults(&self) -> Vec<(&'static str, Value)> {
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

pub(super) fn vit_config(c: &Conf) -> Result<VitConfig> {
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

pub(super) fn patch_count(image: (u64, u64), patch: (u64, u64), c: &Conf) -> Result<u64> {
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

pub(super) fn build_vit(b: &mut TensorListBuilder, c: &VitConfig, head: Head) {
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
                b.optional("qkv_bias", c.qkv_bias, |b| {
                    b.tensor(format!("{l}.attention.{name}.bias"), &[h], H)
                });
            }
            b.linear(&format!("{l}.attention.o_proj"), h, h, true, H);
            b.norm(&dotted(&l, "layernorm_before"), h, true, H);
            b.norm(&dotted(&l, "layernorm_after"), h, true, H);
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
