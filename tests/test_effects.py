"""Built-in effects: reader, state, writer, errors, IO, async, gather, and user effects."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from doeff import Effect, Err, Ok, do, override, run_async, run_sync
from doeff.effects import (
    Get,
    ask,
    await_,
    catch,
    finally_,
    gather,
    get,
    listen,
    local,
    modify,
    perform,
    put,
    safe,
    tell,
)
from doeff.errors import DoeffError, EnvKeyError, ForeignLoopError, UnhandledEffectError


@do
def raising(exc: BaseException) -> Any:
    yield perform(lambda: None)
    raise exc


@do
def returning(value: Any) -> Any:
    yield perform(lambda: None)
    return value


# -- reader -------------------------------------------------------------------------------------


def test_ask_reads_the_environment() -> None:
    """ask answers the value given in run_sync(env=...)."""

    @do
    def prog() -> Any:
        return (yield ask("user"))

    assert run_sync(prog(), env={"user": "ada"}).value == "ada"


def test_local_changes_env_only_inside_and_restores_it() -> None:
    """local's updates are seen inside its sub-program and gone after, even after an error."""

    @do
    def inner() -> Any:
        return (yield ask("user")), (yield ask("role"))

    @do
    def failing() -> Any:
        yield ask("user")
        raise ValueError("inside")

    @do
    def prog() -> Any:
        inside = yield local({"user": "bob"}, inner())
        after = yield ask("user")
        r = yield safe(local({"user": "eve"}, failing()))
        after_error = yield ask("user")
        return inside, after, r.is_err(), after_error

    result = run_sync(prog(), env={"user": "ada", "role": "admin"})
    assert result.value == (("bob", "admin"), "ada", True, "ada")


def test_ask_missing_key_is_a_clear_error() -> None:
    """Asking for a key the environment lacks raises EnvKeyError naming the key and the fix."""

    @do
    def prog() -> Any:
        return (yield ask("missing"))

    err = run_sync(prog(), env={"present": 1}).error
    assert isinstance(err, EnvKeyError) and isinstance(err, KeyError)
    assert "'missing'" in str(err) and "'present'" in str(err) and "env=" in str(err)


# -- state --------------------------------------------------------------------------------------


def test_state_get_put_modify() -> None:
    """get/put/modify act on the store; the final store is in the result."""

    @do
    def prog() -> Any:
        a = yield get("n")
        yield put("n", 1)
        b = yield modify("n", lambda v: v + 10)
        c = yield get("n")
        d = yield modify("fresh", lambda v: v * 2, default=21)
        return a, b, c, d

    result = run_sync(prog(), state={"x": "kept"})
    assert result.value == (None, 11, 11, 42)
    assert result.state == {"x": "kept", "n": 11, "fresh": 42}


def test_state_is_shared_with_subprograms() -> None:
    """Sub-programs see and change the same store as their caller."""

    @do
    def incr() -> Any:
        yield modify("c", lambda v: v + 1, default=0)

    @do
    def prog() -> Any:
        for _ in range(3):
            yield incr()
        return (yield get("c"))

    assert run_sync(prog()).value == 3


# -- writer -------------------------------------------------------------------------------------


def test_tell_appends_and_listen_captures_subprogram_log() -> None:
    """listen answers the sub-program's value and exactly the entries it wrote."""

    @do
    def sub() -> Any:
        yield tell("a")
        yield tell("b")
        return "v"

    @do
    def prog() -> Any:
        yield tell("before")
        got = yield listen(sub())
        yield tell("after")
        return got

    result = run_sync(prog())
    assert result.value == ("v", ["a", "b"])
    assert result.log == ["before", "a", "b", "after"]


def test_nested_listen_sees_inner_entries() -> None:
    """An outer listen includes what an inner listen captured."""

    @do
    def prog() -> Any:
        yield tell(0)
        inner = yield listen(tell(1))
        return inner

    @do
    def outer() -> Any:
        return (yield listen(prog()))

    (inner, entries) = run_sync(outer()).value
    assert inner == (None, [1])
    assert entries == [0, 1]


# -- errors -------------------------------------------------------------------------------------


def test_raise_propagates_through_subprograms_to_python_except() -> None:
    """A raise deep in sub-programs reaches a try/except around the outer yield."""

    @do
    def mid() -> Any:
        return (yield raising(KeyError("deep")))

    @do
    def prog() -> Any:
        try:
            yield mid()
        except KeyError as err:
            return f"caught {err}"
        return "no"

    assert run_sync(prog()).value == "caught 'deep'"


def test_catch_runs_handler_on_error_only() -> None:
    """catch passes values through and answers the handler's result on error."""

    @do
    def prog() -> Any:
        ok = yield catch(returning(1), lambda e: "handled")
        bad = yield catch(raising(ValueError("x")), lambda e: f"handled {e}")
        prog_handler = yield catch(raising(ValueError("y")), lambda e: returning(f"prog {e}"))
        return ok, bad, prog_handler

    assert run_sync(prog()).value == (1, "handled x", "prog y")


def test_catch_handler_error_replaces_original_with_context() -> None:
    """An error raised by a catch handler propagates, with the original as its context."""

    def handler(e: BaseException) -> Any:
        raise RuntimeError("handler failed")

    @do
    def prog() -> Any:
        return (yield catch(raising(ValueError("orig")), handler))

    err = run_sync(prog()).error
    assert isinstance(err, RuntimeError)
    assert isinstance(err.__context__, ValueError)


def test_finally_runs_on_success_and_keeps_value() -> None:
    """finally runs its cleanup after success and answers the program's value."""

    @do
    def prog() -> Any:
        v = yield finally_(returning("v"), tell("cleanup"))
        return v

    result = run_sync(prog())
    assert result.value == "v"
    assert result.log == ["cleanup"]


def test_finally_runs_on_error_and_reraises() -> None:
    """finally runs its cleanup after an error, then the error continues outward."""

    @do
    def prog() -> Any:
        yield finally_(raising(ValueError("boom")), tell("cleanup"))
        return "unreachable"

    result = run_sync(prog())
    assert isinstance(result.error, ValueError)
    assert result.log == ["cleanup"]


def test_finally_after_inner_catch_sees_success() -> None:
    """An error already handled by an inner catch reaches finally as a success."""

    @do
    def prog() -> Any:
        return (yield finally_(catch(raising(ValueError("x")), lambda e: "recovered"),
                               tell("cleanup")))

    result = run_sync(prog())
    assert result.value == "recovered"
    assert result.log == ["cleanup"]


def test_catch_outside_finally_sees_error_after_cleanup() -> None:
    """catch(finally(failing, cleanup)): cleanup runs first, then the handler gets the error."""

    @do
    def prog() -> Any:
        return (yield catch(finally_(raising(ValueError("x")), tell("cleanup")),
                            lambda e: returning(f"handled {e}")))

    result = run_sync(prog())
    assert result.value == "handled x"
    assert result.log == ["cleanup"]


def test_cleanup_error_replaces_original_error() -> None:
    """As in Python, an error in cleanup replaces the original, which becomes its context."""

    @do
    def prog() -> Any:
        yield finally_(raising(ValueError("original")), raising(RuntimeError("cleanup")))

    err = run_sync(prog()).error
    assert isinstance(err, RuntimeError) and str(err) == "cleanup"
    assert isinstance(err.__context__, ValueError)


def test_cleanup_error_after_success_fails_the_program() -> None:
    """A cleanup that raises after a successful program makes the whole finally fail."""

    @do
    def prog() -> Any:
        return (yield finally_(returning(1), raising(RuntimeError("cleanup"))))

    assert isinstance(run_sync(prog()).error, RuntimeError)


def test_nested_finally_cleanups_run_innermost_first() -> None:
    """Nested finally blocks clean up innermost first, on success and on error."""

    @do
    def prog(fail: bool) -> Any:
        body = raising(ValueError("x")) if fail else returning(1)
        return (yield finally_(local({"k": 1}, finally_(body, tell("inner"))), tell("outer")))

    for fail in (False, True):
        result = run_sync(prog(fail))
        assert result.log == ["inner", "outer"]
        assert result.is_err() == fail


def test_listen_inside_catch_and_local_inside_finally_orderings() -> None:
    """listen around a failing catch still answers the log; local is restored before cleanup."""

    @do
    def body() -> Any:
        yield tell("body")
        raise ValueError("x")

    @do
    def cleanup() -> Any:
        yield tell(("cleanup sees", (yield ask("k"))))

    @do
    def prog() -> Any:
        got = yield listen(catch(body(), lambda e: "caught"))
        yield finally_(local({"k": "inner"}, tell("in local")), cleanup())
        return got

    result = run_sync(prog(), env={"k": "outer"})
    assert result.value == ("caught", ["body"])
    assert result.log == ["body", "in local", ("cleanup sees", "outer")]


def test_safe_answers_ok_or_err() -> None:
    """safe answers Ok(value) or Err(exception) instead of raising."""

    @do
    def prog() -> Any:
        return (yield safe(returning(3))), (yield safe(raising(ValueError("e"))))

    ok, err = run_sync(prog()).value
    assert ok == Ok(3) and ok.is_ok()
    assert isinstance(err, Err) and err.is_err() and isinstance(err.error, ValueError)
    with pytest.raises(ValueError):
        err.unwrap()


def test_keyboard_interrupt_passes_catch_and_safe_runs_cleanups_then_escapes() -> None:
    """A KeyboardInterrupt is not stopped by catch or safe: the finally_ cleanup and the
    program's own `finally:` run (innermost first), then run_sync re-raises it."""
    events: list[str] = []

    def interrupt() -> None:
        events.append("interrupt")
        raise KeyboardInterrupt

    def handler(e: BaseException) -> str:
        events.append(f"catch handler saw {type(e).__name__}")
        return "swallowed"

    @do
    def prog() -> Any:
        try:
            guarded = finally_(perform(interrupt), perform(events.append, "finally_ cleanup"))
            yield safe(catch(guarded, handler))
        finally:
            yield perform(events.append, "python finally")
        yield perform(events.append, "after the try")  # never reached

    with pytest.raises(KeyboardInterrupt):
        run_sync(prog())
    assert events == ["interrupt", "finally_ cleanup", "python finally"]


def test_result_value_raises_the_error() -> None:
    """CESKResult.value and unwrap() raise the program's error; error/is_err describe it."""
    result = run_sync(raising(ValueError("v")))
    assert result.is_err() and not result.is_ok()
    with pytest.raises(ValueError, match="v"):
        _ = result.value
    with pytest.raises(ValueError):
        result.unwrap()


# -- IO and async ---------------------------------------------------------------------------------


def test_perform_calls_with_args_and_kwargs() -> None:
    """perform(fn, *args, **kwargs) answers fn's return value."""

    @do
    def prog() -> Any:
        return (yield perform(lambda a, b=0: a + b, 2, b=3))

    assert run_sync(prog()).value == 5


def test_perform_error_is_raised_at_the_yield() -> None:
    """An exception from perform's function is raised inside the program at its yield."""

    @do
    def prog() -> Any:
        try:
            yield perform(int, "not a number")
        except ValueError:
            return "caught"
        return "no"

    assert run_sync(prog()).value == "caught"


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


@do
def awaiting() -> Any:
    a = yield await_(_double(2))
    b = yield await_(_double(a))
    return b


def test_await_without_running_loop() -> None:
    """run_sync awaits coroutines in a thread that has no event loop."""
    assert run_sync(awaiting()).value == 8


def test_await_inside_running_loop() -> None:
    """run_sync works inside a running event loop (as in a Jupyter cell or async def)."""

    async def main() -> Any:
        return run_sync(awaiting()).value

    assert asyncio.run(main()) == 8


def test_awaiting_a_future_of_the_blocked_loop_is_a_clear_error() -> None:
    """run_sync inside a loop cannot await that loop's futures: ForeignLoopError says why."""

    @do
    def prog() -> Any:
        loop = yield perform(asyncio.get_running_loop)
        return (yield await_(loop.create_future()))

    async def main() -> Any:
        return run_sync(prog()).error

    err = asyncio.run(main())
    assert isinstance(err, ForeignLoopError) and isinstance(err, DoeffError)
    assert "run_async" in str(err)


def test_await_in_a_worker_thread() -> None:
    """run_sync awaits in a non-main thread that has no loop."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(run_sync(awaiting()).value))
    t.start()
    t.join()
    assert out == [8]


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_run_async_awaits_on_the_callers_loop() -> None:
    """run_async awaits on the running loop, so loop-bound futures work."""

    @do
    def prog() -> Any:
        loop = yield await_(_running_loop())
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "from loop")
        return (yield await_(fut)), (yield await_(_double(5)))

    result = asyncio.run(run_async(prog()))
    assert result.value == ("from loop", 10)


def test_await_error_is_raised_at_the_yield() -> None:
    """An exception from an awaited coroutine is raised in the program, sync and async."""

    async def fail() -> None:
        raise ValueError("async boom")

    @do
    def prog() -> Any:
        try:
            yield await_(fail())
        except ValueError as err:
            return str(err)
        return None

    assert run_sync(prog()).value == "async boom"
    assert asyncio.run(run_async(prog())).value == "async boom"


def test_gather_answers_results_in_order() -> None:
    """gather runs programs and effects and answers their results in order."""

    @do
    def prog() -> Any:
        return (yield gather(returning(1), perform(lambda: 2), returning(3)))

    assert run_sync(prog()).value == [1, 2, 3]
    assert run_sync(gather()).value == []


def test_gather_propagates_the_first_error() -> None:
    """A failing program in gather fails the gather; later programs do not run."""
    ran: list[int] = []

    @do
    def prog() -> Any:
        return (yield gather(raising(ValueError("g")), perform(lambda: ran.append(1))))

    assert isinstance(run_sync(prog()).error, ValueError)
    assert ran == []


# -- user effects and handlers --------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch(Effect):
    url: str


def test_user_effect_with_handler() -> None:
    """A user effect is answered by the handler registered for its class."""

    @do
    def prog() -> Any:
        return (yield Fetch("a")), (yield Fetch("b"))

    result = run_sync(prog(), handlers={Fetch: lambda eff: eff.url.upper()})
    assert result.value == ("A", "B")


def test_unhandled_effect_names_effect_and_line() -> None:
    """An effect with no handler ends the run with UnhandledEffectError naming it and its line."""

    @do
    def prog() -> Any:
        return (yield Fetch("x"))  # unhandled here

    err = run_sync(prog()).error
    assert isinstance(err, UnhandledEffectError) and isinstance(err, DoeffError)
    assert "Fetch(url='x')" in str(err)
    assert "unhandled here" in str(err)
    assert "handlers={Fetch: fn}" in str(err)


def test_overriding_builtin_must_be_explicit() -> None:
    """Registering a handler for a built-in effect needs override(); with it, it replaces it."""

    @do
    def prog() -> Any:
        return (yield get("k"))

    with pytest.raises(ValueError, match="override"):
        run_sync(prog(), handlers={Get: lambda eff: "mine"})
    assert run_sync(prog(), handlers={Get: override(lambda eff: "mine")}).value == "mine"


def test_handler_exception_raised_in_program() -> None:
    """A user handler's exception is raised inside the program at the yield."""

    def fail(eff: Fetch) -> Any:
        raise ConnectionError(eff.url)

    @do
    def prog() -> Any:
        try:
            yield Fetch("down")
        except ConnectionError as err:
            return f"caught {err}"
        return None

    assert run_sync(prog(), handlers={Fetch: fail}).value == "caught down"
