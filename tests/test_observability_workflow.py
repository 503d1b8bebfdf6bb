"""Background workflows: the monitor under concurrent readers; pause, cancel."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any
from unittest import mock

import pytest

from doeff import do, run_sync, run_workflow
from doeff.cesk_observability import ExecutionSnapshot, WorkflowExecution
from doeff.effects import (
    Get,
    Perform,
    Put,
    cacheget,
    cacheput,
    catch,
    get,
    local,
    perform,
    put,
    safe,
    tell,
)
from doeff.errors import CancelledError

HERE = os.path.abspath(__file__)
with open(HERE) as _source:
    _LINES = _source.read().splitlines()

PATIENCE = 30.0  # seconds: only a hang would take this long; nothing asserts on time


def line(tag: str) -> int:
    """The line number of the source line ending with the comment `# @tag`."""
    found = [n for n, text in enumerate(_LINES, 1) if text.rstrip().endswith(f"# @{tag}")]
    assert len(found) == 1, tag
    return found[0]


def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (failing only if it never does, i.e. a hang)."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


@do
def until_set(stop: threading.Event) -> Generator[Any, Any, int]:
    """Count get/put rounds until `stop` is set; each round also parks in a perform."""
    rounds = 0
    while not (yield perform(stop.is_set)):  # @until-perform
        v = yield get("n", 0)  # @until-get
        yield put("n", v + 1)
        rounds += 1
    return rounds


@do
def blocked_on(gate: threading.Event) -> Generator[Any, Any, str]:
    yield tell("before")
    yield perform(gate.wait)  # @blocked-perform
    return "through"


def test_status_is_pending_before_the_first_step() -> None:
    """Until the workflow thread starts, status and snapshot say "pending"."""
    with mock.patch.object(threading.Thread, "start"):
        execution = run_workflow(blocked_on(threading.Event()))
    assert execution.monitor.status == "pending"
    snap = execution.monitor.snapshot()
    assert (snap.status, snap.step_count, snap.k_stack, snap.current_effect) == (
        "pending", 0, (), None)
    assert execution.result is None and not execution.done


def test_parked_in_a_long_handler_the_monitor_answers_without_waiting() -> None:
    """While a perform blocks, snapshot() reports that effect and the yield waiting on it."""
    gate = threading.Event()
    execution = run_workflow(blocked_on(gate))
    eventually(lambda: isinstance(execution.monitor.current_effect, Perform))
    snap = execution.monitor.snapshot(timeout=None)
    assert snap.status == "running" and snap.step_count == 1
    assert snap.current_effect == perform(gate.wait)
    top = snap.k_stack[0]
    assert top.frame_type == "ReturnFrame" and top.location is not None
    assert (top.location.filename, top.location.lineno) == (HERE, line("blocked-perform"))
    assert execution.monitor.snapshot() is snap  # nothing moved, nothing rebuilt
    assert execution.result is None and not execution.done
    with pytest.raises(TimeoutError):
        execution.wait(timeout=0.01)
    gate.set()
    assert execution.wait(PATIENCE).value == "through"
    assert execution.done and execution.monitor.status == "completed"
    final = execution.monitor.snapshot()
    assert final.status == "completed" and final.step_count == 3


def test_pause_stops_at_a_step_boundary_and_resume_continues() -> None:
    """Paused, the step count stands still and status says "paused"; resumed, the run completes."""
    stop = threading.Event()
    execution = run_workflow(until_set(stop))
    eventually(lambda: execution.monitor.step_count > 20)
    execution.pause()
    eventually(lambda: execution.monitor.status == "paused")
    first = execution.monitor.snapshot()
    second = execution.monitor.snapshot()
    assert first.status == second.status == "paused"
    assert first.step_count == second.step_count
    assert first.k_stack[0].location is not None
    assert first.k_stack[0].location.lineno in {
        line("until-perform"), line("until-get"), line("until-get") + 1}
    execution.resume()
    eventually(lambda: execution.monitor.step_count > first.step_count)
    stop.set()
    result = execution.wait(PATIENCE)
    assert result.value == result.state["n"] > 0


def test_cancel_throws_into_the_program_runs_finally_and_fails_the_run() -> None:
    """Cancel raises CancelledError at the current yield; try/finally runs; catch and safe don't
    stop it; the last snapshot is "failed" with the K that was pending."""
    stop = threading.Event()
    cleaned: list[str] = []

    @do
    def worker() -> Generator[Any, Any, int]:
        try:
            rounds: int = yield until_set(stop)  # @worker-yield
            return rounds
        finally:
            cleaned.append("worker")

    execution = run_workflow(safe(catch(local({"x": 1}, worker()), lambda e: "caught")))
    eventually(lambda: execution.monitor.step_count > 10)
    execution.cancel()
    result = execution.wait(PATIENCE)
    assert isinstance(result.error, CancelledError)
    assert cleaned == ["worker"]
    final = execution.monitor.snapshot()
    assert final.status == "failed" and execution.monitor.status == "failed"
    assert [f.frame_type for f in final.k_stack] == [
        "ReturnFrame", "ReturnFrame", "LocalFrame", "CatchFrame", "SafeFrame"]
    assert final.k_stack[1].location is not None
    assert final.k_stack[1].location.lineno == line("worker-yield")


def test_a_swallowed_cancellation_still_fails_the_run() -> None:
    """A program that catches CancelledError and finishes still ends "failed", cancelled."""
    stop = threading.Event()

    @do
    def stubborn() -> Generator[Any, Any, str]:
        try:
            yield until_set(stop)
        except Exception:  # swallows the cancellation
            pass
        yield put("after", True)
        return "finished anyway"

    execution = run_workflow(stubborn())
    eventually(lambda: execution.monitor.step_count > 10)
    execution.cancel()
    result = execution.wait(PATIENCE)
    assert isinstance(result.error, CancelledError)
    assert "caught the cancellation" in str(result.error)
    assert execution.monitor.status == "failed"


def test_cancel_while_paused_ends_the_run() -> None:
    """A paused workflow can be cancelled; it leaves the pause and fails with CancelledError."""
    stop = threading.Event()
    execution = run_workflow(until_set(stop))
    execution.pause()
    eventually(lambda: execution.monitor.status == "paused")
    execution.cancel()
    assert isinstance(execution.wait(PATIENCE).error, CancelledError)


def test_user_code_busy_between_yields_does_not_hang_the_monitor() -> None:
    """With no step boundary in sight, snapshot() gives the latest snapshot taken, consistently."""
    release = threading.Event()
    entered = threading.Event()

    @do
    def busy() -> Generator[Any, Any, int]:
        yield put("a", 1)
        entered.set()
        release.wait()  # plain Python between two yields: the machine cannot answer
        yield put("a", 2)
        return 2

    execution = run_workflow(busy())
    entered.wait(PATIENCE)
    stale = execution.monitor.snapshot(timeout=0.05)
    again = execution.monitor.snapshot(timeout=0.05)
    assert stale.status == again.status == "running"
    assert stale.step_count <= again.step_count <= 1
    release.set()
    assert execution.wait(PATIENCE).value == 2
    assert execution.monitor.snapshot().step_count == 3


def test_monitor_called_from_inside_the_workflow_does_not_deadlock() -> None:
    """A perform that reads its own workflow's monitor gets the parked snapshot."""
    holder: list[WorkflowExecution[Any]] = []
    ready = threading.Event()

    def look() -> int:
        ready.wait(PATIENCE)
        return holder[0].monitor.snapshot(timeout=None).step_count

    @do
    def introspective() -> Generator[Any, Any, int]:
        yield put("a", 1)
        step_count: int = yield perform(look)
        return step_count

    execution = run_workflow(introspective())
    holder.append(execution)
    ready.set()
    assert execution.wait(PATIENCE).value == 1


def test_get_cache_entries_reads_the_storage() -> None:
    """get_cache_entries returns what the workflow stored."""

    @do
    def stores() -> Generator[Any, Any, None]:
        yield cacheput("a", 1)
        yield cacheput("b", [2])

    execution = run_workflow(stores())
    execution.wait(PATIENCE)
    assert execution.monitor.get_cache_entries() == {"a": 1, "b": [2]}
    assert set(execution.monitor.snapshot().cache_keys) == {"a", "b"}


# -- four readers hammering a 200,000-step run ---------------------------------------


@do
def counted(n: int) -> Generator[Any, Any, int]:
    for _ in range(n):
        v = yield get("k", 0)  # @stress-get
        yield put("k", v + 1)  # @stress-put
    return n


@do
def stress(n: int, ready: threading.Event) -> Generator[Any, Any, int]:
    yield perform(ready.wait, PATIENCE)
    counted_to: int = yield local({"run": "stress"}, counted(n))
    return counted_to


def test_four_threads_polling_a_200000_step_workflow() -> None:
    """Every snapshot is internally consistent (its effect, step count and K agree), step counts
    never go backwards for one reader, nothing raises, and the result is right."""
    # In one step of the loop, effect, step count and K belong together: a Put's value is
    # (step - offset) / 2 and a Get comes one step before its Put. Learn the offset from a run.
    reference: list[ExecutionSnapshot] = []
    started = threading.Event()
    started.set()
    run_sync(stress(2, started), on_step=reference.append)
    first_put = next(s for s in reference if isinstance(s.current_effect, Put))
    offset = first_put.step_count - 2 * first_put.current_effect.value
    shape = ["ReturnFrame", "LocalFrame", "ReturnFrame"]
    n = 100_000
    ready = threading.Event()
    execution = run_workflow(stress(n, ready))
    errors: list[BaseException] = []
    counts = [0] * 4
    barrier = threading.Barrier(5)

    def check(snap: ExecutionSnapshot) -> None:
        effect = snap.current_effect
        if isinstance(effect, Put | Get):
            assert [f.frame_type for f in snap.k_stack] == shape
            top = snap.k_stack[0].location
            assert top is not None
            if isinstance(effect, Put):
                assert snap.step_count - 2 * effect.value == offset
                assert top.lineno == line("stress-put")
            else:
                assert (snap.step_count - offset) % 2 == 1
                assert top.lineno == line("stress-get")

    def reader(index: int) -> None:
        try:
            barrier.wait(PATIENCE)
            last = -1
            while True:
                snap = execution.monitor.snapshot()
                assert snap.step_count >= last
                last = snap.step_count
                check(snap)
                counts[index] += 1
                if snap.status == "completed":
                    return
        except BaseException as err:  # collected and re-raised in the test thread
            errors.append(err)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    barrier.wait(PATIENCE)
    ready.set()
    result = execution.wait(PATIENCE)
    for thread in threads:
        thread.join(PATIENCE)
    assert not errors, errors[0]
    assert result.value == n and result.state["k"] == n
    assert all(count > 0 for count in counts)
    assert execution.monitor.snapshot().step_count == reference[-1].step_count + 2 * (n - 2)


# -- ISSUE-CORE-424's asyncio monitoring example, as written -------------------------------------


@do
def my_workflow() -> Generator[Any, Any, int]:
    result: int | None = yield cacheget("expensive_step")
    if result is None:
        result = yield perform(sum, range(10))
        yield cacheput("expensive_step", result)
    for _ in range(1000):
        yield get("tick")
    return result


def test_the_feature_requests_asyncio_monitoring_example_runs(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_with_monitoring` from ISSUE-CORE-424 runs unchanged and returns the result."""
    from doeff.storage.sqlite import SQLiteStorage

    monkeypatch.chdir(tmp_path)

    async def run_with_monitoring() -> Any:
        execution = run_workflow(
            my_workflow(),
            storage=SQLiteStorage("workflow.db"),
        )

        # Monitor in background while executing
        while execution.result is None:
            snapshot = execution.monitor.snapshot()
            print(f"Status: {snapshot.status}, K depth: {len(snapshot.k_stack)}")
            await asyncio.sleep(0.1)

        return execution.result

    result = asyncio.run(run_with_monitoring())
    assert result.value == 45
    assert "Status: " in capsys.readouterr().out
    with SQLiteStorage(tmp_path / "workflow.db") as store:
        assert store.get("expensive_step") == 45


def test_an_execution_can_be_awaited() -> None:
    """`await execution` returns the CESKResult without blocking the event loop."""
    gate = threading.Event()

    async def main() -> Any:
        execution = run_workflow(blocked_on(gate))
        asyncio.get_running_loop().call_later(0.01, gate.set)
        return await execution

    assert asyncio.run(main()).value == "through"


def test_on_step_keeps_seeing_every_step_while_the_monitor_is_polled() -> None:
    """A workflow's on_step sees steps 1..N in order and the final snapshot, polls or not."""
    seen: list[ExecutionSnapshot] = []
    ready = threading.Event()
    execution = run_workflow(stress(2_000, ready), on_step=seen.append)
    ready.set()
    while not execution.done:
        execution.monitor.snapshot()
    result = execution.wait(PATIENCE)
    assert result.value == 2_000
    steps = [s.step_count for s in seen]
    assert steps[:-1] == list(range(1, len(steps))) and steps[-1] == steps[-2]
    assert seen[-1].status == "completed"
