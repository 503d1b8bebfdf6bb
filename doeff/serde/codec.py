"""The `Codec` protocol: what every codec (built in or user-written) provides."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back; instances are cheap, reusable and thread-safe.

    `tag` is a short ASCII name (1-255 bytes) written into every sealed record, so a reader can
    pick the codec that wrote it. `encode` raises `EncodeError` for values outside the codec's
    domain; `decode` raises `DecodeError` for bytes it cannot read.
    """

    tag: str

    def encode(self, obj: object) -> bytes:
        """`obj` as bytes."""
        ...

    def decode(self, data: bytes) -> object:
        """The value `encode` turned into `data`."""
        ...
