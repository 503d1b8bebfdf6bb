"""Concurrent tasks against what users would write by hand, as ratios measured in the same run.

(a) 200 branches each sleeping 50 ms in `perform(time.sleep, ...)` under `run_sync` with
    max_concurrency=16, against the ideal (ceil(200/16) x 50 ms) and a bare
    `ThreadPoolExecutor(16).map`; goal <= 1.1x the bare version.
(b) the same with `await_(asyncio.sleep(...))` under `run_async`, against a bare
    `asyncio.gather` under a 16-slot semaphore; goal <= 1.1x.
(c) 2,000 awaits of `asyncio.sleep(0.05)`, no limit, against a bare `asyncio.gather`;
    goal <= 1.1x.
(d) the cost of a task: spawn + wait of a trivial program, against `asyncio.create_task` +
    `gather` of a trivial coroutine; goal <= 1.0x.
(e) the single-task `perform(f)` loop against both floors of `benchmarks/interpreter.py`: no
    worse than before (goal <= 2.0x the honest floor).

    python benchmarks/concurrency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from interpreter import PERFORM_GOAL, PLAIN, best_of, floor_run, perform_gen, performs

from doeff import do, run_async, run_sync
from doeff.effects import await_, gather, perform, spawn, wait

BRANCHES, SLEEP, SLOTS = 200, 0.05, 16
MANY = 2_000


# -- (a) performs under run_sync -------------------------------------------------------------------


@do
def sleep_perform(seconds: float) -> Generator[Any, Any, None]:
    yield perform(time.sleep, seconds)


def doeff_performs() -> None:
    run_sync(gather(*[sleep_perform(SLEEP) for _ in range(BRANCHES)]), max_concurrency=SLOTS)


def bare_pool() -> None:
    with ThreadPoolExecutor(SLOTS) as pool:
        list(pool.map(time.sleep, [SLEEP] * BRANCHES))


# -- (b), (c) awaits under run_async ---------------------------------------------------------------


@do
def sleep_await(seconds: float) -> Generator[Any, Any, None]:
    yield await_(asyncio.sleep(seconds))


def doeff_awaits(n: int, slots: int | None) -> None:
    programs = [sleep_await(SLEEP) for _ in range(n)]
    asyncio.run(run_async(gather(*programs), max_concurrency=slots))


def bare_gather(n: int, slots: int | None) -> None:
    async def main() -> None:
        if slots is None:
            await asyncio.gather(*[asyncio.sleep(SLEEP) for _ in range(n)])
            return
        gate = asyncio.Semaphore(slots)

        async def one() -> None:
            async with gate:
                await asyncio.sleep(SLEEP)

        await asyncio.gather(*[one() for _ in range(n)])

    asyncio.run(main())


# -- (d) the cost of a task ------------------------------------------------------------------------


@do
def trivial() -> Generator[Any, Any, int]:
    return 1
    yield  # pragma: no cover - makes this a generator


@do
def spawn_and_wait(n: int) -> Generator[Any, Any, int]:
    tasks = []
    for _ in range(n):
        tasks.append((yield spawn(trivial())))
    total = 0
    for task in tasks:
        total += yield wait(task)
    return total


def doeff_tasks(n: int) -> None:
    assert run_sync(spawn_and_wait(n)).value == n


async def trivial_coroutine() -> int:
    return 1


def asyncio_tasks(n: int) -> None:
    async def main() -> int:
        tasks = [asyncio.create_task(trivial_coroutine()) for _ in range(n)]
        return sum(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == n


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The best time of each, running them in turn so drift on a shared machine hits all."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], best_of(fn, 1))
    return best


def verdict(ratio: float, goal: float) -> str:
    return f"goal <= {goal}x: {'met' if ratio <= goal else 'NOT met'}"


def main(argv: list[str] | None = None) -> None:
    """Print each case's time, its baselines', the ratios and whether the goals are met."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeat = 2 if args.quick else 5
    ideal = math.ceil(BRANCHES / SLOTS) * SLEEP

    t = interleaved({"doeff": doeff_performs, "bare": bare_pool}, repeat)
    ratio = t["doeff"] / t["bare"]
    print(f"(a) {BRANCHES} x perform(time.sleep, {SLEEP}) under run_sync, max_concurrency="
          f"{SLOTS}")
    print(f"    doeff {t['doeff']:.3f} s   ThreadPoolExecutor.map {t['bare']:.3f} s   ideal "
          f"{ideal:.3f} s")
    print(f"    /bare {ratio:.3f}x  /ideal {t['doeff'] / ideal:.3f}x  {verdict(ratio, 1.1)}")

    t = interleaved({"doeff": lambda: doeff_awaits(BRANCHES, SLOTS),
                     "bare": lambda: bare_gather(BRANCHES, SLOTS)}, repeat)
    ratio = t["doeff"] / t["bare"]
    print(f"(b) {BRANCHES} x await_(asyncio.sleep({SLEEP})) under run_async, max_concurrency="
          f"{SLOTS}")
    print(f"    doeff {t['doeff']:.3f} s   asyncio.gather + Semaphore {t['bare']:.3f} s   ideal "
          f"{ideal:.3f} s")
    print(f"    /bare {ratio:.3f}x  /ideal {t['doeff'] / ideal:.3f}x  {verdict(ratio, 1.1)}")

    t = interleaved({"doeff": lambda: doeff_awaits(MANY, None),
                     "bare": lambda: bare_gather(MANY, None)}, repeat)
    ratio = t["doeff"] / t["bare"]
    print(f"(c) {MANY} x await_(asyncio.sleep({SLEEP})) under run_async, no limit")
    print(f"    doeff {t['doeff']:.3f} s   asyncio.gather {t['bare']:.3f} s   ideal {SLEEP:.3f} s")
    print(f"    /bare {ratio:.3f}x  {verdict(ratio, 1.1)}")

    n = 2_000 if args.quick else 10_000
    t = interleaved({"doeff": lambda: doeff_tasks(n), "asyncio": lambda: asyncio_tasks(n)},
                    repeat)
    ratio = t["doeff"] / t["asyncio"]
    print(f"(d) a task: spawn + wait of a trivial program ({n} of them)")
    print(f"    doeff {t['doeff'] / n * 1e6:.2f} µs   asyncio.create_task + gather "
          f"{t['asyncio'] / n * 1e6:.2f} µs   ratio {ratio:.3f}x  {verdict(ratio, 1.0)}")

    steps = 20_000 if args.quick else 100_000
    t = interleaved({
        "floor": lambda: floor_run(perform_gen(steps)),
        "honest": lambda: floor_run(perform_gen(steps, PLAIN), PLAIN),
        "doeff": lambda: run_sync(performs(steps)),
    }, repeat)
    floor, honest = t["doeff"] / t["floor"], t["doeff"] / t["honest"]
    print("(e) single task, perform(f) per effect")
    print(f"    doeff {t['doeff'] / steps * 1e6:.3f} µs   /floor {floor:.2f}x   /honest "
          f"{honest:.2f}x  {verdict(honest, PERFORM_GOAL)} (the honest floor)")


if __name__ == "__main__":
    main()
