//! A pipeline's components against each other: each loads on its own, and
//! the first call fails where the pipeline feeds one component's output
//! into another's Linear, or decodes with a VAE of other latents. Each rule
//! is the pipeline's own arithmetic (`StableDiffusionPipeline` and SDXL's
//! UNet, `StableDiffusion3Pipeline`, `FluxPipeline`), and each is shown by
//! a folder in tests/fixtures/pipeline that loads and then fails so.

use super::{one_number, Disagreement};
use serde_json::Value;

/// What a pipeline class feeds its transformer class.
struct TransformerPipeline {
    /// The transformer's `_class_name`.
    class: &'static str,
    /// The pipeline class, for messages.
    pipeline: &'static str,
    /// The pooled text embedding: these encoders' widths side by side
    /// (SD3: both CLIPs' projections; Flux: CLIP's pooled output) into
    /// `pooled_projection_dim`, a Linear to the transformer's inner width.
    pooled: &'static [(&'static str, &'static str)],
    /// The context: T5's hidden states into `joint_attention_dim`, a Linear
    /// to `context_outputs` (the inner width where it is `None`).
    context: &'static [(&'static str, &'static str)],
    context_outputs: Option<&'static str>,
    /// Flux packs 2×2 latents into its input channels (four times the
    /// VAE's); SD3 denoises the VAE's latents as they are.
    packed: bool,
}

const TRANSFORMER_PIPELINES: [TransformerPipeline; 2] = [
    TransformerPipeline {
        class: "SD3Transformer2DModel",
        pipeline: "StableDiffusion3Pipeline",
        pooled: &[
            ("text_encoder", "projection_dim"),
            ("text_encoder_2", "projection_dim"),
        ],
        context: &[("text_encoder_3", "d_model")],
        context_outputs: Some("caption_projection_dim"),
        packed: false,
    },
    TransformerPipeline {
        class: "FluxTransformer2DModel",
        pipeline: "FluxPipeline",
        pooled: &[("text_encoder", "hidden_size")],
        context: &[("text_encoder_2", "d_model")],
        context_outputs: None,
        packed: true,
    },
];

/// Components that each load but do not fit together, by the pipeline's
/// denoiser: a UNet, or a transformer of a class above.
pub(super) fn disagreements<'a>(find: &dyn Fn(&str) -> Option<&'a Value>) -> Vec<Disagreement> {
    let class = |config: &Value| {
        config
            .get("_class_name")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(transformer) = find("transformer") {
        let rules = class(transformer)
            .and_then(|name| TRANSFORMER_PIPELINES.iter().find(|p| p.class == name));
        if let Some(rules) = rules {
            return transformer_disagreements(transformer, find, rules);
        }
    }
    match find("unet") {
        Some(unet) if class(unet).as_deref() == Some("UNet2DConditionModel") => {
            unet_disagreements(unet, find)
        }
        _ => Vec::new(),
    }
}

/// The UNet attends over the text encoders' hidden states, side by side
/// (SDXL's two; the refiner has only the second), in every
/// cross-attention, and denoises the VAE's latents.
fn unet_disagreements<'a>(
    unet: &Value,
    find: &dyn Fn(&str) -> Option<&'a Value>,
) -> Vec<Disagreement> {
    let encoders: Vec<(&str, &str)> = ["text_encoder", "text_encoder_2"]
        .into_iter()
        .filter(|name| {
            find(name)
                .and_then(|c| one_number(c, "hidden_size"))
                .is_some()
        })
        .map(|name| (name, "hidden_size"))
        .collect();
    let cross = one_number(unet, "cross_attention_dim");
    let feed = Feed {
        field: "cross_attention_dim",
        encoders: &encoders,
        // attn2.to_k of the first block: Linear(cross, block 0's width).
        outputs: unet
            .get("block_out_channels")
            .and_then(|widths| widths.get(0))
            .and_then(Value::as_u64),
        layer: "first cross-attention",
    };
    let latents = one_number(unet, "out_channels")
        .map(|channels| (channels, format!("unet out_channels {channels}")));
    feed_disagreement("unet", unet, find, feed, cross.map(release_hint))
        .into_iter()
        .chain(vae_disagreement("unet", find("vae"), latents, None))
        .collect()
}

/// The releases a cross-attention width belongs to.
fn release_hint(cross_attention_dim: u64) -> &'static str {
    match cross_attention_dim {
        768 => "a 768-wide UNet is SD 1.x's, with CLIP ViT-L/14",
        1024 => "a 1024-wide UNet is SD 2.x's, with OpenCLIP ViT-H/14",
        1280 => "a 1280-wide UNet is the SDXL refiner's, with OpenCLIP ViT-bigG/14",
        2048 => "a 2048-wide UNet is SDXL base's, with CLIP ViT-L/14 and OpenCLIP ViT-bigG/14",
        _ => "no release ckptcheck knows has this width",
    }
}

/// SD3's and Flux's transformer against the text encoders and the VAE, as
/// the pipeline feeds it.
fn transformer_disagreements<'a>(
    transformer: &Value,
    find: &dyn Fn(&str) -> Option<&'a Value>,
    rules: &TransformerPipeline,
) -> Vec<Disagreement> {
    let width = |field: &str| one_number(transformer, field);
    let inner = width("num_attention_heads")
        .zip(width("attention_head_dim"))
        .map(|(heads, head)| heads * head);
    let feeds = [
        Feed {
            field: "pooled_projection_dim",
            encoders: rules.pooled,
            outputs: inner,
            layer: "pooled text embedding",
        },
        Feed {
            field: "joint_attention_dim",
            encoders: rules.context,
            outputs: rules.context_outputs.map_or(inner, width),
            layer: "context embedder",
        },
    ];
    let latents = if rules.packed {
        width("in_channels").map(|channels| {
            (
                channels / 4,
                format!(
                    "transformer in_channels {channels} ({} latent channels packed 2×2)",
                    channels / 4
                ),
            )
        })
    } else {
        width("out_channels")
            .or(width("in_channels"))
            .map(|channels| (channels, format!("transformer out_channels {channels}")))
    };
    feeds
        .into_iter()
        .filter_map(|feed| feed_disagreement("transformer", transformer, find, feed, None))
        .chain(vae_disagreement(
            "transformer",
            find("vae"),
            latents,
            Some(rules.pipeline),
        ))
        .collect()
}

/// Text encoder widths (`(component, config field)`, side by side) that
/// the pipeline feeds into a Linear of the denoiser's `field` inputs and
/// `outputs` outputs, in `layer`.
struct Feed<'s> {
    field: &'s str,
    encoders: &'s [(&'s str, &'s str)],
    outputs: Option<u64>,
    layer: &'s str,
}

/// The disagreement when the encoders' widths do not add up to the
/// denoiser's `field`: every component loads and the first call fails in
/// the Linear (PyTorch names its shapes where `outputs` is known).
fn feed_disagreement<'a>(
    name: &str,
    denoiser: &Value,
    find: &dyn Fn(&str) -> Option<&'a Value>,
    feed: Feed,
    hint: Option<&str>,
) -> Option<Disagreement> {
    let widths: Vec<(&str, &str, u64)> = feed
        .encoders
        .iter()
        .map(|(encoder, field)| Some((*encoder, *field, one_number(find(encoder)?, field)?)))
        .collect::<Option<_>>()?;
    let total: u64 = widths.iter().map(|(_, _, width)| width).sum();
    let expected = one_number(denoiser, feed.field)?;
    if widths.is_empty() || total == expected {
        return None;
    }
    let given: Vec<String> = widths
        .iter()
        .map(|(encoder, field, width)| format!("{encoder} {field} {width}"))
        .collect();
    let several = widths.len() > 1;
    let display = if name == "unet" { "UNet" } else { name };
    let mut components = vec![name.to_string()];
    components.extend(widths.iter().map(|(encoder, _, _)| encoder.to_string()));
    Some(Disagreement {
        text: format!(
            "{name} {} {expected} but {}{}: every component loads, and the first call fails in the {display}'s {}{}; the text encoder{} and the {display} come from different releases{}",
            feed.field,
            given.join(" + "),
            if several { format!(" = {total}") } else { String::new() },
            feed.layer,
            feed.outputs
                .map(|outputs| format!(": \"mat1 and mat2 shapes cannot be multiplied (…x{total} and {expected}x{outputs})\""))
                .unwrap_or_default(),
            if several { "s" } else { "" },
            hint.map(|hint| format!(" ({hint})")).unwrap_or_default(),
        ),
        components,
    })
}

/// The VAE against the latents the denoiser makes (`latents`: their
/// channels, and how to say where they come from), and, where the
/// pipeline adds it before decoding (SD3, Flux), the VAE's `shift_factor`
/// (SD 1.x/2.x/XL's VAE has none).
fn vae_disagreement(
    name: &str,
    vae: Option<&Value>,
    latents: Option<(u64, String)>,
    shifted_by: Option<&str>,
) -> Option<Disagreement> {
    let vae = vae?;
    let display = if name == "unet" { "UNet" } else { name };
    let mut why = Vec::new();
    if let (Some(latent), Some((latents, what))) = (one_number(vae, "latent_channels"), latents) {
        if latent != latents {
            why.push(format!(
                "{what} but vae latent_channels {latent}: the VAE decodes latents the {display} does not make (an SD3/Flux VAE has 16 latent channels, SD 1.x/2.x/XL's 4)"
            ));
        }
    }
    if let Some(pipeline) = shifted_by {
        if vae.get("shift_factor").is_none_or(Value::is_null) {
            why.push(format!(
                "vae shift_factor is null, and {pipeline} adds it to the latents before decoding: the first call fails there (\"TypeError: unsupported operand type(s) for +: 'Tensor' and 'NoneType'\"); the VAE is not the {display}'s release's (SD 1.x/2.x/XL's has none)"
            ));
        }
    }
    (!why.is_empty()).then(|| Disagreement {
        components: vec![name.to_string(), "vae".into()],
        text: why.join("; "),
    })
}
