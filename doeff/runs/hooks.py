"""What a run given `run_id=` or `tracer=` adds to its machine: the step tap, the recorder,
the OpenTelemetry spans; the runners call `attach` once, before the run starts."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from doeff.cesk.machine import Machine
from doeff.cesk.result import CESKResult
from doeff.errors import InvalidOptionError
from doeff.observability.monitor import WorkflowControl
from doeff.observability.snapshot import ExecutionSnapshot
from doeff.runs.recorder import Recorder, new_run_id
from doeff.runs.steps import StepListener, StepTap
from doeff.runs.store import check_run_id, run_store


def attach(m: Machine, control: WorkflowControl, program: Any, *, run_id: str | bool | None,
           tracer: Any, handlers: Collection[type]) -> str | None:
    """Wrap `m`'s handlers ("parked" for the control, and steps), begin the run's record and
    its span; returns the run id (generated for `run_id=True`), or None when not recorded.
    Raises before anything runs: a bad option, a run id another live process runs."""
    name = getattr(program, "name", None) or type(program).__name__
    listeners: list[StepListener] = []
    recorder = None
    if run_id is not None and run_id is not False:
        if m.storage is None:
            raise InvalidOptionError("run_id= needs a storage to keep the run's record in")
        chosen = new_run_id(name) if run_id is True else check_run_id(run_id)
        recorder = Recorder(run_store(m.storage), chosen, control, name)
        listeners.append(recorder)
    spans = None
    if tracer is not None:
        from doeff.runs.otel import RunSpans  # only a run given a tracer loads OpenTelemetry

        spans = RunSpans(tracer, m, name, None if recorder is None else recorder.run_id)
        listeners.append(spans)
    control.wrap_handlers(handlers, StepTap(m.storage, listeners) if listeners else None)
    if recorder is not None:
        recorder.begin()

    def ended(result: CESKResult[Any], final: ExecutionSnapshot) -> None:
        if recorder is not None:
            recorder.end(result, final)
        if spans is not None:
            spans.end(result)

    control.on_end = ended
    if spans is not None:
        spans.begin()
    return None if recorder is None else recorder.run_id


__all__ = ["attach"]
