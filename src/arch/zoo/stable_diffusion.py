#!/usr/bin/env python3
"""Stable Diffusion single-file checkpoints (the original LDM/sgm layout:
`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`,
`conditioner.embedders.*`) for the releases' inference YAMLs, derived from
the libraries and checked by diffusers' own single-file converter. Run by
hand (never by CI or tests):

    /tmp/zoo/bin/pip install diffusers open-clip-torch
    /tmp/zoo/bin/python src/arch/zoo/stable_diffusion.py

For each release (one preset per inference YAML: v1-inference.yaml, ...,
sd_xl_refiner.yaml) it builds, on the meta device, the diffusers UNet and
VAE of that structure and the text encoders the YAML names (transformers'
CLIPTextModel for OpenAI's ViT-L/14, open_clip's ViT-H-14 and ViT-bigG-14
text towers, whose visual tower LDM deletes), renames the diffusers keys to
the LDM ones and orders them as the LDM modules register them. The result
is kept only if diffusers' `convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint` and
`convert_open_clip_checkpoint` turn it back into exactly the diffusers and
transformers state dicts (keys and shapes), and `infer_diffusers_model_type`
names it as the release it is.

SD3 and SD3.5 (Stability AI's layout: the MMDiT under
`model.diffusion_model.`, the 16-channel VAE under `first_stage_model.`) and
FLUX.1 (Black Forest Labs' layout, no prefix) have no YAML: their MMDiT and
transformer listings are written from the reference code's module layout
for the config of each release (for SD3, the config of the diffusers preset
in presets.json), and kept only if diffusers'
`convert_sd3_transformer_checkpoint_to_diffusers` and
`convert_flux_transformer_checkpoint_to_diffusers` consume every key and
give exactly SD3Transformer2DModel's and FluxTransformer2DModel's state
dicts for that config (FLUX.1 both bare and under ComfyUI's prefix), the
SD3 VAE converts back through `convert_ldm_vae_checkpoint`, and
`infer_diffusers_model_type` names the release.

Writes src/arch/zoo/stable_diffusion.json (each component's listing once;
each preset its components and prefixes).
"""

import json
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SD1_UNET = dict(cross_attention_dim=768, sample_size=64)
SD2_UNET = dict(cross_attention_dim=1024, sample_size=96, attention_head_dim=[5, 10, 20, 20],
                use_linear_projection=True)
SDXL_UNET = dict(sample_size=128, block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 attention_head_dim=[5, 10, 20], transformer_layers_per_block=[1, 2, 10],
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SDXL_REFINER_UNET = dict(sample_size=128, block_out_channels=[384, 768, 1536, 1536], cross_attention_dim=1280,
                         down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                           "DownBlock2D"],
                         up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                         attention_head_dim=[6, 12, 24, 24], transformer_layers_per_block=4,
                         use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                         projection_class_embeddings_input_dim=2560)
VAE = dict(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, sample_size=512)

# name, inference YAML, what it is, diffusers' model type name, UNet config,
# text encoders as (LDM prefix, component).
PRESETS = [
    ("sd/1.5", "v1-inference.yaml", "Stable Diffusion 1.x (SD 1.4/1.5): cross-attention dim 768, "
     "OpenAI CLIP ViT-L/14 text encoder", "v1", SD1_UNET, [("cond_stage_model.transformer.", "clip-l")]),
    ("sd/1.5-inpainting", "v1-inpainting-inference.yaml", "Stable Diffusion 1.x inpainting: a UNet with "
     "9 input channels (latents, mask, masked image)", "inpainting", dict(SD1_UNET, in_channels=9),
     [("cond_stage_model.transformer.", "clip-l")]),
    ("sd/2.1-768", "v2-inference-v.yaml", "Stable Diffusion 2.x (768, v-prediction): cross-attention dim "
     "1024, OpenCLIP ViT-H/14 text encoder", "v2", SD2_UNET, [("cond_stage_model.model.", "openclip-h")]),
    ("sd/2.1-512", "v2-inference.yaml", "Stable Diffusion 2.x (512, epsilon prediction; the same shapes as "
     "768-v): cross-attention dim 1024, OpenCLIP ViT-H/14 text encoder", "v2", SD2_UNET,
     [("cond_stage_model.model.", "openclip-h")]),
    ("sd/2-inpainting", "v2-inpainting-inference.yaml", "Stable Diffusion 2.x inpainting: 9 input channels, "
     "cross-attention dim 1024", "inpainting_v2", dict(SD2_UNET, in_channels=9),
     [("cond_stage_model.model.", "openclip-h")]),
    ("sd/xl-base", "sd_xl_base.yaml", "Stable Diffusion XL base: cross-attention dim 2048, CLIP ViT-L and "
     "OpenCLIP ViT-bigG text encoders", "xl_base", SDXL_UNET,
     [("conditioner.embedders.0.transformer.", "clip-l"), ("conditioner.embedders.1.model.", "openclip-bigg")]),
    ("sd/xl-refiner", "sd_xl_refiner.yaml", "Stable Diffusion XL refiner: cross-attention dim 1280, "
     "OpenCLIP ViT-bigG text encoder", "xl_refiner", SDXL_REFINER_UNET,
     [("conditioner.embedders.0.model.", "openclip-bigg")]),
]

# LDM module registration order, one rank per module or tensor name (the
# names of different modules do not collide in a way that disagrees).
UNET_ORDER = ["time_embed", "label_emb", "input_blocks", "middle_block", "output_blocks", "out",
              "in_layers", "emb_layers", "out_layers", "skip_connection", "op", "conv", "norm", "proj_in",
              "transformer_blocks", "proj_out", "attn1", "ff", "attn2", "norm1", "norm2", "norm3", "to_q",
              "to_k", "to_v", "to_out", "net", "proj", "weight", "bias"]
VAE_ORDER = ["encoder", "decoder", "quant_conv", "post_quant_conv", "conv_in", "down", "mid", "up", "norm_out",
             "conv_out", "block", "attn", "downsample", "upsample", "block_1", "attn_1", "block_2", "norm1",
             "conv1", "norm2", "conv2", "nin_shortcut", "norm", "q", "k", "v", "proj_out", "conv", "weight",
             "bias"]


def ordered(listing, order):
    rank = {name: i for i, name in enumerate(order)}

    def key(item):
        out = []
        for part in item[0].split("."):
            out.append((0, int(part)) if part.isdigit() else (1, rank[part]))
        return out
    return sorted(listing, key=key)


def unet_renames(config):
    """diffusers UNet2DConditionModel prefixes -> LDM UNetModel prefixes."""
    blocks = len(config["block_out_channels"])
    per = config["layers_per_block"]
    down_attn = ["CrossAttn" in t for t in config["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
           ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2."),
           ("class_embedding.linear_1.", "label_emb.0.0."), ("class_embedding.linear_2.", "label_emb.0.2."),
           ("class_embedding.", "label_emb."),
           ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
           ("mid_block.attentions.0.", "middle_block.1."), ("mid_block.resnets.0.", "middle_block.0."),
           ("mid_block.resnets.1.", "middle_block.2.")]
    for i in range(blocks):
        for j in range(per):
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{i * (per + 1) + j + 1}.0."))
            if down_attn[i]:
                out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{i * (per + 1) + j + 1}.1."))
        if i < blocks - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (per + 1)}.0.op."))
        for j in range(per + 1):
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{i * (per + 1) + j}.0."))
            if up_attn[i]:
                out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{i * (per + 1) + j}.1."))
        if i < blocks - 1:
            out.append((f"up_blocks.{i}.upsamplers.0.",
                        f"output_blocks.{i * (per + 1) + per}.{2 if up_attn[i] else 1}."))
    return out


RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
          ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]


def rename_unet(key, renames):
    for hf, ldm in renames:
        if key.startswith(hf):
            rest = key[len(hf):]
            if ".resnets." in hf or hf.startswith("mid_block.resnets"):
                for a, b in RESNET:
                    if rest.startswith(a):
                        rest = b + rest[len(a):]
                        break
            return ldm + rest
    raise KeyError(key)


def vae_renames(levels=4, blocks=2):
    """diffusers AutoencoderKL prefixes -> LDM's, for `levels` levels of
    `blocks` ResNet blocks (the decoder's levels hold one more)."""
    out = [("mid_block.attentions.0.", "mid.attn_1."), ("conv_norm_out.", "norm_out.")]
    last = levels - 1
    for i in range(levels):
        for j in range(blocks):
            out.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
        if i < last:
            out.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
            out.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{last - i}.upsample."))
        for j in range(blocks + 1):
            out.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{last - i}.block.{j}."))
    for i in range(2):
        out.append((f"mid_block.resnets.{i}.", f"mid.block_{i + 1}."))
    return out


VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                 ("to_out.0.", "proj_out.")]


def rename_vae(key, shape, levels=4, blocks=2):
    new = key.replace("conv_shortcut.", "nin_shortcut.")
    for hf, ldm in vae_renames(levels, blocks):
        if hf in new:
            new = new.replace(hf, ldm)
            break
    if ".mid.attn_1." in new:
        for a, b in VAE_ATTENTION:
            if ".mid.attn_1." + a in new:
                new = new.replace(".mid.attn_1." + a, ".mid.attn_1." + b)
                # LDM's attention uses 1x1 convolutions.
                if b != "norm." and new.endswith("weight"):
                    shape = shape + [1, 1]
                break
    return new, shape


UNET_FACTS = ["in_channels", "block_out_channels", "down_block_types", "up_block_types", "layers_per_block",
              "transformer_layers_per_block", "use_linear_projection", "cross_attention_dim",
              "projection_class_embeddings_input_dim"]
YAMLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "tests", "fixtures", "sd", "yaml")


def yaml_facts(yaml_name, checkpoint, unet, vae):
    """What a release's inference YAML says of the shapes, as diffusers reads
    it (`create_unet_diffusers_config_from_ldm`, the YAML at
    tests/fixtures/sd/yaml/): the diffusers UNet config fields that decide
    tensors (checked to build the release's UNet), the text encoders'
    targets, and the VAE's ddconfig. ckptcheck reads a dropped YAML into the
    same facts (arch/sd_yaml.rs) and takes the release they equal."""
    import diffusers
    import yaml
    from diffusers.loaders import single_file_utils as sfu
    with open(os.path.join(YAMLS, yaml_name)) as f:
        original = yaml.safe_load(f)
    config = sfu.create_unet_diffusers_config_from_ldm(original, checkpoint)
    with torch.device("meta"):
        rebuilt = diffusers.UNet2DConditionModel.from_config(config)
    assert same(rebuilt.state_dict(), unet.state_dict()), f"{yaml_name}: its UNet is not the release's"
    vae_config = sfu.create_vae_diffusers_config_from_ldm(original, checkpoint)
    with torch.device("meta"):
        rebuilt = diffusers.AutoencoderKL.from_config(vae_config)
    assert same(rebuilt.state_dict(), vae.state_dict()), f"{yaml_name}: its VAE is not the release's"
    facts = {k: (list(config[k]) if isinstance(config.get(k), tuple) else config.get(k)) for k in UNET_FACTS}
    params = original["model"]["params"]
    if "cond_stage_config" in params:
        embedders = [params["cond_stage_config"]]
    else:
        embedders = params["conditioner_config"]["params"]["emb_models"]
    facts["text_encoders"] = [e["target"].rsplit(".", 1)[1] + ("/" + e["params"]["arch"]
                                                              if "arch" in e.get("params", {}) else "")
                              for e in embedders if "Timestep" not in e["target"]]
    # What no tensor shows, but tells SD 2.x at 512 from 768-v.
    if "cond_stage_config" in params:
        facts["parameterization"] = params.get("parameterization", "eps")
    else:
        scaling = params["denoiser_config"]["params"]["scaling_config"]["target"]
        facts["parameterization"] = "v" if scaling.endswith("VScaling") else "eps"
    dd = params["first_stage_config"]["params"]["ddconfig"]
    facts["vae"] = {k: dd[k] for k in ("ch", "ch_mult", "z_channels", "num_res_blocks")}
    return facts


# Black Forest Labs' FLUX.1 single files (the `flux` reference code's
# layout: `double_blocks.*`, `single_blocks.*`, no prefix; ComfyUI saves the
# same under `model.diffusion_model.`): name, what it is, diffusers' model
# type name, diffusers' FluxTransformer2DModel config, the BFL model's
# `in_channels` and whether it embeds the guidance scale.
FLUX_PRESETS = [
    ("flux/dev", "FLUX.1 [dev]: a 12B rectified-flow transformer (19 double-stream and 38 single-stream "
     "blocks, width 3072) with guidance embedding", "flux-dev", dict(guidance_embeds=True), 64, True),
    ("flux/schnell", "FLUX.1 [schnell]: the FLUX.1 transformer without guidance embedding (timestep-distilled)",
     "flux-schnell", dict(guidance_embeds=False), 64, False),
    ("flux/fill", "FLUX.1 Fill [dev]: FLUX.1 [dev] for inpainting and outpainting, 384 input channels "
     "(latents, masked image, mask)", "flux-fill", dict(guidance_embeds=True, in_channels=384, out_channels=64),
     384, True),
    ("flux/depth", "FLUX.1 Depth [dev]: FLUX.1 [dev] conditioned on a depth map, 128 input channels",
     "flux-depth", dict(guidance_embeds=True, in_channels=128, out_channels=64), 128, True),
]


def listing_writer(head_dim=0, bias=True):
    """A listing and its writers for the reference models: `linear(name,
    rows, columns)` (the weight, and the bias where the model has biases)
    and `qk_norm(prefix)` (FLUX's RMS norms of queries and keys)."""
    out = []

    def linear(name, rows, columns):
        out.append([name + ".weight", [rows, columns], "float32"])
        if bias:
            out.append([name + ".bias", [rows], "float32"])

    def qk_norm(prefix):
        out.extend([[prefix + "norm.query_norm.scale", [head_dim], "float32"],
                    [prefix + "norm.key_norm.scale", [head_dim], "float32"]])
    return out, linear, qk_norm


def flux_blocks(linear, qk_norm, hidden, mlp, depth, depth_single, modulated):
    """FLUX.1's double-stream blocks (an image and a text stream, each its
    modulation, attention and MLP) and single-stream blocks, in the order
    the `flux` code registers them; Chroma's are the same without their
    modulation layers."""
    for i in range(depth):
        for stream in ("img", "txt"):
            prefix = f"double_blocks.{i}.{stream}_"
            if modulated:
                linear(prefix + "mod.lin", 6 * hidden, hidden)
            linear(prefix + "attn.qkv", 3 * hidden, hidden)
            qk_norm(prefix + "attn.")
            linear(prefix + "attn.proj", hidden, hidden)
            linear(prefix + "mlp.0", mlp, hidden)
            linear(prefix + "mlp.2", hidden, mlp)
    for i in range(depth_single):
        prefix = f"single_blocks.{i}."
        linear(prefix + "linear1", 3 * hidden + mlp, hidden)
        linear(prefix + "linear2", hidden, hidden + mlp)
        qk_norm(prefix)
        if modulated:
            linear(prefix + "modulation.lin", 3 * hidden, hidden)


def flux_listing(in_channels, guidance, hidden=3072, heads=24, depth=19, depth_single=38, context=4096,
                 vector=768, mlp_ratio=4, out_channels=64):
    """The BFL `Flux` module's state_dict() keys and shapes, in the order its
    modules register (img_in, time_in, vector_in, guidance_in, txt_in, the
    double-stream blocks, the single-stream blocks, final_layer); norms
    without weights (LayerNorm(elementwise_affine=False)) hold nothing."""
    head_dim, mlp = hidden // heads, int(hidden * mlp_ratio)
    out, linear, qk_norm = listing_writer(head_dim)

    linear("img_in", hidden, in_channels)
    linear("time_in.in_layer", hidden, 256)
    linear("time_in.out_layer", hidden, hidden)
    linear("vector_in.in_layer", hidden, vector)
    linear("vector_in.out_layer", hidden, hidden)
    if guidance:
        linear("guidance_in.in_layer", hidden, 256)
        linear("guidance_in.out_layer", hidden, hidden)
    linear("txt_in", hidden, context)
    flux_blocks(linear, qk_norm, hidden, mlp, depth, depth_single, modulated=True)
    linear("final_layer.linear", out_channels, hidden)
    linear("final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return out


# FLUX.2 and Chroma single files: the same two block kinds in the same
# layout (`double_blocks.*`, `single_blocks.*`), with the modulation taken
# out of the blocks. FLUX.2 (Black Forest Labs' `flux2` code, `Flux2`)
# shares three modulation layers across all blocks and has no biases;
# Chroma (lodestones' model, ComfyUI's `comfy/ldm/chroma`) computes every
# modulation with one small network (`distilled_guidance_layer`, the
# "approximator") and keeps FLUX.1's biases. name, what it is, diffusers'
# model type name, the diffusers class and its config (the class defaults
# are the releases' configs), and the listing's arguments.
FLUX_LIKE_PRESETS = [
    ("flux2/dev", "FLUX.2 [dev]: a 32B rectified-flow transformer (8 double-stream and 48 single-stream blocks, "
     "width 6144, Mistral Small 3.1 text features 15360 wide) with guidance embedding", "flux-2-dev",
     "Flux2Transformer2DModel", {}, "flux2", {}),
    ("chroma/hd", "Chroma1-HD: an 8.9B transformer of FLUX.1 [schnell]'s blocks (19 double-stream and 38 "
     "single-stream) whose modulations one distilled network computes", "chroma",
     "ChromaTransformer2DModel", {}, "chroma", {}),
]


def flux2_listing(in_channels=128, hidden=6144, heads=48, depth=8, depth_single=48, context=15360, mlp_ratio=3.0):
    """The BFL `Flux2` module's state_dict() keys and shapes, in the order
    its modules register (flux2's src/flux2/model.py: img_in, time_in,
    guidance_in, txt_in, the double-stream blocks, the single-stream
    blocks, the three shared modulations, final_layer); no biases, and
    norms without weights hold nothing."""
    head_dim, mlp = hidden // heads, int(hidden * mlp_ratio)
    out, linear, qk_norm = listing_writer(head_dim, bias=False)

    linear("img_in", hidden, in_channels)
    linear("time_in.in_layer", hidden, 256)
    linear("time_in.out_layer", hidden, hidden)
    linear("guidance_in.in_layer", hidden, 256)
    linear("guidance_in.out_layer", hidden, hidden)
    linear("txt_in", hidden, context)
    for i in range(depth):
        for stream in ("img", "txt"):
            prefix = f"double_blocks.{i}.{stream}_"
            linear(prefix + "attn.qkv", 3 * hidden, hidden)
            qk_norm(prefix + "attn.")
            linear(prefix + "attn.proj", hidden, hidden)
            # A gated MLP: the first layer holds both halves.
            linear(prefix + "mlp.0", 2 * mlp, hidden)
            linear(prefix + "mlp.2", hidden, mlp)
    for i in range(depth_single):
        prefix = f"single_blocks.{i}."
        linear(prefix + "linear1", 3 * hidden + 2 * mlp, hidden)
        linear(prefix + "linear2", hidden, hidden + mlp)
        qk_norm(prefix)
    linear("double_stream_modulation_img.lin", 6 * hidden, hidden)
    linear("double_stream_modulation_txt.lin", 6 * hidden, hidden)
    linear("single_stream_modulation.lin", 3 * hidden, hidden)
    linear("final_layer.linear", in_channels, hidden)
    linear("final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return out


def chroma_listing(in_channels=64, hidden=3072, heads=24, depth=19, depth_single=38, context=4096, mlp_ratio=4,
                   approximator_in=64, approximator_hidden=5120, approximator_layers=5):
    """The Chroma module's state_dict() keys and shapes (ComfyUI's
    comfy/ldm/chroma/model.py and layers.py, on FLUX.1's blocks without
    their modulation layers): img_in, txt_in, the approximator (its input
    projection, its MLP layers, their RMS norms, its output projection),
    the double-stream blocks, the single-stream blocks, final_layer."""
    head_dim, mlp = hidden // heads, int(hidden * mlp_ratio)
    out, linear, qk_norm = listing_writer(head_dim)

    linear("img_in", hidden, in_channels)
    linear("txt_in", hidden, context)
    linear("distilled_guidance_layer.in_proj", approximator_hidden, approximator_in)
    for i in range(approximator_layers):
        linear(f"distilled_guidance_layer.layers.{i}.in_layer", approximator_hidden, approximator_hidden)
        linear(f"distilled_guidance_layer.layers.{i}.out_layer", approximator_hidden, approximator_hidden)
    for i in range(approximator_layers):
        out.append([f"distilled_guidance_layer.norms.{i}.scale", [approximator_hidden], "float32"])
    linear("distilled_guidance_layer.out_proj", hidden, approximator_hidden)
    flux_blocks(linear, qk_norm, hidden, mlp, depth, depth_single, modulated=False)
    linear("final_layer.linear", in_channels, hidden)
    return out


def flux2_reference_listing(source):
    """FLUX.2's listing from Black Forest Labs' own module, built on the
    meta device, where a checkout of github.com/black-forest-labs/flux2 is
    at hand (`FLUX2_SRC=<checkout>/src`): the hand-written listing must be
    it, key for key and in order."""
    sys.path.insert(0, source)
    from flux2.model import Flux2, Flux2Params
    with torch.device("meta"):
        return listing(Flux2(Flux2Params()))


# Stability AI's SD3 and SD3.5 single files (the reference `sd3_impls`
# layout: the MMDiT under `model.diffusion_model.`, the VAE under
# `first_stage_model.`; text encoders, when a file bundles them, under
# `text_encoders.*` take no part): name, what it is, diffusers' model type
# name, and the diffusers preset whose transformer config it is.
SD3_PRESETS = [
    ("sd3/medium", "Stable Diffusion 3 Medium: a 2B MMDiT (24 joint blocks, width 1536), 16-channel VAE",
     "sd3", "diffusers/sd3-medium/transformer"),
    ("sd3.5/large", "Stable Diffusion 3.5 Large (and Large Turbo): an 8B MMDiT (38 joint blocks, width 2432) "
     "with QK normalization", "sd35_large", "diffusers/sd3.5-large/transformer"),
    ("sd3.5/medium", "Stable Diffusion 3.5 Medium: a 2.5B MMDiT-X (24 joint blocks, width 1536, a second "
     "attention in the first 13) with QK normalization", "sd35_medium", "diffusers/sd3.5-medium/transformer"),
]
SD3_VAE = dict(VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)


def sd3_listing(config):
    """The reference MMDiT(X)'s state_dict() keys and shapes for a diffusers
    SD3Transformer2DModel config, in the order it registers them: its own
    `pos_embed` buffer, the embedders, each joint block's context block
    then x block (norms without weights hold nothing; the last context
    block only projects, so it has no attention output, no MLP and a 2x
    modulation), the final layer."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    head_dim, patch = config["attention_head_dim"], config["patch_size"]
    depth, qk = config["num_layers"], config.get("qk_norm") is not None
    dual = set(config.get("dual_attention_layers", []))
    out = [["pos_embed", [1, config["pos_embed_max_size"] ** 2, hidden], "float32"]]

    def linear(name, rows, columns):
        out.extend([[name + ".weight", [rows, columns], "float32"], [name + ".bias", [rows], "float32"]])

    def attention(prefix, project):
        linear(prefix + "qkv", 3 * hidden, hidden)
        if project:
            linear(prefix + "proj", hidden, hidden)
        if qk:
            out.extend([[prefix + "ln_q.weight", [head_dim], "float32"],
                        [prefix + "ln_k.weight", [head_dim], "float32"]])

    out.extend([["x_embedder.proj.weight", [hidden, config["in_channels"], patch, patch], "float32"],
                ["x_embedder.proj.bias", [hidden], "float32"]])
    linear("t_embedder.mlp.0", hidden, 256)
    linear("t_embedder.mlp.2", hidden, hidden)
    linear("y_embedder.mlp.0", hidden, config["pooled_projection_dim"])
    linear("y_embedder.mlp.2", hidden, hidden)
    linear("context_embedder", hidden, config["joint_attention_dim"])
    for i in range(depth):
        for block in ("context_block", "x_block"):
            prefix = f"joint_blocks.{i}.{block}."
            pre_only = block == "context_block" and i == depth - 1
            second = block == "x_block" and i in dual
            attention(prefix + "attn.", not pre_only)
            if second:
                attention(prefix + "attn2.", True)
            if not pre_only:
                linear(prefix + "mlp.fc1", 4 * hidden, hidden)
                linear(prefix + "mlp.fc2", hidden, 4 * hidden)
            linear(prefix + "adaLN_modulation.1", (2 if pre_only else 9 if second else 6) * hidden, hidden)
    linear("final_layer.linear", patch * patch * config["out_channels"], hidden)
    linear("final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return out


def listing(model):
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]


def meta_state_dict(items):
    return {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, shape, dtype in items}


def same(a, b):
    return sorted((k, tuple(v.shape)) for k, v in a.items()) == sorted((k, tuple(v.shape)) for k, v in b.items())


# What SD3, SD3.5 and FLUX.1 single files may bundle beside the MMDiT or
# transformer (Stability AI's `_incl_clips` files, ComfyUI's all-in-one
# checkpoints): the prefixes diffusers' `from_single_file` reads them
# under, each part's component and what it is. `optional` keys a file may
# lack: SD3's CLIP-L files hold no text projection (diffusers puts an
# identity there), T5's input embedding is tied to `shared`.
BUNDLED = [
    ("text_encoders.clip_l.transformer.", "sd3-clip-l", "CLIP-L",
     "the CLIP ViT-L/14 text encoder (diffusers' CLIPTextModelWithProjection, width 768, 12 layers)",
     ["text_projection.weight"]),
    ("text_encoders.clip_g.transformer.", "sd3-clip-g", "CLIP-G",
     "the OpenCLIP ViT-bigG/14 text encoder (diffusers' CLIPTextModelWithProjection, width 1280, 32 layers)", []),
    ("text_encoders.t5xxl.transformer.", "t5xxl-encoder", "T5-XXL",
     "the T5 v1.1 XXL encoder (transformers' T5EncoderModel, width 4096, 24 layers)",
     ["encoder.embed_tokens.weight"]),
    ("first_stage_model.", "vae-sd3", "VAE", "the 16-channel VAE of SD3 and FLUX.1 (diffusers' AutoencoderKL)", []),
    ("vae.", "vae-sd3", "VAE", "the 16-channel VAE of SD3 and FLUX.1 (diffusers' AutoencoderKL)", []),
]


def bundled_parts(components, sd3_vae):
    """The parts SD3 and FLUX.1 single files bundle, derived from
    transformers and checked with diffusers' single-file readers: each is
    detected as diffusers detects it and converts back into exactly the
    model diffusers builds for it (the optional keys aside)."""
    import transformers
    from diffusers.loaders import single_file_utils as sfu
    clip = dict(hidden_act="gelu", max_position_embeddings=77, vocab_size=49408)
    with torch.device("meta"):
        clip_l = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
            **dict(clip, hidden_act="quick_gelu"), hidden_size=768, intermediate_size=3072,
            num_attention_heads=12, num_hidden_layers=12, projection_dim=768))
        clip_g = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
            **clip, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
            projection_dim=1280))
        t5 = transformers.T5EncoderModel(transformers.T5Config(
            d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
            feed_forward_proj="gated-gelu", is_encoder_decoder=False))
    models = {"sd3-clip-l": clip_l, "sd3-clip-g": clip_g, "t5xxl-encoder": t5}
    for name, model in models.items():
        components[name] = listing(model)
    out = []
    for prefix, component, name, about, optional in BUNDLED:
        part = [[prefix + k, s, d] for k, s, d in components[component] if k not in optional]
        checkpoint = meta_state_dict(part)
        if component == "sd3-clip-l":
            assert sfu.is_clip_sd3_model(checkpoint)
            got = sfu.convert_ldm_clip_checkpoint(checkpoint, prefix)
        elif component == "sd3-clip-g":
            assert sfu.is_open_clip_sd3_model(checkpoint)
            got = sfu.convert_ldm_clip_checkpoint(checkpoint, prefix)
        elif component == "t5xxl-encoder":
            assert sfu.is_t5_in_single_file(checkpoint)
            got = sfu.convert_sd3_t5_checkpoint_to_diffusers(checkpoint)
        else:
            got = sfu.convert_ldm_vae_checkpoint(checkpoint, dict(sd3_vae.config))
        model = models.get(component, sd3_vae)
        want = {k: v for k, v in model.state_dict().items() if k not in optional}
        assert same(got, want), f"{prefix}: does not convert back"
        out.append({"prefix": prefix, "component": component, "name": name, "about": about,
                    "optional": optional})
        print("bundled", prefix, len(components[component]), "tensors; converts back", flush=True)
    return out


def main():
    import diffusers
    import open_clip
    import transformers
    from diffusers.loaders import single_file_utils as sfu
    from open_clip.model import CLIP

    components, checks = {}, []

    def unet_component(config):
        with torch.device("meta"):
            unet = diffusers.UNet2DConditionModel.from_config(config)
        renames = unet_renames(dict(unet.config))
        ldm = ordered([[rename_unet(k, renames), s, d] for k, s, d in listing(unet)], UNET_ORDER)
        return unet, ldm

    def vae_component(config):
        with torch.device("meta"):
            vae = diffusers.AutoencoderKL.from_config(config)
        renamed = [[*rename_vae(k, s), d] for k, s, d in listing(vae)]
        return vae, ordered(renamed, VAE_ORDER)

    vae, components["vae"] = vae_component(VAE)

    clip_config = transformers.CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                              num_hidden_layers=12, projection_dim=768)
    with torch.device("meta"):
        clip_l = transformers.CLIPTextModel(clip_config)
    # LDM's checkpoints were saved by transformers 4, whose CLIPTextModel
    # keeps its modules under `text_model.`.
    components["clip-l"] = [["text_model." + k, s, d] for k, s, d in listing(clip_l)]
    for name, arch in (("openclip-h", "ViT-H-14"), ("openclip-bigg", "ViT-bigG-14")):
        with torch.device("meta"):
            model = CLIP(**open_clip.get_model_config(arch))
        # FrozenOpenCLIPEmbedder deletes the visual tower.
        components[name] = [x for x in listing(model) if not x[0].startswith("visual.")]

    # DDPM.register_schedule's persistent buffers, one value per timestep
    # (every release YAML has `timesteps: 1000`).
    components["ldm-schedule"] = [[n, [1000], "float32"] for n in (
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")]
    presets = []
    for name, yaml, about, diffusers_type, unet_config, texts in PRESETS:
        unet, unet_ldm = unet_component(unet_config)
        component = "unet-" + name.split("/")[1]
        # Releases of the same shapes (SD 2.x at 512 and at 768) share one.
        component = next((c for c, v in components.items() if c.startswith("unet-") and v == unet_ldm), component)
        components[component] = unet_ldm
        # In state_dict() order: LDM's LatentDiffusion registers the UNet,
        # then the VAE, then the text encoder; sgm's DiffusionEngine (SDXL)
        # the UNet, the conditioner, then the VAE.
        # LDM's DDPM registers its noise schedule as buffers of its own,
        # which state_dict() gives before any module's (sgm keeps no schedule
        # in DiffusionEngine).
        if name.startswith("sd/xl"):
            parts = [["model.diffusion_model.", component]] + [list(t) for t in texts] + [["first_stage_model.", "vae"]]
        else:
            parts = [["", "ldm-schedule"], ["model.diffusion_model.", component], ["first_stage_model.", "vae"]] + \
                [list(t) for t in texts]
        checkpoint = {}
        for prefix, part in parts:
            checkpoint.update(meta_state_dict([[prefix + k, s, d] for k, s, d in components[part]]))
        # diffusers' own converter must give back the diffusers models.
        got = sfu.convert_ldm_unet_checkpoint(checkpoint, dict(unet.config))
        assert same(got, unet.state_dict()), f"{name}: UNet does not convert back"
        got = sfu.convert_ldm_vae_checkpoint(checkpoint, dict(vae.config))
        assert same(got, vae.state_dict()), f"{name}: VAE does not convert back"
        kind = sfu.infer_diffusers_model_type(checkpoint)
        assert kind == diffusers_type, f"{name}: diffusers reads it as {kind}"
        for prefix, part in texts:
            if part == "clip-l":
                got = sfu.convert_ldm_clip_checkpoint(checkpoint, remove_prefix=prefix)
                want = {"text_model." + k: v for k, v in clip_l.state_dict().items()}
                got = {k: v for k, v in got.items() if not k.endswith("position_ids")}
                assert same(got, want) or same({k.removeprefix("text_model."): v for k, v in got.items()},
                                               clip_l.state_dict()), f"{name}: CLIP-L does not convert back"
        facts = yaml_facts(yaml, checkpoint, unet, vae)
        checks.append(name)
        presets.append({"name": name, "yaml": yaml, "about": about, "diffusers_type": diffusers_type,
                        "components": parts, "yaml_facts": facts})
        print(name, sum(len(components[p]) for _, p in parts), "tensors; converts back; diffusers reads",
              kind, flush=True)
    zoo_presets = {p[0]: p[2] for p in json.load(open(os.path.join(HERE, "presets.json")))["presets"]}
    sd3_vae, components["vae-sd3"] = vae_component(SD3_VAE)
    for name, about, diffusers_type, zoo_preset in SD3_PRESETS:
        config = {k: v for k, v in zoo_presets[zoo_preset].items() if not k.startswith("_")}
        component = "mmdit-" + name.replace("/", "-")
        components[component] = sd3_listing(config)
        with torch.device("meta"):
            transformer = diffusers.SD3Transformer2DModel.from_config(config)
        parts = [["model.diffusion_model.", component], ["first_stage_model.", "vae-sd3"]]
        checkpoint = {}
        for prefix, part in parts:
            checkpoint.update(meta_state_dict([[prefix + k, s, d] for k, s, d in components[part]]))
        kind = sfu.infer_diffusers_model_type(checkpoint)
        assert kind == diffusers_type, f"{name}: diffusers reads it as {kind}"
        got = sfu.convert_ldm_vae_checkpoint(checkpoint, dict(sd3_vae.config))
        assert same(got, sd3_vae.state_dict()), f"{name}: the VAE does not convert back"
        transformer_part = {k: v for k, v in checkpoint.items() if k.startswith("model.diffusion_model.")}
        got = sfu.convert_sd3_transformer_checkpoint_to_diffusers(transformer_part)
        assert same(got, transformer.state_dict()), f"{name}: the MMDiT does not convert back"
        assert not transformer_part, f"{name}: the converter leaves {list(transformer_part)[:5]}"
        presets.append({"name": name, "yaml": "", "about": about, "diffusers_type": diffusers_type,
                        "build": f"SD3Transformer2DModel with the config of the preset {zoo_preset}",
                        "components": parts})
        print(name, sum(len(components[p]) for _, p in parts), "tensors; converts back; diffusers reads", kind,
              flush=True)
    for name, about, diffusers_type, config, in_channels, guidance in FLUX_PRESETS:
        component = "flux-" + name.split("/")[1]
        components[component] = flux_listing(in_channels, guidance)
        with torch.device("meta"):
            transformer = diffusers.FluxTransformer2DModel.from_config(config)
        for prefix in ("", "model.diffusion_model."):
            checkpoint = meta_state_dict([[prefix + k, s, d] for k, s, d in components[component]])
            kind = sfu.infer_diffusers_model_type(checkpoint)
            assert kind == diffusers_type, f"{name}: diffusers reads it as {kind}"
            got = sfu.convert_flux_transformer_checkpoint_to_diffusers(checkpoint)
            assert same(got, transformer.state_dict()), f"{name}: the transformer does not convert back"
            assert not checkpoint, f"{name}: the converter leaves {list(checkpoint)[:5]}"
        arguments = ", ".join(f"{k}={v!r}" for k, v in config.items())
        presets.append({"name": name, "yaml": "", "about": about, "diffusers_type": diffusers_type,
                        "build": f"FluxTransformer2DModel({arguments})", "components": [["", component]]})
        print(name, len(components[component]), "tensors; converts back; diffusers reads", kind, flush=True)
    for name, about, diffusers_type, class_name, config, component, arguments in FLUX_LIKE_PRESETS:
        components[component] = (flux2_listing if component == "flux2" else chroma_listing)(**arguments)
        if component == "flux2" and os.environ.get("FLUX2_SRC"):
            assert flux2_reference_listing(os.environ["FLUX2_SRC"]) == components[component], \
                f"{name}: the listing is not Black Forest Labs' module's"
        with torch.device("meta"):
            transformer = getattr(diffusers, class_name).from_config(config)
        converter = {"flux2": sfu.convert_flux2_transformer_checkpoint_to_diffusers,
                     "chroma": sfu.convert_chroma_transformer_checkpoint_to_diffusers}[component]
        checkpoint = meta_state_dict(components[component])
        kind = sfu.infer_diffusers_model_type(checkpoint)
        assert kind == diffusers_type, f"{name}: diffusers reads it as {kind}"
        got = converter(checkpoint)
        assert same(got, transformer.state_dict()), f"{name}: the transformer does not convert back"
        if component == "chroma":
            assert not checkpoint, f"{name}: the converter leaves {list(checkpoint)[:5]}"
        presets.append({"name": name, "yaml": "", "about": about, "diffusers_type": diffusers_type,
                        "build": f"{class_name}() (its defaults are the release's config)",
                        "components": [["", component]]})
        print(name, len(components[component]), "tensors; converts back; diffusers reads", kind, flush=True)
    bundled = bundled_parts(components, sd3_vae)
    out = {
        "generated_by": "src/arch/zoo/stable_diffusion.py",
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "open_clip": open_clip.__version__,
        "presets": presets,
        "bundled": bundled,
        "components": {k: [[n, s] + ([d] if d != "float32" else []) for n, s, d in v]
                       for k, v in components.items()},
    }
    with open(os.path.join(HERE, "stable_diffusion.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    assert all(re.fullmatch(r"[\w.]+", n) for v in components.values() for n, _, _ in v)


if __name__ == "__main__":
    main()
