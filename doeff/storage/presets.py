"""Ready-made `DurableStorage`s with the names of doeff's first API: `SQLiteStorage` (a `Durable`
over one SQLite file, pickle by default) and `InMemoryStorage` (objects in a dict, no codec)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from doeff.serde import Codec, PickleCodec, Transform
from doeff.serde.envelope import SigningKey
from doeff.storage.backends.common import check_key
from doeff.storage.backends.memory import DictStore
from doeff.storage.backends.sqlite import SQLiteKV
from doeff.storage.base import KVStore
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


class InMemoryStorage(DictStore):
    """A DurableStorage for tests: keeps objects as they are (no serialization, no copy);
    nothing survives the process. The default storage of a run given no `storage=`.

    >>> s = InMemoryStorage(); s.put("k", [1]); s.get("k")
    [1]
    """

    def put(self, key: str, value: Any) -> None:
        """Store `value` (the object itself, not a copy) under `key`."""
        self._live("put")[check_key(key, self)] = value

    def run_records(self) -> KVStore:
        """Where runs given a `run_id=` keep their records: a keyspace of this process only."""
        return self.namespace("runs")


__all__ = ["InMemoryStorage", "SQLiteStorage"]
