"""Adapters for the kinds of user types a codec can register: dataclasses (and their subclasses),
attrs classes, `NamedTuple`s, Enums (`IntEnum`, `StrEnum`, `Flag`...), pydantic v2 models, and any
class given explicit ``encode=``/``decode=`` hooks.

Records (dataclass, attrs) are written as a dict of every field and rebuilt without calling
``__init__``/``__post_init__``, so the value read is the value written. No library is imported
here: an attrs class is recognised by ``__attrs_attrs__``, a pydantic model only once pydantic has
been imported (by the code that defined the model).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any

from doeff.errors import DecodeError, EncodeError, RegistrationError, brief
from doeff.serde.adapter import Adapter, type_name


def adapter_for(
    cls: type,
    name: str,
    encode: Callable[[Any], object] | None,
    decode: Callable[[Any], object] | None,
) -> Adapter:
    """The adapter for registering `cls` under `name`, or `RegistrationError` saying what fits."""
    if encode is not None or decode is not None:
        if not callable(encode) or not callable(decode):
            raise RegistrationError(
                f"registering {type_name(cls)} with hooks needs both encode= and decode= "
                "(callables: value -> state, state -> value)"
            )
        return _hooked(cls, name, encode, decode)
    if issubclass(cls, enum.Enum):
        return Adapter(cls, name, _enum_reduce, functools.partial(_enum_rebuild, cls, name))
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return _named_tuple(cls, name)
    if dataclasses.is_dataclass(cls):
        return _Record(cls, name, [f.name for f in dataclasses.fields(cls)]).adapter()
    attrs_fields = getattr(cls, "__attrs_attrs__", None)
    if attrs_fields is not None:
        return _Record(cls, name, [a.name for a in attrs_fields]).adapter()
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        from doeff.serde.ext import pydantic as ext_pydantic

        return ext_pydantic.adapter(cls, name)
    hint = ""
    if cls.__module__.partition(".")[0] in ("numpy", "pandas"):
        hint = " (numpy arrays and scalars, pandas DataFrame/Series/Index need no registration)"
    raise RegistrationError(
        f"{type_name(cls)} is not a dataclass, attrs class, NamedTuple, Enum or pydantic model; "
        f"register it with encode= and decode= hooks instead{hint}"
    )


def _hooked(
    cls: type, name: str, encode: Callable[[Any], object], decode: Callable[[Any], object]
) -> Adapter:
    """A type written as whatever its `encode` hook returns."""

    def reduce(obj: object) -> object:
        try:
            return encode(obj)
        except Exception as exc:
            raise EncodeError(f"the encode hook of {name!r} failed: {brief(exc)}") from exc

    def rebuild(state: object) -> object:
        try:
            return decode(state)
        except Exception as exc:
            raise DecodeError(f"the decode hook of {name!r} failed: {brief(exc)}") from exc

    return Adapter(cls, name, reduce, rebuild)


def _enum_reduce(member: enum.Enum) -> object:
    """A member by name; a combined `Flag` (which has no single name) by its value."""
    if type(member).__members__.get(member.name or "") is member:
        return member.name
    return [member.value]


def _enum_rebuild(cls: type[enum.Enum], name: str, state: object) -> enum.Enum:
    if type(state) is str:
        try:
            return cls[state]
        except KeyError:
            raise DecodeError(f"enum {name!r} has no member {state!r} any more") from None
    if type(state) is list and len(state) == 1:
        return cls(state[0])
    raise DecodeError(f"malformed state for enum {name!r}: {state!r}")


def _named_tuple(cls: type, name: str) -> Adapter:
    """A NamedTuple (or collections.namedtuple) as a dict of its fields."""
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]

    def reduce(obj: tuple[object, ...]) -> dict[str, object]:
        return dict(zip(fields, obj, strict=True))

    def rebuild(state: object) -> object:
        _check_fields(name, state, fields)
        assert isinstance(state, dict)
        # tuple.__new__, as the class's own _make does: no user __new__ runs.
        return tuple.__new__(cls, state.values())

    return Adapter(cls, name, reduce, rebuild)


def _check_fields(name: str, state: object, fields: tuple[str, ...]) -> None:
    """`DecodeError` unless `state` is a dict of exactly `fields`, in order."""
    if type(state) is not dict or tuple(state) != fields:
        found = list(state) if type(state) is dict else type(state).__name__
        raise DecodeError(
            f"record for {name!r} has fields {found}, but the class now has {list(fields)}; "
            "the class changed since the record was written"
        )


def _derived_names(cls: type) -> frozenset[str]:
    """Attributes a `functools.cached_property` stores on instances: recomputed, so not kept."""
    return frozenset(
        key for klass in cls.__mro__ for key, attr in vars(klass).items()
        if isinstance(attr, functools.cached_property)
    )


class _Record:
    """A class whose state is a fixed list of fields (a dataclass, an attrs class)."""

    def __init__(self, cls: type, name: str, fields: Iterable[str]) -> None:
        self.cls = cls
        self.name = name
        self.fields = tuple(fields)
        self.field_set = frozenset(self.fields)
        self.derived = _derived_names(cls)

    def adapter(self) -> Adapter:
        return Adapter(self.cls, self.name, self.reduce, self.rebuild)

    def reduce(self, obj: object) -> dict[str, object]:
        """Every field's value; `EncodeError` if the instance holds attributes that are not fields
        (set in ``__init__`` or ``__post_init__``), which reading back would lose."""
        try:
            state = {f: getattr(obj, f) for f in self.fields}
        except AttributeError as exc:
            raise EncodeError(
                f"a {self.name} has no value for its field {exc.name!r}; set it before storing"
            ) from None
        attrs = getattr(obj, "__dict__", None)
        if attrs is not None and attrs.keys() != self.field_set:
            extra = sorted(attrs.keys() - self.field_set - self.derived)
            if extra:
                raise EncodeError(
                    f"a {self.name} holds attributes that are not fields: {extra}; reading it "
                    "back would lose them, so make them fields or register the class with "
                    "encode=/decode= hooks"
                )
        return state

    def rebuild(self, state: object) -> object:
        """The fields restored as written, without ``__init__``/``__post_init__`` (which could
        recompute or validate them)."""
        _check_fields(self.name, state, self.fields)
        assert isinstance(state, dict)
        cls: Any = self.cls
        obj = cls.__new__(cls)
        for key, value in state.items():
            object.__setattr__(obj, key, value)
        return obj
