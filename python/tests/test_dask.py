"""A model zoo audited on a real distributed engine: Dask distributed, a
local cluster of two worker processes, mapping ``ckptcheck.inspect`` over
the fixture checkpoints (``dask.bag.from_sequence(paths).map(...)``, as the
README shows). The cluster's results equal the serial ones, file for file.
"""

from pathlib import Path

import pytest

import ckptcheck

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def checkpoints():
    suffixes = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".gguf"}
    return sorted(str(p) for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in suffixes)


def summary(path):
    """One file's line: what an audit keeps (a picklable value)."""
    try:
        listing = ckptcheck.inspect(path)
    except ckptcheck.Error as error:
        return {"file": path, "error": error.kind}
    return {
        "file": path,
        "format": listing["format"],
        "tensors": len(listing["tensors"]),
        "unsafe": "error" in listing,
    }


def test_a_local_dask_cluster_audits_the_fixtures_like_a_loop():
    pytest.importorskip("distributed")
    import dask.bag
    from dask.distributed import Client, LocalCluster

    paths = checkpoints()
    assert len(paths) > 100
    serial = [summary(p) for p in paths]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            distributed = dask.bag.from_sequence(paths, npartitions=8).map(summary).compute()
            listings = dask.bag.from_sequence(paths[:5]).map(ckptcheck.inspect).compute()
    assert distributed == serial
    assert listings == [ckptcheck.inspect(p) for p in paths[:5]]
    assert any(s.get("unsafe") for s in serial)
