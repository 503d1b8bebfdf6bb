"""Waiting for tasks: `gather` and `race` (frames on the waiting task's K, so snapshots show
them) and `wait` — structured: a join answers only once every task it started has finished."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from doeff.cesk.frames import Control, Frame, Registers
from doeff.cesk.tasks import Task
from doeff.cesk.traceback import CapturedTraceback, short_repr
from doeff.errors import CancellationError


class Waker(Protocol):
    """The part of the scheduler a join needs."""

    def wake(self, task: Task, value: Any, exc: BaseException | None,
             inherited: CapturedTraceback | None = None) -> None:
        """Make a blocked task ready to resume with this outcome (and the traceback of the
        child it came from)."""
        ...

    def cancel(self, task: Task, err: BaseException | None = None) -> bool:
        """Cancel `task` at its current yield; False if it had finished or is being cancelled."""
        ...


def note_also(error: BaseException, child: Task, why: str) -> None:
    """Attach another task's error to the one being raised (PEP 678 notes)."""
    other = child.error
    assert other is not None
    error.add_note(f"{why}: {child.name}() (task {child.task_id}) raised "
                   f"{type(other).__name__}: {other}")


class _Join(Frame, ABC):
    """Base of gather and race: children to watch, and the waiting task to wake when all end."""

    __slots__ = ("children", "failure", "finished", "parent", "sched", "stopping")

    def __init__(self, sched: Waker, parent: Task, children: list[Task]) -> None:
        self.sched = sched
        self.parent = parent
        self.children: list[Task | None] = list(children)
        self.finished = 0
        self.failure: Task | None = None  # the child whose error the join raises
        self.stopping: str | None = None  # why the other children are being cancelled
        for index, child in enumerate(children):
            child.joined = True
            child.index = index
            child.on_done(self.child_done)

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        return value, exc  # the scheduler resumed the task with the join's outcome

    def stop_others(self, why: str) -> None:
        """Cancel every child still running (once)."""
        if self.stopping is not None:
            return
        self.stopping = why
        for child in self.children:
            if child is not None:
                self.sched.cancel(child, CancellationError(f"{child.name}() was cancelled: {why}"))

    def child_done(self, child: Task) -> None:
        """A child finished: record it; wake the waiting task when the last one has."""
        self.children[child.index] = None
        self.finished += 1
        self.record(child)
        if self.finished == len(self.children):
            self.answer()

    def cancel_blocked(self, task: Task) -> None:
        """The waiting task was cancelled: cancel the children, answer when they have ended."""
        self.stop_others("the task waiting for it was cancelled")

    @abstractmethod
    def record(self, child: Task) -> None:
        """Take one finished child's outcome into account."""

    @abstractmethod
    def answer(self) -> None:
        """Wake the waiting task with the join's outcome."""

    def raise_failure(self) -> None:
        failed = self.failure
        assert failed is not None and failed.error is not None
        self.sched.wake(self.parent, None, failed.error, failed.traceback)


class GatherFrame(_Join):
    """Wait for the gather's tasks; answer their results in order, or the first failure."""

    __slots__ = ("results",)

    def __init__(self, sched: Waker, parent: Task, children: list[Task]) -> None:
        self.results: list[Any] = [None] * len(children)
        super().__init__(sched, parent, children)

    def record(self, child: Task) -> None:
        if child.error is None:
            self.results[child.index] = child.value
            return
        if self.failure is None:
            self.failure = child
            self.stop_others(f"{child.name}() (task {child.task_id}) failed in the same gather")
        elif not isinstance(child.error, CancellationError):
            error = self.failure.error
            assert error is not None
            note_also(error, child, "also failed in the same gather")

    def answer(self) -> None:
        if self.failure is not None:
            self.raise_failure()
        else:
            self.sched.wake(self.parent, self.results, None)

    def describe(self) -> str:
        return f"gather ({self.finished}/{len(self.children)} done)"


class RaceFrame(_Join):
    """Wait for the first of the race's tasks to finish; cancel the others; answer its value or
    raise its error."""

    __slots__ = ("first",)

    def __init__(self, sched: Waker, parent: Task, children: list[Task]) -> None:
        self.first: Task | None = None
        super().__init__(sched, parent, children)

    def record(self, child: Task) -> None:
        if self.first is None:
            self.first = child
            outcome = "won" if child.error is None else "failed first in"
            self.stop_others(f"{child.name}() (task {child.task_id}) {outcome} the race")
        elif child.error is not None and not isinstance(child.error, CancellationError):
            # A loser that failed on its own (or in a cleanup) is not lost: noted on the error
            # raised, or dropped with the winner's value as asyncio drops a loser's.
            first = self.first.error
            if first is not None:
                note_also(first, child, "also failed in the same race")

    def answer(self) -> None:
        first = self.first
        assert first is not None
        if first.error is None:
            self.sched.wake(self.parent, first.value, None)
            return
        self.failure = first
        self.raise_failure()

    def describe(self) -> str:
        return f"race ({self.finished}/{len(self.children)} done)"


class WaitFor:
    """A task blocked in `wait(task)`: woken with the awaited task's outcome."""

    __slots__ = ("sched", "target", "waiter")

    def __init__(self, sched: Waker, waiter: Task, target: Task) -> None:
        self.sched = sched
        self.waiter = waiter
        self.target = target
        target.on_done(self.target_done)

    def target_done(self, target: Task) -> None:
        if self.waiter.blocker is self:
            answer(self.sched, self.waiter, target)

    def cancel_blocked(self, task: Task) -> None:
        # The awaited task goes on; if nobody waits for it, it is cancelled when its parent ends.
        self.target.forget(self.target_done)
        self.sched.wake(task, None, task.cancel_error)

    def __repr__(self) -> str:
        return f"wait for {short_repr(self.target)}"


def answer(sched: Waker, waiter: Task, target: Task) -> None:
    """Wake `waiter` with the finished `target`'s value or error."""
    target.retrieve()
    if target.error is None:
        sched.wake(waiter, target.value, None)
    else:
        sched.wake(waiter, None, target.error, target.traceback)


class Ending:
    """A task whose program has ended, waiting for its children to finish being cancelled."""

    __slots__ = ()

    def cancel_blocked(self, task: Task) -> None:
        pass  # its children are being cancelled already


ENDING = Ending()
