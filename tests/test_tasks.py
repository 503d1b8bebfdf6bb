"""Tasks on one machine: gather, race, spawn/wait/cancel, orphans, and how state, env and the
log behave across tasks."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections.abc import Generator
from typing import Any

import pytest

from doeff import do, run_async, run_sync
from doeff.cesk import Task
from doeff.effects import (
    ask,
    await_,
    cancel,
    catch,
    finally_,
    gather,
    get,
    listen,
    local,
    modify,
    perform,
    put,
    race,
    safe,
    spawn,
    tell,
    wait,
)
from doeff.errors import CancellationError, DeadlockError, InvalidEffectError

PATIENCE = 30.0  # seconds: only a hang takes this long; nothing asserts on it


@do
def sleeper(tag: Any, seconds: float) -> Generator[Any, Any, Any]:
    yield perform(time.sleep, seconds)
    return tag


@do
def async_sleeper(tag: Any, seconds: float) -> Generator[Any, Any, Any]:
    yield await_(asyncio.sleep(seconds))
    return tag


@do
def fails_after(seconds: float, message: str) -> Generator[Any, Any, None]:
    yield perform(time.sleep, seconds)
    raise ValueError(message)  # @fails-raise


# -- gather ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", [sleeper, async_sleeper], ids=["perform", "await_"])
def test_gather_runs_branches_concurrently_under_run_sync(branch: Any) -> None:
    """Eight 0.2 s branches under run_sync finish well under the 1.6 s they take in a row."""
    started = time.perf_counter()
    result = run_sync(gather(*[branch(i, 0.2) for i in range(8)]))
    elapsed = time.perf_counter() - started
    assert result.value == list(range(8))
    assert elapsed < 1.0, elapsed


@pytest.mark.parametrize("branch", [sleeper, async_sleeper], ids=["perform", "await_"])
def test_gather_runs_branches_concurrently_under_run_async(branch: Any) -> None:
    """Eight 0.2 s branches under run_async finish well under the 1.6 s they take in a row."""
    started = time.perf_counter()
    result = asyncio.run(run_async(gather(*[branch(i, 0.2) for i in range(8)])))
    elapsed = time.perf_counter() - started
    assert result.value == list(range(8))
    assert elapsed < 1.0, elapsed


def test_gather_answers_results_in_the_order_of_its_programs() -> None:
    """Results come in argument order, whichever branch finishes first."""
    delays = [0.15, 0.0, 0.1, 0.05]
    result = run_sync(gather(*[sleeper(i, d) for i, d in enumerate(delays)]))
    assert result.value == [0, 1, 2, 3]


def test_nested_gathers_answer_nested_results() -> None:
    """A gather of gathers answers a list of lists, each inner one in order."""

    @do
    def inner(base: int) -> Generator[Any, Any, Any]:
        return (yield gather(*[sleeper(base + i, 0.01 * (3 - i)) for i in range(3)]))

    result = run_sync(gather(inner(0), inner(10), gather(get("x", 5), inner(20))))
    assert result.value == [[0, 1, 2], [10, 11, 12], [5, [20, 21, 22]]]


def test_gather_of_plain_effects_and_of_one_or_no_program() -> None:
    """gather runs effects as programs too; with one program or none it needs no task."""
    assert run_sync(gather(get("a", 1), perform(lambda: 2), put("b", 3))).value == [1, 2, None]
    assert run_sync(gather(get("a", 1))).value == [1]
    assert run_sync(gather()).value == []


def test_a_failing_branch_cancels_its_siblings_and_each_cleanup_runs_once() -> None:
    """The first failure cancels the others: their finally_ cleanups run exactly once, their
    later steps never; gather raises that failure."""
    cleanups: list[int] = []
    later: list[int] = []

    @do
    def branch(i: int) -> Generator[Any, Any, None]:
        yield finally_(sleeper(i, 0.5), perform(cleanups.append, i))
        yield perform(later.append, i)

    @do
    def not_started_cleanup() -> Generator[Any, Any, None]:
        yield perform(cleanups.append, 99)

    result = run_sync(gather(branch(1), fails_after(0.05, "boom"), branch(2),
                             finally_(get("x"), not_started_cleanup())))
    assert isinstance(result.error, ValueError) and str(result.error) == "boom"
    assert sorted(cleanups) == [1, 2, 99]
    assert later == []


def test_a_branch_that_fails_at_once_stops_the_ones_not_yet_started() -> None:
    """A branch failing in its first step cancels the branches that have not run: they never
    start."""
    ran: list[int] = []

    @do
    def boom() -> Generator[Any, Any, None]:
        raise ValueError("at once")
        yield  # pragma: no cover

    result = run_sync(gather(boom(), perform(ran.append, 1), perform(ran.append, 2)))
    assert isinstance(result.error, ValueError)
    assert ran == []


def test_gather_raises_the_failure_with_its_branch_traceback() -> None:
    """The error's traceback runs from the program that yielded gather down to the raise."""

    @do
    def outer() -> Generator[Any, Any, Any]:
        return (yield gather(sleeper(1, 0.2), fails_after(0.01, "deep")))  # @outer-gather

    result = run_sync(outer())
    assert result.traceback is not None
    frames = [(loc.function, loc.lineno) for loc in result.traceback.program_frames]
    assert frames == [("outer", line("outer-gather")), ("fails_after", line("fails-raise"))]
    assert "ValueError: deep" in result.format_error()


def test_errors_of_several_branches_are_noted_on_the_first() -> None:
    """When several branches fail, gather raises the first; the others' errors are notes."""

    @do
    def fails_in_cleanup() -> Generator[Any, Any, None]:
        yield finally_(sleeper(0, 0.5), fails_after(0.0, "cleanup failed too"))

    result = run_sync(gather(fails_after(0.05, "first"), fails_in_cleanup(),
                             fails_after(0.3, "second")))
    error = result.error
    assert isinstance(error, ValueError) and str(error) == "first"
    notes = getattr(error, "__notes__", [])
    assert any("cleanup failed too" in note for note in notes), notes
    assert not any("second" in note for note in notes), notes  # cancelled before it failed


def test_catch_around_gather_sees_the_failure_after_the_siblings_ended() -> None:
    """catch around a failing gather answers its handler once every branch has ended."""
    ended: list[str] = []

    @do
    def branch() -> Generator[Any, Any, None]:
        yield finally_(sleeper(0, 0.5), perform(ended.append, "sibling"))

    @do
    def prog() -> Generator[Any, Any, Any]:
        value = yield catch(gather(branch(), fails_after(0.02, "x")), lambda e: "handled")
        return value, list(ended)

    assert run_sync(prog()).value == ("handled", ["sibling"])


# -- race ------------------------------------------------------------------------------------------


def test_race_answers_the_first_to_finish_and_cancels_the_rest() -> None:
    """race answers the fastest branch's value; the slower branches are cancelled, cleanups
    run."""
    cleanups: list[str] = []

    @do
    def slow(tag: str, seconds: float) -> Generator[Any, Any, Any]:
        return (yield finally_(sleeper(tag, seconds), perform(cleanups.append, tag)))

    result = run_sync(race(slow("slow", 0.6), fails_after(0.4, "loses"), slow("fast", 0.05)))
    assert result.value == "fast"
    assert sorted(cleanups) == ["fast", "slow"]  # race answered once "slow" had ended too


def test_race_whose_first_finisher_fails_raises_its_error_and_cancels_the_rest() -> None:
    """A failure that finishes first decides the race: its error is raised (with its branch's
    traceback), and a slower branch that would have succeeded is cancelled, cleanup run."""
    cleanups: list[str] = []

    @do
    def slow(tag: str, seconds: float) -> Generator[Any, Any, Any]:
        return (yield finally_(async_sleeper(tag, seconds), perform(cleanups.append, tag)))

    started = time.perf_counter()
    result = run_sync(race(slow("would win later", 3.0), fails_after(0.02, "first")))
    assert str(result.error) == "first"
    assert cleanups == ["would win later"]
    assert time.perf_counter() - started < 2.5  # the slow branch was cancelled, not waited
    assert "fails_after" in str(result.traceback)


def test_race_cancels_a_blocked_await() -> None:
    """A losing branch blocked in await_ is cancelled: its coroutine sees CancelledError."""
    seen: list[str] = []

    async def long_wait() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    started = time.perf_counter()
    result = run_sync(race(await_(long_wait()), sleeper("quick", 0.05)))
    assert result.value == "quick"
    assert seen == ["cancelled"]
    assert time.perf_counter() - started < 5.0


def test_race_notes_a_loser_that_fails_on_its_own_while_being_cancelled() -> None:
    """A losing branch whose cleanup raises while it is being cancelled: its error is a note on
    the error race raises (cancellations themselves are not noted)."""

    def broken() -> None:
        raise RuntimeError("cleanup broke")

    @do
    def bad_cleanup() -> Generator[Any, Any, Any]:
        return (yield finally_(async_sleeper("slow", 5.0), perform(broken)))

    result = run_sync(race(bad_cleanup(), fails_after(0.01, "first"),
                           async_sleeper("other", 5.0)))
    assert str(result.error) == "first"
    notes = getattr(result.error, "__notes__", [])
    assert len(notes) == 1 and "cleanup broke" in notes[0]


def test_race_of_one_program_answers_its_value() -> None:
    """race with a single program just runs it."""
    assert run_sync(race(get("k", 4))).value == 4


# -- spawn, wait, cancel ---------------------------------------------------------------------------


def test_spawn_answers_a_task_and_wait_its_value() -> None:
    """spawn starts a task beside the program; wait answers its value."""

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(sleeper("child", 0.05))
        assert isinstance(task, Task)
        mine = yield perform(lambda: "parent")
        return mine, (yield wait(task)), (yield wait(task)), task.status

    assert run_sync(prog()).value == ("parent", "child", "child", "completed")


def test_wait_raises_the_tasks_error_with_its_traceback() -> None:
    """wait(task) raises the task's error; the traceback continues into the task's frames."""

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(fails_after(0.01, "child failed"))
        yield wait(task)  # @prog-wait

    result = run_sync(prog())
    assert str(result.error) == "child failed"
    assert result.traceback is not None
    lines = [loc.lineno for loc in result.traceback.program_frames]
    assert lines == [line("prog-wait"), line("fails-raise")]


def test_cancel_effect_cancels_a_task_at_its_current_yield() -> None:
    """cancel(task) raises CancellationError in the task; its cleanup runs; wait raises it."""
    steps: list[str] = []

    @do
    def child() -> Generator[Any, Any, None]:
        try:
            yield await_(asyncio.sleep(10))
            steps.append("after the await")
        finally:
            steps.append("child cleanup")

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(child())
        yield perform(time.sleep, 0.05)
        was_running = yield cancel(task)
        outcome = yield safe(wait(task))
        return was_running, task.status, type(outcome.error).__name__ if outcome.is_err() \
            else outcome

    result = run_sync(prog())
    assert result.is_err() and isinstance(result.error, CancellationError), result
    # safe lets cancellation through: it is not the program's to swallow.
    assert steps == ["child cleanup"]


def test_cancel_and_wait_report_a_cancelled_task() -> None:
    """After cancel(task), the task ends "cancelled" and catching around wait is refused."""

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(async_sleeper("never", 10))
        yield perform(time.sleep, 0.02)
        yield cancel(task)
        try:
            yield wait(task)
        except CancellationError as err:
            return task.status, str(err)
        return None

    status, message = run_sync(prog()).value
    assert status == "cancelled"
    assert "cancelled" in message


def test_task_cancel_method_works_from_another_thread() -> None:
    """Task.cancel() called from a perform's thread cancels the task at its yield."""

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(async_sleeper("never", 10))
        yield perform(time.sleep, 0.05)
        yield perform(task.cancel)
        try:
            yield wait(task)
        except CancellationError:
            return task.status
        return "not cancelled"

    started = time.perf_counter()
    assert run_sync(prog()).value == "cancelled"
    assert time.perf_counter() - started < 5.0


def test_cancelling_a_running_perform_lands_when_the_call_returns() -> None:
    """A perform cannot be interrupted: the cancel lands at its return; the next effect never
    runs."""
    ran: list[str] = []
    entered = threading.Event()

    def slow() -> str:
        entered.set()
        time.sleep(0.2)
        ran.append("call finished")
        return "done"

    @do
    def child() -> Generator[Any, Any, None]:
        yield perform(slow)
        yield perform(ran.append, "next effect")

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(child())
        yield perform(entered.wait, PATIENCE)
        yield cancel(task)
        outcome = yield catch(wait(task), lambda e: "unreached")
        return outcome

    result = run_sync(prog())
    assert isinstance(result.error, CancellationError)
    assert ran == ["call finished"]


def test_a_task_cancelling_itself_raises_there() -> None:
    """cancel(task) on the running task raises CancellationError at that yield."""

    @do
    def child() -> Generator[Any, Any, Any]:
        me = yield get("me")
        try:
            yield cancel(me)
        except CancellationError:
            return "cancelled myself"
        return "went on"

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(child())
        yield put("me", task)
        return (yield wait(task))

    assert run_sync(prog()).value == "cancelled myself"


def test_wait_and_cancel_refuse_what_is_not_a_task() -> None:
    """wait/cancel of a non-task fail when built; a task of another run fails when handled."""
    with pytest.raises(InvalidEffectError, match="Task answered by spawn"):
        wait("not a task")
    with pytest.raises(InvalidEffectError):
        cancel(42)

    @do
    def makes_task() -> Generator[Any, Any, Any]:
        return (yield spawn(get("x")))

    other = run_sync(makes_task()).value
    result = run_sync(wait(other))
    assert isinstance(result.error, InvalidEffectError)
    assert "not a task of this run" in str(result.error)


def test_a_task_waiting_for_itself_is_a_deadlock() -> None:
    """wait on the running task raises DeadlockError at once."""

    @do
    def child() -> Generator[Any, Any, Any]:
        me = yield get("me")
        yield wait(me)

    @do
    def prog() -> Generator[Any, Any, Any]:
        task = yield spawn(child())
        yield put("me", task)
        yield wait(task)

    assert isinstance(run_sync(prog()).error, DeadlockError)


def test_tasks_waiting_for_each_other_get_a_deadlock_error() -> None:
    """Two tasks that wait for each other, with nothing in flight, get DeadlockError (a misuse
    that safe does not swallow) instead of hanging."""

    @do
    def waits_for(key: str) -> Generator[Any, Any, Any]:
        yield perform(time.sleep, 0.01)
        other = yield get(key)
        return (yield wait(other))

    @do
    def prog() -> Generator[Any, Any, Any]:
        a = yield spawn(waits_for("b"))
        b = yield spawn(waits_for("a"))
        yield put("a", a)
        yield put("b", b)
        return (yield safe(wait(a)))

    result = run_sync(prog())
    assert isinstance(result.error, DeadlockError)
    assert "every other task of the run waits too" in str(result.error)


# -- orphans and structure -------------------------------------------------------------------------


def test_a_task_left_running_is_cancelled_and_awaited_when_its_parent_ends() -> None:
    """A spawned task still running at its parent's end is cancelled, and its cleanup has run
    before run_sync returns; no perform of it is still running afterwards."""
    events: list[str] = []

    @do
    def child() -> Generator[Any, Any, None]:
        yield finally_(async_sleeper(0, 10), perform(events.append, "child cleanup"))
        events.append("child went on")

    @do
    def prog() -> Generator[Any, Any, str]:
        yield spawn(child())
        yield perform(time.sleep, 0.02)
        return "parent done"

    threads_before = threading.active_count()
    started = time.perf_counter()
    result = run_sync(prog())
    assert result.value == "parent done"
    assert events == ["child cleanup"]
    assert time.perf_counter() - started < 5.0
    assert threading.active_count() <= threads_before


def test_an_unwaited_task_that_failed_fails_its_parent() -> None:
    """A spawned task's error that nothing waited for is not lost: the parent fails with it."""

    @do
    def prog() -> Generator[Any, Any, str]:
        yield spawn(fails_after(0.0, "lost?"))
        yield perform(time.sleep, 0.05)
        return "parent done"

    result = run_sync(prog())
    assert isinstance(result.error, ValueError) and str(result.error) == "lost?"


def test_ten_thousand_tasks_in_one_gather_without_recursion() -> None:
    """10,000 tasks in one gather complete under a low recursion limit (no Python recursion)."""

    @do
    def tiny(i: int) -> Generator[Any, Any, Any]:
        v = yield get("base", 0)
        return v + i

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        result = run_sync(gather(*[tiny(i) for i in range(10_000)]), state={"base": 1})
    finally:
        sys.setrecursionlimit(limit)
    assert result.value == [i + 1 for i in range(10_000)]


def test_memory_is_flat_per_finished_task() -> None:
    """Spawning and waiting for 20,000 tasks keeps no more memory than 2,000 (nothing is kept
    per finished task)."""
    import tracemalloc

    @do
    def tiny() -> Generator[Any, Any, Any]:
        return (yield get("k", 1))

    @do
    def many(n: int) -> Generator[Any, Any, Any]:
        total = 0
        for _ in range(n):
            task = yield spawn(tiny())
            total += yield wait(task)
        return total

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            assert run_sync(many(n)).value == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(100)  # warm caches
    small, large = peak(2_000), peak(20_000)
    assert large - small < 64 * 1024, (small, large)


# -- state, environment and log across tasks ------------------------------------------------------


def test_tasks_share_the_store_and_each_effect_is_atomic() -> None:
    """Concurrent tasks modify one store; no update is lost (tasks switch only at effects)."""

    @do
    def bump(n: int) -> Generator[Any, Any, None]:
        for _ in range(n):
            yield modify("count", lambda c: c + 1, 0)
            yield perform(time.sleep, 0)

    result = run_sync(gather(*[bump(50) for _ in range(8)]))
    assert result.state["count"] == 400


def test_a_task_starts_with_its_parents_env_and_local_stays_in_its_task() -> None:
    """A spawned task sees the env of the spawn point; local in one task never reaches another."""

    @do
    def reader(tag: str) -> Generator[Any, Any, Any]:
        first = yield ask("who")
        yield perform(time.sleep, 0.05)
        return tag, first, (yield ask("who"))

    @do
    def changer() -> Generator[Any, Any, Any]:
        return (yield local({"who": "changer"}, reader("changer")))

    @do
    def prog() -> Generator[Any, Any, Any]:
        both = yield local({"who": "inner"}, gather(reader("a"), changer()))
        return both, (yield ask("who"))

    result = run_sync(prog(), env={"who": "outer"})
    assert result.value == ([("a", "inner", "inner"), ("changer", "changer", "changer")],
                            "outer")


def test_the_log_keeps_the_order_of_tells_and_listen_captures_spawned_tasks() -> None:
    """The log is one list in tell order; listen(p) also collects what p's tasks tell while
    the listen is open, not what they tell after."""

    @do
    def child(tag: str, seconds: float) -> Generator[Any, Any, None]:
        yield tell(f"{tag} start")
        yield perform(time.sleep, seconds)
        yield tell(f"{tag} end")

    @do
    def body() -> Generator[Any, Any, str]:
        yield spawn(child("late", 0.3))
        yield gather(child("a", 0.02), child("b", 0.1))
        return "body"

    @do
    def prog() -> Generator[Any, Any, Any]:
        value, entries = yield listen(body())
        return value, entries

    result = run_sync(prog())
    value, entries = result.value
    assert value == "body"
    assert entries == ["late start", "a start", "b start", "a end", "b end"]
    # The late task was cancelled when body() ended: it never wrote its end.
    assert result.log == entries


def test_a_single_task_listen_behaves_as_before() -> None:
    """Without tasks, listen answers exactly the entries of its program, nested ones included."""

    @do
    def inner() -> Generator[Any, Any, int]:
        yield tell("i1")
        return 1

    @do
    def prog() -> Generator[Any, Any, Any]:
        yield tell("before")
        outer = yield listen(listen(inner()))
        yield tell("after")
        return outer

    result = run_sync(prog())
    assert result.value == ((1, ["i1"]), ["i1"])
    assert result.log == ["before", "i1", "after"]


# -- which thread runs what ------------------------------------------------------------------------


def test_one_task_performs_inline_and_concurrent_tasks_on_the_executor() -> None:
    """run_sync with one task calls perform on its own thread; with several, on the pool."""
    here = threading.get_ident()
    one = run_sync(perform(threading.get_ident)).value
    many = run_sync(gather(perform(threading.get_ident), perform(threading.get_ident))).value
    assert one == here
    assert all(t != here for t in many)


def test_run_async_never_blocks_the_loop_in_a_perform() -> None:
    """Under run_async a 0.5 s perform runs off the loop: a ticker keeps ticking meanwhile."""
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> Any:
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        result = await run_async(perform(time.sleep, 0.5))
        stop.set()
        await ticking
        return result

    assert asyncio.run(main()).is_ok()
    assert ticks >= 10, ticks  # about 50 if the loop was free; 1 if the call blocked it


def line(tag: str) -> int:
    """The line of this file marked `# @tag`."""
    with open(__file__) as src:
        for number, text in enumerate(src, 1):
            if text.rstrip().endswith(f"# @{tag}"):
                return number
    raise LookupError(tag)


def test_an_await_that_never_started_is_closed_without_a_warning() -> None:
    """A gather branch that is an await_ cancelled before it ran leaves no "never awaited"
    coroutine behind."""

    @do
    def boom() -> Generator[Any, Any, None]:
        raise ValueError("at once")
        yield  # pragma: no cover

    never_run: Any = asyncio.sleep(1)
    result = run_sync(gather(boom(), await_(never_run)))
    assert isinstance(result.error, ValueError)
    assert never_run.cr_frame is None  # closed (a coroutine never started nor closed has one)


def test_cpu_only_tasks_take_turns() -> None:
    """Two tasks that never block interleave: each runs a quantum of steps, then the other."""

    @do
    def busy(tag: str) -> Generator[Any, Any, None]:
        for _ in range(3_000):
            yield tell(tag)

    log = run_sync(gather(busy("a"), busy("b"))).log
    switches = sum(1 for x, y in itertools.pairwise(log) if x != y)
    assert switches >= 4, switches  # one after the other would switch once


def test_a_call_that_completes_gets_its_turn_during_a_long_computation() -> None:
    """A task whose await completed runs before a CPU-bound sibling is done: news preempts."""

    @do
    def quick() -> Generator[Any, Any, None]:
        yield await_(asyncio.sleep(0.01))
        yield tell("quick done")

    @do
    def long_computation() -> Generator[Any, Any, None]:
        yield perform(time.sleep, 0)  # let quick() start its await first
        for _ in range(300_000):
            yield get("k")
        yield tell("long done")

    log = run_sync(gather(quick(), long_computation())).log
    assert log == ["quick done", "long done"]
