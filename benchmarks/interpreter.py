"""Cost of the CESK machine per effect, per sub-program call and at depth, against the floor.

The floor is the least a generator interpreter can do: a bare `gen.send` loop dispatching each
yielded effect through a dict. Every figure is printed as a ratio to a floor measured in the same
run, because absolute times drift on a shared machine.

    python benchmarks/interpreter.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

from doeff import do, run_sync
from doeff.effects import Get, Perform, Put, get, perform, put

sys.setrecursionlimit(10_000)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` timings of `fn()`, in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# -- the floor: a bare send loop with dict dispatch -------------------------------------------


def floor_run(gen: Generator[Any, Any, Any]) -> Any:
    """Run a generator whose effects are answered through a dict of handlers."""
    store: dict[str, Any] = {}
    table: dict[type, Callable[[Any], Any]] = {
        Get: lambda e: store.get(e.key, e.default),
        Put: lambda e: store.__setitem__(e.key, e.value),
        Perform: lambda e: e.fn(*e.args, **e.kwargs),
    }
    send = gen.send
    value = None
    try:
        while True:
            eff = send(value)
            value = table[eff.__class__](eff)
    except StopIteration as stop:
        return stop.value


def floor_calls(n: int) -> Any:
    """The floor for sub-program calls: each call starts a generator and runs it to the end."""
    total = 0
    for _ in range(n):
        total += floor_run(leaf_gen())
    return total


def getput_gen(n: int) -> Generator[Any, Any, int]:
    for _ in range(n):
        v = yield Get("k", 0)
        yield Put("k", v + 1)
    return n


def perform_gen(n: int) -> Generator[Any, Any, int]:
    total = 0
    for _ in range(n):
        total += yield Perform(int)
    return total


def leaf_gen() -> Generator[Any, Any, int]:
    return 1
    yield  # pragma: no cover - makes this a generator


# -- the same work on doeff ------------------------------------------------------------------------


@do
def getput(n: int) -> Generator[Any, Any, int]:
    for _ in range(n):
        v = yield get("k", 0)
        yield put("k", v + 1)
    return n


@do
def performs(n: int) -> Generator[Any, Any, int]:
    total = 0
    for _ in range(n):
        total += yield perform(int)
    return total


@do
def leaf() -> Generator[Any, Any, int]:
    return 1
    yield  # pragma: no cover


@do
def calls(n: int) -> Generator[Any, Any, int]:
    total = 0
    for _ in range(n):
        total += yield leaf()
    return total


@do
def nest(depth: int) -> Generator[Any, Any, int]:
    if depth == 0:
        return (yield get("k", 0))
    return (yield nest(depth - 1)) + 1


def floor_nest(depth: int) -> Generator[Any, Any, int]:
    """Python-recursive nesting via `yield from`, the floor for depth (needs a high limit)."""
    if depth == 0:
        return (yield Get("k", 0))
    return (yield from floor_nest(depth - 1)) + 1


def main(argv: list[str] | None = None) -> None:
    """Print per-operation costs and their ratio to the floor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 100_000
    repeat = 3 if args.quick else 5
    depth = 5_000

    rows = [
        ("state get/put, per effect", 2 * n,
         lambda: floor_run(getput_gen(n)), lambda: run_sync(getput(n))),
        ("perform(f), per effect", n,
         lambda: floor_run(perform_gen(n)), lambda: run_sync(performs(n))),
        ("sub-program call, per call", n // 2,
         lambda: floor_calls(n // 2), lambda: run_sync(calls(n // 2))),
        (f"nesting {depth} deep, per level", depth,
         lambda: floor_run(floor_nest(depth)), lambda: run_sync(nest(depth))),
    ]
    print(f"{'operation':34} {'floor µs':>9} {'doeff µs':>9} {'ratio':>7}")
    for name, count, floor_fn, doeff_fn in rows:
        floor_t = best_of(floor_fn, repeat) / count * 1e6
        doeff_t = best_of(doeff_fn, repeat) / count * 1e6
        print(f"{name:34} {floor_t:9.3f} {doeff_t:9.3f} {doeff_t / floor_t:6.2f}x")
    deep = 10_000
    t = best_of(lambda: run_sync(nest(deep)), 1)
    print(f"nesting {deep} deep: {t * 1e3:.1f} ms total, {t / deep * 1e6:.3f} µs per level "
          f"(no Python recursion; the floor above needs sys.setrecursionlimit)")
    print("goals: effect within 3x the floor, sub-program call within 6x")


if __name__ == "__main__":
    main()
