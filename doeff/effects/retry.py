"""Retries: run a program again when it fails, waiting longer each time.

    rows = yield retry(fetch(url), Retry(attempts=4, backoff=0.5, on=(ConnectionError,)))

`retry` is a program built from effects, so it composes with everything else: the waits between
attempts are `await_(asyncio.sleep(...))` (other tasks run meanwhile), an attempt may be a
`timeout(...)`, and a retried program inside `gather` is cancelled like any other. Each attempt
runs as a program named "NAME (attempt 2 of 4)", so snapshots and tracebacks show which attempt
is running; every failed attempt that is retried is logged (logger "doeff.steps", WARNING).

When the attempts are used up, the last error is raised as it is (so `except ValueError` still
catches it), with every earlier attempt's error attached: as a note (PEP 678, shown under the
traceback) and as its `__context__` chain, each attempt's error the context of the next.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from doeff.effects.base import Effect
from doeff.effects.io import Await, await_
from doeff.errors import CancellationError, InvalidEffectError, InvalidOptionError, UsageError
from doeff.program import Program

log = logging.getLogger("doeff.steps")


class Labeled(Program[Any]):
    """A program shown under a label of its own (in snapshots, tracebacks and task names)."""

    __slots__ = ("label",)

    def __init__(self, label: str, fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> None:
        super().__init__(fn, args)
        self.label = label

    @property
    def name(self) -> str:
        """The label."""
        return self.label


def name_of(program: Any) -> str:
    """A short human name for a program or an effect (`perform fetch`, `fetch`)."""
    if isinstance(program, Program):
        return program.name
    fn = getattr(program, "fn", None)
    if fn is not None:
        return f"{type(program).__name__.lower()} {getattr(fn, '__qualname__', repr(fn))}"
    awaitable = getattr(program, "awaitable", None)
    if awaitable is not None:
        return f"await {getattr(awaitable, '__qualname__', type(awaitable).__name__)}"
    return type(program).__name__


def _sleeping(seconds: float) -> Generator[Any, Any, None]:
    yield await_(asyncio.sleep(seconds))


def sleep(seconds: float) -> Program[None]:
    """A program that waits `seconds` without holding up other tasks (an asyncio sleep)."""
    return Labeled(f"sleep {seconds:g} s", _sleeping, (seconds,))


def _exception_types(on: Any) -> tuple[type[BaseException], ...]:
    types = on if isinstance(on, tuple) else (on,)
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException)
                            for t in types):
        raise InvalidOptionError(
            f"Retry(on={on!r:.80}): on must be an exception class or a tuple of them, e.g. "
            f"on=(ConnectionError, TimeoutError)"
        )
    return types


@dataclass(frozen=True)
class Retry:
    """How to retry a failing program.

    - `attempts`: how many times to run it in all, the first try included (1 = no retry).
    - `backoff`: seconds to wait before the second attempt; each later wait is `factor` times
      the one before, at most `max_backoff`.
    - `jitter`: each wait is shortened by a random fraction of up to `jitter` (0 to 1), so
      workers that failed together do not retry together.
    - `on`: the exception types worth retrying (default: any `Exception`). Cancellation and
      misuse of doeff (`UsageError`) are never retried.
    """

    attempts: int = 3
    backoff: float = 0.5
    factor: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.1
    on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        def bad(name: str, value: object, want: str) -> InvalidOptionError:
            return InvalidOptionError(f"Retry({name}={value!r}): {name} must be {want}")

        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) \
                or self.attempts < 1:
            raise bad("attempts", self.attempts, "an int >= 1 (every try counts, the first too)")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
                raise bad(name, value, "a number of seconds >= 0")
        if not isinstance(self.factor, int | float) or not self.factor >= 1:
            raise bad("factor", self.factor, "a number >= 1")
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter <= 1:
            raise bad("jitter", self.jitter, "a fraction from 0 to 1")
        object.__setattr__(self, "on", _exception_types(self.on))

    def delay(self, failed: int) -> float:
        """Seconds to wait after the `failed`-th failed attempt."""
        wait = min(self.max_backoff, self.backoff * self.factor ** (failed - 1))
        return wait * (1.0 - self.jitter * random.random())

    def retries(self, err: BaseException) -> bool:
        """Whether `err` is worth another attempt under this policy."""
        return (isinstance(err, self.on) and isinstance(err, Exception)
                and not isinstance(err, CancellationError | UsageError))


def _attempt(program: Any) -> Generator[Any, Any, Any]:
    return (yield program)


def _retrying(program: Any, policy: Retry, label: str) -> Generator[Any, Any, Any]:
    failures: list[BaseException] = []
    attempt = 0
    while True:
        attempt += 1
        try:
            return (yield Labeled(f"{label} (attempt {attempt} of {policy.attempts})", _attempt,
                                  (program,)))
        except BaseException as err:
            if attempt >= policy.attempts or not policy.retries(err):
                if failures and policy.retries(err):
                    _attach(err, failures, policy.attempts)
                raise
            failures.append(err)
            wait = policy.delay(attempt)
            log.warning("%s: attempt %d of %d failed (%s: %s); retrying in %.2f s", label,
                        attempt, policy.attempts, type(err).__name__, err, wait)
            if wait > 0:
                yield sleep(wait)


def _attach(err: BaseException, failures: list[BaseException], attempts: int) -> None:
    """Attach the earlier attempts' errors to the last one (notes, and the context chain)."""
    for n, earlier in enumerate(failures, 1):
        err.add_note(f"attempt {n} of {attempts} failed: {type(earlier).__name__}: {earlier}")
    err.add_note(f"attempt {len(failures) + 1} of {attempts} failed with this error: retries "
                 f"exhausted")
    chain = [*failures, err]
    for before, after in itertools.pairwise(chain):
        if after.__context__ is None and after is not before:
            after.__context__ = before


def retry(program: Program[Any] | Effect, policy: Retry | None = None) -> Program[Any]:
    """A program that runs `program`, running it again (after a wait) when it fails with an
    error `policy` retries; see `Retry`. A program is started afresh for each attempt.

    An `await_` effect cannot be retried (a coroutine is awaited once): retry a `@do` function
    that makes the coroutine, e.g. `retry(fetch(url))` where `fetch` awaits inside.
    """
    policy = Retry() if policy is None else policy
    if not isinstance(policy, Retry):
        raise InvalidOptionError(f"retry(program, policy): policy must be a Retry, got "
                                 f"{policy!r:.60}")
    if isinstance(program, Await):
        raise InvalidEffectError(
            f"retry({program!r:.60}): a coroutine can be awaited only once, so an await_ effect "
            f"cannot be retried; retry a @do function that awaits inside, which makes a new "
            f"coroutine for each attempt"
        )
    if not isinstance(program, Program | Effect):
        raise InvalidEffectError(
            f"retry(program, ...): program must be a program or an effect, got "
            f"{type(program).__name__} {program!r:.60}"
        )
    label = name_of(program)
    return Labeled(f"retry {label}", _retrying, (program, policy, label))


__all__ = ["Labeled", "Retry", "name_of", "retry", "sleep"]
