"""`Durable(kv, codec)`: the DurableStorage the cache effects use; objects in, envelopes stored.

The one module that imports both storage and serde. Writes go through `seal(value, codec)`; reads
go through `unseal(data)`, which dispatches on the envelope's codec tag, so a store written with
pickle stays readable after switching to msgpack.
"""

from __future__ import annotations

from typing import Any

from doeff.errors import DecodeError, EncodeError
from doeff.serde import Codec, seal, unseal
from doeff.storage.base import Closing, KVStore


class Durable(Closing):
    """DurableStorage over any KVStore and Codec; thread-safe when the KVStore is.

    >>> from doeff.serde import MsgpackCodec
    >>> from doeff.storage import InMemoryKV
    >>> with Durable(InMemoryKV(), MsgpackCodec()) as store:
    ...     store.put("step:1", {"rows": 3}); store.get("step:1")
    {'rows': 3}
    """

    def __init__(self, kv: KVStore, codec: Codec) -> None:
        self.kv = kv
        self.codec = codec

    def get(self, key: str) -> Any | None:
        """The value under `key`, or None when missing; DecodeError names the key."""
        data = self.kv.get(key)
        return None if data is None else self._decode(key, data)

    def put(self, key: str, value: Any) -> None:
        """Encode `value` with the codec, then store it; on EncodeError nothing is written."""
        try:
            data = seal(value, self.codec)
        except EncodeError as exc:
            raise EncodeError(f"{self!r}: put({key!r:.80}) wrote nothing: {exc}") from exc
        self.kv.put(key, data)

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        return self.kv.delete(key)

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        return self.kv.exists(key)

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        return list(self.kv.keys())

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of all (key, value) pairs, each decoded through its own codec tag."""
        return [(key, self._decode(key, data)) for key, data in self.kv.items()]

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

    def _decode(self, key: str, data: bytes) -> Any:
        try:
            return unseal(data, self.codec)  # our codec first: it may know registered types
        except Exception as exc:  # any failure to decode is a DecodeError that names the key
            raise DecodeError(
                f"{self!r}: the record under {key!r:.80} cannot be decoded: {exc}; "
                f"delete it (store.delete(key)) to recompute the step"
            ) from exc
