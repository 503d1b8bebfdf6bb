"""`Effect`, the base of everything a program may yield, and `effect`, which builds doeff's own.

`@effect` makes a class a frozen, slotted dataclass (immutable fields, `==` and hash by class and
fields, the dataclass repr, `__match_args__`, `dataclasses.replace`), whose lowercase constructor
builds an instance in about half the time, close to a plain slotted class: the common effects
are built once per step of a program, where the dataclass constructor was the largest cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar, dataclass_transform

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


_FACTORY: Any = _Sentinel("<factory>")  # the default shown for a field built by a factory
_MAKERS: dict[type, Callable[..., Any]] = {}


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def effect(cls: type[E]) -> type[E]:
    """Make `cls` a frozen, slotted dataclass that is cheap to build.

    Written as a dataclass (`field(default_factory=...)` and `__post_init__` included), and one
    in every respect but construction: instead of an `__init__` it gets a generated `__new__`
    that fills the slots with plain attribute stores, not a call of `object.__setattr__` each
    (a subclass is built the ordinary dataclass way). The class must not use zero-argument
    `super()` (the slots rebuild it), nor name a field `self` or `cls` (the generated code's).
    """
    frozen = dataclasses.dataclass(frozen=True, slots=True)(cls)
    dataclass_init = vars(frozen)["__init__"]
    new, make, scope = _constructors(frozen)
    # The twin has the same slots but no `__setattr__` of its own, so the generated code fills
    # an instance of it with plain attribute stores (which CPython specialises to slot writes;
    # the frozen class's `__setattr__` would turn each into a Python call), then relabels it as
    # the frozen class: same layout, so `__class__` assignment is allowed and cheap.
    twin = type(frozen.__name__, frozen.__bases__, {
        "__slots__": frozen.__slots__,
        "__module__": frozen.__module__,
        "__qualname__": f"{frozen.__qualname__}.<unfrozen>",
    })
    scope.update(_frozen=frozen, _twin=twin)
    frozen.__new__ = staticmethod(new)  # type: ignore[method-assign]
    frozen.__init__ = object.__init__  # type: ignore[method-assign]  # __new__ did it all

    def new_of_subclass(sub: type[Any], *args: Any, **kwargs: Any) -> Any:
        self = object.__new__(sub)
        if sub.__init__ is object.__init__:  # no @dataclass of its own: fill it here
            dataclass_init(self, *args, **kwargs)
        return self

    def init_subclass(sub: Any, /, **kwargs: Any) -> None:
        # A subclass may add fields or a __dict__, so the twin does not fit it: it is built the
        # ordinary dataclass way.
        super(frozen, sub).__init_subclass__(**kwargs)
        sub.__new__ = staticmethod(new_of_subclass)

    frozen.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]
    frozen.__reduce__ = _reduce  # type: ignore[method-assign]
    # The dataclass's own refusals fail with a TypeError for a name that is not a field (its
    # `super()` call names the class from before the slots rebuilt it).
    frozen.__setattr__ = _refuse_setattr  # type: ignore[method-assign]
    frozen.__delattr__ = _refuse_delattr  # type: ignore[method-assign]
    _MAKERS[frozen] = make
    return frozen


def fast_constructor(cls: Callable[P, E]) -> Callable[P, E]:
    """The function that builds an `@effect` class's instances without the class call.

    It takes the same arguments as the class and builds the same instance; the lowercase
    constructors use it because calling the class goes through the interpreter's type call
    first, which costs about a third as much again.
    """
    return _MAKERS[cls]  # type: ignore[index]


def _constructors(cls: type) -> tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]:
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
    fields = dataclasses.fields(cls)
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            prologue.append(f"    if {f.name} is _FACTORY: {f.name} = _factory_{f.name}()")
        elif f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
    stores = [f"    self.{f.name} = {f.name}" for f in fields]
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


def _reduce(self: Any) -> tuple[type, tuple[Any, ...]]:
    # Pickle and copy rebuild through the constructor (the default would call __new__ bare).
    return type(self), tuple([getattr(self, f.name) for f in dataclasses.fields(self)])


def _refuse_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(
        f"cannot assign to field {name!r}: {type(self).__name__} effects are immutable; "
        f"build a new one (dataclasses.replace)"
    )


def _refuse_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(
        f"cannot delete field {name!r}: {type(self).__name__} effects are immutable"
    )
