"""Registering user dataclasses and Enums: names on the wire, conflicts, and changed classes."""

from __future__ import annotations

import dataclasses
import enum

import pytest

from doeff.errors import DecodeError, EncodeError, RegistrationError
from doeff.serde import JSONCodec, MsgpackCodec, TypeRegistry


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """A frozen, slotted dataclass."""

    x: int
    y: int


@dataclasses.dataclass
class Counted:
    """A dataclass whose __post_init__ must not run again on decode."""

    n: int
    runs: int = 0

    def __post_init__(self) -> None:
        self.runs += 1


class Color(enum.Enum):
    """Members are written by name."""

    RED = 1
    GREEN = 2


@pytest.mark.parametrize("make", [MsgpackCodec, JSONCodec])
def test_registered_type_uses_its_wire_name(make: type[MsgpackCodec] | type[JSONCodec]) -> None:
    """A type registered under a custom name is written with that name, never pickled."""
    codec = make()
    codec.register(Point, name="geo.Point")
    data = codec.encode([Point(1, 2)])
    assert b"geo.Point" in data and b"test_serde_types" not in data
    assert codec.decode(data) == [Point(1, 2)]


@pytest.mark.parametrize("make", [MsgpackCodec, JSONCodec])
def test_decode_restores_state_without_running_init(
    make: type[MsgpackCodec] | type[JSONCodec],
) -> None:
    """Decoding restores fields as written instead of calling __init__/__post_init__ again."""
    codec = make(types=[Counted])
    back = codec.decode(codec.encode(Counted(5)))
    assert isinstance(back, Counted) and back.runs == 1


@pytest.mark.parametrize("make", [MsgpackCodec, JSONCodec])
def test_enum_is_read_by_member_name(make: type[MsgpackCodec] | type[JSONCodec]) -> None:
    """An Enum member is written by name, so a reader whose values changed still finds it."""
    codec = make(types=[Color])
    data = codec.encode(Color.GREEN)
    assert b"GREEN" in data

    class Renumbered(enum.Enum):
        RED = 10
        GREEN = 20

    reader = make()
    reader.register(Renumbered, name=f"{__name__}.Color")
    assert reader.decode(data) is Renumbered.GREEN


@pytest.mark.parametrize("make", [MsgpackCodec, JSONCodec])
def test_changed_dataclass_fields_give_a_decode_error(
    make: type[MsgpackCodec] | type[JSONCodec],
) -> None:
    """A record written before a class gained a field names both field lists on decode."""
    data = make(types=[Point]).encode(Point(1, 2))

    @dataclasses.dataclass
    class Point3:
        x: int
        y: int
        z: int

    reader = make()
    reader.register(Point3, name=f"{__name__}.Point")
    with pytest.raises(DecodeError, match=r"\['x', 'y'\].*\['x', 'y', 'z'\]"):
        reader.decode(data)


def test_conflicting_registrations_are_refused() -> None:
    """One name cannot mean two classes, and one class cannot have two names."""
    types = TypeRegistry([Point])
    types.register(Point)  # the same pair again is fine
    with pytest.raises(RegistrationError, match="already bound"):
        types.register(Color, name=f"{__name__}.Point")
    with pytest.raises(RegistrationError, match="already registered"):
        types.register(Point, name="other.Point")


def test_subclass_of_registered_type_is_not_carried() -> None:
    """Registration is by exact type: a subclass would come back as something else."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Point2(Point):
        pass

    with pytest.raises(EncodeError, match="Point2"):
        MsgpackCodec(types=[Point]).encode(Point2(1, 2))
