"""Observability at the import path doeff's API names: snapshots and the monitor (from
`doeff.observability`) and `run_workflow` (from `doeff.runners`)."""

from doeff.observability import (
    ExecutionMonitor,
    ExecutionSnapshot,
    ExecutionStatus,
    KFrameSnapshot,
    StepObserver,
    TaskSnapshot,
    WorkflowExecution,
    attach_on_step,
)
from doeff.runners import run_workflow

__all__ = [
    "ExecutionMonitor",
    "ExecutionSnapshot",
    "ExecutionStatus",
    "KFrameSnapshot",
    "StepObserver",
    "TaskSnapshot",
    "WorkflowExecution",
    "attach_on_step",
    "run_workflow",
]
