#!/usr/bin/env python3
"""Sizes the modeling code reads that the config class does not declare
(run by hand, never by CI). Glm4MoeConfig has no `head_dim`, yet
modeling_glm4_moe reads `getattr(config, "head_dim", config.hidden_size //
config.num_attention_heads)`: a config.json that sets it (GLM-4.5 and 4.6
set 128 beside 5120 wide and 96 heads) builds `q_proj` 96*128 wide, where
a description derived from the fields `to_dict()` shows builds
`hidden_size//num_attention_heads*num_attention_heads`. generate.py never
varies such a field, so the description holds only at its default.

For each described class, every `getattr(config, "X", default)` in the
model class's modeling module whose X the config class neither declares
nor shows in `to_dict()`, and whose default is a formula over the class's
described fields (`hidden_size//num_attention_heads`), is recorded as
`undeclared: {X: formula}`; the Rust side refuses a config that sets X to
another value than the formula gives, naming it. A default that is no
formula (a name, a float, None) sizes nothing here and is left out.

generate.py calls `undeclared_fields` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/undeclared.py [--only TYPE,...] [--jobs 2]
"""

import inspect
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-undeclared"
TYPE_SECONDS = 120
GETATTR = re.compile(r'getattr\(\s*(?:self\.)?config\s*,\s*"(\w+)"\s*,')


def default_text(source, start):
    """The default argument of the getattr call whose third argument starts
    at `start`, up to the call's closing parenthesis."""
    depth = 0
    for at in range(start, len(source)):
        char = source[at]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                return source[start:at]
            depth -= 1
        elif char == "," and depth == 0:
            return None  # a fourth argument: not a plain getattr
    return None


def getattr_sizes(config_class, model_class, known):
    """{field: formula} for each `getattr(config, "X", formula)` in the model
    class's modeling module whose X the config class neither declares nor
    shows in `to_dict()` and whose formula reads only fields in `known`. A
    composite's sub-config is read the same way (GLM-4.5V's modeling code
    reads `head_dim` off its `text_config`, whose class does not declare
    it): `text_config.head_dim`, its formula over `text_config.` fields."""
    from formulas import split_names
    try:
        source = inspect.getsource(inspect.getmodule(model_class))
        declared = config_class().to_dict()
    except Exception:  # noqa: BLE001 - no source or no default: nothing recorded
        return {}
    configs = []

    def sub_configs(prefix, cls, fields):
        # Each (sub-)config, nested ones too (Qwen3-Omni's
        # `thinker_config.text_config`), with its class where known.
        configs.append((prefix, cls, fields))
        classes = getattr(cls, "sub_configs", {}) or {}
        for key, value in fields.items():
            if isinstance(value, dict) and prefix.count(".") < 3:
                sub_configs(f"{prefix}{key}.", classes.get(key), value)
    sub_configs("", config_class, declared)
    found = {}
    for match in GETATTR.finditer(source):
        field = match.group(1)
        text = default_text(source, match.end())
        if text is None:
            continue
        formula = re.sub(r"\b(?:self\.)?config\.", "", text).replace(" ", "").replace("\n", "")
        if not re.fullmatch(r"[\w*/+\-]+", formula) or not re.search(r"[A-Za-z_]", formula):
            continue
        try:
            names = split_names(formula)
        except Exception:  # noqa: BLE001 - not a formula ckptcheck reads
            continue
        for prefix, cls, fields in configs:
            target = prefix + field
            if (field in fields or target in known or target in found or not names
                    or (cls is not None and hasattr(cls, field))):
                continue
            if all(prefix + name in known for name in names):
                found[target] = re.sub(r"[A-Za-z_]\w*", lambda m: prefix + m.group(0), formula)
    return found


def undeclared_fields(desc, config_class, model_class):
    """{field: formula} for the class (see the module's docstring): the
    sizes its description still holds at their default only (generate.py
    describes them as fields where the derivation with them succeeds)."""
    return getattr_sizes(config_class, model_class, desc.get("fields", {}))


def main():
    import generate

    def find(desc, config_class, model_class, base, facts):
        return undeclared_fields(desc, config_class, model_class)
    generate.run_one_key_pass(DONE_DIR, "undeclared", find, TYPE_SECONDS,
                              "classes whose modeling code reads sizes the config class does not declare")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
