"""The machine: stack safety, flat memory, and the frames K holds."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from doeff import do, run_sync
from doeff.cesk import CatchFrame, FinallyFrame, ListenFrame, LocalFrame, ReturnFrame, SafeFrame
from doeff.cesk.machine import Machine
from doeff.effects import (
    Perform,
    ask,
    catch,
    finally_,
    get,
    listen,
    local,
    perform,
    put,
    safe,
    tell,
)


@do
def nest(depth: int) -> Any:
    if depth == 0:
        return (yield get("k", 0))
    return (yield nest(depth - 1)) + 1


def test_100k_deep_nesting_completes_without_recursion() -> None:
    """A program nesting sub-programs 100,000 deep runs to completion."""
    assert run_sync(nest(100_000)).value == 100_000


def test_100k_deep_error_unwinds_to_outer_catch() -> None:
    """An error 100,000 frames down propagates up to a catch with no RecursionError."""

    @do
    def deep_fail(depth: int) -> Any:
        if depth == 0:
            raise ValueError("bottom")
        return (yield deep_fail(depth - 1))

    @do
    def prog() -> Any:
        return (yield catch(deep_fail(100_000), lambda e: f"caught {e}"))

    assert run_sync(prog()).value == "caught bottom"


@pytest.mark.parametrize("fail", [False, True], ids=["value", "error"])
def test_100k_nested_finallys_each_run_once_innermost_first_with_env_restored(fail: bool) -> None:
    """100,000 nested finally_(local(...)) run every cleanup once, innermost first, each seeing
    the environment its own local put back, whether the bottom answers or raises."""
    depth = 100_000
    ran: list[tuple[int, Any]] = []

    @do
    def cleanup(level: int) -> Any:
        seen = yield ask("d")  # the local at this level has already restored the outer env
        yield perform(ran.append, (level, seen))

    @do
    def wrap(level: int) -> Any:
        if level == 0:
            inner = yield ask("d")
            if fail:
                raise ValueError(f"bottom saw d={inner}")
            return inner
        return (yield finally_(local({"d": level}, wrap(level - 1)), cleanup(level)))

    @do
    def prog() -> Any:
        return (yield catch(wrap(depth), lambda e: f"caught: {e}"))

    result = run_sync(prog(), env={"d": "outer"})
    assert result.value == ("caught: bottom saw d=1" if fail else 1)
    assert ran == [(level, level + 1) for level in range(1, depth)] + [(depth, "outer")]


def _peak_bytes(steps: int) -> int:
    @do
    def loop() -> Any:
        for i in range(steps):
            yield put("i", i)
        return (yield get("i"))

    tracemalloc.start()
    try:
        assert run_sync(loop()).value == steps - 1
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_flat_in_the_number_of_steps() -> None:
    """Peak memory for 200,000 steps is within a small constant of that for 2,000 steps."""
    small = _peak_bytes(2_000)
    large = _peak_bytes(200_000)
    assert large - small < 64 * 1024, (small, large)


def test_k_holds_the_frame_classes_of_each_construct() -> None:
    """Inside nested local/catch/finally/listen/safe, K holds one frame of each, in order."""
    seen: list[list[str]] = []

    def record() -> None:
        seen.append([type(f).__name__ for f in machine_ref[0].K])

    machine_ref: list[Machine] = []

    @do
    def leaf() -> Any:
        yield Perform(record)

    @do
    def prog() -> Any:
        yield safe(listen(catch(finally_(local({"a": 1}, leaf()), tell("c")), lambda e: 0)))

    # Build the machine by hand to look at K while the program runs.
    from doeff.runners import build_machine

    m = build_machine(env=None, state=None, handlers=None, storage=None, async_mode=False)
    machine_ref.append(m)
    assert m.run(prog()).is_ok()
    assert seen == [[
        ReturnFrame.__name__, SafeFrame.__name__, ListenFrame.__name__, CatchFrame.__name__,
        FinallyFrame.__name__, LocalFrame.__name__, ReturnFrame.__name__,
    ]]


def test_k_is_empty_after_a_run_and_steps_are_counted() -> None:
    """After a run K is empty and the machine counted one step per transition."""
    from doeff.runners import build_machine

    @do
    def prog() -> Any:
        yield perform(lambda: 1)
        yield perform(lambda: 2)
        return "done"

    m = build_machine(env=None, state=None, handlers=None, storage=None, async_mode=False)
    assert m.run(prog()).value == "done"
    assert m.K == []
    # two effects handled + the generator's return
    assert m.steps == 3
