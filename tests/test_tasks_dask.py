"""Scale-out: a fan-out whose performs run on a dask.distributed LocalCluster of several worker
processes, through `executor=`, with results cached in SQLite."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import distributed  # the doeff[dask] extra; `make test` installs it
import pytest
from dask_work import square_where  # a module the workers import by name

from doeff import do, run_sync
from doeff.effects import cached, gather, perform
from doeff.storage import SQLiteStorage


@do
def item(i: int) -> Generator[Any, Any, Any]:
    return (yield cached(f"square:{i}", lambda: perform(square_where, i)))


@do
def fan_out(n: int) -> Generator[Any, Any, Any]:
    return (yield gather(*[item(i) for i in range(n)]))


def test_performs_run_on_a_local_dask_cluster_and_are_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve cached performs run on two Dask worker processes (not this one); a re-run reads
    every result from SQLite without touching the cluster."""
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [here, *filter(None, [os.environ.get("PYTHONPATH")])]))
    cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR, timeout="60s")
    with cluster, distributed.Client(cluster, timeout="60s") as client:  # type: ignore[no-untyped-call]
        storage = SQLiteStorage(str(tmp_path / "dask.db"))
        result = run_sync(fan_out(12), storage=storage, executor=client.get_executor(),
                          max_concurrency=4)
        values = result.value
        assert [v for v, _ in values] == [i * i for i in range(12)]
        worker_pids = {pid for _, pid in values}
        assert os.getpid() not in worker_pids
        assert 1 <= len(worker_pids) <= 2
    # The cluster is gone: the re-run can only read the cache.
    again = run_sync(fan_out(12), storage=SQLiteStorage(str(tmp_path / "dask.db")))
    assert again.value == values
