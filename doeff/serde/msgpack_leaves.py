"""The leaf values `MsgpackCodec` writes as one msgpack extension value each, and their codes.

4 int beyond 64 bits (two's complement, big-endian), 5 datetime, 6 date, 7 time, 8 timedelta
(msgpack forms of `doeff.serde.temporal`), 9 Decimal (its str), 10 UUID (16 bytes). A leaf's
payload never holds another extension value, so reading one never recurses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, NoReturn
from uuid import UUID

import msgpack  # type: ignore[import-untyped]

from doeff.errors import DecodeError
from doeff.serde import temporal

# Never renumber: records on disk depend on these codes.
BIGINT, DATETIME, DATE, TIME, TIMEDELTA, DECIMAL, UUID_ = range(4, 11)

pack_plain = partial(msgpack.packb, use_bin_type=True)


def _no_extension(code: int, data: bytes) -> NoReturn:
    raise DecodeError(f"unexpected msgpack extension type {code} inside a leaf value")


unpack_plain = partial(msgpack.unpackb, ext_hook=_no_extension, strict_map_key=False, raw=False)

LEAF_WRITERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    datetime: lambda v: msgpack.ExtType(DATETIME, pack_plain(temporal.datetime_to_wire(v))),
    date: lambda v: msgpack.ExtType(DATE, temporal.date_to_wire(v).encode()),
    time: lambda v: msgpack.ExtType(TIME, pack_plain(temporal.time_to_wire(v))),
    timedelta: lambda v: msgpack.ExtType(TIMEDELTA, pack_plain(temporal.timedelta_to_wire(v))),
    Decimal: lambda v: msgpack.ExtType(DECIMAL, str(v).encode()),
    UUID: lambda v: msgpack.ExtType(UUID_, v.bytes),
}
LEAF_READERS: dict[int, Callable[[bytes], object]] = {
    BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
    DATETIME: lambda d: temporal.datetime_from_wire(unpack_plain(d)),
    DATE: lambda d: temporal.date_from_wire(d.decode()),
    TIME: lambda d: temporal.time_from_wire(unpack_plain(d)),
    TIMEDELTA: lambda d: temporal.timedelta_from_wire(unpack_plain(d)),
    DECIMAL: lambda d: Decimal(d.decode()),
    UUID_: lambda d: UUID(bytes=d),
}
