"""Fields a config class leaves without a usable default (used by
generate.py, run by hand, never by CI). transformers' own defaults do not
build some of the most used models: `EsmConfig()` has `vocab_size` None
(ESM-2's embedding cannot be made), `MinistralConfig()` and the HunYuan
configs `head_dim` None, `NemotronConfig()` `num_key_value_heads` None,
`Dots1Config()` no expert counts, and `DbrxAttentionConfig` no
`rope_theta` at all. A released config.json always sets them, so the
zoo described none of these types.

`completions(config_class, model_class)` finds the fewest such fields,
each given a value (a small number or an empty map; for an attribute the
class never sets, a small number or 0.0), with which the default config
builds: the
null fields of the config dict and the attributes an AttributeError names
are tried, and each filled field that the model still builds without is
dropped again. The class is then derived with those values as its
defaults (names.named_config_class), so that each is varied like any
size, and its description lists them as `required`: a config.json that
leaves one out, or null, is refused as transformers refuses it, naming
the field, and never built with the value the derivation chose."""

import copy
import re

from names import read as read_path

# Values tried for a field, in order: a small size first (a head size, an
# expert count, a vocabulary), then what a rate or a base takes; an empty
# map last (Chameleon's `vocabulary_map`, read for its image tokens).
INT_VALUES = (8, 64, 4, 2, 1, {})
ATTRIBUTE_VALUES = (8, 0.0, 64, 1)
MOST_FIELDS = 4
# Fields that never make a model build: they name nothing the modules are
# made from.
NOT_SIZES = re.compile(r"(^|_)token_ids?$|^(architectures|dtype|torch_dtype|problem_type|_name_or_path|"
                       r"transformers_version|id2label|label2id)$")
MISSING_ATTRIBUTE = re.compile(r"'(\w+)' object has no attribute '(\w+)'")


class ConfigRefused(Exception):
    """The config class refuses the value: no step towards a model."""


def builds(config_class, model_class, config_dict):
    """None where the model builds on the meta device, else the error
    (ConfigRefused where the config class refuses the dict)."""
    import torch
    try:
        config = config_class.from_dict(copy.deepcopy(config_dict))
    except Exception as e:  # noqa: BLE001 - any refusal is the answer
        return ConfigRefused(str(e))
    try:
        with torch.device("meta"):
            model_class(config)
        return None
    except Exception as e:  # noqa: BLE001 - any refusal is the answer
        return e


def set_path(config_dict, path, value):
    node = config_dict
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def sub_config_classes(config_class, config_dict):
    """{path prefix: config class name} for the config and each sub-config
    it builds (DBRX's `attn_config` is a DbrxAttentionConfig)."""
    found = {"": config_class.__name__}
    try:
        config = config_class.from_dict(copy.deepcopy(config_dict))
    except Exception:  # noqa: BLE001 - the top level is still named
        return found
    for key, value in config_dict.items():
        if isinstance(value, dict):
            sub = getattr(config, key, None)
            if sub is not None and hasattr(sub, "to_dict") and not isinstance(sub, dict):
                found[key + "."] = type(sub).__name__
    return found


def candidates(config_class, config_dict, error):
    """(path, values) to try: the attribute an AttributeError names, on the
    config (or sub-config) class it names, then each null field of the
    config and of its sub-configs."""
    found = []
    match = MISSING_ATTRIBUTE.search(str(error)) if isinstance(error, AttributeError) else None
    if match:
        owner, attribute = match.groups()
        for prefix, name in sub_config_classes(config_class, config_dict).items():
            holder = read_path(config_dict, prefix[:-1]) if prefix else config_dict
            if name == owner and isinstance(holder, dict) and attribute not in holder:
                found.append((prefix + attribute, ATTRIBUTE_VALUES))
    for prefix in sub_config_classes(config_class, config_dict):
        holder = read_path(config_dict, prefix[:-1]) if prefix else config_dict
        for field, value in holder.items():
            if value is None and not NOT_SIZES.search(field):
                found.append((prefix + field, INT_VALUES))
    return found


def completions(config_class, model_class):
    """{path: value} with which the default config builds, fewest first;
    {} where it builds as it is or no completion makes it build."""
    try:
        default = config_class().to_dict()
    except Exception:  # noqa: BLE001 - a class that refuses its own default: not completed
        return {}
    error = builds(config_class, model_class, default)
    if error is None:
        return {}
    filled = {}
    current = copy.deepcopy(default)
    for _ in range(MOST_FIELDS):
        # A value with which the model builds is taken first; else the
        # first that gets past the error (a second field is missing).
        progress = None
        built = None
        for path, values in candidates(config_class, current, error):
            if path in filled:
                continue
            for value in values:
                trial = copy.deepcopy(current)
                set_path(trial, path, value)
                got = builds(config_class, model_class, trial)
                if got is None:
                    built = (path, value, trial, None)
                    break
                refused = isinstance(got, ConfigRefused)
                if progress is None and not refused and (type(got), str(got)) != (type(error), str(error)):
                    progress = (path, value, trial, got)
            if built is not None:
                break
        progress = built or progress
        if progress is None:
            return {}
        path, value, current, error = progress
        filled[path] = value
        if error is None:
            break
    if error is not None:
        return {}
    # The fewest: each field the model builds without is dropped again.
    for path in list(filled):
        trial = copy.deepcopy(current)
        parent, _, name = path.rpartition(".")
        holder = read_path(trial, parent) if parent else trial
        if name in (read_path(default, parent) if parent else default):
            holder[name] = read_path(default, path)
        else:
            del holder[name]
        if builds(config_class, model_class, trial) is None:
            current = trial
            del filled[path]
    return filled


def completed_class(config_class, filled):
    """The config class with the filled fields as its defaults."""
    return class_with_defaults(config_class, filled)


def class_with_defaults(config_class, defaults):
    """The config class with `defaults` ({path: value}, top level or one
    sub-config down) as its defaults: a value config.json leaves out or
    null is the default's (a copy: index_kinds.py's `EveryIndex` stays
    itself); a sub-config's goes into the sub-config's dict, the
    composite's own default dict where config.json leaves the sub-config
    out (whose value there, SAM's `global_attn_indexes`, it replaces)."""
    def __init__(self, **kwargs):
        for path, value in defaults.items():
            parent, _, name = path.rpartition(".")
            if not parent:
                if kwargs.get(name) is None:
                    kwargs[name] = copy.deepcopy(value)
                continue
            holder = kwargs.get(parent)
            left_out = holder is None
            if left_out:
                holder = config_class().to_dict().get(parent) or {}
            if isinstance(holder, dict):
                holder = dict(holder)
                if left_out or holder.get(name) is None:
                    holder[name] = copy.deepcopy(value)
                kwargs[parent] = holder
        config_class.__init__(self, **kwargs)
    return type(config_class.__name__, (config_class,), {"__init__": __init__})


def with_required(config_dict, filled, default_dict):
    """A config dict with each required field it leaves out (or null) set
    to the value the derivation used, as a config.json the library builds
    must set it; a sub-config it leaves out is written whole from the
    default (`default_dict`, the completed class's), so that it keeps the
    composite's values and its `model_type`."""
    out = copy.deepcopy(config_dict)
    for path, value in filled.items():
        node = out
        parts = path.split(".")
        for depth, part in enumerate(parts[:-1]):
            if part not in node:
                node[part] = copy.deepcopy(read_path(default_dict, ".".join(parts[:depth + 1])) or {})
            node = node[part]
        if node.get(parts[-1]) is None:
            node[parts[-1]] = value
    return out
