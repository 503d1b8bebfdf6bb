"""Error effects: catch, finally and safe around a sub-program.

A plain Python `raise` inside a program propagates outward through K like an exception through
Python frames; these effects are the places it can stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doeff.effects.base import Effect, Runnable, effect, fast_constructor
from doeff.errors import InvalidEffectError


@effect
class Catch(Effect):
    """Run `program`; if it raises, answer what `handler(exc)` gives (run if it is a program)."""

    program: Runnable
    handler: Callable[[BaseException], Any]


@effect
class Finally(Effect):
    """Run `program`, then `cleanup` whether it succeeded or raised (as Python's `finally`)."""

    program: Runnable
    cleanup: Runnable


@effect
class Safe(Effect):
    """Run `program`; answer `Ok(value)` or `Err(exception)` instead of raising."""

    program: Runnable


_catch = fast_constructor(Catch)
_finally = fast_constructor(Finally)
_safe = fast_constructor(Safe)


def catch(program: Runnable, handler: Callable[[BaseException], Any]) -> Catch:
    """Run `program`; on an exception answer `handler(exc)`.

    The handler may return a plain value, or a program/effect which is then run for the answer.
    """
    if not callable(handler):
        raise InvalidEffectError(
            f"catch(program, handler): handler must be callable (it is called with the "
            f"exception), got {handler!r:.60}"
        )
    return _catch(program, handler)


def finally_(program: Runnable, cleanup: Runnable) -> Finally:
    """Run `program`, then the program/effect `cleanup`; an error in cleanup replaces the original.

    Named with a trailing underscore because `finally` is a Python keyword.
    """
    return _finally(program, cleanup)


def safe(program: Runnable) -> Safe:
    """Run `program` and answer `Ok(value)` or `Err(exception)`."""
    return _safe(program)
