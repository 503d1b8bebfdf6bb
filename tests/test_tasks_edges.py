"""Tasks at the edges: Ctrl-C during a fan-out, an observer that raises while tasks run,
cleanups under repeated cancels, bad limits and executors, names and memory of finished tasks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doeff import do, run_async, run_sync, run_workflow
from doeff.cesk.drivers import LONGEST_WAIT, SyncDriver
from doeff.cesk.scheduler import Scheduler
from doeff.effects import (
    await_,
    cached,
    cacheexists,
    cancel,
    finally_,
    gather,
    limit,
    perform,
    race,
    safe,
    spawn,
    wait,
)
from doeff.effects.cache import Claim
from doeff.errors import (
    CallPickleError,
    CancellationError,
    ExecutorError,
    InvalidEffectError,
    WaitTimeoutError,
)
from doeff.storage.presets import InMemoryStorage

PATIENCE = 20.0  # seconds: only a hang takes this long; nothing asserts on it

# A fan-out of 16 tasks, each looping on short performs inside a finally_ cleanup, under
# max_concurrency=4: the machine spends most of its time moving completions between threads and
# tasks, where a KeyboardInterrupt at the wrong bytecode used to lose a wake-up (a hang) or skip
# the cleanups. Exit code 3: interrupted, and every started task's cleanup ran exactly once.
FAN_OUT = textwrap.dedent("""
    import sys, time
    from collections import Counter
    from doeff import do, run_sync
    from doeff.effects import finally_, gather, perform

    N = 16
    started, cleaned = Counter(), Counter()

    @do
    def cleanup(i):
        yield perform(time.sleep, 0.001)   # a cleanup that itself waits on a call
        cleaned[i] += 1

    @do
    def body(i):
        while True:
            yield perform(time.sleep, 0.0005)

    @do
    def work(i):
        started[i] += 1  # the finally_ below is handled in this same step
        yield finally_(body(i), cleanup(i))

    print("ready", flush=True)
    try:
        run_sync(gather(*[work(i) for i in range(N)]), max_concurrency=4)
    except KeyboardInterrupt:
        ok = set(started) == set(cleaned) and set(cleaned.values()) <= {1}
        print("interrupted", dict(started), dict(cleaned), flush=True)
        sys.exit(3 if ok else 4)
    sys.exit(5)
""")


def _interrupt(script: Path, delay: float) -> tuple[int | None, str]:
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None, "hung after SIGINT: " + proc.communicate()[0][-2000:]
    return proc.returncode, out[-2000:]


def _interrupt_twice(script: Path, cue: str) -> tuple[int, str]:
    """Run `script` until it prints `cue`; SIGINT it, check that it is still running a second
    later (the first interrupt waits for what cannot be stopped), SIGINT it again; its exit code
    and output (an AssertionError if it outlives PATIENCE)."""
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != cue:
        pass
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None, "the first SIGINT did not wait for what cannot be stopped"
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("run_sync still blocked after a second SIGINT") from None
    return proc.returncode, out[-2000:]


def test_ctrl_c_during_a_fan_out_ends_the_run_after_every_cleanup(tmp_path: Path) -> None:
    """SIGINT to a process in run_sync's fan-out: KeyboardInterrupt comes out of run_sync (no
    hang), every started task's cleanup ran once, and the process exits (no executor thread
    left behind). Several delays, to land in different places of the scheduler."""
    script = tmp_path / "fan_out.py"
    script.write_text(FAN_OUT)
    for delay in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
        code, out = _interrupt(script, delay)
        assert code == 3, f"after {delay} s: exit code {code}\n{out}"


def test_a_second_ctrl_c_ends_a_run_whose_cleanup_waits(tmp_path: Path) -> None:
    """A started finally_ cleanup runs to its end even when Ctrl-C ends the run; one that waits
    for an hour holds the run after the first SIGINT, and a second SIGINT comes out of run_sync
    at once (it used to be swallowed: no way out but SIGKILL)."""
    script = tmp_path / "cleanup_waits.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        from doeff import do, run_sync
        from doeff.effects import await_, finally_, gather

        @do
        def cleanup():
            print("cleanup starts", flush=True)
            yield await_(asyncio.sleep(3600))  # a stuck network close, say

        @do
        def main():
            yield finally_(await_(asyncio.sleep(0.01)), cleanup())  # the cleanup starts at once

        @do
        def other():
            yield await_(asyncio.sleep(3600))

        print("ready", flush=True)
        try:
            run_sync(gather(main(), other()))
        except KeyboardInterrupt:
            sys.exit(3)
    """))
    code, out = _interrupt_twice(script, "cleanup starts")
    assert code == 3, out


def test_a_second_ctrl_c_while_the_run_ends_raises_at_once(tmp_path: Path) -> None:
    """A task in a call that cannot be interrupted (a thread) keeps the run ending after the
    first SIGINT; a second one comes out of run_sync at once, as docs/concepts.md says."""
    script = tmp_path / "second.py"
    script.write_text(textwrap.dedent("""
        import concurrent.futures, os, time
        from doeff import do, run_sync
        from doeff.effects import gather, perform

        @do
        def stuck():
            yield perform(time.sleep, 3600)

        @do
        def quick():
            yield perform(time.sleep, 0.01)

        print("ready", flush=True)
        pool = concurrent.futures.ThreadPoolExecutor(4)
        try:
            run_sync(gather(stuck(), quick()), executor=pool)
        except KeyboardInterrupt:
            print("out of run_sync", flush=True)
            os._exit(3)  # the thread in time.sleep(3600) would hold the interpreter's exit
    """))
    code, out = _interrupt_twice(script, "ready")
    assert code == 3 and "out of run_sync" in out, out


# The same fan-out as a nested run_sync, called inline by an outer run that went concurrent
# once (so its guard holds SIGINT) and is back on one task: the interrupt belongs to the
# innermost run, which takes it at a step boundary as it would alone.
NESTED = FAN_OUT.replace(
    "    run_sync(gather(*[work(i) for i in range(N)]), max_concurrency=4)\n",
    "    run_sync(outer())\n").replace("print(\"ready\", flush=True)\n", textwrap.dedent("""
    def inner():
        print("ready", flush=True)
        return run_sync(gather(*[work(i) for i in range(N)]), max_concurrency=4)

    @do
    def outer():
        yield gather(perform(time.sleep, 0.001), perform(time.sleep, 0.001))
        return (yield perform(inner))
    """))


def test_ctrl_c_in_a_fan_out_nested_in_a_guarded_run_reaches_the_inner_run(
        tmp_path: Path) -> None:
    """SIGINT during a nested run_sync's fan-out, inside an outer run whose guard holds SIGINT:
    no hang, every started task's cleanup ran once, KeyboardInterrupt out of the outer run."""
    script = tmp_path / "nested.py"
    script.write_text(NESTED)
    assert "run_sync(outer())" in NESTED and "def inner" in NESTED
    for delay in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
        code, out = _interrupt(script, delay)
        assert code == 3, f"after {delay} s: exit code {code}\n{out}"


def test_ctrl_c_during_an_inline_call_of_a_single_task_run_is_immediate(tmp_path: Path) -> None:
    """With one task, perform runs inline: Ctrl-C interrupts a long call at once, as plain
    Python would, and the program's cleanup runs."""
    script = tmp_path / "single.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from doeff import do, run_sync
        from doeff.effects import finally_, perform

        @do
        def cleanup():
            print("cleanup", flush=True)

        print("ready", flush=True)
        try:
            run_sync(finally_(perform(time.sleep, 60), cleanup()))
        except KeyboardInterrupt:
            sys.exit(3)
    """))
    started = time.monotonic()
    code, out = _interrupt(script, 0.3)
    assert code == 3, out
    assert "cleanup" in out
    assert time.monotonic() - started < PATIENCE  # not the 60 s call: it was interrupted


def test_the_sigint_guard_is_there_only_while_a_concurrent_run_lasts() -> None:
    """A run with one task keeps Python's handler; a fan-out takes SIGINT over while it runs
    and gives it back when it ends, even when it fails."""
    default = signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is default
    seen: list[bool] = []

    def look() -> bool:
        seen.append(signal.getsignal(signal.SIGINT) is default)
        return True

    run_sync(perform(look))
    run_sync(gather(perform(look), perform(look)))
    assert seen == [True, False, False]
    assert signal.getsignal(signal.SIGINT) is default

    @do
    def fails() -> Any:
        yield perform(time.sleep, 0.001)
        raise ValueError("no")

    assert isinstance(run_sync(gather(fails(), fails())).error, ValueError)
    assert signal.getsignal(signal.SIGINT) is default


def test_a_nested_fan_outs_guard_comes_first_and_gives_sigint_back() -> None:
    """A fan-out nested in an inline perform of a guarded run holds SIGINT while it runs; then
    the outer guard has it again, and Python's handler once the outer run ends."""
    handlers: dict[str, Any] = {}

    def look(name: str) -> bool:
        handlers[name] = signal.getsignal(signal.SIGINT)
        return True

    def inner() -> Any:
        run_sync(gather(perform(look, "inner"), perform(look, "inner too")))
        return look("outer after")

    @do
    def outer() -> Any:
        yield gather(perform(look, "outer"), perform(time.sleep, 0.001))
        return (yield perform(inner))

    assert run_sync(outer()).value is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert handlers["outer"] is not signal.default_int_handler
    assert handlers["inner"] not in (signal.default_int_handler, handlers["outer"])
    assert handlers["outer after"] == handlers["outer"]


def test_a_ctrl_c_as_a_guarded_run_ends_is_raised_not_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGINT that arrives while a fan-out's result is being built (no step boundary left
    for the guard to deliver it at) comes out of run_sync, as Python would raise it."""
    from doeff.cesk.machine import Machine

    result = Machine._result

    def interrupted_result(self: Machine) -> Any:
        signal.raise_signal(signal.SIGINT)  # the guard has SIGINT: it can only queue it
        return result(self)

    monkeypatch.setattr(Machine, "_result", interrupted_result)
    with pytest.raises(KeyboardInterrupt):
        run_sync(gather(perform(time.sleep, 0.001), perform(time.sleep, 0.001)))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cancelling_run_async_in_a_fan_out_runs_every_cleanup() -> None:
    """The task awaiting run_async is cancelled mid fan-out: CancelledError comes out, after
    every started task's cleanup ran once."""
    started: dict[int, int] = {}
    cleaned: dict[int, int] = {}

    @do
    def cleanup(i: int) -> Any:
        yield perform(time.sleep, 0.001)
        cleaned[i] = cleaned.get(i, 0) + 1

    @do
    def body(i: int) -> Any:
        while True:
            yield perform(time.sleep, 0.001)

    @do
    def work(i: int) -> Any:
        started[i] = started.get(i, 0) + 1  # the finally_ below is handled in this same step
        yield finally_(body(i), cleanup(i))

    async def main() -> None:
        run = asyncio.ensure_future(run_async(gather(*[work(i) for i in range(8)]),
                                              max_concurrency=3))
        await asyncio.sleep(0.2)
        run.cancel()
        try:
            await asyncio.wait_for(run, PATIENCE)
        except asyncio.CancelledError:
            return
        raise AssertionError("run_async was not cancelled")

    asyncio.run(main())
    assert started and started.keys() == cleaned.keys()
    assert set(cleaned.values()) == {1}


# -- an on_step callback that raises while tasks run --------------------------------------------

class ObserverFailed(Exception):
    """What the test's on_step raises."""


def _fan_out(n: int, steps: int, started: dict[int, int], cleaned: dict[int, int]) -> Any:
    @do
    def cleanup(i: int) -> Any:
        yield perform(time.sleep, 0.0005)
        cleaned[i] = cleaned.get(i, 0) + 1

    @do
    def body(i: int) -> Any:
        for _ in range(steps):
            yield perform(time.sleep, 0.0005)
        return i

    @do
    def work(i: int) -> Any:
        started[i] = started.get(i, 0) + 1  # the finally_ below is handled in this same step
        return (yield finally_(body(i), cleanup(i)))

    return gather(*[work(i) for i in range(n)])


def _raising_at(step: int) -> Any:
    seen = [0]

    def on_step(_: Any) -> None:
        seen[0] += 1
        if seen[0] == step:
            raise ObserverFailed(f"on_step failed at its call {step}")

    return on_step


def test_on_step_raising_in_a_single_task_run_is_the_runs_error() -> None:
    """The reference: with one task, the on_step error is the result's error (returned, not
    raised) and the program's cleanup ran."""
    started: dict[int, int] = {}
    cleaned: dict[int, int] = {}
    result = run_sync(_fan_out(1, 5, started, cleaned), on_step=_raising_at(3))
    assert isinstance(result.error, ObserverFailed)
    assert cleaned == {0: 1}


@given(n=st.integers(1, 6), at=st.integers(1, 60), max_concurrency=st.sampled_from([1, 2, 4]))
def test_on_step_raising_during_a_fan_out_fails_the_run_like_a_single_task(
        n: int, at: int, max_concurrency: int) -> None:
    """Whichever step of a fan-out the observer fails at, the run returns that error (as with
    one task), and the cleanup of every task that reached it ran exactly once."""
    started: dict[int, int] = {}
    cleaned: dict[int, int] = {}
    result = run_sync(_fan_out(n, 4, started, cleaned), on_step=_raising_at(at),
                      max_concurrency=max_concurrency)
    if result.error is not None:
        assert isinstance(result.error, ObserverFailed)
    else:
        assert result.value == list(range(n))  # it ended before the observer's call `at`
    assert started.keys() == cleaned.keys()
    assert set(cleaned.values()) <= {1}


# -- a started cleanup runs to its end ----------------------------------------------------------

def _slow_cleanup(log: list[str], name: str) -> Any:
    @do
    def cleanup() -> Any:
        log.append(f"{name}: cleanup starts")
        yield perform(time.sleep, 0.05)
        log.append(f"{name}: cleanup half way")
        yield perform(time.sleep, 0.05)
        log.append(f"{name}: cleanup done")

    return cleanup()


def test_a_cleanup_started_by_a_cancel_survives_the_parent_ending() -> None:
    """A task is cancelled; while its cleanup waits on a call, its parent ends (a second
    cancel): the cleanup still runs to its end, and the task ends cancelled."""
    log: list[str] = []

    @do
    def fast_child() -> Any:
        yield finally_(await_(asyncio.sleep(10)), _slow_cleanup(log, "child"))

    @do
    def parent_awaiting() -> Any:
        task = yield spawn(fast_child())
        yield perform(time.sleep, 0.02)
        yield cancel(task)                # the await is cancelled at once: the cleanup starts
        yield perform(time.sleep, 0.01)   # the cleanup is in its first call...
        return task                       # ...when the parent ends: a second cancel

    task = run_sync(parent_awaiting()).value
    assert log == ["child: cleanup starts", "child: cleanup half way", "child: cleanup done"]
    assert task.status == "cancelled"


def test_a_cleanup_after_success_survives_a_failing_sibling() -> None:
    """A gather branch has finished its work and runs its cleanup when a sibling fails: the
    cleanup runs to its end; the gather raises the sibling's error."""
    log: list[str] = []

    @do
    def done_then_cleanup() -> Any:
        return (yield finally_(perform(time.sleep, 0.001), _slow_cleanup(log, "a")))

    @do
    def fails() -> Any:
        yield perform(time.sleep, 0.03)   # a's cleanup is in its first call by now
        raise ValueError("b failed")

    result = run_sync(gather(done_then_cleanup(), fails()))
    assert isinstance(result.error, ValueError)
    assert log == ["a: cleanup starts", "a: cleanup half way", "a: cleanup done"]


def test_a_cleanup_survives_the_race_being_won() -> None:
    """A race's branch has done its work and runs its cleanup when another branch wins: the
    cleanup runs to its end before race answers."""
    log: list[str] = []

    @do
    def done_then_cleanup() -> Any:
        return (yield finally_(perform(time.sleep, 0.001), _slow_cleanup(log, "loser")))

    @do
    def winner() -> Any:
        yield perform(time.sleep, 0.03)   # the loser's cleanup is in its first call by now
        return "won"

    assert run_sync(race(done_then_cleanup(), winner())).value == "won"
    assert log == ["loser: cleanup starts", "loser: cleanup half way", "loser: cleanup done"]


def test_a_cancel_during_a_cleanup_lands_after_it() -> None:
    """A cancel asked for while a cleanup runs after a success is not lost: it lands once the
    cleanup has ended, at the task's next yield."""
    log: list[str] = []

    @do
    def worker() -> Any:
        yield finally_(perform(time.sleep, 0.001), _slow_cleanup(log, "w"))
        log.append("after the cleanup")   # never: the cancel lands before this line
        yield perform(time.sleep, 0.001)

    @do
    def main() -> Any:
        task = yield spawn(worker())
        yield perform(time.sleep, 0.03)
        yield cancel(task)
        try:
            yield wait(task)
        except CancellationError:
            return "cancelled"
        return "finished"

    assert run_sync(main()).value == "cancelled"
    assert log == ["w: cleanup starts", "w: cleanup half way", "w: cleanup done"]


# -- bad input at the edges ------------------------------------------------------------------------

@do
def _nothing() -> Any:
    return None


@pytest.mark.parametrize("kwargs", [
    {"concurrency": True},
    {"concurrency": False},
    {"rate": (True, 1.0)},
    {"rate": (1, True)},
    {"rate": (1, 1e10)},
    {"rate": (1, float("inf"))},
    {"rate": (1, float("nan"))},
])
def test_limit_refuses_bools_and_windows_it_cannot_wait_for(kwargs: dict[str, Any]) -> None:
    """Bools are not counts (True would count as 1), and a rate window must be a finite number
    of seconds up to a year: each is refused when the effect is built, saying what is allowed."""
    with pytest.raises(InvalidEffectError, match=r"limit\('api', \.\.\., (concurrency|rate)="):
        limit("api", _nothing(), **kwargs)


def test_a_rate_window_of_a_year_waits_without_overflow() -> None:
    """The longest window allowed: a second start waits (the machine sleeps in bounded
    naps, never with a timeout the clock cannot represent) until the run is cancelled."""
    @do
    def two() -> Any:
        return (yield gather(*[limit("yearly", _nothing(), rate=(1, 365 * 24 * 3600.0))
                               for _ in range(2)]))

    execution = run_workflow(two())
    time.sleep(0.2)
    assert not execution.done
    execution.cancel()
    result = execution.wait(PATIENCE)
    assert isinstance(result.error, CancellationError)


def test_the_sync_driver_waits_at_most_its_longest_nap() -> None:
    """A deadline too far for the platform's clock is cut to LONGEST_WAIT."""
    driver = SyncDriver()
    sched = Scheduler(_NoHost())
    ran: list[str] = []
    sched.inbox.put(lambda: ran.append("item"))
    driver.wait(sched, 1e12)
    assert ran == ["item"]
    assert LONGEST_WAIT <= 24 * 3600


class _NoHost:
    def concurrency_changed(self, concurrent: bool) -> None:
        pass

    def notify(self) -> None:
        pass

    def want_tick(self) -> None:
        pass


def _local_function() -> Any:
    return lambda: 1


@pytest.fixture(scope="module")
def process_pool() -> Any:
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        yield pool


def test_an_unpicklable_function_for_a_process_pool_is_a_call_pickle_error(
        process_pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """A lambda cannot go to another process: the error says so, names the function and says
    what to do; the program sees it as the perform's error."""
    result = run_sync(gather(perform(_local_function()), perform(len, [1])),
                      executor=process_pool)
    assert isinstance(result.error, CallPickleError)
    message = str(result.error)
    assert "cannot pickle the function" in message
    assert "<lambda>" in message
    assert "module level" in message


def test_an_unpicklable_argument_for_a_process_pool_names_the_argument(
        process_pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """A lock in the arguments: the error names which argument (position or keyword)."""
    result = run_sync(gather(perform(len, [1]), perform(sorted, [3, 1], key=threading.Lock())),
                      executor=process_pool)
    assert isinstance(result.error, CallPickleError)
    assert isinstance(result.error, TypeError)
    assert "keyword argument key=" in str(result.error)

    async def main() -> Any:
        return await run_async(perform(len, [threading.Lock()]), executor=process_pool)

    result = asyncio.run(main())
    assert isinstance(result.error, CallPickleError)
    assert "argument 0" in str(result.error)


def test_a_functions_own_type_error_under_a_process_pool_stays_its_own(
        process_pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """len(5) raises TypeError in the worker: that is the function's error, not a pickling
    one, and it is not rewritten."""
    result = run_sync(gather(perform(len, 5), perform(len, [1])), executor=process_pool)
    assert type(result.error) is TypeError
    assert "has no len()" in str(result.error)
    assert run_sync(gather(perform(len, [1, 2]), perform(len, [1])),
                    executor=process_pool).value == [2, 1]


def test_a_shut_down_executor_is_an_executor_error() -> None:
    """An executor shut down before the run refuses the calls: ExecutorError (a RuntimeError)
    says so and what to do, under run_sync and run_async."""
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pool.shutdown()
    result = run_sync(gather(perform(len, [1]), perform(len, [1, 2])), executor=pool)
    assert isinstance(result.error, ExecutorError)
    assert isinstance(result.error, RuntimeError)
    assert "shut down" in str(result.error)
    assert "executor that is running" in str(result.error)

    async def main() -> Any:
        return await run_async(perform(len, [1]), executor=pool)

    assert isinstance(asyncio.run(main()).error, ExecutorError)


# -- what a finished task keeps --------------------------------------------------------------------

@do
def _fetch_page(seconds: float) -> Any:
    yield await_(asyncio.sleep(seconds))  # an await: a cancel ends it at once
    return "page"


def test_a_tasks_name_stays_its_programs_after_it_starts() -> None:
    """Before, while and after it runs, a spawned task is named after its program: in its
    repr, and in the messages of errors about it."""
    seen: dict[str, str] = {}

    @do
    def main() -> Any:
        task = yield spawn(_fetch_page(5))
        yield perform(time.sleep, 0.01)    # it has started: it waits in its call
        seen["running"] = f"{task.name} {task!r}"
        first = yield spawn(_fetch_page(0.001))
        yield wait(first)
        seen["finished"] = f"{first.name} {first!r}"
        yield cancel(task)
        try:
            yield wait(task)
        except CancellationError as err:
            seen["error"] = str(err)

    run_sync(main())
    assert seen["running"].startswith("_fetch_page <Task 1 _fetch_page() ")
    assert seen["finished"] == "_fetch_page <Task 2 _fetch_page() completed>"
    assert "_fetch_page()" in seen["error"]


def test_a_gather_names_its_cancelled_branches_after_their_programs() -> None:
    """The cancellation a failing gather sends its siblings names them by program."""
    errors: list[BaseException] = []

    @do
    def sibling() -> Any:
        try:
            yield _fetch_page(5)
        except CancellationError as err:
            errors.append(err)
            raise

    @do
    def fails() -> Any:
        yield perform(time.sleep, 0.01)
        raise ValueError("no")

    run_sync(gather(sibling(), fails()))
    assert len(errors) == 1
    assert str(errors[0]).split(" was ")[0].endswith(".sibling()")


def test_failed_children_are_released_once_waited_for() -> None:
    """20,000 spawned children that fail, each waited for: the parent keeps none of them
    (traced memory grows by far less than one child's worth per child)."""
    import gc
    import tracemalloc

    probes: list[int] = []

    @do
    def fails(i: int) -> Any:
        raise ValueError(f"child {i} failed")

    @do
    def main() -> Any:
        for i in range(20_000):
            task = yield spawn(fails(i))
            yield safe(wait(task))
            if i in (999, 19_999):
                gc.collect()
                probes.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        result = run_sync(main())
    finally:
        tracemalloc.stop()
    assert result.error is None
    grown = probes[1] - probes[0]
    assert grown < 19_000 * 100, f"{grown} bytes kept for 19,000 waited failed children"


def test_a_failed_child_nobody_waited_for_still_fails_its_parent() -> None:
    """The other side of releasing them: one never waited for is still reported."""
    @do
    def fails() -> Any:
        raise ValueError("lost")

    @do
    def main() -> Any:
        waited = yield spawn(fails())
        yield spawn(fails())
        yield safe(wait(waited))
        yield perform(time.sleep, 0.01)
        return "done"

    result = run_sync(main())
    assert isinstance(result.error, ValueError)


# -- documented behaviour (docs/concepts.md, "Tasks and the scheduler") ----------------------------

def test_the_same_key_missed_by_two_concurrent_tasks_is_computed_by_both() -> None:
    """Without a claim, two tasks missing one key both compute it; with claim=, one computes
    and the other reads its record."""
    computed: list[int] = []

    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(0.05)
        return 2 * x

    def both(claim: Any) -> Any:
        return gather(*[cached("answer", lambda: perform(slow, 21), claim=claim)
                        for _ in range(2)])

    assert run_sync(both(False)).value == [42, 42]
    assert len(computed) == 2
    computed.clear()
    assert run_sync(both(Claim(lease=5, poll=0.01))).value == [42, 42]
    assert len(computed) == 1


def test_awaits_alone_count_against_max_concurrency() -> None:
    """Only awaits, under max_concurrency=2: never more than two in flight, under run_sync and
    run_async."""
    now = [0]
    most = [0]

    async def nap() -> None:
        now[0] += 1
        most[0] = max(most[0], now[0])
        try:
            await asyncio.sleep(0.02)
        finally:
            now[0] -= 1

    def naps() -> Any:
        return gather(*[await_(nap()) for _ in range(8)])

    assert run_sync(naps(), max_concurrency=2).is_ok()
    assert most == [2]
    most[0] = 0
    assert asyncio.run(run_async(naps(), max_concurrency=2)).is_ok()
    assert most == [2]


def test_an_unwaited_failed_child_fails_its_parent_at_the_parents_end() -> None:
    """The child's failure does not interrupt its parent: the parent's later steps run, and
    the parent fails with the child's error once its program has ended."""
    steps: list[str] = []

    @do
    def fails() -> Any:
        raise ValueError("child failed")

    @do
    def parent() -> Any:
        yield spawn(fails())
        yield perform(time.sleep, 0.02)  # the child has failed by now
        steps.append("the parent went on")
        return "parent's value"

    result = run_sync(parent())
    assert steps == ["the parent went on"]
    assert isinstance(result.error, ValueError)
    assert str(result.error) == "child failed"


def test_a_cached_computation_is_stored_only_if_it_returned() -> None:
    """A computation that raised, or was cancelled before returning, stores nothing (the next
    run computes again); one that returned is stored, even when a cancel follows at once."""
    storage = InMemoryStorage()

    @do
    def raises() -> Any:
        yield perform(time.sleep, 0.001)
        raise ValueError("no result")

    @do
    def sibling_fails() -> Any:
        yield perform(time.sleep, 0.02)
        raise ValueError("sibling failed")

    @do
    def slow() -> Any:
        yield await_(asyncio.sleep(5))
        return "slow"

    @do
    def quick() -> Any:
        yield perform(time.sleep, 0.001)
        return "quick"

    run_sync(cached("raised", raises), storage=storage)
    run_sync(gather(cached("cancelled", slow), cached("returned", quick), sibling_fails()),
             storage=storage)
    exists = run_sync(gather(*[cacheexists(k) for k in ("raised", "cancelled", "returned")]),
                      storage=storage).value
    assert exists == [False, False, True]


def test_the_wait_timeout_message_promises_no_interrupted_perform() -> None:
    """WaitTimeoutError says what cancel() does and does not do: a perform already running is
    waited for, never interrupted."""
    release = threading.Event()
    execution = run_workflow(perform(release.wait, PATIENCE))
    try:
        with pytest.raises(WaitTimeoutError) as caught:
            execution.wait(0.05)
    finally:
        release.set()
    message = str(caught.value)
    assert "cannot be interrupted" in message
    assert execution.wait(PATIENCE).value is True


def test_a_guard_put_back_after_its_run_ended_passes_ctrl_c_on() -> None:
    """A program that takes SIGINT over during a guarded run and puts back what it found only
    after the run (a context manager around run_sync) reinstalls the guard of a run that has
    ended: Ctrl-C then raises KeyboardInterrupt as Python's handler would, not queued for a
    machine that will never take it; and the next fan-out guards itself as it would with
    Python's handler there."""
    found: list[Any] = []

    def take_over() -> bool:
        found.append(signal.signal(signal.SIGINT, lambda signum, frame: None))
        return True

    @do
    def program() -> Any:
        yield gather(perform(time.sleep, 0.001), perform(time.sleep, 0.001))
        return (yield perform(take_over))

    try:
        assert run_sync(program()).value is True
        signal.signal(signal.SIGINT, found[0])  # the ended run's guard
        assert found[0] is not signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            time.sleep(1.0)  # the handler runs at the next bytecode; this is a margin only
        # The next fan-out takes SIGINT over from it with a guard of its own.
        held: list[Any] = []
        run_sync(gather(perform(lambda: held.append(signal.getsignal(signal.SIGINT))),
                        perform(time.sleep, 0.001)))
        assert held[0] not in (found[0], signal.default_int_handler)
        assert signal.getsignal(signal.SIGINT) == found[0]
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
