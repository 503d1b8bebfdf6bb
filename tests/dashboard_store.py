"""Stores holding many recorded runs, for the dashboard's paging tests and its runs-page
benchmark: one real run recorded by `run_sync`, and copies of its record under other ids,
start times and statuses (what a store that has kept thousands of runs holds)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from doeff import do, run_sync
from doeff.effects import perform
from doeff.runs.api import runs_of
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV


@do
def tally(n: int) -> Generator[Any, Any, int]:
    total = yield perform(sum, range(n))
    return int(total)


def run_id_of(i: int) -> str:
    """The id of the `i`th run `record_runs` writes (run-00000, run-00001, ...)."""
    return f"run-{i:05d}"


def status_of(i: int) -> str:
    """The status of the `i`th run: every third failed, the others completed."""
    return "failed" if i % 3 == 0 else "completed"


def record_runs(store: Path | str, count: int, *, first: int = 0,
                newest: float | None = None) -> list[str]:
    """Record runs `first` .. `first + count - 1` in `store` (created if missing), a second
    apart, the last started at `newest` (default now); their ids, newest first."""
    newest = time.time() if newest is None else newest
    # The real run is recorded in a store of its own: a dashboard watching `store` sees only
    # the copies.
    with tempfile.TemporaryDirectory() as folder, \
            Durable(SQLiteKV(str(Path(folder) / "seed.db")), MsgpackCodec()) as seeds:
        assert run_sync(tally(3), storage=seeds, run_id="seed").is_ok()
        seed = runs_of(seeds).read("seed")
    assert seed is not None
    record = seed.to_json()
    with Durable(SQLiteKV(str(store)), MsgpackCodec()) as storage:
        runs = runs_of(storage)
        last = first + count - 1
        for i in range(first, first + count):
            runs.write({**record, "run_id": run_id_of(i), "status": status_of(i),
                        "started_at": newest - (last - i)})
    return [run_id_of(i) for i in reversed(range(first, first + count))]


__all__ = ["record_runs", "run_id_of", "status_of"]
