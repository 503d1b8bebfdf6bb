"""Bounds on concurrent work: `max_concurrency` across a run, and named `limit`s (concurrency
and rate), each measured: calls in flight counted, start times recorded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Generator
from typing import Any

import pytest

from doeff import do, run_async, run_sync
from doeff.effects import await_, gather, limit, modify, perform, spawn, wait
from doeff.errors import DeadlockError, InvalidEffectError, InvalidOptionError, LimitConflictError


class InFlight:
    """Counts calls running at once (from any thread) and the most seen; records start times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.starts: list[float] = []

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.starts.append(time.monotonic())

    def leave(self) -> None:
        with self.lock:
            self.now -= 1

    def call(self, seconds: float) -> float:
        """A blocking call that takes `seconds`."""
        self.enter()
        try:
            time.sleep(seconds)
        finally:
            self.leave()
        return seconds

    async def wait(self, seconds: float) -> float:
        """An awaitable that takes `seconds`."""
        self.enter()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.leave()
        return seconds


@do
def stamped(call: Any) -> Generator[Any, Any, Any]:
    """Record the start time (on the machine thread, as the limit sees it), then run `call`."""
    yield modify("starts", lambda s: [*s, time.monotonic()], [])
    return (yield call)


def most_in_any_window(starts: list[float], per: float) -> int:
    """The most starts that fall in any window of `per` seconds."""
    starts = sorted(starts)
    best = 0
    for i, first in enumerate(starts):
        best = max(best, sum(1 for s in starts[i:] if s < first + per))
    return best


@pytest.mark.parametrize("cap", [1, 3])
def test_max_concurrency_bounds_performs_and_awaits_in_flight(cap: int) -> None:
    """With max_concurrency=N, at most N performs and awaits run at once, across all tasks."""
    meter = InFlight()

    @do
    def branch(i: int) -> Generator[Any, Any, int]:
        yield perform(meter.call, 0.02)
        yield await_(meter.wait(0.02))
        return i

    result = run_sync(gather(*[branch(i) for i in range(12)]), max_concurrency=cap)
    assert result.value == list(range(12))
    assert meter.most == cap  # reached, never passed


def test_max_concurrency_bounds_run_async_too() -> None:
    """run_async honours max_concurrency for awaits and performs alike."""
    meter = InFlight()

    @do
    def branch() -> Generator[Any, Any, None]:
        yield await_(meter.wait(0.02))
        yield perform(meter.call, 0.02)

    result = asyncio.run(run_async(gather(*[branch() for _ in range(10)]), max_concurrency=2))
    assert result.is_ok()
    assert meter.most == 2


def test_run_options_for_concurrency_are_checked() -> None:
    """max_concurrency must be a positive int and executor an Executor: InvalidOptionError."""
    with pytest.raises(InvalidOptionError, match="max_concurrency"):
        run_sync(perform(int), max_concurrency=0)
    with pytest.raises(InvalidOptionError, match="executor"):
        run_sync(perform(int), executor="threads")  # type: ignore[call-overload]


def test_a_given_executor_runs_the_performs() -> None:
    """executor= receives the performs of concurrent tasks (and is not shut down by the run)."""
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="mine") as pool:
        names = run_sync(gather(*[perform(lambda: threading.current_thread().name)
                                  for _ in range(4)]), executor=pool).value
        assert all(name.startswith("mine") for name in names), names
        assert pool.submit(int).result() == 0  # still usable


def test_a_process_pool_runs_performs_in_other_processes() -> None:
    """A ProcessPoolExecutor given as executor= runs module-level functions elsewhere."""
    import os

    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        pids = run_sync(gather(*[perform(os.getpid) for _ in range(3)]), executor=pool).value
    assert all(pid != os.getpid() for pid in pids)


def test_limit_bounds_programs_in_flight_under_its_name() -> None:
    """At most `concurrency` programs under one name run at once, across all tasks."""
    meter = InFlight()

    @do
    def call(i: int) -> Generator[Any, Any, int]:
        yield perform(meter.call, 0.03)
        return i

    @do
    def prog() -> Generator[Any, Any, Any]:
        # The same name from spawned tasks and from a gather: one bound for all of them.
        spawned = yield spawn(limit("api", call(100), concurrency=2))
        results = yield gather(*[limit("api", call(i), concurrency=2) for i in range(8)])
        return results, (yield wait(spawned))

    assert run_sync(prog()).value == (list(range(8)), 100)
    assert meter.most == 2


def test_limit_bounds_starts_per_window() -> None:
    """With rate=(3, 0.3), no 0.3 s window holds more than 3 starts."""
    meter = InFlight()
    result = run_sync(gather(*[limit("rated", stamped(perform(meter.call, 0.0)), rate=(3, 0.3))
                               for _ in range(9)]))
    starts = result.state["starts"]
    assert len(starts) == 9
    # Stamped a moment after the limit admits each program (which it times), so the window
    # checked is a little shorter than the rate's; without the limit all 9 start within ms.
    assert most_in_any_window(starts, 0.25) == 3
    # 9 starts at 3 per 0.3 s need two full windows after the first.
    assert max(starts) - min(starts) >= 0.55


def test_limit_with_both_bounds_under_run_async() -> None:
    """concurrency= and rate= hold together, for awaits under run_async."""
    meter = InFlight()

    @do
    def prog() -> Generator[Any, Any, Any]:
        return (yield gather(*[limit("both", stamped(await_(meter.wait(0.05))),
                                     concurrency=2, rate=(4, 0.4)) for _ in range(8)]))

    result = asyncio.run(run_async(prog()))
    assert meter.most == 2
    assert most_in_any_window(result.state["starts"], 0.35) == 4


def test_limit_in_a_single_task_waits_for_its_rate() -> None:
    """A run with one task, limited by rate, waits for the window instead of failing."""
    meter = InFlight()

    @do
    def prog() -> Generator[Any, Any, None]:
        for _ in range(4):
            yield limit("solo", stamped(perform(meter.call, 0.0)), rate=(2, 0.2))

    result = run_sync(prog())
    assert most_in_any_window(result.state["starts"], 0.15) == 2
    assert max(result.state["starts"]) - min(result.state["starts"]) >= 0.18


def test_a_limit_used_with_other_parameters_is_refused() -> None:
    """The first use fixes a name's bounds; others must repeat them or give none."""

    @do
    def prog() -> Generator[Any, Any, Any]:
        yield limit("db", perform(int), concurrency=2)
        same = yield limit("db", perform(lambda: "none given"))
        yield limit("db", perform(int), concurrency=3)
        return same

    result = run_sync(prog())
    assert isinstance(result.error, LimitConflictError)
    assert "concurrency=2" in str(result.error) and "concurrency=3" in str(result.error)
    first = run_sync(limit("fresh", perform(int)))
    assert isinstance(first.error, LimitConflictError)


def test_limit_refuses_unusable_bounds_when_built() -> None:
    """concurrency below 1 or a malformed rate fail when the effect is built."""
    with pytest.raises(InvalidEffectError, match="concurrency"):
        limit("x", perform(int), concurrency=0)
    with pytest.raises(InvalidEffectError, match="rate"):
        limit("x", perform(int), rate=(5,))  # type: ignore[arg-type]


def test_a_limit_nested_in_itself_is_a_deadlock_not_a_hang() -> None:
    """A program that waits for a turn its own task holds gets DeadlockError."""
    result = run_sync(limit("one", limit("one", perform(int)), concurrency=1))
    assert isinstance(result.error, DeadlockError)
