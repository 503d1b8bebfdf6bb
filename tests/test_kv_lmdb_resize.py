"""LMDB stores opened, written and read while other processes grow the map under them."""

from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing.queues import Queue
from pathlib import Path

from doeff.storage import LMDBKV

SPAWN = mp.get_context("spawn")  # a fresh interpreter per worker, as separate workers would be
WORKERS = 6
ROUNDS = 40
SMALL_MAP = 32 * 1024


def _open_put_close(path: str, worker: int, out: Queue[list[str]]) -> None:
    """Open the store, put one 20 KB value (growing the map), close; report every failure."""
    failures = []
    for i in range(ROUNDS):
        try:
            with LMDBKV(path, map_size=SMALL_MAP) as kv:
                kv.put(f"w{worker}:{i}", os.urandom(20_000))
                if len(kv.get(f"w{worker}:{i}") or b"") != 20_000:
                    failures.append(f"round {i}: read back the wrong value")
        except BaseException as exc:  # every failure is the finding, reported to the parent
            failures.append(f"round {i}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
    out.put(failures)


def test_opening_while_other_processes_grow_the_map_never_fails(tmp_path: Path) -> None:
    """Six processes each opening a 32 KB-map store 40 times and writing 20 KB values (so the
    map is grown by one process while another opens it) never see an error, and every value
    written is stored."""
    path = str(tmp_path / "store.lmdb")
    LMDBKV(path, map_size=SMALL_MAP).close()
    out: Queue[list[str]] = SPAWN.Queue()
    procs = [SPAWN.Process(target=_open_put_close, args=(path, w, out))
             for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * WORKERS
    assert [f for report in reports for f in report] == []
    with LMDBKV(path) as kv:
        assert sorted(kv.keys()) == sorted(
            f"w{w}:{i}" for w in range(WORKERS) for i in range(ROUNDS))
