"""Reading a store's records: headers only for listing (so no pickle is ever loaded), and one
policy for decoding them: the trust and signature checks every command applies."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from doeff.cli.errors import CLIError
from doeff.errors import DecodeError, InvalidOptionError, UnknownCodecError
from doeff.serde.codec import Codec
from doeff.serde.envelope import check, peek, unseal
from doeff.serde.registry import get_codec, registered_tags
from doeff.serde.signing import read_key_file
from doeff.serde.trust import PICKLE_TAGS
from doeff.storage.base import KVStore

# Codecs whose decoding can run arbitrary code: reading their records needs --unsafe-pickle.
UNSAFE_TAGS = PICKLE_TAGS


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
    key_id: str | None = None  # the key that signed it, None if unsigned
    transforms: tuple[str, ...] = ()
    expires_at: float | None = None  # Unix time after which it is a miss (None: never)
    info: Mapping[str, Any] | None = None  # the summary a step's record carries

    @property
    def size(self) -> int:
        """The record's size in the store, header included."""
        return len(self.raw)


def read_record(key: str, raw: bytes, updated_at: float | None) -> Record:
    """A stored record as its header describes it (codec tag, signer, transforms)."""
    try:
        info = peek(raw)
    except DecodeError as exc:
        return Record(key, raw, updated_at, None, str(exc))
    return Record(key, raw, updated_at, info.tag, None, info.key_id, info.transforms,
                  info.expires_at, info.info)


def scan(kv: KVStore, prefix: str = "") -> Iterable[Record]:
    """Every record whose key starts with `prefix`, in key order, its codec tag from its header."""
    for key, raw, updated_at in kv.records(prefix):
        yield read_record(key, raw, updated_at)


def signing_keys(ns: argparse.Namespace) -> list[bytes] | None:
    """The keys of --signing-key-file (or its environment variable), or None without one."""
    path = getattr(ns, "signing_key_file", None)
    if path is None:
        return None
    try:
        return read_key_file(path)
    except InvalidOptionError as exc:
        raise CLIError(str(exc)) from None


def _loadable(tag: str) -> bool:
    """Whether a codec for `tag` is registered or offered by an installed package (which
    `get_codec` then loads and registers)."""
    try:
        get_codec(tag)
    except UnknownCodecError:
        return False
    return True


def open_record(raw: bytes, key: str, ns: argparse.Namespace, keys: list[bytes] | None,
                verify: bool = True, reader: Codec | None = None) -> object:
    """The value of the record stored under `key`, decoded only if the command may: a codec
    registered here (pickle-family only with --unsafe-pickle), checked against `key` and, when
    `keys` are given and `verify`, against its signature, before any payload byte is decoded.
    `reader` is the codec to decode with when the caller built one (e.g. with imported types);
    the caller has then checked that the command may decode its records."""
    tag = peek(raw).tag
    if reader is None and not _loadable(tag):
        # Said before the trust check would: the fix is a missing package, not a trust setting.
        raise DecodeError(
            f"record written with codec {tag!r}, which is not registered in this process; "
            "install the package that provides it (found through the doeff.codecs entry points) "
            "or --import the module that registers it"
        )
    trusted = [t for t in registered_tags() if ns.unsafe_pickle or t not in PICKLE_TAGS]
    return unseal(raw, reader, key=key, trust=trusted, signing_key=keys if verify else None)


def verify(record: Record) -> str | None:
    """What is wrong with a record's envelope (header, checksum bound to its key), or None when
    it is intact; nothing is decoded, so no pickle is loaded."""
    if record.error is not None or record.tag is None:
        return record.error
    try:
        check(record.raw, record.key)
    except DecodeError as exc:
        return str(exc)
    return None
