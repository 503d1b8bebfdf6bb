"""`Durable(kv, codec)`: the DurableStorage the cache effects use; objects in, envelopes stored.

The one module that imports both storage and serde. Writes seal each value with the codec (and
the store's signing key and transforms), bound to its key; reads open a record only if the store
trusts the codec its envelope names: its own, plus msgpack and JSON (which cannot run code) unless
`trust=` says otherwise. So a store written with pickle stays readable after switching to msgpack
only when asked to (`trust=["pickle"]`), and a pickle planted in a msgpack store is refused.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterable
from typing import Any

from doeff.errors import (
    DecodeError,
    EncodeError,
    InvalidOptionError,
    SignatureError,
    UnsignedPickleWarning,
    UntrustedRecordError,
)
from doeff.serde import PICKLE_TAGS, Codec, Envelope, Transform, Trust
from doeff.serde.envelope import SigningKey
from doeff.storage.base import Closing, KVStore


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
                                 transforms=transforms)
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
        """The value under `key`, or None when missing; DecodeError names the key."""
        data = self.kv.get(key)
        if data is None:
            return None
        self._sizes.n = len(data)
        try:
            return self.envelope.unseal(data, key)
        except Exception as exc:
            raise self._unreadable(key, exc) from exc

    def put(self, key: str, value: Any) -> None:
        """Encode `value` with the codec (or the fallback), then store it; on EncodeError nothing
        is written, and the error carries `key` and `value`."""
        try:
            data = self.envelope.seal(value, key)
        except EncodeError as exc:
            if self.fallback is None:
                raise _unstored(f"{self!r}: put({key!r:.80}) wrote nothing: {exc}",
                                key, value) from exc
            try:
                data = self.envelope.seal(value, key, self.fallback)
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
        """True if `key` is stored."""
        return self.kv.exists(key)

    def keys(self) -> list[str]:
        """A snapshot of all keys (nothing is decoded)."""
        return list(self.kv.keys())

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of all (key, value) pairs, each read under the same trust policy as get."""
        out = []
        for key, data in self.kv.items():
            try:
                out.append((key, self.envelope.unseal(data, key)))
            except Exception as exc:
                raise self._unreadable(key, exc) from exc
        return out

    def clear(self) -> None:
        """Delete every entry."""
        self.kv.clear()

    def close(self) -> None:
        """Close the underlying KVStore. Idempotent."""
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
