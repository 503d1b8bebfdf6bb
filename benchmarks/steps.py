"""What a durable step costs, as ratios against baselines measured in the same run.

1. A 1,000-step workflow of `@step` calls returning a small dict, on SQLite with pickle and with
   msgpack, first run (every step a miss: compute, store) and replay (every step a hit), against
   a raw sqlite3 get-or-put loop with the same codec library, one autocommit statement per
   write, WAL and synchronous=NORMAL as SQLiteKV (goals: <= 1.15x first run, <= 1.3x replay).
2. A `@step` call against the same work through hand-written `cached(f"...", ...)`, hit and miss
   (goal: <= 1.2x).
3. Computing a key for small arguments (goal: <= 3 µs).
4. A claimed step against an unclaimed one, first run on SQLite (what a claim costs).
5. The same workload on diskcache's `memoize` and `joblib.Memory`, for reference, when they are
   installed.

    python benchmarks/steps.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Generator
from typing import Any

import msgpack

from doeff import do, run_sync, step
from doeff.effects import perform
from doeff.effects.cache import Claim, cached
from doeff.serde import MsgpackCodec, PickleCodec
from doeff.storage import Durable, SQLiteKV

PAYLOAD = {"id": 7, "name": "step result", "score": 0.93, "tags": ["a", "b", "c"]}
STEPS = 1_000


def compute(i: int) -> dict[str, Any]:
    return {**PAYLOAD, "id": i}


work = step(name="bench.compute")(compute)
claimed = step(name="bench.claimed", claim=Claim(lease=60))(compute)


@do
def with_steps(fn: Any, n: int) -> Generator[Any, Any, int]:
    total = 0
    for i in range(n):
        total += (yield fn(i))["id"]
    return total


@do
def with_cached(n: int) -> Generator[Any, Any, int]:
    total = 0
    for i in range(n):
        total += (yield cached(f"bench.cached:{i}", lambda i=i: perform(compute, i)))["id"]
    return total


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def raw_steps(path: str, dumps: Callable[[Any], bytes],
              loads: Callable[[bytes], Any]) -> tuple[Callable[[str, int], int],
                                                      sqlite3.Connection]:
    """The baseline: a sqlite3 get-or-put loop, one autocommit statement per write, WAL and
    synchronous=NORMAL as SQLiteKV. `run(name, n)` gets or computes and puts the n steps
    named `name` (arguments 0..n-1) and sums their ids; close the connection after."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, "
                 "updated_at REAL NOT NULL)")

    def run(name: str, n: int) -> int:
        total = 0
        for i in range(n):
            key = f"step:{name}@v1:{i:032x}"
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None:
                value = compute(i)
                conn.execute("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                             "value = excluded.value, updated_at = excluded.updated_at",
                             (key, dumps(value), time.time()))
            else:
                value = loads(row[0])
            total += value["id"]
        return total

    return run, conn


def raw_get_or_put(path: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any],
                   n: int) -> tuple[float, float]:
    """Seconds per step of the sqlite3 get-or-put loop: first run (all misses), replay (hits)."""
    run, conn = raw_steps(path, dumps, loads)
    first = timed(lambda: run("bench.compute", n)) / n
    replay = timed(lambda: run("bench.compute", n)) / n
    conn.close()
    return first, replay


def durable_runs(path: str, codec: Any, program: Callable[[], Any], n: int) -> tuple[float,
                                                                                   float]:
    """Seconds per step of `program()` on a fresh SQLite store: first run, then replay."""
    with Durable(SQLiteKV(path), codec, trust=[codec]) as storage:
        first = timed(lambda: run_sync(program(), storage=storage).value) / n
        replay = timed(lambda: run_sync(program(), storage=storage).value) / n
    return first, replay


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in runs), min(r[1] for r in runs)


def paired(repeat: int, a: Callable[[], tuple[float, float]],
           b: Callable[[], tuple[float, float]]) -> tuple[tuple[float, float],
                                                         tuple[float, float]]:
    """The best of `repeat` runs of each, taken in turns so that a busy moment of the machine
    weighs on both alike."""
    runs_a, runs_b = [], []
    for _ in range(repeat):
        runs_a.append(a())
        runs_b.append(b())
    return best(runs_a), best(runs_b)


def verdict(ratio: float, goal: float) -> str:
    return f"goal <= {goal}x: {'met' if ratio <= goal else 'NOT met'}"


def key_cost(repeat: int) -> list[tuple[str, float]]:
    """µs to compute a key, for a few small argument lists."""
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("one int", lambda: work.key(7)),
        ("a str and an int", lambda: report.key("orders", 10)),
        ("a small dict", lambda: report.key({"region": "eu", "limit": 10}, 3)),
    ]
    out = []
    for label, fn in cases:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(10_000):
                fn()
            times.append((time.perf_counter() - started) / 10_000)
        out.append((label, min(times)))
    return out


@step(name="bench.report")
def report(table: Any, limit: int = 100) -> None:
    return None


def reference(tmp: str, n: int) -> list[str]:
    """The same workload on diskcache.memoize and joblib.Memory, where installed."""
    lines = []
    try:
        import diskcache
    except ImportError:
        lines.append("diskcache: not installed (pip install diskcache), skipped")
    else:
        with diskcache.Cache(os.path.join(tmp, "diskcache")) as cache:
            memo = cache.memoize(name="bench.compute")(compute)
            first = timed(lambda: [memo(i) for i in range(n)]) / n
            replay = timed(lambda: [memo(i) for i in range(n)]) / n
        lines.append(f"diskcache memoize        first {first * 1e6:6.1f} µs   replay "
                     f"{replay * 1e6:6.1f} µs   (pickle, SQLite; no machine around it)")
    try:
        import joblib
    except ImportError:
        lines.append("joblib: not installed (pip install joblib), skipped")
    else:
        memory = joblib.Memory(os.path.join(tmp, "joblib"), verbose=0)
        cached_compute = memory.cache(compute)
        first = timed(lambda: [cached_compute(i) for i in range(n)]) / n
        replay = timed(lambda: [cached_compute(i) for i in range(n)]) / n
        lines.append(f"joblib.Memory            first {first * 1e6:6.1f} µs   replay "
                     f"{replay * 1e6:6.1f} µs   (a file per call)")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Print every measurement, its baseline, the ratio and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each case, the best kept (more: steadier on a busy machine)")
    args = parser.parse_args(argv)
    repeat = 2 if args.quick else args.repeat
    n = STEPS
    tmp = tempfile.mkdtemp(prefix="doeff-bench-steps-")
    counter = iter(range(1_000_000))

    def fresh(name: str) -> str:
        return os.path.join(tmp, f"{name}-{next(counter)}.db")

    try:
        print(f"{n}-step workflow, each step returning a small dict; SQLite (WAL, "
              f"synchronous=NORMAL); µs per step, best of {repeat}\n")
        print(f"{'':28} {'first run':>10} {'raw':>7} {'ratio':>6}   {'replay':>7} {'raw':>7} "
              f"{'ratio':>6}")
        codecs = [("pickle", PickleCodec(), pickle.dumps, pickle.loads),
                  ("msgpack", MsgpackCodec(), msgpack.packb, msgpack.unpackb)]
        for label, codec, dumps, loads in codecs:

            def raw_run(dumps: Any = dumps, loads: Any = loads) -> tuple[float, float]:
                return raw_get_or_put(fresh("raw"), dumps, loads, n)

            def step_run(codec: Any = codec) -> tuple[float, float]:
                return durable_runs(fresh("step"), codec, lambda: with_steps(work, n), n)

            raw, ours = paired(repeat, raw_run, step_run)
            r_first, r_replay = ours[0] / raw[0], ours[1] / raw[1]
            print(f"@step, SQLite + {label:12} {ours[0] * 1e6:10.1f} {raw[0] * 1e6:7.1f} "
                  f"{r_first:5.2f}x   {ours[1] * 1e6:7.1f} {raw[1] * 1e6:7.1f} {r_replay:5.2f}x")
            print(f"{'':28} first run {verdict(r_first, 1.15)}; replay "
                  f"{verdict(r_replay, 1.3)}")

        print("\n@step against the same work through hand-written cached(key, ...), "
              "SQLite + pickle")
        hand, ours = paired(
            repeat, lambda: durable_runs(fresh("cached"), PickleCodec(), lambda: with_cached(n), n),
            lambda: durable_runs(fresh("step"), PickleCodec(), lambda: with_steps(work, n), n))
        for what, i in (("miss", 0), ("hit", 1)):
            ratio = ours[i] / hand[i]
            print(f"  {what:5} @step {ours[i] * 1e6:6.1f} µs, cached {hand[i] * 1e6:6.1f} µs: "
                  f"{ratio:.2f}x  ({verdict(ratio, 1.2)})")

        print("\nkey computation (name, version, canonical encoding, SHA-256)")
        for label, seconds in key_cost(repeat):
            print(f"  {label:20} {seconds * 1e6:5.2f} µs  (goal <= 3 µs: "
                  f"{'met' if seconds <= 3e-6 else 'NOT met'})")

        print("\nclaimed step against an unclaimed one, first run, SQLite + pickle")
        plain, claim = paired(
            repeat,
            lambda: durable_runs(fresh("plain"), PickleCodec(), lambda: with_steps(work, n), n),
            lambda: durable_runs(fresh("claim"), PickleCodec(), lambda: with_steps(claimed, n),
                                 n))
        print(f"  first run: claimed {claim[0] * 1e6:6.1f} µs, unclaimed {plain[0] * 1e6:6.1f} "
              f"µs: {claim[0] / plain[0]:.2f}x (a claim adds a put-if-absent, a second "
              f"look-up and a compare-and-delete: +{(claim[0] - plain[0]) * 1e6:.1f} µs)")
        print(f"  replay:    claimed {claim[1] * 1e6:6.1f} µs, unclaimed {plain[1] * 1e6:6.1f} "
              f"µs: {claim[1] / plain[1]:.2f}x (a hit never claims)")

        print("\nfor reference, the same workload elsewhere (µs per call)")
        for line in reference(tmp, n):
            print("  " + line)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
