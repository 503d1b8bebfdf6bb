"""Output formatting: keys, sizes, times, aligned tables and JSON, all deterministic."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from doeff.cli.errors import one_line


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
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso_time(ts: float | None) -> str | None:
    """A UNIX time as an ISO 8601 UTC string for JSON, or None."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """`rows` under `headers` in aligned columns; the columns in `right` are right-aligned."""
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        cols = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in cols).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def jsonable(value: object) -> object:
    """`value` made of JSON types only, for display: tuples and sets become lists, others text.

    JSON has no tuple, set, bytes or datetime, so `--json` output is for reading, not a format
    to load back; the plain `get` output (Python's repr) keeps every type visible.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # JSON has no NaN or infinity
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: jsonable(v) for k, v in value.items()}
        # JSON keys are strings: {1: .., "1": ..} would collide, so such a dict is shown as
        # its [key, value] pairs instead of losing an entry.
        return {"pairs": [[jsonable(k), jsonable(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)  # Decimal, UUID, timedelta, user types: their own text form


def print_json(value: object) -> None:
    """`value` (already JSON types) on stdout, indented, keys in the order given."""
    # ensure_ascii: a str holding a lone surrogate must come out as a \u escape, not as bytes
    # that are not UTF-8 (or a UnicodeEncodeError).
    json.dump(value, sys.stdout, indent=2, ensure_ascii=True)
    sys.stdout.write("\n")


def warn(message: str, stream: TextIO | None = None) -> None:
    """One line on stderr, prefixed `doeff: `."""
    print(f"doeff: {printable(one_line(message))}", file=stream or sys.stderr)
