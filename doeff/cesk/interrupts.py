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

    __slots__ = ("_installed", "_m")

    def __init__(self, m: Interruptible) -> None:
        self._m = m
        self._installed = False

    def install(self) -> None:
        """Take over SIGINT, if this is the main thread and Python's default handler has it
        (a handler the user installed is theirs)."""
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True

    def remove(self) -> None:
        """Give SIGINT back to Python's default handler (unless the program has installed one
        of its own meanwhile)."""
        if self._installed:
            self._installed = False
            if signal.getsignal(signal.SIGINT) == self._handle:
                signal.signal(signal.SIGINT, signal.default_int_handler)

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        if not self._m.defer_interrupts:
            # The single task's loop runs (maybe a blocking call inline): raise there, as
            # Python would, so a long call is interrupted at once; the loop unwinds the task.
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        self._m.request_interrupt(KeyboardInterrupt())
