"""Exact wire forms for `datetime`, `date`, `time`, `timedelta` and their time zones.

Both the msgpack and JSON codecs write these forms, so a value means the same in either format.
A datetime or time is written as its ISO string when that string alone rebuilds it exactly (no
tzinfo or a nameless whole-minute offset, and ``fold == 0``); otherwise as
``[naive_iso, zone, fold]``, where ``zone`` is ``None``, ``[offset_microseconds, name]`` for a
named `datetime.timezone`, or the key of a `zoneinfo.ZoneInfo`. Any other tzinfo is refused: it
cannot be rebuilt exactly.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from doeff.errors import DecodeError, EncodeError

_Clock = TypeVar("_Clock", datetime, time)

_MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)


def zone_to_wire(tz: tzinfo | None) -> Any:
    """The wire form of a tzinfo, or `EncodeError` for one that cannot be rebuilt exactly."""
    if tz is None:
        return None
    if type(tz) is timezone:
        # __getinitargs__ tells a name given at construction from the generated "UTC+01:00".
        args = tz.__getinitargs__()  # type: ignore[attr-defined]
        return [args[0] // _MICROSECOND, args[1] if len(args) > 1 else None]
    if type(tz) is ZoneInfo and tz.key is not None:
        return tz.key
    raise EncodeError(
        f"tzinfo of type {type(tz).__module__}.{type(tz).__qualname__} cannot be rebuilt exactly; "
        "use datetime.timezone or zoneinfo.ZoneInfo(key)"
    )


def zone_from_wire(wire: Any) -> tzinfo | None:
    """Rebuild a tzinfo from `zone_to_wire`'s form."""
    if wire is None:
        return None
    if type(wire) is str:
        try:
            return ZoneInfo(wire)
        except Exception as exc:
            raise DecodeError(f"time zone {wire!r} is not available here: {exc}") from exc
    offset, name = wire
    delta = timedelta(microseconds=offset)
    return timezone(delta) if name is None else timezone(delta, name)


def _iso_is_exact(tz: tzinfo | None, fold: int) -> bool:
    """Whether `isoformat()` alone rebuilds the value exactly.

    fromisoformat drops a timezone's name and misreads offsets between -1 minute and 0 that
    have seconds (``-00:00:00.999993`` comes back positive), so only nameless whole-minute
    offsets qualify.
    """
    if fold != 0:
        return False
    if tz is None:
        return True
    if type(tz) is not timezone:
        return False
    args = tz.__getinitargs__()  # type: ignore[attr-defined]
    return len(args) == 1 and not args[0] % _MINUTE


def clock_to_wire(value: datetime | time) -> Any:
    """A datetime or time as an ISO string, or ``[naive_iso, zone, fold]`` when the string is
    not enough."""
    tz = value.tzinfo
    if _iso_is_exact(tz, value.fold):
        return value.isoformat()
    return [value.replace(tzinfo=None, fold=0).isoformat(), zone_to_wire(tz), value.fold]


def _clock_from_wire(kind: type[_Clock], wire: Any) -> _Clock:
    """Rebuild a `kind` (datetime or time) from `clock_to_wire`'s form."""
    if type(wire) is str:
        return kind.fromisoformat(wire)
    naive, zone, fold = wire
    return kind.fromisoformat(naive).replace(tzinfo=zone_from_wire(zone), fold=fold)


datetime_to_wire = time_to_wire = clock_to_wire


def datetime_from_wire(wire: Any) -> datetime:
    """Rebuild a datetime from `datetime_to_wire`'s form."""
    return _clock_from_wire(datetime, wire)


def time_from_wire(wire: Any) -> time:
    """Rebuild a time from `time_to_wire`'s form."""
    return _clock_from_wire(time, wire)


def date_to_wire(value: date) -> str:
    """A date as ``YYYY-MM-DD``."""
    return value.isoformat()


def date_from_wire(wire: Any) -> date:
    """Rebuild a date from its ISO string."""
    if type(wire) is not str:
        raise DecodeError(f"a date must be written as a str, found {type(wire).__name__}")
    return date.fromisoformat(wire)


def timedelta_to_wire(value: timedelta) -> list[int]:
    """A timedelta as its normalised ``[days, seconds, microseconds]``."""
    return [value.days, value.seconds, value.microseconds]


def timedelta_from_wire(wire: Any) -> timedelta:
    """Rebuild a timedelta from ``[days, seconds, microseconds]``."""
    days, seconds, microseconds = wire
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)
