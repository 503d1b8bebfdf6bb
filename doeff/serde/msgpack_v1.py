"""Reading plain msgpack payloads, including those of doeff before container markers.

Those wrote a tuple as extension 1, a set as 2, a frozenset as 3 and a registered type as 11,
each holding a nested msgpack document. Unpacking each nested document from inside msgpack's
extension hook recursed through the C unpacker (about 40 KiB of C stack per level), so about 200
nested tuples overflowed the stack and killed the reader. Here the hook only notes each nested
document, and `_resolve` unpacks them afterwards with an explicit stack: no depth recurses, and
a record nested deeper than doeff ever wrote is a `DecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]

from doeff.errors import DecodeError
from doeff.serde.msgpack_leaves import LEAF_READERS
from doeff.serde.types import TypeRegistry

V1_TUPLE, V1_SET, V1_FROZENSET, V1_OBJECT = 1, 2, 3, 11
# Deeper than any record doeff wrote (its encoder gave up near 250 levels).
MAX_DEPTH = 1024

_BUILD: dict[int, Callable[[list[Any]], object]] = {
    V1_TUPLE: tuple, V1_SET: set, V1_FROZENSET: frozenset,
}


class _Nested:
    """A nested document the extension hook set aside, to be unpacked by `_resolve`."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        self.code = code
        self.data = data


class HasNested(Exception):
    """Raised by the fast path's hook at the first version-1 container."""


def _leaf_only(code: int, data: bytes) -> object:
    reader = LEAF_READERS.get(code)
    if reader is not None:
        return reader(data)
    if code in _BUILD or code == V1_OBJECT:
        raise HasNested
    raise DecodeError(f"record holds msgpack extension type {code} in a plain payload")


unpack_leaves = partial(msgpack.unpackb, ext_hook=_leaf_only, strict_map_key=False, raw=False)


def _set_aside(code: int, data: bytes) -> object:
    if code in _BUILD or code == V1_OBJECT:
        return _Nested(code, data)
    return _leaf_only(code, data)


_unpack = partial(msgpack.unpackb, ext_hook=_set_aside, strict_map_key=False, raw=False)


def decode(data: bytes | memoryview, types: TypeRegistry) -> object:
    """The value of a plain msgpack payload, version-1 containers included.

    `unpack_leaves` alone is the fast path callers try first: it raises `HasNested` at the first
    version-1 container, and only then is the payload read again here.
    """
    return _resolve(_unpack(data), types)


# Work items of `_resolve`: visit a value, or build a container from the results on the stack.
_VISIT, _LIST, _DICT, _NESTED = range(4)


def _resolve(root: object, types: TypeRegistry) -> object:
    """`root` with every `_Nested` unpacked and rebuilt, depth first, without recursion."""
    work: list[tuple[int, Any, int]] = [(_VISIT, root, 0)]
    done: list[Any] = []
    while work:
        op, item, depth = work.pop()
        if op == _VISIT:
            if depth > MAX_DEPTH:
                raise DecodeError(f"record nested deeper than {MAX_DEPTH} levels")
            kind = type(item)
            if kind is _Nested:
                work.append((_NESTED, item.code, 0))
                work.append((_VISIT, _unpack(item.data), depth + 1))
            elif kind is list:
                work.append((_LIST, len(item), 0))
                work.extend((_VISIT, x, depth + 1) for x in reversed(item))
            elif kind is dict:
                work.append((_DICT, len(item), 0))
                for key, value in reversed(item.items()):
                    work.append((_VISIT, value, depth + 1))
                    work.append((_VISIT, key, depth + 1))
            else:
                done.append(item)
        elif op == _LIST:
            items = done[len(done) - item:]
            del done[len(done) - item:]
            done.append(items)
        elif op == _DICT:
            flat = done[len(done) - 2 * item:]
            del done[len(done) - 2 * item:]
            done.append(dict(zip(flat[::2], flat[1::2], strict=True)))
        else:
            inner = done.pop()
            if type(inner) is not list:
                raise DecodeError(f"malformed extension {item}: holds a {type(inner).__name__}")
            if item == V1_OBJECT:
                if len(inner) != 2:
                    raise DecodeError("malformed typed value: expected [name, state]")
                done.append(types.rebuild(inner[0], inner[1]))
            else:
                done.append(_BUILD[item](inner))
    return done[0]
