"""doeff: effectful Python programs on an explicit CESK machine, with durable execution.

    from doeff import do, run_sync
    from doeff.effects import perform

    @do
    def hello(name):
        greeting = yield perform(str.upper, "hello")
        return f"{greeting}, {name}"

    run_sync(hello("Ada")).value   # 'HELLO, Ada'

The names below are loaded on first use, so that `import doeff.storage` or the `doeff` command
does not pay for the machine and asyncio it never runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from doeff.cesk.handlers import override
    from doeff.cesk.result import CESKResult
    from doeff.effects.base import Effect
    from doeff.effects.retry import Retry, retry
    from doeff.effects.timeout import timeout
    from doeff.errors import DoeffError
    from doeff.outcome import Err, Ok
    from doeff.program import KleisliProgram, Program, do
    from doeff.runners import run_async, run_sync, run_workflow
    from doeff.steps.step import step

# Public name -> the module that defines it.
_HOMES = {
    "CESKResult": "doeff.cesk.result",
    "DoeffError": "doeff.errors",
    "Effect": "doeff.effects.base",
    "Err": "doeff.outcome",
    "KleisliProgram": "doeff.program",
    "Ok": "doeff.outcome",
    "Program": "doeff.program",
    "Retry": "doeff.effects.retry",
    "do": "doeff.program",
    "override": "doeff.cesk.handlers",
    "retry": "doeff.effects.retry",
    "run_async": "doeff.runners",
    "run_sync": "doeff.runners",
    "run_workflow": "doeff.runners",
    "step": "doeff.steps.step",
    "timeout": "doeff.effects.timeout",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "CESKResult",
    "DoeffError",
    "Effect",
    "Err",
    "KleisliProgram",
    "Ok",
    "Program",
    "Retry",
    "do",
    "override",
    "retry",
    "run_async",
    "run_sync",
    "run_workflow",
    "step",
    "timeout",
]
