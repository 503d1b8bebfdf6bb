"""Snapshots of a running machine: the frames on K, where each one waits, the effect at hand.

With `on_step` a snapshot is taken after every step, so taking one must be cheap. It copies only
what later steps would change: the list of frames (`tuple(K)`) and a *mark* per frame — for a
suspended generator the line it waits on (generators move; frame objects don't). The
`KFrameSnapshot`s, their `CodeLocation`s and source text are built when `k_stack` is first read,
and the store's keys when `cache_keys` is first read.

A run with several tasks adds the same per task (`tasks`); `k_stack` and `current_effect` stay
the main task's. A task that did not step keeps the frames and marks of its last step: its K has
not moved since.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any, Literal

from doeff.cesk.frames import ReturnFrame
from doeff.cesk.joins import GatherFrame, RaceFrame
from doeff.cesk.machine import Machine
from doeff.cesk.result import CESKResult
from doeff.cesk.tasks import Task, TaskStatus
from doeff.cesk.traceback import (
    CapturedTraceback,
    CodeLocation,
    frame_chain,
    is_internal,
    line_at,
    raised_at,
    short_repr,
)
from doeff.effects.base import Effect
from doeff.protocols import DurableStorage

ExecutionStatus = Literal["pending", "running", "paused", "completed", "failed"]

# What a snapshot keeps per frame, decoded lazily by `_frame_snapshots`:
#   ReturnFrame: int (the bytecode offset its own generator waits at: cheaper to read than the
#   line, which is looked up only when someone reads k_stack), a chain of (code, line) when it
#   delegates with `yield from`, a CodeLocation (the line it raised from), or None (not started).
#   GatherFrame, RaceFrame: its description (its progress changes while it stays on K).
#   Others: None.
FrameMark = int | str | tuple[tuple[CodeType, int], ...] | CodeLocation | None
# One live task as a snapshot keeps it, decoded into a TaskSnapshot when `tasks` is read:
# (task_id, status, frames, marks, the effect it handles or waits on).
TaskEntry = tuple[int, TaskStatus, tuple[Any, ...], tuple[FrameMark, ...], Any]


class _Rows:
    """Every live task's entry as of the last change of task states; the running task's entry
    (at `at`) is stale: a snapshot holding these keeps the running task's own in its fields."""

    __slots__ = ("at", "base")

    def __init__(self, base: tuple[TaskEntry, ...], at: int) -> None:
        self.base = base
        self.at = at


# None (one task), every task's entry, or _Rows (the running task's in the snapshot's fields).
Entries = tuple[TaskEntry, ...] | _Rows | None

_keys_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class KFrameSnapshot:
    """One K frame: its type, the user's source line it belongs to, and a short description."""

    frame_type: str
    location: CodeLocation | None
    description: str


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """One live task: its id (the main task's is 0), status ("ready", "running", "blocked"),
    its K innermost first, and the effect it handles or waits on (else None)."""

    task_id: int
    status: TaskStatus
    k_stack: tuple[KFrameSnapshot, ...]
    current_effect: Any


class ExecutionSnapshot:
    """The state of a run after one step (immutable).

    - `status`: "pending", "running", "paused", "completed" or "failed".
    - `k_stack`: K innermost first: `k_stack[0]` is the `ReturnFrame` of the generator that
      yielded `current_effect`; the last entry is the outermost program.
    - `current_effect`: the effect handled at this step (or being handled), else None.
    - `step_count`: steps executed so far.
    - `cache_keys`: the keys in durable storage, read from storage when first accessed (so as of
      that moment, not of the step: listing a large store at every step would be too slow).
    - `run_cache_keys`: only the keys this run read back or wrote (a store shared by several
      runs holds theirs too), for runs under `run_workflow` or with a `run_id`.
    - `tasks`: a `TaskSnapshot` per live task, the main one first (`k_stack` and
      `current_effect` above are the main task's).

    >>> @do
    ... def bump():
    ...     n = yield get("n", 0)
    ...     yield put("n", n + 1)
    >>> def show(s):
    ...     print(s.step_count, s.status, s.current_effect, len(s.k_stack))
    >>> _ = run_sync(bump(), on_step=show)
    1 running Get(key='n', default=0) 1
    2 running Put(key='n', value=1) 1
    3 running None 0
    3 completed None 0
    """

    __slots__ = ("_cache_keys", "_effect", "_frames", "_k_stack", "_marks", "_scope",
                 "_status", "_steps", "_storage", "_task_entries", "_tasks")

    def __init__(
        self,
        status: ExecutionStatus,
        frames: tuple[Any, ...],
        marks: tuple[FrameMark, ...],
        effect: Any,
        steps: int,
        storage: DurableStorage | None,
        tasks: Entries = None,
    ) -> None:
        self._status = status
        self._frames = frames
        self._marks = marks
        self._effect = effect
        self._steps = steps
        self._storage = storage
        # None: the run has one task, the main one, which the fields above describe. A _Rows:
        # the fields above describe the running task (only while several tasks live, so that a
        # step need not rebuild every task's entry; see _main).
        self._task_entries = tasks
        # The keys this run read or wrote, when someone tracks them (see run_cache_keys).
        self._scope: Callable[[], tuple[str, ...]] | None = None
        # _k_stack, _tasks and _cache_keys stay unset until first read (the properties below).

    @property
    def status(self) -> ExecutionStatus:
        """Where the run stands: pending, running, paused, completed or failed."""
        return self._status

    @property
    def current_effect(self) -> Any:
        """The effect handled at this step, or None."""
        return self._main()[2]

    def _main(self) -> tuple[tuple[Any, ...], tuple[FrameMark, ...], Any]:
        """The main task's frames, marks and effect."""
        rows = self._task_entries
        if isinstance(rows, _Rows) and rows.at:
            main = rows.base[0]
            return main[2], main[3], main[4]
        return self._frames, self._marks, self._effect

    def _entries(self) -> tuple[TaskEntry, ...] | None:
        """Every live task's entry, or None for a run with one task."""
        rows = self._task_entries
        if isinstance(rows, _Rows):
            entries = list(rows.base)
            entries[rows.at] = (entries[rows.at][0], "running", self._frames, self._marks,
                                self._effect)
            return tuple(entries)
        return rows

    @property
    def step_count(self) -> int:
        """Number of steps executed."""
        return self._steps

    @property
    def k_stack(self) -> tuple[KFrameSnapshot, ...]:
        """The continuation stack, innermost frame first."""
        k_stack: tuple[KFrameSnapshot, ...] | None = getattr(self, "_k_stack", None)
        if k_stack is None:
            # Two threads may both build it; they build equal tuples, so either may win.
            frames, marks, _ = self._main()
            k_stack = self._k_stack = _frame_snapshots(frames, marks)
        return k_stack

    @property
    def tasks(self) -> tuple[TaskSnapshot, ...]:
        """Every live task at this step, the main one (task 0) first."""
        tasks: tuple[TaskSnapshot, ...] | None = getattr(self, "_tasks", None)
        if tasks is None:
            entries = self._entries()
            if entries is None:
                ended = self._status in ("completed", "failed")
                status: TaskStatus = "ready" if self._status == "pending" else "running"
                tasks = () if ended else (
                    TaskSnapshot(0, status, self.k_stack, self.current_effect),)
            else:
                tasks = tuple(
                    TaskSnapshot(task_id, state, _frame_snapshots(frames, marks), effect)
                    for task_id, state, frames, marks, effect in entries)
            self._tasks = tasks
        return tasks

    @property
    def cache_keys(self) -> tuple[str, ...]:
        """Keys in durable storage, read on first access (then fixed for this snapshot)."""
        keys: tuple[str, ...] | None = getattr(self, "_cache_keys", None)
        if keys is None:
            with _keys_lock:  # so two readers of one snapshot cannot see two different listings
                keys = getattr(self, "_cache_keys", None)
                if keys is None:
                    storage = self._storage
                    keys = self._cache_keys = () if storage is None else tuple(storage.keys())
        return keys

    @property
    def run_cache_keys(self) -> tuple[str, ...]:
        """The keys this run read back or wrote, in the order first seen (as of first access);
        empty for a run nobody tracks (a plain `run_sync` without `run_id`)."""
        scope: Callable[[], tuple[str, ...]] | None = getattr(self, "_scope", None)
        return () if scope is None else scope()

    def scoped(self, scope: Callable[[], tuple[str, ...]] | None) -> ExecutionSnapshot:
        """This snapshot, its run's keys read through `scope` (returns self)."""
        self._scope = scope
        return self

    def with_status(self, status: ExecutionStatus) -> ExecutionSnapshot:
        """The same step seen with another status (e.g. "paused")."""
        return ExecutionSnapshot(status, self._frames, self._marks, self._effect, self._steps,
                                 self._storage, self._task_entries
                                 ).scoped(getattr(self, "_scope", None))

    def format(self) -> str:
        """A multi-line rendering: a header line, then one line per K frame, innermost first."""
        main = self.current_effect
        effect = "" if main is None else f", handling {short_repr(main)}"
        lines = [f"{self._status} at step {self._steps}{effect}"]
        lines.extend(_format_k(self.k_stack, "  "))
        if self._task_entries is not None:
            for task in self.tasks[1:]:
                doing = "" if task.current_effect is None else (
                    f", at {short_repr(task.current_effect, 40)}")
                lines.append(f"  task {task.task_id} {task.status}{doing}")
                lines.extend(_format_k(task.k_stack, "    "))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return (f"<ExecutionSnapshot {self._status} step={self._steps} "
                f"k_depth={len(self._main()[0])} effect={short_repr(self.current_effect)}>")


def _format_k(k_stack: tuple[KFrameSnapshot, ...], indent: str) -> list[str]:
    lines = []
    for frame in k_stack:
        place = frame.location.short() if frame.location is not None else None
        where = f"  ({place})" if place is not None and place not in frame.description else ""
        lines.append(f"{indent}{frame.frame_type:12} {frame.description}{where}")
    return lines




# -- capturing: what must be copied now, because the next step changes it ---------------------


def mark_of(frame: Any) -> FrameMark:
    """The part of `frame` that later steps change: a suspended generator's line, a gather's
    progress."""
    cls = frame.__class__
    if cls is ReturnFrame:
        gen = frame.gen
        if not gen.gi_suspended:
            return None  # created but not started: it waits on no line of its own yet
        if gen.gi_yieldfrom is None:
            offset: int = gen.gi_frame.f_lasti
            return offset
        return tuple((f.f_code, f.f_lineno) for f in frame_chain(gen))
    if cls is GatherFrame or cls is RaceFrame:
        text: str = frame.describe()
        return text
    return None


Captured = tuple[tuple[Any, ...], tuple[FrameMark, ...], Any, tuple[TaskEntry, ...] | None]


def capture(m: Machine, effect: Any) -> Captured:
    """The main task's frames, marks and effect, and every live task's when there are several;
    read in full (on the machine thread, or while it is parked). `effect` is the running
    task's."""
    root = m.root
    frames = tuple(root.K)
    marks = tuple(map(mark_of, frames))
    if not isinstance(effect, Effect):
        effect = None  # a sub-program started: it shows as its frame, not as an effect
    running = m.task if m.task.status == "running" else None
    main_effect = effect if running is root else root.effect
    if len(m.sched.tasks) <= 1:
        return frames, marks, main_effect, None
    entries = []
    for task in m.live_tasks():
        if task is root:
            entries.append((0, task.status, frames, marks, main_effect))
            continue
        k = tuple(task.K)
        entries.append((task.task_id, task.status, k, tuple(map(mark_of, k)),
                        effect if task is running else task.effect))
    return frames, marks, main_effect, tuple(entries)


# -- decoding: building the k_stack when someone reads it ------------------------------------


def _own_location(code: CodeType, mark: FrameMark) -> CodeLocation | None:
    """The user line a ReturnFrame's generator waits on, or None (doeff's own or not started)."""
    if isinstance(mark, int):
        if is_internal(code.co_filename):
            return None
        line = line_at(code, mark)
        return None if line is None else CodeLocation.of(code, line)
    if isinstance(mark, tuple):
        user = [(c, n) for c, n in mark if not is_internal(c.co_filename)]
        return CodeLocation.of(*user[-1]) if user else None
    if isinstance(mark, CodeLocation):
        return mark
    return None


def _frame_snapshots(
    frames: tuple[Any, ...], marks: tuple[FrameMark, ...]
) -> tuple[KFrameSnapshot, ...]:
    """Describe each frame, innermost first; frames with no user line of their own (control
    frames, doeff's helper programs, programs not started) take the line of the nearest program
    below them — where the effect that pushed them was yielded."""
    out: list[KFrameSnapshot] = []
    below: CodeLocation | None = None
    for frame, mark in zip(frames, marks, strict=True):
        kind = frame.__class__.__name__
        if frame.__class__ is ReturnFrame:
            own = _own_location(frame.code, mark)
            if isinstance(mark, CodeLocation):
                text = f"{frame.name}() raised at {mark.short()}"
            elif own is not None:
                text = f"{frame.name}() waiting at {own.short()}"
            else:
                state = "not started" if mark is None else "(doeff)"
                called = f", called at {below.short()}" if below is not None else ""
                text = f"{frame.name}() {state}{called}"
            below = own or below
            out.append(KFrameSnapshot(kind, below, text))
        else:
            text = mark if isinstance(mark, str) else frame.describe()
            out.append(KFrameSnapshot(kind, below, text))
    out.reverse()
    return tuple(out)


# -- failures: K as it stood when the error appeared -------------------------------------------


class FailureRecorder:
    """Installed as `Machine.capture_hook`: records K, with marks, when an error first appears."""

    __slots__ = ("error", "frames", "m", "marks")

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.error: BaseException | None = None
        self.frames: tuple[Any, ...] = ()
        self.marks: tuple[FrameMark, ...] = ()

    @classmethod
    def on(cls, m: Machine) -> FailureRecorder:
        """The machine's recorder, installed on first use (several observers share one)."""
        hook = m.capture_hook
        if isinstance(hook, FailureRecorder):
            return hook
        recorder = cls(m)
        m.capture_hook = recorder
        return recorder

    def __call__(self, err: BaseException, raised_from: ReturnFrame | None) -> None:
        frames = tuple(self.m.K)
        marks = list(map(mark_of, frames))
        if err is self.error:
            # The error of a task reached the task waiting for it: K as a whole runs from the
            # waiting task's frames down to those of the task that raised.
            self.frames = frames + self.frames
            self.marks = tuple(marks) + self.marks
            return
        self.error = err
        self.frames = frames
        # The raising generator has finished, so it has no line to wait on: use the raise's line.
        if raised_from is not None and frames and frames[-1] is raised_from:
            marks[-1] = raised_at(raised_from.code, err.__traceback__)
        self.marks = tuple(marks)

    def final_snapshot(self, result: CESKResult[Any]) -> ExecutionSnapshot:
        """The last snapshot of a run: "completed" with an empty K, or "failed" with the K that
        was pending when its error appeared."""
        m = self.m
        if result.error is None:
            return ExecutionSnapshot("completed", (), (), None, m.steps, m.storage)
        if result.error is self.error:
            frames, marks = self.frames, self.marks
        else:
            frames, marks = (), ()
        return ExecutionSnapshot("failed", frames, marks, None, m.steps, m.storage)


def failed_with(result: CESKResult[Any], err: Exception) -> CESKResult[Any]:
    """`result` turned into a failure with `err` (the earlier error, if any, as its context)."""
    if err.__context__ is None and result.error is not None and result.error is not err:
        err.__context__ = result.error
    return CESKResult(None, err, CapturedTraceback((), err), result.state, result.log)


# -- on_step ------------------------------------------------------------------------------


class StepObserver:
    """Calls `on_step` with a snapshot after every step of one machine, and with the final one."""

    __slots__ = ("_broken", "failures", "hook", "m", "on_step")

    def __init__(self, m: Machine, on_step: Callable[[ExecutionSnapshot], object]) -> None:
        self.m = m
        self.on_step = on_step
        self.failures = FailureRecorder.on(m)
        self._broken = False
        self.hook = self._make_hook()

    def _make_hook(self) -> Callable[[int, Any], None]:
        # Locals in a closure: this runs at every step, and attribute look-ups cost.
        m = self.m
        live = m.sched.tasks
        storage = m.storage
        on_step = self.on_step
        new = object.__new__
        snapshot = ExecutionSnapshot
        mark = mark_of
        last_frames: tuple[Any, ...] = ()
        last_marks: tuple[FrameMark, ...] = ()
        per_task = _TaskMarks()

        sched = m.sched

        seen_version = -1  # the scheduler's version at the last full read of the tasks
        seen_running: Any = None  # the task that ran then
        rows: _Rows | None = None  # every task's entry as of then (the running one's stale)

        def hook(steps: int, effect: Any) -> None:
            nonlocal last_frames, last_marks, seen_version, seen_running, rows
            if effect is not None and not isinstance(effect, Effect):
                effect = None  # a sub-program started: it shows as its frame, not as an effect
            running = m.task
            entries: Entries = None
            several = len(live) > 1
            if several and (sched.version != seen_version or running is not seen_running):
                # A task started, blocked, woke or ended, or another one runs: read every task.
                if seen_running is not None:
                    per_task.last[seen_running] = last_frames, last_marks
                frames, marks, effect, entries = per_task.step(m, effect)
                last_frames, last_marks = per_task.last[running]
                seen_version, seen_running = sched.version, running
                assert entries is not None
                rows = _Rows(entries, per_task.index)
            else:
                # Only the running task moved. A step pops at most the top frame, then pushes. So
                # the frames below the old top are the same objects, waiting on the same lines:
                # only the top and new frames are read.
                frames = tuple(running.K)
                keep = len(last_frames) - 1
                depth = len(frames)
                if 0 < keep <= depth and frames[keep - 1] is last_frames[keep - 1]:
                    # Most steps leave K's depth alone: one mark to read, no map or slice.
                    marks = last_marks[:keep] + (
                        (mark(frames[keep]),) if depth == keep + 1
                        else tuple(map(mark, frames[keep:])))
                elif depth == 1:
                    marks = (mark(frames[0]),)
                else:
                    marks = tuple(map(mark, frames))
                last_frames = frames
                last_marks = marks
                if several:
                    # The snapshot's fields are the running task's; the others' entries have
                    # not changed since `rows` was built (no task changed state since).
                    entries = rows
            # Built slot by slot: __init__'s call is a visible share of a step's cost.
            snap = new(snapshot)
            snap._status = "running"
            snap._frames = frames
            snap._marks = marks
            snap._effect = effect
            snap._steps = steps
            snap._storage = storage
            snap._task_entries = entries
            snap._scope = None
            try:
                on_step(snap)
            except BaseException:
                self._broken = True
                raise

        return hook

    def finish(self, result: CESKResult[Any]) -> CESKResult[Any]:
        """Report the final snapshot; if `on_step` raises on it, the run fails with that error.

        A callback that already raised (and so ended the run) is not called again.
        """
        if self._broken:
            return result
        try:
            self.on_step(self.failures.final_snapshot(result))
        except Exception as err:
            return failed_with(result, err)
        return result


class _TaskMarks:
    """Per-task frames and marks for `on_step` while several tasks live: the running task's are
    read at its step (incrementally, as for one task), the others' kept from their last step.

    While no task changes state (the scheduler's `version` stays put) and the same task runs,
    only its entry is rebuilt: the others cannot have moved.
    """

    __slots__ = ("entries", "index", "last", "running", "version")

    def __init__(self) -> None:
        self.last: dict[Task, tuple[tuple[Any, ...], tuple[FrameMark, ...]]] = {}
        self.entries: list[TaskEntry] = []
        self.version = -1
        self.running: Task | None = None
        self.index = 0  # the running task's place in `entries`

    def of(self, task: Task, running: bool) -> tuple[tuple[Any, ...], tuple[FrameMark, ...]]:
        K = task.K
        last = self.last.get(task)
        if last is None:
            now = tuple(K)
            marks = tuple(map(mark_of, now))
        else:
            frames, marks = last
            if not running and len(frames) == len(K) and (not K or K[-1] is frames[-1]):
                # It has not run since: only a gather's or race's progress may have moved.
                if not K or K[-1].__class__ not in _PROGRESS:
                    return last
                now = frames
                marks = (*marks[:-1], mark_of(K[-1]))
            else:
                now = tuple(K)
                keep = len(frames) - 1  # as for one task: frames below the old top stay put
                if 0 < keep <= len(now) and now[keep - 1] is frames[keep - 1]:
                    marks = marks[:keep] + tuple(map(mark_of, now[keep:]))
                else:
                    marks = tuple(map(mark_of, now))
        self.last[task] = now, marks
        return now, marks

    def step(self, m: Machine, effect: Any) -> Captured:
        """The main task's frames, marks and effect, and an entry per live task."""
        running = m.task
        entries = self.entries
        version = m.sched.version
        if version == self.version and running is self.running:
            frames, marks = self.of(running, True)
            entries[self.index] = (running.task_id, running.status, frames, marks, effect)
        else:
            entries.clear()
            for task in m.live_tasks():
                frames, marks = self.of(task, task is running)
                if task is running:
                    self.index = len(entries)
                entries.append((task.task_id, task.status, frames, marks,
                                effect if task is running else task.effect))
            self.version, self.running = version, running
            if len(self.last) > 2 * len(entries) + 8:  # forget finished tasks now and then
                live = m.sched.tasks
                self.last = {t: v for t, v in self.last.items() if t.task_id in live}
        main = entries[0]
        return main[2], main[3], main[4], tuple(entries)


_PROGRESS = (GatherFrame, RaceFrame)


def attach_on_step(m: Machine, on_step: Callable[[ExecutionSnapshot], object]) -> StepObserver:
    """Make `m` call `on_step` after every step; call `.finish(result)` on the returned observer
    when the run ends."""
    observer = StepObserver(m, on_step)
    m.set_hook("observer", observer.hook)
    return observer
