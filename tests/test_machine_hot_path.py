"""The machine's hot path (a generator resumed straight after a plain handler answers) keeps the
step semantics of the general loop: the same step count, and a hook that arrives during a
handler sees the end of that handler's step."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

from doeff import do, run_sync, run_workflow
from doeff.cesk_observability import ExecutionSnapshot
from doeff.effects import catch, get, perform, put, tell
from doeff.errors import CancelledError

PATIENCE = 30.0  # seconds: only a hang would take this long; nothing asserts on time


@do
def leaf(n: int) -> Generator[Any, Any, int]:
    yield tell(n)
    return n


@do
def mixed() -> Generator[Any, Any, int]:
    """Plain effects, sub-program calls, a handler error caught in the generator and by catch."""
    total = 0
    for i in range(5):
        v = yield get("n", 0)
        yield put("n", v + 1)
        total += yield leaf(i)
        try:
            yield perform(int, "not a number")
        except ValueError:
            total += 1
    caught: int = yield catch(perform(int, "nor this"), lambda e: 100)
    return total + caught


def test_steps_are_counted_alike_with_and_without_an_observer() -> None:
    """A run watched at every step (general loop) and an unwatched one count the same steps."""
    snaps: list[ExecutionSnapshot] = []
    watched = run_sync(mixed(), on_step=snaps.append)
    execution = run_workflow(mixed())
    unwatched = execution.wait(PATIENCE)
    assert watched.value == unwatched.value == 115
    assert snaps[-1].step_count == execution.monitor.snapshot().step_count
    assert snaps[-1].step_count == len(snaps) - 1  # one snapshot per step, plus the final one


def test_a_cancel_requested_during_a_handler_is_raised_at_that_effects_yield() -> None:
    """Cancelling while a handler runs raises at the yield it answers: no later effect runs."""
    entered, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> str:
        entered.set()
        release.wait(PATIENCE)
        return "slow"

    @do
    def program() -> Generator[Any, Any, str]:
        yield perform(slow)
        yield perform(ran.append, "the next effect")
        return "finished"

    execution = run_workflow(program())
    assert entered.wait(PATIENCE)
    execution.cancel()
    release.set()
    result = execution.wait(PATIENCE)
    assert isinstance(result.error, CancelledError)
    assert ran == []
