"""Raw store throughput: put and get ops/s for every KVStore x codec, beside their peers.

Peers measured in the same run, on the same payload and keys: raw sqlite3 (WAL,
synchronous=NORMAL, one commit per put), diskcache.Cache, raw lmdb (one transaction per put,
the same sync flags as LMDBKV's "normal") and a dict. The machine is shared and noisy, so each
figure is the best of a few rounds and only the ratios are meant to be compared.

    python benchmarks/storage.py [--quick]
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import lmdb

from doeff.serde import CloudpickleCodec, JSONCodec, MsgpackCodec, PickleCodec
from doeff.storage import LMDBKV, Durable, InMemoryKV, KVStore, SQLiteKV

PAYLOAD = {"id": 7, "name": "step result", "score": 0.93, "tags": ["a", "b", "c"]}
CODECS = {"pickle": PickleCodec, "cloudpickle": CloudpickleCodec, "msgpack": MsgpackCodec,
          "json": JSONCodec}
Ops = tuple[Callable[[str, Any], object], Callable[[str], object], Callable[[], None]]


def best_rate(n: int, rounds: int, setup: Callable[[], Ops], payload: Any) -> tuple[float, float]:
    """Best put/s and get/s over `rounds`, each on a fresh store with `n` new keys."""
    keys = [f"bench:step:{i}" for i in range(n)]
    best_put = best_get = 0.0
    for _ in range(rounds):
        put, get, close = setup()
        started = time.perf_counter()
        for key in keys:
            put(key, payload)
        best_put = max(best_put, n / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(5):  # gets are cheap: five passes for a steadier figure
            for key in keys:
                get(key)
        best_get = max(best_get, 5 * n / (time.perf_counter() - started))
        close()
    return best_put, best_get


def raw_sqlite(path: str, pickled: bool) -> Ops:
    """sqlite3 as a careful user writes it: WAL, synchronous=NORMAL, execute + commit per put."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    conn.commit()
    sql_put = ("INSERT INTO cache (key, value) VALUES (?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
    sql_get = "SELECT value FROM cache WHERE key = ?"
    dumps, loads = pickle.dumps, pickle.loads

    def put(key: str, value: Any) -> None:
        conn.execute(sql_put, (key, dumps(value) if pickled else value))
        conn.commit()

    def get(key: str) -> Any:
        row = conn.execute(sql_get, (key,)).fetchone()
        return loads(row[0]) if pickled else row[0]

    return put, get, conn.close


def raw_lmdb(path: str) -> Ops:
    """py-lmdb with one write transaction per put, sync=True, metasync=False."""
    env = lmdb.open(path, map_size=1 << 30, metasync=False)

    def put(key: str, value: bytes) -> None:
        with env.begin(write=True) as txn:
            txn.put(key.encode(), value)

    def get(key: str) -> bytes | None:
        with env.begin() as txn:
            value: bytes | None = txn.get(key.encode())
            return value

    return put, get, env.close


def disk_cache(path: str) -> Ops | None:
    """diskcache.Cache (it pickles values itself), if the bench extra is installed."""
    try:
        import diskcache  # type: ignore[import-untyped]
    except ImportError:
        return None
    cache = diskcache.Cache(path)
    return cache.set, cache.get, cache.close


def store_ops(store: KVStore | Durable) -> Ops:
    """The put/get/close triple of a doeff store."""
    return store.put, store.get, store.close


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table of ops/s and the ratios against the peers."""
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    n, rounds = (500, 2) if quick else (2000, 3)
    raw = pickle.dumps(PAYLOAD)
    root = tempfile.mkdtemp(prefix="doeff-bench-")
    counter = iter(range(1_000_000))

    def fresh(name: str) -> str:
        path = os.path.join(root, f"{next(counter)}-{name}")
        return path

    kv_factories: dict[str, Callable[[], KVStore]] = {
        "InMemoryKV": InMemoryKV,
        "SQLiteKV": lambda: SQLiteKV(fresh("kv.db")),
        "SQLiteKV(:memory:)": lambda: SQLiteKV(":memory:"),
        "LMDBKV": lambda: LMDBKV(fresh("kv.lmdb")),
    }
    rows: dict[str, tuple[float, float]] = {}

    def measure(label: str, setup: Callable[[], Ops], payload: Any) -> None:
        rows[label] = best_rate(n, rounds, setup, payload)
        put, get = rows[label]
        print(f"  {label:<34} {put:>11,.0f} {get:>11,.0f}", flush=True)

    print(f"payload: {len(raw)} bytes pickled; {n} keys; best of {rounds} rounds")
    print(f"  {'store':<34} {'put/s':>11} {'get/s':>11}")
    try:
        d: dict[str, bytes] = {}
        measure("dict", lambda: (d.__setitem__, d.get, d.clear), raw)
        measure("raw sqlite3 (bytes)", lambda: raw_sqlite(fresh("raw.db"), False), raw)
        measure("raw sqlite3 + pickle", lambda: raw_sqlite(fresh("rawp.db"), True), PAYLOAD)
        measure("raw lmdb (bytes)", lambda: raw_lmdb(fresh("raw.lmdb")), raw)
        if disk_cache(fresh("probe")) is not None:
            measure("diskcache.Cache", lambda: disk_cache(fresh("dc")) or raw_lmdb(""), PAYLOAD)
        for name, factory in kv_factories.items():
            measure(f"{name} (bytes)", lambda f=factory: store_ops(f()), raw)  # type: ignore[misc]
            for tag, codec in CODECS.items():
                measure(f"Durable({name}, {tag})",
                        lambda f=factory, c=codec: store_ops(Durable(f(), c())),  # type: ignore[misc]
                        PAYLOAD)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("\nratios (goal in brackets):")

    def ratio(label: str, mine: str, peer: str, col: int, goal: float | None) -> None:
        if mine in rows and peer in rows:
            value = rows[mine][col] / rows[peer][col]
            if goal is None:
                print(f"  {label:<52} {value:5.2f}x  (for information)")
            else:
                verdict = "ok" if value >= goal else "BELOW GOAL"
                print(f"  {label:<52} {value:5.2f}x  [>= {goal}x] {verdict}")

    ratio("SQLiteKV put / raw sqlite3 put", "SQLiteKV (bytes)", "raw sqlite3 (bytes)", 0, 0.9)
    ratio("SQLiteKV get / raw sqlite3 get", "SQLiteKV (bytes)", "raw sqlite3 (bytes)", 1, 0.9)
    ratio("Durable(SQLiteKV, pickle) put / raw sqlite3+pickle put",
          "Durable(SQLiteKV, pickle)", "raw sqlite3 + pickle", 0, 0.85)
    ratio("Durable(SQLiteKV, pickle) get / raw sqlite3+pickle get",
          "Durable(SQLiteKV, pickle)", "raw sqlite3 + pickle", 1, None)
    ratio("SQLiteKV put / diskcache set", "SQLiteKV (bytes)", "diskcache.Cache", 0, 2.0)
    ratio("Durable(SQLiteKV, pickle) put / diskcache set",
          "Durable(SQLiteKV, pickle)", "diskcache.Cache", 0, 2.0)
    ratio("LMDBKV get / raw lmdb get", "LMDBKV (bytes)", "raw lmdb (bytes)", 1, 0.8)
    ratio("LMDBKV put / raw lmdb put", "LMDBKV (bytes)", "raw lmdb (bytes)", 0, None)


if __name__ == "__main__":
    main()
