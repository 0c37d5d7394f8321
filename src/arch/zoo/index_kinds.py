#!/usr/bin/env python3
"""Layers whose kind a list of layer indexes chooses (run by hand, never by
CI; generate.py calls it). SAM's ViT builds layer `i` with global attention
where `i` is in `global_attn_indexes` and windowed attention elsewhere
(`window_size=config.window_size if i not in config.global_attn_indexes
else 0`): a global layer's relative positions have `2*image_size/patch_size
- 1` rows, a windowed one's `2*window_size - 1`. generate.py describes a
ModuleList as one repeated body, so the derivation failed on those rows
("no formula for a size that depends on window_size") and SAM, SAM-HQ,
GOT-OCR2's and DeepSeek-OCR 2's SAM towers and PP-FormulaNet were
"unknown family".

Where a class's config has a list of distinct layer indexes beside a
layer count (top level or one sub-config down) whose every-index and
no-index forms build other tensors under one ModuleList's layers only
(`choosing_lists`), the class is first derived twice: with the list
empty (every layer unlisted) and with every index listed (`EveryIndex`, a list that holds any index, at any
depth). Where both derive, have their layers at one place and differ
nowhere else, the ModuleList becomes the chooser kinds.py writes for a
list of names (`"by": [path], "kinds": [["unlisted", body], ["listed",
body]]`) and the class's `named_lists[path]` says the list is of indexes
(`"indexes": true`, its `count` field and its `default`): layer `i` is
"listed" where `i` is in the list config.json gives (else the default's),
an index past the last layer choosing nothing, as in transformers. The
joined description is checked against the library on other lists at other
depths; those samples and both derivations' held-out variations (with
their lists written out) go into the class's matrix rows. Where that does
not hold, the class is derived plainly, as before.
"""

import copy

UNLISTED, LISTED = "unlisted", "listed"


class EveryIndex(list):
    """An index list that holds every layer: empty as data (no entry for
    the derivation to vary), but `i in it` for any `i`."""

    def __contains__(self, item):
        return True

    def __deepcopy__(self, memo):
        return EveryIndex()


def index_lists(config_dict):
    """(path, count field) for each list of distinct layer indexes, at the
    top level or one sub-config down, beside an integer layer count every
    index is below (SAM's `vision_config.global_attn_indexes` [2, 5, 8, 11]
    beside `vision_config.num_hidden_layers` 12)."""
    import generate
    holders = [("", config_dict)] + [(f"{key}.", value) for key, value in config_dict.items()
                                     if isinstance(value, dict)]
    for prefix, holder in holders:
        counts = {field: value for field, value in holder.items()
                  if isinstance(value, int) and not isinstance(value, bool)
                  and generate.LAYER_FIELD.search(str(field))}
        for field, value in holder.items():
            if not (isinstance(value, (list, tuple)) and value
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value)
                    and len(set(value)) == len(value)):
                continue
            beside = [c for c, n in sorted(counts.items()) if n > max(value)]
            if len(beside) == 1:
                yield prefix + str(field), prefix + beside[0]


def kind_class(config_class, path, listed):
    """The config class with the list at `path` empty (`listed` false) or
    holding every index by default."""
    import required
    return required.class_with_defaults(config_class, {path: EveryIndex() if listed else []})


def with_list(config_dict, path, count, indexes, layers=None):
    """A config dict with the index list written out (and the layer count
    set where `layers` is given)."""
    import generate
    d = copy.deepcopy(config_dict)
    if layers is not None:
        generate.set_path(d, count, layers)
    generate.set_path(d, path, list(indexes))
    return d


def samples_to_check(default_list, default_count):
    """(layer count or None for the default's, index list): other lists
    at other depths, an index past the last layer among them."""
    return [
        (None, default_list),
        (None, []),
        (3, [1]),
        (4, [0, 3]),
        (2, [0, 1]),
        (5, [4, 2, 9]),
        (default_count, list(range(0, default_count, 2))),
    ]


def choosing_lists(config_class, build):
    """The index lists of `index_lists` that choose layers of one
    ModuleList: the class with every layer listed and with none builds
    other tensors, all under one list's layers (SAM's
    `vision_encoder.layers.N.attn.rel_pos_h`), so a list that sizes a
    pooling module or picks a backbone's outputs is left to the plain
    derivation."""
    import re
    found = []
    for path, count in index_lists(config_class().to_dict()):
        try:
            none = {key: shape for key, shape, _ in build(kind_class(config_class, path, False), {}).listing}
            every = {key: shape for key, shape, _ in build(kind_class(config_class, path, True), {}).listing}
        except Exception:  # noqa: BLE001 - a kind the library refuses: no chooser
            continue
        differing = {key for key in set(none) | set(every) if none.get(key) != every.get(key)}
        places = {re.split(r"\.\d+\.", key, maxsplit=1)[0] for key in differing if re.search(r"\.\d+\.", key)}
        if differing and len(places) == 1 and all(re.search(r"\.\d+\.", key) for key in differing):
            found.append((path, count))
    return found


def by_index_lists(config_class, lists, derive_class, build):
    """(description, default Sample, [Sample], reasons) of the class in the
    chooser form for the first of `lists` (`choosing_lists`) that holds,
    or None where none does. `derive_class(config class)` gives
    generate.derive_with_lists_or_not's (description, default, held,
    reasons); `build(config dict)` a Sample of the class."""
    from generate import FreshValueDiffers, read_field
    from kinds import joined_kind, repeated_node
    default_dict = config_class().to_dict()
    for path, count in lists:
        default_list = list(read_field(default_dict, path))
        try:
            unlisted, _, unlisted_held, reasons = derive_class(kind_class(config_class, path, False))
            listed, _, listed_held, listed_reasons = derive_class(kind_class(config_class, path, True))
        except (FreshValueDiffers, TimeoutError):
            # A field that holds only at its default (derive_into derives
            # again with it held), or the class's time spent: not this
            # list's failure.
            raise
        except Exception:  # noqa: BLE001 - a kind that does not derive: the next list, else the class fails
            continue
        new = copy.deepcopy(unlisted)
        body = joined_kind(new, listed, count, skip=("tree", "least"))
        if body is None:
            continue
        node = repeated_node(new["tree"], count)[1]
        node["kinds"] = [[UNLISTED, node.pop("body")], [LISTED, body]]
        del node["repeat"]
        node["by"] = [path]
        new.setdefault("named_lists", {})[path] = {
            "by": True, "indexes": True, "kinds": [UNLISTED, LISTED], "count": count, "default": default_list}
        checked = checked_samples(new, path, count, default_list, unlisted_held, listed_held, build)
        if checked is not None:
            reasons = dict(reasons)
            reasons.update({f: why for f, why in listed_reasons.items() if f not in reasons})
            return new, checked[0], checked[1], reasons
    return None


def checked_samples(new, path, count, default_list, unlisted_held, listed_held, build):
    """(the default Sample, held Samples) where the library builds as `new`
    describes for the default config, each list of `samples_to_check` and
    both kinds' held-out variations with their lists written out; None
    where one differs or the library refuses one."""
    from generate import resolve_env
    from trees import expand

    def described(d):
        got = build(copy.deepcopy(d))
        got.config_dict = d
        return got if expand(new["tree"], resolve_env(new, d)) == got.listing else None

    try:
        default = described({})
        if default is None:
            return None
        default_count = resolve_env(new, {})[count]
        held = []
        for layers, indexes in samples_to_check(default_list, default_count):
            got = described(with_list({}, path, count, indexes, layers))
            if got is None:
                return None
            held.append(got)
        for samples, every in ((unlisted_held, False), (listed_held, True)):
            for s in samples:
                layers = resolve_env(new, s.config_dict)[count]
                got = described(with_list(s.config_dict, path, count, range(layers) if every else []))
                if got is None:
                    return None
                held.append(got)
        return default, held
    except Exception:  # noqa: BLE001 - a config the library refuses: the class is not described so
        return None
