#!/usr/bin/env python3
"""Tensors that exist only while two sizes differ (run by hand, never by
CI). A module built only `if config.embedding_size != config.hidden_size`
(ELECTRA's `embeddings_project`) or a shortcut built only where a block's
input and output widths differ (ResNet's first basic block, whose input is
the stem's `embedding_size`) is there in every sample generate.py draws,
since random sizes almost never coincide; the releases that make them
equal (electra-base and -large, 768 and 1024 both; ResNet-18 and 34, 64
and 64) then got tensors the library does not build.

For each pair of size fields of a described class, this sets the second to
the first's value on the class's first held-out variation, builds the model
on the `meta` device and compares it with the description. A difference is
the equality's only if the description holds with the second field at a
nearby size equal to no other; then, where the library lacks some of the
description's tensors and holds the rest as described, and the same holds
with both fields at a second common value, those tensors exist only while
the two differ (`keys_if_distinct`: [a, b, [keys]]), and both equal samples
go into the class's held-out variations, so the matrix test checks them.
Every other difference is printed as a finding (`wrong`: the description
differs at that size whatever the other field, or equal sizes change more
than which tensors exist), for the class to be derived again; nothing is
written for it.

generate.py calls `equal_size_rules` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/equal_sizes.py [--only TYPE,...] [--jobs 2]
"""

import itertools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-equal"
TYPE_SECONDS = 240
# Pairs tried per class at most (a class of 30 size fields has 435).
MAX_PAIRS = 300


def size_fields(desc, env):
    """The description's size fields a pair can be made of: integers above
    one with an integer default, not layer counts, not labels."""
    import generate
    out = []
    for field, spec in desc["fields"].items():
        value = env.get(field)
        if (isinstance(spec.get("default"), bool) or not isinstance(value, int) or isinstance(value, bool)
                or value < 2 or field == "num_labels" or generate.LAYER_FIELD.search(field)):
            continue
        out.append(field)
    return out


def drop_keys_if_equal(desc, env, listing):
    """The Python twin of the Rust evaluator's `keys_if_distinct`."""
    dropped = set()
    for a, b, keys in desc.get("keys_if_distinct", []):
        if env.get(a) is not None and env.get(a) == env.get(b):
            dropped.update(keys)
    return [t for t in listing if t[0] not in dropped] if dropped else listing


def equal_size_rules(desc, base_dict, build):
    """(keys_if_distinct, samples, wrong) for a class: `build` is
    generate.py's `sample` (config dict -> Sample), `base_dict` the first
    held-out variation. The samples are the equal-size configs the rules
    were checked on, as generate.py's Sample with `config_dict` set;
    `wrong` the pairs [a, b] where the description differs from the
    library with b at a size equal to no other ([a, b, "equal"]: equal
    sizes change more than which tensors exist)."""
    import generate
    from formulas import Misfit
    env = generate.resolve_env(desc, base_dict)
    fields = size_fields(desc, env)
    rules, samples, wrong = [], [], []

    def compare(d):
        """(library sample, the description's listing) for a config, or
        None where the library does not build it or ckptcheck refuses it."""
        try:
            got = build(d)
        except Exception:
            return None
        env_d = generate.resolve_env(desc, d)
        if generate.refused_by(desc, env_d):
            return None
        try:
            mine = generate.expand(desc["tree"], env_d)
        except Misfit:
            return None
        return got, drop_keys_if_equal(desc, env_d, mine)

    def removed(mine, listing):
        """The keys of `mine` the library lacks, where it holds the rest
        exactly as described; None otherwise."""
        names = {t[0] for t in listing}
        kept = [t for t in mine if t[0] in names]
        if kept != listing:
            return None
        return [t[0] for t in mine if t[0] not in names]

    values = set(env[f] for f in fields)
    for a, b in list(itertools.combinations(fields, 2))[:MAX_PAIRS]:
        if env[a] == env[b]:
            continue
        first = generate.with_field(base_dict, b, env[a])
        found = compare(first)
        if found is None or found[0].listing == found[1]:
            continue
        # The difference is the equality's only if the description holds
        # with the second field at a value near the first's that equals no
        # size: else the description is wrong at that size whatever the
        # other field (a finding of its own, `wrong`).
        control = None
        for value in (env[a] * 2, env[a] * 3, env[a] + 1, env[a] * 4):
            if value in values:
                continue
            control = compare(generate.with_field(base_dict, b, value))
            if control is not None:
                break
        if control is None:
            continue
        if control[0].listing != control[1]:
            wrong.append([a, b])
            continue
        got, mine = found
        keys = removed(mine, got.listing)
        confirmed = None
        if keys:
            for value in (env[a] * 2, env[b] * 2, env[a] + env[b]):
                second = generate.with_field(generate.with_field(base_dict, a, value), b, value)
                again = compare(second)
                if again is None:
                    continue
                confirmed = removed(again[1], again[0].listing) == keys and (second, again[0])
                break
        if keys and confirmed:
            rules.append([a, b, keys])
            for d, s in ((first, got), confirmed):
                s.config_dict = d
                samples.append(s)
            desc.setdefault("keys_if_distinct", []).append([a, b, keys])
        else:
            wrong.append([a, b, "equal"])
    desc.pop("keys_if_distinct", None)
    return rules, samples, wrong


def apply_to_type(model_type):
    import generate

    def check(name, desc, config_class, model_class, base):
        plain = {k: v for k, v in desc.items() if k != "keys_if_distinct"}
        try:
            rules, samples, wrong = equal_size_rules(
                json.loads(json.dumps(plain)), base, lambda d: generate.sample(config_class, model_class, d)[0])
        except Exception as e:  # noqa: BLE001 - reported, the class left as it is
            return {name: {"error": f"{type(e).__name__}: {e}"}}
        found = {"wrong": {name: wrong}} if wrong else {}
        if rules:
            found[name] = {"keys_if_distinct": rules,
                           "samples": [{"config": json.loads(json.dumps(s.config_dict, default=str)),
                                        "state_dict": [[k, sh, dt] for k, sh, dt in s.listing]}
                                       for s in samples]}
        return found
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def add_rules(desc, rules):
    """The rules into a description (as generate.py writes them)."""
    if rules:
        desc["keys_if_distinct"] = rules


def write_back(types):
    import generate
    from assemble import class_key, digest

    def update(name, desc, rules, cached):
        if not rules or "error" in rules:
            return False
        desc.pop("keys_if_distinct", None)
        add_rules(desc, rules["keys_if_distinct"])
        row = next(m for m in cached["matrix"] if class_key(m["class"], m.get("when", {})) == name)
        row["variations"] = [v for v in row["variations"] if not v.get("equal_sizes")]
        for s in rules["samples"]:
            # Whole where the row keeps its listings whole, else as
            # assemble.py leaves the others.
            variation = {"config": s["config"], "equal_sizes": True}
            if row["variations"] and "state_dict" not in row["variations"][0]:
                listing = [tuple(x) for x in s["state_dict"]]
                variation.update(count=len(listing), digest=digest(listing))
            else:
                variation["state_dict"] = s["state_dict"]
            row["variations"].append(variation)
        return True
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back,
                      "classes with keys that exist only while two sizes differ")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
