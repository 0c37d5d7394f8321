#!/usr/bin/env python3
"""Which components each diffusers pipeline class may go without, derived
from the library itself. Run by hand (never by CI or tests):

    /tmp/zoo/bin/python src/arch/zoo/diffusers_pipelines.py

`DiffusionPipeline.from_pretrained` drops a component that
`model_index.json` saves as `[null, null]`, and then raises `ValueError:
Pipeline <class ...> expected [...], but only {...} were passed.` unless
the component is one of the class's `_optional_components` (a safety
checker) or the caller passes it (`text_encoder_3=None` for SD3 without
T5). For every pipeline class diffusers exports this writes the components
`DiffusionPipeline.from_pretrained` expects of it (`_get_signature_keys`:
its `__init__`'s parameters without a default) and, of those, the optional
ones to
src/arch/zoo/diffusers_pipelines.json, which src/pipeline/mod.rs reads.
"""

import json
import os

import diffusers
from diffusers import DiffusionPipeline

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    pipelines = {}
    skipped = {}
    for name in sorted(dir(diffusers)):
        if not name.endswith("Pipeline") or name == "DiffusionPipeline":
            continue
        try:
            cls = getattr(diffusers, name)
        except Exception as e:  # noqa: BLE001 - an optional dependency is missing
            skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, DiffusionPipeline)):
            continue
        # What `DiffusionPipeline.from_pretrained` expects of the class:
        # its `__init__`'s parameters without a default (the list its
        # ValueError prints); of those, the ones in `_optional_components`
        # may be left out.
        expected, _ = DiffusionPipeline._get_signature_keys(cls)
        optional = [c for c in cls._optional_components if c in expected]
        pipelines[name] = {"expected": sorted(expected), "optional": sorted(optional)}
    out = {
        "generated_by": "src/arch/zoo/diffusers_pipelines.py",
        "diffusers": diffusers.__version__,
        "pipelines": pipelines,
        "skipped": skipped,
    }
    with open(os.path.join(HERE, "diffusers_pipelines.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(len(pipelines), "pipeline classes;", len(skipped), "skipped")


if __name__ == "__main__":
    main()
