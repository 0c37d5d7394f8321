"""What from_pretrained needs of a class, for generate.py: the base-model
prefix, tied weights for both values of `tie_word_embeddings`,
non-persistent buffers, `_keys_to_ignore_on_load_unexpected`, and the
class's conversion mapping as rules the Rust `hf` loader applies."""

import copy
import re


def pretrained_facts(config_class, model_class, default_dict, model):
    import torch
    facts = {"base_model_prefix": getattr(model, "base_model_prefix", "") or ""}
    tied = dict(getattr(model, "all_tied_weights_keys", {}) or {})
    facts["tied"] = sorted([k, v] for k, v in tied.items())
    if "tie_word_embeddings" in default_dict:
        facts["tie_word_embeddings"] = bool(default_dict["tie_word_embeddings"])
        flipped = copy.deepcopy(default_dict)
        flipped["tie_word_embeddings"] = not default_dict["tie_word_embeddings"]
        try:
            with torch.device("meta"):
                other = model_class(config_class.from_dict(copy.deepcopy(flipped)))
            facts["tied_if_flipped"] = sorted([k, v] for k, v in (other.all_tied_weights_keys or {}).items())
        except Exception:
            pass
    persistent = set(model.state_dict())
    buffers = [n for n, _ in model.named_buffers() if n not in persistent]
    facts["non_persistent"] = sorted({re.sub(r"\.\d+\.", ".*.", n) for n in buffers})
    ignore = getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []
    facts["ignore_unexpected"] = sorted(set(ignore))
    facts.update(conversions(model))
    return facts


def conversions(model):
    """The key transforms from_pretrained applies to this class's checkpoints
    (transformers' conversion mapping, the legacy renames every class gets
    left out): literal renames, prefix changes, and converters that merge
    per-expert weights (MergeModulelist, Concatenate). Anything else is
    named in `unmodeled`, so the hf verdict can say it is not exact."""
    from transformers import conversion_mapping as cm
    out, unmodeled = [], []
    try:
        transforms = cm.get_model_conversion_mapping(model, add_legacy=False)
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        return {"conversions": [], "unmodeled": [f"conversion mapping: {type(e).__name__}"]}
    for t in transforms or []:
        kind = type(t).__name__
        sources = list(getattr(t, "source_patterns", []) or [])
        targets = list(getattr(t, "target_patterns", []) or [])
        scope = getattr(t, "scope_prefix", None)
        if kind == "WeightRenaming" and len(targets) == 1 and "\\" not in targets[0]:
            for pattern in sources:
                at_start = pattern.startswith("^")
                literal = pattern.lstrip("^").replace("\\.", ".")
                if re.search(r"[\\\[\](){}*+?|$]", literal):
                    unmodeled.append(f"rename {pattern} -> {targets[0]}")
                    continue
                out.append(["rename", literal, targets[0], at_start, scope])
        elif kind == "WeightRenaming" and len(targets) == 1 and targets[0].count("\\1") == 1 \
                and "\\" not in targets[0].replace("\\1", ""):
            # `layers.(\d+).fc1` -> `layers.\1.mlp.fc1`: a literal, a layer
            # number, a literal.
            replace_before, replace_after = targets[0].split("\\1")
            for pattern in sources:
                at_start = pattern.startswith("^")
                parts = re.fullmatch(r"(.*?)\(\\d\+\)(.*)", pattern.lstrip("^"))
                literals = [p.replace("\\.", ".") for p in parts.groups()] if parts else None
                if literals is None or any(re.search(r"[\\\[\](){}*+?|$^]", p) for p in literals):
                    unmodeled.append(f"rename {pattern} -> {targets[0]}")
                    continue
                out.append(["rename_numbered", literals[0], literals[1], replace_before, replace_after, at_start, scope])
        elif kind == "PrefixChange" and len(sources) == 1 and re.fullmatch(r"\^([\w.]+)\\\.\(\.\+\)", sources[0]):
            prefix = re.fullmatch(r"\^([\w.]+)\\\.\(\.\+\)", sources[0]).group(1).replace("\\", "")
            out.append(["remove_prefix", prefix, scope])
        elif kind == "WeightConverter" and len(targets) == 1:
            ops = []
            for op in getattr(t, "operations", []) or []:
                name = type(op).__name__
                if name == "MergeModulelist":
                    ops.append(["merge", int(getattr(op, "dim", 0))])
                elif name == "Concatenate":
                    ops.append(["concat", int(getattr(op, "dim", 0))])
                else:
                    ops = None
                    break
            if ops is None or not all(set(p) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.*") for p in sources):
                unmodeled.append(f"{kind} {', '.join(sources)} -> {targets[0]}")
            else:
                out.append(["convert", sources, targets[0], ops])
        else:
            unmodeled.append(f"{kind} {', '.join(sources)} -> {', '.join(targets)}")
    return {"conversions": out, "unmodeled": unmodeled}
