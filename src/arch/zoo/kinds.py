#!/usr/bin/env python3
"""Layers whose kind a list in the config chooses (run by hand, never by CI).
Qwen3-Next, Qwen3.5, OLMo-hybrid, MiniMax and Zamba build layer `i` as
`layer_types[i]` says: a linear-attention (Gated DeltaNet, Mamba) layer or
a full-attention one. generate.py could describe such a class only as its
default layers one by one (`items`), so the layer count and the fields the
config class derives the list from were `fixed`, and a config.json with
another depth (Qwen3.5 at 64 layers where the default has 32) was refused.

For a described class with a list of names that must be exactly the
default's (`named_lists[path]["exactly"]`) and a ModuleList with one item
per entry, where the items of one name are the same subtree: the list
becomes the ModuleList's chooser (`"by": path, "kinds": [[name, subtree]]`)
and the count follows the list. The description is then checked against
the library on samples that give the list (other orders of the names at
other depths, each fixed field moved): only where every sample builds as
described does the class take the new form, with the layer count and the
fixed fields that no longer change tensors while the list is given moved
to `named_lists[path]["when_left_out"]` (a config.json that leaves the
list out gets the default list only while they hold their defaults, since
the config class derives the list from them). The samples go into the
class's held-out variations, so the matrix test checks the Rust evaluator
on them.

generate.py calls `layer_kinds` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/kinds.py [--only TYPE,...] [--jobs 2]
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-kinds"
TYPE_SECONDS = 300


def list_nodes_with_items(node, count, path=""):
    """(path, node) for each ModuleList of `count` items of its own and no
    repeated body, anywhere in a frozen tree."""
    if len(node.get("items", [])) == count and "repeat" not in node and not node.get("last"):
        yield path, node
    for name, child in node.get("c", []):
        yield from list_nodes_with_items(child, count, f"{path}{name}.")
    for index, item in enumerate(node.get("items", [])):
        yield from list_nodes_with_items(item, count, f"{path}{index}.")


def kinds_of(node, names):
    """[[name, subtree]] in the order the names first appear, where every
    item of one name is the same subtree and at least two names differ;
    else None."""
    kinds = {}
    for name, item in zip(names, node["items"]):
        if kinds.setdefault(name, item) != item:
            return None
    distinct = {json.dumps(subtree, sort_keys=True) for subtree in kinds.values()}
    return [[name, subtree] for name, subtree in kinds.items()] if len(distinct) > 1 else None


def count_field(desc, path, count):
    """The fixed layer count beside the list (`text_config.num_hidden_layers`
    for `text_config.layer_types`) whose value is the list's length."""
    import generate
    parent = path.rsplit(".", 1)[0] + "." if "." in path else ""
    for field, value in desc.get("fixed", {}).items():
        if (field.startswith(parent) and "." not in field[len(parent):] and value == count
                and generate.LAYER_FIELD.search(field)):
            return field
    return None


def moved(value):
    """Another value for a fixed field, to see whether it changes tensors
    while the list is given (None for a flag or a name: kept fixed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value * 2 if value > 0 else value + 1


def list_sources(config_class, path):
    """Other config.json keys the config class reads the list at `path`
    from: (its `attribute_map` aliases, read as the list; the older keys it
    converts into the list, which ckptcheck does not). Nemotron-H turns
    `hybrid_override_pattern`, a string with a character per layer
    (`"M-M*"`), into `layers_block_type`: each key the class pops from its
    kwargs is tried with the one-character strings its module quotes, and
    one that changes the list is such a key."""
    import inspect
    import re
    parent, _, field = path.rpartition(".")
    if parent:
        config_class = (getattr(config_class, "sub_configs", {}) or {}).get(parent)
        if config_class is None:
            return [], []
    aliases = sorted(alias for alias, name in (getattr(config_class, "attribute_map", {}) or {}).items()
                     if name == field)
    try:
        source = inspect.getsource(inspect.getmodule(config_class))
    except (OSError, TypeError):
        return aliases, []
    popped = sorted(set(re.findall(r'kwargs\.pop\(\s*"(\w+)"', source)))
    characters = sorted(set(re.findall(r'"(.)"\s*:', source)))
    try:
        default = getattr(config_class(), field, None)
    except Exception:  # noqa: BLE001 - no default to compare with
        return aliases, []
    converted = []
    for key in popped:
        for character in characters:
            try:
                got = getattr(config_class(**{key: character * 2}), field, None)
            except Exception:  # noqa: BLE001 - not a value this key takes
                continue
            if got != default:
                converted.append(key)
                break
    return aliases, converted


def orders(kinds, first_order):
    """Two sequences of the kinds other than the default's, at other
    depths: every kind at least once, in a rotation and reversed."""
    n = len(kinds)
    one = [kinds[(i + 1) % n] for i in range(n + 2)]
    two = list(reversed([kinds[i % n] for i in range(2 * n + 1)]))
    return [order for order in (one, two) if order != first_order]


def layer_kinds(desc, build, config_class=None):
    """The class in the chooser form, and the samples that check it: (new
    description, [Sample]) or None where no list qualifies or a sample
    differs. `build(config dict)` is a Sample of the class (generate.sample).

    Several lists of one length choose together (Kimi Linear's
    `layer_types` and `mlp_layer_types`): a layer's kind is its names in
    them joined by `+`, and only pairs the default holds are described."""
    import generate
    from trees import expand
    lists = {path: form["exactly"] for path, form in desc.get("named_lists", {}).items()
             if isinstance(form.get("exactly"), list) and not form.get("by")}
    for length in sorted({len(names) for names in lists.values()}):
        paths = [path for path, names in lists.items() if len(names) == length]
        count = count_field(desc, paths[0], length)
        keys = ["+".join(lists[path][i] for path in paths) for i in range(length)]
        found = [(at, kinds_of(node, keys)) for at, node in list_nodes_with_items(desc["tree"], length)]
        found = [(at, kinds) for at, kinds in found if kinds is not None]
        if len(found) != 1:
            continue
        at, kinds = found[0]
        seen = [key for key, _ in kinds]
        new = copy.deepcopy(desc)
        chooser = dict(list_nodes_with_items(new["tree"], length))[at]
        del chooser["items"]
        chooser["by"] = paths
        chooser["kinds"] = kinds
        others = {field: value for field, value in desc["fixed"].items() if field != count}
        left_out = {count: length} if count else {}
        for path in paths:
            names = sorted(set(lists[path]))
            new["named_lists"][path] = dict(desc["named_lists"][path], by=True, kinds=names,
                                            when_left_out=left_out)
            aliases, converted = list_sources(config_class, path) if config_class else ([], [])
            if aliases:
                new["named_lists"][path]["read_from"] = aliases
            if converted:
                new["named_lists"][path]["refused_from"] = converted
            if count:
                new["named_lists"][path]["count"] = count
        new["fixed"] = dict(others)

        def with_lists(order):
            d = {}
            if count:
                generate.set_path(d, count, len(order))
            for position, path in enumerate(paths):
                generate.set_path(d, path, [key.split("+")[position] for key in order])
            return d

        def builds_as_described(d):
            got = build(copy.deepcopy(d))
            got.config_dict = d
            return got if expand(new["tree"], generate.resolve_env(new, d)) == got.listing else None

        samples = []
        try:
            for order in orders(seen, keys):
                got = builds_as_described(with_lists(order))
                if got is None:
                    break
                samples.append(got)
            else:
                # Each other fixed field moved, with the default lists given:
                # released where the layers still build as the lists say
                # (Qwen3-Next's `full_attention_interval`), kept where not
                # (its `decoder_sparse_step`, which makes layers dense).
                for field, value in others.items():
                    if moved(value) is None:
                        continue
                    d = with_lists(keys)
                    if count:
                        generate.set_path(d, count, length)
                    generate.set_path(d, field, moved(value))
                    try:
                        got = builds_as_described(d)
                    except Exception:  # noqa: BLE001 - the library refuses the value: kept fixed
                        got = None
                    if got is not None:
                        samples.append(got)
                        del new["fixed"][field]
                        left_out[field] = value
                return new, samples
        except Exception:  # noqa: BLE001 - a config the library refuses: the class stays as it is
            continue
    return None


def apply_to_type(model_type):
    import generate

    def check(name, desc, config_class, model_class, base):
        try:
            found = layer_kinds(json.loads(json.dumps(desc)), lambda d: generate.sample(config_class, model_class, d)[0],
                                config_class)
        except Exception as e:  # noqa: BLE001 - reported, the class left as it is
            return {name: {"error": f"{type(e).__name__}: {e}"}}
        if found is None:
            return {}
        new, samples = found
        return {name: {"description": new,
                       "samples": [{"config": json.loads(json.dumps(s.config_dict, default=str)),
                                    "state_dict": [[k, sh, dt] for k, sh, dt in s.listing]}
                                   for s in samples]}}
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def write_back(types):
    import generate
    from assemble import class_key, digest

    def update(name, desc, found, cached):
        if not found or "error" in found:
            return False
        for key in ("tree", "fixed", "named_lists"):
            desc[key] = found["description"][key]
        # The reasons for fields no longer fixed go too.
        reasons = (cached.get("fixed") or {}).get(name) or {}
        for field in list(reasons):
            if field not in desc["fixed"]:
                del reasons[field]
        row = next(m for m in cached["matrix"] if class_key(m["class"], m.get("when", {})) == name)
        row["variations"] = [v for v in row["variations"] if not v.get("layer_kinds")]
        for s in found["samples"]:
            variation = {"config": dict(s["config"], **desc.get("when", {})), "layer_kinds": True}
            listing = [tuple(x) for x in s["state_dict"]]
            variation.update(count=len(listing), digest=digest(listing))
            row["variations"].append(variation)
        return True
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back,
                      "classes whose layers a list of names chooses")


if __name__ == "__main__":
    main()
