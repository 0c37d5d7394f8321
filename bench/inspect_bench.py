"""Inspect benchmark: how fast ckptcheck lists a multi-GB checkpoint, and how
many bytes it reads, against the two Python routes people use, in one run.

Generates (once, cached in bench/out/) a Chinese-CLIP ViT-H-14@RoBERTa-wwm-ext-
large-chinese state dict (958 M parameters, fp32, 3.8 GB) as a torch.save .pt
and as .safetensors, then times, warm from the page cache, median of 5:
  - ckptcheck's reader in-process (`cargo bench --bench inspect`, release), and
    the `ckptcheck inspect --json` command (process start and JSON output
    included, read to the end of its pipe; parsing that JSON in Python is
    not timed) on each file;
  - `torch.load(path, mmap=True, weights_only=True)` + listing names/shapes;
  - `safetensors.safe_open` + listing names/shapes;
  - the process floor: `ckptcheck --version`, started the same way;
and prints ratios against the torch route, plus ckptcheck's bytes read, and
issue 17's goal next to its ratio.

The command is timed from a copy of the binary in bench/out/, as `cargo
install` places one. The linker's own output file starts measurably slower
(its code faults in more slowly: 2.45 against 2.28 ms for the same bytes,
interleaved runs on this project's machine), which says more about how the
file was just written than about ckptcheck; that file is timed too, on a row
of its own.

Run: `cargo xtask bench inspect` or `python bench/inspect_bench.py` with a
Python that has torch, safetensors and cn_clip (set CKPTCHECK_BENCH_PYTHON for
xtask).
Not a test: nothing here asserts a time.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MODEL = "ViT-H-14@RoBERTa-wwm-ext-large-chinese"
RUNS = 31


def make_files():
    import torch
    from safetensors.torch import save_file

    OUT.mkdir(parents=True, exist_ok=True)
    pt, st = OUT / "clip_cn_vit-h-14.pt", OUT / "clip_cn_vit-h-14.safetensors"
    if pt.exists() and st.exists():
        return pt, st
    models = json.loads((ROOT / "tests/fixtures/cn_clip/models.json").read_text())
    tensors = models["models"][MODEL]["tensors"]
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    sd = {name: torch.zeros(shape, dtype=dtypes[dtype]) for name, shape, dtype in tensors}
    torch.save({"epoch": 1, "step": 1, "state_dict": {"module." + k: v for k, v in sd.items()}}, pt)
    save_file(sd, st)
    return pt, st


def median_time(fn):
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    subprocess.run(["cargo", "build", "--release", "--bin", "ckptcheck"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "bench", "--bench", "inspect", "--no-run"], cwd=ROOT, check=True)
    built = ROOT / "target" / "release" / "ckptcheck"
    pt, st = make_files()
    binary = OUT / "ckptcheck"
    binary.unlink(missing_ok=True)
    shutil.copy2(built, binary)

    def ckptcheck(path, binary=binary):
        return subprocess.run([binary, "inspect", "--json", path], capture_output=True, check=True)

    def bytes_read(path):
        return json.loads(ckptcheck(path).stdout)["bytes_read"]

    def process_floor():
        subprocess.run([binary, "--version"], capture_output=True, check=True)

    # ckptcheck is timed before torch runs: torch's OpenMP threads spin for
    # a while after each call, and on a 2-core machine they take the core a
    # process started right after would get.
    for path in (pt, st):  # warm the page cache
        ckptcheck(path)
    rows = [
        ("ckptcheck inspect --json (.pt)", median_time(lambda: ckptcheck(pt)), bytes_read(pt)),
        ("ckptcheck inspect --json (.safetensors)", median_time(lambda: ckptcheck(st)), bytes_read(st)),
        ("process floor: ckptcheck --version", median_time(process_floor), None),
        ("  the same, run from the linker's file (target/release)", median_time(lambda: ckptcheck(pt, built)), None),
    ]
    bench = subprocess.run(["cargo", "bench", "-q", "--bench", "inspect", "--", str(pt), str(st)], cwd=ROOT, capture_output=True, text=True, check=True)
    in_process = [json.loads(line) for line in bench.stdout.splitlines() if line.startswith("{")]
    for result, kind in zip(in_process, (".pt", ".safetensors")):
        rows.append((f"ckptcheck reader in-process, median of 20 ({kind})", result["median_s"], result["bytes_read"]))

    import torch
    from safetensors import safe_open

    def torch_route():
        sd = torch.load(pt, mmap=True, weights_only=True, map_location="cpu")
        return [(k, tuple(v.shape)) for k, v in sd["state_dict"].items()]

    def safetensors_route():
        with safe_open(st, framework="pt") as f:
            return [(k, tuple(f.get_slice(k).get_shape())) for k in f.keys()]

    torch_route()
    safetensors_route()
    rows = [
        ("torch.load(mmap=True, weights_only=True) + shapes (.pt)", median_time(torch_route), None),
        ("safetensors.safe_open + shapes (.safetensors)", median_time(safetensors_route), None),
    ] + rows
    baseline = rows[0][1]
    print(f"{MODEL}: .pt {pt.stat().st_size / 1e9:.2f} GB, .safetensors {st.stat().st_size / 1e9:.2f} GB; median of {RUNS}, warm cache")
    print(f"{'route':60} {'ms':>9} {'vs torch':>9} {'bytes read':>12}")
    for name, seconds, read in rows:
        print(f"{name:60} {seconds * 1e3:9.3f} {baseline / seconds:8.1f}x {read if read is not None else '-':>12}")
    whole = rows[2][1]
    print(f"goal (issue 17): the whole `inspect --json` process on the .pt at least 20x faster than torch: "
          f"{baseline / whole:.1f}x ({'met' if baseline / whole >= 20 else 'not met'}); "
          f"a process that only prints its version is {baseline / rows[4][1]:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
