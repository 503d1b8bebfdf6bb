"""What every KVStore backend shares: key and value checks, error messages, fork hooks.

Written once here so that every backend accepts exactly the same keys and words its errors the
same way.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from typing import Literal, Protocol

from doeff.errors import (
    IncompatibleStoreError,
    InvalidKeyError,
    InvalidOptionError,
    InvalidValueError,
    StorageError,
    StoreClosedError,
)
from doeff.storage.base import Closing

Durability = Literal["normal", "full"]
DURABILITIES: tuple[Durability, ...] = ("normal", "full")


def check_durability(durability: str, store: str) -> Durability:
    """Return `durability` if it is one of DURABILITIES, else raise InvalidOptionError."""
    if durability == "normal":
        return "normal"
    if durability == "full":
        return "full"
    raise InvalidOptionError(
        f"{store}: durability must be one of {DURABILITIES}, got {durability!r}"
    )


def key_bytes(key: object, store: object) -> bytes:
    """The UTF-8 bytes of `key`; InvalidKeyError if it is not a str or not valid Unicode."""
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"{store!r}: keys must be str, got {type(key).__name__} {key!r:.80}; "
            f"build a string key, e.g. f\"step:{{...}}\""
        )
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            f"{store!r}: key {key!r:.80} is not valid Unicode ({exc.reason} at index "
            f"{exc.start}); keys must be encodable as UTF-8, so remove the lone surrogate"
        ) from exc


def check_key(key: object, store: object) -> str:
    """`key` once known to be a valid Unicode str (an ASCII str costs one flag test)."""
    if type(key) is str and key.isascii():
        return key
    key_bytes(key, store)
    assert isinstance(key, str)  # key_bytes raised otherwise
    return key


def check_value(value: object, store: object, key: str) -> bytes:
    """`value` as bytes; InvalidValueError for anything that is not bytes-like."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidValueError(
        f"{store!r}: put({key!r:.80}) needs a bytes value, got {type(value).__name__}; "
        f"a KVStore holds bytes only, wrap it in Durable(kv, codec) to store objects"
    )


def closed_error(store: object, op: str) -> StoreClosedError:
    """The error for `op` on a store after close()."""
    return StoreClosedError(
        f"{store!r} is closed, cannot {op}(); open the store again to keep using it"
    )


def foreign_store(store: object, what: str, found: str, advice: str) -> IncompatibleStoreError:
    """The error for a store location that holds something doeff did not write."""
    return IncompatibleStoreError(
        f"{store!r}: {what} is {found}, not a doeff store; it was left untouched. {advice}"
    )


def newer_store(store: object, what: str, version: int, supported: int) -> IncompatibleStoreError:
    """The error for a store written by a newer doeff schema than this one reads."""
    return IncompatibleStoreError(
        f"{store!r}: {what} has doeff schema version {version}, newer than the {supported} this "
        f"doeff reads; it was left untouched. Upgrade doeff"
    )


def failure(
    cls: type[StorageError], store: object, op: str, key: str | None, cause: object, hint: str
) -> StorageError:
    """A StorageError saying which store, which operation on which key, why, and what to do."""
    call = f"{op}({key!r:.80})" if key is not None else f"{op}()"
    return cls(f"{store!r}: {call} failed: {cause}; {hint}")


class ForkAware(Protocol):
    """Something holding OS resources that a forked child must not share with its parent."""

    def _after_fork_in_child(self) -> None: ...


# Weak, so registering never keeps a closed store alive.
_FORK_AWARE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def on_fork(obj: ForkAware) -> None:
    """Call `obj._after_fork_in_child()` in every child forked from now on."""
    _FORK_AWARE.add(obj)


def _reset_after_fork() -> None:
    for obj in list(_FORK_AWARE):
        obj._after_fork_in_child()


# A hook instead of a per-operation getpid() check: forking is rare, operations are hot.
os.register_at_fork(after_in_child=_reset_after_fork)


def check_items(items: Iterable[tuple[str, bytes]], store: object) -> list[tuple[str, bytes]]:
    """Validate a whole batch before any of it is written, so a bad pair writes nothing."""
    return [(k, check_value(v, store, k)) for k, v in ((check_key(k, store), v) for k, v in items)]


class KVBase(Closing):
    """What the backends share: context management and a `records()` built on `items()`."""

    def items(self) -> list[tuple[str, bytes]]:
        """All (key, value) pairs."""
        raise NotImplementedError

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, None) for keys starting with `prefix`, sorted: no update times here."""
        return sorted((k, v, None) for k, v in self.items() if k.startswith(prefix))
