"""Cancellation and observability reach every task: snapshots list tasks, a workflow's cancel
lands while branches wait in await_ or perform, and a cancel never discards a finished step."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from doeff import Effect, do, run_sync, run_workflow
from doeff.cesk_observability import ExecutionSnapshot
from doeff.effects import (
    Await,
    Gather,
    Perform,
    await_,
    cached,
    finally_,
    gather,
    perform,
    spawn,
    tell,
    wait,
)
from doeff.errors import CancellationError
from doeff.storage.memory import InMemoryStorage

PATIENCE = 30.0  # seconds: only a hang takes this long


@do
def napper(tag: str, seconds: float) -> Generator[Any, Any, str]:
    yield await_(asyncio.sleep(seconds))  # @napper-await
    return tag


def test_on_step_snapshots_list_every_live_task() -> None:
    """While a gather runs, each snapshot has a TaskSnapshot per live task, the main one first;
    k_stack and current_effect stay the main task's."""
    snaps: list[ExecutionSnapshot] = []

    @do
    def prog() -> Generator[Any, Any, Any]:
        return (yield gather(napper("a", 0.01), napper("b", 0.02)))

    assert run_sync(prog(), on_step=snaps.append).value == ["a", "b"]
    busy = [s for s in snaps if len(s.tasks) == 3]
    assert busy, [len(s.tasks) for s in snaps]
    for snap in busy:
        main, *branches = snap.tasks
        assert main.task_id == 0 and main.k_stack == snap.k_stack
        assert snap.k_stack[0].frame_type == "GatherFrame"
        assert isinstance(snap.current_effect, Gather)  # what the main task waits on
        assert [t.task_id for t in branches] == [1, 2]
    blocked = [t for s in busy for t in s.tasks[1:] if t.status == "blocked"]
    assert blocked and all(isinstance(t.current_effect, Await) for t in blocked)
    assert blocked[0].k_stack[0].location is not None
    assert blocked[0].k_stack[0].location.lineno == line("napper-await")
    assert len(snaps[-2].tasks) == 1 and snaps[-1].tasks == ()  # gather done; the run ended


def test_a_single_task_snapshot_lists_the_main_task() -> None:
    """Without spawning, `tasks` holds the main task alone, as the snapshot shows it."""
    snaps: list[ExecutionSnapshot] = []
    run_sync(napper("alone", 0.0), on_step=snaps.append)
    running = [s for s in snaps if s.status == "running"]
    assert running and all(len(s.tasks) == 1 and s.tasks[0].k_stack == s.k_stack
                           for s in running)


def test_the_monitor_shows_branches_blocked_in_await_and_perform() -> None:
    """A monitor snapshot taken while every branch waits lists them, with what each waits on."""
    release = threading.Event()

    @do
    def prog() -> Generator[Any, Any, Any]:
        return (yield gather(napper("a", 10), perform(release.wait, PATIENCE)))

    execution = run_workflow(prog())
    deadline = time.monotonic() + PATIENCE
    snap = execution.monitor.snapshot()
    while len(snap.tasks) < 3 or any(t.status != "blocked" for t in snap.tasks):
        assert time.monotonic() < deadline, snap
        time.sleep(0.01)
        snap = execution.monitor.snapshot()
    effects = {type(t.current_effect) for t in snap.tasks[1:]}
    assert effects == {Await, Perform}
    assert "task 1 blocked" in snap.format() and "task 2 blocked" in snap.format()
    execution.cancel()
    release.set()
    assert isinstance(execution.wait(PATIENCE).error, CancellationError)


def test_cancel_lands_while_every_branch_waits_in_an_await() -> None:
    """run_workflow's cancel reaches branches blocked in await_: their awaits are cancelled,
    their cleanups run once, and the run fails promptly with CancellationError."""
    cleanups: list[str] = []

    @do
    def branch(tag: str) -> Generator[Any, Any, Any]:
        return (yield finally_(napper(tag, 60), tell(f"cleanup {tag}")))

    @do
    def prog() -> Generator[Any, Any, Any]:
        return (yield gather(branch("a"), branch("b"), branch("c")))

    execution = run_workflow(prog())
    wait_until(lambda: len(execution.monitor.snapshot().tasks) == 4
               and all(t.status == "blocked" for t in execution.monitor.snapshot().tasks))
    started = time.monotonic()
    execution.cancel()
    result = execution.wait(PATIENCE)
    assert time.monotonic() - started < 5.0
    assert isinstance(result.error, CancellationError)
    cleanups = sorted(entry for entry in result.log if entry.startswith("cleanup"))
    assert cleanups == ["cleanup a", "cleanup b", "cleanup c"]
    assert execution.monitor.status == "failed"


def test_cancel_lands_in_a_branch_blocked_in_perform_at_the_calls_return() -> None:
    """A branch in a running perform is cancelled when the call returns; its next effect never
    runs."""
    entered, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking() -> str:
        entered.set()
        release.wait(PATIENCE)
        return "returned"

    @do
    def branch() -> Generator[Any, Any, None]:
        yield perform(blocking)
        yield perform(ran.append, "next")

    execution = run_workflow(gather(branch(), napper("x", 60)))
    assert entered.wait(PATIENCE)
    execution.cancel()
    time.sleep(0.05)
    assert not execution.done  # the perform has not returned: the run waits for it
    release.set()
    assert isinstance(execution.wait(PATIENCE).error, CancellationError)
    assert ran == []


# -- a cancel never discards a finished step ----------------------------------------------------


class Counter:
    """A slow step that counts its calls and can be held until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.release = threading.Event()

    def step(self, item: int) -> int:
        with self.lock:
            self.calls += 1
        self.entered.set()
        self.release.wait(PATIENCE)
        return item * 10


def test_a_cancelled_single_task_keeps_the_cached_value_its_perform_returned() -> None:
    """Cancel while a cached perform runs (one task): the value is stored; a re-run reads it."""
    storage = InMemoryStorage()
    counter = Counter()

    @do
    def prog() -> Generator[Any, Any, Any]:
        return (yield cached("step", lambda: perform(counter.step, 4)))

    execution = run_workflow(prog(), storage=storage)
    assert counter.entered.wait(PATIENCE)
    execution.cancel()
    counter.release.set()
    assert isinstance(execution.wait(PATIENCE).error, CancellationError)
    assert storage.get("step") == 40
    assert run_sync(prog(), storage=storage).value == 40
    assert counter.calls == 1


def test_a_cached_program_that_returned_as_the_cancel_came_is_stored() -> None:
    """A cached computation that is a program whose last perform returned is stored too."""
    storage = InMemoryStorage()
    counter = Counter()

    @do
    def compute() -> Generator[Any, Any, Any]:
        value = yield perform(counter.step, 2)
        return value + 1

    execution = run_workflow(cached("prog-step", compute), storage=storage)
    assert counter.entered.wait(PATIENCE)
    execution.cancel()
    counter.release.set()
    execution.wait(PATIENCE)
    # The cancel lands at compute()'s yield: compute() did not return, so nothing is stored.
    assert storage.get("prog-step") is None


def test_cancelled_concurrent_cached_performs_store_what_they_returned() -> None:
    """Cancel a fan-out while its cached performs run: each in-flight value is stored; a re-run
    computes only the items that never started."""
    storage = InMemoryStorage()
    counter = Counter()

    @do
    def item(i: int) -> Generator[Any, Any, Any]:
        return (yield cached(f"item:{i}", lambda: perform(counter.step, i)))

    @do
    def fan_out() -> Generator[Any, Any, Any]:
        return (yield gather(*[item(i) for i in range(10)]))

    execution = run_workflow(fan_out(), storage=storage, max_concurrency=3)
    wait_until(lambda: counter.calls == 3)
    execution.cancel()
    time.sleep(0.05)
    counter.release.set()
    assert isinstance(execution.wait(PATIENCE).error, CancellationError)
    stored = sorted(k for k, _ in storage.items())
    assert len(stored) == 3 and counter.calls == 3
    assert run_sync(fan_out(), storage=storage).value == [i * 10 for i in range(10)]
    assert counter.calls == 10  # 7 new calls: the 3 cancelled in flight were not repeated


# -- parked handlers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Slow(Effect):
    """A user effect whose handler blocks on the machine thread."""


def test_a_parked_handler_snapshot_lists_the_tasks() -> None:
    """While a user handler blocks the machine thread, the monitor builds the snapshot itself,
    tasks included."""
    entered, release = threading.Event(), threading.Event()

    def handle(_: Slow) -> str:
        entered.set()
        release.wait(PATIENCE)
        return "handled"

    @do
    def prog() -> Generator[Any, Any, Any]:
        other = yield spawn(napper("side", 60))
        value = yield Slow()
        yield wait(other)
        return value

    execution = run_workflow(prog(), handlers={Slow: handle})
    assert entered.wait(PATIENCE)
    snap = execution.monitor.snapshot(timeout=None)
    assert isinstance(snap.current_effect, Slow)
    assert [t.task_id for t in snap.tasks] == [0, 1]
    execution.cancel()
    release.set()
    assert isinstance(execution.wait(PATIENCE).error, CancellationError)


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def line(tag: str) -> int:
    """The line of this file marked `# @tag`."""
    with open(__file__) as src:
        for number, text in enumerate(src, 1):
            if text.rstrip().endswith(f"# @{tag}"):
                return number
    raise LookupError(tag)


class SlowPuts(InMemoryStorage):
    """A store whose puts wait until released, so a cancel can arrive during one."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def put(self, key: str, value: Any) -> None:
        self.entered.set()
        self.release.wait(PATIENCE)
        super().put(key, value)


def test_a_cancel_during_a_cacheput_keeps_the_put() -> None:
    """A cancel that arrives while a cacheput is being stored never undoes it: the put
    completes, the cancellation lands after it, and the next effect never runs."""
    from doeff.effects import cacheput

    storage = SlowPuts()
    ran: list[str] = []

    @do
    def prog() -> Generator[Any, Any, None]:
        yield cacheput("k", "v")
        yield perform(ran.append, "after the put")

    execution = run_workflow(prog(), storage=storage)
    assert storage.entered.wait(PATIENCE)
    execution.cancel()
    storage.release.set()
    assert isinstance(execution.wait(PATIENCE).error, CancellationError)
    assert storage.get("k") == "v"
    assert ran == []


def test_awaits_cancelled_before_they_start_leave_no_unawaited_coroutine() -> None:
    """Cancelling a run whose branches' awaits have not started yet closes their coroutines:
    no "coroutine ... was never awaited" warning, however early the cancel lands."""
    import gc
    import warnings

    @do
    def many() -> Generator[Any, Any, Any]:
        return (yield gather(*[napper(str(i), 60) for i in range(50)]))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            execution = run_workflow(many())
            execution.cancel()
            assert isinstance(execution.wait(PATIENCE).error, CancellationError)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
