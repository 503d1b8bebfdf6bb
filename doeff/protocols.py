"""`DurableStorage`: what the cache effects talk to, named here so that the machine can type it
without importing a backend (the storage layer implements it; the machine only calls it).

Two optional extensions, which `Durable` and `InMemoryStorage` implement and the cache handlers
use when a storage has them: `RecordStorage` (a look-up that tells a stored None from a miss in
one read; records with an expiry and an info summary; headers listed without decoding) and
`ClaimStorage` (leases that let one worker of many compute a step).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DurableStorage(Protocol):
    """A thread-safe str -> object store, as the cache effects use it."""

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


@dataclass(frozen=True)
class RecordMeta:
    """One stored record as its header describes it (nothing decoded)."""

    key: str
    size: int
    updated_at: float | None  # Unix time, where the backend records one
    expires_at: float | None  # Unix time after which the record is a miss; None: never
    info: Mapping[str, Any] | None  # the summary its writer attached (a step's name, version...)


@runtime_checkable
class RecordStorage(DurableStorage, Protocol):
    """A DurableStorage whose records can carry an expiry and a summary, read in one look-up."""

    def lookup(self, key: str) -> tuple[bool, Any]:
        """(True, value) for a stored, unexpired record (a stored None included), else
        (False, None): one read."""
        ...

    def put_record(self, key: str, value: Any, *, expires_at: float | None = None,
                   info: Mapping[str, Any] | None = None) -> None:
        """`put`, the record to expire at `expires_at` (Unix time) and carrying `info`."""
        ...

    def describe(self, prefix: str = "") -> list[RecordMeta]:
        """The records whose key starts with `prefix`, by key, from their headers only."""
        ...


@dataclass(frozen=True)
class Held:
    """A claim another worker holds: its owner, and when its lease runs out unless renewed."""

    key: str
    owner: str
    expires_at: float


class Lease(Protocol):
    """A claim this worker holds, renewed while it computes; `lost` once another took it over."""

    key: str
    owner: str
    took_over: str | None  # the owner whose expired lease this one replaced, if any

    @property
    def lost(self) -> bool:
        """True once the lease was found taken over (it ran out before a renewal)."""
        ...


@runtime_checkable
class ClaimStorage(Protocol):
    """A storage on which workers claim a key before computing it, so one computes it."""

    def claim(self, key: str, seconds: float) -> Lease | Held:
        """Take a lease on `key` for `seconds` (renewed while held), or say who holds it."""
        ...

    def release_claim(self, lease: Lease) -> bool:
        """Give the lease up; False if it had been taken over meanwhile."""
        ...


__all__ = ["ClaimStorage", "DurableStorage", "Held", "Lease", "RecordMeta", "RecordStorage"]
