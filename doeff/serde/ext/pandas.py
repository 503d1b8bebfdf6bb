"""pandas `DataFrame`, `Series` and `Index` (every kind pandas defines), carried exactly.

Each column (and an Index's values) is written by its dtype:

- a numpy dtype: the numpy array itself (`doeff.serde.ext.numpy`: raw data, copied once);
- ``object``: ``["object", [values...]]``, each value encoded by the codec (so it must be in the
  domain: str, None, Decimal, a registered type...);
- categorical: ``["categorical", codes, categories, ordered]``, the categories an Index;
- ``string``/``str`` with fewer than 1,000 values, or any length when pyarrow is not installed:
  ``["strings", [str or None...], storage, na_is_nan]``;
- any other pandas extension dtype (nullable ``Int64``/``boolean``/``Float64``, longer strings,
  datetime with a time zone, period, interval, ``ArrowDtype``): ``["arrow", column, dtype]``, the
  values as a column of one Arrow IPC stream per frame, series or index, rebuilt with the dtype's
  own ``__from_arrow__``. This needs pyarrow (``doeff[pandas]``); without it such a column is an
  `EncodeError` naming the extra. Sparse arrays and other libraries' extension types are refused.

A frame is ``{"columns": Index, "index": Index, "data": [columns], "arrow": stream}``, a series
``{"values": column, "index": Index, "name": name, "arrow": stream}`` (``"attrs"`` added when
``.attrs`` is not empty). An Index is ``["range", start, stop, step, name]``, ``["multi", levels,
codes, names]``, or ``["values", column, name, freq, stream]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from doeff.errors import DecodeError, EncodeError, install_hint
from doeff.serde.adapter import Adapter
from doeff.serde.blob import Blob, blob_data
from doeff.serde.temporal import zone_from_wire, zone_to_wire

FRAME, SERIES, INDEX = "pandas.DataFrame", "pandas.Series", "pandas.Index"


class _ArrowOut:
    """Extension-typed columns gathered for one Arrow IPC stream."""

    def __init__(self) -> None:
        self.arrays: list[Any] = []

    def add(self, array: Any) -> int:
        self.arrays.append(_pyarrow().array(array))  # via the array's __arrow_array__
        return len(self.arrays) - 1

    def blob(self) -> Blob | None:
        if not self.arrays:
            return None
        pa = _pyarrow()
        table = pa.Table.from_arrays(self.arrays, names=[str(i) for i in range(len(self.arrays))])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Blob(sink.getvalue())


class _ArrowIn:
    """The columns of one Arrow IPC stream, read on first use, in place: extension arrays that
    keep Arrow buffers (strings, ArrowDtype) refer to the record's bytes instead of a copy."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        self.table: Any = None

    def column(self, position: object) -> Any:
        if self.table is None:
            if self.stream is None:
                raise DecodeError("pandas record refers to an Arrow column but holds no stream")
            pa = _pyarrow(DecodeError)
            data = pa.py_buffer(blob_data(self.stream))
            table = pa.ipc.open_stream(data).read_all()
            _validate(table, pa)
            self.table = table
        if type(position) is not int or not 0 <= position < self.table.num_columns:
            raise DecodeError(f"pandas record refers to a missing Arrow column {position!r}")
        return self.table.column(position)


def _validate(table: Any, pa: Any) -> None:
    """`table.validate(full=True)`: offsets and lengths read later without bounds checks must
    be sound. A string column whose characters are all ASCII is checked in bulk instead of value
    by value (the full check's UTF-8 pass costs 4.5 ms per million values, this 0.6 ms); it
    passes exactly when the full check would, and any other column gets the full check."""
    table.validate()  # the structure: every buffer is as long as its array needs
    for column in table.columns:
        for chunk in column.chunks:
            if not _ascii_strings_sound(chunk, pa):
                chunk.validate(full=True)


def _ascii_strings_sound(chunk: Any, pa: Any) -> bool:
    """True if `chunk` (structurally valid) is a string array whose offsets rise from 0 or more
    to at most its data's size, over data of ASCII characters only, which every slice of is
    valid UTF-8: what the full check asks of it. False: leave it to the full check."""
    if chunk.type == pa.large_string():
        width: Any = np.int64
    elif chunk.type == pa.string():
        width = np.int32
    else:
        return False
    _, offsets_buffer, data = chunk.buffers()
    if not len(chunk) or offsets_buffer is None or data is None:
        return False
    size = np.dtype(width).itemsize
    offsets = np.frombuffer(offsets_buffer, dtype=width, count=len(chunk) + 1,
                            offset=chunk.offset * size)
    first, last = int(offsets[0]), int(offsets[-1])
    # (The structural check refuses such first and last offsets already; tested here too, so
    # the reads below stay in bounds on their own.)
    if first < 0 or last > data.size or not (offsets[1:] >= offsets[:-1]).all():
        return False
    chars = np.frombuffer(data, dtype=np.uint8, count=last - first, offset=first)
    return chars.size == 0 or int(chars.max()) < 0x80


def _pyarrow(error: type[Exception] = EncodeError) -> Any:
    """pyarrow, or `error` naming the extra that installs it."""
    try:
        import pyarrow  # type: ignore[import-untyped]
    except ImportError:
        raise error(
            "this pandas column has an extension dtype, which doeff stores through Arrow; "
            f"install pyarrow: {install_hint('pandas')}"
        ) from None
    return pyarrow


def _has_pyarrow() -> bool:
    try:
        _pyarrow()
    except EncodeError:
        return False
    return True


# Strings shorter than this go as a list: an Arrow stream costs more than it saves on a few.
_STRINGS_THROUGH_ARROW_FROM = 1000


# -- extension dtypes: what to write, and how to get the dtype back --------------------------------

def _dtype_wire(dtype: Any) -> list[object]:
    """How to rebuild extension `dtype`, or `EncodeError` for one doeff does not carry."""
    if isinstance(dtype, pd.StringDtype):
        return ["string", dtype.storage, dtype.na_value is not pd.NA]
    if isinstance(dtype, pd.core.dtypes.dtypes.BaseMaskedDtype):
        return ["masked", dtype.name]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ["datetimetz", dtype.unit, zone_to_wire(dtype.tz)]
    if isinstance(dtype, pd.PeriodDtype):
        return ["period", dtype.name]  # "period[Q-MAR]": periods spell frequencies their own way
    if isinstance(dtype, pd.IntervalDtype):
        return ["interval", str(dtype.subtype), dtype.closed]
    if isinstance(dtype, pd.ArrowDtype):
        return ["arrow"]
    raise EncodeError(
        f"pandas dtype {dtype} cannot be stored exactly (sparse and other libraries' extension "
        "dtypes are not supported); convert the column, e.g. with .astype(...)"
    )


def _dtype_read(wire: object, column: Any) -> Any:
    if type(wire) is not list or not wire:
        raise DecodeError(f"malformed pandas dtype {wire!r}")
    kind, *args = wire
    if kind == "string":
        return pd.StringDtype(args[0], na_value=np.nan if args[1] else pd.NA)
    if kind == "masked":
        return pd.api.types.pandas_dtype(args[0])
    if kind == "datetimetz":
        return pd.DatetimeTZDtype(unit=args[0], tz=zone_from_wire(args[1]))
    if kind == "period":
        return pd.api.types.pandas_dtype(args[0])
    if kind == "interval":
        return pd.IntervalDtype(args[0], closed=args[1])
    if kind == "arrow":
        return pd.ArrowDtype(column.type)
    raise DecodeError(f"unknown pandas dtype kind {kind!r}")


# -- columns ---------------------------------------------------------------------------------------

def _column(values: Any, dtype: Any, arrow: _ArrowOut) -> object:
    """One column (or an Index's values) as written (see the module docstring)."""
    if isinstance(dtype, np.dtype):
        array = np.asarray(values)
        if dtype.kind == "O":
            return ["object", array.tolist()]
        return array
    if isinstance(dtype, pd.CategoricalDtype):
        return ["categorical", np.asarray(values.codes), dtype.categories, dtype.ordered]
    if isinstance(dtype, pd.StringDtype) and (
            len(values) < _STRINGS_THROUGH_ARROW_FROM or not _has_pyarrow()):
        items = values.to_numpy(dtype=object, na_value=None).tolist()
        return ["strings", items, dtype.storage, dtype.na_value is not pd.NA]
    wire = _dtype_wire(dtype)
    return ["arrow", arrow.add(values), wire]


def _column_read(entry: object, arrow: _ArrowIn) -> tuple[Any, bool]:
    """The array a column entry describes, and whether it is of object dtype."""
    if type(entry) is np.ndarray:
        return entry, False
    if type(entry) is not list or not entry:
        raise DecodeError(f"malformed pandas column: a {type(entry).__name__}")
    kind = entry[0]
    if kind == "object" and len(entry) == 2 and type(entry[1]) is list:
        items = entry[1]
        return np.fromiter(iter(items), dtype=object, count=len(items)), True
    if kind == "strings" and len(entry) == 4 and type(entry[1]) is list:
        _, items, storage, nan = entry
        dtype = pd.StringDtype(storage, na_value=np.nan if nan else pd.NA)
        return pd.array(items, dtype=dtype), False
    if kind == "categorical" and len(entry) == 4:
        _, codes, categories, ordered = entry
        dtype = pd.CategoricalDtype(categories, ordered=ordered)
        return pd.Categorical.from_codes(codes, dtype=dtype), False
    if kind == "arrow" and len(entry) == 3:
        column = arrow.column(entry[1])
        return _dtype_read(entry[2], column).__from_arrow__(column), False
    raise DecodeError(f"malformed pandas column {kind!r}")


# -- Index -----------------------------------------------------------------------------------------

def reduce_index(index: Any) -> list[object]:
    if type(index) is pd.RangeIndex:
        return ["range", index.start, index.stop, index.step, index.name]
    if type(index) is pd.MultiIndex:
        return ["multi", list(index.levels), [np.asarray(c) for c in index.codes],
                list(index.names)]
    arrow = _ArrowOut()
    column = _column(index.array, index.dtype, arrow)
    freq = getattr(index, "freq", None)
    freqstr = None
    if freq is not None and not isinstance(index.dtype, pd.PeriodDtype):
        freqstr = freq.freqstr
        if pd.tseries.frequencies.to_offset(freqstr) != freq:
            raise EncodeError(f"the frequency {freq!r} of a pandas index cannot be stored exactly")
    return ["values", column, index.name, freqstr, arrow.blob()]


def rebuild_index(state: object) -> Any:
    if type(state) is not list or not state:
        raise DecodeError(f"malformed pandas Index state: a {type(state).__name__}")
    kind = state[0]
    if kind == "range" and len(state) == 5:
        return pd.RangeIndex(state[1], state[2], state[3], name=state[4])
    if kind == "multi" and len(state) == 4:
        # Checked: codes out of their levels' range would make pandas read outside its arrays.
        return pd.MultiIndex(levels=state[1], codes=state[2], names=state[3],
                             verify_integrity=True)
    if kind == "values" and len(state) == 5:
        _, column, name, freq, stream = state
        values, is_object = _column_read(column, _ArrowIn(stream))
        if freq is not None:
            cls = pd.DatetimeIndex if values.dtype.kind == "M" or isinstance(
                values.dtype, pd.DatetimeTZDtype) else pd.TimedeltaIndex
            return cls(values, name=name, freq=freq, copy=False)
        return pd.Index(values, name=name, dtype=object if is_object else None, copy=False)
    raise DecodeError(f"malformed pandas Index state {kind!r}")


# -- Series and DataFrame --------------------------------------------------------------------------

def reduce_series(series: Any) -> dict[str, object]:
    arrow = _ArrowOut()
    state: dict[str, object] = {
        "values": _column(series.array, series.dtype, arrow), "index": series.index,
        "name": series.name, "arrow": arrow.blob(),
    }
    if series.attrs:
        state["attrs"] = dict(series.attrs)
    return state


def _series(values: Any, is_object: bool, index: Any, name: object) -> Any:
    # An explicit dtype=object: pandas would otherwise turn an object array of str into `str`.
    return pd.Series(values, index=index, name=name, dtype=object if is_object else None,
                     copy=False)


def rebuild_series(state: object) -> Any:
    fields = _fields(state, ("values", "index", "name", "arrow"))
    values, is_object = _column_read(fields["values"], _ArrowIn(fields["arrow"]))
    series = _series(values, is_object, fields["index"], fields["name"])
    if "attrs" in fields:
        series.attrs = fields["attrs"]
    return series


def reduce_frame(frame: Any) -> dict[str, object]:
    arrow = _ArrowOut()
    data = [_column(column.array, column.dtype, arrow) for _, column in frame.items()]
    state: dict[str, object] = {
        "columns": frame.columns, "index": frame.index, "data": data, "arrow": arrow.blob(),
    }
    if frame.attrs:
        state["attrs"] = dict(frame.attrs)
    return state


def rebuild_frame(state: object) -> Any:
    fields = _fields(state, ("columns", "index", "data", "arrow"))
    arrow, index, data = _ArrowIn(fields["arrow"]), fields["index"], fields["data"]
    if type(data) is not list or len(data) != len(fields["columns"]):
        raise DecodeError("pandas frame record: its columns and its data do not match")
    columns = {}
    for i, entry in enumerate(data):
        values, is_object = _column_read(entry, arrow)
        # An object column as a Series of dtype object sharing the frame's index (so pandas
        # neither realigns it nor turns its str into the `str` dtype); others as they are.
        columns[i] = _series(values, True, index, None) if is_object else values
    frame = pd.DataFrame(columns, index=index, copy=False)
    frame.columns = fields["columns"]
    if "attrs" in fields:
        frame.attrs = fields["attrs"]
    return frame


def _fields(state: object, required: tuple[str, ...]) -> dict[str, Any]:
    if type(state) is not dict or not all(key in state for key in required):
        raise DecodeError(f"malformed pandas record: expected the fields {list(required)}")
    return state


_ADAPTERS = {
    FRAME: Adapter(pd.DataFrame, FRAME, reduce_frame, rebuild_frame),
    SERIES: Adapter(pd.Series, SERIES, reduce_series, rebuild_series),
    INDEX: Adapter(pd.Index, INDEX, reduce_index, rebuild_index),
}


def adapter_for(cls: type) -> Adapter | None:
    """The adapter for values of exactly `cls`: DataFrame, Series, or any pandas Index class."""
    if cls is pd.DataFrame:
        return _ADAPTERS[FRAME]
    if cls is pd.Series:
        return _ADAPTERS[SERIES]
    if issubclass(cls, pd.Index) and cls.__module__.partition(".")[0] == "pandas":
        return _ADAPTERS[INDEX]
    return None


def adapter_named(name: str) -> Adapter:
    """The adapter that reads records named `name` (one of this module's names)."""
    return _ADAPTERS[name]
