"""Reading a store's records by their envelope headers only, so no pickle is ever loaded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from doeff.errors import DecodeError
from doeff.serde.envelope import peek
from doeff.storage.base import KVStore

# Codecs whose decoding can run arbitrary code: reading their records needs --unsafe-pickle.
UNSAFE_TAGS = frozenset({"pickle", "cloudpickle"})


def pickle_refusal(subject: str) -> str:
    """The one message every command gives when it will not load a pickle without the flag."""
    return (f"{subject}; loading a pickle runs code stored in it, so this needs --unsafe-pickle "
            "(use it if you trust who wrote the store)")


@dataclass(frozen=True)
class Record:
    """One stored record as its header describes it; `error` is set when it has no valid header."""

    key: str
    raw: bytes
    updated_at: float | None
    tag: str | None
    error: str | None

    @property
    def size(self) -> int:
        """The record's size in the store, header included."""
        return len(self.raw)


def scan(kv: KVStore, prefix: str = "") -> Iterable[Record]:
    """Every record whose key starts with `prefix`, in key order, its codec tag from its header."""
    for key, raw, updated_at in kv.records(prefix):
        try:
            tag: str | None = peek(raw).tag
            error = None
        except DecodeError as exc:
            tag, error = None, str(exc)
        yield Record(key, raw, updated_at, tag, error)
