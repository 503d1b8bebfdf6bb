"""Every kind of user type the msgpack and JSON codecs register: pydantic v2 models (generated,
nested, generic), attrs classes, NamedTuples, IntEnum/StrEnum/Flag, dataclass subclasses, and
any class through encode=/decode= hooks."""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import attrs
import pydantic
import pytest
from exact import same
from hypothesis import given
from hypothesis import strategies as st

from doeff.errors import DecodeError, EncodeError, RegistrationError
from doeff.serde import Codec, JSONCodec, MsgpackCodec

CODEC_CLASSES = [MsgpackCodec, JSONCodec]
T = TypeVar("T")


# -- pydantic ----------------------------------------------------------------------------------

# (annotation, a strategy for values of it): the field types generated models draw from.
FIELD_TYPES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (int, st.integers()),
    (str, st.text(max_size=5)),
    (float, st.floats(allow_nan=False)),
    (bool, st.booleans()),
    (bytes, st.binary(max_size=4)),
    (list[int], st.lists(st.integers(), max_size=3)),
    (tuple[int, str], st.tuples(st.integers(), st.text(max_size=3))),
    (dict[str, float], st.dictionaries(st.text(max_size=3), st.floats(allow_nan=False),
                                       max_size=2)),
    (int | None, st.none() | st.integers()),
    (datetime, st.datetimes(timezones=st.just(UTC))),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False, places=2)),
    (frozenset[str], st.frozensets(st.text(max_size=2), max_size=3)),
]
_serial = itertools.count()


@st.composite
def models(draw: st.DrawFn, depth: int = 0) -> tuple[pydantic.BaseModel, list[type]]:
    """An instance of a freshly generated model class (fields of mixed types, maybe a nested
    model, maybe extra fields, defaults left unset), and every model class it uses."""
    fields: dict[str, Any] = {}
    values: dict[str, Any] = {}
    classes: list[type] = []
    for i in range(draw(st.integers(0, 4))):
        annotation, strategy = draw(st.sampled_from(FIELD_TYPES))
        if draw(st.booleans()):
            fields[f"f{i}"] = (annotation, ...)
            values[f"f{i}"] = draw(strategy)
        else:  # a default, so the field may be left out of model_fields_set
            default = draw(strategy)
            fields[f"f{i}"] = (annotation, pydantic.Field(default_factory=lambda d=default: d))
            if draw(st.booleans()):
                values[f"f{i}"] = draw(strategy)
    if depth < 2 and draw(st.booleans()):
        inner, inner_classes = draw(models(depth + 1))
        fields["child"] = (type(inner), ...)
        values["child"] = inner
        classes += inner_classes
    extra: Literal["ignore", "allow"] = draw(st.sampled_from(["ignore", "allow"]))
    cls = pydantic.create_model(f"Generated{next(_serial)}", __config__=pydantic.ConfigDict(
        extra=extra), **fields)
    if extra == "allow":
        values.update(draw(st.dictionaries(st.sampled_from(["x", "y"]), st.integers(),
                                           max_size=2)))
    return cls(**values), [*classes, cls]


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
@given(generated=models())
def test_generated_pydantic_models_round_trip_exactly(
    make: type[Codec], generated: tuple[pydantic.BaseModel, list[type]]
) -> None:
    """Fields, nested models, extra fields and model_fields_set all come back, by type."""
    model, classes = generated
    codec = make()
    for cls in classes:
        codec.register(cls, name=cls.__name__)  # type: ignore[attr-defined]
    back = codec.decode(codec.encode({"m": model, "in": [model]}))
    assert same({"m": model, "in": [model]}, back)


class Item(pydantic.BaseModel):
    """A model used as a generic parameter."""

    sku: str


class Page(pydantic.BaseModel, Generic[T]):
    """A generic model; Page[Item] is a class of its own."""

    items: list[T]
    cursor: int | None = None


class Secretive(pydantic.BaseModel):
    """A model with a private attribute and a validator that must not run on decode."""

    n: int
    _token: str = pydantic.PrivateAttr(default="unset")

    @pydantic.field_validator("n")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("n must be positive")
        return value


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
def test_generic_models_and_private_attributes_round_trip(make: type[Codec]) -> None:
    """A parametrised generic model keeps its parameter; private attributes come back; reading
    runs no validator (the value read is the value written)."""
    codec = make(types=[Item, Page[Item], Secretive])  # type: ignore[call-arg]
    page = Page[Item](items=[Item(sku="a")])
    secret = Secretive(n=1)
    secret._token = "t0k"
    forced = Secretive.model_construct(n=-1)
    back: Any = codec.decode(codec.encode([page, secret, forced]))
    assert same([page, secret, forced], back)
    assert type(back[0]) is Page[Item] and back[2].n == -1


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
def test_unregistered_parametrisation_is_refused(make: type[Codec]) -> None:
    """Page[int] is its own class: registering Page[Item] does not carry it."""
    codec = make(types=[Item, Page[Item]])  # type: ignore[call-arg]
    with pytest.raises(EncodeError, match=r"Page\[int\].*register it"):
        codec.encode(Page[int](items=[1]))


def test_changed_model_fields_give_a_decode_error() -> None:
    """A record written before the model gained a field names both field lists."""
    data = MsgpackCodec(types=[Item]).encode(Item(sku="a"))

    class Item2(pydantic.BaseModel):
        sku: str
        qty: int = 0

    reader = MsgpackCodec()
    reader.register(Item2, name=f"{__name__}.Item")
    with pytest.raises(DecodeError, match=r"\['sku'\].*\['sku', 'qty'\]"):
        reader.decode(data)


# -- attrs, NamedTuple, Enum, dataclasses ------------------------------------------------------

@attrs.frozen
class Money:
    """A frozen, slotted attrs class."""

    amount: Decimal
    currency: str = "EUR"


@attrs.define(slots=False)
class Basket:
    """A mutable attrs class whose __attrs_post_init__ must not run on decode."""

    items: list[Money]
    visits: int = 0

    def __attrs_post_init__(self) -> None:
        self.visits += 1


class Point(NamedTuple):
    """A typing.NamedTuple."""

    x: int
    y: int = 0


Pair = collections.namedtuple("Pair", "left right")


class Level(enum.IntEnum):
    """Compares equal to ints, so a lossy codec would hide the change."""

    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    """Compares equal to strs."""

    READ = "r"
    WRITE = "w"


class Perm(enum.Flag):
    """Combined members have no single name."""

    R = 4
    W = 2
    X = 1


@dataclasses.dataclass
class Base:
    """A dataclass with a subclass."""

    a: int


@dataclasses.dataclass
class Derived(Base):
    """A dataclass subclass adding a field."""

    b: str = "b"


class Plain(Base):
    """A subclass that is not itself decorated: its fields are Base's."""


@dataclasses.dataclass
class Cached:
    """A dataclass with a cached property (recomputed, so not stored)."""

    n: int

    @functools.cached_property
    def double(self) -> int:
        return 2 * self.n


KINDS: list[type] = [Money, Basket, Point, Pair, Level, Mode, Perm, Base, Derived, Plain, Cached]
kind_values = st.one_of(
    st.builds(Money, st.decimals(allow_nan=False, places=2), st.sampled_from(["EUR", "JPY"])),
    st.builds(Point, st.integers(), st.integers()),
    st.builds(Pair, st.text(max_size=3), st.none() | st.integers()),
    st.sampled_from(Level), st.sampled_from(Mode), st.builds(Perm, st.integers(0, 7)),
    st.builds(Base, st.integers()), st.builds(Derived, st.integers(), st.text(max_size=3)),
    st.builds(Plain, st.integers()),
)
nested_kinds = st.recursive(
    kind_values,
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(tuple),
                            st.builds(Basket, st.lists(st.builds(Money, st.decimals(
                                allow_nan=False, places=1)), max_size=2)),
                            st.builds(Base, inner), st.builds(Pair, inner, inner)),
    max_leaves=6,
)


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
@given(value=nested_kinds)
def test_registered_kinds_round_trip_exactly(make: type[Codec], value: object) -> None:
    """attrs classes, NamedTuples, IntEnum/StrEnum/Flag members and dataclass subclasses come
    back as their own types, nested in each other, without running __init__ hooks."""
    codec = make(types=KINDS)  # type: ignore[call-arg]
    back = codec.decode(codec.encode(value))
    assert same(value, back)


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
def test_subclasses_keep_their_own_type(make: type[Codec]) -> None:
    """A dataclass subclass (decorated or not) is read back as itself, not as its base."""
    codec = make(types=KINDS)  # type: ignore[call-arg]
    for value in (Derived(1, "x"), Plain(1), Level.HIGH, Mode.READ, Perm.R | Perm.X):
        back = codec.decode(codec.encode(value))
        assert type(back) is type(value) and same(value, back)
    basket = codec.decode(codec.encode(Basket([Money(Decimal("1.5"))])))
    assert isinstance(basket, Basket) and basket.visits == 1


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
def test_attributes_that_are_not_fields_are_refused(make: type[Codec]) -> None:
    """An attribute set outside the fields would be lost on reading: EncodeError says which; a
    cached_property's stored value is recomputed, so it is simply not kept."""
    codec = make(types=KINDS)  # type: ignore[call-arg]
    value = Plain(1)
    value.note = "extra"  # type: ignore[attr-defined]
    with pytest.raises(EncodeError, match=r"\$\[0\].*not fields: \['note'\]"):
        codec.encode([value])
    cached = Cached(3)
    assert cached.double == 6
    back: Any = codec.decode(codec.encode(cached))
    assert "double" not in vars(back) and back.double == 6


# -- hooks --------------------------------------------------------------------------------------

class Celsius:
    """A plain class, carried through encode=/decode= hooks."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees

    def __eq__(self, other: object) -> bool:
        return type(other) is Celsius and other.degrees == self.degrees

    def __hash__(self) -> int:
        return hash(self.degrees)


@pytest.mark.parametrize("make", CODEC_CLASSES, ids=lambda c: c.tag)
@given(degrees=st.floats(allow_nan=False), label=st.text(max_size=3))
def test_hooks_carry_any_class(
    make: type[MsgpackCodec] | type[JSONCodec], degrees: float, label: str
) -> None:
    """encode= turns the value into a state the codec writes; decode= rebuilds it, anywhere in a
    value (in a set element, a tuple, as a dict key)."""
    codec = make()
    codec.register(Celsius, encode=lambda c: (c.degrees,), decode=lambda s: Celsius(s[0]),
                   name="temp.Celsius")
    value = {Celsius(degrees): [label, frozenset({Celsius(degrees)})]}
    data = codec.encode(value)
    assert b"temp.Celsius" in data
    assert codec.decode(data) == value


def test_hooks_must_come_in_pairs_and_fail_clearly() -> None:
    """One hook without the other is refused; a hook's own failure is an Encode/DecodeError."""
    codec = MsgpackCodec()
    with pytest.raises(RegistrationError, match="both encode= and decode="):
        codec.register(Celsius, encode=lambda c: c.degrees)
    codec.register(Celsius, encode=lambda c: 1 / 0, decode=lambda s: Celsius(s))
    with pytest.raises(EncodeError, match=r"\$\[0\].*encode hook.*ZeroDivisionError"):
        codec.encode([Celsius(1.0)])
    other = MsgpackCodec()
    other.register(Celsius, encode=lambda c: c.degrees, decode=lambda s: 1 / 0)
    with pytest.raises(DecodeError, match=r"decode hook.*ZeroDivisionError"):
        other.decode(other.encode(Celsius(1.0)))


def test_builtin_names_cannot_be_taken() -> None:
    """The wire names of the built-in numpy/pandas support cannot be registered by users."""
    with pytest.raises(RegistrationError, match="doeff's own"):
        MsgpackCodec().register(Celsius, name="numpy.ndarray", encode=str, decode=float)
