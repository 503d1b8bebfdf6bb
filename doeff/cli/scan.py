"""Reading a store's records by their envelope headers only, so no pickle is ever loaded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from doeff.errors import DecodeError, EncodeError, SerdeError
from doeff.serde.envelope import peek, unseal
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


def read_record(key: str, raw: bytes, updated_at: float | None) -> Record:
    """A stored record, its codec tag taken from its header."""
    try:
        tag: str | None = peek(raw).tag
        error = None
    except DecodeError as exc:
        tag, error = None, str(exc)
    return Record(key, raw, updated_at, tag, error)


def scan(kv: KVStore, prefix: str = "") -> Iterable[Record]:
    """Every record whose key starts with `prefix`, in key order, its codec tag from its header."""
    for key, raw, updated_at in kv.records(prefix):
        yield read_record(key, raw, updated_at)


class _Unread:
    """A codec that decodes nothing: `unseal` with it checks a record's header and checksum
    (everything but the payload itself), so no pickle is loaded."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def encode(self, obj: object) -> bytes:
        raise EncodeError("_Unread only checks records")

    def decode(self, data: bytes) -> object:
        return None


def verify(record: Record) -> str | None:
    """What is wrong with a record's envelope (header, checksum), or None when it is intact."""
    if record.error is not None or record.tag is None:
        return record.error
    try:
        unseal(record.raw, _Unread(record.tag))
    except SerdeError as exc:
        return str(exc)
    return None
