"""Writer effects: append to the run's log, or capture what a sub-program logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doeff.effects.base import Effect


@dataclass(frozen=True, slots=True)
class Tell(Effect):
    """Append `message` to the log; answers None."""

    message: Any


@dataclass(frozen=True, slots=True)
class Listen(Effect):
    """Run `program`; answer `(its result, the log entries it wrote)`."""

    program: Any


def tell(message: Any) -> Tell:
    """Append `message` to the run's log (`CESKResult.log`)."""
    return Tell(message)


def listen(program: Any) -> Listen:
    """Run `program` and answer `(value, entries)`; the entries stay in the outer log too."""
    return Listen(program)
