"""`Effect`, the base of everything a program may yield, and `effect`, which builds doeff's own.

`@effect` gives a class what `@dataclass(frozen=True, slots=True)` would (immutable fields,
`==` and hash by class and fields, a dataclass-style repr, `__match_args__`, `__post_init__`),
but its lowercase constructor builds an instance in about half the time, close to a plain
slotted class: the common effects are built once per step of a program, where the frozen
dataclass constructor was the largest cost of the step.
"""

from __future__ import annotations

import dataclasses
import inspect
import reprlib
from collections.abc import Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar, cast, dataclass_transform

from doeff.program import Program


class Effect:
    """Base of all effects: immutable records that carry data, never behaviour.

    A user effect subclasses it and is answered by a handler given to `run_sync(handlers=...)`::

        @dataclass(frozen=True)
        class Fetch(Effect):
            url: str

        run_sync(program(), handlers={Fetch: lambda eff: http_get(eff.url)})
    """

    __slots__ = ()


Runnable: TypeAlias = Program[Any] | Effect
"""What the machine can run for an answer: a program, or an effect (run as a one-step program)."""

E = TypeVar("E", bound=Effect)
P = ParamSpec("P")


class _Sentinel:
    """A default marker that prints as its text (shown in `inspect.signature`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MISSING: Any = _Sentinel("<missing>")
_FACTORY: Any = _Sentinel("<factory>")  # the default shown for a field built by a factory
_MAKERS: dict[type, Callable[..., Any]] = {}


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def effect(cls: type[E]) -> type[E]:
    """Make `cls` a built-in effect whose fields are its annotated names, in order.

    A default is written as in a dataclass (`= value`, or `= field(default_factory=...)`), and a
    `__post_init__(self)` runs on the finished instance (to refuse bad field values). The class
    is rebuilt with `__slots__`, so its methods must not use zero-argument `super()`.
    """
    names = tuple(inspect.get_annotations(cls))
    for name in names:
        if name.startswith("_") or name in ("self", "cls"):
            raise TypeError(f"@effect {cls.__qualname__}: field name {name!r} is reserved")
    namespace = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in names and key not in ("__dict__", "__weakref__")
    }
    new, make, scope = _constructors(cls, names)
    namespace.update(
        __new__=new,
        __slots__=names,
        __match_args__=names,
        **_FROZEN_METHODS,
    )
    frozen = cast("type[E]", type(cls.__name__, cls.__bases__, namespace))
    # The twin has the same slots but no `__setattr__` of its own, so the generated code fills
    # an instance of it with plain attribute stores (which CPython specialises to slot writes;
    # a frozen class's own `__setattr__` would turn each into a Python call), then relabels it
    # as the frozen class: same layout, so `__class__` assignment is allowed and cheap.
    twin = type(cls.__name__, cls.__bases__, {
        "__slots__": names,
        "__module__": cls.__module__,
        "__qualname__": f"{cls.__qualname__}.<unfrozen>",
    })
    scope.update(_frozen=frozen, _twin=twin)
    _MAKERS[frozen] = make
    return frozen


def fast_constructor(cls: Callable[P, E]) -> Callable[P, E]:
    """The function that builds an `@effect` class's instances without the class call.

    It takes the same arguments as the class and builds the same instance; the lowercase
    constructors use it because calling the class goes through the interpreter's type call
    first, which costs about a third as much again.
    """
    return _MAKERS[cls]  # type: ignore[index]


def _constructors(
    cls: type, names: tuple[str, ...]
) -> tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]:
    """Generate `__new__(cls, *fields)` and `make(*fields)`: fill a twin, relabel it, return it.

    They read the frozen class and its twin from the returned scope, where the caller puts them
    once they exist (as `_frozen` and `_twin`).
    """
    scope: dict[str, Any] = {
        "_new": object.__new__,
        "_FACTORY": _FACTORY,
        "_post_init": getattr(cls, "__post_init__", None),
    }
    params: list[str] = []
    prologue: list[str] = []
    for name in names:
        default = cls.__dict__.get(name, _MISSING)
        if isinstance(default, dataclasses.Field):
            if default.default_factory is not dataclasses.MISSING:
                scope[f"_factory_{name}"] = default.default_factory
                params.append(f"{name}=_FACTORY")
                prologue.append(f"    if {name} is _FACTORY: {name} = _factory_{name}()")
                continue
            default = default.default if default.default is not dataclasses.MISSING else _MISSING
        if default is _MISSING:
            params.append(name)
        else:
            scope[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
    stores = [f"    self.{name} = {name}" for name in names]
    post = ["    _post_init(self)"] if scope["_post_init"] is not None else []

    def source(header: str, target: str) -> str:
        lines = [header, *prologue, "    self = _new(_twin)", *stores,
                 f"    self.__class__ = {target}", *post, "    return self"]
        return "\n".join(lines)

    text = "\n".join([
        source(f"def __new__(cls, {', '.join(params)}):", "cls"),
        source(f"def make({', '.join(params)}):", "_frozen"),
    ])
    exec(compile(text, f"<@effect {cls.__module__}.{cls.__qualname__}>", "exec"), scope)
    new, make = scope["__new__"], scope["make"]
    new.__qualname__ = f"{cls.__qualname__}.__new__"
    make.__qualname__ = make.__name__ = cls.__qualname__
    return new, make, scope


def _values(self: Any) -> tuple[Any, ...]:
    return tuple([getattr(self, name) for name in self.__match_args__])


class _Frozen:
    """The methods `@effect` copies into each class it makes.

    Copied rather than inherited: the twin a constructor fills must keep the default
    `__setattr__`, and it must have the same bases as the frozen class to share its layout.
    """

    __slots__ = ()
    __match_args__: tuple[str, ...]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        same: bool = _values(self) == _values(other)
        return same

    def __hash__(self) -> int:
        return hash(_values(self))

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Pickle and copy rebuild through the constructor (the default would call __new__ bare).
        return type(self), _values(self)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"cannot assign to field {name!r}: {type(self).__name__} effects are immutable; "
            f"build a new one instead"
        )

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(
            f"cannot delete field {name!r}: {type(self).__name__} effects are immutable"
        )


_FROZEN_METHODS = {
    name: vars(_Frozen)[name]
    for name in ("__eq__", "__hash__", "__repr__", "__reduce__", "__setattr__", "__delattr__")
}
