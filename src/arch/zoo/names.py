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

import argparse
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
DONE_DIR = "/tmp/ckptcheck-zoo-names"
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


def names_that_change_tensors(config_class, model_class, base_dict, base_listing, build, fields):
    """For each name field of `base_dict` (resolved by the config class)
    that some other value of changes the state dict: where the config class
    turns the name into fields the description follows (T5's
    `feed_forward_proj` "gated-gelu" sets `is_gated_act`) and those fields,
    given with the name left at its default, build the same model, the name
    gives those fields' defaults (`by_name`: {field: [name, {value: the
    field's value}]}); else the name holds only at its default (`held`:
    {field: default}). `build` is generate.py's `sample` (config dict ->
    listing); `fields` the description's fields."""
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
            explicit = json.loads(json.dumps(base_dict))
            for f, v in moved.items():
                explicit = with_name(explicit, f, v)
            try:
                same = moved and build(explicit) == listing
            except Exception:
                same = False
            if not same:
                held[path] = default
                break
            implied[value] = moved
        if path in held or not implied:
            continue
        for f in sorted({f for moved in implied.values() for f in moved}):
            table = {value: moved.get(f, read(resolved, f)) for value, moved in implied.items()}
            table[default] = read(resolved, f)
            by_name[f] = [path, table]
    return held, by_name


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
    out_path = os.path.join(DONE_DIR, model_type + ".json")
    if os.path.exists(out_path):
        return
    found = {}
    for name, desc, config_class, model_class, base in generate.described_classes(model_type)[1]:
        try:
            base_listing = generate.sample(config_class, model_class, base)[0].listing
        except Exception:
            continue
        held, by_name = names_that_change_tensors(
            config_class, model_class, base, base_listing,
            lambda d: generate.sample(config_class, model_class, d)[0].listing, desc["fields"])
        if held or by_name:
            found[name] = {"held": held, "by_name": by_name}
    with open(out_path, "w") as f:
        json.dump({"model_type": model_type, "names": found}, f)


def write_back(types):
    """What was found for each class goes into its description in the
    cache, as generate.py now writes it."""
    import generate
    changed = 0
    for t in types:
        done = os.path.join(DONE_DIR, t + ".json")
        if not os.path.exists(done):
            continue
        with open(done) as f:
            names = json.load(f)["names"]
        if not names:
            continue
        path = os.path.join(generate.CACHE, t + ".json")
        with open(path) as f:
            cached = json.load(f)
        for name, found in names.items():
            changed += generate.add_names(cached["classes"][name], found["held"], found["by_name"],
                                          cached.setdefault("fixed", {}).setdefault(name, {}))
        with open(path, "w") as f:
            json.dump(cached, f)
    return changed


def main():
    import generate
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    os.makedirs(DONE_DIR, exist_ok=True)
    described = sorted(f[:-5] for f in os.listdir(generate.CACHE)
                       if f.endswith(".json") and not re.match(r"[A-Z]", f))
    types = [t for t in args.only.split(",") if t] if args.only else described

    def line(t, r):
        return f"{t} {json.dumps((r or {}).get('names', {}))}"
    generate.run_forked(types, args.jobs, TYPE_SECONDS, apply_to_type, DONE_DIR,
                        lambda t: {"model_type": t, "names": {}}, line)
    print(write_back(types), "names held at their default or read into fields")
    generate.assemble_outputs()


if __name__ == "__main__":
    main()
