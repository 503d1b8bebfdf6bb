"""Programs: `@do`, laziness, reuse, `yield from`, non-generator bodies and bad yields."""

from __future__ import annotations

from typing import Any

import pytest

from doeff import CESKResult, KleisliProgram, Program, do, run_sync
from doeff.effects import get, perform, put
from doeff.errors import InvalidYieldError, NotAProgramError, ProgramError


def test_do_returns_a_lazy_program() -> None:
    """Calling a @do function runs nothing until a machine runs the program."""
    calls: list[int] = []

    @do
    def prog() -> Any:
        calls.append(1)
        return (yield perform(lambda: 5))

    p = prog()
    assert isinstance(prog, KleisliProgram)
    assert isinstance(p, Program)
    assert calls == []
    assert run_sync(p).value == 5
    assert calls == [1]


def test_same_program_object_runs_twice_from_the_start() -> None:
    """Running one program object twice runs its body twice, each from the beginning."""
    seen: list[str] = []

    @do
    def prog() -> Any:
        seen.append("start")
        x = yield get("x", 0)
        yield put("x", x + 1)
        return x + 1

    p = prog()
    assert run_sync(p).value == 1
    assert run_sync(p).value == 1
    assert seen == ["start", "start"]


def test_yield_program_and_yield_from_both_return_the_subprogram_value() -> None:
    """`yield sub()` and `yield from sub()` both resume with the sub-program's return value."""

    @do
    def sub(n: int) -> Any:
        v = yield perform(lambda: n * 10)
        return v + 1

    @do
    def main() -> Any:
        a = yield sub(1)
        b = yield from sub(2)
        return a, b

    assert run_sync(main()).value == (11, 21)


def test_sub_programs_get_their_keyword_arguments_and_subclasses_start_themselves() -> None:
    """A sub-program called with keyword arguments gets them, generator or not; a Program
    subclass with a start of its own is started by it and named by its own `name`."""

    @do
    def scaled(x: int, *, by: int = 1) -> Any:
        return (yield perform(lambda: x * by))

    @do
    def plain(x: int, *, by: int = 1) -> int:
        return x * by

    class Doubled(Program[Any]):
        __slots__ = ()

        def start(self) -> Any:
            return self.fn(*self.args, by=2)

        @property
        def name(self) -> str:
            return "doubled"

    names: list[str] = []

    @do
    def outer() -> Any:
        a = yield scaled(3, by=5)
        b = yield plain(x=4, by=10)
        c = yield Doubled(scaled.fn, (7,))
        return a, b, c

    def watch(snapshot: Any) -> None:
        names.extend(frame.description for frame in snapshot.k_stack)

    assert run_sync(outer(), on_step=watch).value == (15, 40, 14)
    shown = " | ".join(names)
    assert "doubled() waiting at" in shown
    assert "<locals>.scaled() waiting at" in shown


def test_non_generator_do_function_works() -> None:
    """A @do function whose body never yields is a program answering its return value."""

    @do
    def plain(x: int) -> int:
        return x * 2

    @do
    def main() -> Any:
        a = yield plain(4)
        b = yield from plain(5)
        return a + b

    assert run_sync(plain(3)).value == 6
    assert run_sync(main()).value == 18


def test_do_on_a_method_binds_self() -> None:
    """`@do` on a method receives `self` like a plain method."""

    class Counter:
        def __init__(self) -> None:
            self.base = 7

        @do
        def plus(self, n: int) -> Any:
            v = yield perform(lambda: n)
            return self.base + v

    assert run_sync(Counter().plus(3)).value == 10


def test_yielding_a_plain_value_names_value_and_line() -> None:
    """Yielding a non-effect non-program fails with InvalidYieldError naming value and line."""

    @do
    def bad() -> Any:
        yield 42  # the offending line
        return None

    result = run_sync(bad())
    assert result.is_err()
    assert isinstance(result.error, InvalidYieldError)
    assert isinstance(result.error, ProgramError)
    msg = str(result.error)
    assert "42 (int)" in msg
    assert "bad()" in msg
    assert "the offending line" in msg
    assert __file__ in msg


def test_yielding_an_uncalled_do_function_hints_to_call_it() -> None:
    """Yielding a @do function itself (not its call) says to call it."""

    @do
    def sub() -> Any:
        return 1
        yield

    @do
    def bad() -> Any:
        return (yield sub)

    err = run_sync(bad()).error
    assert isinstance(err, InvalidYieldError)
    assert "call it" in str(err)


def test_invalid_yield_can_be_caught_inside_the_program() -> None:
    """The invalid-yield error is raised at the yield, so the program can catch it."""

    @do
    def prog() -> Any:
        try:
            yield "not an effect"
        except InvalidYieldError:
            return "caught"
        return "missed"

    assert run_sync(prog()).value == "caught"


def test_run_sync_rejects_non_programs_clearly() -> None:
    """Passing something that is not a program to run_sync is an error saying what arrived."""
    result: CESKResult[Any] = run_sync(123)  # type: ignore[call-overload]
    assert isinstance(result.error, NotAProgramError) and isinstance(result.error, TypeError)
    assert "123 (int)" in str(result.error)


def test_uncalled_zero_argument_do_function_runs() -> None:
    """An uncalled zero-argument @do function given to run_sync is called (ISSUE-CORE-424 types
    run_sync's program as a KleisliProgram)."""

    @do
    def prog() -> Any:
        return (yield perform(lambda: "ran"))

    assert run_sync(prog).value == "ran"


def test_generator_errors_from_bad_arguments_surface_as_errors() -> None:
    """A sub-program called with wrong arguments raises TypeError at the caller's yield."""

    @do
    def sub(a: int) -> Any:
        return a
        yield

    @do
    def main() -> Any:
        try:
            yield sub(1, 2, 3)  # type: ignore[call-arg]
        except TypeError as err:
            return str(err)
        return None

    assert "positional argument" in run_sync(main()).value


def test_program_repr_names_function_and_arguments() -> None:
    """A program's repr names its function and arguments."""

    @do
    def fetch(url: str) -> Any:
        return url
        yield

    assert "fetch('http://x')" in repr(fetch("http://x"))


@pytest.mark.parametrize("n", [0, 1, 5])
def test_program_results_are_independent_of_previous_runs(n: int) -> None:
    """Each run starts with the state it is given, not state left by an earlier run."""

    @do
    def count() -> Any:
        for _ in range(n):
            v = yield get("c", 0)
            yield put("c", v + 1)
        return (yield get("c", 0))

    p = count()
    assert run_sync(p).value == n
    assert run_sync(p, state={"c": 100}).value == 100 + n
