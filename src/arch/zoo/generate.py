#!/usr/bin/env python3
"""Derives src/arch/zoo/transformers.json, the transformers model zoo as data,
from the library itself. Run by hand (never by CI or tests):

    python -m venv /tmp/zoo && /tmp/zoo/bin/pip install torch torchaudio scipy transformers==5.24.0 timm
    /tmp/zoo/bin/python src/arch/zoo/generate.py [--only llama,bert] [--jobs 2]

(scipy is there because the segmentation heads' losses, Mask2Former's and
EoMT's, need it to be built at all, torchaudio for the Higgs audio
tokenizer; DiNAT's natten and LayoutLMv2's detectron2 do not install from
PyPI, and COVERAGE.md says so. With no cache on the machine,
`restore_cache.py` first rebuilds it from the committed outputs, so `--only`
re-derives just the types it names; a type already in the cache is skipped,
so delete its file first. `ZOO_DEBUG=1` prints the samples of a size no
formula fits and where a class failed.)

For every model type in transformers' auto mappings and every class those
mappings name for it (the base model and its heads), and the other model
classes its modeling module exports for the same config, the script builds the
model on the `meta` device (no memory, no weights) for the default config
and for variations of the config's integer fields, and reads what
`state_dict()` holds. From those samples it derives:

- the state dict as a tree in `state_dict()` order, where a ModuleList whose
  layers are alike becomes one `repeat` with a count;
- every size and count as a formula over config fields: a sum of at most two
  products of fields with small integer powers and a rational coefficient
  (`hidden_size`, `3*hidden_size`, `num_key_value_heads*head_dim`,
  `image_size^2/patch_size^2+1`), found by search and kept only if it
  reproduces every sample exactly;
- each field's default when a config.json leaves it out, again as a formula
  when the config class computes it from other fields (`head_dim` from
  `hidden_size/num_attention_heads`);
- flags that add or remove tensors (`attention_bias`) as conditions, each
  checked flipped alone and together with the flags accepted before it; a
  size null by default (GPT-2's `n_inner`) as a size field whose default
  is the size the model then uses;
- `multiples`: sizes the model refuses unless a head count divides them;
- the kind of each Conv1D, Embedding and BatchNorm module (`"k"`);
- the fields that change the structure in a way the description cannot
  follow ("fixed": a config that changes them is refused, not guessed),
  among them the floats and the integers no variation changed a tensor
  with, tried again at other values (unvaried_fields.py: Swin's
  `mlp_ratio`, LFM2's `block_multiple_of` at 257);
- fields a config class leaves without a default the library builds
  (required.py: EsmConfig's null `vocab_size`, MinistralConfig's null
  `head_dim`): the class is derived with the fewest of them filled in,
  and a config.json must set them (`required`);
- a count field that changes the length of a list whose layers differ
  from each other once other sizes move (RT-DETR's `num_feature_levels`)
  is held at its default and the class derived again;
- keys the config class takes under an older name (config_renames.py:
  LFM2's `block_ff_dim` is its `intermediate_size`), read as it reads them;
- sizes the library rounds where a formula divides (rounded_sizes.py:
  LFM2's `int(2 * intermediate_size / 3)` rounded up to a multiple of
  256), written `ceil_to(2*intermediate_size/3,256)` where that matches
  the library, else held to the multiples the description holds at
  (`rounded`);
- layers whose kind a list of names chooses (kinds.py: Qwen3-Next's
  `layer_types`), each name's layers one subtree the list picks at any
  depth, checked against the library at other depths and orders;
- fields a sub-config written in part needs written with it
  (written_in_part.py: PaliGemma's `vision_config.vision_use_head`, which
  a `vision_config` naming only its `model_type` takes as True), with the
  composite default's values, and quotients the library clamps at 1
  (clamped.py: ConvBERT's `num_attention_heads//head_ratio`), refused
  where they come to 0;
- layers whose kind a list of layer indexes chooses (index_kinds.py: SAM's
  `global_attn_indexes`), the class derived with every layer listed and
  with none and the two bodies joined under the list;
- what from_pretrained needs: the base-model prefix, tied weights (for both
  values of `tie_word_embeddings`), non-persistent buffers and
  `_keys_to_ignore_on_load_unexpected`.

A class goes into the data only when its description reproduces held-out
samples that took no part in the derivation: random joint variations of
every size field at once. Those samples are also written, small (layer
counts cut to 1..3), to tests/fixtures/zoo/matrix.json, where `cargo test`
checks the Rust evaluator against them; the default config's state dict is
checked there by digest. Everything that fails is listed with its reason in
src/arch/zoo/COVERAGE.md.
"""

import argparse
import copy
from fractions import Fraction
import itertools
import re
import json
import signal
import multiprocessing
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from formulas import Misfit, evaluate, fit, split_names, to_int  # noqa: E402
from traced import traced_sizes  # noqa: E402
import formulas  # noqa: E402
import trees  # noqa: E402
from names import named_config_class, names_that_change_tensors  # noqa: E402
from equal_sizes import add_rules, drop_keys_if_equal, equal_size_rules  # noqa: E402
from sub_models import swap_samples  # noqa: E402
import required  # noqa: E402
import index_kinds  # noqa: E402
from divides import add_divides, divides_rules  # noqa: E402
from kinds import layer_kinds, other_kinds  # noqa: E402
from undeclared import getattr_sizes, undeclared_fields  # noqa: E402
from unvaried_fields import unvaried_fixed  # noqa: E402
import written_in_part  # noqa: E402
from written_in_part import given_with_parent  # noqa: E402
from clamped import clamped_quotients  # noqa: E402
from list_lengths import free_lengths  # noqa: E402
from rounded_sizes import apply_rounded, rounded_fields  # noqa: E402
from config_renames import renamed_keys, with_renames  # noqa: E402
from trees import align, conditional_exprs, counts_of, expand, freeze, merge, slots, trie  # noqa: E402
from facts import pretrained_facts  # noqa: E402
from assemble import CACHE, assemble, class_key, clean, digest, model_type_order, small_matrix, sub_config_default, \
    sub_config_facts  # noqa: E402


# Auto mappings whose classes become zoo classes, in the order a model type's
# classes are listed.
MAPPINGS = [
    "MODEL_MAPPING_NAMES",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
    "MODEL_FOR_CTC_MAPPING_NAMES",
    "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
    "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
    "MODEL_FOR_MASKED_IMAGE_MODELING_MAPPING_NAMES",
    "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES",
]

# The issue's named must-haves: derived first, listed first.
MUST_HAVE = (
    "bert roberta xlm-roberta distilbert deberta-v2 electra albert mpnet t5 mt5 bart mbart "
    "marian pegasus whisper wav2vec2 hubert gpt2 gpt_neox gptj opt bloom falcon llama mistral "
    "mixtral qwen2 qwen2_moe qwen3 qwen3_moe gemma gemma2 gemma3_text phi phi3 starcoder2 olmo2 "
    "vit deit beit swin convnext dinov2 clip siglip blip llava detr segformer"
).split()

# Then the most used of the rest (Hub downloads, by hand), so that a run cut
# short covers what people load; everything else follows in name order.
POPULAR = (
    "mpt codegen gpt_bigcode gpt_neo stablelm cohere cohere2 deepseek_v2 deepseek_v3 granite granitemoe "
    "olmo olmoe phimoe nemotron glm glm4 jamba mamba mamba2 rwkv recurrent_gemma gemma3 qwen2_vl "
    "qwen2_5_vl llama4_text mllama idefics3 smolvlm paligemma llava_next llava_onevision blip-2 "
    "instructblip git pix2struct trocr layoutlm layoutlmv3 lilt longformer big_bird funnel camembert "
    "flaubert xlm xlnet ernie roformer squeezebert mobilebert convbert deberta canine led longt5 umt5 "
    "mvp plbart m2m_100 fsmt prophetnet blenderbot blenderbot-small speech_to_text speecht5 "
    "wav2vec2-conformer wavlm unispeech unispeech-sat data2vec-audio data2vec-text data2vec-vision sew "
    "sew-d encodec musicgen clap audio-spectrogram-transformer vits mobilevit mobilevitv2 mobilenet_v1 "
    "mobilenet_v2 efficientnet regnet resnet levit poolformer pvt pvt_v2 cvt convnextv2 "
    "dinov2_with_registers vitdet vit_mae vit_msn yolos table-transformer conditional_detr "
    "deformable_detr rt_detr owlvit owlv2 mask2former maskformer upernet dpt glpn depth_anything sam "
    "siglip2 chinese_clip x-clip flava vilt visual_bert lxmert bridgetower videomae timesformer vivit "
    "mistral3 ministral smollm3 ernie4_5 bert-generation ibert megatron-bert nystromformer yoso "
    "rembert xmod xlm-roberta-xl modernbert jetmoe dbrx arctic exaone4 helium seed_oss hunyuan_v1_dense "
    "glm4_moe glm4v_moe granitemoehybrid falcon_h1 bamba nemotron_h lfm2 zamba2"
).split()

# Integer fields that never size a tensor (token ids, generation and
# runtime settings): not varied, to save time. A field left out here but
# irrelevant is found irrelevant by variation anyway. `max_length` is not
# one: transformers 5 configs no longer carry the generation settings, and
# the two that declare it are an audio spectrogram transformer's input
# length (its position table) and FSMT's (found irrelevant).
SKIP_INT = ("_token_id", "token_id", "min_length", "num_beams", "top_k", "chunk_size_feed_forward",
            "num_return_sequences", "no_repeat_ngram_size", "seed", "pretraining_tp")
SKIP_KEYS = {"id2label", "label2id", "task_specific_params", "rope_parameters", "rope_scaling", "quantization_config"}

JOINT_SAMPLES = 6
# How many times a joint variation that does not build, or changes the
# structure, is tried again with some fields at their defaults (repaired).
JOINT_REPAIRS = 4
HELD_OUT = 3

# Whether a config's names (strings, lists of strings, empty lists, and null
# fields that take a name) are fixed: diffusers chooses modules by name
# (`down_block_types`), so its configs set this (diffusers_models.py).
FIX_NAMES = False

# Least values of count fields, per variant (diffusers_models.py): below
# them the structure is another one the description does not hold (SD3.5
# Medium's last block would be one of its 13 dual-attention blocks). No
# variation goes below them, and the description records them (`least`),
# so that ckptcheck refuses a config below rather than build it wrongly.
LEAST = {}
# Lists of layer indices, per variant (SD3.5 Medium's
# `dual_attention_layers`): they choose which layers have which modules, so
# they are held whole, never varied as sizes, and a config that changes one
# is refused.
PINNED = set()
# Size fields a class's description holds only at their default, found by
# the check at fresh values (`FreshValueDiffers`) or as the only fields of
# a size no formula fits (`NoFormulaHeld`): the class is derived again
# with each held at its default, so a config that changes one is refused.
HELD_AT_DEFAULT = {}
# Why a name field (ResNet's `layer_type`) is fixed: names.py found another
# value of it that changes the state dict.
NAME_REASON = "a name that chooses modules: the description holds for its default only"
# The other values of each name the last derived class holds at its default
# that build and change the state dict (names.py): each top-level one gets a
# description of its own, derived with the config class defaulting to it
# (wav2vec2-large's `feat_extract_norm` "layer", ResNet-18's `layer_type`
# "basic"), at most NAME_VARIANTS values per name.
NAME_VALUES = {}
NAME_VARIANTS = 3
# Why a flag is fixed when flipping it changes the sizes of tensors both
# values have (Falcon's `multi_query` and `new_decoder_architecture`: the
# fused query/key/value projection is 3 heads wide, one query's heads and
# one key/value head, or grouped): no condition on a tensor says that, so
# the class's other value of such a top-level flag gets a description of
# its own, as a name's other values do (at most FLAG_VARIANTS per class).
# The same where a flag adds a tensor no formula of the class sizes
# (DINOv2-giant's `use_swiglu_ffn`: its gated MLP is rounded to a multiple
# of 8 from two thirds of the MLP's width).
RESIZED_BY_FLAG = ("adds or removes tensors (flipped variation differs",
                   "adds or removes tensors (no formula of the model gives")
FLAG_VARIANTS = 3


# ---------------------------------------------------------------------------
# Config fields as dotted paths
# ---------------------------------------------------------------------------

def error_line(error):
    """An exception as COVERAGE.md's reason: its type and first line that
    says something (transformers' missing-library errors open with a blank
    line, which would leave the reason saying nothing of the library)."""
    said = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {said[:160]}"


def flatten(d, prefix="", ints=None, bools=None, lists=None):
    ints = {} if ints is None else ints
    bools = {} if bools is None else bools
    lists = {} if lists is None else lists
    for key, value in d.items():
        name = prefix + str(key)
        if key in SKIP_KEYS or str(key).startswith("_"):
            continue
        if isinstance(value, bool):
            bools[name] = value
        elif isinstance(value, int):
            if not any(s in name for s in SKIP_INT):
                ints[name] = value
        elif isinstance(value, dict):
            flatten(value, name + ".", ints, bools, lists)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            lists[name] = len(value)
            for i, v in enumerate(value):
                ints[f"{name}.{i}"] = v
    return ints, bools, lists


def null_fields(d, prefix=""):
    out = []
    for key, value in d.items():
        name = prefix + str(key)
        if key in SKIP_KEYS or str(key).startswith("_") or any(s in name for s in SKIP_INT):
            continue
        if value is None and not name.endswith(("dtype", "problem_type", "architectures")):
            out.append(name)
        elif isinstance(value, dict):
            out.extend(null_fields(value, name + "."))
    return out


def set_path(d, path, value):
    parts = path.split(".")
    node = d
    for i, part in enumerate(parts[:-1]):
        nxt = node[int(part)] if isinstance(node, list) else node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if isinstance(nxt, tuple):
            nxt = list(nxt)
            if isinstance(node, list):
                node[int(part)] = nxt
            else:
                node[part] = nxt
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def labels(n):
    return {str(i): f"LABEL_{i}" for i in range(n)}


def without_path(d, path):
    """A copy of config dict `d` without the field at `path`."""
    d = copy.deepcopy(d)
    parts = path.split(".")
    node = d
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return d
    if isinstance(node, dict):
        node.pop(parts[-1], None)
    return d


def value_when_null(config_class, model_class, d, field, listing):
    """The size a field that is null in `d` stands for (GPT-2's `n_inner`
    null means 4*n_embd): the one of `listing`'s sizes that, set, gives the
    same state dict, else one of those sizes over a head count of the
    config (Mixtral's `head_dim`, null meaning hidden_size //
    num_attention_heads, is 128 wide in no tensor: its projections are
    4096 and 1024 wide); None when setting it changes nothing or no size
    does."""
    probe = None
    for new in (64, 8):
        try:
            probe = sample(config_class, model_class, with_field(d, field, new))[0]
            break
        except Exception:
            continue
    if probe is None or probe.listing == listing:
        return None
    sizes = sorted({n for _, shape, _ in listing for n in shape if n > 1})
    heads = sorted({v for f, v in flatten(d)[0].items() if "head" in f.rpartition(".")[2] and v > 1})
    quotients = sorted({n // h for n in sizes for h in heads if n % h == 0} - set(sizes) - {1})
    for size in sizes + quotients:
        try:
            got = sample(config_class, model_class, with_field(d, field, size))[0]
        except Exception:
            continue
        if got.listing == listing:
            return size
    return None


def with_field(d, path, value):
    d = copy.deepcopy(d)
    set_path(d, path, value)
    return d


# ---------------------------------------------------------------------------
# Samples: a config dict -> the model's state dict on the meta device
# ---------------------------------------------------------------------------

def key_patterns(listing):
    """The keys of a listing with each layer index written `#`."""
    return {re.sub(r"\.\d+(?=\.|$)", ".#", key) for key, _, _ in listing}


def add_names(desc, held, by_name, reasons):
    """names.py's findings into a description: each name held at its
    default is fixed (with `NAME_REASON` in `reasons`), each field a name
    gives gets `by_name`. Returns how many were added."""
    added = 0
    for field, default in held.items():
        if field not in desc["fixed"]:
            desc["fixed"][field] = default
            reasons[field] = NAME_REASON
            added += 1
    for field, rule in by_name.items():
        if field in desc["fields"] and "by_name" not in desc["fields"][field]:
            desc["fields"][field]["by_name"] = rule
            added += 1
    return added


def sinusoid_table(n_position, d_hid):
    """VideoMAE's `get_sinusoid_encoding_table` in whole arrays: the same
    float64 operations on the same numbers, so the same table. The
    library's builds it one number at a time in Python (6 s a sample at
    the default 1568 patches, 18 s at three times the image size), so a
    derivation of VideoMAE ran past its time limit; the table is a plain
    attribute, not in the state dict."""
    import numpy as np
    import torch
    position = np.arange(n_position, dtype=np.float64)[:, None]
    hidden = np.arange(d_hid)[None, :]
    table = position / np.power(10000, 2 * (hidden // 2) / d_hid)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.FloatTensor(table).unsqueeze(0)


# Library functions that compute a tensor outside the state dict one
# number at a time, and their whole-array equivalents, swapped in while a
# class is built (module, name): function.
WHOLE_ARRAY_EQUIVALENTS = {
    ("transformers.models.videomae.modeling_videomae", "get_sinusoid_encoding_table"): sinusoid_table,
}


def build(config_class, model_class, config_dict):
    import torch
    for (module_name, name), equivalent in WHOLE_ARRAY_EQUIVALENTS.items():
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, name, None) is not equivalent:
            setattr(module, name, equivalent)
    config = config_class.from_dict(copy.deepcopy(config_dict))
    with torch.device("meta"):
        model = model_class(config)
    listing = [(k, [int(s) for s in v.shape], str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    return config, model, listing


class Sample:
    def __init__(self, env, listing):
        self.env = env  # resolved int fields of the config (and num_labels)
        self.listing = listing


def sample(config_class, model_class, config_dict):
    config, model, listing = build(config_class, model_class, config_dict)
    resolved = config.to_dict()
    ints, _, _ = flatten(resolved)
    ints["num_labels"] = config.num_labels
    return Sample(ints, listing), config, model


# ---------------------------------------------------------------------------
# The state dict as a tree, aligned across samples
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Formulas: a sum of at most two monomials (and a constant)
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# One class
# ---------------------------------------------------------------------------

class FreshValueDiffers(Misfit):
    """The description differs from the library with one size field alone
    at a value no variation drew: the field holds only at its default."""

    def __init__(self, field, value, first):
        super().__init__(f"with {field} alone at {value} the description differs ({first})")
        self.field = field


class ListCountHeld(FreshValueDiffers):
    """Joint variations fail to align because a count field changes the
    length of a list whose layers differ from each other once other sizes
    move (RT-DETR's `num_feature_levels`: past the backbone's levels its
    input projections are 3x3 convolutions from the last level, then from
    `d_model`): the field holds only at its default."""

    def __init__(self, field, where):
        Misfit.__init__(self, f"it changes how many layers {where.rstrip('.')} has, and those layers differ "
                              "from each other where other sizes move")
        self.field = field


class NoFormulaHeld(Misfit):
    """No formula fits a size that only one or two fields change
    (MobileNetV2's `depth_divisible_by` rounds each width to its nearest
    multiple, and up again where that loses a tenth; CLVP's rotary table
    is max(projection_dim // (2 * heads), 32) / 2 wide): those fields hold
    only at their defaults, and the class is derived again. The rest of the
    class is still described, and a config that moves one of them is
    refused by name. Where the size still has no formula with them held
    (RegNet's groups follow each width by a floor of `groups_width`), the
    class fails as before."""

    def __init__(self, fields):
        super().__init__(f"no formula for a size that depends on {', '.join(fields)}")
        self.fields = list(fields)


# At most this many fields a class holds at their defaults; past it the
# class is listed as not described.
MOST_HELD = 4


def list_length(listing, where):
    pattern = re.compile(re.escape(where) + r"(\d+)\.")
    return len({m.group(1) for k, _, _ in listing for m in [pattern.match(k)] if m})


def fresh_values(field, value):
    """Values no variation draws for a field at `value` (the joint ones
    draw half, the value, twice and one more; the single ones twice, one
    more, three and four times and two more): five times, six times, three
    or four more; a layer count or a small number only steps."""
    if value <= 0:
        return [3, 5]
    if LAYER_FIELD.search(field) or value <= 3:
        return [value + 3, value + 4]
    return [value * 5, value * 6, value + 3, value + 4]


def zero_refused(desc, config_dict):
    """The field of `nonzero` (unvaried_fields.py) a config dict sets to 0
    while none of its `nonzero_unless` floats is above 0, which the Rust
    side refuses; None where none is."""
    unless = desc.get("nonzero_unless", {})
    return next((field for field in desc.get("nonzero", []) if read_field(config_dict, field) == 0
                 and not any(read_field(config_dict, other) not in (None, 0) for other in unless.get(field, []))),
                None)


def refused_by(desc, env):
    """Why the Rust side refuses a config the Python twin would expand: a
    size a head count must divide, a count under its least, a size the
    library rounds off the multiples the description holds at; None when
    it builds it."""
    for size, heads in desc.get("multiples", []) + desc.get("divides", []):
        s, h = env.get(size), env.get(heads)
        if s is not None and h and s % h:
            return f"{size} {s} not a multiple of {heads} {h}"
    for field, least in desc.get("least", {}).items():
        if env.get(field) is not None and env[field] < least:
            return f"{field} under {least}"
    for field, multiple in desc.get("rounded", {}).items():
        if env.get(field) is not None and env[field] % multiple:
            return f"{field} {env[field]} not a multiple of {multiple}"
    for dividend, divisor in desc.get("clamped", []):
        # A quotient the library clamps at 1 (clamped.py: ConvBERT's heads).
        if env.get(dividend) is not None and env.get(divisor) and env[dividend] // env[divisor] == 0:
            return f"{dividend}//{divisor} comes to 0"
    return None


def plain_dict_field(config, path):
    """Whether `path` in `config` (a config object) is a plain dict, not a
    sub-config: transformers keeps it as written, so a key it leaves out is
    missing, not defaulted."""
    value = config
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = getattr(value, part, None)
    return type(value) is dict


def with_keys_read_back(model_type, written, default):
    """`written` (a sub-config dict as a config.json holds it), where the
    config class cannot read it, with the first key of `default` added back
    that it reads with (one key; else as it was), a key its own saved dict
    always writes: TimmWrapperConfig
    writes `num_classes` in every saved dict and reads no label count
    without it (EdgeTAM's `backbone_config`)."""
    from transformers.models.auto import configuration_auto
    try:
        # A lazy mapping: `.get` finds nothing it has not loaded yet.
        config_class = configuration_auto.CONFIG_MAPPING[model_type]
    except KeyError:
        return written

    def reads(d):
        try:
            config_class.from_dict(copy.deepcopy(d))
            return True
        except Exception:
            return False
    if reads(written):
        return written
    for key, value in default.items():
        if key not in written and not key.startswith("_") and reads(dict(written, **{key: value})):
            return dict(written, **{key: copy.deepcopy(value)})
    return written


def vary(value, rng=None):
    if rng is None:
        return [value * 2, value + 1, value * 3] if value > 0 else [1, 2]
    choices = [value // 2 if value % 2 == 0 and value >= 2 else value, value, value * 2]
    if value <= 8:
        # Small counts (layers) also step by one, so a count's formula sees
        # three values or more.
        choices.append(value + 1)
    return [rng.choice(choices)]


# The key in derive's `rebase` that says the base moves a size off another
# it equals by default (its default is checked once the keys that exist
# only while the two differ are known).
EQUAL_SIZES_REBASE = "__equal_sizes__"

LAYER_FIELD = re.compile(r"(^|[._])(num_(hidden_)?layers|n_layers?|(encoder|decoder)_layers|num_blocks|depth)$")


def module_kind(module):
    """The kind of a module whose layout the check needs (a PEFT adapter's
    shapes, BatchNorm's `num_batches_tracked`): transformers' `Conv1D`
    (weight `[in, out]`), `nn.Embedding`, BatchNorm; `nn.Linear` is what a
    2-D weight means unmarked."""
    import torch
    from transformers.pytorch_utils import Conv1D
    if isinstance(module, Conv1D):
        return "Conv1D"
    if isinstance(module, torch.nn.Embedding):
        return "Embedding"
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
        return "BatchNorm"
    return None


def mark_kinds(tree, model, env):
    """Each node of `tree` that is a module of a marked kind in `model`
    (built from a config the tree describes, whose fields `env` holds)
    gets `"k": kind`."""
    for name, module in model.named_modules():
        kind = module_kind(module)
        if kind is None or not name:
            continue
        try:
            node = tree_node(tree, model, name, env)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            node = None  # a path the tree does not walk: left unmarked
        if node is not None:
            node["k"] = kind


def tree_node(tree, model, name, env):
    """The node of `tree` that holds module `name` of `model` (built from
    `env`), or None."""
    node, path = tree, []
    for part in name.split("."):
        if "split" in node:
            node = node["body"] if int(part) < trees.split_of(node, env) else node["rest"]
        elif "repeat" in node or "items" in node or "last" in node:
            index = int(part)
            # A list of layers, or a module whose children are named 0, 1,
            # ... (UperNet's pyramid pooling).
            length = len(model.get_submodule(".".join(path))._modules)
            first, last = node.get("items", []), node.get("last", [])
            if index < len(first):
                node = first[index]
            elif last and index >= length - len(last):
                node = last[index - (length - len(last))]
            else:
                node = node.get("body")
        else:
            node = dict(node.get("c", [])).get(part)
        path.append(part)
        if node is None:
            return None
    return node


def least_layers(config_class, model_class, config_dict, field, value):
    """The least value of a layer count, at or under `value`, from which
    the model builds with every larger one up to `value`: counting down
    from `value` until a build fails."""
    least = value
    for layers in range(value - 1, 1, -1):
        trial = copy.deepcopy(config_dict)
        set_path(trial, field, layers)
        try:
            build(config_class, model_class, trial)
        except Exception:
            break
        least = layers
    return least


def cut_layers(d):
    """`d` with its layer counts at 1."""
    d = copy.deepcopy(d)
    for field, value in flatten(d)[0].items():
        if LAYER_FIELD.search(field) and value > 1:
            set_path(d, field, 1)
    return d


HEADS_FIELD = re.compile(r"(^|[._])(num_(attention_|key_value_|kv_)?heads|n_heads?|(encoder|decoder)_attention_heads)$")


def multiples(config_class, model_class, default_dict, ints, relevant):
    """`[size, heads]` pairs where the model refuses a size that is not a
    multiple of a head count (BERT: "The hidden size (30) is not a multiple
    of the number of attention heads (4)"), though the head count may size
    no tensor: the size one and two past its default fails to build, one
    head count past it builds, and one past it builds with a single head."""
    found = []
    for heads in ints:
        if not HEADS_FIELD.search(heads) or ints[heads] < 3:
            continue
        h = ints[heads]
        for size in relevant:
            if size == heads or HEADS_FIELD.search(size) or LAYER_FIELD.search(size) or ints[size] % h:
                continue
            v = ints[size]
            builds = []
            for new in (v + 1, v + 2, v + h):
                try:
                    sample(config_class, model_class, with_field(default_dict, size, new))
                    builds.append(True)
                except Exception:
                    builds.append(False)
            if builds == [False, False, True]:
                # With a single head the odd size builds: the head count was
                # what refused it (not another count tied to it).
                try:
                    sample(config_class, model_class, with_field(with_field(default_dict, size, v + 1), heads, 1))
                    found.append([size, heads])
                except Exception:
                    pass
    return found


# Samples built again with their arithmetic traced, per size no search
# fits: the first one's recorded formulas are checked against every
# sample, the second's only where none held (a composite model takes
# seconds to build, and most such sizes have their formula in the first).
TRACED_SAMPLES = 2


def traced_formula(config_class, model_class, sized, changed, traces):
    """The formula of a size no search fits, read off the library's
    arithmetic (traced.py): of the formulas a traced build of a sample
    recorded for that sample's size, the shortest that reads only fields
    that change the size (`changed`, as a fitted formula does) and gives
    the size in every sample. `sized`: [(sample, size)]; `traces` caches
    each sample's traced sizes by its id."""
    tried = set()
    for s, size in sized[:TRACED_SAMPLES]:
        if id(s) not in traces:
            traces[id(s)] = traced_sizes(config_class, model_class, s.config_dict, s.listing)
        found = [f for f in traces[id(s)].get(size, []) if f not in tried and set(split_names(f)) <= set(changed)]
        tried.update(found)
        for formula in found:
            try:
                if all(evaluate(formula, x.env) == value for x, value in sized):
                    return formula
            except (KeyError, ZeroDivisionError, Misfit):
                continue
    return None


def derive(model_type, config_class, model_class, rng, uncut=frozenset(), fit_joints=JOINT_SAMPLES, rebase=None):
    true_default_dict = config_class().to_dict()
    true_default, config0, model0 = sample(config_class, model_class, true_default_dict)
    class_default_dict = true_default_dict  # the class's own, per-layer lists included
    all_lists = per_layer_lists(class_default_dict)
    # A list with a name per layer (`layer_types`, `mlp_layer_types`) that
    # the config class derives from other fields when config.json leaves it
    # out is left out of every variation, so that the fields it follows
    # (`first_k_dense_replace`) change the model as they do in a config.json
    # without it; a list the class does not derive (the model differs
    # without it) stays.
    derived_lists = []
    for path in all_lists if not KEEP_LISTS[0] else []:
        trial = without_path(true_default_dict, path)
        try:
            if sample(config_class, model_class, trial)[0].listing == true_default.listing:
                true_default_dict = trial
                derived_lists.append(path)
        except Exception:
            pass
    # Variations start from the default with layer counts cut to 2 (where
    # the model still builds): the formulas are the same, the models ten
    # times faster to build.
    # A cut keeps every kind of key the default has: DeepSeek-V3's first
    # three layers are dense and the rest have experts, so its layers are
    # cut to 4, not 2.
    default_dict = true_default_dict
    cut = set()
    least = dict(LEAST)
    default_patterns = key_patterns(true_default.listing)
    for field, value in flatten(true_default_dict)[0].items():
        if not (LAYER_FIELD.search(field) and value > 2 and field not in uncut and field not in LEAST):
            continue
        chosen = None
        for layers in range(2, min(value, 9) if trees.ALLOW_SPLIT else 3):
            trial = copy.deepcopy(default_dict)
            set_path(trial, field, layers)
            try:
                _, _, listing = build(config_class, model_class, trial)
            except Exception:
                if layers == 2:
                    # A layer count the config refuses below some value
                    # (Depth Anything's DINOv2 backbone takes features from
                    # its layers 9 to 12): the least that builds is
                    # recorded, as diffusers' least counts are, and no
                    # variation goes below it.
                    least[field] = least_layers(config_class, model_class, default_dict, field, value)
                break
            if chosen is None:
                chosen = trial  # 2 layers, as before, when no cut keeps them all
            if key_patterns(listing) == default_patterns:
                chosen = trial
                break
        if chosen is not None:
            default_dict = chosen
            cut.add(field)
    for field, value in (rebase or {}).items():
        if field != EQUAL_SIZES_REBASE:
            default_dict = with_field(default_dict, field, value)
    base, _, _ = sample(config_class, model_class, default_dict)
    base.config_dict = default_dict
    ints, bools, lists = flatten(default_dict)
    ints["num_labels"] = config0.num_labels
    samples = [base]
    singles = {}
    fixed = {}
    for field in list(ints):
        if field.split(".")[0] in PINNED:
            del ints[field]
    for field in PINNED:
        fixed[field] = "chooses layers by index: the description holds for this list only"
    popped_defaults = {}
    flips = {}
    irrelevant = []
    # Values a field does not build with alone (SqueezeBERT's 4 groups of
    # convolution channels plus one: 768 channels do not split into 5),
    # seen while varying one field at a time; `repaired` asks for more.
    # (field, value): whether it builds.
    builds_alone_seen = {}

    # A saved config.json also holds, in a sub-config, each field that
    # differs from the sub-config class's own default (LLaVA's CLIP tower
    # has 16 heads where CLIPVisionConfig has 12, and 1024 is no multiple of
    # 12); the size fields a variation draws stay out of it, to be varied or
    # to take their default, once they are known.
    sizes_left_out = set()
    # with_keys_read_back's answer for each sub-config as written: with_parent
    # writes the same one for every held-out variation, and each try builds
    # a config.
    read_back = {}

    def with_override(d, field, value):
        if field != "num_labels":
            return with_field(d, field, value)
        d = copy.deepcopy(d)
        d["id2label"] = labels(value)
        d.pop("label2id", None)
        d["num_labels"] = value
        return d

    def with_parent(d, field):
        """`d` with what a saved config.json holds around `field` when `d`
        leaves its parent out: a list copied whole, and a sub-config's
        names (its `model_type`, by which transformers picks the
        sub-config's class, and its other text and list fields: DETR's
        `backbone_config` names its timm model, `resnet50`, and the stages
        it takes); its sizes stay out, to be varied or defaulted. The
        parent's own parent first: a list inside a sub-config (ViTPose's
        `backbone_config.image_size`) needs the sub-config's `model_type`
        too."""
        parent = field.rsplit(".", 1)[0]
        if field == parent or read_field(d, parent) is not None:
            return d
        d = with_parent(d, parent)
        if read_field(d, parent) is not None:
            return d
        default = read_field(default_dict, parent)
        if isinstance(default, list) or plain_dict_field(config0, parent):
            # A plain dict the model indexes key by key (FastSpeech2-Conformer's
            # `encoder_config`) is whole in every saved config.json, as a list is.
            d = copy.deepcopy(d)
            set_path(d, parent, copy.deepcopy(default))
        elif isinstance(default, dict) and isinstance(default.get("model_type"), str):
            own_default = sub_config_default(default["model_type"])
            d = copy.deepcopy(d)
            written = {k: copy.deepcopy(v) for k, v in default.items()
                       if isinstance(v, (str, list)) or (
                           f"{parent}.{k}" not in sizes_left_out and k in own_default
                           and v != own_default[k] and not k.startswith("_"))}
            key = (parent, json.dumps(written, sort_keys=True, default=str))
            if key not in read_back:
                read_back[key] = with_keys_read_back(default["model_type"], written, default)
            set_path(d, parent, copy.deepcopy(read_back[key]))
        return d

    def minimal(chosen):
        """A config dict with only `chosen` set (lists copied whole, sub-configs
        with their `model_type`), for configs whose full dict pins derived
        values (`layer_types` of `num_hidden_layers` entries)."""
        d = {}
        for field, value in chosen.items():
            d = with_override(with_parent(d, field), field, value)
        return d

    # A field null by default that sizes tensors when set (GPT-2's
    # `n_inner`): a size field like the others, whose default (config.json
    # leaves it out or null) is the size the model then uses, found among
    # the default model's sizes and fitted as a formula like any default.
    nullable = {}
    for field in null_fields(default_dict) if NULLABLE[0] else []:
        value = value_when_null(config_class, model_class, default_dict, field, base.listing)
        if value is not None:
            nullable[field] = value
            ints[field] = value
            base.env[field] = value
            NULLABLE[1] = True
            default_dict = with_field(default_dict, field, value)

    # A size the modeling code reads through `getattr(config, "head_dim",
    # hidden_size // num_attention_heads)` though the config class neither
    # declares nor saves it (Qwen3-MoE, GLM-4.5): a config.json that sets it
    # builds other sizes (Qwen3-30B-A3B: 32 heads of 128 in 2048 wide). It
    # is varied like a declared field, starting at the value its getattr
    # default gives, and that formula becomes its default, fitted and then
    # checked on held-out variations that leave it out, as a null field's.
    undeclared = {}
    for field, formula in (getattr_sizes(config_class, model_class, ints) if UNDECLARED[0] else {}).items():
        try:
            value = evaluate(formula, ints)
        except (KeyError, ZeroDivisionError):
            continue
        if value.denominator != 1 or value < 1:
            continue
        undeclared[field] = formula
        ints[field] = int(value)
        base.env[field] = int(value)
        UNDECLARED[1] = sorted(set(UNDECLARED[1] or []) | {field})
        default_dict = with_field(default_dict, field, int(value))

    # One field at a time.
    for field, value in ints.items():
        if field in HELD_AT_DEFAULT:
            fixed[field] = HELD_AT_DEFAULT[field]
            continue
        # A value another size has may change the structure only because the
        # two are then equal (ELECTRA's `embeddings_project` exists while
        # `embedding_size` differs from `hidden_size`; 128 doubled is 256,
        # the hidden size): the next value is tried, and equal_sizes.py
        # checks equal sizes on their own.
        others = {v for g, v in ints.items() if g != field}
        got, why = None, None
        for new in vary(value) + ["down"]:
            if new == "down":
                if why is not None:
                    break
                # No larger value builds (RecurrentGemma's key-value heads
                # may not exceed its 10 query heads): smaller ones, so that
                # a size they decide is seen to change.
                downs = [v for v in (value // 2 if value % 2 == 0 else None, value - 1) if v and v > 0]
                if not downs:
                    break
                new = downs[0]
            got = None
            for d in (with_override(default_dict, field, new), minimal({field: new})):
                try:
                    got, _, _ = sample(config_class, model_class, d)
                    got.config_dict = d
                    break
                except Exception:
                    continue
            if got is None:
                builds_alone_seen[field, new] = False
                continue
            try:
                align([trie(base.listing), trie(got.listing)], "")
                why = None
                break
            except Misfit as e:
                why = e
                if new not in others:
                    break
        if got is None:
            fixed[field] = "the model does not build when it changes"
            continue
        if got.listing == base.listing:
            irrelevant.append(field)
            continue
        if why is not None:
            fixed[field] = f"changes the structure: {why}"
            continue
        singles[field] = len(samples)
        samples.append(got)
    if rebase is None:
        # A size whose default equals another's, where a module exists only
        # while the two differ (OPT's `project_in` while
        # `word_embed_proj_dim` differs from `hidden_size`, both 768 by
        # default): every value tried changes the structure, and the field
        # would be fixed (a 1.3B OPT refused). The variations then start
        # from a base where the two differ (the defaults stay the
        # library's), and equal_size_rules below finds the keys that exist
        # only while they differ. Where that derivation fails, the field
        # stays fixed.
        for field, why in list(fixed.items()):
            value = ints.get(field)
            if not str(why).startswith("changes the structure") or not any(
                    g != field and v == value for g, v in ints.items()):
                continue
            for new in vary(value):
                if new in ints.values():
                    continue
                try:
                    sample(config_class, model_class, with_override(default_dict, field, new))
                except Exception:
                    continue
                partners = [g for g, v in ints.items() if g != field and v == value]
                try:
                    return derive(model_type, config_class, model_class, rng, uncut, fit_joints,
                                  {EQUAL_SIZES_REBASE: (field, partners), field: new})
                except Misfit:
                    break
    # Two more values of each field that changes tensors (the first two of
    # three and four times the default, one and two more that build), so
    # that every size sees four values of a field: a size seen at two
    # values fits any formula with two coefficients (Swin's window of 7 and
    # 14 fitted `80*window_size-391` for `(2*window_size-1)**2`);
    # formulas.confirmed keeps a formula only where its samples pin it.
    # Multiples first: they keep what divides the default (a ResNet stage's
    # width over its bottleneck's 4), as released configs do.
    more_singles = {}
    for field in list(singles):
        value, used = ints[field], read_field(samples[singles[field]].config_dict, field)
        # Smaller values last, for a field whose larger ones do not build.
        for new in (value * 3, value * 4, value + 1, value + 2, value - 1, value - 2):
            if new in (value, used) or new < 1 or len(more_singles.get(field, [])) == 2:
                continue
            built = False
            for d in (with_override(default_dict, field, new), minimal({field: new})):
                try:
                    got, _, _ = sample(config_class, model_class, d)
                    built = True
                    align([trie(base.listing), trie(got.listing)], "")
                except Exception:
                    continue
                got.config_dict = d
                more_singles.setdefault(field, []).append(len(samples))
                samples.append(got)
                break
            if not built:
                builds_alone_seen[field, new] = False

    def held_where_it_changes(fields, base_sample, config_with, reason):
        """Each of `fields` (irrelevant so far) tried larger and smaller
        (an end index of 27 at 28 layers matters at 8 only below 7) in
        `config_with(field, value)`: one that changes tensors from
        `base_sample` there holds only at its default, for `reason`."""
        for field in fields:
            value = ints[field]
            for new in (vary(value)[0], value // 4 if value >= 4 else value + 1):
                try:
                    got = sample(config_class, model_class, config_with(field, new))[0]
                except Exception:
                    continue
                if got.listing != base_sample.listing:
                    irrelevant.remove(field)
                    fixed[field] = reason
                    break

    if cut and irrelevant:
        # A field that changes nothing at the cut layer count may change the
        # layers past it (Ernie 4.5 MoE's `moe_layer_end_index`: layers past
        # it are dense again): each is tried again with 8 layers, and one
        # that changes tensors there holds only at its default.
        deep = default_dict
        for field in cut:
            deep = with_field(deep, field, min(8, read_field(true_default_dict, field)))
        try:
            deep_base = sample(config_class, model_class, deep)[0]
        except Exception:
            deep_base = None
        if deep_base is not None:
            held_where_it_changes(list(irrelevant), deep_base, lambda field, new: with_override(deep, field, new),
                                  "changes tensors only past the first layers")
    small = {f: read_field(default_dict, f) for f in cut}

    def unlisted(chosen):
        """`minimal(chosen)` without any per-layer name list, as a
        config.json may leave them all out."""
        d = minimal(chosen)
        for path in all_lists:
            d = without_path(d, path)
        return d

    if per_layer_lists(true_default_dict) and irrelevant:
        # A list with a name per layer that the config derives from a field
        # (GLM-MoE-DSA's `mlp_layer_types` from `first_k_dense_replace`,
        # Zamba's `layers_block_type` from `attn_layer_period`) pins the
        # model when the whole dict is given: the field changes nothing
        # there, but does in a config.json that leaves the list out. Each
        # such field is tried again without the lists, at any depth; one
        # that changes tensors there holds only at its default.
        try:
            plain = sample(config_class, model_class, unlisted(small))[0]
        except Exception:
            plain = None
        if plain is not None:
            held_where_it_changes([f for f in irrelevant if f != "num_labels"], plain,
                                  lambda field, new: unlisted(dict(small, **{field: new})),
                                  "changes tensors when config.json leaves out the lists it derives")
    popped = popped_fields(config_class, true_default_dict)
    if popped:
        # A field the config class takes from its kwargs without storing it
        # (AXK1's `first_k_dense_replace`, Qwen3-Next's
        # `full_attention_interval`: they derive the per-layer lists) is in
        # no variation, yet a config.json may set it: one that changes
        # tensors, with the lists left out, holds only at its default.
        try:
            plain = sample(config_class, model_class, unlisted(small))[0]
        except Exception:
            plain = None
        for path, value in popped.items() if plain is not None else []:
            for new in (vary(value)[0], value // 4 if value >= 4 else value + 1):
                try:
                    got = sample(config_class, model_class, with_field(unlisted(small), path, new))[0]
                except Exception:
                    continue
                if got.listing != plain.listing:
                    fixed[path] = "changes tensors, and the config class does not keep it"
                    popped_defaults[path] = value
                    break
    for field in null_fields(default_dict):
        # A field that is null by default (`head_dim`, the model computes it)
        # but sizes tensors when set: configs that set it are refused.
        built = False
        # A number, or (Bamba's `attn_layer_indices`: those layers are
        # attention, the rest Mamba) a list of layer indices where no
        # number builds.
        for new in (64, 8, [1], [0]):
            try:
                s, _, _ = sample(config_class, model_class, with_override(default_dict, field, new))
            except Exception:
                continue
            built = True
            if s.listing != base.listing:
                fixed[field] = ("changes tensors when set (a list of layers), and is null by default"
                                if isinstance(new, list) else "sizes tensors when set, and is null by default")
            break
        if not built and FIX_NAMES:
            # Null by default and not a number when set (`class_embed_type`):
            # it names modules, so a config that sets it is refused.
            fixed[field] = "names modules when set, and is null by default"
    if FIX_NAMES:
        for field, value in default_dict.items():
            if field.startswith("_") or field in fixed or re.search(r"(^|_)act(_|$)|activation", field):
                continue
            names = isinstance(value, str) or (
                isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))
            if names:
                # A name or a list of names (`down_block_types`) chooses
                # modules: the description holds for this value only.
                fixed[field] = "names modules: the description holds for this value only"
    quiet = []  # flags whose flip alone changes no tensor (`is_decoder`)
    unbuilt = []
    for field, value in bools.items():
        try:
            s, _, _ = sample(config_class, model_class, with_override(default_dict, field, not value))
        except Exception:
            unbuilt.append(field)
            continue
        if s.listing != base.listing:
            flips[field] = s
        else:
            quiet.append(field)
    companions = {}
    for field in unbuilt:
        # A flag that builds only with another flipped too (BERT's
        # `add_cross_attention` wants `is_decoder`): that other one changes
        # no tensor by itself, so it is flipped alongside.
        for other in quiet:
            try:
                s, _, _ = sample(config_class, model_class,
                                 with_override(with_override(default_dict, field, not bools[field]),
                                               other, not bools[other]))
            except Exception:
                continue
            if s.listing != base.listing:
                flips[field] = s
                companions[field] = other
            break
        else:
            fixed[field] = "the model does not build when it flips"
    if cut & set(fixed):
        # A layer count that cannot change (BLIP-2's Q-Former alternates
        # cross-attention layers) holds only at its default: derive again
        # with that count uncut.
        return derive(model_type, config_class, model_class, rng, uncut | (cut & set(fixed)), fit_joints, rebase)
    for field, i in singles.items() if trees.ALLOW_SPLIT and rebase is None else []:
        # The default has one kind of layer only where a variation has two
        # (DeepSeek-V2's `first_k_dense_replace` is 0, all layers experts;
        # its releases keep one dense layer): the kind the default lacks
        # would be fitted on few samples, so the variations start from
        # that variation instead (the defaults stay the library's).
        try:
            pair = align([trie(base.listing), trie(samples[i].listing)], "")
        except Misfit:
            continue
        if any((0 in slot.bound or slot.values.get(0) == 0) and 1 not in slot.bound and slot.values.get(1, 0) > 0
               for slot in trees.split_slots(pair)):
            value = read_field(samples[i].config_dict, field)
            if value is not None:
                return derive(model_type, config_class, model_class, rng, uncut, fit_joints, {field: value})
    relevant = list(singles)
    sizes_left_out.update(relevant)
    if os.environ.get("ZOO_DEBUG"):
        print("DEBUG fields", model_type, model_class.__name__, "varied:", relevant, "held:", fixed, file=sys.stderr)

    def joint(rng, small):
        chosen = {}
        for field in relevant:
            v = ints[field]
            new = vary(v, rng)[0]
            if small is not None and field in small:
                new = rng.randint(1, 3)
            if field in least:
                new = max(new, least[field] + (new % 3 if small is not None and field in small else 0))
            chosen[field] = new
        moved, partners = (rebase or {}).get(EQUAL_SIZES_REBASE, (None, []))
        if moved in chosen and any(chosen.get(p) == chosen[moved] for p in partners):
            # From a base where two sizes differ, they differ in every
            # variation too: equal ones would lack the keys the base has.
            while any(chosen.get(p) == chosen[moved] for p in partners):
                chosen[moved] *= 3
        return joint_dict(chosen, small), chosen

    def joint_dict(chosen, small):
        # Fitting varies the full default dict (every field explicit, so a
        # formula names the field that really sizes a tensor); held-out
        # samples vary an empty dict, as a saved config.json leaves defaults
        # out, which also tests the default formulas.
        d = default_dict if small is None else {}
        for field, value in chosen.items():
            if small is not None:
                d = with_parent(d, field)
            d = with_override(d, field, value)
        return d

    def builds_alone(field, value):
        """Whether the model builds with `field` at `value` and every other
        field at its default (as the one-field variations above build it)."""
        if (field, value) not in builds_alone_seen:
            builds_alone_seen[field, value] = False
            for d in (with_override(default_dict, field, value), minimal({field: value})):
                try:
                    sample(config_class, model_class, d)
                    builds_alone_seen[field, value] = True
                    break
                except Exception:
                    continue
        return builds_alone_seen[field, value]

    def repaired(chosen, error, small):
        """`chosen` with some fields back at their defaults, after `error`;
        None where nothing is left to put back. Each field was also drawn
        alone, so a joint variation that keeps some of its draws still fits
        products.

        A refusal: first the fields drawn at a value they do not build with
        alone ("in_channels must be divisible by groups"); else the fields
        set to one of the numbers it names, one number at a time, drawn
        ("The hidden size (90) is not a multiple of the number of attention
        heads (7)": Swin2SR's per-stage heads drawn 7, or its width halved
        while the heads doubled). Other structure: the values drawn below
        their defaults (no single variation drew one), else half the
        changed fields, drawn, and a held-out variation's small layer
        counts last (Nemotron ASR's convolutions number the log of its
        subsampling factor, drawn 1 to 3)."""
        if isinstance(error, Misfit):
            changed = sorted(f for f, v in chosen.items() if v != ints[f] and f not in (small or ()))
            # A small count below its default can leave a list with no layer
            # (Janus's aligner has depth - 1 hidden layers), so the module
            # is missing, not resized: such counts go back with the values
            # drawn below their defaults.
            emptied = ([f for f in sorted(small or ()) if chosen.get(f, ints.get(f)) < ints.get(f, 0)]
                       if str(error).startswith("modules under ") else [])
            back = ([f for f in changed if chosen[f] < ints[f]] + emptied or rng.sample(changed, (len(changed) + 1) // 2)
                    or [f for f in small or () if chosen.get(f, ints.get(f)) != ints.get(f)])
            return {f: (ints[f] if f in back else v) for f, v in chosen.items()} if back else None
        # The fields drawn at a value they do not build with alone go back
        # first, all at once: a refusal names one of them at a time
        # (FastSpeech2-Conformer's nine kernel sizes must each be odd).
        back = [f for f, v in sorted(chosen.items()) if v != ints[f] and f not in (small or ())
                and not builds_alone(f, v)]
        if back:
            return {f: (ints[f] if f in back else v) for f, v in chosen.items()}
        named = {int(n) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", str(error))}
        values = sorted({v for f, v in chosen.items() if v in named and v != ints[f]})
        if not named:
            return None
        if not values:
            return None
        value = rng.choice(values)
        return {f: (ints[f] if v == value else v) for f, v in chosen.items()}

    joints = []
    count_fields = set()
    tries = 0
    unaligned_lists = set()  # lists whose count changed while their layers differ
    while len(joints) < fit_joints + HELD_OUT and tries < 4 * (fit_joints + HELD_OUT):
        tries += 1
        small = None if len(joints) < fit_joints else count_fields
        d, chosen = joint(rng, small)
        s = None
        for _ in range(JOINT_REPAIRS + 1):
            refusal = None
            for attempt in (d, minimal(chosen)):
                try:
                    s, _, _ = sample(config_class, model_class, attempt)
                    align([trie(base.listing), trie(s.listing)], "")
                    d = attempt
                    break
                except Exception as e:
                    found = re.match(r"layers of (.*) differ and their count changes$", str(e))
                    if isinstance(e, Misfit) and found:
                        unaligned_lists.add(found.group(1))
                    else:
                        refusal = refusal or e
                    if os.environ.get("ZOO_DEBUG"):
                        print("DEBUG joint", model_type, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "", file=sys.stderr)
                    if os.environ.get("ZOO_DEBUG") == "trace":
                        traceback.print_exception(e, limit=-4, file=sys.stderr)
                    s = None
            fewer = None if s is not None or refusal is None else repaired(chosen, refusal, small)
            if fewer is None:
                break
            chosen = fewer
            d = joint_dict(chosen, small)
        if s is None:
            continue
        s.chosen = chosen
        s.config_dict = d
        joints.append(s)
        if len(joints) == fit_joints:
            # Which fields count layers: those that decide a repeat count.
            template = align([trie(x.listing) for x in samples + joints], "")
            count_fields = set()
            for slot in counts_of(template):
                count_fields.update(f for f, i in singles.items() if slot.values.get(i) != slot.values.get(0))
    if len(joints) < fit_joints + HELD_OUT:
        for where in sorted(unaligned_lists):
            for field, index in singles.items():
                if field not in HELD_AT_DEFAULT and (list_length(samples[index].listing, where)
                                                     != list_length(base.listing, where)):
                    raise ListCountHeld(field, where)
        raise Misfit("too few joint variations build")
    fitting = samples + joints[:fit_joints]
    held = joints[fit_joints:]
    template = align([trie(x.listing) for x in fitting], "")
    cache = {}
    traces = {}
    used = set()
    bool_fields = {}
    for slot in slots(template, []):
        # A least value (a split index with no layer past it) does not fit
        # the formula; it is checked after.
        exact = {s: v for s, v in slot.values.items() if s not in slot.bound}
        changed = tuple(f for f, i in singles.items()
                        if any(slot.values.get(j) is not None and slot.values.get(j) != slot.values.get(0)
                               for j in [i] + more_singles.get(f, [])))
        points = [(fitting[s].env, v) for s, v in sorted(exact.items())]
        if not points:
            raise Misfit("a split list's layers change kind in no sample")
        key = (changed, tuple(v for _, v in points))
        if key not in cache:
            cache[key] = fit(points, changed) or traced_formula(
                config_class, model_class, [(fitting[s], v) for s, v in sorted(exact.items())], changed, traces)
        if cache[key] is None:
            if os.environ.get("ZOO_DEBUG"):
                print("DEBUG", changed, [(dict((f, e.get(f)) for f in changed), v) for e, v in points], file=sys.stderr)
            if 0 < len(changed) <= 2:
                raise NoFormulaHeld(changed)
            raise Misfit(f"no formula for a size that depends on {', '.join(changed) or 'nothing'}")
        slot.expr = cache[key]

        def inside(expr):
            return any(evaluate(expr, fitting[s].env) < slot.values[s] for s in slot.bound)

        if inside(slot.expr) and changed:
            # Every split seen at one index (1), and a least value above it:
            # the index is a field, not that constant.
            slot.expr = formulas.fit_over(points, [Fraction(v) for _, v in points], sorted(changed))
        if slot.expr is None or inside(slot.expr):
            raise Misfit(f"a split index {cache[key]} falls inside a list of one kind")
        used.update(changed)
    item = freeze(template)
    candidates = sorted({slot.expr for slot in slots(template, [])}, key=len)
    def flipped_sample(d, chosen, flipped):
        """The model of `d` (or of only `chosen`, when the full dict pins
        derived values) with the `flipped` flags (and their companions)
        flipped."""
        for attempt in (d, minimal(chosen)):
            for flag in flipped:
                attempt = with_override(attempt, flag, not bools[flag])
                if flag in companions:
                    attempt = with_override(attempt, companions[flag], not bools[companions[flag]])
            try:
                got = sample(config_class, model_class, attempt)[0]
            except Exception:
                continue
            try:
                # Sizes the description gives no whole value for (a patch
                # size that does not divide the image) are outside what
                # it describes with the flag at its default too: skipped.
                expand(item, dict(got.env, **{f: bools[f] for f in bool_fields}))
            except (Misfit, ZeroDivisionError):
                return None
            return got
        return None

    def check_flipped(merged, got, flipped):
        env = dict(got.env, **{f: bools[f] for f in bool_fields})
        for flag in flipped:
            env[flag] = not bools[flag]
        mine = expand(merged, env)
        if mine != got.listing:
            wrong = next((a, b) for a, b in itertools.zip_longest(mine, got.listing) if a != b)
            raise Misfit(f"flipped variation differs at {wrong}")

    for field, flipped in flips.items():
        # A flag that adds or removes tensors (`attention_bias`): the
        # tensors of one side carry a condition, sized by a formula the
        # rest of the model already uses; checked on joint variations with
        # the flag flipped, and with every flag accepted so far flipped
        # too (`attention_bias` and `mlp_bias` both set), else the flag
        # stays fixed.
        try:
            seen = [flipped]
            for _ in range(20):
                if len(seen) == 8:
                    break
                d, chosen = joint(rng, None)
                got = flipped_sample(d, chosen, [field])
                if got is not None:
                    seen.append(got)
            if len(seen) < 6:
                raise Misfit("too few flipped variations build")
            # Five variations choose each new tensor's formula, the rest check.
            choose, check = seen[:5], seen[5:]
            merged = merge(item, [trie(x.listing) for x in choose], field, not bools[field], candidates,
                           [x.env for x in choose], {f: bools[f] for f in bool_fields})
            for got in check:
                check_flipped(merged, got, [field])
            if expand(merged, dict(base.env, **{f: bools[f] for f in [*bool_fields, field]})) != base.listing:
                raise Misfit("default differs after merge")
            if bool_fields:
                together = [*bool_fields, field]
                checked = 0
                for _ in range(12):
                    if checked == 4:
                        break
                    d, chosen = joint(rng, None)
                    got = flipped_sample(d, chosen, together)
                    if got is not None:
                        check_flipped(merged, got, together)
                        checked += 1
                if checked == 0:
                    raise Misfit("no variation builds with the flags flipped together")
            item = merged
            used.update(f for expr in conditional_exprs(item) for f in split_names(expr))
            bool_fields[field] = bools[field]
        except Exception as e:
            fixed[field] = f"adds or removes tensors ({str(e)[:80]})"
    mark_kinds(item, model0, true_default.env)
    for field in bool_fields:
        # Modules a flag adds (GPT-2's cross-attention) are marked too.
        try:
            flipped_sample_of_default, _, flipped_model = sample(
                config_class, model_class, with_override(default_dict, field, not bools[field]))
        except Exception:
            continue
        mark_kinds(item, flipped_model, flipped_sample_of_default.env)
    must_divide = multiples(config_class, model_class, default_dict, ints, relevant)
    used.update(heads for _, heads in must_divide)
    defaults = derive_defaults(config_class, ints, used, relevant, rng,
                               {f: (config_class, model_class) for f in nullable}, undeclared)
    for field, value in bool_fields.items():
        defaults[field] = {"default": value}
        if field in companions:
            # transformers refuses the flag flipped without its companion
            # flipped too: `[companion, value it needs, its default]`.
            other = companions[field]
            defaults[field]["needs"] = [other, not bools[other], bools[other]]
    desc = {
        "fields": defaults,
        "lists": lists,
        "fixed": {f: popped_defaults[f] if f in popped_defaults else read_field(true_default_dict, f)
                  if f != "num_labels" else config0.num_labels for f in fixed},
        "tree": item,
    }
    if must_divide:
        desc["multiples"] = must_divide
    if least:
        desc["least"] = dict(least)
    # Held-out check: the description reproduces samples it never saw, and
    # the default config (an empty config.json) gives the default model.
    # From a base where two sizes differ, the default (where they are
    # equal) is checked once the keys that exist only while they differ
    # are known, below.
    equal_base = EQUAL_SIZES_REBASE in (rebase or {})
    deferred = []
    if not equal_base and expand(item, resolve_env(desc, {})) != true_default.listing:
        raise Misfit("the default config differs from the description")
    for s in held:
        env = resolve_env(desc, s.config_dict)
        if expand(item, env) != s.listing:
            raise Misfit("a held-out variation differs from the description")

    def hold_out(d, what):
        """One more held-out sample, from config dict `d` (skipped when the
        model does not build from it)."""
        try:
            got, _, _ = sample(config_class, model_class, d)
        except Exception:
            return
        got.config_dict = d
        if equal_base:
            # Its sizes may be equal where the base's differ (a sub-config
            # at its defaults): checked with the default, below.
            deferred.append((got, what))
        elif expand(item, resolve_env(desc, d)) != got.listing:
            raise Misfit(f"{what} differs from the description")
        held.append(got)

    for node in list_nodes(item, "split"):
        # A split seen in a short list may be a pattern that repeats (Qwen3-
        # MoE's `decoder_sparse_step` 2 makes every other layer sparse: two
        # layers look like one dense, then experts): each sample whose split
        # falls inside its list is checked again with 3 layers more.
        counted = split_names(node["repeat"])
        checked = 0
        for x in fitting:
            if checked == 3 or len(counted) != 1 or not hasattr(x, "config_dict"):
                continue
            at, count = evaluate(node["split"], x.env), evaluate(node["repeat"], x.env)
            if 0 < at < count:
                checked += 1
                longer = with_override(x.config_dict, counted[0], read_field(x.config_dict, counted[0]) + 3
                                       if read_field(x.config_dict, counted[0]) is not None else x.env[counted[0]] + 3)
                hold_out(longer, f"a list split at {node['split']} with 3 layers more")
    for field in list(nullable) + list(undeclared):
        # Held-out variations with the field left out: its default formula.
        for s in list(held[:2]):
            hold_out(without_path(s.config_dict, field), f"a held-out variation without {field}")
    if bool_fields and held:
        # A held-out variation with every flag flipped (and each flag's
        # companion), so matrix.json checks the Rust side's conditions too.
        d = held[0].config_dict
        for field in bool_fields:
            d = with_override(d, field, not bools[field])
            if field in companions:
                d = with_override(d, companions[field], not bools[companions[field]])
        hold_out(d, "a held-out variation with every flag flipped")
    # A sub-config written without its sizes (a config.json that gives only
    # `vision_config.model_type`) takes the sub-config class's defaults, not
    # the composite config's: checked like a held-out variation, with the
    # sub-config's layer counts at 1 to keep the sample small.
    for parent, value in default_dict.items():
        if not (isinstance(value, dict) and isinstance(value.get("model_type"), str)
                and any(f.startswith(parent + ".") for f in relevant)):
            continue
        d = with_parent({}, parent + ".*")
        for field in count_fields:
            if field.startswith(parent + "."):
                d = with_override(d, field, 1)
        hold_out(d, f"a {parent} written without its sizes")
    # Each size field alone at a value no variation drew, from the first
    # held-out variation: where the description differs there (the speech
    # encoder-decoder's `encoder.hidden_size`, once it differs from the
    # decoder's, adds a projection), the field holds only at its default,
    # and the class is derived again so (run_model_type). A config the
    # description refuses (a size of no whole number, a head count that
    # does not divide) is no wrong answer.
    fresh_base = held[0].config_dict if held else default_dict
    fresh_env = resolve_env(desc, fresh_base)
    for field in relevant:
        value = fresh_env.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or field == "num_labels":
            continue
        for new in fresh_values(field, value):
            d = with_override(fresh_base, field, new)
            try:
                got = sample(config_class, model_class, d)[0]
            except Exception:
                continue
            env = resolve_env(desc, d)
            if refused_by(desc, env):
                break
            try:
                mine = expand(item, env)
            except Misfit:
                break
            if mine != got.listing:
                first = next((f"{a} vs {b}" for a, b in zip(mine, got.listing) if a != b),
                             f"{len(mine)} vs {len(got.listing)} tensors")
                raise FreshValueDiffers(field, new, first)
            break
    # A config.json may give such a list (left out of the variations or
    # not), and transformers then builds from the list, not from the fields
    # it follows: where the list changes tensors, the data says what it
    # must be for the description to hold.
    # Other lists of names (Nemotron-H's `layers_block_type`, one name per
    # layer though no layer count sits beside it; a backbone's
    # `out_features`) are held to the default's own list where changing
    # them changes tensors.
    named = {}
    for path in all_lists + [p for p in name_lists(class_default_dict) if p not in all_lists]:
        form = named_list_form(config_class, model_class, class_default_dict, path, item, desc, held,
                               per_layer=path in all_lists)
        if form is not None:
            named[path] = form
    if named:
        desc["named_lists"] = named
    extras = pretrained_facts(config_class, model_class, default_dict, model0)
    desc.update(extras)
    reasons = {f: why for f, why in fixed.items()}
    if not FIX_NAMES:
        # A name another value of which changes the state dict (ResNet's
        # `layer_type` "basic") holds only at its default, unless it does so
        # through fields the description follows (names.py).
        first = held[0] if held else base
        NAME_VALUES.clear()
        add_names(desc, *names_that_change_tensors(config_class, model_class, first.config_dict, first.listing,
                                                   lambda d: sample(config_class, model_class, d)[0].listing,
                                                   desc["fields"], NAME_VALUES), reasons)
    # Tensors that exist only while two sizes differ (equal_sizes.py):
    # checked on equal sizes, which no variation draws.
    rules, equal, _ = equal_size_rules(desc, (held[0] if held else base).config_dict,
                                       lambda d: sample(config_class, model_class, d)[0])
    add_rules(desc, rules)
    for s in equal:
        s.equal_sizes = True
    if equal_base:
        env = resolve_env(desc, {})
        if drop_keys_if_equal(desc, env, expand(item, env)) != true_default.listing:
            raise Misfit("the default config differs from the description")
        for got, what in deferred:
            env = resolve_env(desc, got.config_dict)
            if drop_keys_if_equal(desc, env, expand(item, env)) != got.listing:
                raise Misfit(f"{what} differs from the description")
    # Sizes the heads must divide for the description to hold (divides.py):
    # the library floors the head size, and no variation draws such a size.
    divided, _ = divides_rules(desc, (held[0] if held else base).config_dict,
                               lambda d: sample(config_class, model_class, d)[0])
    add_divides(desc, divided, config_class)
    # Layers whose kind a list of names chooses (kinds.py): the list made
    # the chooser where the library builds as described from other lists.
    chosen = layer_kinds(desc, lambda d: sample(config_class, model_class, d)[0], config_class)
    if chosen is None and OTHER_KINDS[0]:
        # A list whose default names one kind (Granite 4.0-H's all Mamba):
        # each other kind derived as a class of its own and joined.
        chosen = other_kinds(desc, config_class, model_class,
                             other_kind_deriver(model_type, model_class, config_class.__name__),
                             lambda d: sample(config_class, model_class, d)[0])
        if chosen is not None:
            for field, why in chosen[2].items():
                if field in chosen[0].get("fixed", {}):
                    reasons.setdefault(field, why)
            chosen = chosen[:2]
    kinds_samples = []
    if chosen is not None:
        desc, kinds_samples = chosen
        for s in kinds_samples:
            s.layer_kinds = True
    # Sizes the modeling code reads that the config class does not declare
    # (undeclared.py: Qwen3-MoE's `head_dim`): refused unless at their default.
    # One the derivation varied without a tensor changing sizes nothing
    # here (Gemma 3's SigLIP tower does not read `head_dim`).
    hidden = {field: formula for field, formula in undeclared_fields(desc, config_class, model_class).items()
              if field not in irrelevant}
    if hidden:
        desc["undeclared"] = hidden
    # Fields the derivation does not vary (a float, an integer one other
    # value left irrelevant) that change tensors at others
    # (unvaried_fields.py: LFM2's `block_multiple_of` at 257, Swin's
    # `mlp_ratio`): refused unless at their default.
    first_held = (held[0] if held else base).config_dict
    facts = sub_config_facts(model_type).get("sub_configs", {})
    unvaried, where, nonzero, unless = unvaried_fixed(desc, config_class, model_class, first_held, facts)
    for field, default in unvaried.items():
        desc.setdefault("fixed", {})[field] = default
        reasons[field] = f"not varied by the derivation, and at {where[field][0]} the tensors differ ({where[field][1]})"
    if nonzero:
        # Floats that change tensors at 0 only (wav2vec2's `mask_time_prob`):
        # refused at 0, unless a float that builds the same tensors is above
        # 0 (`mask_feature_prob`).
        desc["nonzero"] = nonzero
    if unless:
        desc["nonzero_unless"] = unless
    # Sizes the library rounds where the description divides them
    # (rounded_sizes.py: LFM2's feed-forward): rounded up as the library
    # rounds them where that matches it, else held to the multiples the
    # description holds at, or fixed where none does.
    rounded_texts, rounded, rounded_fixed, where, divided = rounded_fields(
        desc, config_class, model_class, first_held, facts)
    apply_rounded(desc, rounded_texts, rounded, rounded_fixed, divided)
    # Keys the config class takes under an older name (config_renames.py:
    # LFM2's `block_ff_dim` for `intermediate_size`).
    renames = renamed_keys(desc, config_class, model_class, first_held, facts)
    if renames:
        desc["renamed_keys"] = renames
    for field in rounded_fixed:
        reasons[field] = f"the library rounds it: at {where[field][0]} the tensors differ ({where[field][1]})"
    return desc, true_default, held + equal + kinds_samples, reasons


def string_lists(config_dict, prefix=""):
    """Every non-empty list of names in a config dict, at any depth, as
    (its path, the list, the dict that holds it)."""
    for field, value in config_dict.items():
        if str(field).startswith("_") or field == "architectures":
            continue
        if isinstance(value, dict):
            yield from string_lists(value, f"{prefix}{field}.")
        elif isinstance(value, list) and value and all(isinstance(x, str) for x in value):
            yield prefix + str(field), value, config_dict


def name_lists(config_dict):
    """The paths of every list of names in a config dict, at any depth."""
    return [path for path, _, _ in string_lists(config_dict)]


def named_list_form(config_class, model_class, original, path, tree, desc, held, per_layer=True):
    """What a list with a name per layer (`mlp_layer_types`; `original` is
    the class's default dict, the list in it), which the
    config class derives from fields when config.json leaves it out, must
    be for the description to hold when config.json gives it, or None
    when the list changes no tensors (Gemma 2's sliding-window
    `layer_types`). transformers builds from a given list, so a list that
    disagrees with the fields builds another model:

    - `{"count", "split", "names": [a, b]}`: a split list's layers are `a`
      below the split and `b` from it on (GLM-MoE-DSA's "dense", "sparse");
    - `{"count", "names": [a]}`: every layer `a`;
    - `{"exactly": [...]}`: the default's own list, when neither form
      reproduces what the config class derives in every sample, or when
      the list has no entry per layer (`per_layer` false)."""
    default_list = read_field(original, path)
    derived = []
    for d in [{}] + [s.config_dict for s in held]:
        try:
            got = read_field(config_class.from_dict(copy.deepcopy(d)).to_dict(), path)
        except Exception:
            continue
        if isinstance(got, list):
            derived.append((d, got))
    names = sorted({x for _, got in derived for x in got} | set(default_list))
    try:
        base_listing = build(config_class, model_class, original)[2]
    except Exception:
        return {"exactly": default_list}
    allowed, aliases = layer_type_names(config_class, original, path, names)
    alterations = [default_list[1:] + default_list[:1], list(reversed(default_list))]
    for other in names + [n for n in allowed if n not in names]:
        # A name the default list lacks counts too: Granite 4's hybrid
        # layers are all Mamba ("linear_attention") by default, and a
        # config.json with "attention" layers builds another model.
        alterations += [default_list[:-1] + [other], [other] + default_list[1:]]
    # One entry more or less (Nemotron-H's layers are as many as its list).
    alterations += [default_list + default_list[-1:], default_list[:-1]]
    matters = False
    for altered in alterations:
        if altered == default_list:
            continue
        try:
            listing = build(config_class, model_class, with_field(original, path, altered))[2]
        except Exception:
            continue
        if listing != base_listing:
            matters = True
            break
    if not matters:
        return None
    if not per_layer:
        return with_aliases({"exactly": default_list}, aliases)
    for node in list_nodes(tree, "split"):
        pair = [None, None]
        holds_here = True
        for d, got in derived:
            env = resolve_env(desc, d)
            count = to_int(evaluate(node["repeat"], env))
            at = min(trees.split_of(node, env), count)
            if len(got) != count:
                holds_here = False
                break
            for kind, part in ((0, got[:at]), (1, got[at:])):
                if len(set(part)) > 1 or (part and pair[kind] not in (None, part[0])):
                    holds_here = False
                if part:
                    pair[kind] = part[0]
        if holds_here and None not in pair and pair[0] != pair[1]:
            return with_aliases({"count": node["repeat"], "split": node["split"], "names": pair}, aliases)
    one = {x for _, got in derived for x in got}
    if len(one) == 1:
        for node in list_nodes(tree, "repeat"):
            if "split" in node:
                continue
            if all(len(got) == to_int(evaluate(node["repeat"], resolve_env(desc, d))) for d, got in derived):
                return with_aliases({"count": node["repeat"], "names": sorted(one)}, aliases)
    return with_aliases({"exactly": default_list}, aliases)


def with_aliases(form, aliases):
    if aliases:
        form["aliases"] = aliases
    return form


def layer_type_names(config_class, original, path, names):
    """For a list of layer types transformers validates (every name in its
    `ALLOWED_LAYER_TYPES` or an older name it renames): all the names a
    config.json may give, and the older names the config class renames
    (`"mamba"` to `"linear_attention"`, as Granite 4's config.json writes
    them), each checked by reading a config with it back. Otherwise none."""
    try:
        from transformers.configuration_utils import ALLOWED_LAYER_TYPES, _LEGACY_LAYER_TYPE_REMAP
    except ImportError:
        return [], {}
    legacy = dict(_LEGACY_LAYER_TYPE_REMAP)
    if not names or not all(n in ALLOWED_LAYER_TYPES or n in legacy for n in names):
        return [], {}
    default_list = read_field(original, path)
    aliases = {}
    for old, new in sorted(legacy.items()):
        try:
            config = config_class.from_dict(with_field(original, path, [old] + default_list[1:]))
            read_back = read_field(config.to_dict(), path)
        except Exception:
            continue
        if isinstance(read_back, list) and read_back[:1] == [new]:
            aliases[old] = new
    return list(ALLOWED_LAYER_TYPES) + sorted(legacy), aliases


POPPED = re.compile(r'kwargs\.(?:pop|get)\(\s*"(\w+)"\s*,\s*(\d+)\s*\)')


def popped_fields(config_class, config_dict, prefix=""):
    """The integer fields a config class (or a sub-config's, at its path)
    reads from its kwargs with a default and does not keep, so its dict
    never shows them: `{path: default}`."""
    import inspect
    try:
        source = inspect.getsource(config_class)
    except (OSError, TypeError):
        source = ""
    found = {prefix + name: int(value) for name, value in POPPED.findall(source)
             if name not in config_dict and name not in SKIP_KEYS and name != "num_labels"}
    for field, value in config_dict.items():
        if isinstance(value, dict) and isinstance(value.get("model_type"), str):
            from transformers.models.auto import configuration_auto
            try:
                sub_class = configuration_auto.CONFIG_MAPPING[value["model_type"]]
            except KeyError:
                continue
            found.update(popped_fields(sub_class, value, f"{prefix}{field}."))
    return found


def list_nodes(node, marked):
    """The lists of a frozen tree that carry `marked`: `"repeat"` for every
    list that repeats one body, `"split"` for those split in two kinds."""
    if marked in node:
        yield node
    for _, child in node.get("c", []):
        yield from list_nodes(child, marked)
    for kind in ("body", "rest"):
        if kind in node:
            yield from list_nodes(node[kind], marked)
    for it in node.get("items", []) + node.get("last", []):
        yield from list_nodes(it, marked)


def default_of(default_dict, ints, bools, field):
    if field in ints:
        return ints[field]
    return bools.get(field)


def per_layer_lists(config_dict):
    """The paths of the lists of names with one entry per layer
    (`layer_types`, `mlp_layer_types`: as long as a layer count beside
    them), at any depth of a config dict: a config class derives them from
    other fields when config.json leaves them out."""
    def layer_counts(holder):
        return {v for f, v in holder.items()
                if isinstance(v, int) and not isinstance(v, bool) and LAYER_FIELD.search(str(f))}
    return [path for path, names, holder in string_lists(config_dict)
            if len(names) in layer_counts(holder)]


def read_field(config_dict, field):
    node = config_dict
    for part in field.split("."):
        if isinstance(node, list):
            i = int(part)
            node = node[i] if i < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    return node


def resolve_env(desc, config_dict):
    """The Python twin of the Rust field resolution (zoo/mod.rs)."""
    config_dict = with_renames(desc, config_dict)
    env = {}

    def get(field, depth=0):
        if field in env:
            return env[field]
        if field == "num_labels":
            if isinstance(config_dict.get("id2label"), dict):
                v = len(config_dict["id2label"])
            else:
                v = config_dict.get("num_labels", desc["fields"].get("num_labels", {}).get("default", 2))
            env[field] = v
            return v
        v = read_field(config_dict, field)
        spec = desc["fields"][field]
        if v is None and "by_name" in spec:
            name = read_field(config_dict, spec["by_name"][0])
            if isinstance(name, str) and name not in spec["by_name"][1]:
                raise Misfit(f"{spec['by_name'][0]} {name!r} gives {field} no known value (refused)")
            v = spec["by_name"][1].get(name) if isinstance(name, str) else None
        if v is None:
            dflt = spec["default"]
            if "default_in_parent" in spec and isinstance(read_field(config_dict, field.rsplit(".", 1)[0]), dict):
                dflt = spec["default_in_parent"]
            if isinstance(dflt, (bool, int)):
                v = dflt
            else:
                names = [t for t in split_names(dflt)]
                sub = {n: get(n, depth + 1) for n in names}
                v = to_int(evaluate(dflt, sub))
        env[field] = v
        return v

    for field in desc["fields"]:
        get(field)
    # A list of names that chooses each layer's kind (kinds.py): the one
    # config.json gives, in the names the config class renames them to,
    # else the default's.
    for path, form in desc.get("named_lists", {}).items():
        if form.get("indexes"):
            # A list of layer indexes (index_kinds.py): layer `i` is listed
            # where `i` is in the list given, else the default's.
            given = read_field(config_dict, path)
            if given is None:
                given = form["default"]
            if not isinstance(given, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in given):
                # As the Rust side refuses it (layer_kinds.rs).
                raise Misfit(f"{path} is no list of layer indexes")
            unlisted, listed = form["kinds"]
            env[path] = [listed if i in given else unlisted for i in range(get(form["count"]))]
        elif form.get("by"):
            given = read_field(config_dict, path)
            parent = path.rpartition(".")[0]
            for alias in form.get("read_from", []) if given is None else []:
                given = read_field(config_dict, f"{parent}.{alias}" if parent else alias)
            aliases = form.get("aliases", {})
            if isinstance(given, list):
                env[path] = [aliases.get(x, x) for x in given]
            elif "exactly" in form:
                env[path] = form["exactly"]
            else:
                # A list whose default names one kind: that kind per layer.
                env[path] = form["names"] * get(form["count"])
    return env


def derive_defaults(config_class, ints, used, relevant, rng, nullable=None, undeclared=None):
    """For each field a formula uses: its default when config.json leaves it
    out, as a number or as a formula over the fields it follows. A field of
    a sub-config can have two: one when config.json leaves the whole
    sub-config out (the composite config's choice: LLaVA's CLIP tower is
    1024 wide) and one when config.json has the sub-config without the
    field (the sub-config class's own default: CLIPVisionConfig's 768)."""
    names = sorted(used | {"num_labels"} & used)
    base = config_class()

    def env_of(config):
        e, _, _ = flatten(config.to_dict())
        e["num_labels"] = config.num_labels
        for field, (cls, model_class) in (nullable or {}).items():
            if field in e:
                continue
            # Null: the size the model uses, read from a build with the
            # layer counts cut to one where that still builds.
            d = config.to_dict()
            for attempt in (cut_layers(d), d):
                try:
                    listing = sample(cls, model_class, attempt)[0].listing
                except Exception:
                    continue
                value = value_when_null(cls, model_class, attempt, field, listing)
                if value is not None:
                    e[field] = value
                    break
            else:
                raise Misfit(f"the size {field} stands for when null is not found")
        for field, formula in (undeclared or {}).items():
            # Left out: what the modeling code's getattr default gives.
            if field not in e:
                e[field] = to_int(evaluate(formula, e))
        return e

    def config_with(values):
        d = {}
        for f, v in values.items():
            if f == "num_labels":
                d["num_labels"] = v
                continue
            parent = f.rsplit(".", 1)[0]
            if parent != f and read_field(d, parent) is None and plain_dict_field(base, parent):
                # Whole, as with_parent writes it: the model reads every key.
                set_path(d, parent, copy.deepcopy(read_field(base.to_dict(), parent)))
            set_path(d, f, v)
        return config_class(**d)

    e0 = env_of(base)
    rows = []
    for field in relevant:
        for new in vary(ints[field]):
            try:
                rows.append((field, env_of(config_with({field: new}))))
                break
            except Exception:
                continue

    def fit_default(name, baseline, rows, extra):
        """`name`'s default over `rows` (each one field changed from
        `baseline`), with `extra` fields set in every joint point."""
        follows = tuple(f for f, e in rows if f != name and e.get(name) != baseline[name])
        if not follows:
            return baseline[name]
        points = [(baseline, baseline[name])] + [(e, e[name]) for f, e in rows if f in follows]
        # A joint point or two to pin a two-term formula.
        for _ in range(3):
            try:
                e = env_of(config_with(dict(extra, **{f: vary(ints[f], rng)[0] for f in follows})))
                points.append((e, e[name]))
            except Exception:
                pass
        expr = fit(points, follows)
        if expr is None:
            raise Misfit(f"the default of {name} follows {', '.join(follows)} by no formula")
        return expr

    fields = {}
    for name in names:
        if name not in e0:
            raise Misfit(f"{name} has no default")
        parent = name.rsplit(".", 1)[0] if "." in name else None
        in_parent = None
        written = read_field(base.to_dict(), parent) if parent is not None else None
        if isinstance(written, dict):
            # The sub-config as a config.json writes it: with its
            # `model_type` (Depth Anything refuses a `backbone_config`
            # without one, and takes Dinov2Config's own 768 wide with it).
            try:
                d = {}
                set_path(d, parent, {"model_type": written["model_type"]} if isinstance(
                    written.get("model_type"), str) else {})
                in_parent = env_of(config_class(**d))
            except Exception:
                in_parent = None
        if in_parent is None or name not in in_parent:
            fields[name] = {"default": fit_default(name, e0, rows, {})}
            continue
        # Fields of the same sub-config are set with the sub-config present;
        # the others leave it out.
        inside = [(f, e) for f, e in rows if f.startswith(parent + ".")]
        outside = [(f, e) for f, e in rows if not f.startswith(parent + ".")]
        fields[name] = {"default": fit_default(name, e0, outside, {})}
        present = fit_default(name, in_parent, inside, {})
        if present != fields[name]["default"]:
            fields[name]["default_in_parent"] = present
    for name, formula in (undeclared or {}).items():
        # An undeclared size's default is the modeling code's own getattr
        # default (`hidden_size//num_attention_heads`, floored as the
        # library floors it, where the fit may say `/`); held-out
        # variations that leave the size out check it against the library.
        if name in fields and "default_in_parent" not in fields[name]:
            fields[name] = {"default": formula}
    return fields


# ---------------------------------------------------------------------------
# Whole model types
# ---------------------------------------------------------------------------

# Whether a field null by default may be described as a size field, and
# whether the current derivation did so.
NULLABLE = [True, False]

# Whether a list naming one kind by default is joined by its other kinds
# (off while such a kind is derived).
OTHER_KINDS = [True]


def other_kind_deriver(model_type, model_class, name):
    """`derive_class` for kinds.other_kinds: (description, reasons) of a
    config class whose layers are all of another kind."""
    def derive_class(config_class):
        OTHER_KINDS[0] = False
        try:
            desc, _, _, reasons = derive_with_lists_or_not(model_type, config_class, model_class,
                                                           random.Random(f"{model_type}/{name}/kind"))
        finally:
            OTHER_KINDS[0] = True
        return desc, reasons
    return derive_class


# Whether a size the modeling code reads but the config class does not
# declare may be described as a field, and whether the current derivation
# did so.
UNDECLARED = [True, False]


# How long one class's derivation may take (a model type's whole run: 600 s).
CLASS_SECONDS = 120

# Whether per-layer name lists the config derives stay in the variations
# (pinned at the default's), as before they were left out.
KEEP_LISTS = [False]


def derive_with_lists_or_not(model_type, config_class, model_class, rng):
    """`derive_with_or_without_last` with the per-layer name lists the
    config derives left out of the variations; where that fails, or holds a
    flag fixed (ModernBERT's `norm_bias`: its layers cut short build
    otherwise), again with the lists kept, as before, and the description
    that holds fewer fields fixed (the first on a tie)."""
    if not per_layer_lists(config_class().to_dict()):
        return derive_with_or_without_last(model_type, config_class, model_class, rng)
    state = rng.getstate()
    results, error = [], None
    for keep in (False, True):
        rng.setstate(state)
        KEEP_LISTS[0] = keep
        if keep:
            signal.alarm(CLASS_SECONDS)  # the second try has a class's time of its own
        try:
            results.append(derive_with_or_without_last(model_type, config_class, model_class, rng))
        except TimeoutError:
            if not results:
                raise
        except Exception as e:
            error = error or e
        finally:
            KEEP_LISTS[0] = False
        if results and not any(why.startswith("adds or removes tensors") for why in results[0][3].values()):
            break
    if not results:
        raise error
    return min(results, key=lambda result: len(result[3]))


def derive_with_or_without_last(model_type, config_class, model_class, rng):
    """`derive`, and when it fails after giving a list a last layer of its
    own, `derive` again without that (the list's layers then all alike or
    all fixed, as before lists had one); when it fails after describing an
    undeclared size or a null field as a size, again with that held at its
    default, then with null fields fixed too, as before."""
    state = rng.getstate()
    NULLABLE[1] = UNDECLARED[1] = False
    try:
        result = derive_last_or_not(model_type, config_class, model_class, rng)
        if not any(field in result[3] for field in UNDECLARED[1] or []):
            return result
        # An undeclared size that changes the structure (DeBERTa's
        # `embedding_size` adds a projection while it differs from
        # `hidden_size`) is held at its default instead where that holds
        # fewer fields fixed.
        rng.setstate(state)
        UNDECLARED[0] = False
        try:
            held = derive_last_or_not(model_type, config_class, model_class, rng)
        except Exception:
            return result
        finally:
            UNDECLARED[0] = True
        return held if len(held[3]) < len(result[3]) else result
    except Exception:
        if not (NULLABLE[1] or UNDECLARED[1]):
            raise
    # Undeclared sizes held at their default first (undeclared.py then
    # refuses other values), then null fields fixed too.
    tries = ([[UNDECLARED]] if UNDECLARED[1] else []) + ([[UNDECLARED, NULLABLE]] if NULLABLE[1] else [])
    for index, switches in enumerate(tries):
        rng.setstate(state)
        for switch in switches:
            switch[0] = False
        try:
            return derive_last_or_not(model_type, config_class, model_class, rng)
        except Exception:
            if index == len(tries) - 1:
                raise
        finally:
            for switch in switches:
                switch[0] = True


def first_that_derives(rng, switch, attempts):
    """Runs `attempts` in turn, the rng rewound for each, until one returns.
    The first one's failure is final unless it used what `switch` names
    (`trees.LAST_USED`: a list's last layer of its own); the last attempt
    runs with that turned off (`trees.ALLOW_LAST`)."""
    state = rng.getstate()
    setattr(trees, f"{switch}_USED", False)
    for index, attempt in enumerate(attempts):
        rng.setstate(state)
        final = index == len(attempts) - 1
        setattr(trees, f"ALLOW_{switch}", not final)
        try:
            return attempt()
        except FreshValueDiffers:
            # A field that holds only at its default: run_model_type derives
            # again with it held there, whatever the structure chosen.
            raise
        except Exception:
            if final or (index == 0 and not getattr(trees, f"{switch}_USED")):
                raise
        finally:
            setattr(trees, f"ALLOW_{switch}", True)


def derive_last_or_not(model_type, config_class, model_class, rng):
    """`derive_split_or_not`, and without a list's last layer of its own
    when a description with one fails."""
    def attempt():
        return derive_split_or_not(model_type, config_class, model_class, rng)
    return first_that_derives(rng, "LAST", [attempt, attempt])


def derive_split_or_not(model_type, config_class, model_class, rng):
    """`derive`; when it fails after splitting a list in two kinds, again
    with three times the joint variations (each kind's sizes are fitted on
    the samples that have it, so on fewer), then without splits (the list's
    fields fixed, as before splits)."""
    return first_that_derives(rng, "SPLIT", [
        lambda: derive(model_type, config_class, model_class, rng),
        lambda: derive(model_type, config_class, model_class, rng, fit_joints=3 * JOINT_SAMPLES),
        lambda: derive(model_type, config_class, model_class, rng),
    ])


def classes_for(model_type):
    """The classes the auto mappings name for `model_type`, then the other
    model classes its modeling module exports for the same config class
    (BertForNextSentencePrediction, GPT2DoubleHeadsModel,
    CLIPTextModelWithProjection, T5EncoderModel: `architectures[0]` names
    them though no auto class builds them)."""
    import importlib
    import inspect
    import transformers
    from transformers.models.auto import configuration_auto, modeling_auto
    names = []
    for mapping in MAPPINGS:
        value = getattr(modeling_auto, mapping, {}).get(model_type)
        for name in (value if isinstance(value, (list, tuple)) else [value]):
            if name and name not in names:
                names.append(name)
    try:
        config_class = getattr(transformers, configuration_auto.CONFIG_MAPPING_NAMES[model_type])
        module_name = configuration_auto.model_type_to_module_name(model_type)
        module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    except Exception:
        return names
    for name in getattr(module, "__all__", []):
        cls = getattr(module, name, None)
        if (name not in names and inspect.isclass(cls) and issubclass(cls, transformers.PreTrainedModel)
                and getattr(cls, "config_class", None) is config_class and not name.endswith("PreTrainedModel")
                and getattr(transformers, name, None) is cls):
            names.append(name)
    return names


def run_model_type(model_type):
    import transformers
    from transformers.models.auto import configuration_auto
    out_path = os.path.join(CACHE, model_type + ".json")
    if os.path.exists(out_path):
        return model_type
    started = time.time()
    result = {"model_type": model_type, "classes": {}, "failed": {}, "matrix": []}

    def timed_out(*_):
        raise TimeoutError("derivation of the class took over 120 s")
    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(240)
    try:
        config_class = getattr(transformers, configuration_auto.CONFIG_MAPPING_NAMES[model_type])
        result["config_class"] = config_class.__name__
        for name in classes_for(model_type):
            signal.alarm(CLASS_SECONDS)
            model_class = getattr(transformers, name, None)
            if model_class is None:
                result["failed"][name] = "not exported by transformers"
                continue
            if not derive_into(result, model_type, config_class, model_class, name, {}):
                continue
            # Each other value of a name the class holds at its default gets
            # a description of its own (the name's variants are not varied
            # again).
            found = {path: values[:NAME_VARIANTS] for path, values in NAME_VALUES.items() if "." not in path}
            found.update(resizing_flags(result, name))
            for path, values in sorted(found.items()):
                for value in values:
                    signal.alarm(CLASS_SECONDS)
                    derive_into(result, model_type, named_config_class(config_class, {path: value}),
                                model_class, name, {path: value})
    except Exception as e:
        result["failed"]["*"] = error_line(e)
    signal.alarm(0)
    result["seconds"] = round(time.time() - started, 1)
    with open(out_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out_path + ".tmp", out_path)
    return model_type


def resizing_flags(result, name):
    """{flag: [its other value]} for the top-level flags the class's
    default description fixed because flipping one changes the sizes of
    tensors (`RESIZED_BY_FLAG`), at most FLAG_VARIANTS of them."""
    desc = result["classes"].get(name, {})
    reasons = result.get("fixed", {}).get(name, {})
    flags = [field for field, why in reasons.items()
             if "." not in field and why.startswith(RESIZED_BY_FLAG)
             and isinstance(desc.get("fixed", {}).get(field), bool)]
    return {flag: [not desc["fixed"][flag]] for flag in sorted(flags)[:FLAG_VARIANTS]}


def derive_with_index_lists_or_not(model_type, config_class, model_class, rng, key):
    """`derive_with_lists_or_not`, first with a list of layer indexes
    choosing each layer's kind where the class has one (index_kinds.py:
    SAM's `global_attn_indexes`; derived as one body, its layers fail to
    align, after minutes), then plainly where that does not hold."""
    def build(cls, d):
        return sample(cls, model_class, d)[0]
    lists = index_kinds.choosing_lists(config_class, build)
    if lists:
        def derive_class(kind_class):
            signal.alarm(CLASS_SECONDS)
            return derive_with_lists_or_not(model_type, kind_class, model_class,
                                            random.Random(f"{model_type}/{key}/{kind_class.__name__}/kind"))
        found = index_kinds.by_index_lists(config_class, lists, derive_class, lambda d: build(config_class, d))
        signal.alarm(CLASS_SECONDS)
        if found is not None:
            return found
    return derive_with_lists_or_not(model_type, config_class, model_class, rng)


def derive_into(result, model_type, config_class, model_class, name, when):
    """Derives one class (with the names in `when` as its config's
    defaults) into a model type's `result`: its description, its fixed
    fields' reasons and its matrix row, or why it failed. Returns whether it
    was described."""
    key = class_key(name, when)
    rng = random.Random(f"{model_type}/{key}")
    HELD_AT_DEFAULT.clear()
    # A default config the library cannot build (EsmConfig's vocab_size is
    # null): derived with the fewest fields filled that make it build, each
    # then required of a config.json (required.py).
    filled = required.completions(config_class, model_class)
    if filled:
        config_class = required.completed_class(config_class, filled)
    try:
        while True:
            try:
                desc, base, held, fixed = derive_with_index_lists_or_not(model_type, config_class, model_class,
                                                                         rng, key)
                break
            except (FreshValueDiffers, NoFormulaHeld) as e:
                # Derived again with those fields held at their defaults (at
                # most MOST_HELD such fields).
                fields = e.fields if isinstance(e, NoFormulaHeld) else [e.field]
                if any(f in HELD_AT_DEFAULT for f in fields) or len(HELD_AT_DEFAULT) + len(fields) > MOST_HELD:
                    raise
                for field in fields:
                    HELD_AT_DEFAULT[field] = f"holds only at its default ({e})"
                rng = random.Random(f"{model_type}/{key}")
                signal.alarm(CLASS_SECONDS)
    except Misfit as e:
        if os.environ.get("ZOO_DEBUG"):
            import traceback
            traceback.print_exc()
        result["failed"][key] = str(e)
        return False
    except Exception as e:
        result["failed"][key] = error_line(e)
        return False
    if when:
        desc["when"] = when
        # A flag's description (`resizing_flags`) may follow the flag
        # itself, and its held-out variations flip it back; the matrix
        # lists this description's samples under `when`, so only those
        # with the flag at that value.
        held = [s for s in held
                if all(read_field(s.config_dict, f) in (None, v) for f, v in when.items())]
    if filled:
        desc["required"] = filled
        completed_default = config_class().to_dict()
        for s in held:
            s.config_dict = required.with_required(s.config_dict, filled, completed_default)
    # Other sub-models in the composite's place (sub_models.py), checked
    # against the descriptions of those types already in the cache.
    try:
        swaps, swapped = swap_samples(desc, held[0].config_dict if held else {}, config_class, model_class)
    except Exception:  # noqa: BLE001 - no swaps listed, the class stands
        swaps, swapped = [], []
    if swaps:
        desc["swaps"] = swaps
    # Sub-configs written in part (written_in_part.py: PaliGemma's
    # `vision_config` without `vision_use_head`): the fields the description
    # needs written with them, and the held-out variations that leave them
    # out dropped (the Rust side refuses those).
    facts = sub_config_facts(model_type).get("sub_configs", {})
    given, unread, in_part = given_with_parent(desc, config_class, model_class, facts)
    for field, value in unread.items():
        desc.setdefault("fixed", {})[field] = value
        fixed[field] = ("not read by the description, and a sub-config written without it takes another value "
                        "at which the tensors differ")
    if given:
        desc["given_with_parent"] = given
        held = [s for s in held if written_in_part.left_out(desc, s.config_dict, facts) is None]
    # Quotients the library clamps at 1 (clamped.py: ConvBERT's heads),
    # refused where they come to 0.
    # The passes below try other values from the first held-out variation.
    first_held = held[0].config_dict if held else {}
    clamped = clamped_quotients(desc, config_class, model_class, first_held, facts)
    if clamped:
        desc["clamped"] = clamped
    # Lists whose length changes no tensor (list_lengths.py: a backbone's
    # `out_indices`), taken at any length.
    free = free_lengths(desc, config_class, model_class, first_held, facts)
    if free:
        desc["free_lengths"] = free
    # derive sets some of the passes' keys before derive_into sets `when`
    # (unvaried_fields.py's `nonzero`): in ADDED_KEYS order, as
    # rewrite_cache leaves them after a pass run again by hand.
    in_derived_order(desc)
    result["classes"][key] = desc
    if fixed:
        result.setdefault("fixed", {})[key] = fixed
    variations = small_matrix(held)
    for variation in variations:
        variation["config"] = dict(variation["config"], **when)
    for s in swapped:
        variations.append({"config": json.loads(json.dumps(s.config_dict, default=str)), "sub_model": s.sub_model,
                           "count": len(s.listing), "digest": digest(s.listing)})
    for path, config, listing in in_part:
        sample = written_in_part.matrix_sample(path, clean(config), listing)
        variations.append(dict(sample, config=dict(sample["config"], **when)))
    row = {"class": name}
    if when:
        row["when"] = when
    row.update({
        "default": {"config": required.with_required(dict({"model_type": model_type, "architectures": [name]}, **when),
                                                     filled, config_class().to_dict() if filled else {}),
                    "count": len(base.listing), "digest": digest(base.listing)},
        "variations": variations,
    })
    result["matrix"].append(row)
    return True


def run_all(wanted, jobs, limit=600):
    """Each model type in a forked process (transformers imported once, in
    the parent), `jobs` at a time; one that runs past `limit` seconds (a
    model whose default config takes minutes to build) is killed and
    recorded as such."""
    def killed(t):
        return {"model_type": t, "classes": {}, "failed": {"*": f"derivation ran past {limit} s"},
                "matrix": [], "seconds": limit}
    run_forked(wanted, jobs, limit, run_model_type, CACHE, killed, lambda t, result: t)


def first_held_out(variations):
    """A matrix row's first held-out variation's config ({} where none):
    not a sample with another sub-model (sub_models.py appends those) nor
    one with a sub-config written in part (written_in_part.py). Its base
    for fresh_values.py, names.py and the other passes."""
    return next((v["config"] for v in variations if not v.get("sub_model") and not v.get("written_in_part")), {})


def described_classes(model_type):
    """(cache entry, [(class name, description, config class, model class,
    the class's first held-out variation or {})]) for a model type in the
    cache: what fresh_values.py and names.py check again."""
    import transformers
    with open(os.path.join(CACHE, model_type + ".json")) as f:
        cached = json.load(f)
    config_class = getattr(transformers, cached.get("config_class", ""), None)
    bases = {m["class"]: first_held_out(m["variations"]) for m in cached["matrix"] if "when" not in m}
    found = []
    bases.update({class_key(m["class"], m["when"]): first_held_out(m["variations"])
                  for m in cached["matrix"] if "when" in m})
    for name, desc in cached["classes"].items():
        model_class = getattr(transformers, name.split("@")[0], None)
        if config_class is not None and model_class is not None:
            named = named_config_class(config_class, desc["when"]) if "when" in desc else config_class
            found.append((name, desc, named, model_class, bases.get(name, {})))
    return cached, found


def by_hand_pass(folder, target, limit, killed, line, write_back, what, extra=()):
    """A pass run by hand over generate.py's cache (names.py,
    equal_sizes.py): `--only TYPE,...` (else every cached type) and
    `--jobs N`, plus `extra` arguments [(flag, help)]; `target(type)` for
    each in a forked process writing `folder/<type>.json`, then
    `write_back(types)` (a count, printed with `what`) and the outputs
    assembled again. Returns the parsed arguments before running where an
    extra flag is set, for the caller to run its own pass."""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=1)
    for flag, about in extra:
        parser.add_argument(flag, action="store_true", help=about)
    args = parser.parse_args()
    if any(getattr(args, flag.lstrip("-").replace("-", "_")) for flag, _ in extra):
        return args
    os.makedirs(folder, exist_ok=True)
    described = sorted(f[:-5] for f in os.listdir(CACHE) if f.endswith(".json") and not re.match(r"[A-Z]", f))
    types = [t for t in args.only.split(",") if t] if args.only else described
    run_forked(types, args.jobs, limit, target, folder, killed, line)
    print(write_back(types), what)
    assemble_outputs()
    return args


def pass_over_type(folder, model_type, key, check):
    """One model type of a by-hand pass: `check(name, desc, config class,
    model class, base)` for each described class (as `described_classes`
    gives them), each returning entries for the type's findings, written to
    `folder/<type>.json` under `key`; nothing where that file exists."""
    out_path = os.path.join(folder, model_type + ".json")
    if os.path.exists(out_path):
        return
    found = {}
    for entry in described_classes(model_type)[1]:
        for name, value in check(*entry).items():
            if isinstance(value, dict) and isinstance(found.get(name), dict):
                found[name].update(value)
            else:
                found[name] = value
    with open(out_path, "w") as f:
        json.dump({"model_type": model_type, key: found}, f)


def pass_result(folder, model_type):
    """(what a by-hand pass wrote for a model type, the type's cache entry,
    the cache file's path), or None where the pass wrote nothing."""
    done = os.path.join(folder, model_type + ".json")
    if not os.path.exists(done):
        return None
    with open(done) as f:
        found = json.load(f)
    path = os.path.join(CACHE, model_type + ".json")
    with open(path) as f:
        cached = json.load(f)
    return found, cached, path


# What the passes add to a description, in the order derive_into adds it:
# a pass run again by hand writes the same bytes as a derivation.
ADDED_KEYS = ["keys_if_distinct", "divides", "undeclared", "rounded", "renamed_keys", "when", "swaps",
              "given_with_parent", "clamped", "nonzero", "nonzero_unless", "free_lengths"]


def in_derived_order(desc):
    """The keys the passes add moved to the end, in `ADDED_KEYS` order."""
    for key in ADDED_KEYS:
        if key in desc:
            desc[key] = desc.pop(key)


def rewrite_cache(folder, types, update):
    """A by-hand pass's findings into generate.py's cache: for each type
    the pass wrote, `update(class name, description, what the pass found
    for the class or {}, cache entry)` for each described class, and the
    cache file written again. Returns how many updates said they changed
    a class."""
    changed = 0
    for t in types:
        result = pass_result(folder, t)
        if result is None:
            continue
        found, cached, path = result[0]["classes"], result[1], result[2]
        for name, desc in cached["classes"].items():
            changed += bool(update(name, desc, found.get(name, {}), cached))
            in_derived_order(desc)
        with open(path, "w") as f:
            json.dump(cached, f)
    return changed


def replace_key(folder, types, key):
    """`rewrite_cache` for a pass that finds one key of each description
    (undeclared.py's `undeclared`, config_renames.py's `renamed_keys`):
    what the pass found replaces what the cache held under it."""
    def update(name, desc, found, cached):
        before = desc.pop(key, None)
        if found.get(key):
            desc[key] = found[key]
        return desc.get(key) != before
    return rewrite_cache(folder, types, update)


def run_pass(folder, target, limit, write_back, what):
    """`by_hand_pass` for a pass over the classes of each type, printing
    what it found for each type (its samples left out)."""
    def line(t, r):
        classes = (r or {}).get("classes", {})
        return f"{t} " + json.dumps({n: {k: v for k, v in c.items() if k != "samples"} for n, c in classes.items()})
    return by_hand_pass(folder, target, limit, lambda t: {"model_type": t, "classes": {}}, line, write_back, what)


def run_one_key_pass(folder, key, find, limit, what):
    """`run_pass` for a pass that finds one key of each description
    (clamped.py's `clamped`, list_lengths.py's `free_lengths`): `find(desc,
    config class, model class, base, facts)` gives its value, empty where
    there is nothing, and what it gives replaces what the cache held."""
    def apply_to_type(model_type):
        from assemble import sub_config_facts
        facts = sub_config_facts(model_type).get("sub_configs", {})

        def check(name, desc, config_class, model_class, base):
            found = find(desc, config_class, model_class, base, facts)
            return {name: {key: found}} if found else {}
        pass_over_type(folder, model_type, "classes", check)
    return run_pass(folder, apply_to_type, limit, lambda types: replace_key(folder, types, key), what)


def pin_hash_seed():
    """Runs this script again under PYTHONHASHSEED=0 where it was started
    under another seed. Sets of names iterate in their hashes' order, and a
    derivation tries fields and flags in that order where several fit: two
    derivations of wav2vec2 differed (one held Wav2Vec2ForXVector's
    `conv_bias` and derived a description at its other value, the other
    took it as a condition). With the seed fixed, deriving a type again
    gives the same descriptions and matrix rows, so a change to them is a
    change to the generator or the library."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)


def run_forked(wanted, jobs, limit, target, folder, killed, line):
    """`target(model_type)` for each of `wanted` that has no
    `folder/<type>.json` yet, each in a forked process, `jobs` at a time;
    one past `limit` seconds is killed and `killed(type)` written for it;
    `line(type, result)` is printed as each ends."""
    import torch  # noqa: F401 - imported before forking, once
    import transformers  # noqa: F401 - imported before forking, once
    pending = [t for t in wanted if not os.path.exists(os.path.join(folder, t + ".json"))]
    running = {}
    while pending or running:
        while pending and len(running) < jobs:
            t = pending.pop(0)
            p = multiprocessing.Process(target=target, args=(t,))
            p.start()
            running[t] = (p, time.time())
        time.sleep(0.2)
        for t, (p, started) in list(running.items()):
            if not p.is_alive():
                p.join()
                del running[t]
                path = os.path.join(folder, t + ".json")
                result = None
                if os.path.exists(path):
                    with open(path) as f:
                        result = json.load(f)
                print(line(t, result), flush=True)
            elif time.time() - started > limit:
                p.kill()
                p.join()
                del running[t]
                with open(os.path.join(folder, t + ".json"), "w") as f:
                    json.dump(killed(t), f)
                print(t, "killed", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--assemble", action="store_true", help="only write the outputs from the cache")
    parser.add_argument("--limit", type=int, default=600, help="seconds a model type may take before it is killed")
    args = parser.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    from transformers.models.auto import configuration_auto
    all_types = list(configuration_auto.CONFIG_MAPPING_NAMES)
    wanted = model_type_order(all_types, MUST_HAVE + POPULAR)
    if args.only:
        wanted = [t for t in args.only.split(",") if t]
    if not args.assemble:
        run_all(wanted, args.jobs, args.limit)
    assemble_outputs()


def assemble_outputs():
    """The outputs from the cache: every model type of the auto mappings
    and the diffusers classes, the must-haves and the most used first."""
    from diffusers_models import VARIANTS
    from transformers.models.auto import configuration_auto
    all_types = list(configuration_auto.CONFIG_MAPPING_NAMES)
    diffusers_types = ["diffusers/" + name for name in VARIANTS]
    assemble(all_types + diffusers_types, MUST_HAVE + POPULAR + diffusers_types,
             whole_for=MUST_HAVE + diffusers_types)


if __name__ == "__main__":
    pin_hash_seed()
    main()
