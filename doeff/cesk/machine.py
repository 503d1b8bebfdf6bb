"""The CESK machine that runs doeff programs.

C, the control, is the outcome being handed to the top of K: a value to send into a generator
(a generator is started by sending it None) or an exception to throw into it. The loop keeps it
in two local variables, `value` and `exc`, because this is the hottest data in the library.

E, the environment, is the mapping `ask` reads. It is replaced, never mutated: `local` installs
an updated copy and pushes a `LocalFrame` that puts the old one back.

S, the store, is the dict `get`/`put`/`modify` act on, plus the writer log; both live for the
whole run and are returned in the `CESKResult`.

K, the continuation, is a Python list of frames used as a stack (top = last). A `ReturnFrame`
holds a suspended generator; other frames (catch, finally, local, listen, safe, gather) say what
to do when the computation above them finishes. Because K is data and the loop is a plain
`while`, nesting depth costs list entries, not Python recursion.

Tasks: a run may hold several tasks (`spawn`, `gather`, `race`), each with its own K and E
(`doeff.cesk.tasks`); S, the log and storage are the run's. The registers `K` and `env` are the
running task's: switching tasks swaps them, between two calls of the loop. A run that never
spawns has one task, the main one, and runs in one call of the loop as it always did.

One step resumes the top generator and handles what it yields, or pops a finished frame. The
loop runs one step per iteration, except that a generator whose effects plain handlers answer
is resumed again at once while no hook watches. The step count is published on the machine
(`steps`) at every step, so an observer on another thread reads it from there. An optional
`hook(steps, effect)` runs after every step; it is read from the machine on each step so an
observer can attach or detach while a run is in progress.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType, FunctionType, GeneratorType
from typing import Any, Protocol

from doeff.cesk.calls import not_callable
from doeff.cesk.drivers import SyncDriver
from doeff.cesk.frames import (
    CacheFillFrame,
    CatchFrame,
    Control,
    FinallyFrame,
    Frame,
    ListenFrame,
    LocalFrame,
    ResumeFrame,
    ReturnFrame,
    SafeFrame,
)
from doeff.cesk.interrupts import InterruptGuard
from doeff.cesk.joins import GatherFrame, RaceFrame
from doeff.cesk.result import CESKResult
from doeff.cesk.scheduler import PREEMPT, QUANTUM, Pending, Scheduler
from doeff.cesk.tasks import STARTED, Collector, Task, program_name
from doeff.cesk.traceback import (
    CapturedTraceback,
    CodeMark,
    raised_line,
    short_repr,
    suspended_at,
    suspended_marks,
)
from doeff.effects.base import Effect
from doeff.effects.cache import CacheFill
from doeff.effects.error import Catch, Finally, Safe
from doeff.effects.io import Await, Gather, Perform
from doeff.effects.reader import Local
from doeff.effects.tasks import Cancel, Limit, Race, Spawn, Wait
from doeff.effects.writer import Listen
from doeff.errors import (
    CancellationError,
    DeadlockError,
    InvalidEffectError,
    InvalidYieldError,
    NotAProgramError,
    UnhandledEffectError,
    UsageError,
)
from doeff.program import KleisliProgram, Program
from doeff.protocols import DurableStorage

Handler = Callable[[Any], Any]
StepHook = Callable[[int, Any], BaseException | None]
CaptureHook = Callable[[BaseException, ReturnFrame | None], None]

_KEEP_CAPTURES = 16  # tracebacks kept for errors in flight (see Machine._captures)

# Returned in place of a value when the running task blocks: the loop leaves it there.
SUSPEND: Any = object()
# Returned by `proceed` when no task can run until a call completes: the driver waits.
WAIT: Any = object()
# Returned by `proceed` when it used its budget with tasks still ready: the driver lets its
# event loop run (the calls started so far begin), then calls again.
YIELD: Any = object()
# The loop's endings: the task's K is empty, or the scheduler's hook asked to switch tasks.
DONE: Any = object()
SWITCH: Any = object()
# The step hooks, called in this order after each step (see `Machine.set_hook`).
HOOK_SLOTS = ("observer", "control", "tick", "interrupt")


class Driver(Protocol):
    """Where blocking calls of concurrent tasks run (an executor, an event loop)."""

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Pending:
        """Start `fn(*args, **kwargs)` on the executor."""
        ...

    def await_(self, awaitable: Any) -> Pending:
        """Start awaiting `awaitable` on the event loop."""
        ...

    def notify(self) -> None:
        """The inbox got something (any thread): end a wait in progress."""
        ...

    def close(self) -> None:
        """Release what the driver started (its own executor, its loop thread)."""
        ...


class BlockingDriver(Driver, Protocol):
    """A driver whose wait blocks the machine's thread (run_sync, run_workflow)."""

    def wait(self, sched: Scheduler, timeout: float | None) -> None:
        """Block until the inbox gets something (and do it), or `timeout` seconds pass."""
        ...


class Machine:
    """One run of one program: the C, E, S and K registers and the loop that steps them."""

    __slots__ = (
        "K",
        "_captures",
        "_fatal",
        "_guard",
        "_hook_lock",
        "_hooks",
        "_hooks_off",
        "_hooks_version",
        "_pending_interrupt",
        "_saved_handlers",
        "async_mode",
        "blocking",
        "capture_hook",
        "collectors",
        "defer_interrupts",
        "driver",
        "env",
        "handlers",
        "held",
        "hook",
        "log",
        "root",
        "sched",
        "steps",
        "storage",
        "store",
        "task",
    )

    def __init__(
        self,
        handlers: dict[type, Handler],
        env: dict[Any, Any] | None = None,
        store: dict[Any, Any] | None = None,
        storage: DurableStorage | None = None,
        async_mode: bool = False,
        max_concurrency: int | None = None,
    ) -> None:
        self.env: dict[Any, Any] = dict(env) if env else {}
        self.store: dict[Any, Any] = dict(store) if store else {}
        self.log: list[Any] = []
        self.handlers = handlers
        self.storage = storage
        self.hook: StepHook | None = None
        self.steps = 0
        # Under async_mode every perform and await goes to the driver; otherwise a run with one
        # live task performs and awaits inline, through the handlers table.
        self.async_mode = async_mode
        # The user's own handlers of Perform/Await: run on the driver's executor when blocking
        # calls cannot run inline.
        self.blocking: dict[type, Handler] = {}
        self.driver: Driver | None = None  # set by the runner; a blocking one by default
        self.sched = Scheduler(self, max_concurrency)
        # The main task: the one `run` starts, whose end ends the run.
        self.root: Task = self.sched.new_task(None, None, self.env, (), ready=False)
        self.root.name = "main"  # until it runs a program (`begin`)
        self.task = self.root  # the running task, whose K, env and collectors are the registers
        self.K: list[Frame] = self.root.K
        self.collectors: tuple[Collector, ...] = ()  # the running task's open listens
        # id(error) -> (error, its traceback), for the running task's errors still on their way
        # out; a few at once when a cleanup raises while another error waits for it.
        self._captures = self.root.captures
        # An error that ends the run whatever the program does (the hook raised): generators
        # are closed rather than thrown into, and catch/safe let it pass; cleanups still run.
        self._fatal: BaseException | None = None
        # Called by `_capture` (error path only) so an observer can record K while it still
        # holds the frames that were pending; None unless someone observes the run.
        self.capture_hook: CaptureHook | None = None
        self._hooks: dict[str, StepHook] = {}
        self._hooks_off = False
        self._hooks_version = 0
        # Reentrant: Ctrl-C's handler installs a hook on the machine thread, maybe while that
        # thread is inside `set_hook` (see `request_interrupt`).
        self._hook_lock = threading.RLock()
        # False only while the loop of a run with a single task runs, where an interrupt may be
        # raised at once (see `doeff.cesk.interrupts`); elsewhere Ctrl-C waits for a boundary.
        self.defer_interrupts = True
        self._pending_interrupt: BaseException | None = None
        # None: no blocking run drives the machine; False: one does, unguarded so far.
        self._guard: InterruptGuard | bool | None = None
        self._saved_handlers: dict[type, Handler] = {}
        # True while a pause holds a run on an event loop (its control sets it as the pause
        # lands and clears it on release): no turn starts, whichever task is ready (see
        # `proceed`).
        self.held = False

    # -- starting programs -------------------------------------------------------------------

    def start(self, program: Any) -> Control:
        """Push what it takes to run `program`; return the outcome to hand to the top of K.

        A generator program gets a `ReturnFrame` and is started by sending it None; a `@do`
        function whose body is not a generator has already produced its value.
        """
        if isinstance(program, Program):
            fn = program.fn
            plain = program.__class__ is Program  # a subclass may start or name itself
            try:
                # Program.start written out for a plain program: every sub-program call is one.
                started = fn(*program.args, **program.kwargs) if plain else program.start()
            except BaseException as err:
                # A body that is not a generator raised: it never reached K, so its code is
                # named here, to end the traceback at the user's raise as a generator's would.
                self._capture(err, None, getattr(fn, "__code__", None))
                return None, err
            if isinstance(started, GeneratorType):
                # Program.name without the property's call, for a plain program of a function.
                name = (fn.__qualname__ if plain and fn.__class__ is FunctionType else None)
                self.K.append(ReturnFrame(started, name or program.name))
                return None, None
            return started, None
        if isinstance(program, Effect):
            return self.dispatch(program)
        if isinstance(program, GeneratorType):
            self.K.append(ReturnFrame(program, program.__name__))
            return None, None
        refused = _not_a_program(program)
        self._capture(refused, None)
        return None, refused

    def start_if_runnable(self, answer: Any) -> Control:
        """Run `answer` if it is a program or an effect; otherwise it is the answer itself."""
        if isinstance(answer, Program | Effect | GeneratorType):
            return self.start(answer)
        return answer, None

    # -- the loop ----------------------------------------------------------------------------

    def run(self, program: Any) -> CESKResult[Any]:
        """Run `program` to its end, blocking this thread while calls are in flight (on a
        driver of its own, unless one was set)."""
        self.begin(program)
        driver = self.driver
        if driver is None:
            own = SyncDriver()
            self.driver = own
            try:
                return self.drive(own)
            finally:
                own.close()
        assert hasattr(driver, "wait"), "Machine.run needs a blocking driver"
        return self.drive(driver)  # type: ignore[arg-type]

    def begin(self, program: Any) -> None:
        """Make `program` the main task's, ready to run (`proceed` runs it)."""
        root = self.root
        root.program = program
        root.name = program_name(program)
        root.status = "ready"
        self.sched.ready.append(root)

    def drive(self, driver: BlockingDriver) -> CESKResult[Any]:
        """Run tasks until the main one ends, sleeping in `driver` while nothing is ready."""
        self._guard = False  # this thread blocks in the run: Ctrl-C may need guarding
        try:
            result = self._drive(driver)
        finally:
            guard, self._guard = self._guard, None
            if isinstance(guard, InterruptGuard):
                guard.remove()
        # A Ctrl-C that came as the run ended found no step boundary left to land at: raise it
        # here, as Python would have, rather than drop it.
        err, self._pending_interrupt = self._pending_interrupt, None
        if err is not None:
            raise err
        return result

    def going_concurrent(self) -> None:
        """Tasks are about to be added: from now on Ctrl-C must wait for a step boundary (see
        `doeff.cesk.interrupts`)."""
        self.defer_interrupts = True
        if self._guard is False:  # a blocking run, not guarded yet
            self._guard = InterruptGuard(self)
            self._guard.install()

    def _drive(self, driver: BlockingDriver) -> CESKResult[Any]:
        while True:
            outcome = self.proceed()
            if outcome is not WAIT:
                result: CESKResult[Any] = outcome
                return result
            try:
                driver.wait(self.sched, self.sched.deadline())
            except BaseException as err:  # an interrupt while every task waits
                if self._fatal is not None:
                    raise  # a second one while the run already ends: the user insists
                self.interrupt(err)

    def proceed(self, budget: int | None = None) -> Any:
        """Run ready tasks, one after another, until the main task has ended (its
        `CESKResult`) or none is ready (WAIT: the driver waits for the inbox, then calls again).
        With a `budget`, at most that many turns of tasks (YIELD when tasks are still ready).
        WAIT at once while a pause holds the run (`held`): a pause may land in the step where
        a task blocks, and news taken in after it (a call completed, a cancel from another
        thread) would otherwise start another task's turn while the run reads "paused".
        """
        sched = self.sched
        root = self.root
        turns = 0
        while True:
            if self.held:
                return WAIT
            task = sched.next_ready()
            if task is not None:
                self._run(task)
                turns += 1
                # `>=`: a turn past the budget (the queue was empty when it was used up, news
                # came since) ends the call too, so it never runs more turns than it should.
                if budget is not None and turns >= budget and sched.ready:
                    return YIELD
                continue
            if root.done:
                return self._result()
            if not sched.expecting() and sched.break_deadlock():
                continue
            if self._idle() or (not sched.ready and not sched.attention):
                return WAIT

    def interrupt(self, err: BaseException) -> None:
        """An error that ends the run, raised outside the loop (e.g. Ctrl-C while waiting):
        every task unwinds with it, running its cleanups."""
        self._capture(err, None)
        self._fail_run(err)

    def _fail_run(self, err: BaseException) -> BaseException:
        """Make `err` the error that ends the run (unless one already does) and cancel every
        task with it, the running one too (it takes its cancel where it is, see `_loop`)."""
        if self._fatal is None:
            self._fatal = err
        self._drop_hooks()
        self.sched.interrupt(self._fatal)
        return self._fatal

    def request_interrupt(self, err: BaseException) -> None:
        """End the run with `err` as soon as the machine reaches a step boundary: the running
        task's next step, or the inbox if none runs. Called by the SIGINT handler, on the
        machine's thread at any bytecode, so it only queues (`SimpleQueue.put` is reentrant) and
        installs a hook (under a reentrant lock). A second request while the run is already
        ending raises at once: the user insists."""
        if self._pending_interrupt is not None or self._fatal is not None:
            raise err
        self._pending_interrupt = err
        sched = self.sched
        sched.inbox.put(self._deliver_interrupt)
        sched.attention = True
        self.set_hook("interrupt", self._interrupt_hook)

    def _interrupt_hook(self, steps: int, effect: Any) -> BaseException | None:
        """Raise the requested interrupt in the running task: the loop unwinds every task."""
        err = self._pending_interrupt
        if err is None:
            return None
        self._pending_interrupt = None
        raise err

    def _deliver_interrupt(self) -> None:
        """The requested interrupt, taken from the inbox while no task runs."""
        err = self._pending_interrupt
        if err is not None:
            self._pending_interrupt = None
            self.interrupt(err)

    def poke(self) -> None:
        """Wake a machine that waits for calls (any thread), so it reaches an idle boundary."""
        self.sched.inbox.put(_nothing)
        self.notify()

    def notify(self) -> None:
        """The inbox got something (any thread): the running task should notice, the driver
        wake."""
        self.want_tick()
        if self.driver is not None:
            self.driver.notify()

    def want_tick(self) -> None:
        """Install the scheduler's tick: another task is ready, or news came (any thread)."""
        if "tick" not in self._hooks and len(self.sched.tasks) > 1:
            self.set_hook("tick", self.sched.tick)

    # -- tasks --------------------------------------------------------------------------------

    def _run(self, task: Task) -> None:
        """Give the machine to `task` until it blocks, ends or yields its turn."""
        self._switch(task)
        task.status = "running"
        sched = self.sched
        sched.left = QUANTUM
        if "tick" in self._hooks and not sched.ready and not sched.attention:
            # Alone to run: no tick, so the loop keeps its fast path (a task waiting on a call
            # costs the running one nothing). News re-installs it (see `notify`).
            self.set_hook("tick", None)
            if sched.attention:
                self.want_tick()
        # One task alone: Ctrl-C may raise anywhere in here, the except below takes it.
        self.defer_interrupts = len(sched.tasks) > 1
        try:
            value, exc = self._resume_control(task)
            if value is SUSPEND:  # its program is an effect, and it blocked at once
                self._blocked_step(None)
                outcome = SUSPEND
            else:
                outcome = self._loop(value, exc)
        except BaseException as err:
            self.defer_interrupts = True
            outcome = self._unwinding(err)
        self.defer_interrupts = True
        if outcome is SUSPEND:
            return  # whatever blocked it recorded what it waits on
        kind, value, exc = outcome
        if kind is SWITCH:
            task.resume_with = (value, exc)
            task.status = "ready"
            self.sched.ready.append(task)
            return
        self.sched.program_ended(task, value, exc, self._traceback_of(exc))

    def _switch(self, task: Task) -> None:
        """Make `task` the running one: its K, env and listens become the registers."""
        current = self.task
        if current is task:
            return
        if not current.done:
            current.env = self.env
            current.collectors = self.collectors
        self.task = task
        self.K = task.K
        self.env = task.env
        self.collectors = task.collectors
        self._captures = task.captures

    def _resume_control(self, task: Task) -> Control:
        """What the task's top of K gets now: its program's start, the outcome that woke it, or
        the cancellation asked for meanwhile."""
        err = task.cancel_error
        program = task.program
        if program is not STARTED:
            if task._name is None:  # its name is read from the program it starts with
                task._name = program
            task.program = STARTED
            if err is None:
                return self.start(program)
            task.cancel_error = None  # cancelled before it ran: none of its program runs
            awaitable = getattr(program, "awaitable", None)
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # an await_ effect that never ran: no "never awaited" warning
            self._capture(err, None)
            return None, err
        value, exc = task.resume_with
        task.resume_with = (None, None)
        inherited = task.inherited
        if inherited is not None:
            task.inherited = None
            assert exc is not None
            self._capture_inherited(exc, inherited)
        elif exc is not None:
            self._capture(exc, None)
        if err is not None and not task.shielded:
            task.cancel_error = None
            return None, self._land(err, value, exc)
        return value, exc

    def _land(self, err: BaseException, value: Any, pending: BaseException | None
              ) -> BaseException:
        """`err` (a cancellation) lands at the running task's yield. A value on its way there is
        a finished step: `cached` computations it returns to store it first."""
        if pending is None:
            K = self.K
            while K and K[-1].__class__ is CacheFillFrame:
                value, pending = K.pop().leave(self, value, None)
                if pending is not None:
                    break
        if pending is not None and err.__context__ is None and pending is not err:
            err.__context__ = pending  # keep the error that was already on its way out
        self._capture(err, None)
        return err

    def _unwinding(self, err: BaseException) -> Any:
        """The loop raised itself: the hook raised in a step where the task blocked, or an
        interrupt landed between steps. The run ends with that error, after the cleanups on K
        of every task have run; the running task's unwind here (the loop's outcome)."""
        while True:
            self._drop_hooks()
            self._capture(err, None)
            if self._fatal is not None:  # failed again while unwinding: give up on K
                self._abandon()
                return DONE, None, self._fatal
            task = self.task
            # Every task is cancelled, this one too: the joins that cancel their children as
            # they are cancelled then leave it alone (it has a cancel already).
            self._fail_run(err)
            if task.status != "running":  # it blocked in the step that raised: the cancel woke
                return SUSPEND            # it, or will once its call returns
            task.cancel_error = None  # delivered here
            try:
                return self._loop(None, err)
            except BaseException as again:
                err = again

    def cleanup_begins(self) -> None:
        """A `finally_` cleanup starts in the running task: cancels wait until it has ended."""
        self.task.shielded += 1

    def cleanup_ends(self, value: Any, exc: BaseException | None) -> Control:
        """The running task's cleanup ended, to carry on with (value, exc): unless a cancel
        waited for it, which lands now (one already on its way out as cancelled stays so)."""
        task = self.task
        task.shielded -= 1
        if task.shielded:
            return value, exc
        err, task.cancel_error = task.cancel_error, None
        if self._fatal is not None:
            return None, self._fatal  # nothing replaces the error that ends the run
        if err is None:
            return value, exc
        if isinstance(exc, CancellationError):
            return value, exc
        return None, self._land(err, value, exc)

    def _idle(self) -> bool:
        """No task can run: a boundary where the monitor's requests are answered. True if the
        control asked to stop here (PREEMPT: a pause of a run on an event loop, which its
        driver then awaits): no task may run, even one that news has made ready since."""
        control = self._hooks.get("control")
        if control is None:
            return False
        injected = control(self.steps, None)
        self._injected(injected)
        return injected is PREEMPT

    def _injected(self, injected: BaseException | None) -> None:
        """An error a hook asked to raise while the main task is not the one running: it is
        raised in the main task (which cancels what it waits for)."""
        if injected is not None and injected is not PREEMPT:
            self.sched.cancel(self.root, injected)

    def _result(self) -> CESKResult[Any]:
        root = self.root
        exc = root.error
        if exc is None:
            return CESKResult(root.value, None, None, self.store, self.log)
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: K was unwound (finally ran); re-raise.
        captured = root.traceback or CapturedTraceback((), exc)
        return CESKResult(None, exc, captured, self.store, self.log)

    def _traceback_of(self, exc: BaseException | None) -> CapturedTraceback | None:
        if exc is None:
            return None
        captures = self._captures
        entry = captures.get(id(exc)) if captures is not None else None
        return entry[1] if entry is not None and entry[0] is exc else None

    def live_tasks(self) -> Iterator[Task]:
        """The tasks that have not finished, the main one first."""
        return iter(self.sched.tasks.values())

    def concurrency_changed(self, concurrent: bool) -> None:
        """Several tasks live: blocking calls leave the inline path (the tick that shares the
        machine comes with a second ready task). One again: back to the single-task fast
        path."""
        if concurrent:
            if not self.async_mode:
                for effect_type in (Perform, Await):
                    handler = self.handlers.pop(effect_type, None)
                    if handler is not None:
                        self._saved_handlers[effect_type] = handler
        else:
            self.handlers.update(self._saved_handlers)
            self._saved_handlers.clear()
            self.set_hook("tick", None)

    @property
    def concurrent(self) -> bool:
        """True while more than one task lives."""
        return len(self.sched.tasks) > 1

    # -- hooks --------------------------------------------------------------------------------

    def set_hook(self, slot: str, hook: StepHook | None) -> None:
        """Install (or remove, with None) the step hook of `slot`: "observer" (on_step),
        "control" (a monitor's requests), "tick" (the scheduler) or "interrupt" (Ctrl-C). Any
        thread may call it."""
        with self._hook_lock:
            if hook is None:
                self._hooks.pop(slot, None)
            elif not self._hooks_off:
                self._hooks[slot] = hook
            self._hooks_version += 1
            while True:
                # The SIGINT handler may run a nested set_hook on this thread between any two
                # lines: publish again until no change slipped in.
                seen = self._hooks_version
                hooks = [h for name in HOOK_SLOTS if (h := self._hooks.get(name)) is not None]
                self.hook = None if not hooks else hooks[0] if len(hooks) == 1 else _chain(hooks)
                if seen == self._hooks_version:
                    return

    def _drop_hooks(self) -> None:
        with self._hook_lock:
            self._hooks_off = True
            self._hooks.clear()
            self._hooks_version += 1
            self.hook = None

    @property
    def fatal(self) -> BaseException | None:
        """The error ending the run whatever the program does, once there is one."""
        return self._fatal

    def catchable(self, exc: BaseException) -> bool:
        """Whether catch/safe may stop `exc`: like `except Exception`, minus cancellation,
        misuse of doeff itself (no handler of the program's can fix its code), and an error that
        ends the run regardless."""
        return (isinstance(exc, Exception)
                and not isinstance(exc, CancellationError | UsageError)
                and exc is not self._fatal)

    def _loop(self, value: Any, exc: BaseException | None) -> Any:
        """The run loop proper (see the module docstring): steps the running task until its K
        is empty (DONE, value, exc), it blocks (SUSPEND) or the hook asks to switch (SWITCH,
        value, exc)."""
        K = self.K
        get_handler = self.handlers.get
        steps = self.steps
        while K:
            frame = K[-1]
            effect = None
            if type(frame) is ReturnFrame:
                try:
                    if exc is None:
                        effect = frame.send(value)
                    elif exc is self._fatal:
                        if not _cleanup_not_started(K, frame):
                            K.pop()
                            self._close(frame)
                            continue
                        exc = None  # a finally_ cleanup the fatal error reached: run it
                        effect = frame.send(None)
                    else:
                        err, exc = exc, None
                        effect = frame.throw(err)
                except StopIteration as stop:
                    K.pop()
                    value = stop.value
                except BaseException as err:
                    exc = err
                    self._capture(err, frame)
                    K.pop()
                else:
                    # While plain handlers answer and no hook watches, resume the same generator
                    # here, step after step, without the outer loop's checks (a plain handler
                    # leaves K alone). The try blocks hold only the calls, as above: an interrupt
                    # landing in the loop itself is not taken for the program's error.
                    handler = get_handler(effect.__class__)
                    while handler is not None:
                        try:
                            value = handler(effect)
                        except BaseException as err:
                            exc = err
                            self._capture(err, None)
                            break
                        if self.hook is not None:
                            break
                        steps += 1
                        self.steps = steps
                        try:
                            effect = frame.send(value)
                        except StopIteration as stop:
                            K.pop()
                            value = stop.value
                            effect = None
                            break
                        except BaseException as err:
                            exc = err
                            effect = None
                            self._capture(err, frame)
                            K.pop()
                            break
                        handler = get_handler(effect.__class__)
                    else:
                        if effect.__class__ is Program:  # a sub-program call: no look-ups
                            value, exc = self.start(effect)
                        else:
                            value, exc = self.dispatch(effect)
                            if value is SUSPEND:
                                break
            else:
                K.pop()
                value, exc = frame.leave(self, value, exc)
                if value is SUSPEND:
                    break
            steps += 1
            self.steps = steps  # published for observers; a slot write costs within noise
            hook = self.hook
            if hook is not None:
                try:
                    injected = hook(steps, effect)
                except BaseException as err:  # an observer failed, or Ctrl-C was asked for
                    self._capture(err, None)
                    injected = self._fail_run(err)
                    task = self.task
                    if task.shielded:
                        continue  # it takes the cancel once its cleanup has ended
                    task.cancel_error = None
                    exc = self._land(injected, value, exc)
                    continue
                if injected is not None:
                    if injected is PREEMPT:
                        return SWITCH, value, exc
                    if self.task is self.root and not self.root.shielded:
                        exc = self._land(injected, value, exc)
                    else:
                        self._injected(injected)
        else:
            return DONE, value, exc
        # Left the loop: the running task blocked in this step.
        self.steps = steps
        self._blocked_step(effect)
        return SUSPEND

    def _blocked_step(self, effect: Any) -> None:
        """End the step in which the running task blocked (its hook call included)."""
        steps = self.steps = self.steps + 1
        hook = self.hook
        if hook is not None:
            self._injected(hook(steps, effect))

    # -- endings and errors ------------------------------------------------------------------

    def _abandon(self) -> None:
        """Close every suspended generator (running their `finally:` blocks), innermost first."""
        K = self.K
        while K:
            frame = K.pop()
            if type(frame) is ReturnFrame:
                self._close(frame)

    @staticmethod
    def _close(frame: ReturnFrame) -> None:
        """Close a generator the run is giving up on; its `finally:` blocks run."""
        with contextlib.suppress(Exception):  # the error ending the run matters more
            frame.gen.close()

    def _capture(self, err: BaseException, raised_from: ReturnFrame | None,
                 raised_in: CodeType | None = None) -> None:
        """Record the program frames pending when `err` first appears (error path only).

        `raised_from` is the frame whose generator raised; `raised_in`, the code of a program
        body that raised without ever being a generator on K.

        K is read now, while it still holds every frame the error will unwind; the exception's
        own `__traceback__` would not do: it also holds frames of earlier runs when an instance
        is raised again, and of plain generators the user's functions iterate.
        """
        captures = self._captures
        if captures is None:
            captures = self._captures = self.task.captures = {}
        entry = captures.get(id(err))
        if entry is not None and entry[0] is err:
            return
        marks: list[CodeMark] = []
        for frame in self.K:
            if type(frame) is ReturnFrame:
                if frame is raised_from:
                    line = raised_line(frame.code, err.__traceback__)
                    if line is not None:
                        marks.append((frame.code, line))
                else:
                    marks.extend(suspended_marks(frame.gen))
        origin = raised_from.code if raised_from is not None else raised_in
        if raised_in is not None:
            line = raised_line(raised_in, err.__traceback__)
            if line is not None:
                marks.append((raised_in, line))
        captures[id(err)] = (err, CapturedTraceback(marks, err, origin))
        if len(captures) > _KEEP_CAPTURES:
            del captures[next(iter(captures))]  # the oldest: long since caught
        if self.capture_hook is not None:
            self.capture_hook(err, raised_from)

    def _capture_inherited(self, err: BaseException, child: CapturedTraceback) -> None:
        """`err` comes from a task this one waited for: its traceback is this task's pending
        program frames followed by the child's."""
        captures = self._captures
        if captures is None:
            captures = self._captures = self.task.captures = {}
        entry = captures.get(id(err))
        if entry is not None and entry[0] is err:
            return
        marks = [m for frame in self.K if type(frame) is ReturnFrame
                 for m in suspended_marks(frame.gen)]
        captures[id(err)] = (err, CapturedTraceback([*marks, *child.marks], err, child.origin))
        if len(captures) > _KEEP_CAPTURES:
            del captures[next(iter(captures))]
        if self.capture_hook is not None:
            self.capture_hook(err, None)

    def yield_site(self, frame: ReturnFrame) -> str:
        """`file.py:42 in fn` for the user line where `frame`'s generator is suspended."""
        where = suspended_at(frame.gen)
        if not where:
            return f"in {frame.name}()"
        loc = where[-1]
        return f'at {loc.filename}:{loc.lineno} in {loc.function}(): "{loc.code}"'

    def dispatch(self, effect: Any) -> Control:
        """Answer anything yielded: an effect, a control effect, a program, or an invalid value.

        The loop answers plain effects inline (the hot path) and comes here for the rest; an
        effect started as a program (`safe(get("k"))`) comes here too.
        """
        handler = self.handlers.get(effect.__class__)
        if handler is not None:
            try:
                return handler(effect), None
            except BaseException as err:
                self._capture(err, None)
                return None, err
        special = _CONTROL.get(effect.__class__)
        if special is not None:
            return special(self, effect)
        if isinstance(effect, Program | GeneratorType):
            return self.start(effect)
        bad = self._bad_yield(effect)
        self._capture(bad, None)
        return None, bad

    def _top_generator(self) -> ReturnFrame | None:
        for frame in reversed(self.K):
            if type(frame) is ReturnFrame:
                return frame
        return None

    def _bad_yield(self, effect: Any) -> BaseException:
        frame = self._top_generator()
        site = self.yield_site(frame) if frame is not None else "by run_sync"
        name = f"{frame.name}()" if frame is not None else "the program"
        if isinstance(effect, Effect):
            names = ", ".join(sorted(t.__name__ for t in self.handlers if isinstance(t, type)))
            return UnhandledEffectError(
                f"no handler for effect {_describe(effect)} yielded {site}. Register one with "
                f"run_sync(..., handlers={{{type(effect).__name__}: fn}}). Handled here: {names}"
            )
        hint = ""
        if isinstance(effect, KleisliProgram):
            hint = " It is a @do function: call it to get a program, e.g. `yield f()`."
        elif hasattr(effect, "__await__"):
            hint = " To await it, yield await_(it)."
        return InvalidYieldError(
            f"{name} yielded {_describe(effect)} {site}; a program may only yield an "
            f"Effect or a program (the result of calling a @do function).{hint}"
        )


def _cleanup_not_started(K: list[Frame], frame: ReturnFrame) -> bool:
    """True for a `finally_` cleanup generator pushed but not yet started: closing it would
    skip the whole cleanup, so a fatal error runs it instead."""
    gen = frame.gen
    fresh = gen.gi_frame is not None and not gen.gi_suspended and not gen.gi_running
    return fresh and len(K) >= 2 and type(K[-2]) is ResumeFrame


def _describe(obj: Any) -> str:
    return f"{short_repr(obj, 80)} ({type(obj).__qualname__})"


def _not_a_program(obj: Any) -> NotAProgramError:
    """The error for running something that is neither a program nor an effect."""
    if isinstance(obj, KleisliProgram):
        name = getattr(obj.fn, "__name__", "f")
        return NotAProgramError(
            f"{obj!r} is a @do function, not a program: call it to get one, e.g. {name}(...)"
        )
    hint = " To await it, use await_(it)." if hasattr(obj, "__await__") else ""
    return NotAProgramError(
        f"expected a program (the result of calling a @do function) or an effect, got "
        f"{_describe(obj)}.{hint}"
    )


# -- control effects: the ones that push frames rather than answer at once ------------------------


def _nothing() -> None:
    """An inbox item that only wakes the machine."""


def _local(m: Machine, eff: Local) -> Control:
    m.K.append(LocalFrame(m.env, eff.updates))
    m.env = {**m.env, **eff.updates}
    return m.start(eff.program)


def _listen(m: Machine, eff: Listen) -> Control:
    collector = Collector()
    m.K.append(ListenFrame(m.collectors, collector))
    m.collectors = (*m.collectors, collector)
    return m.start(eff.program)


def _catch(m: Machine, eff: Catch) -> Control:
    m.K.append(CatchFrame(eff.handler))
    return m.start(eff.program)


def _finally(m: Machine, eff: Finally) -> Control:
    m.K.append(FinallyFrame(eff.cleanup))
    return m.start(eff.program)


def _safe(m: Machine, eff: Safe) -> Control:
    m.K.append(SafeFrame())
    return m.start(eff.program)


def _cache_fill(m: Machine, eff: CacheFill) -> Control:
    m.K.append(CacheFillFrame(eff.key, eff.ttl, eff.info))
    return m.start(eff.program)


def _children(m: Machine, programs: tuple[Any, ...]) -> list[Task]:
    m.going_concurrent()
    sched, task, env, collectors = m.sched, m.task, m.env, m.collectors
    return [sched.new_task(p, task, env, collectors) for p in programs]


def _gather(m: Machine, eff: Gather) -> Control:
    if len(eff.programs) <= 1:
        if not eff.programs:
            return [], None
        m.K.append(_ONE)
        return m.start(eff.programs[0])
    frame = GatherFrame(m.sched, m.task, _children(m, eff.programs))
    m.K.append(frame)
    m.sched.block(m.task, frame, eff)
    return SUSPEND, None


def _race(m: Machine, eff: Race) -> Control:
    if len(eff.programs) == 1:
        return m.start(eff.programs[0])
    frame = RaceFrame(m.sched, m.task, _children(m, eff.programs))
    m.K.append(frame)
    m.sched.block(m.task, frame, eff)
    return SUSPEND, None


def _spawn(m: Machine, eff: Spawn) -> Control:
    m.going_concurrent()
    return m.sched.new_task(eff.program, m.task, m.env, m.collectors), None


def _own_task(m: Machine, name: str, task: Any) -> Task:
    if not isinstance(task, Task) or task._canceller is not m.sched:
        raise InvalidEffectError(
            f"{name}({task!r:.60}): not a task of this run; pass a Task that spawn(...) "
            f"answered in the same run"
        )
    return task


def _wait(m: Machine, eff: Wait) -> Control:
    try:
        target = _own_task(m, "wait", eff.task)
        if target is m.task:
            raise DeadlockError(
                f"{target.name}() (task {target.task_id}) waits for itself: wait(task) needs "
                f"another task"
            )
    except (InvalidEffectError, DeadlockError) as err:
        m._capture(err, None)
        return None, err
    if not target.done:
        m.sched.wait_for(m.task, target, eff)
        return SUSPEND, None
    target.retrieve()
    if target.error is None:
        return target.value, None
    if target.traceback is not None:
        m._capture_inherited(target.error, target.traceback)
    return None, target.error


def _cancel(m: Machine, eff: Cancel) -> Control:
    try:
        target = _own_task(m, "cancel", eff.task)
    except InvalidEffectError as err:
        m._capture(err, None)
        return None, err
    if target is m.task:  # cancelling itself: it lands here, at once
        itself = CancellationError(f"task {target.task_id} ({target.name}()) cancelled itself")
        target.cancelled = True
        m._capture(itself, None)
        return None, itself
    return m.sched.cancel(target), None


def _limit(m: Machine, eff: Limit) -> Control:
    try:
        limiter = m.sched.limiter(eff.name, (eff.concurrency, eff.rate))
    except UsageError as err:
        m._capture(err, None)
        return None, err
    now = time.monotonic()
    if not limiter.waiters and limiter.wait_time(now) == 0.0:
        m.K.append(limiter.enter(now))
        return m.start(eff.program)
    m.sched.wait_turn(m.task, limiter, eff.program, eff)
    return SUSPEND, None


def _perform(m: Machine, eff: Perform) -> Control:
    # Reached when blocking calls leave the inline path: several tasks live, or run_async.
    handler = m.blocking.get(Perform)
    if handler is None:
        fn = eff.fn
        if not callable(fn):
            err = not_callable("perform", fn)
            m._capture(err, None)
            return None, err
        call: tuple[Any, tuple[Any, ...], dict[str, Any]] = (fn, eff.args, eff.kwargs)
    else:
        call = (handler, (eff,), {})
    driver = m.driver
    assert driver is not None
    m.sched.call(m.task, eff, _call_on(driver), call)
    return SUSPEND, None


def _await(m: Machine, eff: Await) -> Control:
    # Reached when awaits leave the inline path: several tasks live, or run_async.
    driver = m.driver
    if driver is None:
        err = UnhandledEffectError("await_ has no handler in this run")
        m._capture(err, None)
        return None, err
    handler = m.blocking.get(Await)
    if handler is None:
        m.sched.call(m.task, eff, driver.await_, eff.awaitable)
    else:
        m.sched.call(m.task, eff, _call_on(driver), (handler, (eff,), {}))
    return SUSPEND, None


def _call_on(driver: Driver) -> Callable[[tuple[Any, tuple[Any, ...], dict[str, Any]]], Pending]:
    """Start `fn(*args, **kwargs)` on the driver's executor, given as one tuple."""

    def start(call: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> Pending:
        return driver.call(*call)

    return start


class _OneFrame(Frame):
    """Answer the value of a gather's only program as a one-item list."""

    __slots__ = ()

    def leave(self, m: Any, value: Any, exc: BaseException | None) -> Control:
        return ([value], None) if exc is None else (value, exc)

    def describe(self) -> str:
        return "gather (1 program)"


_ONE = _OneFrame()


def _chain(hooks: list[StepHook]) -> StepHook:
    """One step hook calling several; an error to raise outranks a request to switch tasks."""
    if len(hooks) == 2:  # the common pair (an observer and the scheduler's tick): no loop
        first, second = hooks

        def pair(steps: int, effect: Any) -> BaseException | None:
            a = first(steps, effect)
            b = second(steps, effect)
            if a is not None and a is not PREEMPT:
                return a
            return b if b is not None else a

        return pair

    def chained(steps: int, effect: Any) -> BaseException | None:
        out = None
        for hook in hooks:
            injected = hook(steps, effect)
            if injected is not None and (out is None or out is PREEMPT):
                out = injected
        return out

    return chained


_CONTROL: dict[type, Callable[[Machine, Any], Control]] = {
    Local: _local,
    Listen: _listen,
    Catch: _catch,
    Finally: _finally,
    Safe: _safe,
    Gather: _gather,
    CacheFill: _cache_fill,
    Spawn: _spawn,
    Wait: _wait,
    Cancel: _cancel,
    Race: _race,
    Limit: _limit,
    Await: _await,
    Perform: _perform,
}

# Await and Perform are also answered by plain handlers while a run has one task, so users may
# override them.
CONTROL_EFFECTS = frozenset(_CONTROL) - {Await, Perform}
