"""The CESK machine: frames (K), the step loop, handlers, and results."""

from doeff.cesk.frames import (
    CatchFrame,
    FinallyFrame,
    Frame,
    GatherFrame,
    ListenFrame,
    LocalFrame,
    ResumeFrame,
    ReturnFrame,
    SafeFrame,
)
from doeff.cesk.handlers import override
from doeff.cesk.machine import Machine
from doeff.cesk.result import CESKResult
from doeff.cesk.run import run_async, run_sync

__all__ = [
    "CESKResult",
    "CatchFrame",
    "FinallyFrame",
    "Frame",
    "GatherFrame",
    "ListenFrame",
    "LocalFrame",
    "Machine",
    "ResumeFrame",
    "ReturnFrame",
    "SafeFrame",
    "override",
    "run_async",
    "run_sync",
]
