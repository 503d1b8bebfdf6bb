"""Payload transforms: bytes -> bytes steps applied after encoding (compression, encryption).

Each step a record went through is written into its envelope, with the step's parameters (an
encryption key id and nonce), so a reader knows how to undo it. A step may decline (`apply`
returns None): `Zstd` leaves small records alone, so they pay nothing.

The packages are optional extras, imported when a transform is built or undone, never at
`import doeff`: `zstandard` (`doeff[zstd]`) and `cryptography` (`doeff[crypto]`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from doeff.errors import DecodeError, InvalidOptionError, MissingExtraError, install_hint


@runtime_checkable
class Transform(Protocol):
    """One reversible bytes -> bytes step; instances are reusable and thread-safe.

    `name` (1-255 of ``A-Z a-z 0-9 . _ + -``) is written into each record it was applied to.
    `context` binds the step to the record: its key, codec tag and the steps before it
    (encryption uses it as associated data, so a ciphertext cannot be moved to another key).
    """

    name: str

    def apply(self, data: bytes, context: bytes) -> tuple[bytes, bytes] | None:
        """(params to record, transformed bytes), or None to leave `data` as it is."""
        ...

    def undo(self, data: bytes, params: bytes, context: bytes) -> bytes:
        """The bytes `apply` was given; `DecodeError` if `data` cannot be undone."""
        ...


def _require(module: str, package: str, extra: str, feature: str) -> ModuleType:
    """`module`, or `MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the {package} package, which is not installed: "
            f"{install_hint(extra)}"
        ) from exc


class Zstd:
    """zstd compression (the `zstandard` package) of payloads of at least `threshold` bytes.

    A payload that is smaller, or that zstd does not shrink, is stored as it is and its record
    names no zstd step. Reading refuses a frame that announces more than `max_size` bytes, so a
    crafted record cannot make a reader allocate without bound.

        Durable(kv, MsgpackCodec(), transforms=[Zstd(level=3)])
    """

    name = "zstd"

    def __init__(self, level: int = 3, *, threshold: int = 1024, max_size: int = 1 << 31) -> None:
        self._zstd: Any = _require("zstandard", "zstandard", "zstd", "zstd compression")
        if type(level) is not int or not -7 <= level <= 22:
            raise InvalidOptionError(f"Zstd level must be an int from -7 to 22, got {level!r}")
        for label, value in (("threshold", threshold), ("max_size", max_size)):
            if type(value) is not int or value < 0:
                raise InvalidOptionError(f"Zstd {label} must be an int >= 0, got {value!r}")
        self.level, self.threshold, self.max_size = level, threshold, max_size
        # zstd contexts must not be shared between threads; each thread keeps its own pair.
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Zstd(level={self.level}, threshold={self.threshold})"

    def _contexts(self) -> Any:
        """This thread's compressor and decompressor (made on first use)."""
        local = self._local
        local.compress = self._zstd.ZstdCompressor(level=self.level).compress
        local.decompress = self._zstd.ZstdDecompressor().decompress
        return local

    def apply(self, data: bytes, context: bytes) -> tuple[bytes, bytes] | None:
        """`data` compressed, or None when it is under the threshold or does not shrink."""
        if len(data) < self.threshold:
            return None
        try:
            compress = self._local.compress
        except AttributeError:
            compress = self._contexts().compress
        packed: bytes = compress(data)
        return (b"", packed) if len(packed) < len(data) else None

    def undo(self, data: bytes, params: bytes, context: bytes) -> bytes:
        """`data` decompressed; one complete frame of a known size up to `max_size`."""
        zstd = self._zstd
        try:
            size = zstd.frame_content_size(data)
        except zstd.ZstdError as exc:
            raise DecodeError(f"zstd: not a zstd frame ({len(data)} bytes): {exc}") from None
        if size < 0 or size > self.max_size:
            shown = "an unknown size" if size < 0 else f"{size} bytes"
            raise DecodeError(
                f"zstd: the frame announces {shown}; this reader accepts at most "
                f"{self.max_size} bytes (Zstd(max_size=...))"
            )
        try:
            decompress = self._local.decompress
        except AttributeError:
            decompress = self._contexts().decompress
        try:
            out: bytes = decompress(data, allow_extra_data=False)
        except zstd.ZstdError as exc:
            raise DecodeError(f"zstd: cannot decompress {len(data)} bytes: {exc}") from None
        return out


_NONCE = 12  # bytes: the nonce size AES-GCM is designed for
_AES_ID = 4  # bytes of key id written before the nonce


def _aes_key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"doeff aes-256-gcm key id\0" + key).digest()[:_AES_ID]


class AesGcm:
    """AES-256-GCM encryption (the `cryptography` package): the first key encrypts, every key
    decrypts (for rotation). Keys are 32 random bytes, e.g. ``os.urandom(32)``.

    Each record gets a fresh random 96-bit nonce; the record's key and codec tag are
    authenticated with it, so a ciphertext moved under another key does not decrypt.

        Durable(kv, MsgpackCodec(), transforms=[Zstd(), AesGcm([new_key, old_key])])
    """

    name = "aes256gcm"

    def __init__(self, keys: bytes | Sequence[bytes]) -> None:
        aead: Any = _require("cryptography.hazmat.primitives.ciphers.aead", "cryptography",
                             "crypto", "AES-GCM encryption")
        self._invalid_tag: type[Exception] = _require(
            "cryptography.exceptions", "cryptography", "crypto", "AES-GCM encryption"
        ).InvalidTag
        secrets = [keys] if isinstance(keys, bytes | bytearray) else list(keys)
        if not secrets:
            raise InvalidOptionError("AesGcm needs at least one key")
        self._ciphers: dict[bytes, Any] = {}
        for i, key in enumerate(secrets):
            if not isinstance(key, bytes | bytearray) or len(key) != 32:
                shown = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else \
                    type(key).__name__
                raise InvalidOptionError(
                    f"AesGcm key #{i} must be 32 bytes (AES-256), got {shown}; make one with "
                    "os.urandom(32)"
                )
            kid = _aes_key_id(bytes(key))
            if kid in self._ciphers:
                raise InvalidOptionError(f"AesGcm key #{i} (id {kid.hex()}) is listed twice")
            self._ciphers[kid] = aead.AESGCM(bytes(key))
        self._first = next(iter(self._ciphers))
        self._encrypt = self._ciphers[self._first].encrypt

    def __repr__(self) -> str:
        return f"AesGcm(key ids {', '.join(k.hex() for k in self._ciphers)})"  # never the keys

    def apply(self, data: bytes, context: bytes) -> tuple[bytes, bytes]:
        """`data` encrypted under the first key; the params are its key id and the nonce."""
        nonce = os.urandom(_NONCE)
        return self._first + nonce, self._encrypt(nonce, data, context)

    def undo(self, data: bytes, params: bytes, context: bytes) -> bytes:
        """`data` decrypted and authenticated; `DecodeError` if the key is unknown or it fails."""
        cipher = self._ciphers.get(params[:_AES_ID])
        if len(params) != _AES_ID + _NONCE:
            raise DecodeError(f"aes256gcm: {len(params)} bytes of parameters, expected "
                              f"{_AES_ID + _NONCE}")
        if cipher is None:
            raise DecodeError(
                f"aes256gcm: the record is encrypted with key id {params[:_AES_ID].hex()}, which "
                f"this reader does not hold (it holds {', '.join(k.hex() for k in self._ciphers)})"
            )
        try:
            out: bytes = cipher.decrypt(params[_AES_ID:], data, context)
        except self._invalid_tag:
            raise DecodeError(
                "aes256gcm: authentication failed: the record was changed after it was "
                "encrypted, or it was encrypted for another key"
            ) from None
        return out


_default_zstd: Zstd | None = None


def default_transform(name: str) -> Transform | None:
    """The transform that can undo a step called `name` without configuration (zstd), or None."""
    global _default_zstd
    if name == Zstd.name:
        if _default_zstd is None:
            _default_zstd = Zstd()
        return _default_zstd
    return None
