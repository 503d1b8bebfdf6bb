"""Output formatting: keys, sizes, times, aligned tables and JSON, all deterministic."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import math
import pprint
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from doeff.cli.errors import one_line
from doeff.serde.view import ArrayView, RecordView, view_name

# Stored values may nest as deep as a codec writes (1024 levels); showing one recurses per level.
_DISPLAY_RECURSION = 20_000


def printable(text: str, keep: str = "") -> str:
    """`text` with every character a terminal could act on (controls, escapes, bidi overrides)
    written as its Python escape, except those in `keep` (e.g. line breaks of a multi-line
    value): text read from a store must not move the cursor or rewrite the screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def show_key(key: str) -> str:
    """`key` as typed in a shell, or its Python repr when it is empty or has odd characters."""
    if key and key.isprintable() and key.strip() == key and not key.startswith("'"):
        return key
    return repr(key)


def plural(n: int, word: str) -> str:
    """`1 record`, `2 records`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def show_size(n: int) -> str:
    """A byte count for people: `812 B`, `4.2 KiB`, `1.3 MiB`."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def show_time(ts: float | None) -> str:
    """A UNIX time as UTC `2024-05-01 12:00:03Z`, or `-` where the backend records none."""
    if ts is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # no calendar date: a damaged record's time
        return f"{ts!r} (not a date)"


def iso_time(ts: float | None) -> str | None:
    """A UNIX time as an ISO 8601 UTC string for JSON, or None."""
    if ts is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):  # as in show_time
        return f"{ts!r} (not a date)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """`rows` under `headers` in aligned columns; the columns in `right` are right-aligned."""
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        cols = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in cols).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def int_digits(n: int) -> int:
    """How many decimal digits `n` has, without converting it to decimal (which takes time
    quadratic in its size, and which Python refuses past 4300 digits)."""
    n = abs(n)
    if n.bit_length() < 10_000:
        return len(str(n))
    estimate = math.log10(n)  # within ~1e-9 of the truth at these sizes
    digits = math.floor(estimate) + 1
    if abs(estimate - round(estimate)) < 1e-6:  # near a power of ten: settle it exactly
        digits = round(estimate) + (n >= 10 ** round(estimate))
    return digits


def fits(n: int) -> bool:
    """Whether `n` converts to decimal under this process's int-digit limit."""
    limit = sys.get_int_max_str_digits()
    return limit == 0 or int_digits(n) <= limit


class HugeInt:
    """An int too long to print, shown by its digit count."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"{'-' if self.n < 0 else ''}<int of {int_digits(self.n)} digits>"


def _displayable(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """`value` with every part `leaf` replaces replaced, through containers and views."""
    kind = type(value)
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return kind(_displayable(v, leaf) for v in value)
    if kind is dict:
        return {_displayable(k, leaf): _displayable(v, leaf) for k, v in value.items()}
    if kind is RecordView:
        return RecordView(value.name, _displayable(value.state, leaf))
    if view_name(value) is not None:
        fields = {f.name: _displayable(getattr(value, f.name), leaf)
                  for f in dataclasses.fields(value)}
        return kind(**fields)
    return leaf(value)


@contextmanager
def _deep() -> Iterator[None]:
    """Room for formatting values nested as deep as the codecs write them."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _DISPLAY_RECURSION))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _show_leaf(value: Any) -> Any:
    if type(value) is int and not fits(value):
        return HugeInt(value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray) and type(value) is np.ndarray:
        flat = value.reshape(-1, order="A")[:6]
        shown = flat.tolist() if value.dtype.kind in "biufcb" else None
        return ArrayView(str(value.dtype), value.shape, shown)
    return value


def show_value(value: object) -> str:
    """`value` as Python's pretty-printer shows it, except: ints too long to print (past the
    4300-digit limit) by their digit count, numpy arrays by dtype, shape and first values."""
    with _deep():
        shown = _displayable(value, _show_leaf)
        try:
            return pprint.pformat(shown, sort_dicts=False)
        except RecursionError:
            pass
        except ValueError as exc:  # a huge int inside an object whose own repr prints it
            return f"<a {type(value).__qualname__} that cannot be shown: {exc}>"
        return repr(shown)


def jsonable(value: object) -> object:
    """`value` made of JSON types only, for display: tuples and sets become lists, others text.

    JSON has no tuple, set, bytes or datetime, so `--json` output is for reading, not a format
    to load back; the plain `get` output (Python's repr) keeps every type visible. An int too
    long to print becomes ``"<int of N digits>"``; a view of an unknown type
    ``{"type": name, "fields": {...}}`` (or ``"state"``), an array
    ``{"type": "numpy.ndarray", "dtype": ..., "shape": [...], "values": [...]}``.
    """
    with _deep():
        return _jsonable(_displayable(value, _show_leaf))


def _jsonable(value: object) -> object:
    if type(value) is HugeInt:
        return repr(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if type(value) is ArrayView:
        return {"type": "numpy.ndarray", "dtype": value.dtype, "shape": list(value.shape),
                "values": _jsonable(value.values)}
    if type(value) is RecordView:
        return {"type": value.name, "state": _jsonable(value.state)}
    name = view_name(value)
    if name is not None:
        assert dataclasses.is_dataclass(value) and not isinstance(value, type)
        return {"type": name, "fields": _jsonable(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})}
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # JSON has no NaN or infinity
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _jsonable(v) for k, v in value.items()}
        # JSON keys are strings: {1: .., "1": ..} would collide, so such a dict is shown as
        # its [key, value] pairs instead of losing an entry.
        return {"pairs": [[_jsonable(k), _jsonable(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)  # Decimal, UUID, timedelta, user types: their own text form


def print_json(value: object) -> None:
    """`value` (already JSON types) on stdout, indented, keys in the order given."""
    # ensure_ascii: a str holding a lone surrogate must come out as a \u escape, not as bytes
    # that are not UTF-8 (or a UnicodeEncodeError). Built whole, with room for values nested as
    # deep as the codecs write them, before anything is written: no half document on failure.
    with _deep():
        text = json.dumps(value, indent=2, ensure_ascii=True)
    sys.stdout.write(text + "\n")


def warn(message: str, stream: TextIO | None = None) -> None:
    """One line on stderr, prefixed `doeff: `."""
    print(f"doeff: {printable(one_line(message))}", file=stream or sys.stderr)
