"""OpenTelemetry spans for a run given `tracer=`: one span for the run, one per step.

Needs the `otel` extra (`pip install -e '/path/to/doeff[otel]'`); imported only by a run given
a tracer.

A step's span starts when its look-up misses and ends when its value is stored ("computed"),
so it covers the computation, and the steps that computation runs are its children; a hit is a
short span of its own. Tasks: a task's steps are children of the span that was open, in the
task that spawned it, when it was spawned (found by task ids, which grow with every task: a
span opened before a task's id was handed out, and not closed by then, was open at its spawn).
Attributes: `step.key`, `step.outcome` ("hit" or "computed"), `step.codec`,
`step.bytes`, `step.seconds`; a failed store records the exception and an error
status. The run's span carries `run.program` and `run.id`.
"""

from __future__ import annotations

import time
from typing import Any

from doeff.cesk.machine import Machine
from doeff.cesk.result import CESKResult
from doeff.cesk.tasks import Task
from doeff.errors import InvalidOptionError, MissingExtraError, install_hint

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is installed by `make test`
    raise MissingExtraError(
        f"tracer= needs OpenTelemetry ({exc}); install it with {install_hint('otel')}"
    ) from exc

_KEEP_CLOSED = 256  # closed spans remembered per task, to parent tasks spawned under them
_OPEN = float("inf")


class _Entry:
    """A step span of one task: its key, the task id sequence at its opening and closing."""

    __slots__ = ("closed_at", "key", "opened_at", "order", "span")

    def __init__(self, key: str, span: Span, opened_at: int, order: int) -> None:
        self.key = key
        self.span = span
        self.opened_at = opened_at
        self.order = order  # which opened later, among spans opened between the same spawns
        self.closed_at: float = _OPEN


class RunSpans:
    """The spans of one run (a StepListener; every call on the machine's thread)."""

    def __init__(self, tracer: Any, m: Machine, program: str, run_id: str | None) -> None:
        if not hasattr(tracer, "start_span"):
            raise InvalidOptionError(
                f"tracer= must be an OpenTelemetry Tracer (e.g. trace.get_tracer(__name__)), "
                f"got {type(tracer).__name__} {tracer!r:.60}"
            )
        self.tracer = tracer
        self.m = m
        self.program = program
        self.run_id = run_id
        storage = m.storage
        self.codec = getattr(getattr(storage, "codec", None), "tag", None)
        self.run: Span | None = None
        self.open: dict[int, list[_Entry]] = {}  # task id -> its open step spans, innermost last
        self.closed: dict[int, list[_Entry]] = {}  # task id -> its latest closed ones
        self.opened = 0

    def begin(self) -> None:
        """Start the run's span (a child of the caller's current span, if any)."""
        attributes: dict[str, str] = {"run.program": self.program}
        if self.run_id is not None:
            attributes["run.id"] = self.run_id
        self.run = self.tracer.start_span(f"doeff run {self.program}", attributes=attributes)

    def end(self, result: CESKResult[Any]) -> None:
        """End every span still open, then the run's (an error status if it failed)."""
        err = result.error
        for entries in self.open.values():
            for entry in reversed(entries):
                entry.span.set_status(Status(StatusCode.ERROR, "the run ended before the step "
                                                                 "stored its value"))
                entry.span.end()
        self.open.clear()
        run = self.run
        if run is None:
            return
        if err is not None:
            run.record_exception(err)
            run.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
        run.end()

    # -- steps ---------------------------------------------------------------------------------

    wants_starts = True  # a step's span starts at its miss

    def step_started(self, key: str, task: Task, at: float) -> None:
        """A look-up missed: the step's span starts, under the span its task runs in."""
        span = self._start(key, self._parent(task), time.time_ns())
        self.opened += 1
        self.open.setdefault(task.task_id, []).append(
            _Entry(key, span, self.m.sched.next_id, self.opened))

    def step_ended(self, key: str, outcome: str, seconds: float, nbytes: int | None,
                   error: BaseException | None, task: Task) -> None:
        """A hit gets a span of its own; a computed step ends the span its miss started."""
        now = time.time_ns()
        entry = self._pop(task.task_id, key) if outcome == "computed" else None
        span = entry.span if entry is not None else self._start(
            key, self._parent(task), now - int(seconds * 1e9))
        span.set_attribute("step.outcome", outcome)
        span.set_attribute("step.seconds", seconds)
        if nbytes is not None:
            span.set_attribute("step.bytes", nbytes)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=now)

    def _start(self, key: str, parent: Span | None, start: int) -> Span:
        attributes: dict[str, Any] = {"step.key": key}
        if self.codec is not None:
            attributes["step.codec"] = self.codec
        context = trace.set_span_in_context(parent) if parent is not None else None
        span: Span = self.tracer.start_span(f"doeff step {key}", context=context,
                                            attributes=attributes, start_time=start)
        return span

    def _pop(self, task_id: int, key: str) -> _Entry | None:
        entries = self.open.get(task_id)
        if not entries:
            return None
        for i in range(len(entries) - 1, -1, -1):
            if entries[i].key == key:
                entry = entries.pop(i)
                entry.closed_at = self.m.sched.next_id
                closed = self.closed.setdefault(task_id, [])
                closed.append(entry)
                if len(closed) > _KEEP_CLOSED:
                    del closed[0]
                return entry
        return None

    def _parent(self, task: Task) -> Span | None:
        """The innermost open step span of `task`, else the one open in its parent when it was
        spawned (and so on up), else the run's span."""
        entries = self.open.get(task.task_id)
        if entries:
            return entries[-1].span
        child = task
        while child.parent is not None:
            parent = child.parent
            spawned = child.task_id
            best: _Entry | None = None
            for entry in (*self.closed.get(parent.task_id, ()), *self.open.get(parent.task_id, ())):
                if entry.opened_at <= spawned < entry.closed_at and (
                        best is None or entry.order > best.order):
                    best = entry
            if best is not None:
                return best.span
            child = parent
        return self.run


__all__ = ["RunSpans"]
