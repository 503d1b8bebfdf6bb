"""PostgresKV beside SQLiteKV: put and get ops/s with 1 client and with 4 client processes.

Starts its own throwaway PostgreSQL server on 127.0.0.1 (tests/pg_server.py, the tests' helper)
with the server's default durability (fsync on). Two pairings, each with the same promise:

- "normal": PostgresKV with `synchronous_commit=off` (a put survives the client dying; the server
  machine losing power may lose the last fraction of a second) vs SQLiteKV(durability="normal");
- "full":   PostgresKV with the default `synchronous_commit=on` (every commit flushed) vs
  SQLiteKV(durability="full").

Every put is its own committed transaction; gets read keys that exist; 256-byte values.

    python benchmarks/storage_postgres.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # for pg_server, the tests' server helper

import pg_server  # noqa: E402

from doeff.storage import KVStore, SQLiteKV  # noqa: E402
from doeff.storage.postgres import PostgresKV  # noqa: E402

FORK = mp.get_context("fork")
VALUE = bytes(range(256))
# The server's own defaults for durability; only the test server turns fsync off.
BENCH_SETTINGS = {"shared_buffers": "128MB"}


def _loop(kv: KVStore, op: str, worker: int, n: int, round_: int = 0) -> None:
    if op == "put":  # each round inserts new keys; gets read the first round's
        for i in range(n):
            kv.put(f"r{round_}w{worker}:k{i}", VALUE)
    else:
        for i in range(n):
            kv.get(f"r0w{worker}:k{i}")


def _client(opener: Callable[[], KVStore], op: str, worker: int, n: int, round_: int,
            start: Any, out: Any) -> None:
    kv = opener()
    _loop(kv, "get", worker, 10)  # warm the connection before the clock starts
    start.wait()
    began = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    _loop(kv, op, worker, n, round_)
    out.put((began, time.perf_counter()))
    kv.close()


def ops_per_s(opener: Callable[[], KVStore], op: str, clients: int, n: int,
              round_: int) -> float:
    """Total `op` calls per second with `clients` processes each doing `n` on its own keys."""
    if clients == 1:
        kv = opener()
        _loop(kv, "get", 0, 10)
        began = time.perf_counter()
        _loop(kv, op, 0, n, round_)
        elapsed = time.perf_counter() - began
        kv.close()
        return n / elapsed
    start, out = FORK.Event(), FORK.Queue()
    procs = [FORK.Process(target=_client, args=(opener, op, w, n, round_, start, out))
             for w in range(clients)]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # let every client connect and warm up
    start.set()
    spans: list[tuple[float, float]] = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return clients * n / (max(e for _, e in spans) - min(b for b, _ in spans))


def main(argv: list[str] | None = None) -> None:
    """Start a server, print put/get ops/s for PostgresKV and SQLiteKV and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer operations")
    args = parser.parse_args(argv)
    n, repeat = (500, 1) if args.quick else (2000, 3)
    try:
        server = pg_server.PgServer(settings=BENCH_SETTINGS)
    except pg_server.ServerUnavailable as exc:
        print(f"skipped: no PostgreSQL server could be started: {exc}")
        return
    tmp = tempfile.mkdtemp(prefix="doeff-bench-pg-")
    try:
        print(f"PostgreSQL {server.bindir.parent.name} on 127.0.0.1 (TCP, fsync on) vs SQLite "
              f"(WAL) in {tmp}; {n} ops per client, 256-byte values, one commit per put; "
              f"best of {repeat}")
        print(f"{'durability':10} {'clients':>7} {'op':>4} {'PostgresKV/s':>13} "
              f"{'SQLiteKV/s':>11} {'pg/sqlite':>9}")
        run = 0
        for durability, sync in (("normal", "off"), ("full", "on")):
            dsn = f"{server.dsn} options='-c synchronous_commit={sync}'"
            for clients in (1, 4):
                run += 1
                table, path = f"bench{run}", os.path.join(tmp, f"bench{run}.db")
                PostgresKV(dsn, table=table).close()  # create the table before the race
                SQLiteKV(path, durability=durability).close()

                def pg(dsn: str = dsn, table: str = table) -> KVStore:
                    return PostgresKV(dsn, table=table, max_size=2)

                def lite(path: str = path, durability: str = durability) -> KVStore:
                    return SQLiteKV(path, durability=durability)

                for op in ("put", "get"):
                    p = max(ops_per_s(pg, op, clients, n, r) for r in range(repeat))
                    s = max(ops_per_s(lite, op, clients, n, r) for r in range(repeat))
                    print(f"{durability:10} {clients:>7} {op:>4} {p:>13,.0f} {s:>11,.0f} "
                          f"{p / s:>8.2f}x", flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
