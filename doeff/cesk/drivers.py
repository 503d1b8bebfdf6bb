"""Drivers: where the blocking calls of a run go, and how the machine waits for them.

`SyncDriver` (run_sync, run_workflow): `perform` calls go to a `concurrent.futures.Executor` (a
thread pool of the run's own by default), `await_` calls to the run's private event loop, in a
thread of its own; the machine thread sleeps on the scheduler's inbox between completions.
`AsyncDriver` (run_async): `perform` calls go to the executor through the caller's loop
(`loop.run_in_executor`), awaits run on that loop as tasks; the machine waits with an
`asyncio.Event`, so the loop keeps running everything else meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import queue
import threading
from collections.abc import Awaitable, Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from doeff.cesk.scheduler import Scheduler
from doeff.effects.io import Await
from doeff.errors import CallPickleError, ExecutorError, ForeignLoopError


class BlockingAwaiter:
    """Awaits for `run_sync`: on a private loop, in a helper thread if this thread runs a loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, eff: Await) -> Any:
        """Await on this thread (the run's only task waits anyway)."""
        self._check_not_blocked_loop(eff.awaitable)
        coro = _as_coroutine(eff.awaitable)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop here: run ours in this thread
            else:
                # A loop already runs in this thread (Jupyter, async def): blocking it to run ours
                # would deadlock, so ours runs in a helper thread.
                self._start_thread()
        if self._thread is None:
            return self._loop.run_until_complete(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(self, awaitable: Awaitable[Any]) -> LoopCall:
        """Start awaiting on the private loop, in its own thread (concurrent tasks' awaits run
        side by side there)."""
        self._check_not_blocked_loop(awaitable)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._thread is None:
            self._start_thread()
        return LoopCall(self._loop, awaitable)

    def _start_thread(self) -> None:
        assert self._loop is not None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="doeff-await", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _check_not_blocked_loop(awaitable: Any) -> None:
        # A future of the loop running in this thread can only complete when that loop runs,
        # and run_sync is blocking it: waiting would deadlock or fail deep inside asyncio.
        if not isinstance(awaitable, asyncio.Future):
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if awaitable.get_loop() is running:
            raise ForeignLoopError(
                f"await_({awaitable!r}): this future belongs to the event loop running in this "
                f"thread, which run_sync blocks while it runs; use `await run_async(...)` "
                f"to await it on that loop"
            )

    def close(self) -> None:
        """Stop and close the private loop, if one was made."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._thread is not None:
            # Anything still pending there (a run that ended by an interrupt) ends first.
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join()
            self._thread = None
        loop.close()


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _cancel_the_rest() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class LoopCall:
    """An await running as a task on a loop in another thread. Unlike the future of
    `run_coroutine_threadsafe`, it completes only once the awaited task has ended, so a cancel
    is done when the coroutine's own cleanup is."""

    __slots__ = ("_awaitable", "_loop", "_task", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, awaitable: Awaitable[Any]) -> None:
        self._loop = loop
        self._awaitable = awaitable
        self._task: asyncio.Future[Any] | None = None
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        loop.call_soon_threadsafe(self._start, awaitable)

    def _start(self, awaitable: Awaitable[Any]) -> None:  # on the loop's thread
        self._task = task = asyncio.ensure_future(_as_coroutine(awaitable))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        future = self.future
        if task.cancelled():
            # Cancelled before its first step, the wrapper never awaited the user's coroutine:
            # close it, or it warns "never awaited" (closing a finished one does nothing).
            close = getattr(self._awaitable, "close", None)
            if close is not None:
                close()
            future.cancel()
        elif (exc := task.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def cancel(self) -> bool:
        """Ask the awaited task to cancel; the call completes when it has ended."""
        self._loop.call_soon_threadsafe(self._cancel_task)
        return True

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        self.future.add_done_callback(fn)

    def cancelled(self) -> bool:
        return self.future.cancelled()

    def exception(self) -> BaseException | None:
        return self.future.exception()

    def result(self) -> Any:
        return self.future.result()


# Threads of a run's own pool when max_concurrency does not say: performs are mostly waits on
# I/O (an API, a database), so more than asyncio's default (CPUs + 4) pays.
DEFAULT_WORKERS = 32
# Seconds the machine sleeps at most for a limit's rate window: a longer timeout overflows the
# platform's clock arithmetic, and waking to find nothing to do costs nothing.
LONGEST_WAIT = 3600.0


class _Executors:
    """The executor a run's performs use: the caller's, or a thread pool made on first use."""

    def __init__(self, executor: concurrent.futures.Executor | None,
                 max_workers: int | None) -> None:
        self._given = executor
        self._max_workers = max_workers
        self._own: concurrent.futures.ThreadPoolExecutor | None = None

    def executor(self) -> concurrent.futures.Executor:
        if self._given is not None:
            return self._given
        if self._own is None:
            self._own = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_workers or DEFAULT_WORKERS,
                thread_name_prefix="doeff-perform")
        return self._own

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
        """Start `fn(*args, **kwargs)` on the executor; its refusals as doeff errors."""
        executor = self.executor()
        try:
            future = executor.submit(fn, *args, **kwargs)
        except RuntimeError as err:
            why = ("it was shut down" if "shutdown" in str(err)
                   else f"it raised {type(err).__name__}: {err}")
            raise ExecutorError(
                f"perform({_name(fn)}, ...): the run's executor ({type(executor).__name__}) "
                f"refused the call: {why}. Pass run_sync(..., executor=) an executor that is "
                f"running, and shut it down only after the run has returned"
            ) from err
        if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
            return _PickleChecked(future, (fn, args, kwargs))
        return future

    def close(self) -> None:
        """Shut our own pool down (its calls have all returned: tasks wait for theirs)."""
        own, self._own = self._own, None
        if own is not None:
            own.shutdown(wait=True)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class _PickleChecked(concurrent.futures.Future[Any]):
    """A process pool's future whose pickling failures say which part of the call could not be
    sent. A process pool pickles a call on a thread of its own and reports a failure as the
    call's error, like an error the function raised; only on that path is the call pickled
    again, part by part, to tell the two apart."""

    def __init__(self, inner: concurrent.futures.Future[Any],
                 call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> None:
        super().__init__()
        self._inner = inner
        self._call: Any = call
        inner.add_done_callback(self._copy)

    def cancel(self) -> bool:
        # Like the pool's own future: a call already running cannot be cancelled.
        return self._inner.cancel()

    def _copy(self, inner: concurrent.futures.Future[Any]) -> None:
        call, self._call = self._call, None
        if inner.cancelled():
            super().cancel()
            return
        exc = inner.exception()
        if exc is None:
            self.set_result(inner.result())
        else:
            self.set_exception(_unpicklable(exc, *call) or exc)


def _unpicklable(exc: BaseException, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> CallPickleError | None:
    """The error saying which part of a call a process pool could not pickle, if that is why
    the call failed (None: the function raised `exc` itself)."""
    if not isinstance(exc, TypeError | AttributeError | pickle.PicklingError):
        return None
    parts = [("the function", fn), *((f"argument {i}", a) for i, a in enumerate(args)),
             *((f"keyword argument {k}=", v) for k, v in kwargs.items())]
    for what, part in parts:
        try:
            ForkingPickler.dumps(part)
        except Exception as err:  # any failure to pickle is the answer
            error = CallPickleError(
                f"perform({_name(fn)}, ...): the process pool (executor=) cannot pickle "
                f"{what} ({type(part).__name__}: {type(err).__name__}: {err}); a process pool "
                f"sends the function and its arguments to another process, so use a function "
                f"defined at module level and picklable arguments, or a thread pool (the "
                f"default, executor=None)"
            )
            error.__cause__ = exc
            return error
    return None


class SyncDriver(_Executors):
    """Blocking calls on an executor, awaits on a private loop thread; waits on the inbox."""

    def __init__(self, executor: concurrent.futures.Executor | None = None,
                 max_workers: int | None = None) -> None:
        super().__init__(executor, max_workers)
        self.awaiter = BlockingAwaiter()

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
        return self.submit(fn, args, kwargs)

    def await_(self, awaitable: Any) -> LoopCall:
        return self.awaiter.submit(awaitable)

    def notify(self) -> None:
        pass  # `wait` sleeps on the inbox itself

    def wait(self, sched: Scheduler, timeout: float | None) -> None:
        if timeout is not None:
            timeout = min(timeout, LONGEST_WAIT)
        try:
            item = sched.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        item()

    def close(self) -> None:
        super().close()
        self.awaiter.close()


class AsyncDriver(_Executors):
    """Awaits on the caller's loop, performs on the executor; waits without blocking the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 executor: concurrent.futures.Executor | None = None,
                 max_workers: int | None = None) -> None:
        super().__init__(executor, max_workers)
        self.loop = loop
        self.thread = threading.get_ident()
        self.event = asyncio.Event()

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        # What loop.run_in_executor does, with the executor's refusals as doeff errors.
        return asyncio.wrap_future(self.submit(fn, args, kwargs), loop=self.loop)

    def await_(self, awaitable: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.ensure_future(awaitable, loop=self.loop)
        return future

    def notify(self) -> None:
        if threading.get_ident() == self.thread:
            self.event.set()
        else:
            self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, sched: Scheduler, timeout: float | None) -> None:
        """Return once the inbox has something, or after `timeout` seconds."""
        event = self.event
        event.clear()
        if not sched.inbox.empty():
            return
        handle = (self.loop.call_later(min(timeout, LONGEST_WAIT), event.set)
                  if timeout is not None else None)
        try:
            await event.wait()
        finally:
            if handle is not None:
                handle.cancel()
