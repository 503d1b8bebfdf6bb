"""Snapshots and `on_step`: k_stack matches K frame for frame."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Iterable
from typing import Any

import pytest

from doeff import do, run_async, run_sync
from doeff.cesk.frames import ReturnFrame
from doeff.cesk.machine import Machine
from doeff.cesk.traceback import is_internal
from doeff.cesk_observability import ExecutionSnapshot, KFrameSnapshot, attach_on_step
from doeff.effects import (
    Tell,
    ask,
    await_,
    cached,
    cacheput,
    catch,
    finally_,
    gather,
    get,
    listen,
    local,
    put,
    safe,
    tell,
)
from doeff.runners import build_machine

HERE = os.path.abspath(__file__)
with open(HERE) as _source:
    _LINES = _source.read().splitlines()


def line(tag: str) -> int:
    """The line number of the source line ending with the comment `# @tag`."""
    found = [n for n, text in enumerate(_LINES, 1) if text.rstrip().endswith(f"# @{tag}")]
    assert len(found) == 1, tag
    return found[0]


class DictStorage:
    """A minimal DurableStorage over a dict that counts calls to `keys()`."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.keys_calls = 0

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def exists(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> Iterable[str]:
        self.keys_calls += 1
        return list(self.data)

    def items(self) -> Iterable[tuple[str, Any]]:
        return list(self.data.items())

    def clear(self) -> None:
        self.data.clear()


def probes(snapshots: list[ExecutionSnapshot], name: str) -> list[ExecutionSnapshot]:
    """The snapshots taken at the step that handled `tell(name)`."""
    return [s for s in snapshots
            if isinstance(s.current_effect, Tell) and s.current_effect.message == name]


def shape(k_stack: tuple[KFrameSnapshot, ...]) -> list[tuple[str, int | None, str]]:
    """(frame type, line, description) per frame, checking each location is in this file."""
    out = []
    for frame in k_stack:
        if frame.location is not None:
            assert frame.location.filename == HERE
        out.append((frame.frame_type, frame.location.lineno if frame.location else None,
                    frame.description))
    return out


# -- programs with known lines -----------------------------------------------------------------


def on_error(exc: BaseException) -> int:
    return -1


@do
def inner() -> Generator[Any, Any, int]:
    user: str = yield ask("user")
    yield tell("probe-inner")  # @inner-probe
    return len(user)


@do
def middle() -> Generator[Any, Any, int]:
    value: int = yield local({"user": "ada"}, inner())  # @middle-local
    return value


@do
def outer() -> Generator[Any, Any, int]:
    result: int = yield catch(middle(), on_error)  # @outer-catch
    return result


def test_k_stack_inside_nested_local_and_catch() -> None:
    """At a known yield inside local inside catch, k_stack lists each K frame with its user line."""
    snaps: list[ExecutionSnapshot] = []
    assert run_sync(outer(), on_step=snaps.append).value == 3
    [probe] = probes(snaps, "probe-inner")
    name = os.path.basename(HERE)
    assert shape(probe.k_stack) == [
        ("ReturnFrame", line("inner-probe"), f"inner() waiting at {name}:{line('inner-probe')}"),
        ("LocalFrame", line("middle-local"), "local {'user': 'ada'}"),
        ("ReturnFrame", line("middle-local"),
         f"middle() waiting at {name}:{line('middle-local')}"),
        ("CatchFrame", line("outer-catch"), "catch -> on_error"),
        ("ReturnFrame", line("outer-catch"), f"outer() waiting at {name}:{line('outer-catch')}"),
    ]
    assert probe.status == "running"
    assert probe.k_stack[0].location is not None
    assert probe.k_stack[0].location.code == 'yield tell("probe-inner")  # @inner-probe'


@do
def body() -> Generator[Any, Any, int]:
    yield tell("probe-body")  # @body-probe
    return 7


@do
def cleanup() -> Generator[Any, Any, None]:
    yield tell("probe-cleanup")  # @cleanup-probe


@do
def guarded() -> Generator[Any, Any, int]:
    value: int = yield finally_(body(), cleanup())  # @guarded-finally
    return value


def test_k_stack_inside_finally_body_and_cleanup() -> None:
    """In the body K holds a FinallyFrame; in the cleanup, the ResumeFrame restoring the value."""
    snaps: list[ExecutionSnapshot] = []
    assert run_sync(guarded(), on_step=snaps.append).value == 7
    [in_body] = probes(snaps, "probe-body")
    [in_cleanup] = probes(snaps, "probe-cleanup")
    at = line("guarded-finally")
    assert [(t, n) for t, n, _ in shape(in_body.k_stack)] == [
        ("ReturnFrame", line("body-probe")), ("FinallyFrame", at), ("ReturnFrame", at)]
    assert in_body.k_stack[1].description.startswith("finally -> <Program")
    assert shape(in_cleanup.k_stack)[:2] == [
        ("ReturnFrame", line("cleanup-probe"),
         f"cleanup() waiting at {os.path.basename(HERE)}:{line('cleanup-probe')}"),
        ("ResumeFrame", at, "after cleanup: resume with saved value"),
    ]
    assert [t for t, _, _ in shape(in_cleanup.k_stack)] == [
        "ReturnFrame", "ResumeFrame", "ReturnFrame"]


@do
def compute_rows() -> Generator[Any, Any, list[int]]:
    yield tell("probe-compute")  # @compute-probe
    return [1, 2]


@do
def delegated() -> Generator[Any, Any, int]:
    yield tell("probe-delegated")  # @delegated-probe
    return 1


@do
def uses_helpers() -> Generator[Any, Any, int]:
    rows = yield cached("rows", compute_rows)  # @user-cached
    one = yield from delegated()  # @user-yield-from
    return len(rows) + one


def test_doeff_helper_frames_point_at_the_users_line() -> None:
    """`cached` runs as its own frame, located where the user yielded it; `yield from` shows the
    innermost user line."""
    snaps: list[ExecutionSnapshot] = []
    assert run_sync(uses_helpers(), on_step=snaps.append).value == 3
    [probe] = probes(snaps, "probe-compute")
    rows = shape(probe.k_stack)
    assert [(t, n) for t, n, _ in rows] == [
        ("ReturnFrame", line("compute-probe")),
        ("CacheFillFrame", line("user-cached")),
        ("ReturnFrame", line("user-cached")),
        ("ReturnFrame", line("user-cached")),
    ]
    assert rows[1][2] == "cached 'rows': store the value"
    assert rows[2][2].startswith("_cached() (doeff), called at")
    [probe] = probes(snaps, "probe-delegated")
    assert [(t, n) for t, n, _ in shape(probe.k_stack)] == [
        ("ReturnFrame", line("delegated-probe"))]
    for snap in snaps:
        for frame in snap.k_stack:
            assert frame.location is None or not is_internal(frame.location.filename)


# -- every step, against the live machine --------------------------------------------------------


@do
def fails() -> Generator[Any, Any, None]:
    yield tell("about to fail")
    raise ValueError("caught later")


@do
def worker(n: int) -> Generator[Any, Any, int]:
    for _ in range(n):
        v = yield get("k", 0)
        yield put("k", v + 1)
    return n


@do
def everything() -> Generator[Any, Any, Any]:
    a = yield catch(fails(), on_error)
    b = yield local({"user": "grace"}, finally_(worker(3), tell("cleaned")))
    c, log = yield listen(gather(worker(2), safe(fails()), inner()))
    d = yield cached("key", lambda: worker(2))
    e = yield from worker(2)
    yield cacheput("done", True)
    return a, b, c, log, d, e


def live_k(K: list[Any]) -> list[tuple[str, int | None, str | None]]:
    """What a k_stack must say, read straight from a K: types, suspended lines, descriptions."""
    out: list[tuple[str, int | None, str | None]] = []
    for frame in reversed(K):
        lineno = None
        text = None
        if isinstance(frame, ReturnFrame):
            gen, gen_frame = frame.gen, frame.gen.gi_frame
            if (gen.gi_suspended and gen_frame is not None and gen.gi_yieldfrom is None
                    and not is_internal(gen.gi_code.co_filename)):
                lineno = gen_frame.f_lineno
                text = frame.describe()
        else:
            text = frame.describe()
        out.append((type(frame).__name__, lineno, text))
    return out


Live = dict[int, list[tuple[str, int | None, str | None]]]


def live_view(m: Machine) -> Live:
    """Every live task's K as its TaskSnapshot must show it (the main task is task 0)."""
    return {task.task_id: live_k(task.K) for task in m.live_tasks()}


def reduced(k_stack: tuple[Any, ...], like: list[tuple[str, int | None, str | None]]
            ) -> list[Any]:
    """A k_stack reduced to what `live_k` could check (frame for frame: same length)."""
    out = []
    for frame, (_, lineno, text) in zip(k_stack, like, strict=True):
        loc_line = frame.location.lineno if frame.location is not None and lineno else None
        out.append((frame.frame_type, loc_line, frame.description if text else None))
    return out


def view(snap: ExecutionSnapshot, like: Live) -> Live:
    """The snapshot's main k_stack and every task's, reduced like `like`."""
    assert [t.task_id for t in snap.tasks] == list(like)
    assert snap.tasks[0].k_stack == snap.k_stack
    return {t.task_id: reduced(t.k_stack, like[t.task_id]) for t in snap.tasks}


def test_every_snapshot_matches_the_live_k_then_and_later() -> None:
    """At every step each task's k_stack equals its K frame for frame (the main task's is the
    snapshot's own), and still does when read after the run."""
    m = build_machine(env={"user": "x"}, state=None, handlers=None, storage=DictStorage(),
                      async_mode=False)
    seen: list[tuple[ExecutionSnapshot, Live]] = []
    kinds: set[str] = set()
    most_tasks = 0

    def check(snap: ExecutionSnapshot) -> None:
        nonlocal most_tasks
        if snap.status == "completed":
            return
        expected = live_view(m)
        assert view(snap, expected) == expected
        assert snap.step_count == len(seen) + 1
        kinds.update(t for frames in expected.values() for t, _, _ in frames)
        most_tasks = max(most_tasks, len(snap.tasks))
        seen.append((snap, expected))

    observer = attach_on_step(m, check)
    result = observer.finish(m.run(everything()))
    assert result.is_ok(), result.error  # an assertion failing in `check` ends the run
    assert {"CatchFrame", "LocalFrame", "FinallyFrame", "ResumeFrame", "ListenFrame",
            "GatherFrame", "SafeFrame", "ReturnFrame", "CacheFillFrame"} <= kinds
    assert most_tasks == 4  # the main task and gather's three
    # Again, reading each snapshot only after the run, when every generator has moved on.
    m2 = build_machine(env={"user": "x"}, state=None, handlers=None, storage=DictStorage(),
                       async_mode=False)
    late: list[tuple[ExecutionSnapshot, Live]] = []
    attach_on_step(m2, lambda snap: late.append((snap, live_view(m2))))
    assert m2.run(everything()).is_ok()
    assert len(late) == len(seen)
    for snap, expected in late:
        assert view(snap, expected) == expected


def test_gather_progress_is_kept_per_snapshot() -> None:
    """A GatherFrame's description is its progress at that step, not at the time of reading."""
    snaps: list[ExecutionSnapshot] = []
    run_sync(gather(worker(1), worker(1), worker(1)), on_step=snaps.append)
    texts = {f.description for s in snaps for f in s.k_stack if f.frame_type == "GatherFrame"}
    assert texts == {"gather (0/3 done)", "gather (1/3 done)", "gather (2/3 done)"}


# -- on_step: called at each step, last snapshot completed/failed ---------------------------------


def test_on_step_is_called_once_per_step_then_with_the_final_snapshot() -> None:
    """A program yielding k effects takes k+1 steps: on_step sees steps 1..k+1, then "completed"."""
    snaps: list[ExecutionSnapshot] = []
    assert run_sync(worker(5), on_step=snaps.append).value == 5
    assert [s.step_count for s in snaps] == [*range(1, 12), 11]
    assert [s.status for s in snaps] == ["running"] * 11 + ["completed"]
    assert snaps[-1].k_stack == () and snaps[-1].current_effect is None
    assert snaps[0].current_effect == get("k", 0)


def test_run_async_reports_steps_and_the_final_snapshot() -> None:
    """`run_async` feeds on_step too, and its last snapshot says "completed"."""

    @do
    def waits() -> Generator[Any, Any, int]:
        x: int = yield await_(asyncio.sleep(0, result=4))
        y: int = yield get("k", 1)
        return x + y

    snaps: list[ExecutionSnapshot] = []
    assert asyncio.run(run_async(waits(), on_step=snaps.append)).value == 5
    assert snaps[-1].status == "completed"
    assert snaps[-1].step_count == 3
    assert [s.step_count for s in snaps[:-1]] == [1, 2, 3]
    # the step that reaches the await is reported before the machine leaves to await it
    assert type(snaps[0].current_effect).__name__ == "Await"


# -- failures --------------------------------------------------------------------------------------


@do
def explode() -> Generator[Any, Any, None]:
    yield tell("about to fail")
    raise ValueError("boom")  # @explode-raise


@do
def careful() -> Generator[Any, Any, None]:
    yield local({"k": 1}, explode())  # @careful-local


def test_failed_snapshot_shows_the_k_pending_at_the_error() -> None:
    """A failed run's last snapshot is "failed" and lists K as it was when the error appeared."""
    snaps: list[ExecutionSnapshot] = []
    result = run_sync(careful(), on_step=snaps.append)
    assert isinstance(result.error, ValueError)
    last = snaps[-1]
    assert last.status == "failed"
    name = os.path.basename(HERE)
    assert shape(last.k_stack) == [
        ("ReturnFrame", line("explode-raise"),
         f"explode() raised at {name}:{line('explode-raise')}"),
        ("LocalFrame", line("careful-local"), "local {'k': 1}"),
        ("ReturnFrame", line("careful-local"),
         f"careful() waiting at {name}:{line('careful-local')}"),
    ]


def test_a_raising_callback_ends_the_run_failed_with_its_exception() -> None:
    """The callback's exception becomes the run's error; finally blocks run; no more calls."""
    cleaned: list[bool] = []
    calls: list[int] = []
    error = RuntimeError("observer broke")

    @do
    def long() -> Generator[Any, Any, int]:
        try:
            for _ in range(100):
                yield get("k")
        finally:
            cleaned.append(True)
        return 1

    def callback(snap: ExecutionSnapshot) -> None:
        calls.append(snap.step_count)
        if snap.step_count == 5:
            raise error

    result = run_sync(long(), on_step=callback)
    assert result.error is error
    assert cleaned == [True]
    assert calls == [1, 2, 3, 4, 5]


def test_a_raising_callback_runs_finally_effects_and_passes_catch_and_safe() -> None:
    """After the callback raises, finally_ cleanups run, while catch and safe do not stop it."""
    error = RuntimeError("observer broke")

    @do
    def loop() -> Generator[Any, Any, int]:
        for _ in range(100):
            yield get("k")
        return 1

    def callback(snap: ExecutionSnapshot) -> None:
        if snap.step_count == 10:
            raise error

    program = safe(catch(finally_(loop(), tell("cleanup ran")), lambda e: "caught"))
    result = run_sync(program, on_step=callback)
    assert result.error is error
    assert result.log == ["cleanup ran"]


def test_a_callback_raising_on_the_final_snapshot_fails_the_run() -> None:
    """An exception on the "completed" call is not swallowed: the result becomes a failure."""

    def callback(snap: ExecutionSnapshot) -> None:
        if snap.status == "completed":
            raise KeyError("at the end")

    result = run_sync(worker(2), on_step=callback)
    assert isinstance(result.error, KeyError)


def test_catching_an_error_does_not_leave_a_stale_failure_behind() -> None:
    """A caught error is not reported: the run completes and the last snapshot says so."""
    snaps: list[ExecutionSnapshot] = []
    assert run_sync(catch(explode(), on_error), on_step=snaps.append).value == -1
    assert snaps[-1].status == "completed" and snaps[-1].k_stack == ()


# -- cache_keys ------------------------------------------------------------------------------------


def test_cache_keys_are_listed_on_first_read_then_fixed_for_that_snapshot() -> None:
    """Taking snapshots never lists the store; a snapshot lists it once, on its first
    cache_keys read, and keeps that listing; another snapshot lists the store as it is then."""
    storage = DictStorage()

    @do
    def writes() -> Generator[Any, Any, None]:
        for i in range(50):
            yield cacheput(f"k{i}", i)

    snaps: list[ExecutionSnapshot] = []
    run_sync(writes(), storage=storage, on_step=snaps.append)
    assert storage.keys_calls == 0
    last = snaps[-1]
    written = {f"k{i}" for i in range(50)}
    first_read = last.cache_keys
    assert set(first_read) == written and storage.keys_calls == 1
    storage.put("written later", 0)
    assert last.cache_keys == first_read and storage.keys_calls == 1
    assert set(snaps[0].cache_keys) == written | {"written later"}
    assert storage.keys_calls == 2


def test_snapshots_are_read_only() -> None:
    """Public fields of a snapshot cannot be assigned."""
    snaps: list[ExecutionSnapshot] = []
    run_sync(worker(1), on_step=snaps.append)
    with pytest.raises(AttributeError):
        snaps[0].status = "failed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        snaps[0].k_stack[0].description = "x"  # type: ignore[misc]


def test_without_on_step_no_hook_is_installed() -> None:
    """With on_step=None the machine runs with no hook and no capture hook at all."""
    m = build_machine(env=None, state=None, handlers=None, storage=DictStorage(),
                      async_mode=False)
    assert m.hook is None and m.capture_hook is None
    assert m.run(worker(3)).value == 3


def test_whatever_step_the_callback_fails_at_the_cleanup_runs_and_its_error_stays() -> None:
    """Failing at any step, even the one that starts the cleanup, still runs the finally_
    cleanup; a cleanup that raises does not replace the callback's error."""

    @do
    def body() -> Generator[Any, Any, None]:
        yield tell("body")
        yield get("k")

    @do
    def failing_cleanup() -> Generator[Any, Any, None]:
        yield tell("cleanup")
        raise OSError("cleanup failed too")

    @do
    def program() -> Generator[Any, Any, str]:
        try:
            yield finally_(body(), failing_cleanup())
        except OSError:
            return "recovered"  # must not happen: the observer's error ends the run
        return "done"

    snaps: list[ExecutionSnapshot] = []
    run_sync(program(), on_step=snaps.append)
    total = snaps[-1].step_count  # the steps of a run that nothing interrupts
    for fail_at in range(1, total + 1):
        error = RuntimeError(f"observer broke at step {fail_at}")

        def callback(snap: ExecutionSnapshot, fail_at: int = fail_at,
                     error: RuntimeError = error) -> None:
            if snap.step_count == fail_at:
                raise error

        result = run_sync(program(), on_step=callback)
        assert result.error is error, fail_at
        assert "cleanup" in result.log, fail_at
