#!/usr/bin/env python3
"""Lists whose length changes no tensor (run by hand, never by CI).
A description holds each integer list of the default config at its
default length (`lists`), and ckptcheck refuses a config.json whose list
has another length: right for Swin's `depths`, whose entries are its
stages, but DINOv2's backbone builds the same tensors whichever layers
`out_indices` names, and a Depth Anything or DPT config that picks four
of them ([9, 10, 11, 12]) was refused for writing four where the default
writes one. GLM's three `eos_token_id`s likewise.

For each described class and each list the description reads no entry of
(no `L.i` among its fields, fixed fields or formulas), the class is built
on the `meta` device from its first held-out variation, and from a config
that writes nothing else, with the list one entry longer (a value below its least or above its greatest, kept in
order: backbones take their stage indices ascending) and, where it has
two or more, one shorter, `out_features` beside it left for the library to
derive; each config the library builds is compared with the description
(fresh_values.py's comparison). Where one of each builds from both
configs and gives the description's tensors, the list is listed
(`free_lengths: [list, ...]`) and ckptcheck takes any length of it; else
nothing is listed and the length stays checked.

generate.py calls `free_lengths` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/list_lengths.py [--only TYPE,...] [--jobs 2]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-list-lengths"
TYPE_SECONDS = 300


def unread_lists(desc):
    """The lists of the description none of whose entries it reads."""
    text = json.dumps({k: v for k, v in desc.items() if k not in ("lists", "free_lengths")})
    return [name for name in desc.get("lists", {}) if f"{name}." not in text]


def other_lengths(values):
    """The list one entry longer (each way that keeps it in order), and
    one shorter where it has two or more entries."""
    longer = []
    for extra in (min(values) - 1, max(values) + 1, min(values) - 2, max(values) + 2):
        if extra >= 0 and extra not in values:
            grown = sorted(values + [extra]) if values == sorted(values) else values + [extra]
            if grown not in longer:
                longer.append(grown)
    shorter = [values[:-1], values[1:]] if len(values) >= 2 else []
    return longer, shorter


def with_list(generate, base, name, values):
    """`base` with the list at `values`; a backbone's `out_features` beside
    `out_indices` set to null, for the library to derive from them (it
    refuses the two disagreeing)."""
    d = generate.with_field(base, name, values)
    parent, _, last = name.rpartition(".")
    if last == "out_indices":
        sibling = f"{parent}.out_features" if parent else "out_features"
        if generate.read_field(d, sibling) is not None:
            d = generate.with_field(d, sibling, None)
    return d


def free_lengths(desc, config_class, model_class, base, facts):
    """[list] for the class (see the module's docstring)."""
    import generate
    from fresh_values import compare_with_description
    desc = {k: v for k, v in desc.items() if k != "free_lengths"}
    # The list also tried in a config that writes nothing else (but the
    # fields the class requires): a size the config class derives from the
    # list's length (Autoformer's `feature_size`, `len(lags_sequence)`
    # features and more) is written in a saved config.json, where the
    # description reads it, and left out of a hand-written one, where the
    # description's default holds for the default length only.
    minimal = {}
    for field, value in desc.get("required", {}).items():
        given = generate.read_field(base, field)
        minimal = generate.with_field(minimal, field, value if given is None else given)
    found = []
    for name in unread_lists(desc):
        values = generate.read_field(base, name)
        if values is None:
            values = generate.read_field(config_class().to_dict(), name)
        if not isinstance(values, (list, tuple)) or not values \
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            continue
        values = list(values)
        longer, shorter = other_lengths(values)
        verdicts = []
        for group in (longer, shorter):
            # The first of each group the library builds; a group none of
            # which builds leaves the length checked (the library may
            # refuse a shorter list the description would take).
            verdict = "unbuilt" if group else "same"
            for trial in group:
                seen = []
                for start in (base, minimal):
                    config_dict = with_list(generate, start, name, trial)
                    try:
                        library = generate.sample(config_class, model_class, config_dict)[0]
                    except Exception:  # noqa: BLE001 - the library refuses it: the next is tried
                        break
                    seen.append(compare_with_description(desc, config_dict, library.listing, facts)[0])
                if len(seen) == 2:
                    verdict = "same" if seen == ["same", "same"] else "differs"
                    break
            verdicts.append(verdict)
        if all(v == "same" for v in verdicts):
            found.append(name)
    return found


def main():
    import generate
    generate.run_one_key_pass(DONE_DIR, "free_lengths", free_lengths, TYPE_SECONDS,
                              "classes with a list whose length changes no tensor")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
