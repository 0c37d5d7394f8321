#!/usr/bin/env python3
"""Each size field alone, at a value no derivation drew: a second,
independent check of every described class (run by hand, never by CI).

generate.py fits each size on samples that vary a field among a few values
(half, the default, twice, one more). A field seen at two values only
fits any formula with two coefficients: Swin's window of 7 and 14 gave
`80*window_size-391` for `(2*window_size-1)**2`, right at both and wrong
everywhere else (a window of 12, as in swin-base-patch4-window12-384, came
out as 569 rows where the model has 529). Held-out samples that happen to
leave the field at its default do not see it.

This script takes every described class from generate.py's cache
(`/tmp/ckptcheck-zoo-cache`, rebuilt from the committed data by
restore_cache.py), starts from the class's first held-out variation (small
layer counts), sets one size field at a time to a value none of the
derivation's draws give (seven or eight times the value, or five or six
more), builds the model on the `meta` device and compares its state dict
with the description (keys, order, shapes, dtypes; a config the
description refuses, as a head count that does not divide the width or a
patch that does not divide the image, is counted apart, and the Rust side
must refuse it too). It writes `tests/fixtures/zoo/fresh.json` (field,
value, and the library's count and digest of the state dict), which
`cargo test --test zoo_fresh` checks against the Rust evaluator, and
prints every class whose description is wrong at a fresh value, so it can
be derived again.

    /tmp/zoo/bin/python src/arch/zoo/fresh_values.py [--only TYPE,...] [--jobs 2]
"""

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
import written_in_part  # noqa: E402
from assemble import CACHE, ROOT, class_key, clean, digest, finite_only, sub_config_facts  # noqa: E402
from equal_sizes import drop_keys_if_equal  # noqa: E402

OUT_DIR = "/tmp/ckptcheck-fresh-values"
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "zoo", "fresh.json")
TYPE_SECONDS = 300


def fresh_candidates(field, value):
    """Values neither a derivation nor its own check at fresh values draws
    (generate.vary, the extra singles, generate.fresh_values): seven or
    eight times the value, or five or six more; a layer count or a small
    number only steps."""
    if value <= 0:
        return [7, 9]
    if generate.LAYER_FIELD.search(field) or value <= 3:
        return [value + 5, value + 6]
    return [value * 7, value * 8, value + 5, value + 6]


def names_left_out(config, facts):
    """The Python twin of checks.rs's check_sub_config_names: a sub-config
    given without a name the composite default sets (other than its
    `model_type` and activations), or naming another, is refused."""
    for parent, names in facts.items():
        given = config.get(parent)
        if not isinstance(given, dict):
            continue
        for name, default in names.items():
            if not isinstance(default, str) or re.search(r"(^|_)act(_|$)|activation|^attn_impl", name):
                continue
            value = given.get(name)
            if value == default or (value is None and name == "model_type"):
                continue
            return f"{parent}.{name}"
    return None


def compare_with_description(desc, config_dict, listing, facts):
    """("same" | "wrong" | "refused", detail): the description of a class,
    for a config dict, against the library's state dict `listing` for it
    (keys, order, shapes, dtypes). "refused" where the Rust side refuses
    the config, with why where it is a whole-number or left-out-name
    refusal (a fixture row records those), None where a rule refuses it
    (a head count that does not divide a width); "wrong" with the first
    difference."""
    try:
        env = generate.resolve_env(desc, config_dict)
    except generate.Misfit as e:
        # A default that is no whole number at this value (Zamba's
        # `attention_head_dim`, twice the width over the heads): the Rust
        # evaluator refuses it too.
        return "refused", str(e)
    if generate.refused_by(desc, env):
        return "refused", None
    if any(generate.read_field(config_dict, field) not in (None, value) for field, value in desc.get("fixed", {}).items()):
        # A field the description holds at its default that is also a size
        # (CLVP's `num_attention_heads`, a divisor of the width that also
        # sizes the rotary `inv_freq`, max(projection_dim // (2 * heads), 32)
        # / 2, which no formula gives): the Rust side refuses it, naming
        # the field.
        return "refused", None
    if generate.zero_refused(desc, config_dict):
        # A float that changes tensors at 0 only (wav2vec2's
        # `mask_time_prob`): refused there.
        return "refused", None
    # A sub-config written without its names (a base with no held-out
    # variation), or without a field the description needs written with it
    # (written_in_part.py): the Rust side refuses it.
    left_out = names_left_out(config_dict, facts) or written_in_part.left_out(desc, config_dict, facts)
    if left_out:
        return "refused", f"{left_out} left out"
    try:
        mine = drop_keys_if_equal(desc, env, generate.expand(desc["tree"], env))
    except generate.Misfit as e:
        # A size that is no whole number (a patch that does not divide the
        # image): the Rust evaluator refuses the config too, naming the
        # formula; refused, not wrong.
        return "refused", str(e)
    if mine == listing:
        return "same", None
    return "wrong", next((f"{a} vs {b}" for a, b in zip(mine, listing) if a != b),
                         f"{len(mine)} vs {len(listing)} tensors")


def audit_type(model_type):
    out_path = os.path.join(OUT_DIR, model_type + ".json")
    if os.path.exists(out_path):
        return
    result = {"model_type": model_type, "samples": [], "wrong": [], "refused": 0, "unbuilt": []}
    facts = sub_config_facts(model_type).get("sub_configs", {})
    for name, desc, config_class, model_class, base in generate.described_classes(model_type)[1]:
        try:
            base_env = generate.resolve_env(desc, base)
        except Exception as e:  # a base the twin cannot resolve: say so
            result["unbuilt"].append([name, "*", f"{type(e).__name__}: {e}"])
            continue
        for field, spec in desc["fields"].items():
            value = base_env.get(field)
            if isinstance(spec.get("default"), bool) or not isinstance(value, int) or isinstance(value, bool):
                continue
            if field == "num_labels" or "needs" in spec:
                continue
            for new in fresh_candidates(field, value):
                d = generate.with_field(base, field, new)
                try:
                    got, _, _ = generate.sample(config_class, model_class, d)
                except Exception:
                    continue
                sample = {"class": name, "field": field, "value": new, "config": clean(d),
                          "count": len(got.listing), "digest": digest(got.listing)}
                verdict, detail = compare_with_description(desc, d, got.listing, facts)
                if verdict == "refused":
                    result["refused"] += 1
                    if detail is not None:
                        sample["refused"] = detail
                        result["samples"].append(sample)
                    break
                if verdict == "wrong":
                    result["wrong"].append([name, field, new, detail])
                    sample["wrong"] = True
                result["samples"].append(sample)
                break
            else:
                result["unbuilt"].append([name, field, "no fresh value builds"])
    with open(out_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out_path + ".tmp", out_path)


def run(types, jobs):
    def killed(t):
        return {"model_type": t, "samples": [], "wrong": [], "refused": 0,
                "unbuilt": [["*", "*", f"ran past {TYPE_SECONDS} s"]]}

    def line(t, r):
        r = r or {"wrong": [], "samples": []}
        return f"{t} {len(r['samples'])} samples" + (f" WRONG {json.dumps(r['wrong'])}" if r["wrong"] else "")
    generate.run_forked(types, jobs, TYPE_SECONDS, audit_type, OUT_DIR, killed, line)


def write_fixture(types):
    """The samples of every audited type, each as the field, its value and
    the library's count and digest; the config it was built from is the
    class's first held-out variation in matrix.json with that field set
    (checked here), so the fixture stays small. A sample where the
    description was wrong is left out (its class is derived again first),
    so the fixture holds what the committed data must reproduce."""
    with open(os.path.join(ROOT, "tests", "fixtures", "zoo", "matrix.json")) as f:
        matrix = json.load(f)
    # A class's descriptions for other values of a name (`when`) are keyed
    # as generate.py keys them (`ResNetModel@layer_type=basic`).
    bases = {(e["model_type"], class_key(e["class"], e.get("when", {}))):
             generate.first_held_out(e["variations"]) for e in matrix["classes"]}
    whens = {(e["model_type"], class_key(e["class"], e["when"])): e["when"] for e in matrix["classes"] if "when" in e}
    # Types not audited on this machine keep their committed rows (the
    # audit of all of them takes hours).
    committed = {}
    if os.path.exists(FIXTURE):
        with open(FIXTURE) as f:
            for entry in json.load(f)["classes"]:
                committed.setdefault(entry["model_type"], []).append(entry)
    classes = []
    for t in types:
        path = os.path.join(OUT_DIR, t + ".json")
        if not os.path.exists(path):
            classes.extend(committed.get(t, []))
            continue
        with open(path) as f:
            r = json.load(f)
        by_class = {}
        for s in r["samples"]:
            if s.get("wrong"):
                continue
            base = bases.get((t, s["class"]))
            # matrix.json leaves out non-finite numbers (assemble.py's
            # `finite_only`: Mamba's `time_step_limit`), the audit did not.
            if base is None or finite_only(clean(generate.with_field(base, s["field"], s["value"]))) \
                    != finite_only(s["config"]):
                raise SystemExit(f"{t}/{s['class']}: the audit's base is not matrix.json's first variation")
            row = [s["field"], s["value"], s["count"], s["digest"]]
            if "refused" in s:
                row.append("refused")
            by_class.setdefault(s["class"], []).append(row)
        for name, rows in by_class.items():
            entry = {"model_type": t, "class": name.split("@")[0]}
            if (t, name) in whens:
                entry["when"] = whens[(t, name)]
            classes.append(dict(entry, samples=rows))
    with open(FIXTURE, "w") as f:
        f.write('{"transformers": %s, "classes": [\n' % json.dumps(__import__("transformers").__version__))
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in classes))
        f.write("\n]}\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--again", action="store_true", help="audit the chosen types anew")
    args = parser.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    described = sorted(f[:-5] for f in os.listdir(CACHE) if f.endswith(".json") and not re.match(r"[A-Z]", f))
    types = [t for t in args.only.split(",") if t] if args.only else described
    if args.again:
        for t in types:
            if os.path.exists(os.path.join(OUT_DIR, t + ".json")):
                os.remove(os.path.join(OUT_DIR, t + ".json"))
    run(types, args.jobs)
    write_fixture(described)
    wrong = []
    for t in described:
        path = os.path.join(OUT_DIR, t + ".json")
        if os.path.exists(path):
            with open(path) as f:
                wrong += [[t] + w for w in json.load(f)["wrong"]]
    print(f"{len(wrong)} wrong samples")
    for w in wrong:
        print(" ", w)


if __name__ == "__main__":
    generate.pin_hash_seed()
    main()
