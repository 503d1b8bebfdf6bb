"""`MsgpackCodec`: compact, safe to load, exact round trips over the documented domain.

Values msgpack carries natively (None, bool, int within 64 bits, float, str, bytes, list, dict)
stay on msgpack's C packer; ``strict_types=True`` sends every other type, subclasses included,
to `_default`, which writes it as below or refuses it.

- A leaf value the packer lacks is one extension value (payload in parentheses): 4 int beyond 64
  bits (two's complement, big-endian), 5 datetime, 6 date, 7 time, 8 timedelta (msgpack forms of
  `doeff.serde.temporal`), 9 Decimal (its str), 10 UUID (16 bytes).
- A tuple, set, frozenset or carried type is a msgpack array headed by an empty marker extension:
  ``[ext 12, *items]`` tuple, ``[ext 13, *elements]`` set and ``[ext 14, ...]`` frozenset
  (elements sorted by their encoded bytes, so equal sets give equal bytes under any hash seed),
  ``[ext 15, name, state]`` a registered or built-in type (`doeff.serde.types`). Being plain
  arrays, they nest without recursion on either side: msgpack's C unpacker reads every depth its
  packer writes (1024 levels), and a deeper record is a `DecodeError`, never a stack overflow.
- A large `Blob` (an array's data) is ext 16 ``[offset, length]``, pointing past the body.

A payload that uses markers or blobs starts with the byte 0xC1, which msgpack never uses, then
``0x00`` and the body, or ``0x01``, the body's length (8 bytes, little-endian), the body and the
blobs; any other payload is plain msgpack. Payloads of doeff before markers (tuples as extension
1, sets 2, frozensets 3, types 11, each holding a nested document) are still read, by
`doeff.serde.msgpack_v1`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]

from doeff.errors import DecodeError, EncodeError, brief
from doeff.serde import msgpack_v1
from doeff.serde.blob import Blob, BlobRef
from doeff.serde.domain import explain
from doeff.serde.msgpack_leaves import BIGINT, LEAF_READERS, LEAF_WRITERS, pack_plain, unpack_plain
from doeff.serde.smuggled import find_smuggled, may_hold_smuggled
from doeff.serde.types import TypeRegistry

TUPLE, SET, FROZENSET, OBJECT, BLOB = range(12, 17)  # never renumber: records depend on them
FRAMED = b"\xc1"
_FRAMED_BYTE = FRAMED[0]
_BODY_ONLY, _WITH_BLOBS = b"\x00", b"\x01"
# Blobs smaller than this are written inline as bin: framing them apart would save nothing.
BLOB_APART_FROM = 1 << 16
# Below this size a packed body is searched for bin/ext bytes before the value is walked for
# smuggled types; above it, the search (linear in bytes) may cost more than the walk (linear in
# objects, and a large body often holds a few large strings).
_SEARCH_BODY_BELOW = 1 << 14

# A thread keeps its Packer between calls (cheaper than msgpack.packb building one each time),
# but not after a large value, so a big buffer is not held for the life of the thread.
_KEEP_PACKER_BELOW = 1 << 20

_MARKS = {code: msgpack.ExtType(code, b"") for code in (TUPLE, SET, FROZENSET, OBJECT)}


class _Writing:
    """What one `encode` call has gathered so far."""

    __slots__ = ("blobs", "inline", "marked", "orders", "roots", "size")

    def __init__(self) -> None:
        self.marked = False  # a marker or blob was written: the payload must be framed
        self.blobs: list[memoryview] = []
        self.size = 0  # bytes of blobs so far: the next blob's offset
        self.inline = 0  # > 0 while set elements are encoded to sort them: blobs stay inline
        self.roots: list[object] = []  # each user type's state, to check like the value
        # id(set) -> (the set, its elements in canonical order); the set is held so the id
        # cannot be reused by another object during this call.
        self.orders: dict[int, tuple[object, list[object]]] = {}


class _Marker:
    """A decoded marker: the first item of an array that stands for a container."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[_Reading, list[Any]], object]) -> None:
        self.build = build


def _build_tuple(reading: _Reading, items: list[Any]) -> object:
    del items[0]
    return tuple(items)


def _build_set(reading: _Reading, items: list[Any]) -> object:
    del items[0]
    return set(items)


def _build_frozenset(reading: _Reading, items: list[Any]) -> object:
    del items[0]
    return frozenset(items)


def _build_object(reading: _Reading, items: list[Any]) -> object:
    if len(items) != 3:
        raise DecodeError(f"malformed typed value: {len(items) - 1} items after its marker, not 2")
    return reading.types.rebuild(items[1], items[2])


_MARKERS = {TUPLE: _Marker(_build_tuple), SET: _Marker(_build_set),
            FROZENSET: _Marker(_build_frozenset), OBJECT: _Marker(_build_object)}


class _Reading:
    """The hooks of one `decode` call, counting markers and blobs so none is left out of place."""

    __slots__ = ("blobs", "open", "refs", "types")

    def __init__(self, types: TypeRegistry, blobs: memoryview | None) -> None:
        self.types = types
        self.blobs = blobs
        self.open = 0  # markers read but not yet consumed by their array
        self.refs: list[BlobRef] = []

    def ext(self, code: int, data: bytes) -> object:
        marker = _MARKERS.get(code)
        if marker is not None:
            if data:
                raise DecodeError(f"malformed marker: extension {code} with a payload")
            self.open += 1
            return marker
        if code == BLOB:
            return self._blob(data)
        reader = LEAF_READERS.get(code)
        if reader is None:
            raise DecodeError(f"record holds msgpack extension type {code}, unknown to doeff")
        return reader(data)

    def array(self, items: list[Any]) -> object:
        if items and type(items[0]) is _Marker:
            self.open -= 1
            return items[0].build(self, items)
        return items

    def _blob(self, data: bytes) -> BlobRef:
        where = unpack_plain(data)
        if (self.blobs is None or type(where) is not list or len(where) != 2
                or not all(type(n) is int and n >= 0 for n in where)
                or where[0] + where[1] > self.blobs.nbytes):
            raise DecodeError(f"malformed blob reference {where!r}")
        ref = BlobRef(self.blobs[where[0]:where[0] + where[1]])
        self.refs.append(ref)
        return ref

    def check(self) -> None:
        """`DecodeError` if a marker or blob sat where no container or type consumed it."""
        if self.open:
            raise DecodeError("malformed record: a container marker outside its place")
        if any(not ref.used for ref in self.refs):
            raise DecodeError("malformed record: raw data where no type reads it")


class MsgpackCodec:
    """msgpack with exact round trips; register dataclasses, Enums, pydantic models... to carry
    them by name (numpy arrays and pandas frames are built in).

        codec = MsgpackCodec(types=[Point])
        codec.decode(codec.encode({"p": Point(1, 2), "t": (1, 2)}))  # same value, same types
    """

    tag = "msgpack"
    reads_buffers = True  # decode() takes a memoryview as well as bytes (see the envelope)

    def __init__(self, types: Iterable[type] | TypeRegistry = ()) -> None:
        self.types = types if isinstance(types, TypeRegistry) else TypeRegistry(types)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"MsgpackCodec(types={self.types.names()!r})"

    def register(
        self,
        cls: type,
        name: str | None = None,
        *,
        encode: Callable[[Any], object] | None = None,
        decode: Callable[[Any], object] | None = None,
    ) -> None:
        """Carry `cls` under `name` (default ``module.qualname``); see `TypeRegistry.register`."""
        self.types.register(cls, name, encode=encode, decode=decode)

    def encode(self, obj: object) -> bytes:
        """`obj` as msgpack bytes, or `EncodeError` naming the first value outside the domain."""
        local = self._local
        outer: _Writing | None = getattr(local, "writing", None)
        local.writing = None  # `_default` starts one when the value needs it
        try:
            if outer is None:
                try:
                    packer = local.packer
                except AttributeError:
                    packer = local.packer = self._new_packer()
            else:  # an encode inside a hook of an encode: the thread's packer is busy
                packer = self._new_packer()
            try:
                body: bytes = packer.pack(obj)
                writing: _Writing | None = local.writing
                if writing is not None:
                    bad = find_smuggled([obj, *writing.roots])
                elif len(body) < _SEARCH_BODY_BELOW and not may_hold_smuggled(body):
                    bad = None
                else:
                    bad = find_smuggled([obj])
            except Exception as exc:
                raise explain(self.tag, obj, self.types, exc) from exc
            if bad is not None:
                raise explain(self.tag, obj, self.types, TypeError(bad.__qualname__))
        finally:
            local.writing = outer
        if len(body) >= _KEEP_PACKER_BELOW and outer is None:
            del local.packer
        if writing is None or not writing.marked:
            return body
        if not writing.blobs:
            return b"".join((FRAMED, _BODY_ONLY, body))
        head = FRAMED + _WITH_BLOBS + len(body).to_bytes(8, "little")
        return b"".join((head, body, *writing.blobs))

    def _new_packer(self) -> msgpack.Packer:
        return msgpack.Packer(default=self._default, strict_types=True, use_bin_type=True)

    def decode(self, data: bytes) -> object:
        """The value `encode` wrote; `DecodeError` for anything else."""
        try:
            if data[0] != _FRAMED_BYTE:
                try:
                    return msgpack_v1.unpack_leaves(data)
                except msgpack_v1.HasNested:
                    return msgpack_v1.decode(data, self.types)
            view = memoryview(data)
            layout = data[1:2]
            if layout == _BODY_ONLY:
                body, blobs = view[2:], None
            elif layout == _WITH_BLOBS and len(data) >= 10:
                end = 10 + int.from_bytes(view[2:10], "little")
                if end > len(data):
                    raise DecodeError(f"truncated record: body ends at {end}, past {len(data)}")
                body, blobs = view[10:end], view[end:]
            else:
                raise DecodeError(f"unknown msgpack payload layout {bytes(layout)!r}")
            reading = _Reading(self.types, blobs)
            value = msgpack.unpackb(body, ext_hook=reading.ext, list_hook=reading.array,
                                    strict_map_key=False, raw=False)
            reading.check()
            return value
        except DecodeError:
            raise
        except msgpack.StackError:
            raise DecodeError(
                "msgpack cannot decode a record nested deeper than 1024 levels (doeff never "
                "writes one)"
            ) from None
        except Exception as exc:
            raise DecodeError(f"msgpack cannot decode {len(data)} bytes: {brief(exc)}") from exc

    def _default(self, obj: Any) -> object:
        """Write a value the C packer does not carry exactly (see the module docstring)."""
        kind = type(obj)
        leaf = LEAF_WRITERS.get(kind)
        if leaf is not None:
            return leaf(obj)
        writing: _Writing | None = self._local.writing
        if writing is None:
            writing = self._local.writing = _Writing()
        if kind is tuple:
            writing.marked = True
            return [_MARKS[TUPLE], *obj]
        if kind is set or kind is frozenset:
            writing.marked = True
            return [_MARKS[SET if kind is set else FROZENSET], *self._ordered(writing, obj)]
        if kind is Blob:
            return self._blob(writing, obj)
        if kind is int:  # the C packer sends only ints beyond 64 bits here
            size = (obj.bit_length() + 8) // 8
            return msgpack.ExtType(BIGINT, obj.to_bytes(size, "big", signed=True))
        reduced = self.types.reduce(obj)
        if reduced is not None:
            name, state, user_state = reduced
            writing.marked = True
            if user_state:
                writing.roots.append(state)
            return [_MARKS[OBJECT], name, state]
        raise EncodeError(f"type {kind.__qualname__} is not in the msgpack domain")

    def _ordered(self, writing: _Writing, items: set[Any] | frozenset[Any]) -> list[object]:
        """A set's elements sorted by their encoded bytes (hash-seed independent), worked out
        once per set per call (nested sets would otherwise be encoded again at every level)."""
        if len(items) < 2:
            return list(items)
        known = writing.orders.get(id(items))
        if known is not None:
            return known[1]
        writing.inline += 1
        try:
            pack = partial(msgpack.packb, default=self._default, strict_types=True,
                           use_bin_type=True)
            ordered = [item for _, item in sorted(
                ((pack(item), item) for item in items), key=lambda pair: pair[0])]
        finally:
            writing.inline -= 1
        writing.orders[id(items)] = (items, ordered)
        return ordered

    @staticmethod
    def _blob(writing: _Writing, blob: Blob) -> object:
        """A blob inline (as bin) when small, else apart after the body."""
        size = len(blob)
        if writing.inline or size < BLOB_APART_FROM:
            return blob.view  # the C packer writes a memoryview as bin, without a copy
        writing.marked = True
        writing.blobs.append(blob.view)
        where = pack_plain([writing.size, size])
        writing.size += size
        return msgpack.ExtType(BLOB, where)
