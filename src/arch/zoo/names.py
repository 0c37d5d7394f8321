#!/usr/bin/env python3
"""Config fields that are names and choose modules (run by hand, never by
CI): ResNet's `layer_type` (`"bottleneck"` or `"basic"`), BERT's
`position_embedding_type` (`"relative_key"` adds a distance embedding).
generate.py varies numbers and flags; a name it left alone, so a
config.json naming another kind of layer was built as the default's (a
ResNet-18 config, `layer_type` `"basic"`, came out as a bottleneck ResNet
of 176 tensors where transformers builds 122). The values a name can take
are read from the library itself: the quoted strings in the config class's
docstring entry for the field, and the string literals its modeling module
compares with or next to the field's name. Each other value that builds is
tried on the class's first held-out variation. Where a value changes the
state dict only through fields the description follows (T5's
`feed_forward_proj` "gated-gelu" sets `is_gated_act`: flan-t5), the data
says which value each name gives those fields when config.json leaves them
out (`by_name`); any other name that changes the state dict holds only at
its default, and the description lists it as fixed, so that ckptcheck
refuses a config that changes it, naming the field, rather than build the
wrong model.

generate.py calls `names_that_change_tensors` for each class it derives;
run as a script, this applies it to every class in generate.py's cache
(`/tmp/ckptcheck-zoo-cache`, which restore_cache.py rebuilds from the
committed data) and reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/names.py [--only TYPE,...] [--jobs 2]
"""

import inspect
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Names that choose no module, or that ckptcheck reads itself.
NOT_NAMES = re.compile(r"(^|\.)(id2label|label2id|model_type|architectures|transformers_version|dtype|torch_dtype|problem_type|"
                       r"tokenizer_class|_name_or_path|name_or_path|attn_implementation|_attn_implementation)$|"
                       r"(^|[._])act(_|$)|activation|(^|\.)_")
# Words a docstring quotes for a field's type, not its value (`str`,
# `None`): a config may give them and the library builds something, but no
# release does, so they get no description of their own.
TYPE_WORDS = {"str", "string", "None", "none", "int", "float", "bool", "list", "dict", "Optional", "optional"}
DONE_DIR = "/tmp/ckptcheck-zoo-names"
VARIANTS_DIR = "/tmp/ckptcheck-zoo-variants"
TYPE_SECONDS = 600


def name_fields(config_dict, prefix=""):
    """Dotted paths of the string fields of a config dict, sub-configs
    included."""
    out = {}
    for key, value in config_dict.items():
        path = prefix + str(key)
        if NOT_NAMES.search(path):
            continue
        if isinstance(value, str):
            out[path] = value
        elif isinstance(value, dict):
            out.update(name_fields(value, path + "."))
    return out


def docstring_values(config_class, field):
    """Quoted strings in the config class's docstring entry for `field`."""
    doc = inspect.getdoc(config_class) or ""
    match = re.search(rf"^\s*{re.escape(field)} \(.*?(?=^\s*\w+ \(|\Z)", doc, re.S | re.M)
    return set(re.findall(r"[\"'`]+([\w.\-]+)[\"'`]+", match.group(0))) if match else set()


def source_values(model_class, field):
    """String literals the modeling module compares with `field`, or writes
    on the same line as it."""
    try:
        source = inspect.getsource(sys.modules[model_class.__module__])
    except (OSError, TypeError, KeyError):
        return set()
    found = set()
    for line in source.splitlines():
        if re.search(rf"\b{re.escape(field)}\b", line):
            found.update(re.findall(r"[\"']([\w.\-]+)[\"']", line))
    return found


def names_that_change_tensors(config_class, model_class, base_dict, base_listing, build, fields, alternatives=None):
    """For each name field of `base_dict` (resolved by the config class)
    that some other value of changes the state dict: where the config class
    turns the name into fields the description follows (T5's
    `feed_forward_proj` "gated-gelu" sets `is_gated_act`) and those fields,
    given with the name left at its default, build the same model, the name
    gives those fields' defaults (`by_name`: {field: [name, {value: the
    field's value}]}); else the name holds only at its default (`held`:
    {field: default}). `build` is generate.py's `sample` (config dict ->
    listing); `fields` the description's fields. Where `alternatives` is a
    dict, it gets, for each held name, the other values that build and
    change the state dict (generate.py derives a description for each)."""
    resolved = config_class.from_dict(json.loads(json.dumps(base_dict))).to_dict()
    held, by_name = {}, {}
    for path, default in name_fields(resolved).items():
        leaf = path.rsplit(".", 1)[-1]
        values = (docstring_values(config_class, leaf) | source_values(model_class, leaf)) - {default, leaf}
        implied = {}
        for value in sorted(values)[:12]:
            trial = with_name(base_dict, path, value)
            try:
                listing = build(trial)
                now = config_class.from_dict(json.loads(json.dumps(trial))).to_dict()
            except Exception:
                continue
            moved = {f: read(now, f) for f in fields if read(now, f) != read(resolved, f)}
            if listing == base_listing and not moved:
                continue
            if path in held:
                if listing != base_listing and value not in TYPE_WORDS:
                    alternatives[path].append(value)
                continue
            explicit = json.loads(json.dumps(base_dict))
            for f, v in moved.items():
                explicit = with_name(explicit, f, v)
            try:
                same = moved and build(explicit) == listing
            except Exception:
                same = False
            if not same:
                held[path] = default
                if alternatives is None:
                    break
                alternatives[path] = [value] if listing != base_listing and value not in TYPE_WORDS else []
                continue
            implied[value] = moved
        if path in held or not implied:
            continue
        for f in sorted({f for moved in implied.values() for f in moved}):
            table = {value: moved.get(f, read(resolved, f)) for value, moved in implied.items()}
            table[default] = read(resolved, f)
            by_name[f] = [path, table]
    return held, by_name


def named_config_class(config_class, when):
    """The config class with the names in `when` as its defaults (ResNet's
    config with `layer_type` "basic"): derived like any class, it gives the
    description that holds where a config.json names that value."""
    def __init__(self, **kwargs):
        for field, value in when.items():
            kwargs.setdefault(field, value)
        config_class.__init__(self, **kwargs)
    return type(config_class.__name__, (config_class,), {"__init__": __init__})


def read(config_dict, path):
    node = config_dict
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def with_name(config_dict, path, value):
    trial = json.loads(json.dumps(config_dict))
    node = trial
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return trial


def apply_to_type(model_type):
    import generate

    def check(name, desc, config_class, model_class, base):
        try:
            base_listing = generate.sample(config_class, model_class, base)[0].listing
        except Exception:
            return {}
        held, by_name = names_that_change_tensors(
            config_class, model_class, base, base_listing,
            lambda d: generate.sample(config_class, model_class, d)[0].listing, desc["fields"])
        return {name: {"held": held, "by_name": by_name}} if held or by_name else {}
    generate.pass_over_type(DONE_DIR, model_type, "names", check)


def write_back(types):
    """What was found for each class goes into its description in the
    cache, as generate.py now writes it."""
    import generate
    changed = 0
    for t in types:
        result = generate.pass_result(DONE_DIR, t)
        if result is None or not result[0]["names"]:
            continue
        names, cached, path = result[0]["names"], result[1], result[2]
        for name, found in names.items():
            changed += generate.add_names(cached["classes"][name], found["held"], found["by_name"],
                                          cached.setdefault("fixed", {}).setdefault(name, {}))
        with open(path, "w") as f:
            json.dump(cached, f)
    return changed


def variants_of_type(model_type):
    """generate.py's descriptions for the other values of each name a
    class holds at its default, for the classes the cache describes (the
    classes themselves are not derived again)."""
    import signal
    import generate
    out_path = os.path.join(VARIANTS_DIR, model_type + ".json")
    if os.path.exists(out_path):
        return
    result = {"model_type": model_type, "classes": {}, "failed": {}, "matrix": []}

    def timed_out(*_):
        raise TimeoutError(f"derivation of the class took over {generate.CLASS_SECONDS} s")
    signal.signal(signal.SIGALRM, timed_out)
    for name, desc, config_class, model_class, base in generate.described_classes(model_type)[1]:
        if "when" in desc or not any(isinstance(value, str) for value in desc["fixed"].values()):
            continue
        alternatives = {}
        try:
            base_listing = generate.sample(config_class, model_class, base)[0].listing
            names_that_change_tensors(config_class, model_class, base, base_listing,
                                      lambda d: generate.sample(config_class, model_class, d)[0].listing,
                                      desc["fields"], alternatives)
        except Exception:
            continue
        for path, values in sorted(alternatives.items()):
            for value in values[:generate.NAME_VARIANTS] if "." not in path else []:
                signal.alarm(generate.CLASS_SECONDS)
                generate.derive_into(result, model_type, named_config_class(config_class, {path: value}),
                                     model_class, name, {path: value})
                signal.alarm(0)
    with open(out_path, "w") as f:
        json.dump(result, f)


def write_variants_back(types):
    """Each class's variants go into the cache right after the class (its
    description, reasons and matrix row), replacing any it had."""
    import generate
    added = 0
    for t in types:
        result = generate.pass_result(VARIANTS_DIR, t)
        if result is None:
            continue
        found, cached, path = result

        def base_of(key):
            return key.split("@")[0]
        # What equal_sizes.py added to a variant it had stays.
        kept = {k: d["keys_if_distinct"] for k, d in cached["classes"].items() if "keys_if_distinct" in d}
        for key, vdesc in found["classes"].items():
            if key in kept:
                vdesc["keys_if_distinct"] = kept[key]
        equal_rows = {(r["class"], json.dumps(r["when"])): [v for v in r["variations"] if v.get("equal_sizes")]
                      for r in cached["matrix"] if "when" in r}
        for r in found["matrix"]:
            extra = equal_rows.get((r["class"], json.dumps(r["when"])), [])
            r["variations"] = [v for v in r["variations"] if not v.get("equal_sizes")] + extra
        classes = {}
        for key, desc in cached["classes"].items():
            if "@" in key:
                continue
            classes[key] = desc
            for vkey, vdesc in found["classes"].items():
                if base_of(vkey) == key:
                    classes[vkey] = vdesc
                    added += 1
        cached["classes"] = classes
        cached["failed"] = {k: v for k, v in cached["failed"].items() if "@" not in k}
        cached["failed"].update(found["failed"])
        fixed = {k: v for k, v in cached.get("fixed", {}).items() if "@" not in k}
        fixed.update(found.get("fixed", {}))
        cached["fixed"] = fixed
        rows = []
        for row in cached["matrix"]:
            if "when" in row:
                continue
            rows.append(row)
            rows.extend(r for r in found["matrix"] if r["class"] == row["class"])
        cached["matrix"] = rows
        with open(path, "w") as f:
            json.dump(cached, f)
    return added


def main():
    import generate
    args = generate.by_hand_pass(
        DONE_DIR, apply_to_type, TYPE_SECONDS, lambda t: {"model_type": t, "names": {}},
        lambda t, r: f"{t} {json.dumps((r or {}).get('names', {}))}", write_back,
        "names held at their default or read into fields",
        [("--variants", "derive the descriptions for the other values of each held name instead")])
    if args.variants:
        os.makedirs(VARIANTS_DIR, exist_ok=True)
        types = [t for t in args.only.split(",") if t]
        generate.run_forked(types, args.jobs, TYPE_SECONDS * 3, variants_of_type, VARIANTS_DIR,
                            lambda t: {"model_type": t, "classes": {}, "failed": {"*": "ran past its time"},
                                       "matrix": []},
                            lambda t, r: f"{t} {sorted((r or {}).get('classes', {}))} {(r or {}).get('failed')}")
        print(write_variants_back(types), "descriptions of a class for another value of a name")
        generate.assemble_outputs()


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
