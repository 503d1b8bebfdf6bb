"""K: the continuation stack, one frame class per kind of "what happens next".

The machine pops the top frame whenever the computation below it has an outcome (a value or an
exception) and asks the frame what to do with it. A frame's `leave` returns the outcome to hand
to the next frame down, after possibly pushing new frames (to run a cleanup, the next program of
a gather, a catch handler...). `ReturnFrame` is the exception: the loop resumes its generator
directly, because that is the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import CodeType, GeneratorType
from typing import Any, Protocol

from doeff.cesk.traceback import short_repr, suspended_at
from doeff.effects.base import Runnable, fast_constructor
from doeff.effects.cache import CachePut, CacheStore
from doeff.errors import EncodeError
from doeff.outcome import Err, Ok

# C, the control: the value to send into the frame below, or the exception to throw into it.
Control = tuple[Any, BaseException | None]
_cacheput = fast_constructor(CachePut)
_cachestore = fast_constructor(CacheStore)


class Registers(Protocol):
    """What a frame may read and change in the machine that pops it (the machine implements it)."""

    K: list[Frame]
    env: dict[Any, Any]
    log: list[Any]
    collectors: tuple[Any, ...]

    @property
    def fatal(self) -> BaseException | None:
        """The error ending the run whatever the program does, once there is one."""
        ...

    def start(self, program: Any) -> Control:
        """Push what it takes to run `program`; the control to hand to the top of K."""
        ...

    def start_if_runnable(self, answer: Any) -> Control:
        """Run `answer` if it is a program or an effect; otherwise it is the answer itself."""
        ...

    def catchable(self, exc: BaseException) -> bool:
        """Whether catch/safe may stop `exc`."""
        ...

    def cleanup_begins(self) -> None:
        """A `finally_` cleanup starts in the running task: later cancels wait for its end."""
        ...

    def cleanup_ends(self, value: Any, exc: BaseException | None) -> Control:
        """The cleanup ended with the outcome (value, exc) to carry on with: the outcome, or a
        cancel that waited for the cleanup."""
        ...


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or short_repr(fn, 40)


class Frame:
    """Base of all K frames."""

    __slots__ = ()

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        """Take the outcome of the computation above; return the outcome for the frame below."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human description, as shown in snapshots."""
        return type(self).__name__


class ReturnFrame(Frame):
    """Resume a suspended generator with the answer to what it yielded."""

    __slots__ = ("code", "gen", "name", "send", "throw")

    def __init__(self, gen: GeneratorType[Any, Any, Any], name: str) -> None:
        self.gen = gen
        self.send = gen.send
        self.throw = gen.throw
        self.code: CodeType = gen.gi_code
        self.name = name

    def describe(self) -> str:
        where = suspended_at(self.gen)
        if not where:
            return f"{self.name}()"
        return f"{self.name}() waiting at {where[-1].short()}"


class CatchFrame(Frame):
    """On an exception from below, run the handler and answer what it gives."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[BaseException], Any]) -> None:
        self.handler = handler

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        if exc is None or not m.catchable(exc):
            return value, exc
        try:
            answer = self.handler(exc)
        except BaseException as err:
            if err.__context__ is None and err is not exc:
                err.__context__ = exc
            return None, err
        return m.start_if_runnable(answer)

    def describe(self) -> str:
        return f"catch -> {_callable_name(self.handler)}"


class FinallyFrame(Frame):
    """Run the cleanup program, then carry on with the outcome from below."""

    __slots__ = ("cleanup",)

    def __init__(self, cleanup: Runnable) -> None:
        self.cleanup = cleanup

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        m.K.append(ResumeFrame(value, exc))
        m.cleanup_begins()
        return m.start(self.cleanup)

    def describe(self) -> str:
        return f"finally -> {short_repr(self.cleanup, 40)}"


class ResumeFrame(Frame):
    """After a cleanup: restore the outcome it interrupted, unless the cleanup itself raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value = value
        self.error = error

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        if exc is not None:
            # As in Python: the cleanup's error replaces the original, which becomes its context.
            if exc.__context__ is None and self.error is not None and exc is not self.error:
                exc.__context__ = self.error
            return m.cleanup_ends(None, exc)
        return m.cleanup_ends(self.value, self.error)

    def describe(self) -> str:
        kept = "error" if self.error is not None else "value"
        return f"after cleanup: resume with saved {kept}"


class LocalFrame(Frame):
    """Restore the environment that was in force before a `local`."""

    __slots__ = ("saved", "updates")

    def __init__(self, saved: dict[Any, Any], updates: Mapping[Any, Any]) -> None:
        self.saved = saved
        self.updates = updates

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        m.env = self.saved
        return value, exc

    def describe(self) -> str:
        return f"local {short_repr(dict(self.updates), 40)}"


class ListenFrame(Frame):
    """Close the listen's collector and answer the value from below with the entries it got."""

    __slots__ = ("collector", "saved")

    def __init__(self, saved: tuple[Any, ...], collector: Any) -> None:
        self.saved = saved
        self.collector = collector

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        m.collectors = self.saved
        collector = self.collector
        collector.open = False  # tasks spawned inside may outlive the listen: no more entries
        if exc is not None:
            return value, exc
        return (value, collector.entries), None

    def describe(self) -> str:
        return "listen (collects the log)"


class SafeFrame(Frame):
    """Turn the outcome from below into an `Ok` or `Err` value."""

    __slots__ = ()

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        if exc is None:
            return Ok(value), None
        if not m.catchable(exc):
            return None, exc
        return Err(exc), None

    def describe(self) -> str:
        return "safe"


class CacheFillFrame(Frame):
    """Store the computation's value under the cached step's key, then answer it."""

    __slots__ = ("info", "key", "ttl")

    def __init__(self, key: str, ttl: float | None = None, info: Any = None) -> None:
        self.key = key
        self.ttl = ttl  # the record expires this many seconds after the put
        self.info = info  # the step's summary, for the record's header

    def leave(self, m: Registers, value: Any, exc: BaseException | None) -> Control:
        if exc is not None:
            return value, exc
        # Through the CachePut handler, as a `yield cacheput(...)` would be answered.
        put = (_cacheput(self.key, value) if self.ttl is None and self.info is None
               else _cachestore(self.key, value, self.ttl, self.info))
        _, err = m.start(put)
        if err is not None:
            if isinstance(err, EncodeError):
                err.key, err.value = self.key, value  # paid for: `cached` hands it to the caller
            return None, err
        return value, None

    def describe(self) -> str:
        return f"cached {short_repr(self.key, 40)}: store the value"
