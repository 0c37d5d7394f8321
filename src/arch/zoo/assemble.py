"""The outputs of generate.py, from its per-model-type cache: the data the
crate compiles in (src/arch/zoo/transformers.json, recurring subtrees
stored once), the test matrix (tests/fixtures/zoo/matrix.json: whole state
dicts for each model type's first class, digests for the rest) and
src/arch/zoo/COVERAGE.md."""

import json
import math
import os

from facts import conversions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CACHE = "/tmp/ckptcheck-zoo-cache"


def class_key(name, when):
    """A class's key in the cache and in COVERAGE.md: its name, and for a
    description derived with a name at another value (`when`, generate.py's
    NAME_VALUES) that value too (`ResNetModel@layer_type=basic`). The data
    lists such a description under the class's own name, with `when`."""
    return name + "".join(f"@{field}={value if isinstance(value, str) else json.dumps(value)}"
                          for field, value in sorted(when.items()))


def model_type_order(all_types, first):
    """Model types in the order the data lists them: `first` (the named
    must-haves, then the most used), then the rest by name."""
    head = [t for t in first if t in all_types]
    return head + sorted(t for t in all_types if t not in head)


def small_matrix(held, listing_limit=400):
    rows = []
    for s in held:
        if len(s.listing) > listing_limit:
            continue
        row = {"config": clean(s.config_dict), "state_dict": [[k, sh, dt] for k, sh, dt in s.listing]}
        if getattr(s, "equal_sizes", False):
            row["equal_sizes"] = True  # two sizes equal (equal_sizes.py)
        if getattr(s, "layer_kinds", False):
            row["layer_kinds"] = True  # another list of layer kinds (kinds.py)
        rows.append(row)
    return rows


def clean(d):
    return json.loads(json.dumps(d, default=str))


def finite_only(value):
    """`value` without the entries that hold an infinite or NaN number
    (a Mamba config's `time_step_limit`, `[0.0, inf]`, copied whole into a
    sample's sub-config): JSON has no such number, and no such entry sizes
    a tensor, so the config without it builds the same model."""
    def finite(x):
        if isinstance(x, float):
            return math.isfinite(x)
        if isinstance(x, list):
            return all(finite(v) for v in x)
        return True
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items() if finite(v)}
    if isinstance(value, list):
        return [finite_only(v) for v in value]
    return value


def digest(listing):
    h = 0xCBF29CE484222325
    for k, shape, dtype in listing:
        for byte in f"{k}|{','.join(map(str, shape))}|{dtype}\n".encode():
            h ^= byte
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def assemble(all_types, first, whole_for=()):
    import transformers
    data = {"transformers": transformers.__version__, "model_types": {}}
    try:
        import diffusers
        data["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    matrix = {"transformers": transformers.__version__, "classes": []}
    coverage = []
    required = {}  # model type -> fields its config class leaves without a default (required.py)
    for model_type in model_type_order(all_types, first):
        path = os.path.join(CACHE, model_type.replace("/", "__") + ".json")
        if not os.path.exists(path):
            coverage.append((model_type, [], {"*": "not derived yet"}))
            continue
        with open(path) as f:
            r = json.load(f)
        for desc in r["classes"].values():
            required.setdefault(model_type, set()).update(desc.get("required", {}))
        if r["classes"]:
            fill_conversions(r)
            data["model_types"][model_type] = {"config_class": r["config_class"], "classes": r["classes"]}
            for position, m in enumerate(r["matrix"]):
                m["model_type"] = model_type
                # Whole state dicts for the first class of the model types in
                # `whole_for` (to read, to diff, and for inference round
                # trips), digests for the rest: the fixture stays small.
                for v in m["variations"]:
                    if (position > 0 or model_type not in whole_for) and "state_dict" in v:
                        listing = [tuple(x) for x in v.pop("state_dict")]
                        v["count"] = len(listing)
                        v["digest"] = digest(listing)
                matrix["classes"].append(m)
        failed = r["failed"] or ({} if r["classes"] else {"*": no_class_reason(model_type)})
        coverage.append((model_type, list(r["classes"]), failed))
    intern(data)
    # Lists, not maps: the order (model types by use, a type's base model
    # first) is meaning, and JSON readers may sort maps.
    data["model_types"] = [[t, dict({"config_class": e["config_class"],
                                     "classes": [[name.split("@")[0], desc] for name, desc in e["classes"].items()]},
                                    **sub_config_facts(t))]
                           for t, e in data["model_types"].items()]
    zoo_dir = os.path.join(ROOT, "src", "arch", "zoo")
    with open(os.path.join(zoo_dir, "transformers.json"), "w") as f:
        json.dump(data, f, separators=(",", ":"), sort_keys=False)
    os.makedirs(os.path.join(ROOT, "tests", "fixtures", "zoo"), exist_ok=True)
    with open(os.path.join(ROOT, "tests", "fixtures", "zoo", "matrix.json"), "w") as f:
        json.dump(finite_only(matrix), f, separators=(",", ":"), allow_nan=False)
    write_coverage(zoo_dir, coverage, {t: fields for t, fields in required.items() if fields})


def fill_conversions(r):
    """Cache entries written before `conversions` was recorded get it here
    (one default model on the meta device per class)."""
    import torch
    import transformers
    for name, desc in r["classes"].items():
        if "conversions" in desc:
            continue
        config_class = getattr(transformers, r["config_class"])
        with torch.device("meta"):
            model = getattr(transformers, name)(config_class())
        desc.update(conversions(model))


def intern(data):
    """Subtrees that recur (a base model under every head class, the same
    layer in many model types) are stored once in `shared` and referred to
    as {"ref": i}; an entry only refers to entries before it."""
    counts = {}

    def count(node):
        for child in children_of(node):
            count(child)
        key = json.dumps(node, sort_keys=True, separators=(",", ":"))
        counts[key] = counts.get(key, 0) + 1

    def children_of(node):
        out = [c[1] for c in node.get("c", []) + node.get("kinds", [])] + list(node.get("items", []))
        out += [node[kind] for kind in ("body", "rest") if kind in node]
        return out + list(node.get("last", []))

    for entry in data["model_types"].values():
        for desc in entry["classes"].values():
            count(desc["tree"])
    shared, index = [], {}

    def visit(node):
        original_key = json.dumps(node, sort_keys=True, separators=(",", ":"))
        new = dict(node)
        for pairs in ("c", "kinds"):
            if pairs in new:
                new[pairs] = [[name, visit(child)] for name, child in new[pairs]]
        if "items" in new:
            new["items"] = [visit(it) for it in new["items"]]
        for kind in ("body", "rest"):
            if kind in new:
                new[kind] = visit(new[kind])
        if "last" in new:
            new["last"] = [visit(it) for it in new["last"]]
        if counts.get(original_key, 0) > 1 and len(original_key) > 40:
            if original_key not in index:
                index[original_key] = len(shared)
                shared.append(new)
            return {"ref": index[original_key]}
        return new

    for entry in data["model_types"].values():
        for desc in entry["classes"].values():
            desc["tree"] = visit(desc["tree"])
    data["shared"] = shared


def sub_config_default(model_type):
    """The default dict of the config class that `model_type` names, as
    transformers builds a (sub-)config from a saved dict; empty when there
    is none."""
    from transformers.models.auto import configuration_auto
    try:
        return configuration_auto.CONFIG_MAPPING[model_type]().to_dict()
    except Exception:
        return {}


# Keys of a saved sub-config that say nothing about the model.
NOT_MODEL_KEYS = {"transformers_version", "architectures", "id2label", "label2id", "dtype", "torch_dtype",
                  "return_dict", "output_hidden_states", "output_attentions", "use_cache", "chunk_size_feed_forward"}


def sub_config_facts(model_type):
    """For a composite config (`llava`: `vision_config`, `text_config`),
    each sub-config's `model_type` and the fields where the composite
    config's default differs from the sub-config class's own (LLaVA's CLIP
    tower: 16 heads where CLIPVisionConfig has 12). An inferred config that
    writes a sub-config at all writes these with it, so what the shapes do
    not show keeps the composite default, and transformers can build it
    (a width of 1024 with CLIPVisionConfig's 12 heads cannot). Empty for a
    model type without sub-configs; `diffusers/` types have none."""
    if model_type.startswith("diffusers/"):
        return {}
    composite = sub_config_default(model_type)
    out = {}
    for parent, value in composite.items():
        if not (isinstance(value, dict) and isinstance(value.get("model_type"), str)):
            continue
        own = sub_config_default(value["model_type"])
        facts = {"model_type": value["model_type"]}
        for key, v in value.items():
            if key.startswith("_") or key in NOT_MODEL_KEYS or key == "model_type":
                continue
            if key not in own or own[key] != v:
                facts[key] = json.loads(json.dumps(v, default=str))
        out[parent] = facts
    return {"sub_configs": out} if out else {}


def no_class_reason(model_type):
    """Why a model type has no class to describe: transformers' auto
    mappings name none for it (a sub-config's type), or only in mappings
    outside the heads the zoo reads (depth estimation, backbones, ...)."""
    from transformers.models.auto import modeling_auto
    others = sorted(
        name.removeprefix("MODEL_FOR_").removesuffix("_MAPPING_NAMES").lower().replace("_", " ")
        for name in dir(modeling_auto)
        if name.endswith("_MAPPING_NAMES") and name != "CONFIG_MAPPING_NAMES"
        and model_type in getattr(modeling_auto, name))
    if others:
        return "its classes are only in auto mappings the zoo does not read: " + ", ".join(others)
    return "no model class: transformers' auto mappings name a configuration only"


def write_coverage(zoo_dir, coverage, required):
    import transformers
    diffusers_rows = [row for row in coverage if row[0].startswith("diffusers/")]
    coverage = [row for row in coverage if not row[0].startswith("diffusers/")] + diffusers_rows
    exact = [t for t, classes, _ in coverage if classes and not t.startswith("diffusers/")]
    named = sum(1 for t, classes, _ in coverage if not t.startswith("diffusers/") for k in classes if "@" in k)
    transformers_rows = len(coverage) - len(diffusers_rows)
    config_only = sum(1 for t, classes, failed in coverage
                      if not classes and failed.get("*", "").startswith("no model class"))
    lines = [
        "# Coverage of the transformers zoo",
        "",
        f"Generated by generate.py from transformers {transformers.__version__} (and diffusers_models.py for the "
        "`diffusers/` classes, whose described classes are the released structures, the variants); do not edit.",
        "",
        f"**{len(exact)} of {transformers_rows} model types** have at least one class described exactly "
        f"({sum(1 for t, c, _ in coverage if not t.startswith('diffusers/') for k in c if '@' not in k)} classes"
        + (f", and {named} descriptions of a class for another value of a name that chooses modules, "
           "or of a flag that changes sizes, `Class@name=value`" if named else "") + "); "
        f"{config_only} of the {transformers_rows} name a configuration only (a composite model's part) and have "
        "no model class to describe. A class is listed "
        "as described only when its description reproduced held-out variations of its config.",
        "",
        f"**{sum(1 for _, c, _ in diffusers_rows if c)} of {len(diffusers_rows)} diffusers classes** are described "
        f"({sum(len(c) for _, c, _ in diffusers_rows)} variants: the released structures of each class).",
        "",
    ] + ([
        f"**{len(required)} model types** are described with fields their config class leaves without a "
        "default the library can build (required.py): ckptcheck refuses a config.json that leaves one out, "
        "as transformers fails on it, and an inferred config writes the value the description was derived at. "
        + "; ".join(f"{t}: " + ", ".join(f"`{f}`" for f in sorted(fields)) for t, fields in required.items()) + ".",
        "",
    ] if required else []) + [
        "| model type | classes described | not described (why) |",
        "|---|---|---|",
    ]
    for t, classes, failed in coverage:
        why = "; ".join(f"`{k}`: {v}".replace("|", "/") for k, v in failed.items())
        lines.append(f"| {t} | {', '.join(classes)} | {why} |")
    with open(os.path.join(zoo_dir, "COVERAGE.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
