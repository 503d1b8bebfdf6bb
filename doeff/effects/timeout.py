"""Timeouts: give a program a deadline, and go on without it when it misses it.

    summary = yield timeout(summarise(doc), 30)     # StepTimeoutError after 30 s

The program runs as a task of its own while a timer runs beside it; whichever finishes first
decides. At the deadline the caller gets `StepTimeoutError` at once, and the program is
cancelled at its current `yield`: an `await_` in flight is cancelled with it. A blocking call
(`perform`) cannot be: Python cannot stop a thread. It runs on, its late result is discarded,
and the run ends only once it has returned (no task outlives its run). To kill a blocking step
at its deadline, run it in a child process: `@step(timeout=..., isolate="process")`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from datetime import timedelta
from typing import Any

from doeff.effects.base import Effect
from doeff.effects.io import Perform, await_
from doeff.effects.retry import Labeled, name_of
from doeff.effects.tasks import cancel, race, spawn, wait
from doeff.errors import InvalidEffectError, InvalidOptionError, StepTimeoutError
from doeff.program import Program

_TIMED_OUT: Any = object()  # the timer's answer
_FINISHED: Any = object()  # the watcher's answer: the task ended (its outcome is in the task)


def _deadline(seconds: float) -> Generator[Any, Any, Any]:
    yield await_(asyncio.sleep(seconds))
    return _TIMED_OUT


def _watch(task: Any) -> Generator[Any, Any, Any]:
    """Wait for `task` to end, however it ends (its outcome is taken later, with `wait`)."""
    try:
        yield wait(task)
    except BaseException:
        if not task.done:
            raise  # this watcher's own cancellation: the timer won
    return _FINISHED


def _timed(program: Any, seconds: float, label: str) -> Generator[Any, Any, Any]:
    task = yield spawn(program)
    try:
        outcome = yield race(Labeled(f"watch {label}", _watch, (task,)),
                             Labeled(f"deadline {seconds:g} s", _deadline, (seconds,)))
    except BaseException:
        yield cancel(task)  # this program was cancelled: the one it runs goes with it
        raise
    if outcome is _TIMED_OUT and not task.done:
        blocked_in = getattr(task, "effect", None)
        yield cancel(task)
        if isinstance(blocked_in, Perform):
            fn = getattr(blocked_in.fn, "__qualname__", repr(blocked_in.fn))
            what = (f"its blocking call {fn}() cannot be stopped (Python cannot kill a thread): "
                    f"it runs on and its result will be discarded; isolate=\"process\" runs a "
                    f"step in a child process that is killed at the deadline")
        else:
            what = "it was cancelled at its current yield"
        raise StepTimeoutError(f"{label} was still running after {seconds:g} s (its timeout); "
                               f"{what}")
    return (yield wait(task))  # it finished: its value, or its error with its traceback


def check_seconds(what: str, seconds: object) -> float:
    """`seconds` as a float > 0 (a `datetime.timedelta` too), else InvalidOptionError."""
    total = getattr(seconds, "total_seconds", None)
    value = total() if callable(total) else seconds
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1e9:
        raise InvalidOptionError(
            f"{what}={seconds!r:.60}: give a number of seconds > 0 or a datetime.timedelta"
        )
    return float(value)


def timeout(program: Program[Any] | Effect, seconds: float | timedelta) -> Program[Any]:
    """A program that runs `program` and answers its value, or raises `StepTimeoutError` if it
    is still running after `seconds` (a number or a `timedelta`); see the module docstring for
    what happens to the program then."""
    limit = check_seconds("timeout", seconds)
    if not isinstance(program, Program | Effect):
        raise InvalidEffectError(
            f"timeout(program, seconds): program must be a program or an effect, got "
            f"{type(program).__name__} {program!r:.60}"
        )
    label = name_of(program)
    return Labeled(f"timeout {label}", _timed, (program, limit, label))


__all__ = ["check_seconds", "timeout"]
