"""pandas DataFrame, Series and Index through the msgpack and JSON codecs: exact round trips for
every dtype pandas ships (numpy, object, categorical, nullable, string, tz-aware, period,
interval, Arrow-backed), with every kind of index and column labels."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import hypothesis.extra.numpy as hnp
import hypothesis.extra.pandas as hpd
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from exact import same
from hypothesis import given
from hypothesis import strategies as st

from doeff.errors import DecodeError, EncodeError
from doeff.serde import Codec, JSONCodec, MsgpackCodec

ROOT = Path(__file__).resolve().parent.parent
CODECS: list[Codec] = [MsgpackCodec(), JSONCodec()]
ids = [c.tag for c in CODECS]

texts = st.text(max_size=4)
NUMPY_DTYPES = ["int64", "int8", "uint32", "float64", "float32", "bool", "complex128",
                "datetime64[ns]", "datetime64[s]", "timedelta64[us]", ">f8"]
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Paris"), dt.timezone(dt.timedelta(hours=-3))]


@st.composite
def column_arrays(draw: st.DrawFn, n: int, for_index: bool = False) -> Any:
    """A column of `n` values of one dtype, numpy or extension (`for_index`: one pandas accepts
    as an index level, which excludes big-endian data and tuples)."""
    kind = draw(st.sampled_from(["numpy", "object", "string", "masked", "categorical", "tz",
                                 "period", "interval", "arrow"]))
    if kind == "numpy":
        dtypes = NUMPY_DTYPES[:-1] if for_index else NUMPY_DTYPES
        return draw(hnp.arrays(np.dtype(draw(st.sampled_from(dtypes))), n))
    if kind == "object":
        items: st.SearchStrategy[object] = st.one_of(st.none(), texts, st.integers())
        if not for_index:
            items |= st.tuples(st.integers())
        array = np.empty(n, dtype=object)
        for i, item in enumerate(draw(st.lists(items, min_size=n, max_size=n))):
            array[i] = item  # one by one: numpy would read a list of tuples as a 2-D array
        return array
    if kind == "string":
        dtype = draw(st.sampled_from([pd.StringDtype("python"), pd.StringDtype("pyarrow"),
                                      pd.StringDtype("python", na_value=np.nan), "str"]))
        return pd.array(draw(st.lists(st.none() | texts, min_size=n, max_size=n)), dtype=dtype)
    if kind == "masked":
        dtype = draw(st.sampled_from(["Int64", "Int8", "UInt16", "Float32", "boolean"]))
        values = st.booleans() if dtype == "boolean" else st.integers(0, 100)
        return pd.array(draw(st.lists(st.none() | values, min_size=n, max_size=n)), dtype=dtype)
    if kind == "categorical":
        categories = draw(st.lists(texts, min_size=1, max_size=4, unique=True))
        codes = draw(st.lists(st.integers(-1, len(categories) - 1), min_size=n, max_size=n))
        return pd.Categorical.from_codes(codes, categories=categories, ordered=draw(st.booleans()))
    if kind == "tz":
        micros = draw(st.lists(st.integers(0, 2**50), min_size=n, max_size=n))
        stamps = np.array(micros, dtype="datetime64[us]")
        return pd.DatetimeIndex(stamps).tz_localize(draw(st.sampled_from(ZONES))).array
    if kind == "period":
        freq = draw(st.sampled_from(["M", "D", "Q"]))
        return pd.period_range("2024-01", periods=n, freq=freq).array
    if kind == "interval":
        closed = draw(st.sampled_from(["left", "right", "both"]))
        return pd.interval_range(0, n, periods=n, closed=closed).array if n else pd.array(
            pd.IntervalIndex.from_breaks([0], closed=closed))
    return pd.array(draw(st.lists(st.none() | st.integers(-5, 5), min_size=n, max_size=n)),
                    dtype=pd.ArrowDtype(draw(st.sampled_from([pa.int64(), pa.int8()]))))


@st.composite
def indexes(draw: st.DrawFn, n: int) -> Any:
    """An index of length `n`: range, numpy-typed, object, string, datetime with a frequency,
    categorical, or a MultiIndex."""
    kind = draw(st.sampled_from(["range", "values", "dates", "multi"]))
    name = draw(st.none() | texts)
    if kind == "range":
        start, step = draw(st.integers(-5, 5)), draw(st.integers(1, 3))
        return pd.RangeIndex(start, start + step * n, step, name=name)
    if kind == "dates":
        return pd.date_range("2024-01-01", periods=n, freq=draw(st.sampled_from(["D", "h"])),
                             name=name)
    if kind == "multi":
        return pd.MultiIndex.from_arrays(
            [draw(column_arrays(n, for_index=True)), draw(column_arrays(n, for_index=True))],
            names=[name, "second"])
    return pd.Index(draw(column_arrays(n, for_index=True)), name=name)


labels = st.one_of(texts, st.integers(), st.tuples(texts, st.integers()))


@st.composite
def frames(draw: st.DrawFn) -> Any:
    """A DataFrame with mixed column dtypes, any index, and str, int, mixed or repeated labels."""
    n = draw(st.integers(0, 5))
    width = draw(st.integers(0, 4))
    index = draw(indexes(n))
    # Series sharing the index (no realignment), object arrays kept as object: pandas would
    # otherwise turn an object array of str into its `str` dtype.
    columns = {}
    for i in range(width):
        values = draw(column_arrays(n))
        is_object = isinstance(values, np.ndarray) and values.dtype.kind == "O"
        columns[i] = pd.Series(values, index=index, dtype=object if is_object else None)
    frame = pd.DataFrame(columns, index=index)
    frame.columns = draw(st.lists(labels, min_size=width, max_size=width))
    if draw(st.booleans()):
        frame.attrs["source"] = draw(texts)
    return frame


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@given(frame=frames())
def test_data_frames_round_trip_exactly(codec: Codec, frame: Any) -> None:
    """Every column's dtype and values, the index, the column labels and .attrs come back."""
    assert same(frame, codec.decode(codec.encode(frame)))


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@given(frame=hpd.data_frames(hpd.columns(3, dtype=float), index=hpd.range_indexes(max_size=5)))
def test_hypothesis_data_frames_round_trip_exactly(codec: Codec, frame: Any) -> None:
    """Frames from hypothesis.extra.pandas (NaN, ±inf, -0.0 included) come back exactly."""
    assert same(frame, codec.decode(codec.encode(frame)))


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@given(data=st.data())
def test_series_and_indexes_round_trip_exactly(codec: Codec, data: st.DataObject) -> None:
    """A Series keeps its name, dtype and index; an Index its class, dtype, name and frequency."""
    n = data.draw(st.integers(0, 5))
    series = pd.Series(data.draw(column_arrays(n)), index=data.draw(indexes(n)),
                       name=data.draw(st.none() | labels))
    index = data.draw(indexes(n))
    value = {"s": series, "i": index, "h": data.draw(hpd.indexes(dtype=int, max_size=4))}
    assert same(value, codec.decode(codec.encode(value)))


def test_wide_mixed_frame_keeps_each_column() -> None:
    """One frame with a column of every kind at once, repeated labels included."""
    n = 3
    frame = pd.DataFrame({
        "i": np.arange(n), "f": np.array([1.5, np.nan, -0.0]), "b": [True, False, True],
        "s": ["x", None, "z"], "o": pd.Series([1, "a", None], dtype=object),
        "os": pd.Series(["x", None, "z"], dtype=object),
        "c": pd.Categorical(["a", "b", "a"], ordered=True),
        "n": pd.array([1, None, 3], dtype="Int64"),
        "t": pd.date_range("2024-03-31", periods=n, tz="Europe/Paris"),
        "p": pd.period_range("2024-01", periods=n, freq="M"),
        "v": pd.interval_range(0, n),
        "a": pd.array([[1], None, [2, 3]], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
    }, index=pd.MultiIndex.from_tuples([("a", 1), ("a", 1), ("b", 2)], names=["k", None]))
    frame.columns = ["i", "f", "b", "s", "o", "os", "c", "n", "t", "p", "v", "i"]
    for codec in CODECS:
        assert same(frame, codec.decode(codec.encode(frame))), codec.tag


@pytest.mark.parametrize("codec", CODECS, ids=ids)
def test_values_without_an_exact_form_are_refused(codec: Codec) -> None:
    """Sparse columns, and object columns holding values outside the domain, are EncodeErrors."""
    with pytest.raises(EncodeError, match="Sparse"):
        codec.encode(pd.Series(pd.arrays.SparseArray([0, 1])))
    with pytest.raises(EncodeError, match=r"\$\.data\[0\]\[1\]\[0\].*object"):
        codec.encode(pd.DataFrame({"o": pd.Series([object()], dtype=object)}))


def test_numeric_columns_travel_as_raw_arrays() -> None:
    """A float column is written as its raw bytes apart from the record's body, not as values."""
    frame = pd.DataFrame({"x": np.arange(100_000, dtype=np.float64)})
    data = MsgpackCodec().encode(frame)
    assert len(data) < 100_000 * 8 + 1_000
    assert np.arange(100_000, dtype=np.float64).tobytes() in data


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@pytest.mark.parametrize("dtype", [pd.StringDtype("python"), pd.StringDtype("pyarrow"),
                                   pd.StringDtype("python", na_value=np.nan), "str"], ids=repr)
def test_long_string_columns_round_trip_through_arrow(codec: Codec, dtype: Any) -> None:
    """String columns of 1,000 values or more travel as Arrow; every string dtype survives."""
    values = pd.array([None if i % 7 == 0 else f"s{i}" for i in range(1500)], dtype=dtype)
    frame = pd.DataFrame({"s": values}, index=pd.Index(values, name="by"))
    assert same(frame, codec.decode(codec.encode(frame)))


def test_without_pyarrow_strings_still_travel_and_arrow_columns_name_the_extra() -> None:
    """With pyarrow absent (a documented fallback), numpy, object, categorical and string
    columns of any length still round-trip; a nullable Int64 column asks for doeff[pandas]."""
    script = textwrap.dedent("""
        import sys
        sys.modules["pyarrow"] = None  # as if it were not installed
        import numpy as np, pandas as pd
        from doeff.errors import EncodeError
        from doeff.serde import MsgpackCodec
        codec = MsgpackCodec()
        frame = pd.DataFrame({"s": [f"v{i}" for i in range(2000)], "x": np.arange(2000.0),
                              "c": pd.Categorical(["a", "b"] * 1000)})
        back = codec.decode(codec.encode(frame))
        pd.testing.assert_frame_equal(frame, back, check_exact=True)
        print(frame["s"].dtype.storage, back["s"].dtype == frame["s"].dtype)
        try:
            codec.encode(pd.Series(pd.array([1, None], dtype="Int64")))
        except EncodeError as exc:
            print("refused", "doeff[pandas]" in str(exc))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["python True", "refused True"]


def _crafted(name: str, state: object) -> bytes:
    """A msgpack record claiming to be the pandas type `name` with an arbitrary `state`, as a
    writer of the store (not doeff) could plant it: written under a look-alike name of the same
    length, then renamed in the bytes."""
    writer = MsgpackCodec()
    look_alike = name[:-1] + ("q" if name[-1] != "q" else "r")

    class Planted:
        pass

    writer.register(Planted, name=look_alike, encode=lambda _: state, decode=lambda s: s)
    data = writer.encode(Planted())
    assert data.count(look_alike.encode()) == 1
    return data.replace(look_alike.encode(), name.encode())


def test_a_multiindex_with_codes_outside_its_levels_is_refused() -> None:
    """Codes pointing past a level would make pandas read outside its arrays (a crash on first
    use): such a record is a DecodeError when read."""
    state = ["multi", [pd.Index([1, 2]), pd.Index(["a", "b"])],
             [np.array([0, 1]), np.array([1, 50_000_000])], [None, None]]
    with pytest.raises(DecodeError):
        MsgpackCodec().decode(_crafted("pandas.Index", state))


def test_an_arrow_stream_with_offsets_past_its_data_is_refused() -> None:
    """A string column whose offsets point past its data buffer (which pyarrow's reader only
    finds with a full validation) is a DecodeError, not a crash when the values are read."""
    table = pa.Table.from_arrays([pa.array(["hello", "world!"], pa.string())], names=["0"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    stream = sink.getvalue().to_pybytes()
    offsets = np.array([0, 5, 11], np.int32).tobytes()
    assert stream.count(offsets) == 1
    stream = stream.replace(offsets, np.array([0, 1 << 30, 11], np.int32).tobytes())
    state = {"values": ["arrow", 0, ["string", "pyarrow", False]],
             "index": pd.RangeIndex(0, 2), "name": None, "arrow": stream}
    with pytest.raises(DecodeError):
        MsgpackCodec().decode(_crafted("pandas.Series", state))


_BYTES = st.sampled_from([b"a", b"Z", b" ", b"\x00", b"\x7f", b"\xc3\xa9", b"\xc3", b"\xa9",
                          b"\xff", b"\x80", b"\xe2\x82\xac"])


@given(large=st.booleans(), data=st.data())
def test_arrow_string_checks_accept_exactly_what_full_validation_accepts(
        large: bool, data: st.DataObject) -> None:
    """The bulk check of ASCII string columns (`_validate`) refuses exactly the string arrays
    Arrow's full validation refuses: offsets falling, negative or past the data, invalid UTF-8,
    for any length, slice offset, nulls and mix of ASCII and other bytes."""
    from doeff.serde.ext.pandas import _validate

    n = data.draw(st.integers(0, 6), label="length")
    start = data.draw(st.integers(0, 2), label="slice offset")
    bounds = st.lists(st.integers(-2, 24), min_size=n + start + 1, max_size=n + start + 1)
    offsets = data.draw(st.one_of(bounds.map(sorted), bounds), label="offsets")
    chars = b"".join(data.draw(st.lists(_BYTES, max_size=12), label="chars"))
    valid = data.draw(st.none() | st.integers(0, 255), label="validity")
    width = np.int64 if large else np.int32
    buffers = [None if valid is None else pa.py_buffer(bytes([valid, 255])),
               pa.py_buffer(np.array(offsets, width).tobytes()), pa.py_buffer(chars)]
    try:
        array = pa.Array.from_buffers(pa.large_string() if large else pa.string(), n, buffers,
                                      offset=start)
        array.validate()
    except (pa.ArrowInvalid, ValueError):
        return  # structurally unsound: both checks refuse it at the structural step
    table = pa.Table.from_arrays([array], names=["0"])
    try:
        array.validate(full=True)
        expected = True
    except pa.ArrowInvalid:
        expected = False
    try:
        _validate(table, pa)
        accepted = True
    except pa.ArrowInvalid:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize("change", ["falling offsets", "invalid utf-8", "non-ascii"])
def test_crafted_arrow_string_columns_are_refused_or_read_exactly(change: str) -> None:
    """A record whose long string column has falling offsets or invalid UTF-8 (same sizes as the
    real one, changed in the record's bytes) is a DecodeError; valid non-ASCII text (the full
    check's path) is read exactly."""
    values = [f"customer {i:04d}" for i in range(2000)]
    codec = MsgpackCodec()
    record = codec.encode(pd.Series(values, dtype="str"))
    if change == "falling offsets":
        offsets = pa.array(values, pa.large_string()).buffers()[1].to_pybytes()
        assert record.count(offsets[8:24]) == 1
        falling = np.array([13, 12], np.int64).tobytes()  # offsets 1 and 2 swapped downwards
        record = record.replace(offsets[8:24], falling)
    else:
        new = "\udcff".encode("utf-8", "surrogatepass")[:2] if change == "invalid utf-8" else \
            "é".encode()
        assert record.count(b"customer 1999") == 1 and len(new) == 2
        record = record.replace(b"customer 1999", b"customer 19" + new)
    if change == "non-ascii":
        back: Any = codec.decode(record)
        assert back.iloc[-1] == "customer 19é" and back.iloc[:-1].tolist() == values[:-1]
    else:
        with pytest.raises(DecodeError):
            codec.decode(record)
