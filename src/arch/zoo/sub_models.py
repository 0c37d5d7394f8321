#!/usr/bin/env python3
"""Composite models with another sub-model than their default (run by hand,
never by CI). LLaVA's default language model is LLaMA, but llava-v1.6
-mistral's `text_config` names `mistral`, LLaVA-OneVision and many LLaVA
fine-tunes name `qwen2`, PaliGemma 2 names `gemma2`, BLIP-2's flan-t5
releases name `t5`; generate.py describes each composite at its default
sub-models only, so ckptcheck refused such a config (the name chooses the
sub-model's modules). transformers builds a composite's sub-model from the
sub-config alone (`AutoModel.from_config(config.text_config)`, or the
causal/seq2seq auto class), so the composite with another sub-model is the
composite's own modules around that model type's own.

For each described composite class and each sub-config (`text_config`,
`vision_config`) whose default model type is a candidate, this finds the
module transformers builds from that sub-config (the module whose `config`
is the sub-config itself), and for each other candidate type builds the
composite with it on the `meta` device: at that type's default (layers cut
to 2, the saved dict sparse, as save_pretrained writes it) and at a
held-out variation of its own description. Where, both times, the module is
of a class ckptcheck describes for that type, and the composite's state
dict is exactly the composite's description with that module's subtree
replaced by the type's own description (sizes the composite reads from the
sub-config outside the module, such as the LM head's vocabulary, taken as
the type's description resolves them, and by the common name where the
type's config class maps it to its own, T5's `hidden_size` to `d_model`),
the type is listed for that sub-config (`swaps`: [sub-config, module path,
[[type, class, {alias: field}?], ...]]), and
both samples join the class's held-out variations, so the matrix test
checks them. ckptcheck builds a listed type the same way and still refuses
one not listed.

    /tmp/zoo/bin/python src/arch/zoo/sub_models.py [--only TYPE,...] [--jobs 2]
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trees  # noqa: E402 - after the path is set

DONE_DIR = "/tmp/ckptcheck-zoo-sub-models"
TYPE_SECONDS = 900
# The model types releases put in a composite's place, by sub-config.
CANDIDATES = {
    "text_config": ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "phi",
                    "mixtral", "qwen2_moe", "qwen3_moe", "granite", "opt", "t5", "cohere", "cohere2", "olmo2",
                    "starcoder2", "gpt2", "gpt_neox", "stablelm"],
    "vision_config": ["clip_vision_model", "siglip_vision_model", "siglip2_vision_model"],
}


def sparse_default(model_type):
    """A sub-config as save_pretrained writes a default one: its
    `model_type`, and its layer counts cut to 2 (the models build fast)."""
    import generate
    from transformers.models.auto import configuration_auto
    full = configuration_auto.CONFIG_MAPPING[model_type]().to_dict()
    out = {"model_type": model_type}
    for field, value in generate.flatten(full)[0].items():
        if "." not in field and generate.LAYER_FIELD.search(field) and value > 2:
            out[field] = 2
    return out


def own_description(model_type, class_name):
    """(description, first held-out variation) of a class of another type,
    from generate.py's cache; None where it is not described."""
    path = os.path.join(__import__("generate").CACHE, model_type + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        cached = json.load(f)
    desc = cached["classes"].get(class_name)
    if desc is None:
        return None
    row = next((m for m in cached["matrix"] if m["class"] == class_name and "when" not in m), None)
    base = next((v["config"] for v in row["variations"] if not v.get("sub_model")), {}) if row else {}
    return desc, base


def expand_grafted(node, env, path, graft, prefix=""):
    """generate.py's `expand`, with the child at `path` (a list of names)
    replaced by the listing `graft` (keys relative to it)."""
    if not path:
        return [(prefix + k, s, d) for k, s, d in graft]
    out = []
    for t in node["t"]:
        if trees.holds(node, t[0], env):
            out.append((prefix + t[0], [trees.to_int(trees.evaluate(x, env)) for x in t[1]],
                        t[2] if len(t) > 2 else "float32"))
    if node.get("items") or node.get("repeat") or node.get("last") or node.get("kinds"):
        raise ValueError("the sub-model sits inside a list")
    for name, child in node.get("c", []):
        if not trees.holds(node, name, env):
            continue
        if name == path[0]:
            out += expand_grafted(child, env, path[1:], graft, prefix + name + ".")
        else:
            out += trees.expand(child, env, prefix + name + ".")
    return out


def sub_model_path(model, sub_config):
    """The module transformers built from the sub-config (its `config` is
    that very object), the first in module order; None where there is none."""
    for name, module in model.named_modules():
        if name and getattr(module, "config", None) is sub_config:
            return name
    return None


def aliases(model_type):
    """The sub-config class's `attribute_map` ({alias: field}: T5's
    `hidden_size` is its `d_model`), where the composite reads a sub-config
    field by the common name."""
    from transformers.models.auto import configuration_auto
    return dict(getattr(configuration_auto.CONFIG_MAPPING[model_type], "attribute_map", {}) or {})


def merged(composite_dict, sub_config, sub_env, alias_map):
    """The composite dict with the sub-config's fields that its own
    description resolved filled in where the dict leaves them out, and
    each alias by the field it stands for (the Python twin of the Rust
    side's merge)."""
    d = copy.deepcopy(composite_dict)
    sub = d.setdefault(sub_config, {})
    for field, value in sub_env.items():
        if "." not in field and field not in sub and not field.startswith("num_labels"):
            sub[field] = value
    for alias, field in alias_map.items():
        if alias not in sub and field in sub:
            sub[alias] = sub[field]
    return d


def swap_samples(desc, base_dict, config_class, model_class):
    """([[sub-config, path, [[type, class], ...]]], samples) for a class."""
    import generate
    from formulas import Misfit
    default_config, _, default_model = generate.sample(config_class, model_class, base_dict)
    swaps, samples = [], []
    for sub_name, candidates in CANDIDATES.items():
        sub_config = getattr(default_model.config, sub_name, None) if hasattr(default_model, "config") else None
        if sub_config is None or getattr(sub_config, "model_type", None) not in candidates:
            continue
        path = sub_model_path(default_model, sub_config)
        if path is None:
            continue
        default_type = sub_config.model_type
        verified = []
        for other in candidates:
            if other == default_type:
                continue
            found = []
            for trial in ("default", "variation"):
                try:
                    sub_dict = sparse_default(other)
                except Exception:
                    break
                if trial == "variation":
                    known = found and own_description(other, found[0][1])
                    if not known or not known[1]:
                        break
                    sub_dict = dict(copy.deepcopy(known[1]), model_type=other)
                d = dict(copy.deepcopy(base_dict))
                d[sub_name] = sub_dict
                try:
                    got, config, model = generate.sample(config_class, model_class, d)
                except Exception:
                    break
                module = model.get_submodule(path) if sub_model_path(model, getattr(config, sub_name)) == path else None
                if module is None:
                    break
                class_name = type(module).__name__
                own = own_description(other, class_name)
                if own is None or (found and found[0][1] != class_name):
                    break
                own_desc = own[0]
                try:
                    sub_env = generate.resolve_env(own_desc, sub_dict)
                    if generate.refused_by(own_desc, sub_env):
                        break
                    sub_listing = trees.expand(own_desc["tree"], sub_env)
                    env = generate.resolve_env(desc, merged(d, sub_name, sub_env, aliases(other)))
                    mine = expand_grafted(desc["tree"], env, path.split("."), sub_listing)
                except (Misfit, KeyError, ValueError, ZeroDivisionError):
                    break
                if [tuple(x) for x in mine] != [tuple(x) for x in got.listing]:
                    break
                got.config_dict = d
                found.append((got, class_name))
            if len(found) == 2:
                alias_map = aliases(other)
                verified.append([other, found[0][1]] + ([alias_map] if alias_map else []))
                for s, _ in found:
                    s.sub_model = f"{sub_name}={other}"
                    samples.append(s)
        if verified:
            swaps.append([sub_name, path, verified])
    return swaps, samples


def apply_to_type(model_type):
    import generate

    def check(name, desc, config_class, model_class, base):
        try:
            swaps, samples = swap_samples(desc, base, config_class, model_class)
        except Exception as e:  # noqa: BLE001 - reported, the class left as it is
            return {name: {"error": f"{type(e).__name__}: {e}"}}
        if not swaps:
            return {}
        return {name: {"swaps": swaps,
                       "samples": [{"config": json.loads(json.dumps(s.config_dict, default=str)),
                                    "sub_model": s.sub_model,
                                    "state_dict": [[k, sh, dt] for k, sh, dt in s.listing]} for s in samples]}}
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def write_back(types):
    import generate
    from assemble import class_key, digest

    def update(name, desc, entry, cached):
        desc.pop("swaps", None)
        row = next((m for m in cached["matrix"] if class_key(m["class"], m.get("when", {})) == name), None)
        if row is not None:
            row["variations"] = [v for v in row["variations"] if not v.get("sub_model")]
        if not entry or "error" in entry or row is None:
            return False
        desc["swaps"] = entry["swaps"]
        for s in entry["samples"]:
            # Count and digest only: the fixture stays small.
            listing = [tuple(x) for x in s["state_dict"]]
            row["variations"].append({"config": s["config"], "sub_model": s["sub_model"],
                                      "count": len(listing), "digest": digest(listing)})
        return True
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back, "composite classes with other sub-models")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
