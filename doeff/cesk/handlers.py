"""Handlers of the built-in effects that answer at once, bound to one machine's registers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from doeff.cesk.calls import not_callable
from doeff.cesk.machine import CONTROL_EFFECTS, Handler, Machine
from doeff.effects.cache import (
    CacheClaim,
    CacheDelete,
    CacheExists,
    CacheGet,
    CacheLookup,
    CachePut,
    CacheRelease,
    CacheStore,
)
from doeff.effects.io import Await, Perform
from doeff.effects.reader import Ask
from doeff.effects.state import Get, Modify, Put
from doeff.effects.writer import Tell
from doeff.errors import (
    DoeffError,
    EnvKeyError,
    InvalidHandlerError,
    StepClaimError,
    StorageError,
)
from doeff.protocols import ClaimStorage, DurableStorage, RecordStorage


class override:
    """Mark a handler as deliberately replacing the handler of a built-in effect."""

    __slots__ = ("fn",)

    def __init__(self, fn: Handler) -> None:
        self.fn = fn


def state_handlers(m: Machine) -> dict[type, Handler]:
    """Reader, state and writer handlers over the machine's E and S."""
    store = m.store
    log = m.log

    def ask(eff: Ask) -> Any:
        try:
            return m.env[eff.key]
        except KeyError:
            known = ", ".join(repr(k) for k in m.env) or "none"
            raise EnvKeyError(
                f"ask({eff.key!r}): the environment has no such key (keys: {known}); pass it with "
                f"run_sync(..., env={{{eff.key!r}: ...}}) or local({{{eff.key!r}: ...}}, program)"
            ) from None

    def get(eff: Get) -> Any:
        return store.get(eff.key, eff.default)

    def put(eff: Put) -> None:
        store[eff.key] = eff.value

    def modify(eff: Modify) -> Any:
        try:
            new = eff.fn(store.get(eff.key, eff.default))
        except TypeError as err:
            if callable(eff.fn):
                raise
            raise not_callable("modify", eff.fn) from err
        store[eff.key] = new
        return new

    def tell(eff: Tell) -> None:
        message = eff.message
        log.append(message)
        collectors = m.collectors  # the open listens of the running task
        if collectors:
            for collector in collectors:
                if collector.open:
                    collector.entries.append(message)

    return {Ask: ask, Get: get, Put: put, Modify: modify, Tell: tell}


def cache_handlers(storage: DurableStorage) -> dict[type, Handler]:
    """The cache effects over a `DurableStorage`; failures surface as a `DoeffError`."""

    def guarded(op: str, call: Callable[[Any], Any]) -> Handler:
        def handle(eff: Any) -> Any:
            try:
                return call(eff)
            except DoeffError:
                raise  # already says what, where and what to do
            except Exception as err:
                raise StorageError(
                    f"{op}({eff.key!r}) failed in {type(storage).__name__}: "
                    f"{type(err).__name__}: {err}"
                ) from err

        return handle

    def put(eff: CachePut) -> None:
        storage.put(eff.key, eff.value)

    # Decided once: isinstance against a runtime-checkable protocol costs microseconds.
    records = storage if isinstance(storage, RecordStorage) else None
    claimer = storage if isinstance(storage, ClaimStorage) else None

    def store(eff: CacheStore) -> None:
        if records is not None:
            expires_at = None if eff.ttl is None else time.time() + eff.ttl
            records.put_record(eff.key, eff.value, expires_at=expires_at, info=eff.info)
        elif eff.ttl is not None:
            raise StorageError(
                f"cachestore({eff.key!r:.80}, ttl={eff.ttl:g}): {type(storage).__name__} cannot "
                f"keep an expiry with a record; use Durable(kv, codec) or InMemoryStorage"
            )
        else:
            storage.put(eff.key, eff.value)  # the info is a summary for tools: none here

    lookup = getattr(storage, "lookup", None)
    if lookup is None:
        def lookup(key: str) -> tuple[bool, Any]:
            # A stored None is a hit too, which get alone cannot tell. Read again on a hit:
            # another worker may have stored the step between the two look-ups.
            value = storage.get(key)
            if value is not None:
                return True, value
            if storage.exists(key):
                return True, storage.get(key)
            return False, None

    def look_up(eff: CacheLookup) -> tuple[bool, Any]:
        try:
            found: tuple[bool, Any] = lookup(eff.key)
        except DoeffError:
            raise
        except Exception as err:
            raise StorageError(f"cachelookup({eff.key!r}) failed in {type(storage).__name__}: "
                               f"{type(err).__name__}: {err}") from err
        return found

    def claims() -> ClaimStorage:
        if claimer is None:
            raise StepClaimError(
                f"claim=True needs a storage that can claim keys, and {type(storage).__name__} "
                f"cannot; use Durable over a doeff KVStore (SQLite, LMDB, PostgreSQL, memory) or "
                f"InMemoryStorage"
            )
        return claimer

    return {
        CacheGet: guarded("cacheget", lambda eff: storage.get(eff.key)),
        CachePut: guarded("cacheput", put),
        CacheStore: guarded("cachestore", store),
        CacheDelete: guarded("cachedelete", lambda eff: storage.delete(eff.key)),
        CacheExists: guarded("cacheexists", lambda eff: storage.exists(eff.key)),
        CacheLookup: look_up,
        CacheClaim: guarded("cacheclaim", lambda eff: claims().claim(eff.key, eff.seconds)),
        CacheRelease: lambda eff: claims().release_claim(eff.lease),
    }


BUILTIN_EFFECTS = frozenset(
    {Ask, Get, Put, Modify, Tell, Perform, Await, CacheGet, CachePut, CacheDelete, CacheExists,
     CacheLookup, CacheStore, CacheClaim, CacheRelease}
    | CONTROL_EFFECTS
)


def merge_user_handlers(table: dict[type, Handler], user: Mapping[type, Any] | None) -> None:
    """Add the user's handlers; replacing a built-in's must be marked with `override(fn)`."""
    if not user:
        return
    for effect_type, fn in user.items():
        if not isinstance(effect_type, type):
            raise InvalidHandlerError(
                f"handlers keys must be effect classes, got {effect_type!r}; write "
                f"handlers={{MyEffect: fn}} with the class itself"
            )
        if isinstance(fn, override):
            fn = fn.fn
        elif effect_type in BUILTIN_EFFECTS:
            raise InvalidHandlerError(
                f"{effect_type.__name__} is a built-in effect; to replace its handler, say so: "
                f"handlers={{{effect_type.__name__}: override(fn)}}"
            )
        if effect_type in CONTROL_EFFECTS:
            raise InvalidHandlerError(
                f"{effect_type.__name__} is handled by the machine itself (it pushes frames on "
                f"K), so it cannot be given a handler; remove it from handlers="
            )
        if not callable(fn):
            raise InvalidHandlerError(
                f"the handler for {effect_type.__name__} is not callable: {fn!r}; give a "
                f"function that takes the effect and returns its answer"
            )
        table[effect_type] = fn
