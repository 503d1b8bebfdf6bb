"""The public API's types, pinned: `mypy --strict tests` (part of `make lint`) checks each
`assert_type` below, so a signature that loses its type parameter (a result typed `Any`, a
`KleisliProgram` whose arguments are forgotten) fails lint; the same calls run here for real."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, assert_type

from doeff import CESKResult, KleisliProgram, Program, do, run_async, run_sync, run_workflow
from doeff.effects import get, perform, put
from doeff.observability import WorkflowExecution
from doeff.protocols import DurableStorage
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, InMemoryKV


@do
def greet(name: str, times: int = 1) -> Generator[Any, Any, str]:
    yield put("count", times)
    count: int = yield get("count")
    return f"hello {name}" * count


def test_do_keeps_the_functions_parameters_and_return_type() -> None:
    """`@do` gives a KleisliProgram typed by the function's parameters and return type; calling
    it gives a Program of that type, and a wrong argument type is a type error."""
    assert isinstance(greet, KleisliProgram)
    program = greet("ada")
    assert_type(program, Program[str])
    assert isinstance(program, Program)
    # The parameters are checked: a wrong argument is a type error (mypy --strict warns about an
    # unused ignore, so this line fails lint the day `@do` stops checking arguments).
    assert isinstance(greet(1), Program)  # type: ignore[arg-type]


def test_runners_answer_a_result_of_the_programs_type() -> None:
    """run_sync, run_async and run_workflow answer CESKResult[T] / WorkflowExecution[T] for a
    Program[T]; an effect run on its own answers CESKResult[Any]."""
    result = run_sync(greet("ada", 2))
    assert_type(result, CESKResult[str])
    assert_type(result.value, str)
    assert result.value == "hello adahello ada"

    later = asyncio.run(run_async(greet("bob")))
    assert_type(later, CESKResult[str])
    assert later.value == "hello bob"

    execution = run_workflow(greet("cy"))
    assert_type(execution, WorkflowExecution[str])
    assert execution.wait(30).value == "hello cy"

    effect_result = run_sync(perform(len, "four"))
    assert_type(effect_result, CESKResult[Any])
    assert effect_result.value == 4


def test_a_durable_store_is_a_durable_storage() -> None:
    """Durable satisfies the DurableStorage protocol that run_sync's storage= names."""
    with Durable(InMemoryKV(), MsgpackCodec()) as storage:
        typed: DurableStorage = storage
        assert run_sync(greet("dee"), storage=typed).value == "hello dee"
