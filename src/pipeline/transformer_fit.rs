//! A transformer pipeline's components against each other (SD3, Flux):
//! each loads on its own, and the first call fails where the pipeline
//! feeds one component's output into another's Linear or decodes with a
//! VAE of other latents. Each rule is the pipeline's own arithmetic, as
//! `StableDiffusion3Pipeline` and `FluxPipeline` do it, and each is shown
//! by a folder in tests/fixtures/pipeline that loads and then fails so.

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

/// The disagreements of a pipeline whose transformer is one of these
/// classes; `None` for another transformer.
pub(super) fn disagreements<'a>(
    transformer: &Value,
    find: &dyn Fn(&str) -> Option<&'a Value>,
) -> Option<Vec<Disagreement>> {
    let class = transformer.get("_class_name").and_then(Value::as_str)?;
    let rules = TRANSFORMER_PIPELINES.iter().find(|p| p.class == class)?;
    let width = |field: &str| one_number(transformer, field);
    let inner = width("num_attention_heads")
        .zip(width("attention_head_dim"))
        .map(|(heads, head)| heads * head);
    let context_outputs = match rules.context_outputs {
        Some(field) => width(field),
        None => inner,
    };
    let feeds = [
        (
            "pooled_projection_dim",
            rules.pooled,
            inner,
            "pooled text embedding",
        ),
        (
            "joint_attention_dim",
            rules.context,
            context_outputs,
            "context embedder",
        ),
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
    Some(
        feeds
            .into_iter()
            .filter_map(|(field, encoders, outputs, layer)| {
                feed_disagreement(transformer, find, field, encoders, outputs?, layer)
            })
            .chain(vae_disagreement(find("vae"), latents, rules.pipeline))
            .collect(),
    )
}

/// The disagreement when the encoders' widths do not add up to the
/// transformer's `field`: every component loads and the first call fails
/// in the Linear (PyTorch names its shapes).
fn feed_disagreement<'a>(
    transformer: &Value,
    find: &dyn Fn(&str) -> Option<&'a Value>,
    field: &str,
    encoders: &[(&str, &str)],
    outputs: u64,
    layer: &str,
) -> Option<Disagreement> {
    let widths: Vec<(&str, &str, u64)> = encoders
        .iter()
        .map(|(name, field)| Some((*name, *field, one_number(find(name)?, field)?)))
        .collect::<Option<_>>()?;
    let total: u64 = widths.iter().map(|(_, _, width)| width).sum();
    let expected = one_number(transformer, field)?;
    if total == expected {
        return None;
    }
    let given: Vec<String> = widths
        .iter()
        .map(|(name, field, width)| format!("{name} {field} {width}"))
        .collect();
    let mut components = vec!["transformer".to_string()];
    components.extend(widths.iter().map(|(name, _, _)| name.to_string()));
    Some(Disagreement {
        text: format!(
            "transformer {field} {expected} but {}{}: every component loads, and the first call fails in the transformer's {layer}: \"mat1 and mat2 shapes cannot be multiplied (…x{total} and {expected}x{outputs})\"; the text encoder{} and the transformer come from different releases",
            given.join(" + "),
            if widths.len() > 1 {
                format!(" = {total}")
            } else {
                String::new()
            },
            if widths.len() > 1 { "s" } else { "" },
        ),
        components,
    })
}

/// The VAE against the latents the transformer denoises, and the
/// `shift_factor` the pipeline adds before decoding (SD3's and Flux's VAEs
/// have one; SD 1.x/2.x/XL's is null).
fn vae_disagreement(
    vae: Option<&Value>,
    latents: Option<(u64, String)>,
    pipeline: &str,
) -> Option<Disagreement> {
    let vae = vae?;
    let mut why = Vec::new();
    if let (Some(latent), Some((latents, what))) = (one_number(vae, "latent_channels"), latents) {
        if latent != latents {
            why.push(format!(
                "{what} but vae latent_channels {latent}: the VAE decodes latents the transformer does not make (an SD3/Flux VAE has 16 latent channels, SD 1.x/2.x/XL's 4)"
            ));
        }
    }
    if vae.get("shift_factor").is_none_or(Value::is_null) {
        why.push(format!(
            "vae shift_factor is null, and {pipeline} adds it to the latents before decoding: the first call fails there (\"TypeError: unsupported operand type(s) for +: 'Tensor' and 'NoneType'\"); the VAE is not the transformer's release's (SD 1.x/2.x/XL's has none)"
        ));
    }
    (!why.is_empty()).then(|| Disagreement {
        components: vec!["transformer".into(), "vae".into()],
        text: why.join("; "),
    })
}
