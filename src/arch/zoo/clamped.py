#!/usr/bin/env python3
"""Quotients the library clamps at 1 (run by hand, never by CI).
ConvBERT's attention takes `num_attention_heads // head_ratio` heads, and
where that comes to 0 (a head ratio above the head count) it takes 1 head
instead: `conv_kernel_layer` is `conv_kernel_size` rows, where the
description, a formula fitted on samples whose quotient was at least 1,
gives 0. Elsewhere a quotient of 0 is what the library builds (VITS's
`depth_separable_channels // 2` convolutions, empty at 1 channel).

For each described class and each floor division of two fields in its
formulas (`num_attention_heads//head_ratio`), the class is built on the
`meta` device from its first held-out variation with the divisor one
above the dividend, so the quotient is 0, and compared with the
description (fresh_values.py's comparison). Where they differ, the pair is
listed (`clamped: [[dividend, divisor], ...]`) and ckptcheck refuses a
config whose quotient comes to 0, naming both, rather than build the
unclamped shapes; where the library refuses the config too, or builds
what the description gives, nothing is listed.

generate.py calls `clamped_quotients` for each class it derives; run as a
script, this applies it to every class in generate.py's cache and
reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/clamped.py [--only TYPE,...] [--jobs 2]
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-clamped"
TYPE_SECONDS = 300
QUOTIENT = re.compile(r"(?<![\w.)])([A-Za-z_][\w.]*)//([A-Za-z_][\w.]*)(?![\w.(])")


def quotients(desc):
    """Each (dividend, divisor) pair of fields a formula of the class's
    tree floor-divides, in order."""
    from trees import conditional_exprs
    fields = desc.get("fields", {})
    found = []
    for expr in conditional_exprs(desc["tree"]):
        for a, b in QUOTIENT.findall(expr if isinstance(expr, str) else ""):
            if a in fields and b in fields and (a, b) not in found:
                found.append((a, b))
    return found


def clamped_quotients(desc, config_class, model_class, base, facts):
    """[[dividend, divisor]] for the class (see the module's docstring)."""
    import generate
    from fresh_values import compare_with_description
    desc = {k: v for k, v in desc.items() if k != "clamped"}
    pairs = quotients(desc)
    if not pairs:
        return []
    try:
        env = generate.resolve_env(desc, base)
    except Exception:  # noqa: BLE001 - the twin cannot resolve the base: nothing to try
        return []
    found = []
    for a, b in pairs:
        if not isinstance(env.get(a), int) or env[a] < 1:
            continue
        config_dict = generate.with_field(base, b, env[a] + 1)
        try:
            library = generate.sample(config_class, model_class, config_dict)[0]
        except Exception:  # noqa: BLE001 - the library refuses it: so will the config's user
            continue
        if compare_with_description(desc, config_dict, library.listing, facts)[0] == "wrong":
            found.append([a, b])
    return found


def main():
    import generate
    generate.run_one_key_pass(DONE_DIR, "clamped", clamped_quotients, TYPE_SECONDS,
                              "classes whose library clamps a quotient at 1")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
