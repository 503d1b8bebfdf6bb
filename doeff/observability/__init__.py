"""Observability: snapshots of a running machine, a thread-safe monitor, background workflows.

    from doeff import run_sync, run_workflow

    run_sync(pipeline(), on_step=lambda snap: print(snap.step_count, snap.k_stack[0].description))

    execution = run_workflow(pipeline())
    print(execution.monitor.snapshot())     # from any thread, at any time
    result = execution.wait()

See docs/observability.md. (`run_workflow` itself lives with the other runners, in
`doeff.runners`.)
"""

from doeff.observability.monitor import ExecutionMonitor, WorkflowControl, WorkflowExecution
from doeff.observability.snapshot import (
    ExecutionSnapshot,
    ExecutionStatus,
    KFrameSnapshot,
    StepObserver,
    TaskSnapshot,
    attach_on_step,
)

__all__ = [
    "ExecutionMonitor",
    "ExecutionSnapshot",
    "ExecutionStatus",
    "KFrameSnapshot",
    "StepObserver",
    "TaskSnapshot",
    "WorkflowControl",
    "WorkflowExecution",
    "attach_on_step",
]
