"""`run_sync` and `run_async`: build a machine for one run, wire its handlers, and run it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from doeff.cesk.handlers import (
    BlockingAwaiter,
    cache_handlers,
    merge_user_handlers,
    perform,
    state_handlers,
)
from doeff.cesk.machine import SUSPEND, Handler, Machine
from doeff.cesk.result import CESKResult
from doeff.effects.io import Await, Perform
from doeff.program import KleisliProgram

T = TypeVar("T")


def default_storage() -> Any:
    """A fresh in-memory store: the seed's default when no `storage=` is given."""
    from doeff.storage.memory import InMemoryStorage

    return InMemoryStorage()


def build_machine(
    *,
    env: Mapping[Any, Any] | None,
    state: Mapping[Any, Any] | None,
    handlers: Mapping[type, Any] | None,
    storage: Any,
    async_mode: bool,
) -> Machine:
    """A machine with the built-in handlers, the cache handlers over `storage`, and the user's."""
    if storage is None:
        storage = default_storage()
    table: dict[type, Handler] = {}
    m = Machine(table, dict(env or {}), dict(state or {}), storage, async_mode)
    table.update(state_handlers(m))
    table[Perform] = perform
    table.update(cache_handlers(storage))
    merge_user_handlers(table, handlers)
    return m


def _entry(program: Any) -> Any:
    # The seed types `program` as a KleisliProgram: accept an uncalled zero-argument one too.
    return program() if isinstance(program, KleisliProgram) else program


def _attach_observer(m: Machine, on_step: Callable[[Any], object] | None) -> Any:
    """The `StepObserver` feeding `on_step`, or None (observability costs nothing when unused)."""
    if on_step is None:
        return None
    from doeff.cesk_observability import attach_on_step

    return attach_on_step(m, on_step)


def _report_end(observer: Any, result: CESKResult[Any]) -> CESKResult[Any]:
    # The last snapshot says "completed" or "failed"; if that call raises, the run fails with it.
    if observer is None:
        return result
    ended: CESKResult[Any] = observer.finish(result)
    return ended


def build_sync_machine(
    *,
    env: Mapping[Any, Any] | None,
    state: Mapping[Any, Any] | None,
    handlers: Mapping[type, Any] | None,
    storage: Any,
) -> tuple[Machine, BlockingAwaiter]:
    """A machine for a blocking run, and the awaiter its `await_` effects use (close it after)."""
    m = build_machine(env=env, state=state, handlers=handlers, storage=storage, async_mode=False)
    awaiter = BlockingAwaiter()
    if Await not in m.handlers:
        m.handlers[Await] = awaiter
    return m, awaiter


def run_sync(
    program: Any,
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: Any = None,
    on_step: Callable[[Any], object] | None = None,
) -> CESKResult[Any]:
    """Run `program` to the end on this thread and return its `CESKResult`.

    Args:
        program: a program (the result of calling a `@do` function) or an effect.
        env: the environment `ask` reads.
        state: the initial store for `get`/`put`/`modify`.
        handlers: `{EffectClass: fn}`; `fn(effect)` returns the answer. Replacing a built-in
            effect's handler must be explicit: `{Get: override(fn)}`.
        storage: the `DurableStorage` the cache effects use (default: a fresh InMemoryStorage).
        on_step: called after every step with an `ExecutionSnapshot`, and once more with the
            final one (status "completed" or "failed"); if it raises, the run fails with that.

    Works in a thread with no event loop and in one where a loop is running (awaits then run on
    a private loop in a helper thread).
    """
    m, awaiter = build_sync_machine(env=env, state=state, handlers=handlers, storage=storage)
    observer = _attach_observer(m, on_step)
    try:
        result: CESKResult[Any] = m.run(_entry(program))
    finally:
        awaiter.close()
    return _report_end(observer, result)


async def run_async(
    program: Any,
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: Any = None,
    on_step: Callable[[Any], object] | None = None,
) -> CESKResult[Any]:
    """Like `run_sync`, but awaits `await_` effects on the caller's running event loop."""
    m = build_machine(env=env, state=state, handlers=handlers, storage=storage, async_mode=True)
    observer = _attach_observer(m, on_step)
    outcome = m.run(_entry(program))
    while outcome is SUSPEND:
        awaitable, m.pending_await = m.pending_await, None
        try:
            value = await awaitable
        except BaseException as err:
            outcome = m.resume(None, err)
        else:
            outcome = m.resume(value, None)
    result: CESKResult[Any] = outcome
    return _report_end(observer, result)
