"""`DurableStorage`: what the cache effects talk to, named here so that the machine can type it
without importing a backend (the storage layer implements it; the machine only calls it)."""

from __future__ import annotations

from collections.abc import Iterable
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


__all__ = ["DurableStorage"]
