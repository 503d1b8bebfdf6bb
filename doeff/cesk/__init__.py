"""The CESK machine: frames (K), the step loop, handlers, results and tracebacks.

`run_sync` and `run_async` live one layer up, in `doeff.runners` (they wire storage and
observers into a machine); `from doeff.cesk import run_sync` keeps working through a lazy alias,
so that importing the machine never imports the layers above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from doeff.cesk.frames import (
    CacheFillFrame,
    CatchFrame,
    FinallyFrame,
    Frame,
    ListenFrame,
    LocalFrame,
    ResumeFrame,
    ReturnFrame,
    SafeFrame,
)
from doeff.cesk.handlers import override
from doeff.cesk.joins import GatherFrame, RaceFrame
from doeff.cesk.limits import LimitFrame
from doeff.cesk.machine import Machine
from doeff.cesk.result import CESKResult
from doeff.cesk.tasks import Task

if TYPE_CHECKING:
    from doeff.runners import run_async, run_sync

# Names served from the layer above, on first access (a plain import would be a cycle).
FROM_RUNNERS = frozenset({"run_async", "run_sync"})


def __getattr__(name: str) -> Any:
    if name in FROM_RUNNERS:
        value = getattr(importlib.import_module("doeff.runners"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CESKResult",
    "CacheFillFrame",
    "CatchFrame",
    "FinallyFrame",
    "Frame",
    "GatherFrame",
    "LimitFrame",
    "ListenFrame",
    "LocalFrame",
    "Machine",
    "RaceFrame",
    "ResumeFrame",
    "ReturnFrame",
    "SafeFrame",
    "Task",
    "override",
    "run_async",
    "run_sync",
]
