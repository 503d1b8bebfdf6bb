"""`Durable(kv, codec)`: the DurableStorage the cache effects use; objects in, envelopes stored.

The one module that imports both storage and serde. Writes seal each value with the codec (and
the store's signing key and transforms), bound to its key; reads open a record only if the store
trusts the codec its envelope names: its own, plus msgpack and JSON (which cannot run code) unless
`trust=` says otherwise. So a store written with pickle stays readable after switching to msgpack
only when asked to (`trust=["pickle"]`), and a pickle planted in a msgpack store is refused.

Records may carry an expiry and an info summary in their header (`put_record(..., expires_at=,
info=)`): an expired record is a miss for `get`, `lookup`, `exists` and `items`, and stays in
the KV store until `gc()` (or `doeff cache gc`) deletes it. `claim`/`release` take leases for
claimed steps (`doeff.storage.claims`).
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from doeff.errors import (
    DecodeError,
    EncodeError,
    InvalidOptionError,
    SignatureError,
    StepClaimError,
    UnsignedPickleWarning,
    UntrustedRecordError,
)
from doeff.protocols import Held, Lease, RecordMeta
from doeff.serde import PICKLE_TAGS, Codec, Envelope, JSONCodec, Transform, Trust
from doeff.serde.envelope import EXPIRED, META_VERSION, SigningKey, expires_at, peek
from doeff.storage.base import AtomicKVStore, Closing, KVStore
from doeff.storage.claims import KVLease, Leases

_MISS: tuple[bool, Any] = (False, None)


def _expired(data: bytes) -> bool:
    """Whether a record's header says it has expired (only version 3 records can)."""
    if len(data) < 3 or data[2] != META_VERSION:
        return False
    until = expires_at(data)
    return until is not None and until <= time.time()


class Durable(Closing):
    """DurableStorage over any KVStore and Codec; thread-safe when the KVStore is.

    Options (keyword-only): `trust` the codecs (or tags) whose records are decoded besides the
    store's own (default msgpack and json); `signing_key` bytes, or a list whose first key signs
    and all verify; `transforms` payload steps such as `Zstd()` and `AesGcm(key)`; `fallback` a
    second, trusted codec for values the first cannot encode. See docs/serialization.md.

    >>> from doeff.serde import MsgpackCodec
    >>> from doeff.storage import InMemoryKV
    >>> with Durable(InMemoryKV(), MsgpackCodec()) as store:
    ...     store.put("step:1", {"rows": 3}); store.get("step:1")
    {'rows': 3}
    """

    def __init__(self, kv: KVStore, codec: Codec, *,
                 trust: Iterable[Codec | str] | None = None,
                 signing_key: SigningKey | None = None,
                 transforms: Iterable[Transform] = (),
                 fallback: Codec | None = None) -> None:
        self.kv = kv
        self.codec = codec
        self.fallback = fallback
        # Per thread: the size of the record this thread last read or wrote (recorded runs
        # report it per step; a run's cache effects are answered on its machine's thread).
        self._sizes = threading.local()
        self._runs: KVStore | None = None
        self._signing_key = signing_key
        self._transforms = tuple(transforms)
        self._leases: Leases | None = None
        policy = Trust(trust)
        if fallback is not None:
            if fallback.tag != codec.tag and fallback.tag not in policy.tags:
                raise InvalidOptionError(
                    f"fallback={fallback!r}: the store would write {fallback.tag} records it "
                    f"does not read back; a fallback must be trusted: add {fallback.tag!r} to "
                    f"trust=[...] (a conscious choice: see docs/serialization.md)"
                )
            policy = policy.adding(fallback)
        self.envelope = Envelope(codec, trust=policy, signing_key=signing_key,
                                 transforms=self._transforms)
        unsafe = sorted((policy.tags | {codec.tag}) & PICKLE_TAGS)
        if unsafe and self.envelope.signer is None:
            # One text for every such store, so Python's filters show it once per place.
            warnings.warn(
                f"a store that decodes {' and '.join(unsafe)} records was opened without a "
                "signing key: anyone who can write to it can run code in every process that "
                "reads it. Pass "
                "signing_key=... (keys made with secrets.token_bytes(32)), or store plain data "
                "with MsgpackCodec() or JSONCodec(); see docs/serialization.md",
                UnsignedPickleWarning, stacklevel=_caller_level(),
            )

    def get(self, key: str) -> Any | None:
        """The value under `key`, or None when missing or expired; DecodeError names the key."""
        return self.lookup(key)[1]

    def lookup(self, key: str) -> tuple[bool, Any]:
        """(True, value) if `key` holds an unexpired record (a stored None included), else
        (False, None): one read, where `get` then `exists` would take two."""
        data = self.kv.get(key)
        if data is None:
            return _MISS
        try:
            value = self.envelope.unseal_live(data, key, time.time)
        except Exception as exc:
            raise self._unreadable(key, exc) from exc
        if value is EXPIRED:
            return _MISS
        self._sizes.n = len(data)
        return True, value

    def put(self, key: str, value: Any) -> None:
        """Encode `value` with the codec (or the fallback), then store it; on EncodeError nothing
        is written, and the error carries `key` and `value`."""
        self.put_record(key, value)

    def put_record(self, key: str, value: Any, *, expires_at: float | None = None,
                   info: Mapping[str, Any] | None = None) -> None:
        """`put`, and: `expires_at` (a Unix time) makes the record a miss from then on; `info`
        (a small JSON object) rides in its header, where tools read it without the codec."""
        try:
            data = self.envelope.seal(value, key, expires_at=expires_at, info=info)
        except EncodeError as exc:
            if self.fallback is None:
                raise _unstored(f"{self!r}: put({key!r:.80}) wrote nothing: {exc}",
                                key, value) from exc
            try:
                data = self.envelope.seal(value, key, self.fallback, expires_at=expires_at,
                                          info=info)
            except EncodeError as again:
                raise _unstored(
                    f"{self!r}: put({key!r:.80}) wrote nothing: {exc}; the fallback "
                    f"{self.fallback.tag} failed too: {again}", key, value,
                ) from again
        self.kv.put(key, data)
        self._sizes.n = len(data)

    def last_record_size(self) -> int | None:
        """Bytes of the record this thread last read (a hit) or wrote through this store."""
        n: int | None = getattr(self._sizes, "n", None)
        return n

    def run_records(self) -> KVStore:
        """Where runs given a `run_id=` keep their records: the store's "runs" namespace, apart
        from the cache's keys (see doeff.runs)."""
        if self._runs is None:
            namespace = getattr(self.kv, "namespace", None)
            if namespace is None:
                raise InvalidOptionError(
                    f"{self!r} cannot hold run records: its KVStore has no namespace() (a "
                    f"second keyspace); use a doeff backend (SQLiteKV, LMDBKV, PostgresKV, "
                    f"InMemoryKV), or run without run_id="
                )
            self._runs = namespace("runs")
        return self._runs

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        return self.kv.delete(key)

    def exists(self, key: str) -> bool:
        """True if `key` holds a record that has not expired."""
        data = self.kv.get(key)
        return data is not None and not _expired(data)

    def keys(self) -> list[str]:
        """A snapshot of all keys stored, expired records included until `gc` (nothing is
        decoded)."""
        return list(self.kv.keys())

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of all unexpired (key, value) pairs, each read under the same trust policy
        as get."""
        out = []
        for key, data in self.kv.items():
            if _expired(data):
                continue
            try:
                out.append((key, self.envelope.unseal(data, key)))
            except Exception as exc:
                raise self._unreadable(key, exc) from exc
        return out

    def clear(self) -> None:
        """Delete every entry."""
        self.kv.clear()

    def describe(self, prefix: str = "") -> list[RecordMeta]:
        """The records whose key starts with `prefix`, in key order, from their headers only
        (a record without a readable header has no expiry and no info)."""
        out = []
        for key, data, updated_at in self.kv.records(prefix):
            try:
                header = peek(data)
            except DecodeError:
                out.append(RecordMeta(key, len(data), updated_at, None, None))
                continue
            out.append(RecordMeta(key, len(data), updated_at, header.expires_at, header.info))
        return out

    def gc(self) -> int:
        """Delete every expired record (step results and stale leases alike); the number
        deleted. A record rewritten since it was read is left alone."""
        kv = self._atomic("gc")
        now = time.time()
        removed = 0
        for key, data, _ in self.kv.records(""):
            until = expires_at(data)
            if until is not None and until <= now and kv.compare_and_delete(key, data):
                removed += 1
        return removed

    # -- claims ---------------------------------------------------------------------------------

    def _atomic(self, what: str) -> AtomicKVStore:
        # Once per store (gc, the first claim): a runtime-checkable protocol is slow to test.
        if not isinstance(self.kv, AtomicKVStore):
            raise StepClaimError(
                f"{self!r}: {what} needs a KVStore with put_if_absent, compare_and_swap and "
                f"compare_and_delete (every doeff backend has them); {type(self.kv).__name__} "
                f"lacks them"
            )
        return self.kv

    def claim(self, key: str, seconds: float) -> Lease | Held:
        """Take a lease on `key` for `seconds`, renewed in the background until released; or,
        if another worker holds a live one, who and until when (see `doeff.storage.claims`)."""
        if self._leases is None:
            envelope = Envelope(JSONCodec(), signing_key=self._signing_key,
                                transforms=self._transforms)
            self._leases = Leases(self._atomic("claim"), _LeaseRecords(envelope))
        return self._leases.claim(key, seconds)

    def release_claim(self, lease: Lease) -> bool:
        """Stop renewing `lease` and delete it; False if another worker had taken it over."""
        if self._leases is None or not isinstance(lease, KVLease):
            raise StepClaimError(f"{self!r}: release_claim({lease!r}): not a lease of this "
                                 f"store")
        return self._leases.release(lease)

    def close(self) -> None:
        """Close the underlying KVStore (held leases stop being renewed). Idempotent."""
        if self._leases is not None:
            self._leases.close()
        self.kv.close()

    def __len__(self) -> int:
        return len(self.kv)

    def __repr__(self) -> str:
        return f"Durable({self.kv!r}, {self.codec!r})"

    def _unreadable(self, key: str, exc: Exception) -> DecodeError:
        """The error for a record that cannot be read: it names the store and the key."""
        if isinstance(exc, UntrustedRecordError | SignatureError):
            # Refused, not damaged: the message already says how to allow or repair it.
            return type(exc)(f"{self!r}: {exc}")
        return DecodeError(  # any failure to decode is a DecodeError that names the key
            f"{self!r}: the record under {key!r:.80} cannot be decoded: {exc}; "
            f"delete it (store.delete(key)) to recompute the step"
        )


class _LeaseRecords:
    """Lease records as envelope records: JSON (the owner), the expiry in the header, signed and
    transformed like the store's own records."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    def seal(self, lease_key: str, owner: str, expires_at: float) -> bytes:
        return self.envelope.seal({"owner": owner, "since": round(time.time(), 3)}, lease_key,
                                  expires_at=expires_at)

    def owner(self, record: bytes, lease_key: str) -> str:
        try:
            value: Any = self.envelope.unseal(record, lease_key)
            return str(value["owner"])
        except (DecodeError, KeyError, TypeError):
            return "?"

    def expires_at(self, record: bytes) -> float | None:
        return expires_at(record)


def _unstored(message: str, key: str, value: object) -> EncodeError:
    """An EncodeError that keeps the key and the value that could not be stored."""
    err = EncodeError(message)
    err.key, err.value = key, value
    return err


def _caller_level() -> int:
    """The warnings stacklevel of the code that opened the store (outside doeff.storage)."""
    frame = sys._getframe(2)  # 0: here, 1: Durable.__init__, 2: its caller
    level = 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
            "doeff.storage"):
        frame, level = frame.f_back, level + 1
    return level
