"""User types a codec carries by name: registered dataclasses and Enums.

A registered value is written as ``(name, state)``: the stable wire name (by default
``module.qualname``) and, for a dataclass, a dict of every field's value; for an Enum member, its
member name (or, for a combined `Flag` that has no single name, its value). Nothing is pickled,
so reading a record never runs code chosen by the record.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Iterable
from typing import Any

from doeff.errors import DecodeError, RegistrationError


def type_name(cls: type) -> str:
    """The default wire name of a type: ``module.qualname``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class TypeRegistry:
    """Dataclasses and Enums a codec may carry, each bound to one wire name (and back)."""

    def __init__(self, types: Iterable[type] = ()) -> None:
        self._by_type: dict[type, str] = {}
        self._by_name: dict[str, type] = {}
        # Readers never lock: each dict assignment is atomic, and registration happens at set-up.
        self._lock = threading.Lock()
        for cls in types:
            self.register(cls)

    def register(self, cls: type, name: str | None = None) -> None:
        """Bind `cls` (a dataclass or an Enum) to `name`; registering a pair again is a no-op."""
        if not isinstance(cls, type) or not (
            dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum)
        ):
            raise RegistrationError(
                f"only dataclasses and Enum subclasses can be registered, got {cls!r}"
            )
        wire = type_name(cls) if name is None else name
        with self._lock:
            bound = self._by_name.get(wire)
            if bound is not None and bound is not cls:
                raise RegistrationError(
                    f"wire name {wire!r} is already bound to {type_name(bound)}; register "
                    f"{type_name(cls)} under another name=..."
                )
            old = self._by_type.get(cls)
            if old is not None and old != wire:
                raise RegistrationError(
                    f"{type_name(cls)} is already registered as {old!r}; a type has one wire "
                    f"name per codec (register it again under {old!r}, or not at all)"
                )
            self._by_name[wire] = cls
            self._by_type[cls] = wire

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_type

    def names(self) -> list[str]:
        """Every registered wire name, sorted."""
        return sorted(self._by_name)

    def reduce(self, obj: object) -> tuple[str, Any] | None:
        """``(name, state)`` for a value of a registered type (exact type), else None."""
        name = self._by_type.get(type(obj))
        if name is None:
            return None
        if isinstance(obj, enum.Enum):
            if type(obj).__members__.get(obj.name or "") is obj:
                return name, obj.name
            return name, [obj.value]  # a combined Flag: no member name to look up
        fields = dataclasses.fields(obj)  # type: ignore[arg-type]
        return name, {f.name: getattr(obj, f.name) for f in fields}

    def rebuild(self, name: object, state: object) -> object:
        """The value `reduce` described, or `DecodeError` if `name` is unknown or `state` wrong."""
        cls = self._by_name.get(name) if type(name) is str else None
        if cls is None:
            known = ", ".join(self.names()) or "none"
            raise DecodeError(
                f"record holds a value of type {name!r}, which is not registered with this codec "
                f"(registered: {known}); register the class with the codec that reads the record"
            )
        if issubclass(cls, enum.Enum):
            if type(state) is str:
                return cls[state]
            if type(state) is list and len(state) == 1:
                return cls(state[0])
            raise DecodeError(f"malformed state for enum {name!r}: {state!r}")
        expected = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        if type(state) is not dict or list(state) != expected:
            found = list(state) if type(state) is dict else type(state).__name__
            raise DecodeError(
                f"record for dataclass {name!r} has fields {found}, but the class now has "
                f"{expected}; the class changed since the record was written"
            )
        # Restore the state as written: __init__/__post_init__ would recompute or validate it.
        obj = cls.__new__(cls)
        for key, value in state.items():
            object.__setattr__(obj, key, value)
        return obj
