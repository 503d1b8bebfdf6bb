"""Durable storage: KVStore backends (where bytes live) and Durable (objects through a codec).

    from doeff.storage import Durable, SQLiteKV
    from doeff.serde import MsgpackCodec

    storage = Durable(SQLiteKV("wf.db"), MsgpackCodec())

`PostgresKV` is imported on first use: it needs psycopg, an optional extra, which
`import doeff.storage` must not require.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from doeff.storage.backends.lmdb import LMDBKV
from doeff.storage.backends.memory import InMemoryKV
from doeff.storage.backends.sqlite import SQLiteKV
from doeff.storage.base import DurableStorage, KVStore
from doeff.storage.durable import Durable
from doeff.storage.presets import InMemoryStorage, SQLiteStorage

if TYPE_CHECKING:
    from doeff.storage.backends.postgres import PostgresKV


def __getattr__(name: str) -> Any:
    if name == "PostgresKV":
        value = importlib.import_module("doeff.storage.backends.postgres").PostgresKV
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LMDBKV",
    "Durable",
    "DurableStorage",
    "InMemoryKV",
    "InMemoryStorage",
    "KVStore",
    "PostgresKV",
    "SQLiteKV",
    "SQLiteStorage",
]
