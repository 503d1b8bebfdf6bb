"""Runs you can see from anywhere: records of runs given a `run_id=`, kept in their store.

    from doeff import run_workflow
    from doeff.runs import get_run, list_runs

    execution = run_workflow(pipeline(), storage=storage, run_id="nightly-2024-05-01")
    # ... from any process that can open the store:
    record = get_run(storage, "nightly-2024-05-01")
    print(record.status, record.current_effect, record.tasks[0].k_stack[0].description)

A record holds the run's status, heartbeat, host and pid, every task's K stack, its steps (hit
or computed, with durations and sizes) and its error; a run whose process died reads as "lost",
with the K stack of its last heartbeat. `doeff runs ls|show|watch|cancel STORE` is the shell's
view. See docs/runs.md.
"""

from doeff.runs.api import (
    cancel_run,
    delete_run,
    get_run,
    list_runs,
    pause_run,
    pending_request,
    prune_runs,
    resume_run,
)
from doeff.runs.record import (
    LOST_AFTER,
    AttemptInfo,
    EffectInfo,
    ErrorInfo,
    FrameInfo,
    RunRecord,
    RunStatus,
    StepInfo,
    TaskInfo,
)

__all__ = [
    "LOST_AFTER",
    "AttemptInfo",
    "EffectInfo",
    "ErrorInfo",
    "FrameInfo",
    "RunRecord",
    "RunStatus",
    "StepInfo",
    "TaskInfo",
    "cancel_run",
    "delete_run",
    "get_run",
    "list_runs",
    "pause_run",
    "pending_request",
    "prune_runs",
    "resume_run",
]
