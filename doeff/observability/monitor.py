"""Watching a workflow that runs on its own thread: its control, monitor and handle.

`doeff.runners.run_workflow` starts the thread; this module holds what the thread and its
observers share (`WorkflowControl`), the read-only `ExecutionMonitor` and the
`WorkflowExecution` handle.

Nobody may read the machine's registers while its thread changes them, and the loop must not
pay for observers that are not looking. So the machine thread takes every snapshot itself, at a
step boundary, only when asked: a caller of `snapshot()` queues a request and installs a step
hook, and the hook answers, then removes itself. Two states cannot answer that way, and need not:
- *parked*: the machine is inside a handler that may block for long (perform, await, the cache
  effects, user handlers). Those handlers are wrapped to publish "parked on effect E"; K cannot
  change until the handler returns, and the handler cannot return while a reader holds the lock,
  so a reader builds the snapshot itself.
- *paused* or *ended*: the snapshot taken when the machine stopped stays true. A pause blocks
  the machine thread at a step boundary; a machine on an event loop (run_async) must not block
  its thread, so there the pause ends the turn and the runner awaits the resume (`held`).
If user code computes for a long time between two yields there is no step boundary to answer at:
`snapshot()` waits `timeout` seconds, then returns the latest snapshot already taken (consistent,
older: compare `step_count`), and later calls return that at once until the machine answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from doeff.cesk.handlers import state_handlers
from doeff.cesk.machine import BlockingDriver, Handler, Machine
from doeff.cesk.result import CESKResult
from doeff.cesk.scheduler import PREEMPT
from doeff.cesk.traceback import CapturedTraceback
from doeff.effects.cache import CacheGet, CacheLookup, CachePut, CacheStore
from doeff.errors import CancellationError, WaitTimeoutError
from doeff.observability.snapshot import (
    ExecutionSnapshot,
    ExecutionStatus,
    FailureRecorder,
    KFrameSnapshot,
    StepObserver,
    capture,
)


def taken(status: ExecutionStatus, m: Machine, effect: Any, steps: int,
          scope: Callable[[], tuple[str, ...]] | None = None) -> ExecutionSnapshot:
    """A snapshot of `m` now (machine thread, or while it is parked); `effect`: the running
    task's; `scope`: the run's keys."""
    frames, marks, main_effect, tasks = capture(m, effect)
    return ExecutionSnapshot(status, frames, marks, main_effect, steps, m.storage,
                             tasks).scoped(scope)


class StepReports(Protocol):
    """Where the cache handlers' wrappers report steps (`doeff.runs.steps.StepTap`).

    A look-up that finds a value is a "hit"; one that finds none starts a step (`misses` keeps
    when), and the put of its key ends it as "computed", its duration counted from the miss.
    """

    @property
    def starts(self) -> Sequence[Callable[[str, Any, float], None]]:
        """Told (key, task, wall time) when a look-up misses."""
        ...

    @property
    def ends(self) -> Sequence[
            Callable[[str, str, float, int | None, BaseException | None, Any], None]]:
        """Told (key, "hit" or "computed", seconds, bytes, error, task) when a step ends."""
        ...

    @property
    def misses(self) -> dict[str, float]:
        """Key -> perf_counter time when its look-up missed."""
        ...

    @property
    def size(self) -> Callable[[], int | None]:
        """The bytes of the record last read or written, if the storage knows."""
        ...


def _unknown() -> int | None:
    return None


# What a handler's wrapper does after the handler answers (see `WorkflowControl.wrap`).
_OTHER, _GET, _LOOKUP, _PUT = 0, 1, 2, 3
# CacheLookup answers (found, value): a stored None is found too.
_KINDS = {CacheGet: _GET, CacheLookup: _LOOKUP, CachePut: _PUT, CacheStore: _PUT}

T = TypeVar("T")

_ENDED = ("completed", "failed")


class Ending:
    """What `WorkflowControl.running` hands its body: the body sets `result` from its drive."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: CESKResult[Any] | None = None


class _Request:
    """One `snapshot()` call waiting for the machine thread to answer at a step boundary."""

    __slots__ = ("answer", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.answer: ExecutionSnapshot | None = None


class WorkflowControl:
    """State shared by the machine thread and its observers; every field is guarded by `lock`."""

    def __init__(self, m: Machine, observer: StepObserver | None) -> None:
        self.m = m
        self.observer = observer
        self.failures = FailureRecorder.on(m)
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.status: ExecutionStatus = "pending"
        self.requests: list[_Request] = []
        self.pause_requested = False
        self.cancel_requested = False
        self.cancel_sent = False
        self.stalled = False
        # True when the machine runs on an event loop (run_async): its thread must never block,
        # so a pause ends the turn and the runner awaits the resume (see `release`).
        self.on_loop = False
        self.held: ExecutionSnapshot | None = None  # on a loop: where the pause holds it
        self.parked: Any = None  # the effect whose handler the machine waits in, if any
        self.reading = False  # a reader holds the lock and may look at the parked state
        self.still: ExecutionSnapshot | None = None  # true until the machine moves again
        self.last = ExecutionSnapshot("pending", (), (), None, 0, m.storage)
        self.result: CESKResult[Any] | None = None
        self.done = threading.Event()
        self.callbacks: list[Callable[[], None]] = []
        self.thread_id: int | None = None
        # Called on the machine thread as the run ends, before anyone waiting is woken (a run
        # recorder writes its final record there).
        self.on_end: Callable[[CESKResult[Any], ExecutionSnapshot], None] | None = None
        # The keys this run read back or wrote, in order (a dict as an ordered set).
        self.keys: dict[str, None] = {}
        self.keys_lock = threading.Lock()

    # -- the machine thread --------------------------------------------------------------------

    def wrap_handlers(self, user_handlers: Collection[type],
                      steps: StepReports | None = None) -> None:
        """Make every handler that may block publish "parked" while it runs (see `wrap`), the
        cache handlers also reporting each step to `steps` (a run given a record or spans).

        The state handlers never block, and wrapping them would tax the hottest effects; a user's
        replacement of one of them might block, so it is wrapped.
        """
        m = self.m
        never_block = frozenset(state_handlers(m)) - frozenset(user_handlers)
        for effect_type, handler in list(m.handlers.items()):
            if effect_type not in never_block:
                m.handlers[effect_type] = self.wrap(handler, _KINDS.get(effect_type, _OTHER),
                                                    steps)

    def run(self, program: Any, driver: BlockingDriver) -> None:
        """The workflow thread's body: run the program, then publish the end."""
        with self.running(program, driver) as ending:
            ending.result = self.m.drive(driver)

    @contextlib.contextmanager
    def running(self, program: Any, driver: Any) -> Iterator[Ending]:
        """Begin `program` on this thread; the body drives the machine to its result (into the
        `Ending`), blocking (`run`) or awaiting (run_async). On leaving: the driver is closed,
        and the end published, whatever the body raised (KeyboardInterrupt, a cancelled asyncio
        task: the run ends "failed" with it; the caller re-raises it from the result)."""
        m = self.m
        self.thread_id = threading.get_ident()
        ending = Ending()
        try:
            try:
                with self.lock:
                    self.status = "running"
                m.begin(program)
                with self.lock:
                    # Step 0, so a reader that cannot be answered still has a true state to see.
                    self.last = taken("running", m, None, m.steps, self.run_keys)
                yield ending
            finally:
                driver.close()
            result = ending.result
            assert result is not None, "the body of running() sets the result"
            if result.is_ok() and self.cancel_sent:
                # The program caught the cancellation and went on to finish; it was still
                # cancelled, so the run must not read as completed.
                err = CancellationError(
                    "the workflow was cancelled; the program caught the cancellation and "
                    "finished anyway (let CancellationError propagate, or re-raise it)"
                )
                result = CESKResult(None, err, CapturedTraceback((), err), m.store, m.log)
        except BaseException as err:  # KeyboardInterrupt/SystemExit the machine re-raised
            result = CESKResult(None, err, CapturedTraceback((), err), m.store, m.log)
        if self.observer is not None:
            result = self.observer.finish(result)
        self.end(result)

    def end(self, result: CESKResult[Any]) -> None:
        """Publish the final snapshot and the result, and wake everyone waiting."""
        with self.lock:
            final = self.failures.final_snapshot(result).scoped(self.run_keys)
            self.status = final.status
            self.still = self.last = final
            self.answer(final)
        if self.on_end is not None:
            self.on_end(result, final)
        with self.lock:
            self.result = result
            callbacks, self.callbacks = self.callbacks, []
        self.done.set()
        for callback in callbacks:
            callback()

    def boundary(self, steps: int, effect: Any) -> BaseException | None:
        """Step hook installed while someone wants something: snapshot, pause, cancel."""
        m = self.m
        injected: BaseException | None = None
        with self.lock:
            self.stalled = False
            if self.requests or self.pause_requested:
                now = taken("running", m, effect, steps, self.run_keys)
                self.last = now
                if self.holding():
                    if self.on_loop:
                        # End the turn here (the hook stays) and start no other (`m.held`:
                        # the step may be one where the task blocked, with other tasks ready):
                        # the runner sees `held` and awaits the resume, and the loop's other
                        # callbacks go on meanwhile.
                        self.hold(now)
                        self.held = now
                        m.held = True
                        return PREEMPT
                    self.pause_here(now)
                self.answer(now)
            injected = self.cancel_due(steps)
            cancel_pending = self.cancel_requested and not self.cancel_sent
            if not (self.requests or self.pause_requested or cancel_pending):
                m.set_hook("control", None)
        return injected

    def cancel_due(self, steps: int) -> BaseException | None:
        """The CancellationError to throw into the program now, once per run (lock held)."""
        if self.cancel_requested and not self.cancel_sent:
            self.cancel_sent = True
            return CancellationError(f"the workflow was cancelled (at step {steps})")
        return None

    def pause_here(self, now: ExecutionSnapshot) -> None:
        """Hold the machine thread at this step boundary until resumed or cancelled (lock held)."""
        self.hold(now)
        while self.holding():
            self.wake.wait()
        self.unhold(now)

    def hold(self, now: ExecutionSnapshot) -> None:
        """The machine stopped at `now`: paused, for readers too (lock held)."""
        paused = now.with_status("paused")
        self.status = "paused"
        self.still = self.last = paused
        self.answer(paused)

    def holding(self) -> bool:
        """Whether a pause still holds the machine: not resumed, not cancelled (lock held)."""
        return self.pause_requested and not self.cancel_requested

    def unhold(self, now: ExecutionSnapshot) -> None:
        """The machine goes on from `now` (lock held)."""
        self.status = "running"
        self.still = None
        self.last = now

    def still_held(self) -> bool:
        """On a loop: whether the runner must go on awaiting the resume (any thread)."""
        with self.lock:
            return self.held is not None and self.holding()

    def release(self) -> None:
        """On a loop: the runner leaves a pause (resumed or cancelled); a cancel asked for
        meanwhile lands in the main task before it takes another step (as `pause_here`'s
        boundary throws it at once)."""
        m = self.m
        with self.lock:
            now = self.held
            if now is None:
                return
            self.held = None
            m.held = False
            self.unhold(now)
            injected = self.cancel_due(now.step_count)
        if injected is not None:
            m.sched.cancel(m.root, injected)

    def wrap(self, handler: Handler, kind: int = _OTHER,
             steps: StepReports | None = None) -> Handler:
        """`handler`, publishing "parked" while it runs so readers need not wait for it; for a
        cache handler (`kind`), noting the keys read back or written and, given `steps`,
        telling its listeners of each step (see `StepReports`).

        No lock on the way in or out unless someone is looking: the machine writes `parked`,
        then checks `reading`; a reader sets `reading` (holding the lock), then checks `parked`.
        Under the GIL one of them sees the other, so a reader never builds a snapshot of K
        while the machine, back from the handler, changes it: the machine waits for the lock.
        The step reporting lives in this same wrapper, not in a second layer around the
        handler: a recorded durable step pays one wrapper call per cache effect, not two.
        """
        m = self.m
        timed = steps is not None and kind != _OTHER
        starts: Sequence[Callable[[str, Any, float], None]] = (
            () if steps is None else steps.starts)
        ends: Sequence[Callable[[str, str, float, int | None, BaseException | None, Any],
                                None]] = () if steps is None else steps.ends
        misses: dict[str, float] = {} if steps is None else steps.misses
        size = _unknown if steps is None else steps.size
        clock, now = time.perf_counter, time.time

        def parked(effect: Any) -> Any:
            self.parked = effect
            self.stalled = False
            if self.requests:
                self.park(effect)
            started = clock() if timed else 0.0
            try:
                answer = handler(effect)
            except BaseException as err:
                if kind == _PUT and ends:
                    began = misses.pop(effect.key, None) if misses else None
                    seconds = clock() - (started if began is None else began)
                    for ended in ends:
                        ended(effect.key, "computed", seconds, None, err, m.task)
                raise
            finally:
                self.parked = None
                if self.reading:
                    with self.lock:  # a reader is building a snapshot of the parked state
                        pass
                self.still = None
            if kind == _OTHER:
                return answer
            key = effect.key
            if kind == _PUT:
                self.saw_key(key)
                if ends:
                    began = misses.pop(key, None) if misses else None
                    seconds = clock() - (started if began is None else began)
                    nbytes = size()
                    for ended in ends:
                        ended(key, "computed", seconds, nbytes, None, m.task)
            elif answer[0] if kind == _LOOKUP else answer is not None:
                self.saw_key(key)
                if ends:
                    if misses:
                        misses.pop(key, None)
                    seconds, nbytes = clock() - started, size()
                    for ended in ends:
                        ended(key, "hit", seconds, nbytes, None, m.task)
            elif timed and key not in misses:  # a miss starts the step
                misses[key] = started
                if starts:
                    at = now()
                    for start in starts:
                        start(key, m.task, at)
            return answer

        parked.__wrapped__ = handler  # type: ignore[attr-defined]
        return parked

    def saw_key(self, key: str) -> None:
        """The run read back or wrote `key` (machine thread)."""
        if key not in self.keys:
            with self.keys_lock:
                self.keys[key] = None

    def run_keys(self) -> tuple[str, ...]:
        """The keys this run read back or wrote so far, in the order first seen (any thread)."""
        with self.keys_lock:
            return tuple(self.keys)

    def park(self, effect: Any) -> None:
        """The machine waits in a handler for `effect`: answer the requests waiting."""
        with self.lock:
            if self.requests and self.parked is effect:
                self.answer(self.parked_snapshot())

    # -- any thread, lock held -----------------------------------------------------------------

    def parked_snapshot(self) -> ExecutionSnapshot:
        """The state while parked in a handler: built once, by whichever thread asks first."""
        if self.still is None:
            m = self.m
            # m.steps counts the steps before the one in progress: the loop publishes it after
            # each step, and this step ends when the handler returns.
            self.still = self.last = taken("running", m, self.parked, m.steps, self.run_keys)
        return self.still

    def answer(self, snapshot: ExecutionSnapshot) -> None:
        """Hand `snapshot` to every queued request."""
        for request in self.requests:
            request.answer = snapshot
            request.event.set()
        self.requests.clear()

    def fixed(self) -> ExecutionSnapshot | None:
        """A snapshot that is true right now without the machine's help, if there is one."""
        if self.status == "running":
            return self.parked_snapshot() if self.parked is not None else None
        if self.status == "pending":
            return self.last
        return self.still  # paused or ended

    # -- observers -------------------------------------------------------------------------------

    def snapshot(self, timeout: float | None) -> ExecutionSnapshot:
        """A consistent snapshot, taken by the machine thread at its next step boundary."""
        with self.lock:
            self.reading = True  # before looking at `parked` (see `wrap`)
            try:
                fixed = self.fixed()
                if fixed is not None:
                    return fixed
                if threading.get_ident() == self.thread_id or (
                        self.stalled and timeout is not None):
                    return self.last  # the machine cannot answer now (it is us, or computing)
                request = _Request()
                self.requests.append(request)
                self.m.set_hook("control", self.boundary)
                if self.parked is not None:  # parked after looking for requests: answer here
                    self.answer(self.parked_snapshot())
            finally:
                self.reading = False
        self.m.poke()  # a machine waiting for calls answers at once
        if not request.event.wait(timeout):
            with self.lock:
                if request.answer is None:
                    self.requests.remove(request)
                    # The hook stays installed; its next call clears `stalled`.
                    self.stalled = True
                    return self.last
        assert request.answer is not None
        return request.answer

    def pause(self) -> None:
        """Ask the machine to stop at its next step boundary."""
        with self.lock:
            if self.status not in _ENDED:
                self.pause_requested = True
                self.m.set_hook("control", self.boundary)
        self.m.poke()

    def resume(self) -> None:
        """Let a paused machine go on (or withdraw a pause it has not reached yet)."""
        with self.lock:
            self.pause_requested = False
            self.wake.notify_all()
        self.m.poke()  # a machine held on an event loop awaits news (see `release`)

    def cancel(self) -> None:
        """Ask the machine to throw `CancellationError` into the program at its next boundary."""
        with self.lock:
            if self.status not in _ENDED:
                self.cancel_requested = True
                self.m.set_hook("control", self.boundary)
                self.wake.notify_all()
        self.m.poke()

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the workflow thread) when the run ends, or now if it has."""
        with self.lock:
            if self.result is None:
                self.callbacks.append(callback)
                return
        callback()


class ExecutionMonitor:
    """Read-only, thread-safe view of a running workflow; every method may be called any time.

    `snapshot()` gives every field from one step; the properties each take a snapshot of their
    own, so read several fields from one `snapshot()` when they must agree.
    """

    __slots__ = ("_control",)

    def __init__(self, control: WorkflowControl) -> None:
        self._control = control

    def snapshot(self, timeout: float | None = 0.25) -> ExecutionSnapshot:
        """The state after the latest step, or, if the machine cannot reach a step boundary
        within `timeout` seconds (user code busy between yields), the latest one taken."""
        return self._control.snapshot(timeout)

    @property
    def status(self) -> ExecutionStatus:
        """pending (before the first step), running, paused, completed or failed."""
        return self._control.status

    @property
    def k_stack(self) -> tuple[KFrameSnapshot, ...]:
        """The K stack now, innermost frame first."""
        return self.snapshot().k_stack

    @property
    def current_effect(self) -> Any:
        """The effect being handled now, or None."""
        return self.snapshot().current_effect

    @property
    def step_count(self) -> int:
        """Steps executed so far."""
        return self.snapshot().step_count

    def get_cache_entries(self, run_only: bool = False) -> dict[str, Any]:
        """Every entry of the workflow's durable storage (read now, through the storage); with
        `run_only=True` only the entries this run read back or wrote, in the order it first
        did (a store shared by several runs holds theirs too)."""
        storage = self._control.m.storage
        if storage is None:
            return {}
        if not run_only:
            return dict(storage.items())
        entries = {}
        for key in self._control.run_keys():
            value = storage.get(key)
            if value is not None or storage.exists(key):  # deleted since: left out
                entries[key] = value
        return entries


class WorkflowExecution(Generic[T]):
    """Handle on a workflow running in a background thread: watch it, steer it, await it.

    >>> execution = run_workflow(perform(sum, [1, 2, 3]))
    >>> execution.wait().value
    6
    >>> execution.monitor.snapshot().status
    'completed'
    """

    __slots__ = ("_control", "monitor", "run_id", "thread")

    def __init__(self, control: WorkflowControl, thread: threading.Thread,
                 run_id: str | None = None) -> None:
        self._control = control
        self.monitor = ExecutionMonitor(control)
        self.thread = thread
        self.run_id = run_id  # the id its record is kept under (run_workflow(run_id=...))

    @property
    def result(self) -> CESKResult[T] | None:
        """None while running, then the `CESKResult`."""
        return self._control.result

    @property
    def done(self) -> bool:
        """True once the run has ended."""
        return self._control.result is not None

    def wait(self, timeout: float | None = None) -> CESKResult[T]:
        """Block until the run ends and return its result (`WaitTimeoutError`, a `TimeoutError`,
        after `timeout` s)."""
        if not self._control.done.wait(timeout):
            raise WaitTimeoutError(
                f"the workflow did not finish within {timeout} s; it is still running. Wait "
                f"again, or cancel() it: the cancel lands at its tasks' next yield (an await_ "
                f"in flight is cancelled at once; a perform already running cannot be "
                f"interrupted, so the cancel waits for it to return)"
            )
        result = self._control.result
        assert result is not None
        return result

    def __await__(self) -> Generator[Any, None, CESKResult[T]]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> CESKResult[T]:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not finished.done():
                finished.set_result(None)

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass  # the loop has closed: nobody awaits this any more

        self._control.when_done(wake)
        await finished
        result = self._control.result
        assert result is not None
        return result

    def pause(self) -> None:
        """Stop the machine at its next step boundary (status "paused" once it has stopped)."""
        self._control.pause()

    def resume(self) -> None:
        """Continue after `pause()`."""
        self._control.resume()

    def cancel(self) -> None:
        """Throw `CancellationError` into the program at its current `yield` (its finally blocks
        run; catch and safe do not stop it); the run then ends "failed". A handler already
        running (a long `perform`) finishes first. With tasks, the main task is cancelled, and
        with it the gather, race or wait it is blocked in (their tasks' awaits are cancelled)."""
        self._control.cancel()
