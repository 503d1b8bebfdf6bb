"""Run-scoped views of a shared store, and a current effect that is always an effect."""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from doeff import do, run_sync, run_workflow
from doeff.effects import Effect, get, perform, put
from doeff.effects.cache import cached
from doeff.observability import ExecutionSnapshot
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV


@do
def fill(prefix: str, gate: threading.Event) -> Generator[Any, Any, Any]:
    total = 0
    for i in range(3):
        total += yield cached(f"{prefix}:{i}", lambda i=i: perform(lambda: i))  # type: ignore[misc]
    yield cached("shared", lambda: perform(lambda: 7))
    yield perform(gate.wait, 30)
    return total


def test_cache_entries_and_keys_can_be_limited_to_the_run(tmp_path: Path) -> None:
    """Two workflows on one store: each one's run-only entries and snapshot keys are its own
    steps (and the key both use), while the unscoped views list the whole store."""
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as storage:
        storage.put("someone-else", 1)
        gates = [threading.Event(), threading.Event()]
        runs = [run_workflow(fill(p, g), storage=storage) for p, g in zip("ab", gates,
                                                                          strict=True)]
        try:
            for run in runs:
                _parked_on_wait(run)
            a_entries = runs[0].monitor.get_cache_entries(run_only=True)
            assert a_entries == {"a:0": 0, "a:1": 1, "a:2": 2, "shared": 7}
            b_keys = runs[1].monitor.snapshot().run_cache_keys
            assert b_keys == ("b:0", "b:1", "b:2", "shared")
            assert len(runs[0].monitor.get_cache_entries()) == 8
            assert len(runs[1].monitor.snapshot().cache_keys) == 8
        finally:
            for gate in gates:
                gate.set()
        for run in runs:
            assert run.wait(30).is_ok()
        assert runs[0].monitor.snapshot().run_cache_keys == ("a:0", "a:1", "a:2", "shared")


def _parked_on_wait(run: Any) -> None:
    for _ in range(600):
        snap = run.monitor.snapshot()
        effect = snap.current_effect
        if effect is not None and getattr(effect, "fn", None) is not None and \
                getattr(effect.fn, "__name__", "") == "wait":
            return
        threading.Event().wait(0.05)
    raise AssertionError("the workflow never reached its gate")


@do
def child() -> Generator[Any, Any, Any]:
    n = yield get("n", 0)
    yield put("n", n + 1)
    return n


@do
def parent() -> Generator[Any, Any, Any]:
    a = yield child()
    b = yield child()
    return a + b


def test_a_yielded_sub_program_is_a_frame_never_the_current_effect() -> None:
    """Every on_step snapshot's current_effect is an effect or None; the step that starts a
    sub-program shows it as a new frame on K instead."""
    seen: list[ExecutionSnapshot] = []
    assert run_sync(parent(), on_step=seen.append).value == 1
    effects = [s.current_effect for s in seen]
    assert all(e is None or isinstance(e, Effect) for e in effects)
    starts = [s for s in seen if s.current_effect is None and len(s.k_stack) == 2]
    assert starts and starts[0].k_stack[0].description.startswith("child()")


def test_a_monitor_snapshot_never_shows_a_sub_program_as_the_effect() -> None:
    """The same through run_workflow's monitor, sampled at every boundary of a long run."""
    gate = threading.Event()

    @do
    def many() -> Generator[Any, Any, Any]:
        yield perform(gate.wait, 30)
        total = 0
        for _ in range(50_000):
            total += yield child()
        return total

    execution = run_workflow(many())
    snaps = [execution.monitor.snapshot()]
    gate.set()
    while not execution.done and len(snaps) < 500:
        snaps.append(execution.monitor.snapshot())
    execution.wait(60)
    assert sum(s.status == "running" for s in snaps) > 1
    assert all(s.current_effect is None or isinstance(s.current_effect, Effect) for s in snaps)
