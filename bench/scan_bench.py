"""Scan benchmark: how fast `ckptcheck scan` reads every weight of a
multi-GB checkpoint, against numpy over `safetensors.safe_open` tensors,
measured in the same run, plus ckptcheck's peak memory.

Generates (once, cached in bench/out/) a safetensors file of GB gigabytes of
F32 (default 4) in 64 MiB tensors, a few of them holding NaN and Inf, then,
warm from the page cache, median of RUNS (3):
  - `ckptcheck scan --json FILE` (release build; every core), with its peak
    RSS;
  - the read limit: `dd bs=4M` of the same file into /dev/null;
  - numpy: for each tensor of `safe_open(FILE, framework="numpy")`,
    `get_tensor`, then the same statistics ckptcheck reports (NaN, Inf and
    zero counts; min, max, mean and std of the finite values in float64);
and prints GB/s of each and the ratio, and the share of dd's rate next to
issue 17's goal (50%), also for the ViT-H .pt of bench/inspect_bench.py when
it exists. numpy and ckptcheck compute the same numbers; the script checks
that they agree.

Run: `cargo xtask bench scan` or `python bench/scan_bench.py [GB]` with a
Python that has numpy and safetensors (e.g. /opt/fixenv/bin/python). Not a
test: nothing asserts a time.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RUNS = 3
TENSOR_ELEMENTS = 16 * 1024 * 1024  # 64 MiB of F32


def make_file(gigabytes):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"scan_{gigabytes}gb.safetensors"
    count = int(gigabytes * 1e9) // (4 * TENSOR_ELEMENTS)
    if path.exists() and path.stat().st_size > count * 4 * TENSOR_ELEMENTS:
        return path, count
    header = {"__metadata__": {"format": "pt"}}
    for i in range(count):
        begin = i * 4 * TENSOR_ELEMENTS
        header[f"layers.{i:04d}.weight"] = {
            "dtype": "F32", "shape": [4096, TENSOR_ELEMENTS // 4096],
            "data_offsets": [begin, begin + 4 * TENSOR_ELEMENTS]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for i in range(count):
            block = rng.standard_normal(TENSOR_ELEMENTS, dtype=np.float32)
            if i % 17 == 3:
                block[i::TENSOR_ELEMENTS // 5] = np.nan
            if i % 29 == 5:
                block[7] = np.inf
            f.write(block.tobytes())
    return path, count


def ckptcheck_scan(binary, path):
    """Run the scan; return (report, seconds, peak RSS in bytes). The RSS
    comes from GNU time (`%M`): wait4()'s ru_maxrss would also count the
    pages of this Python process that the child shared before exec."""
    command = [str(binary), "scan", "--json", str(path)]
    if Path("/usr/bin/time").exists():
        command = ["/usr/bin/time", "-f", "%M"] + command
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True)
    seconds = time.perf_counter() - start
    assert done.returncode in (0, 1), f"ckptcheck exited {done.returncode}: {done.stderr}"
    lines = done.stderr.decode().strip().splitlines()
    peak = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0
    return json.loads(done.stdout), seconds, peak


def numpy_scan(path):
    out = {}
    with safe_open(str(path), framework="numpy") as f:
        for name in f.keys():
            a = f.get_tensor(name)
            finite = np.isfinite(a)
            nan = int(np.isnan(a).sum())
            inf = int(a.size - finite.sum()) - nan
            zeros = int(np.count_nonzero(a == 0))
            x = a if nan + inf == 0 else a[finite]
            out[name] = dict(nan=nan, inf=inf, zeros=zeros, min=float(x.min()), max=float(x.max()),
                             mean=float(x.mean(dtype=np.float64)), std=float(x.std(dtype=np.float64)))
    return out


def median_run(fn):
    results = [fn() for _ in range(RUNS)]
    return results, statistics.median(r[1] for r in results)


def main():
    gigabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 4
    subprocess.run(["cargo", "build", "--release", "--bin", "ckptcheck"], cwd=ROOT, check=True)
    binary = ROOT / "target" / "release" / "ckptcheck"
    path, count = make_file(gigabytes)
    size = path.stat().st_size
    # Warm the page cache (and check both agree).
    report, _, _ = ckptcheck_scan(binary, path)
    theirs = numpy_scan(path)
    for tensor in report["tensors"]:
        want = theirs[tensor["name"]]
        for field in ("nan", "inf", "zeros"):
            assert tensor[field] == want[field], (tensor["name"], field)
        for field in ("min", "max", "mean", "std"):
            assert abs(tensor[field] - want[field]) <= 1e-6 * max(abs(want[field]), 1e-3), (tensor["name"], field)
    runs, ours = median_run(lambda: ckptcheck_scan(binary, path))
    peak = max(r[2] for r in runs)

    def timed_numpy():
        start = time.perf_counter()
        numpy_scan(path)
        return None, time.perf_counter() - start

    _, baseline = median_run(timed_numpy)
    _, read_limit = median_run(lambda: dd_read(path))
    data = report["bytes_scanned"]
    threads = os.cpu_count()
    print(f"{path.name}: {size / 1e9:.2f} GB, {count} F32 tensors of 64 MiB, "
          f"{report['summary']['nan_values']} NaN / {report['summary']['inf_values']} Inf; "
          f"median of {RUNS}, warm page cache, {threads} cores")
    print(f"{'route':58} {'seconds':>8} {'GB/s':>7} {'ratio':>7}")
    print(f"{'numpy over safetensors.safe_open tensors':58} {baseline:8.3f} {data / baseline / 1e9:7.2f} {1:7.2f}")
    print(f"{f'ckptcheck scan --json (release, {threads} threads)':58} {ours:8.3f} {data / ours / 1e9:7.2f} "
          f"{baseline / ours:7.2f}")
    print(f"{'read limit: dd bs=4M of the same file to /dev/null':58} {read_limit:8.3f} {size / read_limit / 1e9:7.2f}")
    print(f"ckptcheck peak RSS while scanning: {peak / 2**20:.1f} MiB")
    goal_line(f"{path.name}", data / ours, size / read_limit)
    # The checkpoint issue 17 names: the ViT-H .pt that bench/inspect_bench.py
    # generates (torch.save of zeros), when it is there.
    vit_h = OUT / "clip_cn_vit-h-14.pt"
    if vit_h.exists():
        ckptcheck_scan(binary, vit_h)
        report, _, _ = ckptcheck_scan(binary, vit_h)
        _, scan_seconds = median_run(lambda: ckptcheck_scan(binary, vit_h))
        _, dd_seconds = median_run(lambda: dd_read(vit_h))
        scanned = report["bytes_scanned"]
        print(f"{vit_h.name}: scan {scan_seconds:.3f} s ({scanned / scan_seconds / 1e9:.2f} GB/s), "
              f"dd {dd_seconds:.3f} s ({vit_h.stat().st_size / dd_seconds / 1e9:.2f} GB/s)")
        goal_line(vit_h.name, scanned / scan_seconds, vit_h.stat().st_size / dd_seconds)
    else:
        print(f"({vit_h.name} not found: `cargo xtask bench inspect` makes it)")


def dd_read(path):
    """The read limit: dd of the whole file into /dev/null, 4 MiB at a time."""
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=4M"], capture_output=True, check=True)
    return None, time.perf_counter() - start


def goal_line(name, scan_rate, read_rate):
    share = scan_rate / read_rate
    print(f"goal (issue 17): scan at least 50% of dd's read rate on {name}: "
          f"{100 * share:.0f}% ({'met' if share >= 0.5 else 'not met'})")


if __name__ == "__main__":
    sys.exit(main())
