"""Recorded runs under `run_async`: the record, the heartbeat while the run awaits, cancel and
pause from another thread or process (the pause holds the run in an await, the event loop
free), the asyncio task cancelled, OpenTelemetry spans, and a SIGKILLed worker seen "lost".

The worker process runs this file, so the K stacks its records show point at lines of this
file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_runs_processes import TIMEOUT, wait_for

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def line_of(marker: str) -> int:
    """The line of this file marked `marker` in the program code (not in a test's look-up)."""
    return next(n for n, line in enumerate(HERE.read_text().splitlines(), 1)
                if line.endswith(f"# {marker}"))


def open_storage(path: str | Path) -> Any:
    """A msgpack store on the SQLite file `path` (every process can open it)."""
    from doeff.serde import MsgpackCodec
    from doeff.storage import Durable, SQLiteKV

    return Durable(SQLiteKV(path), MsgpackCodec())


def square(i: int) -> int:
    return i * i


def slowly(i: int) -> int:
    time.sleep(0.02)
    return i


def workflows() -> dict[str, Callable[..., Any]]:
    """The programs the tests run, in this process or in a worker."""
    from doeff import do
    from doeff.effects import await_, perform
    from doeff.effects.cache import cached

    @do
    def sleeper(n: int) -> Generator[Any, Any, Any]:
        total = 0
        for i in range(n):
            total += yield cached(f"s:{i}", lambda i=i: perform(square, i))  # type: ignore[misc]
        yield await_(asyncio.sleep(3600))  # ASLEEP HERE
        return total

    @do
    def steady(n: int) -> Generator[Any, Any, Any]:
        total = 0
        for i in range(n):
            total += yield cached(f"t:{i}", lambda i=i: perform(slowly, i))  # type: ignore[misc]
        return total

    @do
    def counted(n: int) -> Generator[Any, Any, Any]:
        total = 0
        for i in range(n):
            total += yield cached(f"c:{i}", lambda i=i: perform(square, i))  # type: ignore[misc]
        yield await_(asyncio.sleep(0))  # COUNTED HERE
        return total

    @do
    def broken() -> Generator[Any, Any, None]:
        yield cached("ok", lambda: perform(square, 2))
        raise ValueError("no rows for 2024-05-01")  # RAISED HERE

    return {"sleeper": sleeper, "steady": steady, "counted": counted, "broken": broken}


def worker(db: str, name: str, run_id: str, *args: str) -> int:
    """Run workflow `name` under run_async, recorded as `run_id`; print its outcome as JSON."""
    from doeff import run_async

    with open_storage(db) as storage:
        program = workflows()[name](*map(int, args))
        result = asyncio.run(run_async(program, storage=storage, run_id=run_id))
    print(json.dumps({"ok": result.is_ok(),
                      "error": None if result.is_ok() else type(result.error).__name__}))
    return 0


# -- the test side -----------------------------------------------------------------------------


class CallsAnswer:
    """A machine's driver for tests that run turns by hand: each call answers the future
    `answer(fn, args, kwargs)` gives; no awaits."""

    def __init__(self, answer: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]) -> None:
        self.answer = answer

    def call(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.answer(fn, args, kwargs)

    def await_(self, awaitable: Any) -> Any:
        raise AssertionError("no awaits here")

    def notify(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Any]:
    """A msgpack store on a SQLite file."""
    with open_storage(tmp_path / "wf.db") as store:
        yield store


async def await_for(what: str, check: Callable[[], Any]) -> Any:
    """`wait_for` without blocking the loop (the run under test shares it)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(check)
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def asleep(storage: Any, run_id: str) -> Any:
    """The record of `run_id` once it shows the run awaiting at ASLEEP HERE."""
    from doeff.runs import get_run

    record = get_run(storage, run_id)
    if record is None or record.current_effect is None:
        return None
    return record if record.current_effect.type == "Await" else None


def test_a_recorded_run_keeps_its_record_with_the_stack_where_it_awaits(storage: Any) -> None:
    """While the run awaits, its record is "running" with the Await as its effect and a K stack
    at this file's line; at the end it is "completed" with every step, in order."""
    from doeff import run_async
    from doeff.runs import cancel_run, get_run

    async def main() -> tuple[Any, Any]:
        task = asyncio.ensure_future(run_async(workflows()["sleeper"](3), storage=storage,
                                               run_id="async-1"))
        seen = await await_for("the run to await", lambda: asleep(storage, "async-1"))
        await asyncio.to_thread(cancel_run, storage, "async-1")
        return seen, await task

    seen, result = asyncio.run(main())
    assert seen.status == "running" and seen.pid == os.getpid()
    lines = [(f.function, f.line) for f in seen.tasks[0].k_stack if f.file == str(HERE)]
    assert lines == [("sleeper", line_of("ASLEEP HERE"))]
    assert [(s.key, s.outcome) for s in seen.steps] == [
        ("s:0", "computed"), ("s:1", "computed"), ("s:2", "computed")]
    assert result.is_err()

    async def finish() -> Any:
        return await run_async(workflows()["counted"](3), storage=storage, run_id="async-2")

    assert asyncio.run(finish()).value == 0 + 1 + 4
    done = get_run(storage, "async-2")
    assert done is not None and done.status == "completed" and done.error is None
    assert done.ended_at is not None and done.step_count > 0
    assert [(s.key, s.outcome) for s in done.steps] == [
        ("c:0", "computed"), ("c:1", "computed"), ("c:2", "computed")]
    assert sorted(storage.keys()) == ["c:0", "c:1", "c:2", "s:0", "s:1", "s:2"]


def test_a_failed_run_records_its_error_and_traceback(storage: Any) -> None:
    """The record of a failing run_async run holds the error and a doeff traceback pointing at
    the raise in this file."""
    from doeff import run_async
    from doeff.runs import get_run

    result = asyncio.run(run_async(workflows()["broken"](), storage=storage, run_id="bad"))
    assert result.is_err() and isinstance(result.error, ValueError)
    record = get_run(storage, "bad")
    assert record is not None and record.status == "failed" and record.error is not None
    assert record.error.type == "ValueError" and "2024-05-01" in record.error.message
    assert f'File "{HERE}", line {line_of("RAISED HERE")}, in broken' in record.error.traceback
    assert [s.key for s in record.steps] == ["ok"]


def test_a_cancel_from_another_thread_lands_in_the_await(storage: Any) -> None:
    """cancel_run while the run awaits an hour-long sleep ends it with CancellationError at that
    await (the sleep is cancelled, not waited out), and the record ends "failed"."""
    from doeff import run_async
    from doeff.errors import CancellationError
    from doeff.runs import cancel_run, get_run

    async def main() -> Any:
        task = asyncio.ensure_future(run_async(workflows()["sleeper"](1), storage=storage,
                                               run_id="to-cancel"))
        await await_for("the run to await", lambda: asleep(storage, "to-cancel"))
        threading.Thread(target=cancel_run, args=(storage, "to-cancel")).start()
        return await asyncio.wait_for(task, TIMEOUT)

    result = asyncio.run(main())
    assert isinstance(result.error, CancellationError)
    record = get_run(storage, "to-cancel")
    assert record is not None and record.status == "failed"
    assert record.error is not None and record.error.type == "CancellationError"
    assert str(HERE) in record.error.traceback


def test_a_pause_holds_the_run_in_an_await_while_the_loop_goes_on(storage: Any) -> None:
    """pause_run stops the run (record "paused", its step count still) while another asyncio
    task on the same loop keeps ticking; resume_run lets it finish."""
    from doeff import run_async
    from doeff.runs import cancel_run, get_run, pause_run, resume_run

    def status(want: str) -> Any:
        record = get_run(storage, "paused")
        return record if record is not None and record.status == want else None

    async def main() -> tuple[Any, Any, int, Any]:
        # A run that held the loop itself while paused would starve this coroutine: then the
        # watchdog's cancel ends it, and the test fails on what it saw instead of hanging.
        watchdog = threading.Timer(TIMEOUT, lambda: cancel_run(storage, "paused"))
        watchdog.daemon = True
        watchdog.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        beat = asyncio.ensure_future(ticker())
        task = asyncio.ensure_future(run_async(workflows()["steady"](150), storage=storage,
                                               run_id="paused"))
        await await_for("steps", lambda: (r := get_run(storage, "paused")) and len(r.steps) > 3)
        await asyncio.to_thread(pause_run, storage, "paused")
        held = await await_for("the pause", lambda: status("paused"))
        before = ticks

        def beat_after(since: float) -> Any:
            record = status("paused")
            return record if record is not None and record.heartbeat_at > since else None

        later = held
        for _ in range(3):  # three heartbeats later it is still where it stopped
            later = await await_for("a later heartbeat",
                                    functools.partial(beat_after, later.heartbeat_at))
        during = ticks - before
        await asyncio.to_thread(resume_run, storage, "paused")
        result = await asyncio.wait_for(task, TIMEOUT)
        watchdog.cancel()
        beat.cancel()
        return held, later, during, result

    held, later, during, result = asyncio.run(main())
    assert later.step_count == held.step_count and len(later.steps) == len(held.steps)
    assert "steady" in [f.function for f in later.tasks[0].k_stack]  # where it stopped
    assert during > 10  # the loop ran the ticker all along (a blocked loop would not tick)
    assert result.value == sum(range(150))
    record = get_run(storage, "paused")
    assert record is not None and record.status == "completed" and len(record.steps) == 150


def test_a_pause_frees_the_loop_even_from_a_run_that_never_awaits(storage: Any) -> None:
    """A run that computes without a single await holds the loop between its steps; paused
    from another thread it stops at a step boundary, the loop's other tasks run meanwhile, and
    a cancel while it is paused ends it there."""
    from doeff import do, run_async
    from doeff.effects import get, put
    from doeff.errors import CancellationError
    from doeff.runs import cancel_run, get_run, pause_run

    # Counts until stopped: only the pause and the cancel end it, or, if they fail to, the
    # watchdog (so a broken pause or cancel fails the test instead of hanging it).
    stop = threading.Event()

    @do
    def busy() -> Generator[Any, Any, int]:
        while not stop.is_set():
            yield put("n", (yield get("n")) + 1)
        return int((yield get("n")))

    ticked = threading.Event()
    seen: list[Any] = []

    def steer() -> None:
        wait_for("the run", lambda: (r := get_run(storage, "busy")) and r.status == "running")
        pause_run(storage, "busy")
        try:
            # Only a run that lets go of the loop lets the ticker run.
            wait_for("the ticker", ticked.is_set)
            first = wait_for("the pause", lambda: (r := get_run(storage, "busy"))
                             and r.status == "paused" and r)
            seen.append(first)
            seen.append(wait_for("a later heartbeat", lambda: (
                (r := get_run(storage, "busy")) and r.heartbeat_at > first.heartbeat_at and r)))
        finally:
            cancel_run(storage, "busy")  # so that a failing test ends too

    async def main() -> Any:
        async def ticker() -> None:
            ticked.set()

        steering = threading.Thread(target=steer)
        steering.start()
        watchdog = threading.Timer(3 * TIMEOUT, stop.set)
        watchdog.start()
        try:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(ticker()))
            return await run_async(busy(), state={"n": 0}, storage=storage, run_id="busy")
        finally:
            watchdog.cancel()
            steering.join()

    result = asyncio.run(main())
    assert [r.status for r in seen] == ["paused", "paused"]
    assert seen[0].step_count == seen[1].step_count  # held where it stopped
    assert isinstance(result.error, CancellationError)
    assert result.state["n"] > 0 and not stop.is_set()
    record = get_run(storage, "busy")
    assert record is not None and record.status == "failed"


def test_a_turn_that_ends_past_the_budget_ends_proceed() -> None:
    """Machine.proceed(1) returns YIELD after a turn that leaves a task ready, also when that
    turn was not its first (the first one blocked, news woke the task): so a pause that ends
    a turn (the control's hook preempting) is always seen by run_async before another step."""
    import concurrent.futures

    from doeff import do
    from doeff.cesk.machine import YIELD
    from doeff.cesk.scheduler import PREEMPT
    from doeff.effects import get, perform
    from doeff.runners import build_machine

    def done(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))  # completed by the time it is started
        return future

    @do
    def program() -> Generator[Any, Any, int]:
        yield perform(square, 3)  # turn 1 blocks here; its completion is news at once
        for _ in range(100):
            yield get("x")
        return 0

    m = build_machine(state={"x": 1}, async_mode=True)
    m.driver = CallsAnswer(done)
    m.set_hook("control", lambda steps, effect: PREEMPT)  # every step ends the turn
    m.begin(program())
    assert m.proceed(1) is YIELD
    assert m.steps <= 3


def test_a_hold_while_every_task_waits_ends_proceed_before_news_is_taken_in() -> None:
    """When the control holds the machine at an idle boundary (every task waits), proceed
    returns WAIT at once, even if a call completed just then: the woken task takes no step
    while the run is held."""
    import concurrent.futures

    from doeff import do
    from doeff.cesk.machine import WAIT
    from doeff.cesk.scheduler import PREEMPT
    from doeff.effects import get, perform
    from doeff.runners import build_machine

    pending: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def hold_when_idle(steps: int, effect: Any) -> Any:
        if effect is None and not pending.done():
            pending.set_result(9)  # news arrives as the machine holds
            return PREEMPT
        return None

    @do
    def program() -> Generator[Any, Any, int]:
        value = yield perform(square, 3)
        return int(value + (yield get("x")))

    m = build_machine(state={"x": 1}, async_mode=True)
    m.driver = CallsAnswer(lambda *_: pending)  # completes when the test says so
    m.set_hook("control", hold_when_idle)
    m.begin(program())
    assert m.proceed(1) is WAIT
    assert m.root.status == "blocked" and pending.done()
    m.set_hook("control", None)
    assert m.proceed(1).value == 10  # released: the news is taken in and the run goes on


def test_a_held_machine_takes_no_turn_whatever_is_ready() -> None:
    """While `Machine.held` (a pause holds a run on a loop), proceed returns WAIT without a
    step even with a task ready; released, the run goes on from there."""
    from doeff import do
    from doeff.cesk.machine import WAIT
    from doeff.effects import get
    from doeff.runners import build_machine

    @do
    def program() -> Generator[Any, Any, int]:
        return int((yield get("x")) + 1)

    m = build_machine(state={"x": 1}, async_mode=True)
    m.begin(program())
    m.held = True
    assert m.proceed(1) is WAIT and m.proceed() is WAIT
    assert m.steps == 0 and m.root.status == "ready"
    m.held = False
    assert m.proceed(1).value == 2


@pytest.mark.parametrize("runner", ["run_async", "run_sync"])
def test_a_pause_landing_as_a_task_blocks_holds_a_task_woken_in_that_turn(
        storage: Any, runner: str) -> None:
    """A pause that lands in the step where the running task blocks holds the whole run, also
    when another task is woken off the loop during that same turn (here: cancelled from another
    thread): while the record says "paused" the woken task takes no step, and it takes its
    cancel once the run is resumed. (run_sync holds its thread in the pause; run_async, which
    must not, ends the turn and must start no other.)"""
    import concurrent.futures

    from doeff import do, run_async, run_sync
    from doeff.effects import await_, perform, spawn, wait
    from doeff.errors import CancellationError
    from doeff.runs import get_run, pause_run, pending_request, resume_run

    ran: list[str] = []  # what the woken task did (a step of its): only after the resume

    class OnTheSpot(concurrent.futures.Executor):
        """Runs a call at once, on the thread that submits it: the machine's, inside the step
        in which the calling task blocks. What the call does there (a pause taken, a task
        cancelled) is what another thread may do at that instant; here it is that instant."""

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            future.set_result(fn(*args, **kwargs))
            return future

    def pause_then_cancel(victim: Any) -> str:
        pause_run(storage, "pinned")
        # The heartbeat thread takes the request and pauses the run: the machine, blocked here,
        # meets the pause at the end of this very step.
        wait_for("the pause to be taken", lambda: pending_request(storage, "pinned") is None)
        victim.cancel()  # woken off the loop: the cancel ends its wait in this same turn
        return "asked"

    @do
    def forever() -> Generator[Any, Any, None]:
        yield await_(asyncio.sleep(3600))

    @do
    def waiter(other: Any) -> Generator[Any, Any, None]:
        try:
            yield wait(other)
        except CancellationError:
            ran.append("took its cancel")
            raise

    @do
    def main() -> Generator[Any, Any, str]:
        sleeper = yield spawn(forever())
        victim = yield spawn(waiter(sleeper))
        yield await_(asyncio.sleep(0))  # both children run and block meanwhile
        asked = yield perform(pause_then_cancel, victim)  # the pause lands as this blocks
        return str(asked)

    def paused() -> Any:
        record = get_run(storage, "pinned")
        return record if record is not None and record.status == "paused" else None

    async def run() -> tuple[list[str], Any, Any, Any]:
        if runner == "run_async":
            task = asyncio.ensure_future(run_async(main(), storage=storage, run_id="pinned",
                                                   executor=OnTheSpot()))
        else:
            task = asyncio.ensure_future(asyncio.to_thread(
                run_sync, main(), storage=storage, run_id="pinned", executor=OnTheSpot()))
        held = await await_for("the pause", paused)
        seen = list(ran)
        later = await await_for("a later heartbeat", lambda: (
            (r := paused()) and r.heartbeat_at > held.heartbeat_at and r))
        during = list(ran)
        await asyncio.to_thread(resume_run, storage, "pinned")
        return seen + during, held, later, await asyncio.wait_for(task, TIMEOUT)

    while_paused, held, later, result = asyncio.run(run())
    assert while_paused == []  # no task took a step while the run was paused
    assert later.step_count == held.step_count
    assert result.value == "asked"
    assert ran == ["took its cancel"]  # after the resume, from where it was held
    record = get_run(storage, "pinned")
    assert record is not None and record.status == "completed"


def test_cancelling_the_asyncio_task_ends_the_record_failed(storage: Any) -> None:
    """task.cancel() on the task running run_async raises CancelledError in its awaiter, as
    without a record, and the record ends "failed" with that error."""
    from doeff import run_async
    from doeff.runs import get_run

    async def main() -> None:
        task = asyncio.ensure_future(run_async(workflows()["sleeper"](2), storage=storage,
                                               run_id="task-cancelled"))
        await await_for("the run to await", lambda: asleep(storage, "task-cancelled"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    record = get_run(storage, "task-cancelled")
    assert record is not None and record.status == "failed"
    assert record.error is not None and record.error.type == "CancelledError"
    assert record.ended_at is not None


def test_cancelling_the_asyncio_task_of_a_paused_run_ends_it(storage: Any) -> None:
    """A paused run awaits its resume; cancelling its asyncio task then ends it as ever
    (CancelledError in the awaiter, the record "failed"), not left paused."""
    from doeff import run_async
    from doeff.runs import get_run, pause_run

    async def main() -> None:
        task = asyncio.ensure_future(run_async(workflows()["sleeper"](1), storage=storage,
                                               run_id="paused-then-cancelled"))
        await await_for("the run to await", lambda: asleep(storage, "paused-then-cancelled"))
        await asyncio.to_thread(pause_run, storage, "paused-then-cancelled")
        await await_for("the pause", lambda: (r := get_run(storage, "paused-then-cancelled"))
                        and r.status == "paused")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(main())
    record = get_run(storage, "paused-then-cancelled")
    assert record is not None and record.status == "failed"
    assert record.error is not None and record.error.type == "CancelledError"


def test_a_tracer_gets_a_span_for_the_run_and_each_step(storage: Any) -> None:
    """With tracer= (with or without run_id=), run_async emits the run's span and a span per
    step under it, with the step's outcome; a second run reads the steps back as hits."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from doeff import run_async

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("doeff-tests")
    try:
        for run_id in (None, "traced"):  # spans alone, then spans and a record
            result = asyncio.run(run_async(workflows()["counted"](2), storage=storage,
                                           tracer=tracer, run_id=run_id))
            assert result.value == 1
        spans = exporter.get_finished_spans()
    finally:
        provider.shutdown()
    runs = [s for s in spans if s.name.endswith(".counted") and s.name.startswith("doeff run ")]
    steps = [s for s in spans if s.name.startswith("doeff step ")]
    assert len(runs) == 2 and len(steps) == 4
    assert [(r.attributes or {}).get("run.id") for r in runs] == [None, "traced"]
    outcomes = [(s.name, s.attributes["step.outcome"] if s.attributes else None) for s in steps]
    assert outcomes == [("doeff step c:0", "computed"), ("doeff step c:1", "computed"),
                        ("doeff step c:0", "hit"), ("doeff step c:1", "hit")]
    parents = {r.context.span_id for r in runs if r.context is not None}
    assert all(s.parent is not None and s.parent.span_id in parents for s in steps)


# -- other processes -----------------------------------------------------------------------------


def start(db: Path, name: str, run_id: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, str(HERE), str(db), name, run_id, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_killed_async_worker_shows_as_lost_where_it_awaited(tmp_path: Path) -> None:
    """A worker process awaits in run_async; after SIGKILL its run reads "lost", with the Await
    and the K stack at this file's line from its last heartbeat."""
    from doeff.runs import get_run

    db = tmp_path / "wf.db"
    proc = start(db, "sleeper", "killed", "2")
    try:
        with open_storage(db) as storage:
            wait_for("the worker to await", lambda: asleep(storage, "killed"))
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT)
            lost = get_run(storage, "killed")
            assert lost is not None and lost.status == "lost"
            assert "has exited" in (lost.lost_reason or "")
            assert lost.current_effect is not None and lost.current_effect.type == "Await"
            lines = [f.line for f in lost.tasks[0].k_stack if f.file == str(HERE)]
            assert lines == [line_of("ASLEEP HERE")]
            assert [s.key for s in lost.steps] == ["s:0", "s:1"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


def test_a_cancel_from_another_process_ends_the_async_worker(tmp_path: Path) -> None:
    """`doeff runs cancel` from another process lands in the worker's hour-long await: the
    worker's run_async returns CancellationError and its record ends "failed"."""
    from doeff.runs import get_run

    db = tmp_path / "wf.db"
    proc = start(db, "sleeper", "remote", "1")
    try:
        with open_storage(db) as storage:
            wait_for("the worker to await", lambda: asleep(storage, "remote"))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            cancel = subprocess.run([sys.executable, "-m", "doeff", "runs", "cancel", str(db),
                                     "remote"], capture_output=True, text=True,
                                    timeout=TIMEOUT, env=env)
            assert cancel.returncode == 0, cancel.stderr
            out, err = proc.communicate(timeout=TIMEOUT)
            assert json.loads(out.strip().splitlines()[-1]) == {
                "ok": False, "error": "CancellationError"}, err
            record = get_run(storage, "remote")
            assert record is not None and record.status == "failed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


if __name__ == "__main__":
    sys.exit(worker(*sys.argv[1:]))
