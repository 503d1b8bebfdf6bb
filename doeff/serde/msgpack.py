"""`MsgpackCodec`: compact, safe to load, exact round trips over the documented domain.

Values msgpack carries natively (None, bool, int within 64 bits, float, str, bytes, list, dict)
stay on msgpack's C packer; ``strict_types=True`` sends every other type, subclasses included,
to `_default`, which writes it as an extension value (codes below) or refuses it. Decoding turns
arrays into lists, so a tuple only comes back as a tuple because it was written as extension 1.

Extension codes (payloads are msgpack unless noted): 1 tuple, 2 set, 3 frozenset (elements
sorted by their encoded bytes, so equal sets give equal bytes under any hash seed), 4 int beyond
64 bits (two's complement, big-endian, raw), 5 datetime, 6 date, 7 time, 8 timedelta (forms of
`doeff.serde.temporal`), 9 Decimal (its str), 10 UUID (16 raw bytes), 11 registered type
``[name, state]``. Other codes are read back as `msgpack.ExtType`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import msgpack  # type: ignore[import-untyped]

from doeff.errors import DecodeError, EncodeError
from doeff.serde import temporal
from doeff.serde.domain import explain
from doeff.serde.types import TypeRegistry

# Extension type codes; never renumber them, records on disk depend on them.
TUPLE, SET, FROZENSET, BIGINT, DATETIME, DATE, TIME, TIMEDELTA = range(1, 9)
DECIMAL, UUID_, OBJECT = range(9, 12)

# A thread keeps its Packer between calls (cheaper than msgpack.packb building one each time),
# but not after a large value, so a big buffer is not held for the life of the thread.
_KEEP_PACKER_BELOW = 1 << 20


def _array_header(count: int) -> bytes:
    """The msgpack array header for `count` items."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


class MsgpackCodec:
    """msgpack with exact round trips; register dataclasses and Enums to carry them by name.

        codec = MsgpackCodec(types=[Point])
        codec.decode(codec.encode({"p": Point(1, 2), "t": (1, 2)}))  # same value, same types
    """

    tag = "msgpack"

    def __init__(self, types: Iterable[type] = ()) -> None:
        self.types = TypeRegistry(types)
        self._local = threading.local()
        self._packb = partial(
            msgpack.packb, default=self._default, strict_types=True, use_bin_type=True
        )
        self._unpackb = partial(
            msgpack.unpackb, ext_hook=self._ext_hook, strict_map_key=False, raw=False, timestamp=0
        )
        self._writers: dict[type, Callable[[Any], msgpack.ExtType]] = {
            tuple: lambda v: msgpack.ExtType(TUPLE, self._packb(list(v))),
            set: lambda v: msgpack.ExtType(SET, self._canonical(v)),
            frozenset: lambda v: msgpack.ExtType(FROZENSET, self._canonical(v)),
            datetime: lambda v: msgpack.ExtType(
                DATETIME, self._packb(temporal.datetime_to_wire(v))
            ),
            date: lambda v: msgpack.ExtType(DATE, temporal.date_to_wire(v).encode()),
            time: lambda v: msgpack.ExtType(TIME, self._packb(temporal.time_to_wire(v))),
            timedelta: lambda v: msgpack.ExtType(
                TIMEDELTA, self._packb(temporal.timedelta_to_wire(v))
            ),
            Decimal: lambda v: msgpack.ExtType(DECIMAL, str(v).encode()),
            UUID: lambda v: msgpack.ExtType(UUID_, v.bytes),
        }
        self._readers: dict[int, Callable[[bytes], object]] = {
            TUPLE: lambda d: tuple(self._unpackb(d)),
            SET: lambda d: set(self._unpackb(d)),
            FROZENSET: lambda d: frozenset(self._unpackb(d)),
            BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
            DATETIME: lambda d: temporal.datetime_from_wire(self._unpackb(d)),
            DATE: lambda d: temporal.date_from_wire(d.decode()),
            TIME: lambda d: temporal.time_from_wire(self._unpackb(d)),
            TIMEDELTA: lambda d: temporal.timedelta_from_wire(self._unpackb(d)),
            DECIMAL: lambda d: Decimal(d.decode()),
            UUID_: lambda d: UUID(bytes=d),
            OBJECT: lambda d: self.types.rebuild(*self._unpackb(d)),
        }

    def __repr__(self) -> str:
        return f"MsgpackCodec(types={self.types.names()!r})"

    def register(self, cls: type, name: str | None = None) -> None:
        """Carry `cls` (a dataclass or Enum) under `name` (default ``module.qualname``)."""
        self.types.register(cls, name)

    def encode(self, obj: object) -> bytes:
        """`obj` as msgpack bytes, or `EncodeError` naming the first value outside the domain."""
        try:
            packer = self._local.packer
        except AttributeError:
            packer = self._local.packer = msgpack.Packer(
                default=self._default, strict_types=True, use_bin_type=True
            )
        try:
            data: bytes = packer.pack(obj)
        except Exception as exc:
            raise explain(self.tag, obj, self.types, exc) from exc
        if len(data) >= _KEEP_PACKER_BELOW:
            del self._local.packer
        return data

    def decode(self, data: bytes) -> object:
        """The value `encode` wrote; `DecodeError` for anything else."""
        try:
            return self._unpackb(data)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"msgpack cannot decode {len(data)} bytes: {exc!r}") from exc

    def _default(self, obj: Any) -> msgpack.ExtType:
        """Write a value the C packer does not carry exactly as an extension value."""
        writer = self._writers.get(type(obj))
        if writer is not None:
            return writer(obj)
        if type(obj) is int:  # the C packer sends only ints beyond 64 bits here
            size = (obj.bit_length() + 8) // 8
            return msgpack.ExtType(BIGINT, obj.to_bytes(size, "big", signed=True))
        reduced = self.types.reduce(obj)
        if reduced is not None:
            return msgpack.ExtType(OBJECT, self._packb(list(reduced)))
        raise EncodeError(f"type {type(obj).__qualname__} is not in the msgpack domain")

    def _canonical(self, items: Iterable[object]) -> bytes:
        """A set's elements as an array sorted by their encoded bytes (hash-seed independent)."""
        encoded = sorted(map(self._packb, items))
        return _array_header(len(encoded)) + b"".join(encoded)

    def _ext_hook(self, code: int, data: bytes) -> object:
        """Read one extension value written by `_default`."""
        reader = self._readers.get(code)
        if reader is None:
            return msgpack.ExtType(code, data)
        return reader(data)
