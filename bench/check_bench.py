"""Check benchmark: checking a multi-GB checkpoint against a model dump
(`ckptcheck snippet`'s JSON, for any model) against checking it against the
built-in preset of the same model, in one run.

Uses the Chinese-CLIP ViT-H-14@RoBERTa-wwm-ext-large-chinese safetensors file
that bench/inspect_bench.py generates (3.8 GB, cached in bench/out/), dumps
cn_clip's own CLIP model for that config with the shipped snippet
(src/arch/dump_snippet.py, built on the meta device: nothing allocated), and
times `cargo bench --bench check_model` (release, in-process: build the model,
read the file, check; medians of 20, alternating). Prints both medians and
the ratio dump / preset.

Run: `cargo xtask bench check` or `python bench/check_bench.py` with a Python
that has torch, safetensors and cn_clip. Not a test: nothing asserts a time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from inspect_bench import MODEL, OUT, make_files  # noqa: E402


def make_dump():
    import torch
    import cn_clip.clip as cn_clip_package
    from cn_clip.clip.model import CLIP

    path = OUT / "clip_cn_vit-h-14.dump.json"
    configs = Path(cn_clip_package.__file__).parent / "model_configs"
    vision, text = MODEL.split("@")
    config = json.loads((configs / f"{vision}.json").read_text())
    config.update(json.loads((configs / f"{text}.json").read_text()))
    with torch.device("meta"):
        model = CLIP(**config)
    namespace = {}
    exec((ROOT / "src/arch/dump_snippet.py").read_text(), namespace)
    namespace["ckptcheck_dump"](model, str(path))
    return path


def main():
    _, safetensors_file = make_files()
    dump = make_dump()
    result = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "check_model", "--", str(safetensors_file), MODEL, str(dump)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    line = json.loads(result.stdout.strip().splitlines()[-1])
    size = os.path.getsize(safetensors_file)
    print(f"check of {safetensors_file.name} ({size / 1e9:.2f} GB), median of 20, warm cache:")
    print(f"  against the preset {MODEL}: {line['preset_median_s'] * 1000:.2f} ms (loads: {line['loads_by_preset']})")
    print(f"  against a dump of cn_clip's model ({dump.stat().st_size} B JSON): {line['dump_median_s'] * 1000:.2f} ms (loads: {line['loads_by_dump']})")
    print(f"  dump / preset: {line['dump_over_preset']:.2f}x")


if __name__ == "__main__":
    main()
