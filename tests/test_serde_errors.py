"""Values just outside the msgpack/JSON domain raise EncodeError naming the type and its path."""

from __future__ import annotations

import collections
import dataclasses
import enum
from datetime import datetime, timedelta, tzinfo
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from test_serde_roundtrip import Box, Level

from doeff.errors import DoeffError, EncodeError, RegistrationError
from doeff.serde import CloudpickleCodec, Codec, JSONCodec, MsgpackCodec, PickleCodec


class MyStr(str):
    """A str subclass nobody registered."""


class MyInt(int):
    """An int subclass nobody registered."""


class MyFloat(float):
    """A float subclass nobody registered."""


@dataclasses.dataclass
class Unregistered:
    """A dataclass nobody registered."""

    x: int


class Shade(enum.Enum):
    """An Enum nobody registered."""

    DARK = 1


class CustomZone(tzinfo):
    """A tzinfo that no codec can rebuild."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=2)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "CUSTOM+2"


Pair = collections.namedtuple("Pair", "a b")

OUTSIDE: list[tuple[Any, str, str]] = [
    ({"rows": [1, 2, 3, object()]}, '$["rows"][3]', "builtins.object"),
    ([1, (2, {"a": collections.OrderedDict()})], '$[1][1]["a"]', "OrderedDict"),
    ({"n": MyInt(3)}, '$["n"]', "MyInt"),
    ({"s": [MyStr("x")]}, '$["s"][0]', "MyStr"),
    ([MyFloat(1.5)], "$[0]", "MyFloat"),
    ({"p": Pair(1, 2)}, '$["p"]', "Pair"),
    ({"u": Unregistered(1)}, '$["u"]', "register it"),
    ([Shade.DARK], "$[0]", "Shade"),
    ([Level.LOW], "$[0]", "Level"),
    ({"x": "ok\ud800"}, '$["x"]', "lone surrogate"),
    ({"k\udfff": 1}, "dict key", "lone surrogate"),
    ({"tags": {1, "\ud800"}}, '$["tags"] (a set element', "lone surrogate"),
    ({"when": datetime(2024, 1, 1, tzinfo=CustomZone())}, '$["when"]', "CustomZone"),
    ({"box": Box([1, object()])}, '$["box"].value[1]', "builtins.object"),
    ({'say "hi"': {1, 2, frozenset({b"", 3j})}}, '$["say \\"hi\\""]', "complex"),
]


def codecs() -> list[Codec]:
    """msgpack and JSON codecs that know `Box` (so its fields are walked) but not the rest."""
    return [MsgpackCodec(types=[Box]), JSONCodec(types=[Box])]


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
@pytest.mark.parametrize(("value", "path", "names"), OUTSIDE, ids=[p for _, p, _ in OUTSIDE])
def test_value_outside_domain_names_type_and_path(
    codec: Codec, value: Any, path: str, names: str
) -> None:
    """EncodeError's message holds the JSONPath-like location and the offending type."""
    with pytest.raises(EncodeError) as caught:
        codec.encode(value)
    assert path in str(caught.value)
    assert names in str(caught.value)
    assert isinstance(caught.value, DoeffError)


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
def test_reference_cycle_is_an_encode_error(codec: Codec) -> None:
    """A list that contains itself is refused with a message about the cycle."""
    loop: list[object] = [1]
    loop.append({"again": loop})
    with pytest.raises(EncodeError, match="contains itself"):
        codec.encode(loop)


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
def test_too_deep_nesting_is_an_encode_error(codec: Codec) -> None:
    """A value nested beyond the library's limit is an EncodeError, not a RecursionError."""
    deep: list[object] = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(EncodeError):
        codec.encode(deep)


SMUGGLED = [bytearray(b"x"), memoryview(b"x"), msgpack.ExtType(12, b""), msgpack.Timestamp(1)]


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
@pytest.mark.parametrize("bad", SMUGGLED, ids=lambda v: type(v).__name__)
def test_types_the_packer_would_write_silently_are_refused(codec: Codec, bad: object) -> None:
    """bytearray, memoryview and raw msgpack extensions are refused wherever they sit (msgpack's
    C packer writes them before any hook sees them), never read back as something else."""
    places: list[tuple[object, str]] = [
        (bad, "$"),
        ({"rows": [1, {"k": bad}]}, '$["rows"][1]["k"]'),
        ((1, [bad]), "$[1][0]"),
        ({frozenset({1}): {2: [bad]}}, "$[frozenset({1})][2][0]"),
        (Box([{"deep": bad}]), '$.value[0]["deep"]'),
    ]
    for value, path in places:
        with pytest.raises(EncodeError) as caught:
            codec.encode(value)
        assert path in str(caught.value) and type(bad).__name__ in str(caught.value), value


def test_pickle_encode_error_names_the_type() -> None:
    """PickleCodec turns pickle's failure into an EncodeError naming the type."""
    with pytest.raises(EncodeError, match="function"):
        PickleCodec().encode(lambda: None)


def test_registering_a_plain_class_is_refused() -> None:
    """Only dataclasses and Enums can be registered."""
    with pytest.raises(RegistrationError, match="not a dataclass, attrs class, NamedTuple, Enum"):
        MsgpackCodec(types=[MyStr])


class NeedsTwo(Exception):
    """An exception whose __init__ takes two arguments but passes one message on: pickle writes
    it, and unpickling it fails forever after."""

    def __init__(self, key: str, cause: str) -> None:
        super().__init__(f"{key}: {cause}")
        self.key = key


class Reduces(NeedsTwo):
    """The same exception, made picklable with __reduce__."""

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.key, "again")


@pytest.mark.parametrize("codec", [PickleCodec(), CloudpickleCodec()], ids=lambda c: c.tag)
def test_pickle_refuses_exceptions_it_could_not_read_back(codec: Codec) -> None:
    """Writing checks each exception can be rebuilt; one that cannot is an EncodeError naming
    the class and the fix, instead of a record that fails on every later read."""
    with pytest.raises(EncodeError, match=r"NeedsTwo would be stored but could never be read"):
        codec.encode({"result": [NeedsTwo("k", "boom")]})
    back = codec.decode(codec.encode([ValueError("x"), Reduces("k", "c")]))
    assert isinstance(back, list) and isinstance(back[1], Reduces) and back[1].key == "k"
