"""Runners: `run_sync`, `run_async` and `run_workflow` build a machine for one run, wire its
handlers, storage and observers, and drive it.

This is the top layer of the library: the only one that knows the machine (`doeff.cesk`),
observability (`doeff.observability`) and storage at once. The machine itself only knows the
`DurableStorage` protocol.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from doeff.cesk.calls import perform
from doeff.cesk.drivers import AsyncDriver, SyncDriver
from doeff.cesk.handlers import (
    cache_handlers,
    merge_user_handlers,
    state_handlers,
)
from doeff.cesk.machine import WAIT, YIELD, Driver, Handler, Machine
from doeff.cesk.result import CESKResult
from doeff.effects.base import Effect
from doeff.effects.io import Await, Perform
from doeff.errors import InvalidOptionError
from doeff.observability.monitor import WorkflowControl, WorkflowExecution
from doeff.observability.snapshot import ExecutionSnapshot, StepObserver, attach_on_step
from doeff.program import KleisliProgram, Program, entry_program
from doeff.protocols import DurableStorage
from doeff.runs.hooks import attach
from doeff.steps.replay import check_replay, strict_handlers

T = TypeVar("T")
# Turns of tasks the machine takes under run_async before it lets the caller's loop run.
ASYNC_TURNS = 64
OnStep = Callable[[ExecutionSnapshot], object]


def default_storage() -> DurableStorage:
    """A fresh in-memory store: what the cache effects use when a run is given no `storage=`."""
    # Imported here: a run with its own storage never loads the codecs InMemoryStorage's
    # package brings along.
    from doeff.storage.presets import InMemoryStorage

    return InMemoryStorage()


def build_machine(
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    async_mode: bool = False,
    max_concurrency: int | None = None,
    replay: str | None = None,
) -> Machine:
    """A machine with the built-in handlers, the cache handlers over `storage`, and the user's.

    Under `async_mode` every `perform` and `await_` goes to the machine's driver (see
    `run_async`); otherwise a run with one task answers them inline (see `build_sync_machine`).
    """
    _check_options(env=env, state=state, handlers=handlers, storage=storage,
                   max_concurrency=max_concurrency)
    if storage is None:
        storage = default_storage()
    table: dict[type, Handler] = {}
    m = Machine(table, dict(env or {}), dict(state or {}), storage, async_mode, max_concurrency)
    table.update(state_handlers(m))
    table[Perform] = perform
    table.update(cache_handlers(storage))
    if check_replay(replay) == "strict":
        table.update(strict_handlers(storage, table))
    merge_user_handlers(table, handlers)
    for effect_type in (Perform, Await):
        if handlers and effect_type in handlers:  # the user's: run on the executor when needed
            m.blocking[effect_type] = table[effect_type]
        if async_mode:
            table.pop(effect_type, None)
    return m


def _check_options(**given: Any) -> None:
    """InvalidOptionError for a run option of the wrong kind, before anything runs."""
    for name in ("env", "state", "handlers"):
        value = given[name]
        if value is not None and not isinstance(value, Mapping):
            raise InvalidOptionError(
                f"{name}= must be a mapping (e.g. a dict), got {type(value).__name__} "
                f"{value!r:.60}"
            )
    storage = given["storage"]
    if storage is not None and not isinstance(storage, DurableStorage):
        raise InvalidOptionError(
            f"storage= must be a DurableStorage (get, put, delete, exists, keys, items, clear), "
            f"got {type(storage).__name__}; e.g. Durable(SQLiteKV('wf.db'), MsgpackCodec())"
        )
    limit = given["max_concurrency"]
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidOptionError(
            f"max_concurrency= must be an int >= 1 (calls in flight at once across all tasks), "
            f"or None for no bound; got {limit!r:.60}"
        )
    executor = given.get("executor")
    if executor is not None and not isinstance(executor, concurrent.futures.Executor):
        raise InvalidOptionError(
            f"executor= must be a concurrent.futures.Executor (a thread or process pool, or a "
            f"Dask client's get_executor()), got {type(executor).__name__} {executor!r:.60}"
        )


def _observe(m: Machine, on_step: OnStep | None) -> StepObserver | None:
    """The observer feeding `on_step`, or None: observing costs nothing when unused."""
    if on_step is None:
        return None
    if not callable(on_step):
        raise InvalidOptionError(
            f"on_step= must be callable (it is called with an ExecutionSnapshot), got "
            f"{on_step!r:.60}"
        )
    return attach_on_step(m, on_step)


def build_sync_machine(
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    replay: str | None = None,
) -> tuple[Machine, SyncDriver]:
    """A machine for a blocking run, and its driver (close it after the run)."""
    _check_options(env=env, state=state, handlers=handlers, storage=storage,
                   max_concurrency=max_concurrency, executor=executor)
    m = build_machine(env=env, state=state, handlers=handlers, storage=storage,
                      async_mode=False, max_concurrency=max_concurrency, replay=replay)
    driver = SyncDriver(executor, max_concurrency)
    m.driver = driver
    if Await not in m.handlers:
        m.handlers[Await] = driver.awaiter
    return m, driver


def _report_end(observer: StepObserver | None, result: CESKResult[T]) -> CESKResult[T]:
    # The last snapshot says "completed" or "failed"; if that call raises, the run fails with it.
    return result if observer is None else observer.finish(result)


@overload
def run_sync(
    program: Program[T] | KleisliProgram[[], T],
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> CESKResult[T]: ...
@overload
def run_sync(
    program: Effect,
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> CESKResult[Any]: ...
def run_sync(
    program: Program[Any] | KleisliProgram[[], Any] | Effect,
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> CESKResult[Any]:
    """Run `program` to the end on this thread and return its `CESKResult`.

    Args:
        program: a program (the result of calling a `@do` function), a `@do` function that
            takes no arguments, or an effect.
        env: the environment `ask` reads.
        state: the initial store for `get`/`put`/`modify`.
        handlers: `{EffectClass: fn}`; `fn(effect)` returns the answer. Replacing a built-in
            effect's handler must be explicit: `{Get: override(fn)}`.
        storage: the `DurableStorage` the cache effects use (default: a fresh InMemoryStorage).
        on_step: called after every step with an `ExecutionSnapshot`, and once more with the
            final one (status "completed" or "failed"); if it raises, the run fails with that.
        max_concurrency: at most this many `perform` and `await_` calls in flight at once,
            across all tasks (None: no bound); extra calls wait their turn.
        executor: where `perform` calls of concurrent tasks run: any
            `concurrent.futures.Executor` (default: a thread pool of `max_concurrency` workers,
            made on first use). A run with a single task calls `perform` on this thread.
        run_id: record the run in `storage` under this id (True: a generated one), so any
            process can watch, pause or cancel it, and see where it was if it dies
            (`doeff.runs`, `doeff runs`); running an id again continues its record.
        tracer: an OpenTelemetry `Tracer`: a span for the run and one per step (needs the
            `otel` extra).
        replay: "strict" makes every step or `cacheget` that finds no record raise
            `ReplayMissError` (saying which records of the step exist and how their keys
            differ) instead of computing: for test runs that replay recorded results.

    Works in a thread with no event loop and in one where a loop is running (awaits then run on
    a private loop in a helper thread).
    """
    m, driver = build_sync_machine(env=env, state=state, handlers=handlers, storage=storage,
                                   max_concurrency=max_concurrency, executor=executor,
                                   replay=replay)
    observer = _observe(m, on_step)
    if run_id is not None or tracer is not None:
        entry = entry_program(program)
        control, _ = _controlled(m, driver, observer, entry, handlers, run_id, tracer)
        control.run(entry, driver)
        return _outcome(control)
    try:
        m.begin(entry_program(program))
        result = m.drive(driver)
    finally:
        driver.close()
    return _report_end(observer, result)


def _controlled(m: Machine, driver: Driver, observer: StepObserver | None, program: Any,
                handlers: Mapping[type, Any] | None, run_id: str | bool | None,
                tracer: Any) -> tuple[WorkflowControl, str | None]:
    """The control a run goes under when something outside its loop may look at or steer it
    (run_workflow; run_sync and run_async given a record or spans, so their heartbeat can take
    snapshots and apply requests), with the record and spans attached; and the run id."""
    control = WorkflowControl(m, observer)
    if run_id is None and tracer is None:
        control.wrap_handlers(handlers or ())
        return control, None
    try:
        chosen = attach(m, control, program, run_id=run_id, tracer=tracer,
                        handlers=handlers or ())
    except BaseException:
        driver.close()
        raise
    return control, chosen


def _outcome(control: WorkflowControl) -> CESKResult[Any]:
    """The result of a run that went under `control` and has ended on the caller's thread."""
    result = control.result
    assert result is not None
    if result.error is not None and not isinstance(result.error, Exception):
        # KeyboardInterrupt, SystemExit, a cancelled asyncio task: recorded as failed, and
        # re-raised to the caller
        raise result.error
    return result


@overload
async def run_async(
    program: Program[T] | KleisliProgram[[], T],
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> CESKResult[T]: ...
@overload
async def run_async(
    program: Effect,
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> CESKResult[Any]: ...
async def run_async(
    program: Program[Any] | KleisliProgram[[], Any] | Effect,
    *,
    env: Mapping[Any, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    storage: DurableStorage | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> CESKResult[Any]:
    """Like `run_sync`, but on the caller's running event loop, which it never blocks for long:
    `await_` effects are awaited on that loop (concurrently, as asyncio tasks), and `perform`
    calls run on the executor (`loop.run_in_executor`), even in a run with a single task. The
    machine's own steps run on the loop's thread, between the loop's other callbacks.

    Arguments are those of `run_sync`. With `run_id=` the run keeps its record and heartbeat
    (on a thread of its own, so also while the run awaits); a pause asked for from another
    process holds the run in an await, the loop free for its other tasks, and a cancel lands
    in the await the run waits in. Cancelling the asyncio task running `run_async` ends the
    run (its record "failed") and raises `CancelledError` in the caller, as ever.
    """
    _check_options(env=env, state=state, handlers=handlers, storage=storage,
                   max_concurrency=max_concurrency, executor=executor)
    m = build_machine(env=env, state=state, handlers=handlers, storage=storage, async_mode=True,
                      max_concurrency=max_concurrency, replay=replay)
    driver = AsyncDriver(asyncio.get_running_loop(), executor, max_concurrency)
    m.driver = driver
    observer = _observe(m, on_step)
    if run_id is not None or tracer is not None:
        entry = entry_program(program)
        control, _ = _controlled(m, driver, observer, entry, handlers, run_id, tracer)
        control.on_loop = True
        with control.running(entry, driver) as ending:
            ending.result = await _drive_async(m, driver, control)
        return _outcome(control)
    try:
        m.begin(entry_program(program))
        result = await _drive_async(m, driver, None)
    finally:
        driver.close()
    return _report_end(observer, result)


async def _drive_async(m: Machine, driver: AsyncDriver,
                       control: WorkflowControl | None) -> CESKResult[Any]:
    """Run tasks until the main one ends, letting the loop run between turns and awaiting
    while no task is ready; under a `control`, a pause holds the run in an await."""
    # Under a control, one turn per call: a pause ends the turn it lands in (see
    # WorkflowControl.boundary), and no other turn may start before the hold is seen here
    # (proceed itself starts none while the machine is held: the pause may land in a step
    # where a task blocked, other tasks ready).
    budget = ASYNC_TURNS if control is None else 1
    turns = 0
    while True:
        outcome = m.proceed(budget)
        if outcome is not WAIT and outcome is not YIELD:
            result: CESKResult[Any] = outcome
            return result
        try:
            if control is not None and control.held is not None:
                await _paused(driver, control)
            elif outcome is WAIT:
                await driver.wait(m.sched, m.sched.deadline())
            else:
                turns += budget
                if turns >= ASYNC_TURNS:
                    turns = 0
                    await asyncio.sleep(0)  # the loop runs a while: awaits started so far begin
        except BaseException as err:  # the task running run_async was cancelled
            m.interrupt(err)


async def _paused(driver: AsyncDriver, control: WorkflowControl) -> None:
    """Await, the loop free, until the pause holding the run is resumed or cancelled (either
    pokes the machine, which sets the driver's event)."""
    try:
        while control.still_held():
            # Only the event: taking in completions now would start queued calls, and a paused
            # run starts nothing.
            driver.event.clear()
            await driver.event.wait()
    finally:
        control.release()


@overload
def run_workflow(
    program: Program[T] | KleisliProgram[[], T],
    *,
    storage: DurableStorage | None = None,
    env: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> WorkflowExecution[T]: ...
@overload
def run_workflow(
    program: Effect,
    *,
    storage: DurableStorage | None = None,
    env: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> WorkflowExecution[Any]: ...
def run_workflow(
    program: Program[Any] | KleisliProgram[[], Any] | Effect,
    *,
    storage: DurableStorage | None = None,
    env: Mapping[Any, Any] | None = None,
    handlers: Mapping[type, Any] | None = None,
    state: Mapping[Any, Any] | None = None,
    on_step: OnStep | None = None,
    max_concurrency: int | None = None,
    executor: concurrent.futures.Executor | None = None,
    run_id: str | bool | None = None,
    tracer: Any = None,
    replay: str | None = None,
) -> WorkflowExecution[Any]:
    """Start `program` on a background thread and return its `WorkflowExecution` at once.

    Arguments are those of `run_sync`; with `run_id=True` the generated id is the
    execution's `run_id`.

    >>> from doeff.storage import SQLiteStorage
    >>> execution = run_workflow(cached("total", lambda: perform(sum, [1, 2, 3])),
    ...                          storage=SQLiteStorage("wf.db"))
    >>> execution.wait().value
    6
    >>> execution.monitor.snapshot().status
    'completed'
    """
    m, driver = build_sync_machine(env=env, state=state, handlers=handlers, storage=storage,
                                   max_concurrency=max_concurrency, executor=executor,
                                   replay=replay)
    observer = _observe(m, on_step)
    entry = entry_program(program)
    control, chosen = _controlled(m, driver, observer, entry, handlers, run_id, tracer)
    thread = threading.Thread(
        target=control.run, args=(entry, driver), name="doeff-workflow", daemon=True,
    )
    execution: WorkflowExecution[Any] = WorkflowExecution(control, thread, chosen)
    thread.start()
    return execution


__all__ = ["build_machine", "build_sync_machine", "default_storage", "run_async", "run_sync",
           "run_workflow"]
