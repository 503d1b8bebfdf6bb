"""Named limits (`limit(name, program, concurrency=, rate=)`): run-wide bounds shared by every
task that names them, the way an API's quota is shared by every caller."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from doeff.cesk.frames import Control, Frame, Registers
from doeff.cesk.tasks import Task
from doeff.errors import LimitConflictError

Params = tuple[int | None, tuple[int, float] | None]


class Admitter(Protocol):
    """The part of the scheduler a limit needs: hand a waiting task its turn."""

    def admit(self, task: Task, program: Any, frame: Frame) -> None:
        """Let `task`, blocked in `limit`, start `program` under `frame`."""
        ...

    def wake(self, task: Task, value: Any, exc: BaseException | None) -> None:
        """Make a blocked task ready to resume with this outcome."""
        ...


class Limiter:
    """One named limit of a run: programs in flight, recent start times, tasks waiting a turn."""

    __slots__ = ("concurrency", "in_flight", "name", "rate", "sched", "starts", "waiters")

    def __init__(self, name: str, params: Params, sched: Admitter) -> None:
        self.name = name
        self.concurrency, self.rate = params
        self.in_flight = 0
        self.starts: deque[float] = deque()  # start times within the rate's window
        self.waiters: deque[tuple[Task, Any]] = deque()
        self.sched = sched

    @classmethod
    def check_first(cls, name: str, params: Params) -> None:
        """A limit's first use must say what it limits."""
        if params == (None, None):
            raise LimitConflictError(
                f"limit({name!r}, ...) is used for the first time in this run without "
                f"concurrency= or rate=; give its bounds at its first use"
            )

    def check_same(self, params: Params) -> None:
        """A later use gives the same parameters, or none."""
        if params != (None, None) and params != (self.concurrency, self.rate):
            raise LimitConflictError(
                f"limit({self.name!r}, ...) was first used with concurrency={self.concurrency}, "
                f"rate={self.rate}, now with concurrency={params[0]}, rate={params[1]}; a name "
                f"has one set of bounds per run (give the same ones, or none)"
            )

    def wait_time(self, now: float) -> float | None:
        """0.0 if a program may start now; else seconds until the rate allows one, or None when
        only a program ending can free a turn."""
        if self.concurrency is not None and self.in_flight >= self.concurrency:
            return None
        if self.rate is not None:
            most, per = self.rate
            starts = self.starts
            while starts and starts[0] <= now - per:
                starts.popleft()
            if len(starts) >= most:
                return starts[0] + per - now
        return 0.0

    def enter(self, now: float) -> LimitFrame:
        """Count a program starting now; the frame that releases its turn when it ends."""
        self.in_flight += 1
        if self.rate is not None:
            self.starts.append(now)
        return LimitFrame(self)

    def release(self) -> None:
        """A program under the limit ended: hand turns to the tasks waiting, in order."""
        self.in_flight -= 1
        self.pump(time.monotonic())

    def pump(self, now: float) -> float | None:
        """Admit waiting tasks while the limit allows; seconds until the next may start by the
        rate (None: no waiter, or only a release can admit one)."""
        waiters = self.waiters
        while waiters:
            delay = self.wait_time(now)
            if delay is None or delay > 0.0:
                return delay
            task, program = waiters.popleft()
            self.sched.admit(task, program, self.enter(now))
        return None

    def cancel_blocked(self, task: Task) -> None:
        """A waiting task was cancelled: it leaves the queue without ever starting."""
        for i, (waiting, _) in enumerate(self.waiters):
            if waiting is task:
                del self.waiters[i]
                break
        self.sched.wake(task, None, task.cancel_error)


class LimitFrame(Frame):
    """Give the limit's turn back when the program under it ends."""

    __slots__ = ("limiter",)

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        self.limiter.release()
        return value, exc

    def describe(self) -> str:
        return f"limit {self.limiter.name!r}"
