"""One error tree: every error doeff raises is a DoeffError; catch/safe never swallow misuse."""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

import doeff
import doeff.errors as errors
from doeff import CESKResult, Effect, do, run_sync, run_workflow
from doeff.effects import Get, await_, catch, gather, get, local, modify, perform, safe
from doeff.errors import (
    CancellationError,
    DoeffError,
    InvalidEffectError,
    InvalidHandlerError,
    InvalidOptionError,
    NotAProgramError,
    UsageError,
    WaitTimeoutError,
)
from doeff.storage import LMDBKV, SQLiteKV

ROOT = Path(doeff.__file__).parent
BUILTIN_ERRORS = {name for name in dir(builtins)
                  if isinstance(getattr(builtins, name), type)
                  and issubclass(getattr(builtins, name), BaseException)}
# Built-in exceptions doeff may raise itself, each because a Python protocol demands that type.
PROTOCOL_RAISES = {
    ("__getattr__", "AttributeError"),  # a module __getattr__ must raise AttributeError
    ("_refuse", "TypeError"),  # orjson's `default` hook signals "cannot encode" by TypeError
    ("close", "NotImplementedError"),  # abstract methods of base classes
    ("items", "NotImplementedError"),
    ("leave", "NotImplementedError"),
}


def raises_of_builtins() -> list[tuple[str, int, str, str]]:
    """(file, line, enclosing function, exception) for each `raise <built-in>(...)` in doeff."""
    found = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                    if isinstance(target, ast.Name) and target.id in BUILTIN_ERRORS:
                        found.append((str(path.relative_to(ROOT)), node.lineno, fn.name,
                                      target.id))
    return found


def test_doeff_raises_no_bare_builtin_exception() -> None:
    """No `raise TypeError(...)` and the like in doeff: each error is a DoeffError subclass."""
    bare = [f"{f}:{line} in {fn}: {exc}" for f, line, fn, exc in raises_of_builtins()
            if (fn, exc) not in PROTOCOL_RAISES]
    assert not bare, bare


def test_every_error_class_is_in_the_tree_and_exported() -> None:
    """Each exception class in doeff.errors derives from DoeffError (a warning from UserWarning)
    and is in __all__."""
    classes = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException)
               and obj.__module__ == errors.__name__ and obj.__name__ == name}
    assert all(issubclass(getattr(errors, n), UserWarning if n.endswith("Warning") else DoeffError)
               for n in classes)
    assert classes <= set(errors.__all__)


def test_cancellation_error_does_not_shadow_asyncio() -> None:
    """doeff's cancellation is its own class, unrelated to asyncio.CancelledError."""
    assert CancellationError.__name__ != "CancelledError"
    assert not issubclass(CancellationError, asyncio.CancelledError)
    assert "CancelledError" not in errors.__all__  # the old name stays importable only


@do
def needs_arg(x: int) -> Generator[Any, Any, int]:
    value: int = yield get("k", x)
    return value


def test_gather_of_a_non_program_is_a_doeff_error() -> None:
    """gather(42) fails the run with NotAProgramError (still a TypeError), naming the value."""
    result = run_sync(gather(42))  # type: ignore[arg-type]
    assert isinstance(result.error, NotAProgramError)
    assert isinstance(result.error, TypeError)
    assert "42 (int)" in str(result.error)


def test_running_an_uncalled_do_function_that_needs_arguments_says_so() -> None:
    """run_sync(f) for a @do function with parameters is refused by name, not a Python TypeError."""
    result: CESKResult[Any] = run_sync(needs_arg)  # type: ignore[arg-type]
    assert isinstance(result.error, NotAProgramError)
    assert "needs_arg" in str(result.error) and "call it" in str(result.error)


@pytest.mark.parametrize("wrap", [
    lambda p: catch(p, lambda err: "swallowed"),
    lambda p: safe(p),
], ids=["catch", "safe"])
def test_catch_and_safe_do_not_swallow_misuse(wrap: Any) -> None:
    """A misuse of doeff inside catch/safe still fails the run instead of answering a value."""
    result = run_sync(wrap(needs_arg))
    assert isinstance(result.error, NotAProgramError)
    result = run_sync(wrap(gather(object())))  # type: ignore[arg-type]
    assert isinstance(result.error, NotAProgramError)


def test_catch_still_catches_ordinary_errors() -> None:
    """Only misuse passes through: a program's own exception is caught as before."""

    def boom() -> int:
        raise ValueError("bad data")

    assert run_sync(catch(perform(boom), lambda err: str(err))).value == "bad data"


class Ping(Effect):
    """A user effect for the handler-table tests."""

    __slots__ = ()


@pytest.mark.parametrize("table", [
    {"Ping": lambda e: 1},  # a key that is not a class
    {Ping: 42},  # a handler that is not callable
    {Get: lambda e: 1},  # a built-in replaced without override()
], ids=["str-key", "not-callable", "builtin-without-override"])
def test_handler_table_mistakes_are_invalid_handler_errors(table: dict[Any, Any]) -> None:
    """Each mistake in handlers= is an InvalidHandlerError (a TypeError) raised before running."""
    with pytest.raises(InvalidHandlerError) as info:
        run_sync(get("k"), handlers=table)
    assert isinstance(info.value, TypeError) and isinstance(info.value, UsageError)


@pytest.mark.parametrize("kwargs", [
    {"env": [("k", 1)]}, {"state": "k=1"}, {"storage": {"k": 1}}, {"on_step": 3},
], ids=["env", "state", "storage", "on_step"])
def test_run_options_of_the_wrong_kind_are_refused(kwargs: dict[str, Any]) -> None:
    """A run option of the wrong kind is an InvalidOptionError naming the option."""
    name = next(iter(kwargs))
    with pytest.raises(InvalidOptionError, match=f"{name}="):
        run_sync(get("k"), **kwargs)


def test_backend_options_are_invalid_option_errors(tmp_path: Path) -> None:
    """A durability mode a backend does not know is an InvalidOptionError (a ValueError)."""
    with pytest.raises(InvalidOptionError, match="durability"):
        SQLiteKV(tmp_path / "a.db", durability="sometimes")
    with pytest.raises(ValueError, match="durability"):
        LMDBKV(tmp_path / "b", durability="sometimes")


def test_waiting_too_long_is_a_doeff_timeout() -> None:
    """WorkflowExecution.wait(timeout) gives up with WaitTimeoutError, also a TimeoutError."""
    import threading

    release = threading.Event()
    execution = run_workflow(perform(release.wait, 10))
    try:
        with pytest.raises(TimeoutError) as info:
            execution.wait(timeout=0.05)
        assert isinstance(info.value, WaitTimeoutError)
    finally:
        release.set()
    assert execution.wait(timeout=10).value is True


@pytest.mark.parametrize("build", [
    lambda: local([("k", 1)], get("k")),  # type: ignore[arg-type]
    lambda: catch(get("k"), "not a handler"),  # type: ignore[arg-type]
    lambda: await_(asyncio.sleep),  # type: ignore[arg-type]
    lambda: await_(42),  # type: ignore[arg-type]
], ids=["local-updates", "catch-handler", "await-uncalled", "await-int"])
def test_effects_built_from_unusable_arguments_are_refused_at_once(build: Any) -> None:
    """Building local/catch/await_ from arguments they cannot use raises InvalidEffectError."""
    with pytest.raises(InvalidEffectError) as info:
        build()
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("eff", [perform(42), modify("k", "upper")],  # type: ignore[arg-type]
                         ids=["perform", "modify"])
def test_calling_something_not_callable_is_a_misuse_not_caught(eff: Any) -> None:
    """perform/modify of a non-callable fails the run with InvalidEffectError, even in safe()."""
    result = run_sync(safe(eff))
    assert isinstance(result.error, InvalidEffectError)
    assert "must be callable" in str(result.error)


def test_a_functions_own_type_error_stays_catchable() -> None:
    """A TypeError raised inside a callable perform is the program's own error: catchable."""
    result = run_sync(safe(perform(len, 42)))
    assert isinstance(result.value.error, TypeError)
    assert not isinstance(result.value.error, DoeffError)
