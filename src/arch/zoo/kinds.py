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

A list whose default names one kind only (Granite 4.0-H's layers are all
Mamba by default, LFM2's all attention, Cohere2-MoE's all sparse) has no
other kind's subtree to choose: `other_kinds` tries the names the config
and modeling modules quote beside the list, derives each that builds other
layers as a class of its own (the config class with that kind once per
layer by default), joins its layer subtree, fields and rules to the
default's, and checks the whole against the library the same way. Left
out, such a list is the default's kind once per layer at any depth.

generate.py calls `layer_kinds` (and `other_kinds`) for each class it
derives; run as a script, this applies them to every class in
generate.py's cache and reassembles the outputs:

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


def checked_against_library(new, build, paths, count, keys, seen, others, left_out):
    """(new, samples) where the library builds as `new` describes for
    other orders of the kinds `seen` at other depths, with each fixed field
    of `others` released (moved to `left_out`) where it no longer changes
    tensors while the lists `paths` are given; None where a sample differs
    or the library refuses one. `keys` is an order holding every kind."""
    import generate
    from trees import expand

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
                return None
            samples.append(got)
        # Each other fixed field moved, with the lists given: released where
        # the layers still build as the lists say (Qwen3-Next's
        # `full_attention_interval`), kept where not (its
        # `decoder_sparse_step`, which makes layers dense).
        for field, value in others.items():
            if moved(value) is None:
                continue
            d = with_lists(keys)
            parent, _, index = field.rpartition(".")
            if index.isdigit() and parent not in d:
                # An entry of a list (LFM2's `full_attn_idxs.0`): the list
                # the fixed entries give, with this one moved.
                entries = sorted((int(f.rpartition(".")[2]), v) for f, v in others.items()
                                 if f.rpartition(".")[0] == parent and f.rpartition(".")[2].isdigit())
                generate.set_path(d, parent, [v for _, v in entries])
            generate.set_path(d, field, moved(value))
            try:
                got = builds_as_described(d)
            except Exception:  # noqa: BLE001 - the library refuses the value: kept fixed
                got = None
            if got is not None:
                samples.append(got)
                del new["fixed"][field]
                left_out[field] = value
        # A list whose every entry was released is held whole where the
        # list that chooses is left out: an entry past the default's (an
        # LFM2 `full_attn_idxs` longer than the default cut) is checked too.
        for parent in {f.rpartition(".")[0] for f in left_out if f.rpartition(".")[2].isdigit()}:
            entries = [f for f in others if f.rpartition(".")[0] == parent]
            if all(f in left_out for f in entries):
                whole = sorted((int(f.rpartition(".")[2]), left_out.pop(f)) for f in entries)
                left_out[parent] = [v for _, v in whole]
                # Its length released too where a shorter one builds as
                # described (LFM2-1.2B's six `full_attn_idxs`).
                d = with_lists(keys)
                generate.set_path(d, parent, left_out[parent][:1])
                if parent in new.get("lists", {}):
                    try:
                        got = builds_as_described(d)
                    except Exception:  # noqa: BLE001 - the library refuses it: the length kept
                        got = None
                    if got is not None:
                        samples.append(got)
                        del new["lists"][parent]
        return new, samples
    except Exception:  # noqa: BLE001 - a config the library refuses: the class stays as it is
        return None


def layer_kinds(desc, build, config_class=None):
    """The class in the chooser form, and the samples that check it: (new
    description, [Sample]) or None where no list qualifies or a sample
    differs. `build(config dict)` is a Sample of the class (generate.sample).

    Several lists of one length choose together (Kimi Linear's
    `layer_types` and `mlp_layer_types`): a layer's kind is its names in
    them joined by `+`, and only pairs the default holds are described."""
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
        checked = checked_against_library(new, build, paths, count, keys, seen, others, left_out)
        if checked is not None:
            return checked
    return None


def repeated_node(tree, count, path=""):
    """(path, node) of the one ModuleList that repeats one body
    `count` times (the field's name), or None."""
    found = []

    def walk(node, at):
        if node.get("repeat") == count and "body" in node and not node.get("last") and "split" not in node:
            found.append((at, node))
        for name, child in node.get("c", []):
            walk(child, f"{at}{name}.")
    walk(tree, path)
    return found[0] if len(found) == 1 else None


def quoted_names(config_class, model_class, field):
    """The strings the config and modeling modules quote on and just below
    the lines that name the list `field` (LFM2's `!= "conv"`, Mellum's
    docstring `"dense"` or `"sparse"`): the names a layer may take, to be
    tried."""
    import inspect
    import re
    names = []
    for cls in (config_class, model_class):
        try:
            source = inspect.getsource(inspect.getmodule(cls))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        for at, line in enumerate(lines):
            if field in line or "layer_type" in line or "block_type" in line:
                # The line and the few after it (a docstring's "`dense` or
                # `sparse`" below the field's name: Mellum's modeling code
                # quotes only "sparse").
                for near in lines[at:at + 3]:
                    names += [n for n in re.findall(r'"([a-z][a-z0-9_]*)"', near) if n not in names]
    return names


def union(a, b):
    """Two descriptions' values of one key joined (dicts with no key
    differing, lists item by item); None where they conflict."""
    if a == b:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        if any(key in a and a[key] != b[key] for key in b):
            return None
        return dict(a, **b)
    if isinstance(a, list) and isinstance(b, list):
        return a + [item for item in b if item not in a]
    return None


def joined_kind(new, other, count, skip):
    """The layer body of `other`, a description of the class whose layers
    (the ModuleList repeated `count` times) are of another kind, with its
    fields, fixed fields and rules joined into `new` (in place; keys in
    `skip` left out: the least layer count the other kind's derivation
    found is that of a config whose list it left in, and the joined class
    is checked at other depths instead); None where the two differ outside
    those layers, conflict, or a field one kind varies the other holds.
    `new` is the one to discard then."""
    found, other_found = repeated_node(new["tree"], count), repeated_node(other["tree"], count)
    if found is None or other_found is None or other_found[0] != found[0]:
        return None
    outside = copy.deepcopy(other["tree"])
    repeated_node(outside, count)[1]["body"] = found[1]["body"]
    if outside != new["tree"]:
        return None  # the kinds differ outside the layers too
    for key, value in other.items():
        if key in skip:
            continue
        joined = union(new.get(key, type(value)()), value)
        if joined is None:
            return None
        new[key] = joined
    if set(new.get("fixed", {})) & set(new["fields"]):
        return None  # a field one kind varies and another holds
    return other_found[1]["body"]


def all_of_kind(config_class, field, count, name):
    """The config class with every layer of kind `name` by default (the
    list left out is `name` once per layer): derived like any class, its
    layers are the subtree of that kind."""
    def __init__(self, **kwargs):
        given = kwargs.get(field) is not None
        config_class.__init__(self, **kwargs)
        if not given:
            setattr(self, field, [name] * getattr(self, count))
    return type(config_class.__name__, (config_class,), {"__init__": __init__})


def other_kinds(desc, config_class, model_class, derive_class, build):
    """A class whose list names one kind only (`{"count", "names": [a]}`:
    Granite 4.0-H's default is all Mamba layers, LFM2's all attention,
    Cohere2-MoE's all sparse) in the chooser form with every kind the
    library builds: each other name that gives other layers is derived as
    a class of its own (`all_of_kind`, `derive_class(config class)` giving
    generate.derive's (description, reasons)) and its layer subtree joins
    the default's; the fields, fixed fields and rules of both are joined
    (a conflict leaves the class as it is). Returns (description, samples,
    reasons the other kinds' derivations give fixed fields) where the
    library builds as described for lists of every kind
    (`checked_against_library`), else None."""
    lists = {path: form for path, form in desc.get("named_lists", {}).items()
             if len(form.get("names", [])) == 1 and form.get("count") and not form.get("by")}
    if len(lists) != 1:
        return None
    (path, form), = lists.items()
    if "." in path:
        return None
    count, default = form["count"], form["names"][0]
    found = repeated_node(desc["tree"], count)
    if found is None:
        return None

    def listing_of(name):
        return build({count: 2, path: [name, name]})

    try:
        default_listing = listing_of(default).listing
    except Exception:  # noqa: BLE001 - the library refuses two layers: left as it is
        return None
    aliases = form.get("aliases", {})
    kinds, seen = [default], [default_listing]
    for name in quoted_names(config_class, model_class, path) + sorted(set(aliases.values())):
        name = aliases.get(name, name)
        if name in kinds:
            continue
        try:
            got = listing_of(name)
            # The name as the config class keeps it (Granite's "attention"
            # is "full_attention").
            name = getattr(config_class(**{count: 1, path: [name]}), path)[0]
        except Exception:  # noqa: BLE001 - not a name the class takes
            continue
        if got.listing in seen or name in kinds:
            continue
        kinds.append(name)
        seen.append(got.listing)
    if len(kinds) == 1:
        return None
    new = copy.deepcopy(desc)
    node = repeated_node(new["tree"], count)[1]
    bodies = [[default, node["body"]]]
    reasons = {}
    for name in kinds[1:]:
        try:
            other, other_reasons = derive_class(all_of_kind(config_class, path, count, name))
        except Exception:  # noqa: BLE001 - the other kind does not derive: the class stays as it is
            return None
        body = joined_kind(new, other, count, skip=("tree", "named_lists", "least"))
        if body is None:
            return None
        bodies.append([name, body])
        reasons.update(other_reasons)
    del node["body"], node["repeat"]
    node["by"] = [path]
    node["kinds"] = bodies
    # Left out, the list is the one kind once per layer at any depth; a
    # field the config class derives it from instead (LFM2's
    # `full_attn_idxs`) is released only where the list is given.
    left_out = {}
    new["named_lists"][path] = dict(form, by=True, kinds=kinds, when_left_out=left_out)
    fixed = dict(new.get("fixed", {}))
    checked = checked_against_library(new, build, [path], count, kinds, kinds, fixed, left_out)
    return None if checked is None else (checked[0], checked[1], reasons)


def apply_to_type(model_type):
    import generate

    def check(name, desc, config_class, model_class, base):
        def build(d):
            return generate.sample(config_class, model_class, d)[0]
        reasons = {}
        try:
            found = layer_kinds(json.loads(json.dumps(desc)), build, config_class)
            if found is None:
                found = other_kinds(json.loads(json.dumps(desc)), config_class, model_class,
                                    generate.other_kind_deriver(model_type, model_class, name), build)
                if found is not None:
                    found, reasons = found[:2], found[2]
        except Exception as e:  # noqa: BLE001 - reported, the class left as it is
            return {name: {"error": f"{type(e).__name__}: {e}"}}
        if found is None:
            return {}
        new, samples = found
        return {name: {"description": new, "reasons": reasons,
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
        desc.update(found["description"])
        # The reasons for fields no longer fixed go too; those another
        # kind's derivation fixed come in.
        reasons = (cached.setdefault("fixed", {})).setdefault(name, {})
        reasons.update({field: why for field, why in found.get("reasons", {}).items() if field not in reasons})
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
    import generate
    generate.pin_hash_seed()
    main()
