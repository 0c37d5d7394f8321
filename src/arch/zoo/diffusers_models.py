#!/usr/bin/env python3
"""The diffusers models of the zoo (UNet2DConditionModel, AutoencoderKL,
ControlNetModel, SD3, FLUX.1, FLUX.2, FLUX.3 and Chroma transformers), derived by generate.py's own
machinery from the library itself. Run by hand (never by CI or tests):

    /tmp/zoo/bin/pip install diffusers
    /tmp/zoo/bin/python src/arch/zoo/diffusers_models.py [--only UNet2DConditionModel]
    /tmp/zoo/bin/python src/arch/zoo/generate.py --assemble

A diffusers model is built from keyword arguments (`Model.from_config`), and
its config names its blocks (`down_block_types`), so one class has several
structures. Each structure a released model uses is one *variant*, derived
from the class's own defaults with only the naming fields of that release
changed (its sizes are varied anyway, and a config.json that leaves a size
out gets the class's default, as in diffusers). Names, lists of names and
null fields that take a name are fixed in each variant: ckptcheck picks the
variant whose fixed fields a config matches, and refuses one no variant
matches rather than guess. The variants are model type
`diffusers/<class>`'s classes in the data, so the matrix test, inference and
presets treat them as any transformers class.
"""

import inspect
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
from assemble import CACHE, digest, small_matrix  # noqa: E402
from formulas import Misfit  # noqa: E402

SDXL_BLOCKS = {
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}

# Per class, its variants in the order ckptcheck tries them: a name and the
# naming fields (plus the lists whose lengths follow them) of a released
# config. Public facts from the released config.json files.
VARIANTS = {
    "UNet2DConditionModel": [
        ("sd-1", {}),
        ("sd-2", {"use_linear_projection": True}),
        ("sdxl", dict(SDXL_BLOCKS, up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"])),
        ("sdxl-refiner", {
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [384, 768, 1536, 1536],
            "transformer_layers_per_block": 4,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2560,
        }),
    ],
    "AutoencoderKL": [
        ("sd", {
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2,
        }),
        # SD3's and Flux's VAE: no quant_conv/post_quant_conv.
        ("sd3-flux", {
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        }),
    ],
    "ControlNetModel": [
        ("sd-1", {}),
        ("sd-2", {"use_linear_projection": True}),
        ("sdxl", SDXL_BLOCKS),
    ],
    "SD3Transformer2DModel": [
        ("sd3", {}),
        ("sd3.5-large", {"qk_norm": "rms_norm"}),
        # SD3.5 Medium: its first 13 blocks (MMDiT-X) have a second,
        # image-only attention (`attn2`, `norm1.linear` 9 chunks wide).
        ("sd3.5-medium", {"qk_norm": "rms_norm", "dual_attention_layers": list(range(13))}),
    ],
    "FluxTransformer2DModel": [
        ("flux", {}),
    ],
    # FLUX.2's, Chroma's and FLUX.3's transformers, at the class's defaults
    # (one structure each).
    "Flux2Transformer2DModel": [
        ("flux2", {}),
    ],
    "ChromaTransformer2DModel": [
        ("chroma", {}),
    ],
    "Flux3Transformer2DModel": [
        ("flux3", {}),
    ],
}


# Per variant, the least value of a count below which its structure is
# another: SD3.5 Medium's last block (no context output) is a block of its
# own only past its 13 dual-attention blocks.
LEAST = {
    "sd3.5-medium": {"num_layers": 14},
}
# Per variant, the lists of layer indices it holds whole (generate.PINNED).
PINNED = {
    "sd3.5-medium": {"dual_attention_layers"},
}


def config_shim(model_class, overrides):
    """A stand-in for a transformers config class over a diffusers model's
    keyword arguments: its defaults are the signature's with `overrides`,
    `to_dict()` the resolved arguments (as `model.config` holds them)."""
    signature = inspect.signature(model_class.__init__)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if name != "self" and p.default is not inspect.Parameter.empty
                and p.kind is p.POSITIONAL_OR_KEYWORD}

    def plain(value):
        return list(value) if isinstance(value, tuple) else value

    class Shim:
        num_labels = 0

        def __init__(self, **given):
            self.values = {k: plain(v) for k, v in defaults.items()}
            self.values.update({k: plain(v) for k, v in overrides.items()})
            for key, value in given.items():
                if key not in defaults:
                    continue
                current = self.values.get(key)
                if isinstance(value, dict) and isinstance(current, list):
                    # `set_path` on an empty dict writes a list's entry as
                    # {"1": v}: it is that entry of the default list.
                    current = list(current)
                    for index, entry in value.items():
                        current[int(index)] = entry
                    value = current
                self.values[key] = plain(value)

        @classmethod
        def from_dict(cls, d):
            return cls(**d)

        def to_dict(self):
            return json.loads(json.dumps(self.values))

    Shim.__name__ = model_class.__name__ + "Config"
    return Shim


def model_builder(model_class):
    def build(config):
        return model_class.from_config(config.values)
    build.__name__ = model_class.__name__
    return build


def run_class(class_name):
    import diffusers
    model_type = "diffusers/" + class_name
    out_path = os.path.join(CACHE, model_type.replace("/", "__") + ".json")
    started = time.time()
    result = {"model_type": model_type, "config_class": class_name, "classes": {}, "failed": {}, "matrix": []}
    model_class = getattr(diffusers, class_name)
    generate.FIX_NAMES = True
    for variant, overrides in VARIANTS[class_name]:
        rng = random.Random(f"{model_type}/{variant}")
        generate.LEAST = LEAST.get(variant, {})
        generate.PINNED = PINNED.get(variant, set())
        shim = config_shim(model_class, overrides)
        try:
            desc, base, held, fixed = generate.derive_with_or_without_last(model_type, shim,
                                                                           model_builder(model_class), rng)
        except Misfit as e:
            result["failed"][variant] = str(e)
            continue
        except Exception as e:  # noqa: BLE001 - recorded in COVERAGE.md
            result["failed"][variant] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            continue
        for key in ("base_model_prefix", "tied", "tie_word_embeddings", "tied_if_flipped", "conversions"):
            desc.pop(key, None)
        desc["base_model_prefix"] = ""
        desc["tied"] = []
        desc["conversions"] = []
        desc["unmodeled"] = []
        desc["diffusers_overrides"] = json.loads(json.dumps(overrides))
        result["classes"][variant] = desc
        if fixed:
            result.setdefault("fixed", {})[variant] = fixed
        result["matrix"].append({
            "class": variant,
            "default": {"config": {"_class_name": class_name}, "count": len(base.listing),
                        "digest": digest(base.listing)},
            "variations": small_matrix(held, listing_limit=2000),
        })
        print(model_type, variant, len(base.listing), "tensors;", len(desc["fields"]), "fields;",
              "fixed:", ", ".join(fixed), flush=True)
    result["seconds"] = round(time.time() - started, 1)
    with open(out_path, "w") as f:
        json.dump(result, f)


def main():
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    for class_name in VARIANTS:
        if args.only and class_name not in args.only.split(","):
            continue
        run_class(class_name)


if __name__ == "__main__":
    generate.pin_hash_seed()
    main()
