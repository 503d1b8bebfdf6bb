"""Ready-made `DurableStorage`s with the names of doeff's first API: `SQLiteStorage` (a `Durable`
over one SQLite file, pickle by default) and `InMemoryStorage` (objects in a dict, no codec)."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from doeff.errors import StepClaimError
from doeff.protocols import Held, Lease, RecordMeta
from doeff.serde import Codec, PickleCodec, Transform
from doeff.serde.envelope import SigningKey
from doeff.storage.backends.common import check_key
from doeff.storage.backends.memory import DictStore
from doeff.storage.backends.sqlite import SQLiteKV
from doeff.storage.base import KVStore
from doeff.storage.claims import owner_prefix
from doeff.storage.durable import Durable


class SQLiteStorage(Durable):
    """A Durable over `SQLiteKV(db_path)`, with pickle unless `codec=` says otherwise.

    Pickle is the store's own codec, so its records stay readable; without `signing_key=` it
    warns once (`UnsignedPickleWarning`). The other options are `Durable`'s.

    >>> from doeff.serde import MsgpackCodec
    >>> with SQLiteStorage(":memory:", codec=MsgpackCodec()) as store:
    ...     store.put("step:1", (1, 2)); store.get("step:1")
    (1, 2)
    """

    def __init__(self, db_path: str | os.PathLike[str], *, codec: Codec | None = None,
                 durability: str = "normal", trust: Iterable[Codec | str] | None = None,
                 signing_key: SigningKey | None = None, transforms: Iterable[Transform] = (),
                 fallback: Codec | None = None) -> None:
        super().__init__(SQLiteKV(db_path, durability=durability),
                         PickleCodec() if codec is None else codec, trust=trust,
                         signing_key=signing_key, transforms=transforms, fallback=fallback)

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.kv!r}, codec={self.codec!r})"


class _MemoryLease:
    """A claim on a key of an InMemoryStorage: held until released (nothing else can die)."""

    __slots__ = ("key", "owner", "took_over")

    def __init__(self, key: str, owner: str) -> None:
        self.key = key
        self.owner = owner
        self.took_over: str | None = None

    @property
    def lost(self) -> bool:
        """Never: no other process can take it over."""
        return False


_MISSING = object()
_counter = itertools.count(1)


class InMemoryStorage(DictStore):
    """A DurableStorage for tests: keeps objects as they are (no serialization, no copy);
    nothing survives the process. The default storage of a run given no `storage=`.

    Records may expire (`put_record(..., expires_at=)`), and claims coordinate the runs and
    threads of this process (a lease is held until released: no other process shares it).

    >>> s = InMemoryStorage(); s.put("k", [1]); s.get("k")
    [1]
    """

    def __init__(self) -> None:
        super().__init__()
        # key -> (expires_at, info), only for records written with either: most have none.
        self._meta: dict[str, tuple[float | None, Mapping[str, Any] | None]] = {}
        self._leases: dict[str, _MemoryLease] = {}

    def put(self, key: str, value: Any) -> None:
        """Store `value` (the object itself, not a copy) under `key`."""
        self.put_record(key, value)

    def put_record(self, key: str, value: Any, *, expires_at: float | None = None,
                   info: Mapping[str, Any] | None = None) -> None:
        """`put`, the record expiring at `expires_at` (a Unix time) if given."""
        key = check_key(key, self)
        data = self._live("put")
        if expires_at is None and info is None:
            if self._meta:
                self._meta.pop(key, None)
        else:
            self._meta[key] = (expires_at, None if info is None else dict(info))
        data[key] = value

    def _expired(self, key: str) -> bool:
        meta = self._meta.get(key)
        return meta is not None and meta[0] is not None and meta[0] <= time.time()

    def get(self, key: str) -> Any | None:
        """The value under `key`, or None when missing or expired."""
        value = super().get(key)
        if value is not None and self._meta and self._expired(key):
            return None
        return value

    def lookup(self, key: str) -> tuple[bool, Any]:
        """(True, value) for a stored, unexpired record (a stored None included), else
        (False, None)."""
        value = self._live("lookup").get(check_key(key, self), _MISSING)
        if value is _MISSING or (self._meta and self._expired(key)):
            return False, None
        return True, value

    def exists(self, key: str) -> bool:
        """True if `key` holds a record that has not expired."""
        return super().exists(key) and not (self._meta and self._expired(key))

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of all unexpired (key, value) pairs."""
        return [(k, v) for k, v in super().items() if not (self._meta and self._expired(k))]

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        self._meta.pop(key, None)
        return super().delete(key)

    def clear(self) -> None:
        """Delete every entry."""
        super().clear()
        self._meta.clear()

    def describe(self, prefix: str = "") -> list[RecordMeta]:
        """The records whose key starts with `prefix`, by key (size 0: objects are not bytes)."""
        meta = self._meta
        return [RecordMeta(k, 0, None, *meta.get(k, (None, None)))
                for k in sorted(self.keys()) if k.startswith(prefix)]

    def gc(self) -> int:
        """Delete every expired record; the number deleted."""
        gone = [k for k in list(self._meta) if self._expired(k)]
        return sum(self.delete(k) for k in gone)

    def claim(self, key: str, seconds: float) -> Lease | Held:
        """Take the claim on `key`, or say who holds it (held until released)."""
        with self._lock:
            held = self._leases.get(key)
            if held is not None:
                return Held(key, held.owner, math.inf)
            lease = self._leases[key] = _MemoryLease(key, f"{owner_prefix()}:{next(_counter)}")
            return lease

    def release_claim(self, lease: Lease) -> bool:
        """Give a claim up; False if it was not held."""
        if not isinstance(lease, _MemoryLease):
            raise StepClaimError(f"{self!r}: release_claim({lease!r}): not a claim of this store")
        with self._lock:
            if self._leases.get(lease.key) is lease:
                del self._leases[lease.key]
                return True
            return False

    def run_records(self) -> KVStore:
        """Where runs given a `run_id=` keep their records: a keyspace of this process only."""
        return self.namespace("runs")


__all__ = ["InMemoryStorage", "SQLiteStorage"]
