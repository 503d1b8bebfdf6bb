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

One step resumes the top generator and handles what it yields, or pops a finished frame. The
loop runs one step per iteration, except that a generator whose effects plain handlers answer
is resumed again at once while no hook watches. The step count is published on the machine
(`steps`) at every step, so an observer on another thread reads it from there. An optional
`hook(steps, effect)` runs after every step; it is read from the machine on each step so an
observer can attach or detach while a run is in progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from types import CodeType, GeneratorType
from typing import Any

from doeff.cesk.frames import (
    CatchFrame,
    Control,
    FinallyFrame,
    Frame,
    GatherFrame,
    ListenFrame,
    LocalFrame,
    ResumeFrame,
    ReturnFrame,
    SafeFrame,
)
from doeff.cesk.result import CESKResult
from doeff.cesk.traceback import (
    CapturedTraceback,
    CodeMark,
    raised_line,
    short_repr,
    suspended_at,
    suspended_marks,
)
from doeff.effects.base import Effect
from doeff.effects.error import Catch, Finally, Safe
from doeff.effects.io import Await, Gather
from doeff.effects.reader import Local
from doeff.effects.writer import Listen
from doeff.errors import (
    CancellationError,
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

# Returned in place of a value when the machine must leave its loop to await (run_async).
SUSPEND: Any = object()


class Machine:
    """One run of one program: the C, E, S and K registers and the loop that steps them."""

    __slots__ = (
        "K",
        "_captures",
        "_fatal",
        "async_mode",
        "capture_hook",
        "env",
        "handlers",
        "hook",
        "log",
        "pending_await",
        "steps",
        "storage",
        "store",
    )

    def __init__(
        self,
        handlers: dict[type, Handler],
        env: dict[Any, Any] | None = None,
        store: dict[Any, Any] | None = None,
        storage: DurableStorage | None = None,
        async_mode: bool = False,
    ) -> None:
        self.K: list[Frame] = []
        self.env: dict[Any, Any] = dict(env) if env else {}
        self.store: dict[Any, Any] = dict(store) if store else {}
        self.log: list[Any] = []
        self.handlers = handlers
        self.storage = storage
        self.hook: StepHook | None = None
        self.steps = 0
        self.async_mode = async_mode
        self.pending_await: Awaitable[Any] | None = None
        # id(error) -> (error, its traceback), for errors still on their way out; a few at once
        # when a cleanup raises while another error waits for it.
        self._captures: dict[int, tuple[BaseException, CapturedTraceback]] = {}
        # An error that ends the run whatever the program does (the hook raised): generators
        # are closed rather than thrown into, and catch/safe let it pass; cleanups still run.
        self._fatal: BaseException | None = None
        # Called by `_capture` (error path only) so an observer can record K while it still
        # holds the frames that were pending; None unless someone observes the run.
        self.capture_hook: CaptureHook | None = None

    # -- starting programs -------------------------------------------------------------------

    def start(self, program: Any) -> Control:
        """Push what it takes to run `program`; return the outcome to hand to the top of K.

        A generator program gets a `ReturnFrame` and is started by sending it None; a `@do`
        function whose body is not a generator has already produced its value.
        """
        if isinstance(program, Program):
            try:
                started = program.start()
            except BaseException as err:
                # A body that is not a generator raised: it never reached K, so its code is
                # named here, to end the traceback at the user's raise as a generator's would.
                self._capture(err, None, getattr(program.fn, "__code__", None))
                return None, err
            if isinstance(started, GeneratorType):
                self.K.append(ReturnFrame(started, program.name))
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
        """Run `program` to its end (or, in async mode, to its first await)."""
        value, exc = self.start(program)
        result: CESKResult[Any] = self.resume(value, exc)
        return result

    def resume(self, value: Any, exc: BaseException | None) -> Any:
        """Step until K is empty; returns the `CESKResult`, or `SUSPEND` to await in async mode."""
        while True:
            try:
                return self._loop(value, exc)
            except BaseException as err:
                # The hook (an observer's callback) raised, or an interrupt landed between steps:
                # the run ends with that error, after the cleanups on K have run.
                self.hook = None
                self._capture(err, None)
                if self._fatal is not None:  # failed again while unwinding: give up on K
                    self._abandon()
                    return self._finish(None, self._fatal)
                self._fatal = err
                self._drop_pending_await()
                value, exc = None, err

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
        """The run loop proper (see the module docstring)."""
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
                injected = hook(steps, effect)
                if injected is not None:
                    exc = self._inject(injected, exc)
        else:
            return self._finish(value, exc)
        # Left the loop to await (run_async only): this step ends here.
        injected = self._suspend(steps + 1, effect)
        if injected is None:
            return SUSPEND
        return self._loop(None, self._inject(injected, None))

    def _suspend(self, steps: int, effect: Any) -> BaseException | None:
        """End the step that reached an await (run_async): None to go and await, or the error
        the hook injected instead (the awaitable is then dropped unawaited)."""
        self.steps = steps
        hook = self.hook
        injected = hook(steps, effect) if hook is not None else None
        if injected is not None:
            self._drop_pending_await()
        return injected

    def _inject(self, injected: BaseException, pending: BaseException | None) -> BaseException:
        """An exception the hook asks to raise at the current yield (e.g. a cancellation)."""
        if pending is not None and injected.__context__ is None and pending is not injected:
            injected.__context__ = pending  # keep the error that was already on its way out
        self._capture(injected, None)
        return injected

    # -- endings and errors ------------------------------------------------------------------

    def _finish(self, value: Any, exc: BaseException | None) -> CESKResult[Any]:
        if exc is None:
            return CESKResult(value, None, None, self.store, self.log)
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: K was unwound (finally ran); re-raise.
        entry = self._captures.get(id(exc))
        captured = entry[1] if entry is not None and entry[0] is exc else CapturedTraceback((), exc)
        return CESKResult(None, exc, captured, self.store, self.log)

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

    def _drop_pending_await(self) -> None:
        """Close an awaitable that will never be awaited (no "never awaited" warning)."""
        pending, self.pending_await = self.pending_await, None
        close = getattr(pending, "close", None)
        if close is not None:
            close()

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


def _local(m: Machine, eff: Local) -> Control:
    m.K.append(LocalFrame(m.env, eff.updates))
    m.env = {**m.env, **eff.updates}
    return m.start(eff.program)


def _listen(m: Machine, eff: Listen) -> Control:
    m.K.append(ListenFrame(len(m.log)))
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


def _gather(m: Machine, eff: Gather) -> Control:
    return GatherFrame(eff.programs).next(m)


def _await(m: Machine, eff: Await) -> Control:
    # Reached only in async mode (run_sync registers a blocking handler for Await instead).
    if not m.async_mode:
        return None, UnhandledEffectError("await_ has no handler in this run")
    m.pending_await = eff.awaitable
    return SUSPEND, None


_CONTROL: dict[type, Callable[[Machine, Any], Control]] = {
    Local: _local,
    Listen: _listen,
    Catch: _catch,
    Finally: _finally,
    Safe: _safe,
    Gather: _gather,
    Await: _await,
}

# Await is also answered by a plain handler under run_sync, so users may override it.
CONTROL_EFFECTS = frozenset(_CONTROL) - {Await}
