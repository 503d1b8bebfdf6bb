"""Ctrl-C during a blocking run: the interrupt lands where the machine can take it.

Python raises `KeyboardInterrupt` at whatever bytecode the main thread is running. Inside the
machine's loop in a run with one task that is fine: the loop catches it and unwinds the program,
running its cleanups. Anywhere else — the scheduler moving a task between queues, a completion
taken from the inbox but not yet handed to its task — an exception at an arbitrary point would
lose a wake-up (the run then waits forever) or skip every task's cleanups. So while a blocking
run drives the machine on the main thread, SIGINT goes to `InterruptGuard`: it raises at once
only where the loop catches it, and otherwise asks the machine to interrupt the run at its next
step boundary (the way `asyncio.run` turns Ctrl-C into a cancel of its main task).

The guard is installed when the run first becomes concurrent (setting a signal handler costs
microseconds, too much for every small run), and removed when the run ends. A run that stays
on one task keeps Python's own handler.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Protocol


class Interruptible(Protocol):
    """The part of the machine the guard talks to."""

    defer_interrupts: bool

    def request_interrupt(self, err: BaseException) -> None:
        """End the run with `err` at the next step boundary (called from the signal handler)."""
        ...


class InterruptGuard:
    """SIGINT handler for the rest of one blocking run on the main thread."""

    __slots__ = ("_installed", "_m", "_previous")

    def __init__(self, m: Interruptible) -> None:
        self._m = m
        self._installed = False
        self._previous: Any = None

    def install(self) -> None:
        """Take over SIGINT, if this is the main thread and Python's default handler, the
        guard of a run this one is nested in, or the guard of a run that has ended has it (a
        handler the user installed is theirs). A nested run's guard comes first: the interrupt
        belongs to the innermost run, whose scheduler is the code running."""
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGINT)
        if _replaceable(current):
            self._previous = current
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
            _guards.append(self)

    def remove(self) -> None:
        """Give SIGINT back to the handler it had before (unless the program has installed one
        of its own meanwhile)."""
        if self._installed:
            self._installed = False
            _guards.remove(self)
            if signal.getsignal(signal.SIGINT) == self._handle:
                signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        if not self._installed:
            # Its run has ended, yet the guard is back: put back by code that saved it during
            # the run, or left by a Ctrl-C that cut `remove` short. No machine will take the
            # interrupt: it goes where it went before the run.
            return self._previous(signum, frame)
        if not self._m.defer_interrupts:
            # The single task's loop runs (maybe a blocking call inline): raise there, as
            # Python would, so a long call is interrupted at once; the loop unwinds the task.
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        self._m.request_interrupt(KeyboardInterrupt())


# The installed guards, innermost last; only the main thread installs or removes them.
_guards: list[InterruptGuard] = []


def _replaceable(handler: Any) -> bool:
    """Whether a guard may take SIGINT over from `handler`: Python's default one, the guard
    of the innermost run going on, or the guard of a run that has ended."""
    if handler is signal.default_int_handler:
        return True
    guard = getattr(handler, "__self__", None)
    return isinstance(guard, InterruptGuard) and (
        not guard._installed or guard is (_guards[-1] if _guards else None))
