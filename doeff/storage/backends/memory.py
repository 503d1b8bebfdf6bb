"""`InMemoryKV`: a KVStore in a dict, for tests and for workflows that need no durability.

`DictStore` holds what it shares with `InMemoryStorage` (objects, no codec; in
`doeff.storage.presets`): a lock-guarded dict with the store verbs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from doeff.storage.backends.common import (
    KVBase,
    check_items,
    check_key,
    check_namespace,
    check_value,
    closed_error,
    on_fork,
)


class DictStore(KVBase):
    """A lock-guarded dict with the KVStore verbs; subclasses decide what a value may be."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        # Single dict operations are atomic under the GIL, but snapshots and clear() must not
        # interleave with writers on free-threaded builds, so they (and close) take the lock.
        self._lock = threading.Lock()
        self._closed = False
        self._spaces: dict[str, InMemoryKV] = {}  # namespace() -> its own dict
        on_fork(self)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held the lock at fork time; it does not exist
        # here to release it. The dict itself is whole: each of its operations is atomic.
        self._lock = threading.Lock()

    def _live(self, op: str) -> dict[str, Any]:
        if self._closed:
            raise closed_error(self, op)
        return self._data

    def get(self, key: str) -> Any | None:
        """Return the value under `key`, or None when missing."""
        return self._live("get").get(check_key(key, self))

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        data = self._live("delete")
        return data.pop(check_key(key, self), _MISSING) is not _MISSING

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        return check_key(key, self) in self._live("exists")

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        with self._lock:
            return list(self._live("keys"))

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of all (key, value) pairs."""
        with self._lock:
            return list(self._live("items").items())

    def clear(self) -> None:
        """Delete every entry."""
        with self._lock:
            self._live("clear").clear()

    def namespace(self, name: str) -> InMemoryKV:
        """A keyspace of its own beside this one (a dict of bytes, closed with this store)."""
        check_namespace(name, self)
        with self._lock:
            self._live("namespace")
            space = self._spaces.get(name)
            if space is None:
                space = self._spaces[name] = InMemoryKV()
        return space

    def close(self) -> None:
        """Drop the data; later operations raise StoreClosedError. Idempotent."""
        with self._lock:
            self._closed = True
            self._data = {}
            spaces, self._spaces = self._spaces, {}
        for space in spaces.values():
            space.close()

    def __len__(self) -> int:
        return len(self._live("len"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_MISSING = object()


class InMemoryKV(DictStore):
    """A thread-safe KVStore in a dict: bytes values, nothing survives the process."""

    def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or None when missing."""
        value: bytes | None = super().get(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key`, replacing any previous value."""
        key = check_key(key, self)
        value = check_value(value, self, key)
        with self._lock:  # not between a compare-and-swap's read and write
            self._live("put")[key] = value

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        key = check_key(key, self)
        with self._lock:
            return self._live("delete").pop(key, _MISSING) is not _MISSING

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every pair at once; a bad pair anywhere in the batch writes nothing."""
        batch = check_items(items, self)
        with self._lock:
            self._live("put_many").update(batch)

    # The conditional writes hold the lock from their read to their write, so they are atomic
    # against each other and against a put (which takes it too, see `put`).

    def put_if_absent(self, key: str, value: bytes) -> bool:
        """Store `value` only if `key` is missing; True if this call stored it."""
        key = check_key(key, self)
        value = check_value(value, self, key)
        with self._lock:
            data = self._live("put_if_absent")
            if key in data:
                return False
            data[key] = value
            return True

    def compare_and_swap(self, key: str, expected: bytes, value: bytes) -> bool:
        """Replace the value under `key` by `value` only if it is `expected` now."""
        key = check_key(key, self)
        value = check_value(value, self, key)
        expected = check_value(expected, self, key)
        with self._lock:
            data = self._live("compare_and_swap")
            if data.get(key) != expected:
                return False
            data[key] = value
            return True

    def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if its value is `expected` now."""
        key = check_key(key, self)
        expected = check_value(expected, self, key)
        with self._lock:
            data = self._live("compare_and_delete")
            if data.get(key) != expected:
                return False
            del data[key]
            return True

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key given at once; the number that existed."""
        batch = [check_key(k, self) for k in keys]
        with self._lock:
            data = self._live("delete_many")
            return sum(data.pop(k, _MISSING) is not _MISSING for k in batch)

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        return super().items()
