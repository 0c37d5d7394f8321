//! The tensors of a Stable Diffusion inference YAML's model at any sizes,
//! in the original LDM / sgm layout (`model.diffusion_model.*`,
//! `first_stage_model.*`, `cond_stage_model.*`, `conditioner.embedders.*`):
//! the UNet of `openaimodel.UNetModel` (ResBlocks and SpatialTransformers
//! placed by `channel_mult`, `num_res_blocks`, `attention_resolutions`,
//! `transformer_depth`, `context_dim`), the VAE of the `ddconfig`, the text
//! encoders the YAML names and, for LDM, the noise schedule's buffers. A
//! YAML of a release is that release's preset (stable_diffusion.rs); this
//! builds the YAMLs of no release (InstructPix2Pix's 8 input channels, a
//! trainer's own widths), in the order state_dict() gives. What changes the
//! layout beyond this (a YAML the reference code builds otherwise:
//! `resblock_updown`, scale-shift norms, attention in the VAE's encoder,
//! text encoders of other sizes) is refused with the field, never guessed.
//! tests/fixtures/sd/make_yaml_variations.py checks this against diffusers:
//! the listing its converter turns into the diffusers UNet and VAE that
//! `create_*_diffusers_config_from_ldm` builds from the same YAML.

use crate::error::{err, ErrorKind, Result};
use serde_json::Value;

/// A tensor of the layout: name, shape, whether it is int64 (else float32).
pub type Listed = (String, Vec<u64>, bool);

/// Caps on what a YAML declares, so that the listing stays bounded (about
/// 200,000 tensors at most; the releases reach 4 levels, 2 blocks and a
/// depth of 10).
const MAX_LEVELS: usize = 8;
const MAX_BLOCKS: u64 = 16;
const MAX_DEPTH: u64 = 64;

/// The widths GroupNorm divides into groups (LDM's `normalization`, the
/// VAE's `Normalize`); a width that is not a multiple does not build.
const NORM_GROUPS: u64 = 32;

fn refuse(what: impl std::fmt::Display) -> crate::error::Error {
    err(
        ErrorKind::BadConfig,
        format!("this inference YAML builds a model ckptcheck does not lay out: {what}"),
    )
}

fn number(params: &Value, field: &str) -> Result<u64> {
    params[field]
        .as_u64()
        .ok_or_else(|| refuse(format!("{field} is not a whole number")))
}

/// A width or count a layer is built of: a whole number above zero.
fn positive(params: &Value, field: &str) -> Result<u64> {
    match number(params, field)? {
        0 => Err(refuse(format!("{field} is 0"))),
        value => Ok(value),
    }
}

fn numbers(params: &Value, field: &str) -> Result<Vec<u64>> {
    params[field]
        .as_array()
        .and_then(|items| items.iter().map(Value::as_u64).collect())
        .ok_or_else(|| refuse(format!("{field} is not a list of whole numbers")))
}

/// Per-level width multipliers (the UNet's `channel_mult`, the VAE's
/// `ch_mult`): one to `MAX_LEVELS` of them, none 0.
fn multipliers(params: &Value, field: &str) -> Result<Vec<u64>> {
    let levels = numbers(params, field)?;
    if levels.contains(&0) {
        return Err(refuse(format!("a {field} of 0")));
    }
    if levels.is_empty() || levels.len() > MAX_LEVELS {
        return Err(refuse(format!(
            "{field} of no level, or of more than {MAX_LEVELS}"
        )));
    }
    Ok(levels)
}

fn multiply(a: u64, b: u64) -> Result<u64> {
    a.checked_mul(b)
        .filter(|product| *product <= 1 << 40)
        .ok_or_else(|| refuse(format!("a width of {a} x {b}")))
}

/// Where tensors are pushed, each under the prefix of its module.
struct Listing<'a> {
    out: &'a mut Vec<Listed>,
}

impl Listing<'_> {
    fn push(&mut self, name: String, shape: Vec<u64>) {
        self.out.push((name, shape, false));
    }

    /// `nn.Linear` or `nn.Conv2d` (a kernel of `kernel` x `kernel` when
    /// given): weight, then bias.
    fn layer(&mut self, prefix: &str, out: u64, inp: u64, kernel: Option<u64>, bias: bool) {
        let mut shape = vec![out, inp];
        if let Some(k) = kernel {
            shape.extend([k, k]);
        }
        self.push(format!("{prefix}weight"), shape);
        if bias {
            self.push(format!("{prefix}bias"), vec![out]);
        }
    }

    /// GroupNorm or LayerNorm: weight and bias of the width.
    fn norm(&mut self, prefix: &str, width: u64) {
        self.push(format!("{prefix}weight"), vec![width]);
        self.push(format!("{prefix}bias"), vec![width]);
    }
}

/// The UNet's fields, as openaimodel.UNetModel reads them.
struct Unet {
    in_channels: u64,
    out_channels: u64,
    model_channels: u64,
    channel_mult: Vec<u64>,
    num_res_blocks: u64,
    attention_resolutions: Vec<u64>,
    /// Per level (an int in the YAML is every level's).
    transformer_depth: Vec<u64>,
    context_dim: u64,
    linear_projection: bool,
    /// `num_classes: sequential` with `adm_in_channels` (SDXL), or an
    /// embedding of `num_classes` rows.
    label_embedding: Option<(bool, u64)>,
    /// `num_heads` or `num_head_channels`, to check the width divides.
    heads: Option<(&'static str, u64)>,
}

fn flag(params: &Value, field: &str) -> bool {
    params[field].as_bool().unwrap_or(false)
}

fn read_unet(params: &Value) -> Result<Unet> {
    for (field, why) in [
        ("resblock_updown", "ResBlocks that resample"),
        ("use_scale_shift_norm", "scale-shift time embeddings"),
        ("use_new_attention_order", "QKV attention blocks"),
    ] {
        if flag(params, field) {
            return Err(refuse(format!("{field}: true ({why})")));
        }
    }
    if params["use_spatial_transformer"] == Value::Bool(false) {
        return Err(refuse(
            "use_spatial_transformer: false (the legacy AttentionBlock)",
        ));
    }
    if params["conv_resample"] == Value::Bool(false) {
        return Err(refuse(
            "conv_resample: false (pooling in place of convolutions)",
        ));
    }
    if params["dims"].as_u64().is_some_and(|dims| dims != 2) {
        return Err(refuse("dims other than 2"));
    }
    for field in [
        "disable_self_attentions",
        "num_attention_blocks",
        "disable_middle_self_attn",
    ] {
        let set = match &params[field] {
            Value::Null | Value::Bool(false) => false,
            Value::Array(items) => items.iter().any(|item| *item != Value::Bool(false)),
            _ => true,
        };
        if set {
            return Err(refuse(format!("{field} is set")));
        }
    }
    let channel_mult = multipliers(params, "channel_mult")?;
    let levels = channel_mult.len();
    let transformer_depth = match &params["transformer_depth"] {
        Value::Null => vec![1; levels],
        Value::Array(_) => numbers(params, "transformer_depth")?,
        _ => vec![number(params, "transformer_depth")?; levels],
    };
    if transformer_depth.len() != levels {
        return Err(refuse(format!(
            "transformer_depth has {} entries for {levels} levels",
            transformer_depth.len()
        )));
    }
    if transformer_depth.iter().any(|depth| *depth > MAX_DEPTH) {
        return Err(refuse(format!("a transformer_depth above {MAX_DEPTH}")));
    }
    let last_depth = transformer_depth[levels - 1];
    if params["transformer_depth_middle"]
        .as_u64()
        .is_some_and(|middle| middle != last_depth)
    {
        return Err(refuse(
            "transformer_depth_middle other than the last level's depth",
        ));
    }
    let context_dim = match &params["context_dim"] {
        Value::Array(items) => {
            let first = items.first().and_then(Value::as_u64);
            if first.is_none() || items.iter().any(|item| item.as_u64() != first) {
                return Err(refuse("context_dim differing between levels"));
            }
            match first {
                Some(0) | None => return Err(refuse("context_dim is 0")),
                Some(width) => width,
            }
        }
        Value::Null => return Err(refuse("no context_dim (a UNet without cross-attention)")),
        _ => positive(params, "context_dim")?,
    };
    let label_embedding = match &params["num_classes"] {
        Value::Null => None,
        Value::String(kind) if kind == "sequential" => {
            Some((true, positive(params, "adm_in_channels")?))
        }
        Value::Number(_) => Some((false, positive(params, "num_classes")?)),
        other => return Err(refuse(format!("num_classes {other}"))),
    };
    let heads = [
        ("num_head_channels", "num_head_channels"),
        ("num_heads", "num_heads"),
    ]
    .into_iter()
    .find_map(|(field, name)| {
        params[field]
            .as_i64()
            .filter(|count| *count > 0)
            .map(|count| (name, count.unsigned_abs()))
    });
    let num_res_blocks = if params["num_res_blocks"].is_array() {
        return Err(refuse("num_res_blocks differing between levels"));
    } else {
        positive(params, "num_res_blocks")?
    };
    if num_res_blocks > MAX_BLOCKS {
        return Err(refuse(format!("num_res_blocks above {MAX_BLOCKS}")));
    }
    Ok(Unet {
        in_channels: positive(params, "in_channels")?,
        out_channels: positive(params, "out_channels")?,
        model_channels: positive(params, "model_channels")?,
        channel_mult,
        num_res_blocks,
        attention_resolutions: numbers(params, "attention_resolutions")?,
        transformer_depth,
        context_dim,
        linear_projection: flag(params, "use_linear_in_transformer"),
        label_embedding,
        heads,
    })
}

impl Unet {
    fn check_width(&self, width: u64, attention: bool) -> Result<()> {
        if !width.is_multiple_of(NORM_GROUPS) {
            return Err(refuse(format!(
                "a UNet width of {width}, not a multiple of GroupNorm's {NORM_GROUPS} groups"
            )));
        }
        if let (true, Some((field, count))) = (attention, self.heads) {
            if !width.is_multiple_of(count) {
                return Err(refuse(format!(
                    "a UNet width of {width} that {field} {count} does not divide"
                )));
            }
        }
        Ok(())
    }

    fn res_block(&self, list: &mut Listing, prefix: &str, inp: u64, out: u64) {
        let time = self.model_channels * 4;
        list.norm(&format!("{prefix}in_layers.0."), inp);
        list.layer(&format!("{prefix}in_layers.2."), out, inp, Some(3), true);
        list.layer(&format!("{prefix}emb_layers.1."), out, time, None, true);
        list.norm(&format!("{prefix}out_layers.0."), out);
        list.layer(&format!("{prefix}out_layers.3."), out, out, Some(3), true);
        if inp != out {
            list.layer(
                &format!("{prefix}skip_connection."),
                out,
                inp,
                Some(1),
                true,
            );
        }
    }

    fn spatial_transformer(&self, list: &mut Listing, prefix: &str, width: u64, depth: u64) {
        let kernel = (!self.linear_projection).then_some(1);
        list.norm(&format!("{prefix}norm."), width);
        list.layer(&format!("{prefix}proj_in."), width, width, kernel, true);
        for block in 0..depth {
            let block = format!("{prefix}transformer_blocks.{block}.");
            for (attention, context) in [("attn1", width), ("ff", 0), ("attn2", self.context_dim)] {
                if attention == "ff" {
                    list.layer(
                        &format!("{block}ff.net.0.proj."),
                        width * 8,
                        width,
                        None,
                        true,
                    );
                    list.layer(&format!("{block}ff.net.2."), width, width * 4, None, true);
                    continue;
                }
                list.layer(
                    &format!("{block}{attention}.to_q."),
                    width,
                    width,
                    None,
                    false,
                );
                list.layer(
                    &format!("{block}{attention}.to_k."),
                    width,
                    context,
                    None,
                    false,
                );
                list.layer(
                    &format!("{block}{attention}.to_v."),
                    width,
                    context,
                    None,
                    false,
                );
                list.layer(
                    &format!("{block}{attention}.to_out.0."),
                    width,
                    width,
                    None,
                    true,
                );
            }
            for norm in ["norm1", "norm2", "norm3"] {
                list.norm(&format!("{block}{norm}."), width);
            }
        }
        list.layer(&format!("{prefix}proj_out."), width, width, kernel, true);
    }

    fn list(&self, out: &mut Vec<Listed>) -> Result<()> {
        let mut list = Listing { out };
        let channels = self.model_channels;
        let time = multiply(channels, 4)?;
        let widths: Vec<u64> = self
            .channel_mult
            .iter()
            .map(|m| multiply(channels, *m))
            .collect::<Result<_>>()?;
        self.check_width(channels, false)?;
        for width in &widths {
            self.check_width(*width, true)?;
        }
        list.layer("time_embed.0.", time, channels, None, true);
        list.layer("time_embed.2.", time, time, None, true);
        match self.label_embedding {
            Some((true, inputs)) => {
                list.layer("label_emb.0.0.", time, inputs, None, true);
                list.layer("label_emb.0.2.", time, time, None, true);
            }
            Some((false, classes)) => list.push("label_emb.weight".into(), vec![classes, time]),
            None => {}
        }
        list.layer(
            "input_blocks.0.0.",
            channels,
            self.in_channels,
            Some(3),
            true,
        );
        let levels = widths.len();
        let (mut block, mut width, mut resolution) = (1usize, channels, 1u64);
        let mut skips = vec![channels];
        for (level, out) in widths.iter().enumerate() {
            let attention = self.attention_resolutions.contains(&resolution);
            for _ in 0..self.num_res_blocks {
                self.res_block(&mut list, &format!("input_blocks.{block}.0."), width, *out);
                width = *out;
                if attention {
                    let prefix = format!("input_blocks.{block}.1.");
                    self.spatial_transformer(
                        &mut list,
                        &prefix,
                        width,
                        self.transformer_depth[level],
                    );
                }
                skips.push(width);
                block += 1;
            }
            if level + 1 != levels {
                list.layer(
                    &format!("input_blocks.{block}.0.op."),
                    width,
                    width,
                    Some(3),
                    true,
                );
                skips.push(width);
                block += 1;
                resolution *= 2;
            }
        }
        self.res_block(&mut list, "middle_block.0.", width, width);
        let middle_depth = self.transformer_depth[levels - 1];
        self.spatial_transformer(&mut list, "middle_block.1.", width, middle_depth);
        self.res_block(&mut list, "middle_block.2.", width, width);
        let mut block = 0usize;
        for (level, out) in widths.iter().enumerate().rev() {
            let attention = self.attention_resolutions.contains(&resolution);
            for index in 0..=self.num_res_blocks {
                let skip = skips.pop().unwrap_or(0);
                let inputs = width + skip;
                self.res_block(
                    &mut list,
                    &format!("output_blocks.{block}.0."),
                    inputs,
                    *out,
                );
                width = *out;
                let mut part = 1;
                if attention {
                    let prefix = format!("output_blocks.{block}.1.");
                    self.spatial_transformer(
                        &mut list,
                        &prefix,
                        width,
                        self.transformer_depth[level],
                    );
                    part = 2;
                }
                if level != 0 && index == self.num_res_blocks {
                    let prefix = format!("output_blocks.{block}.{part}.conv.");
                    list.layer(&prefix, width, width, Some(3), true);
                    resolution /= 2;
                }
                block += 1;
            }
        }
        list.norm("out.0.", channels);
        list.layer("out.2.", self.out_channels, channels, Some(3), true);
        Ok(())
    }
}

/// The VAE of `first_stage_config` (LDM's AutoencoderKL, sgm's
/// AutoencoderKLInferenceWrapper): encoder, decoder, the quant convs.
fn list_vae(first_stage: &Value, out: &mut Vec<Listed>) -> Result<()> {
    let dd = &first_stage["ddconfig"];
    if !dd.is_object() {
        return Err(refuse("first_stage_config.params.ddconfig is missing"));
    }
    if dd["double_z"] == Value::Bool(false) {
        return Err(refuse("a VAE with double_z: false"));
    }
    if dd["attn_resolutions"]
        .as_array()
        .is_some_and(|items| !items.is_empty())
    {
        return Err(refuse("attention in the VAE's levels (attn_resolutions)"));
    }
    // sgm's `vanilla-xformers` holds the same weights as `vanilla`.
    if dd["attn_type"]
        .as_str()
        .is_some_and(|kind| !kind.starts_with("vanilla"))
    {
        return Err(refuse("a VAE attention other than vanilla (attn_type)"));
    }
    let ch = positive(dd, "ch")?;
    let ch_mult = multipliers(dd, "ch_mult")?;
    let blocks = positive(dd, "num_res_blocks")?;
    if blocks > MAX_BLOCKS {
        return Err(refuse(format!("a VAE num_res_blocks above {MAX_BLOCKS}")));
    }
    let z = positive(dd, "z_channels")?;
    let embed = positive(first_stage, "embed_dim")?;
    let widths: Vec<u64> = ch_mult
        .iter()
        .map(|m| multiply(ch, *m))
        .collect::<Result<_>>()?;
    if let Some(width) = std::iter::once(&ch)
        .chain(&widths)
        .find(|w| !w.is_multiple_of(NORM_GROUPS))
    {
        return Err(refuse(format!(
            "a VAE width of {width}, not a multiple of GroupNorm's {NORM_GROUPS} groups"
        )));
    }
    let mut list = Listing { out };
    let resnet = |list: &mut Listing, prefix: &str, inp: u64, out: u64| {
        list.norm(&format!("{prefix}norm1."), inp);
        list.layer(&format!("{prefix}conv1."), out, inp, Some(3), true);
        list.norm(&format!("{prefix}norm2."), out);
        list.layer(&format!("{prefix}conv2."), out, out, Some(3), true);
        if inp != out {
            list.layer(&format!("{prefix}nin_shortcut."), out, inp, Some(1), true);
        }
    };
    let middle = |list: &mut Listing, prefix: &str, width: u64| {
        resnet(list, &format!("{prefix}mid.block_1."), width, width);
        list.norm(&format!("{prefix}mid.attn_1.norm."), width);
        for part in ["q", "k", "v", "proj_out"] {
            list.layer(
                &format!("{prefix}mid.attn_1.{part}."),
                width,
                width,
                Some(1),
                true,
            );
        }
        resnet(list, &format!("{prefix}mid.block_2."), width, width);
    };
    let levels = widths.len();
    let top = widths[levels - 1];
    list.layer(
        "encoder.conv_in.",
        ch,
        positive(dd, "in_channels")?,
        Some(3),
        true,
    );
    let mut width = ch;
    for (level, out) in widths.iter().enumerate() {
        for block in 0..blocks {
            resnet(
                &mut list,
                &format!("encoder.down.{level}.block.{block}."),
                width,
                *out,
            );
            width = *out;
        }
        if level + 1 != levels {
            let prefix = format!("encoder.down.{level}.downsample.conv.");
            list.layer(&prefix, width, width, Some(3), true);
        }
    }
    middle(&mut list, "encoder.", top);
    list.norm("encoder.norm_out.", top);
    list.layer("encoder.conv_out.", multiply(z, 2)?, top, Some(3), true);
    list.layer("decoder.conv_in.", top, z, Some(3), true);
    middle(&mut list, "decoder.", top);
    // The decoder's `up` list is built from the top level down and each
    // level inserted at the front: `up.0` is the first level's.
    let mut ups: Vec<Vec<Listed>> = vec![Vec::new(); levels];
    let mut width = top;
    for (level, out) in widths.iter().enumerate().rev() {
        let mut level_list = Listing {
            out: &mut ups[level],
        };
        for block in 0..=blocks {
            resnet(
                &mut level_list,
                &format!("decoder.up.{level}.block.{block}."),
                width,
                *out,
            );
            width = *out;
        }
        if level != 0 {
            let prefix = format!("decoder.up.{level}.upsample.conv.");
            level_list.layer(&prefix, width, width, Some(3), true);
        }
    }
    list.out.extend(ups.into_iter().flatten());
    list.norm("decoder.norm_out.", width);
    list.layer(
        "decoder.conv_out.",
        positive(dd, "out_ch")?,
        width,
        Some(3),
        true,
    );
    list.layer(
        "quant_conv.",
        multiply(embed, 2)?,
        multiply(z, 2)?,
        Some(1),
        true,
    );
    list.layer("post_quant_conv.", z, embed, Some(1), true);
    Ok(())
}

/// The text encoder a YAML embedder names: its component in
/// stable_diffusion.json and the module its weights sit under.
fn text_encoder(embedder: &Value) -> Result<Option<(&'static str, &'static str)>> {
    let target = embedder["target"].as_str().unwrap_or("");
    let class = target.rsplit('.').next().unwrap_or(target);
    let params = &embedder["params"];
    match class {
        "FrozenCLIPEmbedder" => {
            let version = params["version"]
                .as_str()
                .unwrap_or("openai/clip-vit-large-patch14");
            if version != "openai/clip-vit-large-patch14" {
                return Err(refuse(format!(
                    "FrozenCLIPEmbedder of {version} (ckptcheck knows OpenAI's ViT-L/14 text encoder)"
                )));
            }
            Ok(Some(("clip-l", "transformer.")))
        }
        "FrozenOpenCLIPEmbedder" | "FrozenOpenCLIPEmbedder2" => {
            match params["arch"].as_str().unwrap_or("ViT-H-14") {
                "ViT-H-14" => Ok(Some(("openclip-h", "model."))),
                "ViT-bigG-14" => Ok(Some(("openclip-bigg", "model."))),
                arch => Err(refuse(format!(
                    "{class} of {arch} (ckptcheck knows ViT-H-14 and ViT-bigG-14)"
                ))),
            }
        }
        // sgm's size and crop embedders hold no weights.
        _ if class.contains("Timestep") => Ok(None),
        _ => Err(refuse(format!("the text encoder {target:?}"))),
    }
}

/// The tensors of the model an inference YAML (parsed by sd_yaml::parse)
/// builds, in state_dict() order; `component` gives the named listings
/// (`clip-l`, `ldm-schedule`, ...) of stable_diffusion.json. Returns the
/// tensors and the class PyTorch's error texts name.
pub fn layout(
    yaml: &Value,
    component: impl Fn(&str) -> Vec<Listed>,
) -> Result<(Vec<Listed>, &'static str)> {
    let model = &yaml["model"];
    let params = &model["params"];
    let target = model["target"].as_str().unwrap_or("");
    let class = target.rsplit('.').next().unwrap_or(target);
    let sgm = params["network_config"].is_object();
    match (sgm, class) {
        (false, "LatentDiffusion" | "LatentInpaintDiffusion") | (true, "DiffusionEngine") => {}
        _ => {
            return Err(refuse(format!(
                "the model target {target:?} (ckptcheck lays out LDM's LatentDiffusion and LatentInpaintDiffusion, and sgm's DiffusionEngine)"
            )))
        }
    }
    if flag(params, "scale_by_std") || flag(params, "use_ema") || flag(params, "learn_logvar") {
        return Err(refuse(
            "scale_by_std, use_ema or learn_logvar (weights beside the modules)",
        ));
    }
    let unet_params = if sgm {
        &params["network_config"]["params"]
    } else {
        &params["unet_config"]["params"]
    };
    if !unet_params.is_object() {
        return Err(refuse("no unet_config (or network_config) params"));
    }
    let mut unet = Vec::new();
    read_unet(unet_params)?.list(&mut unet)?;
    let mut vae = Vec::new();
    list_vae(&params["first_stage_config"]["params"], &mut vae)?;
    let mut texts = Vec::new();
    let embedders: Vec<(String, &Value)> = if sgm {
        params["conditioner_config"]["params"]["emb_models"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, e)| (format!("conditioner.embedders.{index}."), e))
            .collect()
    } else {
        vec![(
            "cond_stage_model.".to_string(),
            &params["cond_stage_config"],
        )]
    };
    for (prefix, embedder) in embedders {
        if let Some((name, module)) = text_encoder(embedder)? {
            texts.extend(
                component(name)
                    .into_iter()
                    .map(|(n, shape, int)| (format!("{prefix}{module}{n}"), shape, int)),
            );
        }
    }
    let prefixed = |prefix: &str, listing: Vec<Listed>| {
        listing
            .into_iter()
            .map(move |(name, shape, int)| (format!("{prefix}{name}"), shape, int))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    if sgm {
        // DiffusionEngine registers the UNet, the conditioner, the VAE;
        // its noise schedule is not a buffer.
        out.extend(prefixed(super::stable_diffusion::UNET_PREFIX, unet));
        out.extend(texts);
        out.extend(prefixed("first_stage_model.", vae));
        return Ok((out, "DiffusionEngine"));
    }
    // DDPM registers its schedule as buffers of `timesteps` values, which
    // state_dict() gives before any module's.
    let steps = params["timesteps"].as_u64().unwrap_or(1000);
    if steps == 0 || steps > 1 << 20 {
        return Err(refuse(format!("timesteps {steps}")));
    }
    out.extend(
        component("ldm-schedule")
            .into_iter()
            .map(|(name, _, int)| (name, vec![steps], int)),
    );
    out.extend(prefixed(super::stable_diffusion::UNET_PREFIX, unet));
    out.extend(prefixed("first_stage_model.", vae));
    out.extend(texts);
    Ok((out, "LatentDiffusion"))
}
