#!/usr/bin/env python3
"""Sizes the library rounds, found where the description divides (run by
hand, never by CI). LFM2's feed-forward is `int(2 * intermediate_size / 3)`
rounded up to a multiple of 256; every value generate.py draws for
`intermediate_size` is a multiple of the default's 12288 = 32 * 384, where
the rounding does nothing, so the description says `2*intermediate_size/3`.
At 48 that is 32 where the library builds 256: whole, and wrong. (At 49 it
is no whole number and the Rust side refused it, naming the formula; the
released LFM2-350M's 6656 among them.)

For each described class and each size field that a formula of its
description divides (a `/` that is not a floor `//`), this starts from the
class's first held-out variation, takes the first two values above the
field's value there at which the description gives whole sizes and does
not refuse, builds the model at each on the `meta` device and compares the
state dicts (fresh_values.py's comparison). Where one differs:

- each divided formula that reads the field is tried floored and rounded
  up to a multiple M, `ceil_to(2*intermediate_size/3,256)` (formula.rs),
  M a power of two up to 4096 or an integer of the config (LFM2's
  `block_multiple_of`, which unvaried_fields.py holds at its default); the
  first that matches the library at the value that differed and at the
  eight above the field's value (whole or not) replaces the formula
  everywhere in the tree, so every value builds as the library builds it;
- else a head (or group) count, or a field the formula divides by, and a
  size of the same (sub-)config, one of them the field, where the
  description agrees with the library at the next eight values that keep
  the one dividing the other (those the library builds, two at least),
  with the formula's other fields moved too, are recorded as a `divides`
  pair (BLT's decoder floors its head size: divides.py's rule, which its
  draws missed), and ckptcheck refuses a size the heads do not divide;
- else, for a head count, the field is fixed at its default; for a size,
  the least divisor L of the field's value at whose next eight multiples
  the description agrees with the library, the formula's other fields
  moved too, is recorded (`rounded: {field: L}`) and ckptcheck refuses a
  value that is not a multiple of L, naming it; where no divisor holds,
  the field is fixed at its default.

generate.py calls `rounded_fields` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/rounded_sizes.py [--only TYPE,...] [--jobs 2]
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-rounded"
TYPE_SECONDS = 300
# How far above the field's value the two values the description divides
# wholly are looked for.
SEARCH_ABOVE = 64
# A divisor, or a pair's size or heads, is tried at this many of the next
# values that keep it whole (the library refusing some: wav2vec2-conformer's
# conv groups).
PAIR_STEPS = 8
# A rounded formula must match the library at this many values above the
# field's value (whole or not under the unrounded formula).
ROUNDED_CHECKED = 8
DIVISION = re.compile(r"(?<!/)/(?!/)")
# A count that divides a size among heads or groups, and a size such a
# count divides (a width, not a kernel or a layer count: SeamlessM4T's
# `adaptor_kernel_size` is no multiple of its heads).
HEADS = re.compile(r"head|group")
WIDTH = re.compile(r"hidden|width|dim|embed|channels|d_model|(^|_)size$")
MODEL_WIDTH = re.compile(r"hidden_size|d_model|embed_dim")
KV = re.compile(r"key_value|kv_")
NOT_WIDTH = re.compile(r"kernel|stride|window|patch|layers|length|position|image")


def formulas_of(node, found):
    """Every formula string of a description's tree, in order."""
    if isinstance(node, dict):
        for value in node.values():
            formulas_of(value, found)
    elif isinstance(node, list):
        for value in node:
            formulas_of(value, found)
    elif isinstance(node, str) and re.search(r"[A-Za-z_]", node) and not node.startswith("ceil_to("):
        if node not in found:
            found.append(node)
    return found


def divided_fields(desc):
    """The size fields a formula of the description's tree divides."""
    from formulas import split_names
    found = set()
    for text in formulas_of(desc.get("tree"), []):
        if DIVISION.search(text):
            try:
                found.update(split_names(text))
            except Exception:  # noqa: BLE001 - a key, not a formula
                continue
    return [f for f, spec in desc.get("fields", {}).items()
            if f in found and not isinstance(spec.get("default"), bool) and "needs" not in spec]


def with_formula_rounded(node, text, multiple):
    """A copy of a tree with every `text` formula rounded up to `multiple`."""
    if isinstance(node, dict):
        return {k: with_formula_rounded(v, text, multiple) for k, v in node.items()}
    if isinstance(node, list):
        return [with_formula_rounded(v, text, multiple) for v in node]
    return f"ceil_to({text},{multiple})" if node == text else node


def is_width(field):
    """Whether a field is a size heads may divide (see WIDTH)."""
    name = field.rpartition(".")[2]
    return bool(WIDTH.search(name)) and not NOT_WIDTH.search(name) and not HEADS.search(name)


def divides_pair(field, value, base_env, mended, base, holds, moved, texts, text_fields):
    """[size, heads] for a field that is either, where the description
    (refusing what the pair refuses) agrees with the library at the other
    values of it that keep the heads dividing the size, with the formula's
    other fields moved too; None where no such pair holds. The partner is a
    head or group count, or a field the divided formula divides by
    (SegGPT's `patch_size` under its image size)."""
    import generate
    def config_of(name):
        # A list's entry (`image_size.0`) belongs to the list's config.
        return re.sub(r"\.\d+$", "", name).rpartition(".")[0]
    same_config = config_of(field)
    divisors = {name for text in texts for name in re.findall(r"(?<!/)/([A-Za-z_][\w.]*)", text)}
    candidates = []
    for other, other_value in base_env.items():
        if other == field or other not in mended["fields"] or config_of(other) != same_config:
            continue
        if not isinstance(other_value, int) or isinstance(other_value, bool) or other_value < 1:
            continue
        other_is_divisor = HEADS.search(other.rpartition(".")[2]) or other in divisors
        field_is_divisor = HEADS.search(field.rpartition(".")[2]) or field in divisors
        if other_is_divisor and (is_width(field) or other in divisors) \
                and 2 <= other_value < value and value % other_value == 0:
            tries = [value + k * other_value for k in range(1, PAIR_STEPS + 1)]
            # The query heads before the key-value heads they group.
            candidates.append(((0, 1 if KV.search(other) else 0, other_value), [field, other], tries))
        elif field_is_divisor and (is_width(other) or field in divisors) \
                and other_value > value and other_value % value == 0:
            tries = [h for h in range(value + 1, other_value + 1) if other_value % h == 0][:PAIR_STEPS]
            # The model's width first (SeamlessM4T's speech heads divide its
            # `hidden_size`, not its 160-wide feature projection).
            candidates.append(((1, 0 if MODEL_WIDTH.search(other) else 1, other_value), [other, field], tries))
    for _, pair, tries in sorted(candidates, key=lambda c: c[0]):
        configs = [generate.with_field(base, field, new) for new in tries]
        if holds(mended, moved(configs, text_fields, field), [pair]):
            return pair
    return None


def rounding_multiples(default_dict):
    """The multiples a size may be rounded up to: powers of two up to 4096
    and the config's own integers in that range (LFM2's
    `block_multiple_of`)."""
    import generate
    ints, _, _ = generate.flatten(default_dict)
    return sorted({2 ** k for k in range(1, 13)} | {v for v in ints.values() if 2 <= v <= 4096})


def rounded_fields(desc, config_class, model_class, base, facts):
    """({formula: M}, {field: L}, {field: default}, {field: (value, first
    difference)}, [[field, heads]]): the formulas rounded up to a multiple
    that match the library, the multiples the description holds at for
    each divided field none of those mends (a head count's where one
    holds, listed last as a `divides` pair), the fields fixed where no
    multiple holds either, and where each was seen to differ. `desc` is
    left as it is."""
    import generate
    from formulas import split_names
    from unvaried_fields import description_differs
    rounded_formulas, rounded, fixed, where, divided = {}, {}, {}, {}, []
    try:
        base_env = generate.resolve_env(desc, base)
        default_dict = config_class().to_dict()
    except Exception:  # noqa: BLE001 - a base the twin cannot resolve: nothing said
        return rounded_formulas, rounded, fixed, where, divided
    built = {}

    def library(d):
        key = generate.json.dumps(d, sort_keys=True)
        if key not in built:
            try:
                built[key] = generate.sample(config_class, model_class, d)[0].listing
            except Exception:  # noqa: BLE001 - the library refuses it
                built[key] = None
        return built[key]

    def accepted(description, d):
        try:
            env = generate.resolve_env(description, d)
            if generate.refused_by(dict(description, rounded=rounded,
                                        divides=description.get("divides", []) + divided), env):
                return False
            generate.expand(description["tree"], env)
            return True
        except generate.Misfit:
            return False

    def differs(description, d):
        listing = library(d)
        return None if listing is None else description_differs(description, d, listing, facts)

    def holds(description, configs, extra_rules=()):
        """Whether the description, with `extra_rules` ([size, heads] pairs)
        among its refusals, agrees with the library at every config the
        library builds and it does not refuse, two of them at least: a
        value the library refuses says nothing either way."""
        trial = dict(description, divides=description.get("divides", []) + list(extra_rules))
        seen = [d for d in configs if library(d) is not None and accepted(trial, d)]
        return len(seen) >= 2 and all(differs(trial, d) is None for d in seen)

    def moved(configs, text_fields, field):
        """Each config again with every other field of the divided formulas
        moved (twice, three times its value): a rule found at the base's
        head count or patch size must hold at others too."""
        out = list(configs)
        for other in text_fields:
            value = base_env.get(other)
            if other != field and isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out += [generate.with_field(d, other, value * factor) for d in configs for factor in (2, 3)]
        return out

    def starts(field):
        """The base, then the base with each other field of the formulas
        that divide `field` one above its value: DINOv2's SwiGLU width
        `2*hidden_size*mlp_ratio/3` is a multiple of 8 wherever it is whole
        at `mlp_ratio` 4, and the library's rounding shows at 5 only."""
        out = [base]
        for text in formulas_of(mended.get("tree"), []):
            if not DIVISION.search(text) or field not in split_names(text):
                continue
            for other in split_names(text):
                value = base_env.get(other)
                if other != field and isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    moved_once = generate.with_field(base, other, value + 1)
                    if moved_once not in out:
                        out.append(moved_once)
        return out

    mended = desc
    for field in divided_fields(desc):
        value = base_env.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            continue
        for start in starts(field):
            tried = 0
            for new in range(value + 1, value + SEARCH_ABOVE + 1):
                d = generate.with_field(start, field, new)
                if not accepted(mended, d):
                    continue
                tried += 1
                first = differs(mended, d)
                if first is not None:
                    where[field] = (new, first)
                    break
                if tried == 2:
                    break
            if field in where:
                break
        if field not in where:
            continue
        # The rest searches from where the difference showed.
        origin = start
        differing = generate.with_field(origin, field, where[field][0])
        checks = [differing] + [generate.with_field(origin, field, value + k) for k in range(1, ROUNDED_CHECKED + 1)]
        found = None
        for text in formulas_of(mended.get("tree"), []):
            if not DIVISION.search(text) or field not in split_names(text):
                continue
            # Each other field the formula reads moved too, the field at the
            # value that differed: a multiple that only matches while
            # another field holds its value (Qwen3-Omni's audio tower, its
            # `downsample_hidden_size` 480 times a ceiled mel count) is no
            # rounding of the formula.
            others = [generate.with_field(differing, other, base_env[other] * factor)
                      for other in dict.fromkeys(split_names(text)) if other != field
                      and isinstance(base_env.get(other), int) and base_env[other] > 0 for factor in (2, 3)]
            for multiple in rounding_multiples(default_dict):
                trial = dict(mended, tree=with_formula_rounded(mended["tree"], text, multiple))
                seen = [d for d in checks if library(d) is not None and accepted(trial, d)]
                if len(seen) > ROUNDED_CHECKED // 2 and seen[0] is differing and \
                        all(differs(trial, d) is None for d in seen + others if accepted(trial, d)):
                    found = (text, multiple, trial)
                    break
            if found:
                break
        if found:
            rounded_formulas[found[0]] = found[1]
            mended = found[2]
            continue
        # A head count and a size of the same (sub-)config where the
        # description holds whenever the heads divide the size (BLT's
        # decoder floors its head size, as divides.py finds where a size one
        # larger builds; GLM-4.6V's with 48 heads over 4096): the pair, so
        # that the rule follows both where a config changes them. The size
        # is tried at the next multiples of the heads, the heads at the
        # next counts that divide the size.
        texts = [text for text in formulas_of(mended.get("tree"), [])
                 if DIVISION.search(text) and field in split_names(text)]
        text_fields = sorted({f for text in texts for f in split_names(text)})
        pair = divides_pair(field, value, base_env, mended, origin, holds, moved, texts, text_fields)
        if pair is not None:
            divided.append(pair)
            continue
        default = generate.read_field(default_dict, field)
        if HEADS.search(field.rpartition(".")[2]):
            fixed[field] = default
            continue
        for divisor in range(2, value + 1):
            if value % divisor:
                continue
            multiples = [generate.with_field(origin, field, value + k * divisor) for k in range(1, PAIR_STEPS + 1)]
            if holds(mended, moved(multiples, text_fields, field)):
                rounded[field] = divisor
                break
        else:
            fixed[field] = default
    return rounded_formulas, rounded, fixed, where, divided


def apply_rounded(desc, rounded_formulas, rounded, fixed, divided):
    """What rounded_fields found, into a description."""
    for pair in divided:
        if pair not in desc.get("divides", []):
            desc["divides"] = desc.get("divides", []) + [pair]
    for text, multiple in rounded_formulas.items():
        desc["tree"] = with_formula_rounded(desc["tree"], text, multiple)
    if rounded:
        desc["rounded"] = dict(desc.get("rounded", {}), **rounded)
    if fixed:
        desc["fixed"] = dict(desc.get("fixed", {}), **fixed)


def apply_to_type(model_type):
    import generate
    from assemble import sub_config_facts
    facts = sub_config_facts(model_type).get("sub_configs", {})

    def check(name, desc, config_class, model_class, base):
        formulas, rounded, fixed, where, divided = rounded_fields(desc, config_class, model_class, base, facts)
        if not where:
            return {}
        return {name: {"formulas": formulas, "rounded": rounded, "fixed": fixed, "divides": divided,
                       "where": {f: list(w) for f, w in where.items()}}}
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def write_back(types):
    import generate

    def update(name, desc, found, cached):
        before = generate.json.dumps(desc, sort_keys=True)
        apply_rounded(desc, found.get("formulas", {}), found.get("rounded", {}), found.get("fixed", {}),
                      found.get("divides", []))
        return generate.json.dumps(desc, sort_keys=True) != before
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back,
                      "classes whose library rounds a size the description divides")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
