"""Instructions per durable step, counted by callgrind: steady on a shared, noisy machine.

One process runs a fixed setup (for hits, the records they read; for misses, the same path
once on other keys), then K steps of one path; running it for K = n and K = 2n and subtracting
leaves the instructions of n steps alone (start-up, imports and setup cancel out). Paths, each
on SQLite + pickle with a small dict as the result: `raw` (benchmarks/steps.py's baseline, a
sqlite3 get-or-put loop), `kv` (SQLiteKV get/put), `durable` (Durable lookup/put_record: records
sealed and checked), `cached` (hand-written `cached(key, ...)` in a workflow), `step` (`@step`).
The cyclic GC is off while they run (see `one`).

    python benchmarks/steps_instructions.py [--n 500] [--modes hit,miss] [PATH ...]
    python benchmarks/steps_instructions.py --one PATH MODE K N     # what valgrind runs
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Generator
from typing import Any

from steps import compute, raw_steps

Run = Callable[[str, int], object]  # run(name, n): n steps named `name`, arguments 0..n-1


def raw(path: str) -> Run:
    """benchmarks/steps.py's baseline: a sqlite3 get-or-put loop with pickle."""
    run, _ = raw_steps(path, pickle.dumps, pickle.loads)
    return run


def layered(path: str, kind: str) -> Run:
    """The layers under a step, called directly: `kv` SQLiteKV.get/put with pickle, `durable`
    Durable.lookup/put_record (records sealed, opened and checked)."""
    from doeff.serde import PickleCodec
    from doeff.storage import Durable, SQLiteKV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unsigned pickle store, on purpose
        storage = Durable(SQLiteKV(path), PickleCodec(), trust=[PickleCodec()])
    get, put = storage.kv.get, storage.kv.put
    lookup, put_record = storage.lookup, storage.put_record

    def run(name: str, n: int) -> None:
        total = 0
        for i in range(n):
            key = f"step:{name}@v1:{i:032x}"
            if kind == "kv":
                data = get(key)
                if data is None:
                    value = compute(i)
                    put(key, pickle.dumps(value))
                else:
                    value = pickle.loads(data)
            else:
                found, value = lookup(key)
                if not found:
                    value = compute(i)
                    put_record(key, value)
            total += value["id"]

    return run


def machine(path: str, kind: str) -> Run:
    """`cached(key, ...)` or `@step` calls in a `@do` workflow run by run_sync."""
    from doeff import do, run_sync, step
    from doeff.effects import perform
    from doeff.effects.cache import cached
    from doeff.serde import PickleCodec
    from doeff.storage import Durable, SQLiteKV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unsigned pickle store, on purpose
        storage = Durable(SQLiteKV(path), PickleCodec(), trust=[PickleCodec()])
    steps = {name: step(name=name)(compute) for name in ("bench.compute", "bench.warm")}

    @do
    def with_steps(name: str, n: int) -> Generator[Any, Any, int]:
        work = steps[name]
        total = 0
        for i in range(n):
            total += (yield work(i))["id"]
        return total

    @do
    def with_cached(name: str, n: int) -> Generator[Any, Any, int]:
        total = 0
        for i in range(n):
            total += (yield cached(f"{name}:{i}", lambda i=i: perform(compute, i)))["id"]
        return total

    program = with_steps if kind == "step" else with_cached

    def run(name: str, n: int) -> None:
        run_sync(program(name, n), storage=storage)

    return run


PATHS = ("raw", "kv", "durable", "cached", "step")


def one(kind: str, mode: str, k: int, n: int) -> None:
    """Set up, then run k steps of `kind` (hits or misses) on arguments 0..k-1."""
    # No cyclic GC: when its collections fall would differ between the two runs, and one full
    # collection costs as much as hundreds of steps. (So garbage the steps leave is not counted.)
    gc.disable()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "store.db")
        run = (raw(path) if kind == "raw" else layered(path, kind) if kind in ("kv", "durable")
               else machine(path, kind))
        if mode == "hit":
            run("bench.compute", 2 * n)  # stored: what the counted steps read back
        else:
            run("bench.warm", n)  # every path taken once, on other keys
        run("bench.compute", k)


def instructions(kind: str, mode: str, k: int, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--one", kind, mode, str(k), str(n)],
                       check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dicts every run
        with open(out) as f:
            text = f.read()
    found = re.search(r"^summary: (\d+)", text, re.M) or re.search(r"^totals: (\d+)", text, re.M)
    assert found is not None, "no totals in callgrind's output"
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=4, metavar=("PATH", "MODE", "K", "N"))
    parser.add_argument("--n", type=int, default=500,
                        help="steps counted (the difference); 2n stays under 1024, as in "
                             "benchmarks/steps.py, whose small int arguments have kept encodings")
    parser.add_argument("--modes", default="hit,miss")
    parser.add_argument("paths", nargs="*", default=list(PATHS), help=f"of {', '.join(PATHS)}")
    args = parser.parse_args()
    if not set(args.paths) <= set(PATHS):
        parser.error(f"paths are {', '.join(PATHS)}")
    if args.one:
        kind, mode, k, n = args.one
        one(kind, mode, int(k), int(n))
        return
    results: dict[tuple[str, str], float] = {}
    for mode in args.modes.split(","):
        for kind in args.paths:
            low = instructions(kind, mode, args.n, args.n)
            high = instructions(kind, mode, 2 * args.n, args.n)
            results[kind, mode] = (high - low) / args.n
            print(f"{kind:7} {mode:5} {results[kind, mode] / 1000:7.1f}k instructions per step",
                  flush=True)
    modes = args.modes.split(",")
    for kind, base in (*((k, "raw") for k in args.paths if k != "raw"), ("step", "cached")):
        if base in args.paths and kind in args.paths:
            ratios = ", ".join(f"{mode} {results[kind, mode] / results[base, mode]:.2f}x"
                               for mode in modes)
            print(f"{kind:7} / {base}: {ratios}")

if __name__ == "__main__":
    main()
