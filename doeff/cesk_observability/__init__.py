"""Observability: snapshots of a running machine, a thread-safe monitor, background workflows.

    from doeff import run_sync, run_workflow

    run_sync(pipeline(), on_step=lambda snap: print(snap.step_count, snap.k_stack[0].description))

    execution = run_workflow(pipeline())
    print(execution.monitor.snapshot())     # from any thread, at any time
    result = execution.wait()

See docs/observability.md.
"""

from doeff.cesk_observability.snapshot import (
    ExecutionSnapshot,
    ExecutionStatus,
    KFrameSnapshot,
    StepObserver,
    attach_on_step,
)
from doeff.cesk_observability.workflow import ExecutionMonitor, WorkflowExecution, run_workflow

__all__ = [
    "ExecutionMonitor",
    "ExecutionSnapshot",
    "ExecutionStatus",
    "KFrameSnapshot",
    "StepObserver",
    "WorkflowExecution",
    "attach_on_step",
    "run_workflow",
]
