"""Writer effects: append to the run's log, or capture what a sub-program logs."""

from __future__ import annotations

from typing import Any

from doeff.effects.base import Effect, Runnable, effect, fast_constructor


@effect
class Tell(Effect):
    """Append `message` to the log; answers None."""

    message: Any


@effect
class Listen(Effect):
    """Run `program`; answer `(its result, the log entries it wrote)`."""

    program: Runnable


_tell = fast_constructor(Tell)
_listen = fast_constructor(Listen)


def tell(message: Any) -> Tell:
    """Append `message` to the run's log (`CESKResult.log`)."""
    return _tell(message)


def listen(program: Runnable) -> Listen:
    """Run `program` and answer `(value, entries)`; the entries stay in the outer log too."""
    return _listen(program)
