"""Durable storage: KVStore backends (where bytes live) and Durable (objects through a codec).

    from doeff.storage import Durable, SQLiteKV
    from doeff.serde import MsgpackCodec

    storage = Durable(SQLiteKV("wf.db"), MsgpackCodec())

`Durable`/`SQLiteStorage` (which pull in the codecs) and `PostgresKV` (psycopg) are imported on
first use, so the byte-level backends load nothing they do not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from doeff.storage.base import DurableStorage, KVStore
from doeff.storage.lmdb import LMDBKV
from doeff.storage.memory import InMemoryKV, InMemoryStorage
from doeff.storage.sqlite import SQLiteKV

if TYPE_CHECKING:
    from doeff.storage.durable import Durable, SQLiteStorage
    from doeff.storage.postgres import PostgresKV

_LAZY = {
    "Durable": "doeff.storage.durable",
    "SQLiteStorage": "doeff.storage.durable",
    "PostgresKV": "doeff.storage.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
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
