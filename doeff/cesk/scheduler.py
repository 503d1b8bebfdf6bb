"""The scheduler: which task runs next, what each blocked task waits on, and the calls in flight.

A task runs on the machine's loop until it blocks (a call in flight, a limit, another task),
finishes, or uses up its quantum of steps while others wait. Blocking calls run elsewhere — on an
executor thread or the event loop — and report back through the *inbox*, a thread-safe queue of
things to do on the machine thread; the machine drains it between tasks. When no task is ready
the machine hands control to its driver, which sleeps until the inbox gets something.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Protocol

from doeff.cesk.frames import Frame
from doeff.cesk.joins import ENDING, WaitFor, note_also
from doeff.cesk.limits import Limiter, Params
from doeff.cesk.tasks import STARTED, Blocker, Collector, Task
from doeff.cesk.traceback import CapturedTraceback
from doeff.errors import CancellationError, DeadlockError

QUANTUM = 500  # steps a task may take while others are ready, before it lets them run


class Preempt(BaseException):
    """Not an error: what the scheduler's step hook returns to switch to another task."""


PREEMPT = Preempt()


class Host(Protocol):
    """What the scheduler needs from the machine that owns it."""

    def concurrency_changed(self, concurrent: bool) -> None:
        """The run went from one live task to several (True), or back (False)."""
        ...

    def notify(self) -> None:
        """Something was put in the inbox (any thread): wake the driver if it sleeps."""
        ...

    def want_tick(self) -> None:
        """Another task is ready: the running one should take turns with it."""
        ...


class Pending(Protocol):
    """A call in flight: a `concurrent.futures.Future` or an `asyncio.Future`."""

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...
    def cancel(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def exception(self) -> BaseException | None: ...
    def result(self) -> Any: ...


class Call:
    """One blocking call of a task (a perform or an await): queued for a slot, then in flight."""

    __slots__ = ("arg", "future", "sched", "start", "task")

    def __init__(self, sched: Scheduler, task: Task, start: Callable[[Any], Pending],
                 arg: Any) -> None:
        self.sched = sched
        self.task = task
        self.start = start
        self.arg = arg
        self.future: Pending | None = None

    def begin(self) -> None:
        """Start the call (a slot is free)."""
        sched = self.sched
        sched.in_flight += 1
        try:
            future = self.start(self.arg)
        except BaseException as err:  # the executor refused it, or the awaitable is unusable
            sched.in_flight -= 1
            sched.wake(self.task, None, err)
            return
        self.future = future
        self.arg = None
        future.add_done_callback(self.done)

    def done(self, _: Any) -> None:
        """Called by the future, on whatever thread completed it."""
        sched = self.sched
        sched.inbox.put(self.completed)
        sched.attention = True
        sched.host.notify()

    def completed(self) -> None:
        """On the machine thread: hand the outcome to the task; start a queued call."""
        sched = self.sched
        sched.in_flight -= 1
        future, task = self.future, self.task
        assert future is not None
        if future.cancelled():
            error = task.cancel_error or CancellationError(
                "the call was cancelled by its executor or event loop")
            sched.wake(task, None, error)
        else:
            exc = future.exception()
            sched.wake(task, None if exc is not None else future.result(), exc)
        sched.start_queued()

    def cancel_blocked(self, task: Task) -> None:
        if self.future is None:  # not started (queued, or cancelled as it blocked): never will
            queued = self.sched.queued
            if self in queued:
                queued.remove(self)
            if inspect.iscoroutine(self.arg):
                self.arg.close()  # an await that never started: no "never awaited" warning
            self.sched.wake(task, None, task.cancel_error)
        else:
            # An await is cancelled; a perform already running cannot be, and ends first. Either
            # way the outcome comes back through `completed`.
            self.future.cancel()

    def __repr__(self) -> str:
        return "queued call" if self.future is None else "call in flight"


class Scheduler:
    """The run's tasks: the ready queue, the inbox, the calls in flight, the named limits."""

    def __init__(self, host: Host, max_calls: int | None = None) -> None:
        self.host = host
        self.ready: deque[Task] = deque()
        self.inbox: SimpleQueue[Callable[[], object]] = SimpleQueue()
        self.attention = False  # the inbox got something: switch soon
        self.tasks: dict[int, Task] = {}  # the live ones
        self.next_id = 0
        self.max_calls = max_calls
        self.in_flight = 0
        self.queued: deque[Call] = deque()
        self.limiters: dict[str, Limiter] = {}
        self.timed: dict[Limiter, None] = {}  # limits with tasks waiting for a turn
        self.left = QUANTUM
        self.version = 0  # bumped whenever a task starts, blocks, wakes or ends (for observers)

    # -- tasks ----------------------------------------------------------------------------------

    def new_task(self, program: Any, parent: Task | None, env: dict[Any, Any],
                 collectors: tuple[Collector, ...], ready: bool = True) -> Task:
        """A task that will run `program`, as a child of `parent`."""
        task = Task(self.next_id, program, parent, env, collectors, self)
        self.next_id += 1
        self.version += 1
        self.tasks[task.task_id] = task
        if parent is not None:
            if parent.children is None:
                parent.children = {}
            parent.children[task] = None
        if len(self.tasks) == 2:
            self.host.concurrency_changed(True)
        if ready:
            self.ready.append(task)
            self.host.want_tick()
        return task

    def block(self, task: Task, blocker: Blocker, effect: Any) -> None:
        """`task` waits on `blocker` (the machine leaves it with SUSPEND)."""
        task.status = "blocked"
        task.blocker = blocker
        task.effect = effect
        self.version += 1
        if task.cancel_error is not None and not task.shielded:
            blocker.cancel_blocked(task)  # cancelled while it was running: no wait at all

    def wake(self, task: Task, value: Any, exc: BaseException | None,
             inherited: CapturedTraceback | None = None) -> None:
        """Make a blocked task ready to resume with this outcome."""
        if task.status != "blocked":
            return
        task.resume_with = (value, exc)
        task.inherited = inherited
        task.blocker = None
        task.effect = None
        task.status = "ready"
        self.ready.append(task)
        self.version += 1
        self.host.want_tick()

    def admit(self, task: Task, program: Any, frame: Frame) -> None:
        """A task blocked in `limit` gets its turn: it starts `program` under `frame`."""
        task.K.append(frame)
        task.program = program
        self.wake(task, None, None)

    def cancel(self, task: Task, err: BaseException | None = None) -> bool:
        """Cancel `task` at its current yield; False if it has finished or is being cancelled.
        A task running a `finally_` cleanup takes the cancel once the cleanup has ended."""
        if task.done or task.cancel_error is not None or task.blocker is ENDING:
            return False
        task.cancelled = True
        task.cancel_error = err or CancellationError(
            f"task {task.task_id} ({task.name}()) was cancelled")
        if task.status == "blocked" and not task.shielded:
            assert task.blocker is not None
            task.blocker.cancel_blocked(task)
        return True

    def request_cancel(self, task: Task) -> None:
        """`cancel` from any thread: done on the machine thread, between two steps."""
        self.inbox.put(lambda: self.cancel(task))
        self.attention = True
        self.host.notify()

    def interrupt(self, err: BaseException) -> None:
        """An error that ends the run (an interrupt, a failing observer): into every task (the
        running one included: it takes its cancel at once, see `Machine._unwinding`)."""
        for task in list(self.tasks.values()):
            if task.done or task.blocker is ENDING:
                continue
            task.cancel_error = None
            self.cancel(task, err)

    def program_ended(self, task: Task, value: Any, exc: BaseException | None,
                      traceback: CapturedTraceback | None) -> None:
        """`task`'s K is empty: it finishes once the children it leaves running have ended."""
        task.value, task.error, task.traceback = value, exc, traceback
        task.program = STARTED
        if not task.children:
            self.finish(task)
            return
        task.status = "blocked"
        task.blocker = ENDING
        self.version += 1
        for child in list(task.children):  # (not empty: checked above)
            self.cancel(child, CancellationError(
                f"{child.name}() (task {child.task_id}) was cancelled: the program that "
                f"spawned it, {task.name}(), ended while it was still running"))

    def finish(self, task: Task) -> None:
        """Record a task's end; wake what waits on it; finish its parent if that was waiting
        only for it (in a loop: a long chain of tasks must not recurse). Callbacks never finish
        a task themselves (they wake or cancel), so the chain is the only work."""
        done: Task | None = task
        while done is not None:
            if done.failed_children:
                _report_unretrieved(done)
                for child in done.failed_children:
                    child.parent = None
            error = done.error
            if error is None:
                done.status = "completed"
            elif isinstance(error, CancellationError) and done.cancelled:
                done.status = "cancelled"
            else:
                done.status = "failed"
            del self.tasks[done.task_id]
            self.version += 1
            if len(self.tasks) == 1:
                self.host.concurrency_changed(False)
            callbacks, done.callbacks = done.callbacks, None
            # Drop what it held (its outcome stays): memory stays flat per finished task.
            done.env = _NOTHING
            done.collectors = ()
            done.captures = None
            done.failed_children = None
            done.program = None
            parent, done.parent = done.parent, None
            # (the children nobody waited for keep `parent` until a wait takes them: see
            # Task.retrieve; those left when the parent ends were just reported)
            after = None
            if parent is not None:
                assert parent.children is not None
                del parent.children[done]
                if error is not None and not done.joined and not done.retrieved:
                    if parent.failed_children is None:
                        parent.failed_children = {}
                    parent.failed_children[done] = None
                    done.parent = parent  # so that a wait can take it out again
                if parent.blocker is ENDING and not parent.children:
                    after = parent
            if callbacks:
                for callback in callbacks:
                    callback(done)
            done = after

    def wait_for(self, waiter: Task, target: Task, effect: Any) -> None:
        """`waiter` blocks until `target` finishes."""
        self.block(waiter, WaitFor(self, waiter, target), effect)

    # -- blocking calls ----------------------------------------------------------------------------

    def call(self, task: Task, effect: Any, start: Callable[[Any], Pending], arg: Any) -> None:
        """`task` blocks on a call that `start(arg)` begins, now or when a slot frees."""
        pending = Call(self, task, start, arg)
        self.block(task, pending, effect)
        if task.status != "blocked":
            return  # it was cancelled at once
        if self.max_calls is None or self.in_flight < self.max_calls:
            pending.begin()
        else:
            self.queued.append(pending)

    def start_queued(self) -> None:
        """Begin queued calls while slots are free."""
        queued = self.queued
        while queued and (self.max_calls is None or self.in_flight < self.max_calls):
            queued.popleft().begin()

    # -- limits -----------------------------------------------------------------------------------

    def limiter(self, name: str, params: Params) -> Limiter:
        """The run's limit called `name` (made, with `params`, at its first use)."""
        limiter = self.limiters.get(name)
        if limiter is None:
            Limiter.check_first(name, params)
            limiter = self.limiters[name] = Limiter(name, params, self)
        else:
            limiter.check_same(params)
        return limiter

    def wait_turn(self, task: Task, limiter: Limiter, program: Any, effect: Any) -> None:
        """`task` waits for a turn under `limiter` to start `program`."""
        limiter.waiters.append((task, program))
        self.timed[limiter] = None
        self.block(task, limiter, effect)

    def deadline(self) -> float | None:
        """Seconds until a limit's rate lets a waiting task start (None: no such wait)."""
        if not self.timed:
            return None
        now = time.monotonic()
        delays = [d for lim in self.timed if (d := lim.wait_time(now)) is not None]
        return max(0.0, min(delays)) if delays else None

    def pump_timed(self) -> None:
        """Admit tasks whose limit's rate window has opened."""
        now = time.monotonic()
        for limiter in list(self.timed):
            limiter.pump(now)
            if not limiter.waiters:
                del self.timed[limiter]

    # -- choosing the next task -------------------------------------------------------------------

    def drain(self) -> None:
        """Do what other threads asked for: calls that completed, cancels."""
        self.attention = False
        inbox = self.inbox
        while not inbox.empty():
            inbox.get_nowait()()

    def next_ready(self) -> Task | None:
        """The task to run next, after taking in what happened meanwhile; None if none is."""
        if self.attention or not self.ready:
            self.drain()
        if self.timed:
            self.pump_timed()
        return self.ready.popleft() if self.ready else None

    def tick(self, steps: int, effect: Any) -> BaseException | None:
        """Step hook while another task is ready or news came: switch when the quantum is used,
        or at once for news."""
        self.left -= 1
        if self.left <= 0 or self.attention:
            return PREEMPT
        return None

    def expecting(self) -> bool:
        """Whether anything outside the machine can still wake a task (calls, timers, inbox)."""
        return bool(self.in_flight or not self.inbox.empty() or self.deadline() is not None)

    def break_deadlock(self) -> bool:
        """Every task waits and nothing can wake them: raise DeadlockError at each plain wait
        (for a task or a limit). False if there was none to raise at."""
        stuck = [t for t in self.tasks.values()
                 if t.status == "blocked" and isinstance(t.blocker, WaitFor | Limiter)]
        for task in stuck:
            what = task.blocker
            if isinstance(what, Limiter):
                what.waiters = type(what.waiters)(w for w in what.waiters if w[0] is not task)
            else:
                assert isinstance(what, WaitFor)
                what.target.forget(what.target_done)
            self.wake(task, None, DeadlockError(
                f"{task.name}() (task {task.task_id}) waits at {task.effect!r:.80}, and every "
                f"other task of the run waits too, with no call in flight that could wake one"))
        return bool(stuck)


def _report_unretrieved(task: Task) -> None:
    """Errors of spawned children nobody waited for fail their parent (nothing is silent)."""
    failed = [c for c in task.failed_children or ()
              if not c.retrieved and not isinstance(c.error, CancellationError)]
    if not failed:
        return
    if task.error is None:
        first, *failed = failed
        task.error, task.traceback = first.error, first.traceback
    error = task.error
    assert error is not None
    for child in failed:
        note_also(error, child, "a task it spawned failed and nothing waited for it")


_NOTHING: dict[Any, Any] = {}  # a finished task's env (it never runs again)

