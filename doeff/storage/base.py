"""The two storage protocols: `KVStore` (str -> bytes, where bytes live) and `DurableStorage`
(str -> object, what the cache effects talk to)."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable


@runtime_checkable
class KVStore(Protocol):
    """A thread-safe byte store: any valid Unicode `str` key, `bytes` values."""

    def get(self, key: str) -> bytes | None:
        """Return the value stored under `key`, or None when missing."""
        ...

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key`, replacing any previous value, atomically."""
        ...

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        ...

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        ...

    def keys(self) -> Iterable[str]:
        """All keys (a snapshot; order unspecified)."""
        ...

    def items(self) -> Iterable[tuple[str, bytes]]:
        """All (key, value) pairs (a snapshot; order unspecified)."""
        ...

    def clear(self) -> None:
        """Delete every entry."""
        ...

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every (key, value) pair in one transaction: all of them, or none on error."""
        ...

    def records(self, prefix: str = "") -> Iterable[tuple[str, bytes, float | None]]:
        """(key, value, updated_at) for keys starting with `prefix`, sorted by key.

        `updated_at` is a Unix time where the backend records one (SQLite, PostgreSQL), else None.
        """
        ...

    def close(self) -> None:
        """Release resources; later operations raise `StoreClosedError`. Idempotent."""
        ...

    def __len__(self) -> int: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class DurableStorage(Protocol):
    """The seed's protocol for the cache effects; implementations must be thread-safe."""

    def get(self, key: str) -> Any | None:
        """Get value by key. Returns None if not found."""
        ...

    def put(self, key: str, value: Any) -> None:
        """Store value with key. Overwrites if exists."""
        ...

    def delete(self, key: str) -> bool:
        """Delete key. Returns True if key existed."""
        ...

    def exists(self, key: str) -> bool:
        """Check if key exists."""
        ...

    def keys(self) -> Iterable[str]:
        """Iterate over all keys."""
        ...

    def items(self) -> Iterable[tuple[str, Any]]:
        """Iterate over all (key, value) pairs."""
        ...

    def clear(self) -> None:
        """Delete all entries."""
        ...
