#!/usr/bin/env python3
"""Config fields the derivation never varies, tried at other values (run by
hand, never by CI). generate.py varies integer fields and flips flags; a
float it leaves alone, and an integer it calls irrelevant once one other
value leaves the state dict as it was. Both can still size tensors:
LFM2's feed-forward is `block_multiple_of * ceil(int(block_ffn_dim_multiplier
* int(2 * intermediate_size / 3)) / block_multiple_of)`, so doubling the
multiple of 256 to 512 changes nothing at the default width, yet 257 does,
and a multiplier of 1.5 makes it half as wide again; Swin's `mlp_ratio`
(4.0) sizes every block's feed-forward. A description blind to such a
field gives the default's shapes for any value of it: a wrong answer.

For each described class this starts from the class's first held-out
variation (small layer counts), sets each float of the config (its
sub-configs' too) to twice and half its value and to 0 (0.5 and 1.0 where
it is 0),
and each integer the description neither describes nor fixes to one more
and three times its value, builds the model on the `meta` device and
compares its state dict with the description's (keys, order, shapes,
dtypes), as fresh_values.py does for the size fields. A field at which the
description gives other tensors than the library is recorded as `fixed`
at its default, so ckptcheck refuses a config that changes it, naming it,
rather than answer with the default's shapes. A float at which only 0
differs (twice and half its value agree) is recorded as `nonzero` instead:
wav2vec2's `mask_time_prob` (0.05) adds `masked_spec_embed` while it is
above 0 (or `mask_feature_prob` is), and its fine-tunes say 0.075 as often
as 0.05, so ckptcheck refuses 0 alone, naming it. A value the library does
not build, or the description refuses, says nothing.

generate.py calls `unvaried_fixed` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/unvaried_fields.py [--only TYPE,...] [--jobs 2]
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-unvaried"
TYPE_SECONDS = 300


def floats_of(d, prefix=""):
    """{dotted path: value} for every float of a config dict, in lists and
    sub-configs too (the Rust side reads `mlp_ratios.2` as generate.py
    writes list entries)."""
    import generate
    out = {}
    for key, value in d.items():
        name = prefix + str(key)
        if key in generate.SKIP_KEYS or str(key).startswith("_"):
            continue
        if isinstance(value, float):
            out[name] = value
        elif isinstance(value, dict):
            out.update(floats_of(value, name + "."))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, float):
                    out[f"{name}.{i}"] = item
    return out


def other_values(value):
    """The values a field is tried at: a float twice and half its value, and
    0 (BEiT and ConvNeXt add their layer-scale parameters only while
    `layer_scale_init_value` is above 0), or 0.5 and 1.0 where it is 0; an
    integer one more and three times it (so that a size rounded up to a
    multiple of it changes: 257 where 512 does not)."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return []
        return [0.5, 1.0] if value == 0 else [value * 2, value / 2, 0.0]
    return [1, 2] if value <= 0 else [value + 1, value * 3]


def description_differs(desc, config_dict, listing, facts):
    """The first difference between the description of a class, for a config
    dict, and the library's state dict `listing` for it; None where they
    agree or where the Rust side refuses the config (fresh_values.py's
    comparison)."""
    from fresh_values import compare_with_description
    verdict, detail = compare_with_description(desc, config_dict, listing, facts)
    return detail if verdict == "wrong" else None


def unvaried_fixed(desc, config_class, model_class, base, facts):
    """{field: default} for each field generate.py does not vary at which the
    description differs from the library (see the module's docstring),
    {field: (value, first difference)} saying where, and the floats at
    which only 0 differs (`nonzero`, sorted), each with the floats that
    build the description's tensors again at 0 when set above their own
    default of 0 (`nonzero_unless`)."""
    import generate
    # Run again over the cache, the description's own `nonzero` would refuse
    # the 0 this looks for: it is found again.
    desc = {k: v for k, v in desc.items() if k not in ("nonzero", "nonzero_unless")}
    try:
        default_dict = config_class().to_dict()
    except Exception:  # noqa: BLE001 - no default: nothing to try
        return {}, {}, [], {}
    ints, _, _ = generate.flatten(default_dict)
    described = set(desc.get("fields", {})) | set(desc.get("fixed", {})) | set(desc.get("undeclared", {}))
    # A field the description reads by another road (a list that chooses
    # layers, the fields converted into it) is left to that road.
    mentioned = set(re.findall(r'"([A-Za-z_][\w.]*)"', generate.json.dumps(
        {k: v for k, v in desc.items() if k not in ("tree", "fields", "fixed")})))
    tried = dict(floats_of(default_dict))
    tried.update({f: v for f, v in ints.items() if f not in described and f != "num_labels"})
    found, where, nonzero = {}, {}, []
    for field, default in tried.items():
        if field in described or field.split(".")[0] in mentioned or field in mentioned:
            continue
        for new in other_values(default):
            d = generate.with_field(base, field, new)
            try:
                got, _, _ = generate.sample(config_class, model_class, d)
            except Exception:  # noqa: BLE001 - the library refuses it: says nothing
                continue
            first = description_differs(desc, d, got.listing, facts)
            if first is not None:
                if new == 0 and isinstance(default, float) and default != 0:
                    # 0 is tried last: twice and half agreed.
                    nonzero.append(field)
                else:
                    found[field] = default
                where[field] = (new, first)
                break
    return found, where, sorted(nonzero), zero_made_up(desc, config_class, model_class, base, facts, nonzero, tried)


def zero_made_up(desc, config_class, model_class, base, facts, nonzero, tried):
    """{field of `nonzero`: [floats]}: the floats (0 by default) that, set
    to 0.5 while the field is 0, give the description's tensors again.
    wav2vec2 builds `masked_spec_embed` while `mask_time_prob` or
    `mask_feature_prob` is above 0, so a fine-tune that masks features
    only (`mask_time_prob` 0, `mask_feature_prob` 0.1) builds the
    description's tensors and is not refused."""
    import generate
    found = {}
    for field in sorted(nonzero):
        for other, default in tried.items():
            if other == field or not isinstance(default, float) or default != 0:
                continue
            d = generate.with_field(generate.with_field(base, field, 0.0), other, 0.5)
            try:
                got, _, _ = generate.sample(config_class, model_class, d)
            except Exception:  # noqa: BLE001 - the library refuses it: says nothing
                continue
            if description_differs(desc, d, got.listing, facts) is None:
                found.setdefault(field, []).append(other)
    return found


def apply_to_type(model_type):
    import generate
    from assemble import sub_config_facts
    facts = sub_config_facts(model_type).get("sub_configs", {})

    def check(name, desc, config_class, model_class, base):
        found, where, nonzero, unless = unvaried_fixed(desc, config_class, model_class, base, facts)
        return ({name: {"fixed": found, "nonzero": nonzero, "nonzero_unless": unless,
                        "where": {f: list(w) for f, w in where.items()}}}
                if found or nonzero else {})
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def write_back(types):
    import generate

    def update(name, desc, found, cached):
        added = {f: v for f, v in found.get("fixed", {}).items() if f not in desc.get("fixed", {})}
        nonzero = sorted(set(desc.get("nonzero", [])) | set(found.get("nonzero", [])))
        unless = dict(desc.get("nonzero_unless", {}), **found.get("nonzero_unless", {}))
        if not added and nonzero == desc.get("nonzero", []) and unless == desc.get("nonzero_unless", {}):
            return False
        if added:
            desc["fixed"] = dict(desc.get("fixed", {}), **added)
        if nonzero:
            desc["nonzero"] = nonzero
        if unless:
            desc["nonzero_unless"] = unless
        return True
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back,
                      "classes with a field the derivation does not vary that changes their tensors")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
