#!/usr/bin/env python3
"""Sizes a head count must divide for a description to hold (run by hand,
never by CI). Many attention modules do not refuse a width their head count
does not divide, as BERT's does: they floor the head size and build
projections `heads * (width // heads)` wide (ViT-MAE, SegFormer, Qwen2's
language model inside Qwen2-Audio: a width of 1000 with 12 heads gives
996-wide projections). Every sample generate.py draws has widths the heads
divide, so the descriptions say `width` where the library computes the
floored product; equal_sizes.py found it as 144 "wrong" pairs (a width set
to another size's value that the heads do not divide).

For each described class, each head-count field and each size field of the
same (sub-)config that the heads divide in the class's first held-out
variation, this builds the class with the size one larger on the `meta`
device. Where the library builds it and the description gives other
tensors, while with the size one head count larger (divided again) the
description holds, the pair is listed (`divides`: [[size, heads], ...]) and
ckptcheck refuses a config whose heads do not divide that size, naming
both, rather than give the unfloored shapes. Any other difference is
printed as a finding (`wrong`) and nothing is written for it.

    /tmp/zoo/bin/python src/arch/zoo/divides.py [--only TYPE,...] [--jobs 2]
"""

import itertools
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-divides"
TYPE_SECONDS = 300


def unindexed(field):
    """A field without its list index (`num_attention_heads.2` for the
    third stage's heads: `num_attention_heads`)."""
    return re.sub(r"\.\d+$", "", field)


def pairable(size, heads):
    """Whether a head count can divide a size: both of the same
    (sub-)config, and of the same stage where both are per-stage lists
    (SegFormer's `hidden_sizes.2` and `num_attention_heads.2`)."""
    size_index, heads_index = size[len(unindexed(size)):], heads[len(unindexed(heads)):]
    if size_index and heads_index and size_index != heads_index:
        return False
    return unindexed(size).rpartition(".")[0] == unindexed(heads).rpartition(".")[0]


def divides_rules(desc, base_dict, build):
    """([[size, heads]], wrong) for a class: `build` is generate.py's
    `sample` (config dict -> Sample), `base_dict` its first held-out
    variation. A head count may size no tensor (ViT-MAE's), so the head
    fields are the config's, not only the description's."""
    import generate
    from equal_sizes import drop_keys_if_equal, size_fields
    from formulas import Misfit
    env = generate.resolve_env(desc, base_dict)
    ints = build(base_dict).env
    sizes = size_fields(desc, env)
    heads = [f for f, v in ints.items() if generate.HEADS_FIELD.search(unindexed(f)) and isinstance(v, int)
             and not isinstance(v, bool) and v >= 2]
    known = {tuple(pair) for pair in desc.get("multiples", [])}

    def same(d):
        """Whether the description gives the library's tensors for `d`;
        None where either refuses it."""
        try:
            got = build(d)
        except Exception:
            return None
        try:
            env_d = generate.resolve_env(desc, d)
            if generate.refused_by(desc, env_d):
                return None
            mine = drop_keys_if_equal(desc, env_d, generate.expand(desc["tree"], env_d))
        except Misfit:
            # A size of no whole number: ckptcheck refuses the config.
            return None
        return [tuple(t) for t in mine] == [tuple(t) for t in got.listing]

    rules, wrong = [], []
    for s in sizes:
        if generate.HEADS_FIELD.search(unindexed(s)):
            continue
        divisors = [h for h in heads if h != s and tuple([s, h]) not in known and pairable(s, h)
                    and env[s] % ints[h] == 0]
        if not divisors or same(generate.with_field(base_dict, s, env[s] + 1)) is not False:
            continue
        every = math.lcm(*(ints[h] for h in divisors))
        control = same(generate.with_field(base_dict, s, env[s] + every))
        if control is None:
            continue
        if not control:
            wrong.append([s, divisors])
            continue
        # Which head counts floor it: one is innocent where the size moved
        # by a multiple of some of the others (or by 1), which it does not
        # divide, or the count moved to a value that does not divide the
        # size, still gives the library's tensors; the rest must divide
        # it. None found responsible: the difference is not divisibility.
        responsible = []
        for h in divisors:
            others = [ints[o] for o in divisors if o != h]
            steps = {math.lcm(*subset) if subset else 1
                     for n in range(len(others) + 1) for subset in itertools.combinations(others, n)}
            innocent = any(same(generate.with_field(base_dict, s, env[s] + k)) is True
                           for k in sorted(steps) if k % ints[h])
            # Or the head count itself moved to a value that does not divide
            # the size (key/value heads as many as the query heads cannot be
            # told apart by the size alone).
            innocent = innocent or any(same(generate.with_field(base_dict, h, value)) is True
                                       for value in (ints[h] + 1, ints[h] * 3, 3, 5, 7)
                                       if value > 1 and env[s] % value)
            if not innocent:
                responsible.append(h)
        if responsible:
            rules += [[s, h] for h in responsible]
        else:
            wrong.append([s, divisors])
    return rules, wrong


def head_field_specs(desc, rules, config_class):
    """The description's field entries for the head counts of `rules` it
    does not have yet (a head count that sizes no tensor), as generate.py
    derives defaults; the rules whose head count's default follows fields
    the description lacks are left out, never written half."""
    import random

    import generate
    from formulas import split_names
    ints = generate.flatten(config_class().to_dict())[0]
    specs, kept = {}, []
    for size, heads in rules:
        if heads in desc["fields"] or heads in specs:
            kept.append([size, heads])
            continue
        relevant = [f for f in ints if f in desc["fields"] or f == heads]
        try:
            spec = generate.derive_defaults(config_class, ints, {heads}, relevant,
                                            random.Random(f"divides/{heads}"))[heads]
        except Exception:
            continue
        named = [v for v in spec.values() if isinstance(v, str)]
        if any(f not in desc["fields"] for v in named for f in split_names(v)):
            continue
        specs[heads] = spec
        kept.append([size, heads])
    return specs, kept


def add_divides(desc, rules, config_class):
    """The rules into a description, with the head fields they need."""
    desc.pop("divides", None)
    specs, kept = head_field_specs(desc, rules, config_class)
    if kept:
        desc["fields"].update(specs)
        desc["divides"] = kept
    return kept


def apply_to_type(model_type):
    import generate

    def check(name, desc, config_class, model_class, base):
        plain = {k: v for k, v in desc.items() if k != "divides"}
        try:
            rules, wrong = divides_rules(plain, base, lambda d: generate.sample(config_class, model_class, d)[0])
        except Exception as e:  # noqa: BLE001 - reported, the class left as it is
            return {name: {"error": f"{type(e).__name__}: {e}"}}
        found = {"wrong": {name: wrong}} if wrong else {}
        if rules:
            specs, kept = head_field_specs(plain, rules, config_class)
            found[name] = {"divides": kept, "fields": specs}
        return found
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def write_back(types):
    import generate

    def update(name, desc, entry, cached):
        if "error" in entry:
            return False
        desc.pop("divides", None)
        if not entry.get("divides"):
            return False
        desc["fields"].update(entry["fields"])
        desc["divides"] = entry["divides"]
        return True
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back, "classes with sizes their heads must divide")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
