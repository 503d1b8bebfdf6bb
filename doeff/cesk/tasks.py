"""Tasks: programs running concurrently on one machine.

A task owns what must not be shared between concurrent programs: its K (so each has its own
place to resume), its environment E (a spawned task starts with its parent's, and `local` in one
task never reaches another), its listen collectors and the tracebacks of its errors in flight.
Everything else — the store S, the writer log, durable storage, the handlers — belongs to the run
and is shared by all its tasks; tasks switch only at effect boundaries, so each effect is atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from doeff.cesk.frames import Control, Frame
from doeff.cesk.traceback import CapturedTraceback

TaskStatus = Literal["ready", "running", "blocked", "completed", "failed", "cancelled"]

# `Task.program` once the task has started.
STARTED: Any = object()


class Collector:
    """The entries a `listen` collects: every tell of its task, and of the tasks spawned while
    it is open (they inherit it), until the listen ends."""

    __slots__ = ("entries", "open")

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.open = True


class Blocker(Protocol):
    """What a blocked task waits on (a call in flight, a limit, another task, its children)."""

    def cancel_blocked(self, task: Task) -> None:
        """The task was cancelled while waiting here: wake it now, or make sure it wakes soon."""
        ...


class Canceller(Protocol):
    """The part of the scheduler a `Task` handle talks to: a cancel request from any thread."""

    def request_cancel(self, task: Task) -> None:
        """Cancel `task` at its current yield (thread-safe)."""
        ...


def program_name(program: Any) -> str:
    """What a task running `program` is called: the program's name, else its type's."""
    return getattr(program, "name", None) or type(program).__name__


class Task:
    """A program running concurrently with others in one run; the handle `spawn` answers.

    `status` is "ready", "running", "blocked", then "completed", "failed" or "cancelled".
    `cancel()` asks for a `CancellationError` at the task's current `yield` (from any thread);
    `wait(task)` in a program answers its value or raises its error.
    """

    __slots__ = (
        "K",
        "__weakref__",
        "_canceller",
        "_name",
        "blocker",
        "callbacks",
        "cancel_error",
        "cancelled",
        "captures",
        "children",
        "collectors",
        "effect",
        "env",
        "error",
        "failed_children",
        "index",
        "inherited",
        "joined",
        "parent",
        "program",
        "resume_with",
        "retrieved",
        "shielded",
        "status",
        "task_id",
        "traceback",
        "value",
    )

    def __init__(self, task_id: int, program: Any, parent: Task | None,
                 env: dict[Any, Any], collectors: tuple[Collector, ...],
                 canceller: Canceller) -> None:
        self.task_id = task_id
        # Its name; until first read, None or the program it started with (read from that:
        # starting a task must stay cheap, and `program` is replaced once it starts).
        self._name: Any = None
        self.K: list[Frame] = []
        self.env = env
        self.collectors = collectors
        # id(error) -> (error, its traceback), for this task's errors still on their way out
        # (made at its first error: most tasks never have one).
        self.captures: dict[int, tuple[BaseException, CapturedTraceback]] | None = None
        self.status: TaskStatus = "ready"
        self.program = program  # what the task runs when it first gets the machine; then STARTED
        self.resume_with: Control = (None, None)  # what its top of K gets when it resumes
        self.inherited: CapturedTraceback | None = None  # a child's traceback for resume_with
        self.parent = parent
        # Made when first needed, like `captures`: a task is cheap to start.
        self.children: dict[Task, None] | None = None  # live children, in spawn order
        # Spawned ones that failed with nobody waiting yet, for its end (a wait takes one out:
        # memory stays flat however many failing children are spawned and waited for).
        self.failed_children: dict[Task, None] | None = None
        self.callbacks: list[Callable[[Task], None]] | None = None  # called once it has finished
        self.blocker: Blocker | None = None
        self.effect: Any = None  # the effect it is blocked on
        self.cancel_error: BaseException | None = None  # a cancel asked for, not yet delivered
        self.cancelled = False  # a cancel was asked for at some point
        # finally_ cleanups in progress: a cancel asked for meanwhile waits until they end.
        self.shielded = 0
        self.retrieved = False  # its outcome was taken by `wait`
        self.joined = False  # a gather or race owns its outcome
        self.index = 0  # its place among the programs of that gather or race
        self.value: Any = None
        self.error: BaseException | None = None
        self.traceback: CapturedTraceback | None = None
        self._canceller = canceller

    @property
    def name(self) -> str:
        """The name of the program the task runs (read from the program, at the latest when the
        task starts running it)."""
        name = self._name
        if name.__class__ is not str:
            name = self._name = program_name(self.program if name is None else name)
        return name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name

    def retrieve(self) -> None:
        """Its outcome was taken by `wait`: its parent no longer holds it for its end."""
        self.retrieved = True
        parent = self.parent  # kept after the end only by a failed child nobody waited for
        if parent is not None:
            self.parent = None
            if parent.failed_children:
                parent.failed_children.pop(self, None)

    def on_done(self, callback: Callable[[Task], None]) -> None:
        """Call `callback(task)` when the task finishes."""
        if self.callbacks is None:
            self.callbacks = []
        self.callbacks.append(callback)

    def forget(self, callback: Callable[[Task], None]) -> None:
        """Withdraw a callback given to `on_done`."""
        if self.callbacks is not None:
            self.callbacks.remove(callback)

    @property
    def done(self) -> bool:
        """True once the task has finished (completed, failed or cancelled)."""
        return self.status in ("completed", "failed", "cancelled")

    def cancel(self) -> None:
        """Ask for `CancellationError` at the task's current `yield` (any thread; no-op once
        finished). A blocked await is cancelled; a running perform finishes first."""
        if not self.done:
            self._canceller.request_cancel(self)

    def __repr__(self) -> str:
        return f"<Task {self.task_id} {self.name}() {self.status}>"
