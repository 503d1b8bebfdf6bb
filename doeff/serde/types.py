"""Types a codec carries by name: registered user types and the built-in numpy/pandas support.

A value of such a type is written as ``(name, state)``: a stable wire name (by default
``module.qualname``) and a state made of domain values, which the codec then encodes like any
other value. Each kind of type has an `Adapter` that reduces a value to its state and rebuilds it
(`doeff.serde.kinds` for user types, `doeff.serde.ext` for numpy and pandas). Nothing is pickled,
so reading a record never runs code chosen by the record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from doeff.errors import DecodeError, EncodeError, RegistrationError, brief
from doeff.serde import ext, kinds
from doeff.serde.adapter import Adapter, Unknown, type_name

__all__ = ["Adapter", "TypeRegistry", "Unknown", "type_name"]


class TypeRegistry:
    """The types one codec carries by name: registered ones first, then the built-in ones.

    `builtins=False` leaves numpy and pandas values to `unknown` as well; `unknown`, when given,
    receives every ``(name, state)`` no adapter claims (the ``doeff`` command shows these as
    structural views), instead of the `DecodeError` a codec raises by default.
    """

    def __init__(
        self, types: Iterable[type] = (), *, builtins: bool = True, unknown: Unknown | None = None
    ) -> None:
        self._by_type: dict[type, Adapter] = {}
        self._by_name: dict[str, Adapter] = {}
        self.builtins = builtins
        self.unknown = unknown
        # Readers never lock: each dict assignment is atomic, and registration happens at set-up.
        self._lock = threading.Lock()
        for cls in types:
            self.register(cls)

    def register(
        self,
        cls: type,
        name: str | None = None,
        *,
        encode: Callable[[Any], object] | None = None,
        decode: Callable[[Any], object] | None = None,
    ) -> None:
        """Carry `cls` under `name` (default ``module.qualname``); registering a pair again is a
        no-op (with new hooks, it replaces them). With `encode` and `decode`, any class:
        ``encode(value)`` returns a state the codec can write, ``decode(state)`` rebuilds it."""
        if not isinstance(cls, type):
            raise RegistrationError(f"only classes can be registered, got {cls!r}")
        wire = type_name(cls) if name is None else name
        if type(wire) is not str or not wire:
            raise RegistrationError(f"a wire name must be a non-empty str, got {wire!r}")
        if wire in ext.BUILTIN_NAMES:
            raise RegistrationError(
                f"wire name {wire!r} is doeff's own (its built-in support for that type); "
                "register your class under another name=..."
            )
        adapter = kinds.adapter_for(cls, wire, encode, decode)
        with self._lock:
            bound = self._by_name.get(wire)
            if bound is not None and bound.cls is not cls:
                raise RegistrationError(
                    f"wire name {wire!r} is already bound to {type_name(bound.cls)}; register "
                    f"{type_name(cls)} under another name=..."
                )
            old = self._by_type.get(cls)
            if old is not None and old.name != wire:
                raise RegistrationError(
                    f"{type_name(cls)} is already registered as {old.name!r}; a type has one wire "
                    f"name per codec (register it again under {old.name!r}, or not at all)"
                )
            self._by_name[wire] = adapter
            self._by_type[cls] = adapter

    def copy(self, *, builtins: bool | None = None, unknown: Unknown | None = None) -> TypeRegistry:
        """A registry with the same registrations, optionally other `builtins`/`unknown`."""
        new = TypeRegistry(builtins=self.builtins if builtins is None else builtins,
                           unknown=self.unknown if unknown is None else unknown)
        new._by_type = dict(self._by_type)
        new._by_name = dict(self._by_name)
        return new

    def merge(self, other: TypeRegistry) -> None:
        """Add `other`'s registrations whose name and type are both still free here."""
        with self._lock:
            for cls, adapter in other._by_type.items():
                if cls not in self._by_type and adapter.name not in self._by_name:
                    self._by_type[cls] = adapter
                    self._by_name[adapter.name] = adapter

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_type or (
            self.builtins and isinstance(cls, type) and self._builtin(cls) is not None
        )

    def names(self) -> list[str]:
        """Every registered wire name, sorted (built-in names not included)."""
        return sorted(self._by_name)

    def adapter(self, cls: type) -> Adapter | None:
        """The adapter for values of exactly `cls`, or None."""
        found = self._by_type.get(cls)
        if found is None and self.builtins:
            found = self._builtin(cls)
        return found

    @staticmethod
    def _builtin(cls: type) -> Adapter | None:
        return ext.builtin_for_type(cls)

    def reduce(self, obj: object) -> tuple[str, Any, bool] | None:
        """``(name, state, user_state)`` for a value of a carried type (exact type), else None;
        `EncodeError` when the type is carried but this value cannot be."""
        adapter = self.adapter(type(obj))
        if adapter is None:
            return None
        try:
            state = adapter.reduce(obj)
        except EncodeError:
            raise
        except Exception as exc:
            raise EncodeError(
                f"could not reduce a {adapter.name} to its state: {brief(exc)}"
            ) from exc
        return adapter.name, state, adapter.user_state

    def rebuild(self, name: object, state: object) -> object:
        """The value `reduce` described, or `DecodeError` if `name` is unknown or `state` wrong."""
        adapter = self._by_name.get(name) if type(name) is str else None
        if adapter is None and self.builtins and type(name) is str:
            try:
                adapter = ext.builtin_for_name(name)
            except DecodeError:  # its library is not installed here
                if self.unknown is None:
                    raise
        if adapter is None:
            if self.unknown is not None and type(name) is str:
                return self.unknown(name, state)
            known = ", ".join(self.names()) or "none"
            raise DecodeError(
                f"record holds a value of type {name!r}, which is not registered with this codec "
                f"(registered: {known}); register the class with the codec that reads the record"
            )
        try:
            return adapter.rebuild(state)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"cannot rebuild a {name!r} from its record: {brief(exc)}") from exc
