"""`StepTap`: the listeners told of each step of one machine by its cache handlers.

Used only in runs that want steps (a `run_id=`, a `tracer=`): a look-up that finds a value
is a "hit"; a look-up that finds none starts a step, and the put of its key ends it as
"computed", its duration counted from the miss (so it covers the computation). The reporting
is done by the control's handler wrappers (`WorkflowControl.wrap`), on the machine's thread,
with the running task known, so listeners can tell tasks apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from doeff.cesk.tasks import Task
from doeff.protocols import DurableStorage


class StepListener(Protocol):
    """Told about the steps of one run, on the machine's thread."""

    # False for a listener whose step_started does nothing: the tap then does not call it (nor
    # read the clock for it) on every miss.
    wants_starts: bool

    def step_started(self, key: str, task: Task, at: float) -> None:
        """A look-up of `key` found nothing: the step's computation starts."""
        ...

    def step_ended(self, key: str, outcome: str, seconds: float, nbytes: int | None,
                   error: BaseException | None, task: Task) -> None:
        """A step ended: "hit" (read back) or "computed" (stored, or failing to store)."""
        ...


class StepTap:
    """The listeners of one run's steps, in the form the control's handler wrappers report to
    (`doeff.observability.monitor.StepReports`): `control.wrap_handlers(..., steps=tap)`."""

    def __init__(self, storage: DurableStorage | None, listeners: list[StepListener]) -> None:
        # Bound methods taken once: the wrappers run on every look-up and store.
        self.starts = [listener.step_started for listener in listeners
                       if listener.wants_starts]
        self.ends = [listener.step_ended for listener in listeners]
        sized = getattr(storage, "last_record_size", None)
        self.size: Callable[[], int | None] = sized if callable(sized) else _unknown
        self.misses: dict[str, float] = {}  # key -> when its look-up missed


def _unknown() -> int | None:
    return None


__all__ = ["StepListener", "StepTap"]
