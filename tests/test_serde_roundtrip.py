"""Round trips over each codec's whole domain, plus the helpers other serde tests share."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doeff.serde import (
    CloudpickleCodec,
    Codec,
    JSONCodec,
    MsgpackCodec,
    PickleCodec,
)


class Color(enum.Enum):
    """A plain Enum."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    """An int-mixin Enum: equal to ints, so a lossy codec would hide the change."""

    LOW = 1
    HIGH = 2


class Perm(enum.IntFlag):
    """A Flag whose combined members have no single name."""

    R = 4
    W = 2
    X = 1


@dataclass(frozen=True)
class Box:
    """A registered dataclass holding any domain value."""

    value: Any
    label: str = "box"
    tags: tuple[str, ...] = field(default=())


USER_TYPES = [Color, Level, Perm, Box]


def make_codecs() -> list[Codec]:
    """One instance of every built-in codec, msgpack and JSON knowing the test's user types."""
    return [MsgpackCodec(types=USER_TYPES), JSONCodec(types=USER_TYPES), PickleCodec(),
            CloudpickleCodec()]


def same(a: object, b: object) -> bool:
    """Equal values with identical types all the way down (NaN equals NaN, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        assert isinstance(b, Decimal)
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, (datetime, time)):
        return repr(a) == repr(b)  # includes tzinfo (name, key) and fold, which == ignores
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (set, frozenset)):
        assert isinstance(b, (set, frozenset))
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, Box):
        assert isinstance(b, Box)
        return same(a.value, b.value) and same(a.label, b.label) and same(a.tags, b.tags)
    return a == b


ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Paris"), ZoneInfo("America/St_Johns")]
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=59),
                        max_value=timedelta(hours=23, minutes=59))
tzinfos = st.one_of(
    st.none(),
    st.just(UTC),
    st.builds(timezone, offsets),
    st.builds(timezone, offsets, st.text(min_size=1, max_size=5)),
    st.sampled_from(ZONES),
)


def _with_fold(value: Any, fold: int) -> Any:
    return value.replace(fold=fold)


hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.builds(_with_fold, st.datetimes(timezones=tzinfos), st.integers(0, 1)),
    st.dates(),
    st.builds(_with_fold, st.times(timezones=tzinfos), st.integers(0, 1)),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.sampled_from(Color),
    st.sampled_from(Level),
    st.builds(Perm, st.integers(0, 7)),
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)
    ),
    max_leaves=6,
)
leaves = st.one_of(
    hashable_leaves,
    st.floats(),  # NaN and ±inf included
    st.decimals(),  # NaN, sNaN and ±Infinity included
    st.just(float("nan")),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
        st.dictionaries(st.sampled_from(["$tuple", "$esc", "$", "$x"]), inner, max_size=1),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.builds(Box, inner, st.text(max_size=4), st.lists(st.text(max_size=3)).map(tuple)),
    ),
    max_leaves=16,
)


@pytest.mark.parametrize("codec", make_codecs(), ids=lambda c: c.tag)
@given(value=values)
def test_round_trip_is_exact_over_the_domain(codec: Codec, value: object) -> None:
    """decode(encode(x)) equals x with the same types at every level, for every codec."""
    assert same(codec.decode(codec.encode(value)), value)


@pytest.mark.parametrize("codec", make_codecs()[:2], ids=lambda c: c.tag)
@given(value=values)
def test_encoding_is_stable_within_a_process(codec: Codec, value: object) -> None:
    """Encoding a value twice, or its decoded copy, gives the same bytes."""
    data = codec.encode(value)
    assert codec.encode(value) == data
    assert codec.encode(codec.decode(data)) == data


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


@given(value=values)
def test_json_output_is_standard_json_that_survives_a_rewrite(value: object) -> None:
    """What JSONCodec writes is strict JSON (no NaN or Infinity literals): the standard library
    parses it, and rewritten by the standard library it still decodes to the same value."""
    codec = JSONCodec(types=USER_TYPES)
    parsed = json.loads(codec.encode(value), parse_constant=_reject_constant)
    assert same(codec.decode(json.dumps(parsed).encode()), value)


@given(value=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.lists(inner) | st.dictionaries(st.text().filter(lambda k: k[:1] != "$"),
                                                    inner),
    max_leaves=20,
))
def test_plain_json_values_are_written_plainly(value: object) -> None:
    """A value JSON already holds exactly is written as orjson itself writes it."""
    assert JSONCodec().encode(value) == orjson.dumps(value)


def test_json_tags_are_readable_and_user_keys_are_escaped() -> None:
    """Non-JSON types use one-key `$` objects, and a user key that looks like a tag is escaped."""
    codec = JSONCodec()
    assert json.loads(codec.encode((1, 2))) == {"$tuple": [1, 2]}
    assert json.loads(codec.encode(float("-inf"))) == {"$float": "-inf"}
    assert json.loads(codec.encode(UUID(int=1))) == {"$uuid": str(UUID(int=1))}
    assert json.loads(codec.encode({"$tuple": [1]})) == {"$esc": {"$tuple": [1]}}
    assert codec.decode(codec.encode({"$tuple": [1]})) == {"$tuple": [1]}


@pytest.mark.parametrize("codec", make_codecs()[:2], ids=lambda c: c.tag)
def test_special_values_keep_their_identity(codec: Codec) -> None:
    """Values lossy codecs commonly change come back unchanged."""
    samples: list[object] = [
        True, 1, 2**64, -(2**63) - 1, 10**5000, -0.0, float("inf"), Decimal("-0.00E+3"),
        Decimal("sNaN7"), (), [()], {1: "a", (1, 2): "b", frozenset(): "c"}, {float("nan")},
        datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Paris"), fold=1),
        time(23, 59, 59, 999999, tzinfo=timezone(timedelta(seconds=-1, microseconds=7))),
        Level.HIGH, Perm.R | Perm.W, Box(Box((1,))), "\x00\u2028\U0001f600",
    ]
    for value in samples:
        assert same(codec.decode(codec.encode(value)), value), value
