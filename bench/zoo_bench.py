"""Zoo benchmark: files per second when a model zoo is audited with the
Python package on Dask distributed, one worker process against two, in one
run, next to a plain loop in one process and `ckptcheck audit --jobs 1/2`.

The corpus is every checkpoint among the committed fixtures (safetensors,
.pt zips, legacy and tar .pt, GGUF, the hostile and pickle-audit files),
listed REPEAT times, so each worker has thousands of files; each file is
inspected and its pickle audited (`ckptcheck.inspect`), and its line kept
(format, tensors, unsafe or the error kind). The page cache is warm: this
measures ckptcheck and the engine, not the disk.

Run: `cargo xtask bench zoo`, or `python bench/zoo_bench.py` with a Python
that has the ckptcheck wheel and dask[distributed] (target/py-venv after
`cargo xtask test`). Not a test: nothing here asserts a time.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REPEAT = int(os.environ.get("ZOO_REPEAT", "20"))
SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".gguf", ".pkl", ".npy", ".npz", ".joblib"}


def corpus():
    files = sorted(str(p) for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return files * REPEAT, len(files)


def audit_line(path):
    import ckptcheck

    try:
        listing = ckptcheck.inspect(path)
    except ckptcheck.Error as error:
        return {"file": path, "error": error.kind}
    return {"file": path, "format": listing["format"], "tensors": len(listing["tensors"]), "unsafe": "error" in listing}


def timed(label, n, function):
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {n / seconds:>9.0f} files/s  ({seconds:.2f} s)")
    return n / seconds, result


def dask_rate(paths, workers):
    import dask.bag
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.run(lambda: __import__("ckptcheck"))  # imported before the clock starts
            bag = dask.bag.from_sequence(paths, npartitions=max(8, 4 * workers))
            return timed(f"Dask distributed, {workers} worker process(es)", len(paths), lambda: bag.map(audit_line).compute())


def cli_rate(paths, jobs):
    cli = os.environ.get("CKPTCHECK_CLI") or str(ROOT / "target" / "release" / "ckptcheck")
    if not Path(cli).exists():
        print(f"  (no {cli}: `cargo build --release` for the CLI figures)")
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(paths))
    try:
        return timed(
            f"ckptcheck audit --jobs {jobs} (one process)",
            len(paths),
            lambda: subprocess.run([cli, "audit", "--jobs", str(jobs), "--jsonl", "@" + listing.name], capture_output=True),
        )[0]
    finally:
        os.unlink(listing.name)


def main():
    import ckptcheck

    paths, distinct = corpus()
    print(f"zoo: {len(paths)} files ({distinct} distinct fixtures x {REPEAT}), ckptcheck {ckptcheck.__version__}, {os.cpu_count()} cores")
    loop_rate, serial = timed("a loop in one process (Python package)", len(paths), lambda: [audit_line(p) for p in paths])
    one, result_one = dask_rate(paths, 1)
    two, result_two = dask_rate(paths, 2)
    assert result_one == serial and result_two == serial, "the cluster's lines differ from the loop's"
    cli_one = cli_rate(paths, 1)
    cli_two = cli_rate(paths, 2)
    print(f"  Dask 2 workers / 1 worker: {two / one:.2f}x (the machine has {os.cpu_count()} cores)")
    if cli_one and cli_two:
        print(f"  audit --jobs 2 / --jobs 1: {cli_two / cli_one:.2f}x")
    per_worker = two / 2
    print(
        f"  on paper, 100k local files: {100_000 / per_worker / 60:.1f} min per worker process; "
        f"a 16-core node ~{100_000 / (per_worker * 16):.0f} s"
    )
    print(json.dumps({"files": len(paths), "loop": loop_rate, "dask_1": one, "dask_2": two, "audit_1": cli_one, "audit_2": cli_two}))


if __name__ == "__main__":
    sys.exit(main())
