"""Find where a value leaves the msgpack/JSON domain, to name the type and its path in errors.

Codecs encode on their libraries' fast paths and call `explain` only after a failure, so the
Python walk here costs nothing on values that encode.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from doeff.errors import EncodeError, RegistrationError
from doeff.serde import kinds
from doeff.serde.blob import Blob
from doeff.serde.temporal import zone_to_wire
from doeff.serde.types import TypeRegistry, type_name

# Exact types only: a subclass (an IntEnum, an OrderedDict, a str subclass) is not in the domain.
_LEAVES: frozenset[type] = frozenset(
    {type(None), bool, int, float, bytes, date, timedelta, Decimal, UUID, Blob}
)
# What to do instead, for types people try to store.
_HINTS = {
    "bytearray": "; convert it with bytes(...) (it would come back as bytes)",
    "memoryview": "; convert it with bytes(...) (it would come back as bytes)",
    "ExtType": "; a raw msgpack extension would be read as doeff's own, register a type instead",
}


class _Outside(Exception):
    """Internal: the walk found a value outside the domain (its path and reason)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason


def _segment(key: object) -> str:
    """A path step for a dict key: ``["name"]`` for str keys, ``[repr]`` otherwise."""
    if type(key) is str:
        return '["' + key.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return f"[{key!r}]"


def _walk(value: object, path: str, registry: TypeRegistry, open_ids: set[int]) -> None:
    """Raise `_Outside` at the first value (depth first, in order) that the domain excludes."""
    kind = type(value)
    if kind in _LEAVES:
        return
    if kind is str:
        try:
            value.encode("utf-8")  # type: ignore[attr-defined]
        except UnicodeEncodeError as exc:
            raise _Outside(path, f"str holds a lone surrogate at index {exc.start}") from None
        return
    if kind is datetime or kind is time:
        try:
            zone_to_wire(value.tzinfo)  # type: ignore[attr-defined]
        except EncodeError as exc:
            raise _Outside(path, str(exc)) from None
        return
    if id(value) in open_ids:
        raise _Outside(path, f"the {kind.__name__} contains itself (a reference cycle)")
    open_ids.add(id(value))
    try:
        _walk_inside(value, path, registry, open_ids)
    finally:
        open_ids.discard(id(value))


def _walk_inside(value: Any, path: str, registry: TypeRegistry, open_ids: set[int]) -> None:
    """Walk the parts of a container or a registered value."""
    kind = type(value)
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", registry, open_ids)
    elif kind is dict:
        for key, item in value.items():
            _walk(key, f"{path} (a dict key: {key!r})", registry, open_ids)
            _walk(item, path + _segment(key), registry, open_ids)
    elif kind is set or kind is frozenset:
        for item in value:
            _walk(item, f"{path} (a {kind.__name__} element: {item!r})", registry, open_ids)
    elif kind in registry:
        try:
            reduced = registry.reduce(value)
        except EncodeError as exc:
            raise _Outside(path, str(exc)) from None
        assert reduced is not None
        _, state, user_state = reduced
        if not user_state:
            return  # a built-in type whose state holds no user values
        if type(state) is dict and set(map(type, state)) <= {str}:
            for key, item in state.items():
                _walk(item, f"{path}.{key}", registry, open_ids)
        elif isinstance(value, enum.Enum) and type(state) is list:
            _walk(state[0], f"{path}.value", registry, open_ids)
        else:
            _walk(state, f"{path} (as encoded by its hook)", registry, open_ids)
    else:
        raise _Outside(path, f"type {type_name(kind)} is not in the domain{_hint(kind)}")


def _hint(kind: type) -> str:
    """What to do about a type outside the domain, for the error message."""
    if kind.__name__ in _HINTS:
        return _HINTS[kind.__name__]
    try:
        kinds.adapter_for(kind, type_name(kind), None, None)
    except RegistrationError:
        return ""
    return "; register it with the codec (e.g. codec.register(cls)) to carry it by name"


def explain(codec: str, value: object, registry: TypeRegistry, cause: BaseException) -> EncodeError:
    """An `EncodeError` naming the first offending type and its path (``$["rows"][3]``)."""
    try:
        _walk(value, "$", registry, set())
    except _Outside as outside:
        return EncodeError(f"{codec} cannot encode the value at {outside.path}: {outside.reason}")
    except RecursionError:
        return EncodeError(f"{codec} cannot encode a value nested this deeply")
    # Every part is in the domain, so the library itself refused (e.g. its nesting limit).
    return EncodeError(f"{codec} cannot encode a {type_name(type(value))} value: {cause}")
