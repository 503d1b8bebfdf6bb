"""Durable workflow throughput: a 1,000-step cached workflow, first run and replay, per backend.

Each step is `cached(key, lambda: perform(f))` with a trivial `f`, so the time measured is the
overhead a durable step adds: the machine, the cache look-up, the codec and the store's commit.
Beside it, in the same run, a raw sqlite3 put (WAL, synchronous=NORMAL, one commit per put) and a
raw get, the least any SQLite-backed durable step costs.

    python benchmarks/workflow.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Generator
from typing import Any

from doeff import do, run_sync
from doeff.effects import perform
from doeff.effects.cache import cached
from doeff.serde import MsgpackCodec, PickleCodec
from doeff.storage import LMDBKV, Durable, InMemoryKV, InMemoryStorage, SQLiteKV

PAYLOAD = {"id": 7, "name": "step result", "score": 0.93, "tags": ["a", "b", "c"]}


def compute(i: int) -> dict[str, Any]:
    return {**PAYLOAD, "id": i}


@do
def workflow(steps: int) -> Generator[Any, Any, int]:
    total = 0
    for i in range(steps):
        value = yield cached(f"wf:step:{i}", lambda i=i: perform(compute, i))
        total += value["id"]
    return total


def time_run(storage: Any, steps: int) -> float:
    started = time.perf_counter()
    result = run_sync(workflow(steps), storage=storage)
    elapsed = time.perf_counter() - started
    assert result.value == steps * (steps - 1) // 2
    return elapsed


def raw_sqlite_step_cost(path: str, n: int) -> tuple[float, float]:
    """Seconds per raw put (one commit each) and per raw get on a WAL SQLite file."""
    import pickle

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)")
    blob = pickle.dumps(PAYLOAD)
    started = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k{i}", blob))
        conn.execute("COMMIT")
    put = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for i in range(n):
        conn.execute("SELECT value FROM kv WHERE key = ?", (f"k{i}",)).fetchone()
    get = (time.perf_counter() - started) / n
    conn.close()
    return put, get


def main(argv: list[str] | None = None) -> None:
    """Print steps/s per backend for a first run and a replay, and the per-step overhead."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    steps = 1_000
    repeat = 2 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="doeff-bench-wf-")
    try:
        raw_put, raw_get = min(
            raw_sqlite_step_cost(os.path.join(tmp, f"raw{r}.db"), steps) for r in range(repeat)
        )
        backends: list[tuple[str, Callable[[str], Any]]] = [
            ("InMemoryStorage", lambda d: InMemoryStorage()),
            ("InMemoryKV + pickle", lambda d: Durable(InMemoryKV(), PickleCodec())),
            ("SQLiteKV + pickle", lambda d: Durable(SQLiteKV(os.path.join(d, "wf.db")),
                                                    PickleCodec())),
            ("SQLiteKV + msgpack", lambda d: Durable(SQLiteKV(os.path.join(d, "wf.db")),
                                                     MsgpackCodec())),
            ("LMDBKV + pickle", lambda d: Durable(LMDBKV(os.path.join(d, "wf.lmdb")),
                                                  PickleCodec())),
        ]
        print(f"{steps}-step cached workflow (each step: cached(key, perform(f)), f trivial)")
        print(f"{'backend':22} {'first run steps/s':>18} {'µs/step':>8} "
              f"{'replay steps/s':>15} {'µs/step':>8}")
        sqlite_first = 0.0
        for name, make in backends:
            firsts, replays = [], []
            for r in range(repeat):
                d = os.path.join(tmp, f"{name.replace(' ', '_')}-{r}")
                os.makedirs(d)
                storage = make(d)
                firsts.append(time_run(storage, steps))
                replays.append(time_run(storage, steps))
                close = getattr(storage, "close", None)
                if close is not None:
                    close()
            first, replay = min(firsts) / steps, min(replays) / steps
            if name == "SQLiteKV + pickle":
                sqlite_first = first
            print(f"{name:22} {1 / first:18,.0f} {first * 1e6:8.1f} "
                  f"{1 / replay:15,.0f} {replay * 1e6:8.1f}")
        print(f"\nraw sqlite3 in this run: put {raw_put * 1e6:.1f} µs (one commit), "
              f"get {raw_get * 1e6:.1f} µs")
        overhead = sqlite_first - raw_put
        print(f"durable step on SQLite (miss, compute, put): {sqlite_first * 1e6:.1f} µs, "
              f"{overhead * 1e6:.1f} µs over a raw put  (goal: under 50 µs of overhead)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
