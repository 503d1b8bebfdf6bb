"""Structural views: what a record holds, read without the classes (or libraries) that wrote it.

A registry given ``unknown=view`` turns each ``(name, state)`` it cannot rebuild into a view
instead of raising: a record (dataclass, attrs, pydantic, NamedTuple) becomes a `RecordView`
shown as ``name(field=value, ...)``; a numpy array an `ArrayView` (dtype, shape and its first
values, read from the raw bytes without numpy); anything else a `RecordView` of its state.
The ``doeff`` command uses these to show stores of applications it cannot import.
"""

from __future__ import annotations

import dataclasses
import keyword
import math
import struct
from typing import Any

from doeff.serde.blob import blob_data

# How many leading values an array view shows.
SHOWN_VALUES = 6
# numpy dtype kind + item size -> struct format, for the values an ArrayView can read by itself.
_FORMATS = {("b", 1): "?", ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
            ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
            ("f", 2): "e", ("f", 4): "f", ("f", 8): "d"}


@dataclasses.dataclass(frozen=True)
class ArrayView:
    """A numpy array as a record describes it: dtype, shape, and its first values (in memory
    order) when the dtype is a plain number or bool."""

    dtype: str
    shape: tuple[int, ...]
    values: list[object] | None

    def __repr__(self) -> str:
        shown = ""
        if self.values is not None:
            more = ", ..." if len(self.values) < math.prod(self.shape) else ""
            shown = f", values=[{', '.join(map(repr, self.values))}{more}]"
        return f"ndarray(dtype={self.dtype}, shape={self.shape}{shown})"


@dataclasses.dataclass(frozen=True)
class RecordView:
    """A value of a type this process does not know: its wire name and its state as written."""

    name: str
    state: Any

    def __repr__(self) -> str:
        if type(self.state) is dict:
            inner = ", ".join(f"{_label(k)}={v!r}" for k, v in self.state.items())
        else:
            inner = repr(self.state)
        return f"{_label(self.name)}({inner})"


def _label(text: object) -> str:
    """A name or field read from a record, as shown: itself when it is plain printable text, its
    repr (escapes visible) otherwise, so a record cannot add lines to what a reader prints."""
    return text if type(text) is str and text.isprintable() else repr(text)


# Record views with identifier fields are instances of a dataclass made for their name and
# fields, so pprint lays them out like the dataclass they stand for; one class per shape.
_classes: dict[tuple[str, tuple[str, ...]], type] = {}


def view(name: str, state: Any) -> object:
    """The view of a value of type `name` with `state` (see the module docstring)."""
    if name in ("numpy.ndarray", "numpy.scalar"):
        array = _array_view(name, state)
        if array is not None:
            return array
    if type(state) is dict and state and all(
            type(k) is str and k.isidentifier() and not keyword.iskeyword(k) for k in state):
        fields = tuple(state)
        cls = _classes.get((name, fields))
        if cls is None:
            cls = dataclasses.make_dataclass(name.rpartition(".")[2] or name, fields,
                                             frozen=True)
            cls.__name__ = cls.__qualname__ = _label(name)  # in full: module.Class(...)
            cls.__doeff_view__ = name  # type: ignore[attr-defined]
            _classes[name, fields] = cls
        return cls(**state)
    return RecordView(name, state)


def view_name(value: object) -> str | None:
    """The wire name a view stands for, or None if `value` is not a view."""
    if isinstance(value, RecordView):
        return value.name
    name = getattr(type(value), "__doeff_view__", None)
    return name if isinstance(name, str) else None


def _array_view(name: str, state: Any) -> ArrayView | None:
    """The view of a numpy array or scalar state, or None if it is malformed."""
    try:
        if name == "numpy.scalar":
            descr, data = state
            shape: tuple[int, ...] = ()
        else:
            descr, shape_list, _, data = state
            shape = tuple(shape_list)
        raw = blob_data(data)
    except Exception:
        return None
    values = None
    if type(descr) is str and len(descr) >= 3 and descr[0] in "<>|=":
        fmt = _FORMATS.get((descr[1], int(descr[2:]) if descr[2:].isdigit() else 0))
        if fmt is not None:
            order = ">" if descr[0] == ">" else "<"
            size = struct.calcsize(order + fmt)
            count = min(SHOWN_VALUES, raw.nbytes // size)
            values = list(struct.unpack_from(f"{order}{count}{fmt}", raw))
    return ArrayView(_dtype_name(descr), shape, values)


def _dtype_name(descr: object) -> str:
    """numpy's own name for a simple dtype description (``<f8`` -> ``float64``), else as given."""
    if type(descr) is not str or len(descr) < 3:
        return repr(descr)
    names = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex"}
    kind, size = descr[1], descr[2:]
    if kind in names and size.isdigit():
        bits = "" if kind == "b" else str(8 * int(size))
        return names[kind] + bits + (" (big-endian)" if descr[0] == ">" else "")
    return descr
