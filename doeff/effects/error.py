"""Error effects: catch, finally and safe around a sub-program.

A plain Python `raise` inside a program propagates outward through K like an exception through
Python frames; these effects are the places it can stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from doeff.effects.base import Effect


@dataclass(frozen=True, slots=True)
class Catch(Effect):
    """Run `program`; if it raises, answer what `handler(exc)` gives (run if it is a program)."""

    program: Any
    handler: Callable[[BaseException], Any]


@dataclass(frozen=True, slots=True)
class Finally(Effect):
    """Run `program`, then `cleanup` whether it succeeded or raised (as Python's `finally`)."""

    program: Any
    cleanup: Any


@dataclass(frozen=True, slots=True)
class Safe(Effect):
    """Run `program`; answer `Ok(value)` or `Err(exception)` instead of raising."""

    program: Any


def catch(program: Any, handler: Callable[[BaseException], Any]) -> Catch:
    """Run `program`; on an exception answer `handler(exc)`.

    The handler may return a plain value, or a program/effect which is then run for the answer.
    """
    return Catch(program, handler)


def finally_(program: Any, cleanup: Any) -> Finally:
    """Run `program`, then the program/effect `cleanup`; an error in cleanup replaces the original.

    Named with a trailing underscore because `finally` is a Python keyword.
    """
    return Finally(program, cleanup)


def safe(program: Any) -> Safe:
    """Run `program` and answer `Ok(value)` or `Err(exception)`."""
    return Safe(program)
