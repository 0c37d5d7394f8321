#!/usr/bin/env python3
"""Config keys a config class takes under an older name (run by hand, never
by CI). Lfm2Config's `__init__` does `self.intermediate_size =
kwargs.pop("block_ff_dim", self.intermediate_size)` and `self.tie_word_embeddings
= kwargs.pop("tie_embedding", ...)`: a config.json in the older layout
(`block_ff_dim` 6656, no `intermediate_size`) builds a 6656-wide
feed-forward, and `to_dict()` no longer shows the older key, so a
description derived from the fields it shows read the default 12288: a
wrong answer. Step 3.7's vision config takes `width`, `layers`, `heads`,
Molmo2's `image_patch_size`, Dots3's `embed_dim` and `num_heads`.

For each described class, every `self.F = kwargs.pop("X", self.F)` in the
source of its config class and of each sub-config class (at the
sub-config's place: `text_config.block_ff_dim`) whose F the description
reads (a field, or `tie_word_embeddings`) is tried: the class is built on
the `meta` device from its first held-out variation with X set to another
value (a size twice its value there, a flag flipped) and F left out, and
the rename is kept (`renamed_keys: {X: F}`) only where the library's state
dict then equals the description's with F at that value and differs from
the one without X (for `tie_word_embeddings`, which leaves the keys as
they are, where the built config's flag is the flipped value). The Rust side reads a config that gives X as
transformers does: X's value is F's, whether or not F is given.

generate.py calls `renamed_keys` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/config_renames.py [--only TYPE,...] [--jobs 2]
"""

import inspect
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-renames"
TYPE_SECONDS = 120
POPPED = re.compile(r'self\.(\w+)\s*=\s*kwargs\.pop\(\s*"(\w+)"\s*,\s*self\.(\w+)\s*\)')


def popped_names(config_class):
    """[(older key, field)] for each `self.F = kwargs.pop("X", self.F)` in
    the config class's source."""
    try:
        source = inspect.getsource(config_class)
    except (OSError, TypeError):
        return []
    return [(old, field) for field, old, same in POPPED.findall(source) if field == same and old != field]


def with_renames(desc, config_dict):
    """The config as transformers reads it: each older key's value moved to
    the field it stands for (the Python twin of mod.rs's
    `with_renamed_keys`)."""
    import copy
    import generate
    renames = desc.get("renamed_keys")
    if not renames:
        return config_dict
    out = None
    for old, field in renames.items():
        value = generate.read_field(config_dict, old)
        if value is None:
            continue
        out = copy.deepcopy(config_dict) if out is None else out
        generate.set_path(out, field, value)
        parent, _, key = old.rpartition(".")
        holder = generate.read_field(out, parent) if parent else out
        if isinstance(holder, dict):
            holder.pop(key, None)
    return config_dict if out is None else out


def renamed_keys(desc, config_class, model_class, base, facts):
    """{older key: field} for the class (see the module's docstring)."""
    import generate
    from unvaried_fields import description_differs
    places = [("", config_class)]
    try:
        default_dict = config_class().to_dict()
    except Exception:  # noqa: BLE001 - no default: nothing to try
        return {}
    from transformers import CONFIG_MAPPING
    for key, sub_class in (getattr(config_class, "sub_configs", {}) or {}).items():
        sub_default = default_dict.get(key)
        if not isinstance(sub_default, dict):
            continue
        # A sub-config typed AutoConfig (LFM2-VL's `text_config`) is read
        # as the class its default's `model_type` names.
        sub_type = sub_default.get("model_type")
        if isinstance(sub_type, str) and sub_type in CONFIG_MAPPING:
            sub_class = CONFIG_MAPPING[sub_type]
        if isinstance(sub_class, type):
            places.append((key + ".", sub_class))
    popped = [(prefix + old, prefix + field) for prefix, cls in places for old, field in popped_names(cls)
              if prefix + field in desc.get("fields", {}) or prefix + field == "tie_word_embeddings"]
    if not popped:
        return {}
    try:
        base_env = generate.resolve_env(desc, base)
        base_listing = generate.sample(config_class, model_class, base)[0].listing
    except Exception:  # noqa: BLE001 - a base that does not build: nothing said
        return {}
    found = {}
    for older, target in popped:
        value = base_env.get(target, desc.get(target))
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, int) and value > 0:
            new = value * 2
        else:
            continue
        d = generate.with_field(base, older, new)
        parent, _, key = target.rpartition(".")
        holder = generate.read_field(d, parent) if parent else d
        if isinstance(holder, dict):
            holder.pop(key, None)
        try:
            got, config, _ = generate.sample(config_class, model_class, d)
        except Exception:  # noqa: BLE001 - the library refuses it: says nothing
            continue
        listing = got.listing
        if target == "tie_word_embeddings":
            # Tying leaves the state dict's keys as they are; what
            # from_pretrained ties is the config's flag.
            if getattr(config, "tie_word_embeddings", None) == new:
                found[older] = target
            continue
        if listing == base_listing:
            continue
        trial = dict(desc, renamed_keys=dict(found, **{older: target}))
        if description_differs(trial, with_renames(trial, d), listing, facts) is None:
            found[older] = target
    return found


def main():
    import generate
    generate.run_one_key_pass(DONE_DIR, "renamed_keys", renamed_keys, TYPE_SECONDS,
                              "classes whose config class takes a size under an older key")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
