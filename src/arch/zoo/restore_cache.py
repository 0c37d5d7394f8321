#!/usr/bin/env python3
"""Rebuilds generate.py's per-model-type cache (/tmp/ckptcheck-zoo-cache)
from the committed outputs, so that one model type can be derived again
(`generate.py --only t5`) and the outputs reassembled without deriving
all 800-odd of them anew (hours on a 2-core machine). Run by hand:

    /tmp/zoo/bin/python src/arch/zoo/restore_cache.py
    /tmp/zoo/bin/python src/arch/zoo/generate.py --assemble   # must change nothing

It reads what assemble.py wrote and undoes it: transformers.json's classes
with their shared subtrees put back in place, matrix.json's samples grouped
by model type again (the ones assemble.py kept whole stay whole, the others
stay digests, as assemble.py leaves them), and COVERAGE.md's reasons for
each class that was not described. A cache file that exists is left alone
unless `--force` is given. `--check` rebuilds into a scratch folder, runs
assemble.py's own `assemble` there against scratch copies of the outputs and
reports whether they came out byte for byte as committed.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import assemble  # noqa: E402

ZOO = os.path.dirname(os.path.abspath(__file__))
ROOT = assemble.ROOT
DATA = os.path.join(ZOO, "transformers.json")
MATRIX = os.path.join(ROOT, "tests", "fixtures", "zoo", "matrix.json")
COVERAGE = os.path.join(ZOO, "COVERAGE.md")


def expand_refs(node, shared):
    """A tree with every {"ref": i} replaced by the subtree it stands for."""
    if isinstance(node, dict) and set(node) == {"ref"}:
        return expand_refs(shared[node["ref"]], shared)
    out = dict(node)
    for pairs in ("c", "kinds"):
        if pairs in out:
            out[pairs] = [[name, expand_refs(child, shared)] for name, child in out[pairs]]
    if "items" in out:
        out["items"] = [expand_refs(item, shared) for item in out["items"]]
    for kind in ("body", "rest"):
        if kind in out:
            out[kind] = expand_refs(out[kind], shared)
    if "last" in out:
        out["last"] = [expand_refs(item, shared) for item in out["last"]]
    return out


def coverage_rows(text):
    """COVERAGE.md's rows: model type -> {class or "*": why not described}.
    The reasons are split where the next "`name`: " begins, which
    write_coverage joins back to the same text."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| model type") or line.startswith("|---"):
            continue
        cells = line[2:-2].split(" | ")
        if len(cells) != 3:
            raise SystemExit(f"COVERAGE.md: a row this script cannot read: {line}")
        model_type, _, why = cells
        failed = {}
        for part in re.split(r"; (?=`[^`]*`: )", why) if why else []:
            match = re.fullmatch(r"`([^`]*)`: (.*)", part, re.S)
            if not match:
                raise SystemExit(f"COVERAGE.md: a reason this script cannot read: {part}")
            failed[match.group(1)] = match.group(2)
        rows[model_type] = failed
    return rows


def restore(cache, force=False):
    """Writes one cache file per model type the committed outputs describe
    or give reasons for; returns how many it wrote."""
    with open(DATA) as f:
        data = json.load(f)
    with open(MATRIX) as f:
        matrix = json.load(f)
    with open(COVERAGE) as f:
        rows = coverage_rows(f.read())
    samples = {}
    for entry in matrix["classes"]:
        samples.setdefault(entry["model_type"], []).append(entry)
    described = {t: e for t, e in data["model_types"]}
    os.makedirs(cache, exist_ok=True)
    written = 0
    for model_type, failed in rows.items():
        if failed == {"*": "not derived yet"}:
            continue
        entry = described.get(model_type, {})
        classes = {assemble.class_key(name, desc.get("when", {})): dict(desc, tree=expand_refs(desc["tree"], data["shared"]))
                   for name, desc in entry.get("classes", [])}
        result = {"model_type": model_type, "classes": classes, "failed": failed,
                  "matrix": samples.get(model_type, []), "restored": True}
        if "config_class" in entry:
            result["config_class"] = entry["config_class"]
        path = os.path.join(cache, model_type.replace("/", "__") + ".json")
        if os.path.exists(path) and not force:
            continue
        with open(path, "w") as f:
            json.dump(result, f)
        written += 1
    return written


def check():
    """Restores into a scratch cache, assembles from it into scratch copies
    of the outputs, and compares them with the committed ones."""
    import generate
    scratch = tempfile.mkdtemp(prefix="zoo-restore-")
    try:
        cache = os.path.join(scratch, "cache")
        restore(cache, force=True)
        root = os.path.join(scratch, "root")
        os.makedirs(os.path.join(root, "src", "arch", "zoo"))
        os.makedirs(os.path.join(root, "tests", "fixtures", "zoo"))
        assemble.CACHE, assemble.ROOT = cache, root
        generate.assemble_outputs()
        same = True
        for committed in (DATA, MATRIX, COVERAGE):
            rebuilt = os.path.join(root, os.path.relpath(committed, ROOT))
            with open(committed, "rb") as a, open(rebuilt, "rb") as b:
                equal = a.read() == b.read()
            print(("same: " if equal else "DIFFERS: ") + os.path.relpath(committed, ROOT))
            same = same and equal
        return same
    finally:
        shutil.rmtree(scratch)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--force", action="store_true", help="overwrite cache files that exist")
    parser.add_argument("--check", action="store_true",
                        help="restore and reassemble in a scratch folder; exit 1 unless the outputs come out as committed")
    args = parser.parse_args()
    if args.check:
        sys.exit(0 if check() else 1)
    written = restore(assemble.CACHE, force=args.force)
    print(f"{written} cache files written to {assemble.CACHE}")


if __name__ == "__main__":
    main()
