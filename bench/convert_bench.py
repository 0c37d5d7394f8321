"""Convert benchmark: a 3.8 GB PyTorch checkpoint to safetensors, ckptcheck
against the script everyone runs (torch.load, then safetensors' save_file),
in one run: wall time, peak resident memory and throughput.

Uses the Chinese-CLIP ViT-H-14 .pt that bench/inspect_bench.py generates
(958 M fp32 parameters nested under state_dict with DDP's `module.` prefix,
cached in bench/out/). Each side runs as its own process, twice, alternating,
from a warm page cache; the faster run of each is reported, with the peak
RSS of that process (GNU time's %M; os.wait4 where it is missing). ckptcheck is the release build
(`cargo build --release`); the baseline is

    sd = torch.load(pt, map_location="cpu", weights_only=True)["state_dict"]
    save_file({k: v.contiguous() for k, v in sd.items()}, out)

Both outputs are compared tensor by tensor afterwards (safe_open, equal
bytes), so the figures are for the same result. Run: `cargo xtask bench
convert` or `python bench/convert_bench.py` with torch and safetensors.
Not a test: nothing here asserts a time.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from inspect_bench import OUT, make_files  # noqa: E402

BASELINE = """
import sys, torch
from safetensors.torch import save_file
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["state_dict"]
save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2])
"""


def timed(command):
    """Wall time and peak RSS of `command`. GNU time measures the RSS of the
    program itself; os.wait4 would also count the pages the child shares
    with this Python (torch imported) between fork and exec."""
    gnu_time = Path("/usr/bin/time")
    start = time.perf_counter()
    if gnu_time.exists():
        result = subprocess.run([str(gnu_time), "-f", "%M", *command], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, check=True)
        elapsed = time.perf_counter() - start
        return elapsed, int(result.stderr.strip().splitlines()[-1]) * 1024
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{command[0]} failed with status {status}")
    return elapsed, usage.ru_maxrss * 1024


def main():
    pt, _ = make_files()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = ROOT / "target" / "release" / "ckptcheck"
    ours, theirs = OUT / "convert_ckptcheck.safetensors", OUT / "convert_torch.safetensors"
    runs = {"ckptcheck": [], "torch": []}
    for _ in range(2):
        for path in (ours, theirs):
            path.unlink(missing_ok=True)
        runs["ckptcheck"].append(timed([str(binary), "convert", str(pt), "-o", str(ours)]))
        runs["torch"].append(timed([sys.executable, "-c", BASELINE, str(pt), str(theirs)]))
    from safetensors import safe_open

    with safe_open(ours, "pt") as a, safe_open(theirs, "pt") as b:
        keys_a, keys_b = set(a.keys()), {k for k in b.keys()}
        # ckptcheck writes the state dict's keys as they are (module. kept).
        assert keys_a == keys_b, (len(keys_a), len(keys_b))
        for key in sorted(keys_a)[:: max(1, len(keys_a) // 50)]:
            assert a.get_tensor(key).equal(b.get_tensor(key)), key
    size = pt.stat().st_size
    (c_time, c_rss), (t_time, t_rss) = min(runs["ckptcheck"]), min(runs["torch"])
    print(f"convert {pt.name} ({size / 1e9:.2f} GB) to safetensors, warm cache, best of 2:")
    print(f"  ckptcheck convert: {c_time:.2f} s ({size / c_time / 1e9:.2f} GB/s), peak RSS {c_rss / 2**20:.0f} MiB")
    print(f"  torch.load + save_file: {t_time:.2f} s ({size / t_time / 1e9:.2f} GB/s), peak RSS {t_rss / 2**20:.0f} MiB")
    print(f"  time: ckptcheck {t_time / c_time:.1f}x faster; memory: {t_rss / max(c_rss, 1):.0f}x less")
    for path in (ours, theirs):
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
