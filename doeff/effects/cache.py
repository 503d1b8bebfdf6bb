"""Cache effects: read and write the durable storage given to `run_sync(storage=...)`.

The durable-execution pattern: look a step's result up by a key that names the step, and only
compute and store it on a miss. After a crash, re-running the workflow reads finished steps back.

    @do
    def workflow():
        rows = yield cached("fetch", lambda: perform(fetch_rows))
        return len(rows)

`cached(key, compute, ttl=, retry=, timeout=, claim=)` is the hand-keyed form of `@step`
(`doeff.steps`), which builds the key from the function and its arguments; both run `fill`.
A look-up is one read (`CacheLookup`: the storage tells a stored None from a miss itself), a
miss one more write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from doeff.effects.base import Effect, effect, fast_constructor
from doeff.effects.retry import Labeled, Retry, retry, sleep
from doeff.effects.timeout import check_seconds, timeout
from doeff.errors import (
    EncodeError,
    InvalidKeyError,
    InvalidOptionError,
    NotAProgramError,
    StepClaimError,
)
from doeff.program import Program
from doeff.protocols import Held


def _check_key(effect: str, key: object) -> None:
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"{effect} key must be a str, got {key!r} ({type(key).__name__}); "
            f"build a string key, e.g. f\"step:{{...}}\""
        )


class _KeyedEffect(Effect):
    """Base of the cache effects: a key that is not a str is refused when the effect is built."""

    __slots__ = ()
    key: str

    def __post_init__(self) -> None:
        if self.key.__class__ is not str:  # the common case costs no call
            _check_key(type(self).__name__.lower(), self.key)


@effect
class CacheGet(_KeyedEffect):
    """Effect to retrieve a value from durable storage (None when missing)."""

    key: str


@effect
class CachePut(_KeyedEffect):
    """Effect to store a value in durable storage."""

    key: str
    value: Any


@effect
class CacheStore(_KeyedEffect):
    """Store a value whose record expires `ttl` seconds after the put (None: never) and carries
    `info`, a small JSON summary, in its header (what a step's result is stored with)."""

    key: str
    value: Any
    ttl: float | None = None
    info: Mapping[str, Any] | None = None


@effect
class CacheDelete(_KeyedEffect):
    """Effect to delete a value from durable storage; answers True if it existed."""

    key: str


@effect
class CacheExists(_KeyedEffect):
    """Effect to check if a key exists in durable storage."""

    key: str


@effect
class CacheFill(_KeyedEffect):
    """Run `program` and store its value under `key` before answering it (`cached` uses it),
    with the `ttl` and `info` of `CacheStore`.

    The value is stored even when a cancellation arrives as the computation returns: the
    cancellation then lands at the `yield` of this effect, after the put.
    """

    key: str
    program: Program[Any] | Effect
    ttl: float | None = None
    info: Mapping[str, Any] | None = None


@effect
class CacheLookup(_KeyedEffect):
    """Look `key` up in one read; answer `(True, value)` (a stored None too) or `(False, None)`
    for a missing or expired record. `call` describes the step asked for (strict replay's
    explanation of a miss uses it)."""

    key: str
    call: Any = None


@effect
class CacheClaim(_KeyedEffect):
    """Take a lease of `seconds` on `key` before computing it; answer the lease, or a `Held`
    naming the worker that holds it."""

    key: str
    seconds: float


@effect
class CacheRelease(Effect):
    """Give back a lease `CacheClaim` answered; answer False if it had been taken over."""

    lease: Any


_cacheget = fast_constructor(CacheGet)
_cacheput = fast_constructor(CachePut)
_cachedelete = fast_constructor(CacheDelete)
_cacheexists = fast_constructor(CacheExists)
_cachelookup = fast_constructor(CacheLookup)
_cachefill = fast_constructor(CacheFill)


def cacheget(key: str) -> CacheGet:
    """Get a value from durable cache (None when the key is missing)."""
    return _cacheget(key)


def cacheput(key: str, value: Any) -> CachePut:
    """Put a value into durable cache."""
    return _cacheput(key, value)


def cachestore(key: str, value: Any, *, ttl: float | timedelta | None = None) -> CacheStore:
    """Put a value into durable cache whose record is a miss from `ttl` seconds (or a
    timedelta) after it was stored."""
    return CacheStore(key, value, None if ttl is None else check_seconds("ttl", ttl))


def cachedelete(key: str) -> CacheDelete:
    """Delete a value from durable cache; answers True if the key existed."""
    return _cachedelete(key)


def cacheexists(key: str) -> CacheExists:
    """Check if a key exists in durable cache."""
    return _cacheexists(key)


@dataclass(frozen=True)
class Claim:
    """How a claimed step coordinates workers (`claim=True` takes the defaults).

    - `lease`: seconds a worker's claim lasts unless renewed; it is renewed every third of that
      while the step computes, so it runs out only `lease` seconds after its worker died.
    - `poll`: seconds between two looks of a worker waiting for another's result.
    - `wait`: give up waiting after this many seconds (`StepClaimError`); None waits as long
      as the holder's lease stays alive.
    """

    lease: float = 60.0
    poll: float = 0.5
    wait: float | None = None

    def __post_init__(self) -> None:
        check_seconds("Claim: lease", self.lease)
        check_seconds("Claim: poll", self.poll)
        if self.wait is not None:
            check_seconds("Claim: wait", self.wait)


def as_claim(claim: object) -> Claim | None:
    """`claim=` as a `Claim` (True: the defaults) or None (False, None)."""
    if claim is None or claim is False:
        return None
    if claim is True:
        return Claim()
    if isinstance(claim, Claim):
        return claim
    raise InvalidOptionError(f"claim={claim!r:.60}: give True, False or Claim(lease=..., "
                             f"poll=..., wait=...)")


@dataclass(frozen=True)
class FillOptions:
    """What a step does on a miss besides computing: expiry, retries, deadline, claim."""

    ttl: float | None = None
    retry: Retry | None = None
    timeout: float | None = None
    claim: Claim | None = None

    @classmethod
    def of(cls, ttl: object = None, retry: object = None, timeout: object = None,
           claim: object = None) -> FillOptions:
        """Options checked and normalised (seconds as floats, `claim=True` as a `Claim()`)."""
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidOptionError(f"retry={retry!r:.60}: give a Retry(attempts=..., ...)")
        return cls(None if ttl is None else check_seconds("ttl", ttl), retry,
                   None if timeout is None else check_seconds("timeout", timeout),
                   as_claim(claim))


NO_OPTIONS = FillOptions()


def _fresh(compute: Callable[[], Any], key: str) -> Generator[Any, Any, Any]:
    """Run what `compute()` returns, calling it anew each time (each retry's attempt)."""
    computation = compute()
    if not isinstance(computation, Program | Effect):
        raise _not_runnable(key, computation)
    return (yield computation)


def _what(key: str, call: Any) -> str:
    """The step as messages and labels name it."""
    return f"cached({key!r:.80})" if call is None else str(call.what)


def _computation(key: str, compute: Callable[[], Any], options: FillOptions,
                 call: Any) -> Program[Any] | Effect:
    """The program that computes a missing step: under its timeout and retry policy."""
    if options.timeout is None and options.retry is None:
        computation = compute()
        if not isinstance(computation, Program | Effect):
            raise _not_runnable(key, computation)
        return computation
    program: Program[Any] = Labeled(_what(key, call), _fresh, (compute, key))
    if options.timeout is not None:
        program = timeout(program, options.timeout)
    if options.retry is not None:
        program = retry(program, options.retry)
    return program


def _not_runnable(key: str, computation: object) -> NotAProgramError:
    return NotAProgramError(
        f"cached({key!r}, compute): compute() returned {computation!r}, not a program or an "
        f"effect; wrap a plain function call as perform(fn, *args)"
    )


def _cached(key: str, compute: Callable[[], Any], options: FillOptions = NO_OPTIONS,
            call: Any = None) -> Generator[Any, Any, Any]:
    """The body of `cached` and `@step`: answer the value stored under `key`, or compute it
    (`compute()` gives the program, anew for each attempt), store it and answer it.

    `call`, for a step, describes the call: `call.info()` is the summary its record's header
    carries, `call.what` names it in messages, and strict replay explains a miss with it."""
    found, value = yield _cachelookup(key, call)
    if found:
        return value
    info = None if call is None else call.info()
    claim = options.claim
    if claim is None:
        program = _computation(key, compute, options, call)
        return (yield from _store(key, program, options.ttl, info, call))
    lease = yield from _claimed(key, claim, call)
    if lease is None:
        return (yield _cachelookup(key, call))[1]  # another worker stored it meanwhile
    try:
        # The worker that held the claim before may have stored the value and released it
        # between this worker's look-up and its claim.
        found, value = yield _cachelookup(key, call)
        if found:
            return value
        program = _computation(key, compute, options, call)
        return (yield from _store(key, program, options.ttl, info, call))
    finally:
        yield CacheRelease(lease)


fill = _cached


def _claimed(key: str, claim: Claim, call: Any) -> Generator[Any, Any, Any]:
    """Take the lease on `key` (answer it), or wait while another worker holds it until its
    value is stored (answer None)."""
    started = time.monotonic()
    while True:
        answer = yield CacheClaim(key, claim.lease)
        if not _is_held(answer):
            return answer
        if claim.wait is not None and time.monotonic() - started > claim.wait:
            raise StepClaimError(
                f"{key!r:.80} is claimed by {answer.owner}, whose lease is alive until "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(answer.expires_at))}Z, and "
                f"its result did not arrive within {claim.wait:g} s (Claim(wait=...)); that "
                f"worker is still computing it, or stalled while renewing its lease"
            )
        yield sleep(claim.poll)
        found, _ = yield CacheLookup(key, call)
        if found:
            return None


def _is_held(answer: Any) -> bool:
    return isinstance(answer, Held)


def _store(key: str, program: Program[Any] | Effect, ttl: float | None,
           info: Mapping[str, Any] | None, call: Any) -> Generator[Any, Any, Any]:
    # CacheFill stores the value before answering it, so a cancel that arrives as the
    # computation returns cannot discard a finished step.
    try:
        return (yield _cachefill(key, program, ttl, info))
    except EncodeError as exc:
        if exc.key != key:
            raise  # the computation's own error, not the store's refusal of its value
        # The result was paid for: hand it to the caller on the error instead of losing it.
        err = EncodeError(
            f"{_what(key, call)}: the step computed a {type(exc.value).__qualname__} that the "
            f"storage cannot store, so it was not cached: {exc}. The value is on this error as "
            f".value; store such values with a codec that can (Durable(..., fallback=...)) or "
            f"return plain data from the step"
        )
        err.key, err.value = key, exc.value
        raise err from exc


def cached(key: str, compute: Callable[[], Any], *, ttl: float | timedelta | None = None,
           retry: Retry | None = None, timeout: float | timedelta | None = None,
           claim: bool | Claim = False) -> Program[Any]:
    """A program that answers the value stored under `key`, computing and storing it on a miss.

    `compute` is a zero-argument callable returning the program or effect that computes the
    value; it is called only on a miss (once per attempt under `retry`). A stored None counts
    as a hit::

        rows = yield cached("fetch", lambda: perform(fetch_rows))

    Options, as for `@step`: `ttl` (seconds or a timedelta) after which the record is a miss;
    `retry` a `Retry` policy; `timeout` seconds per attempt (`StepTimeoutError`); `claim=True`
    (or a `Claim`) so that of several workers reaching the key at once one computes it and the
    others wait for its result. See docs/steps.md.
    """
    if key.__class__ is not str:  # as `_KeyedEffect` does: the common case costs no call
        _check_key("cached", key)
    if not callable(compute):
        raise NotAProgramError(
            f"cached({key!r}, compute): compute must be a zero-argument callable returning a "
            f"program or effect, got {compute!r}; write cached(key, lambda: ...)"
        )
    if ttl is None and retry is None and timeout is None and not claim:
        return Program(_cached, (key, compute))
    return Program(_cached, (key, compute, FillOptions.of(ttl, retry, timeout, claim)))
