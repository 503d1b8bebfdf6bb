"""IO effects: call a function, await an awaitable, gather several programs concurrently."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import field
from typing import Any

from doeff.effects.base import Effect, Runnable, effect, fast_constructor
from doeff.errors import InvalidEffectError


@effect
class Perform(Effect):
    """Call `fn(*args, **kwargs)` and answer its return value."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@effect
class Await(Effect):
    """Await `awaitable` and answer its result."""

    awaitable: Awaitable[Any]


@effect
class Gather(Effect):
    """Run `programs` concurrently and answer the list of their results, in order."""

    programs: tuple[Runnable, ...]


_perform = fast_constructor(Perform)
_await = fast_constructor(Await)
_gather = fast_constructor(Gather)


def perform(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Perform:
    """Run `fn(*args, **kwargs)` when the effect is handled; answer its return value."""
    return _perform(fn, args, kwargs)


def await_(awaitable: Awaitable[Any]) -> Await:
    """Await a coroutine or other awaitable and answer its result.

    Under `run_sync` it runs on a private event loop (in a helper thread when the calling thread
    already runs a loop, or when tasks await concurrently); under `run_async` it is awaited on
    the caller's loop. Named with a trailing underscore because `await` is a Python keyword.
    """
    if not inspect.isawaitable(awaitable):
        hint = " (call it: await_(f(...)))" if inspect.iscoroutinefunction(awaitable) else ""
        raise InvalidEffectError(
            f"await_(awaitable): expected a coroutine or other awaitable, got "
            f"{type(awaitable).__name__} {awaitable!r:.60}{hint}"
        )
    return _await(awaitable)


def gather(*programs: Runnable) -> Gather:
    """Run the programs (or effects) concurrently, as tasks; answer their results in order.

    If one fails, the others are cancelled (their cleanups run, their later steps never do) and
    `gather` raises that error with its traceback; errors the others raise while being cancelled
    are attached to it as notes. Each program starts with a copy of the current environment.
    """
    return _gather(programs)
