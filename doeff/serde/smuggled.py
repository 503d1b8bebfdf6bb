"""Find the values msgpack's C packer writes without asking: `bytearray` and `memoryview` (written
as bytes, read back as `bytes`), and raw `msgpack.ExtType`/`Timestamp` (which would be read back as
whatever the extension code means to doeff).

The packer handles these before any hook sees them, so `MsgpackCodec` checks the value after
packing it. The walk goes level by level with C-speed primitives (`gc.get_referents` of a whole
level at once, a set of the types found), so it costs about as much as packing, not a Python
loop per value.
"""

from __future__ import annotations

import gc
from itertools import compress

import msgpack  # type: ignore[import-untyped]

SMUGGLED: frozenset[type] = frozenset({bytearray, memoryview, msgpack.ExtType, msgpack.Timestamp})
# Containers the packer descends into by itself (tuples and sets come back as lists from the
# codec's hook, whose items are the tuple's and set's own). A registered type's state is checked
# as a root of its own, so the walk does not enter user objects.
_CONTAINERS: frozenset[type] = frozenset({list, dict, tuple, set, frozenset})
_is_container = _CONTAINERS.__contains__
# Types whose values the walk need not look at further.
_SAFE: frozenset[type] = frozenset({str, int, float, bool, bytes, type(None)})
# The first byte of every msgpack bin (0xc4-0xc6) and ext (0xc7-0xc9, 0xd4-0xd8) value: a body
# without any of them holds no smuggled value. Deleting every other byte value is one C pass
# (about 0.5 ns a byte), cheaper than walking the value.
_HEADS = frozenset((*range(0xC4, 0xCA), *range(0xD4, 0xD9)))
_NOT_HEADS = bytes(b for b in range(256) if b not in _HEADS)


def may_hold_smuggled(body: bytes) -> bool:
    """False when the packed `body` has no bin or ext value at all (so nothing was smuggled)."""
    return bool(body.translate(None, _NOT_HEADS))


def find_smuggled(roots: list[object]) -> type | None:
    """The first smuggled type found in `roots` (walked through their containers), or None."""
    level = roots
    while level:
        kinds = set(map(type, level))
        if kinds <= _SAFE:
            return None
        bad = kinds & SMUGGLED
        if bad:
            return next(iter(bad))
        inner = kinds & _CONTAINERS
        if not inner:
            return None
        if len(inner) < len(kinds):
            level = list(compress(level, map(_is_container, map(type, level))))
        # gc.get_referents returns a list's and a tuple's items, a set's elements, and a dict's
        # values (and its keys, unless all are str).
        level = gc.get_referents(*level)
    return None
