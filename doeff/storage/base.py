"""The storage protocols: `KVStore` (str -> bytes, where bytes live) and `DurableStorage`
(str -> object, what the cache effects talk to; defined in `doeff.protocols`), and `Closing`,
the context-manager behaviour every store shares."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from doeff.protocols import DurableStorage


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

    def namespace(self, name: str) -> KVStore:
        """A second keyspace in the same store (same file, environment or database), that
        this store's keys(), items(), len() and clear() never see, nor it theirs (run records
        live in one). The same name reaches the same data; names do not nest."""
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
class AtomicKVStore(KVStore, Protocol):
    """A KVStore with the conditional writes claims are built from (every doeff backend).

    Each call is atomic across the threads and processes sharing the store: of several
    `put_if_absent` calls on one missing key exactly one returns True, and a compare-and-swap or
    compare-and-delete applies only to the exact bytes it expects.
    """

    def put_if_absent(self, key: str, value: bytes) -> bool:
        """Store `value` only if `key` is missing; True if this call stored it."""
        ...

    def compare_and_swap(self, key: str, expected: bytes, value: bytes) -> bool:
        """Replace the value under `key` by `value` only if it is `expected` now."""
        ...

    def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if its value is `expected` now."""
        ...

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key given, all in one transaction; the number that existed."""
        ...


class Closing:
    """`with store:` closes the store on the way out (subclasses define close())."""

    def close(self) -> None:
        """Release resources; idempotent."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["AtomicKVStore", "Closing", "DurableStorage", "KVStore"]
