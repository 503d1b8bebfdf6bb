"""Cache effects: read and write the durable storage given to `run_sync(storage=...)`.

The durable-execution pattern: look a step's result up by a key that names the step, and only
compute and store it on a miss. After a crash, re-running the workflow reads finished steps back.

    @do
    def workflow():
        rows = yield cached("fetch", lambda: perform(fetch_rows))
        return len(rows)
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from doeff.effects.base import Effect, effect, fast_constructor
from doeff.errors import EncodeError, InvalidKeyError, NotAProgramError
from doeff.program import Program, do


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
class CacheDelete(_KeyedEffect):
    """Effect to delete a value from durable storage; answers True if it existed."""

    key: str


@effect
class CacheExists(_KeyedEffect):
    """Effect to check if a key exists in durable storage."""

    key: str


@effect
class CacheFill(_KeyedEffect):
    """Run `program` and store its value under `key` before answering it (`cached` uses it).

    The value is stored even when a cancellation arrives as the computation returns: the
    cancellation then lands at the `yield` of this effect, after the put.
    """

    key: str
    program: Program[Any] | Effect


_cacheget = fast_constructor(CacheGet)
_cacheput = fast_constructor(CachePut)
_cachedelete = fast_constructor(CacheDelete)
_cacheexists = fast_constructor(CacheExists)


def cacheget(key: str) -> CacheGet:
    """Get a value from durable cache (None when the key is missing)."""
    return _cacheget(key)


def cacheput(key: str, value: Any) -> CachePut:
    """Put a value into durable cache."""
    return _cacheput(key, value)


def cachedelete(key: str) -> CacheDelete:
    """Delete a value from durable cache; answers True if the key existed."""
    return _cachedelete(key)


def cacheexists(key: str) -> CacheExists:
    """Check if a key exists in durable cache."""
    return _cacheexists(key)


@do
def _cached(key: str, compute: Callable[[], Any]) -> Generator[Any, Any, Any]:
    hit = yield CacheGet(key)
    if hit is not None:
        return hit
    # A stored None is a hit too, which `if (yield cacheget(k)) is None` cannot tell. Read again
    # on a hit: another worker may have stored the step between the two look-ups.
    if (yield CacheExists(key)):
        return (yield CacheGet(key))
    computation = compute()
    if not isinstance(computation, Program | Effect):
        raise NotAProgramError(
            f"cached({key!r}, compute): compute() returned {computation!r}, not a program or an "
            f"effect; wrap a plain function call as perform(fn, *args)"
        )
    # CacheFill stores the value before answering it, so a cancel that arrives as the computation
    # returns cannot discard a finished step.
    try:
        result = yield CacheFill(key, computation)
    except EncodeError as exc:
        if exc.key != key:
            raise  # the computation's own error, not the store's refusal of its value
        # The result was paid for: hand it to the caller on the error instead of losing it.
        err = EncodeError(
            f"cached({key!r:.80}): the step computed a {type(exc.value).__qualname__} that the "
            f"storage cannot store, so it was not cached: {exc}. The value is on this error as "
            f".value; store such values with a codec that can (Durable(..., fallback=...)) or "
            f"return plain data from the step"
        )
        err.key, err.value = key, exc.value
        raise err from exc
    return result


def cached(key: str, compute: Callable[[], Any]) -> Program[Any]:
    """A program that answers the value stored under `key`, computing and storing it on a miss.

    `compute` is a zero-argument callable returning the program or effect that computes the
    value; it is called only on a miss. A stored None counts as a hit::

        rows = yield cached("fetch", lambda: perform(fetch_rows))
    """
    _check_key("cached", key)
    if not callable(compute):
        raise NotAProgramError(
            f"cached({key!r}, compute): compute must be a zero-argument callable returning a "
            f"program or effect, got {compute!r}; write cached(key, lambda: ...)"
        )
    return _cached(key, compute)
