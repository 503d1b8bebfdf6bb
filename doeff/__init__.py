"""doeff: effectful Python programs on an explicit CESK machine, with durable execution.

    from doeff import do, run_sync
    from doeff.effects import perform

    @do
    def hello(name):
        greeting = yield perform(str.upper, "hello")
        return f"{greeting}, {name}"

    run_sync(hello("Ada")).value   # 'HELLO, Ada'
"""

from doeff.cesk.handlers import override
from doeff.cesk.result import CESKResult
from doeff.effects.base import Effect
from doeff.errors import DoeffError
from doeff.outcome import Err, Ok
from doeff.program import KleisliProgram, Program, do
from doeff.runners import run_async, run_sync, run_workflow

__all__ = [
    "CESKResult",
    "DoeffError",
    "Effect",
    "Err",
    "KleisliProgram",
    "Ok",
    "Program",
    "do",
    "override",
    "run_async",
    "run_sync",
    "run_workflow",
]
