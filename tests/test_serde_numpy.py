"""numpy arrays and scalars through the msgpack and JSON codecs: exact round trips, one copy on
decode, and malformed records refused."""

from __future__ import annotations

import dataclasses
import tracemalloc
import warnings
from typing import Any

import hypothesis.extra.numpy as hnp
import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest
from exact import same
from hypothesis import given
from hypothesis import strategies as st

from doeff.errors import DecodeError, EncodeError
from doeff.serde import Codec, JSONCodec, MsgpackCodec
from doeff.storage import Durable, InMemoryKV


@dataclasses.dataclass(frozen=True)
class Sample:
    """A registered dataclass holding arrays."""

    weights: Any
    label: str


def codecs() -> list[Codec]:
    """The two codecs that carry numpy values without pickle."""
    return [MsgpackCodec(types=[Sample]), JSONCodec(types=[Sample])]


def _any_order(endianness: str = "?") -> st.SearchStrategy[np.dtype[Any]]:
    return st.one_of(
        hnp.boolean_dtypes(),
        hnp.integer_dtypes(endianness=endianness),
        hnp.unsigned_integer_dtypes(endianness=endianness),
        hnp.floating_dtypes(endianness=endianness),
        hnp.complex_number_dtypes(endianness=endianness),
        hnp.datetime64_dtypes(endianness=endianness),
        hnp.timedelta64_dtypes(endianness=endianness),
        hnp.byte_string_dtypes(endianness=endianness),
        hnp.unicode_string_dtypes(endianness=endianness),
    )


# Every non-object dtype, in both byte orders, plus structured dtypes with sub-arrays.
dtypes = st.one_of(_any_order(), hnp.array_dtypes(subtype_strategy=_any_order(),
                                                  allow_subarrays=True))
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


def _layout(arr: np.ndarray[Any, Any], how: str) -> np.ndarray[Any, Any]:
    """`arr` as it is (C order), in Fortran order, or as a strided view."""
    if how == "F":
        return np.asfortranarray(arr)
    if how == "strided" and arr.ndim:
        return arr[::2]
    return arr


arrays = st.builds(_layout, dtypes.flatmap(lambda dt: hnp.arrays(dt, shapes)),
                   st.sampled_from(["C", "F", "strided"]))


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
@given(arr=arrays)
def test_arrays_round_trip_exactly(codec: Codec, arr: np.ndarray[Any, Any]) -> None:
    """dtype (byte order and fields included), shape, memory order and every byte come back."""
    back = codec.decode(codec.encode(arr))
    assert same(arr, back)
    assert isinstance(back, np.ndarray) and back.flags.writeable and back.flags.aligned


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
@given(arr=dtypes.flatmap(lambda dt: hnp.arrays(dt, ())))
def test_scalars_round_trip_exactly(codec: Codec, arr: np.ndarray[Any, Any]) -> None:
    """A numpy scalar (np.float32, np.datetime64, a structured np.void...) keeps its type."""
    scalar = arr[()]
    assert isinstance(scalar, np.generic)
    assert same(scalar, codec.decode(codec.encode(scalar)))


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
@given(arr=arrays, label=st.text(max_size=5))
def test_arrays_inside_other_values_round_trip(
    codec: Codec, arr: np.ndarray[Any, Any], label: str
) -> None:
    """Arrays inside dicts, tuples and registered dataclasses, and numpy scalars as dict keys."""
    value = {"w": (arr, [arr]), "s": Sample(arr, label), np.int16(3): np.float32(0.5)}
    assert same(value, codec.decode(codec.encode(value)))


def test_arrays_need_no_registration_and_refuse_their_subclasses() -> None:
    """ndarray is carried as is; np.matrix and other subclasses are refused with their type."""
    codec = MsgpackCodec()
    assert same(np.eye(2), codec.decode(codec.encode(np.eye(2))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix is deprecated
        matrix = np.asmatrix(np.eye(2))
    with pytest.raises(EncodeError, match=r"\$\[0\].*matrix"):
        codec.encode([matrix])


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
def test_object_arrays_are_refused_with_their_path(codec: Codec) -> None:
    """An object-dtype array holds Python objects, not raw data: EncodeError names where it is."""
    with pytest.raises(EncodeError, match=r'\$\["rows"\].*dtype object'):
        codec.encode({"rows": np.array([1, "a"], dtype=object)})


def test_decoding_a_large_array_copies_its_data_once() -> None:
    """Decoding allocates the array's data once (read straight out of the record), and encoding
    writes it once into the record: peak memory stays near one array each way."""
    arr = np.arange(4_000_000, dtype=np.float64)  # 32 MB
    codec = MsgpackCodec()
    tracemalloc.start()
    try:
        data = codec.encode(arr)
        _, encode_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        back = codec.decode(data)
        _, decode_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert same(arr, back)
    assert encode_peak < 1.2 * arr.nbytes
    assert decode_peak - before < 1.2 * arr.nbytes


def test_reading_a_large_array_from_a_store_copies_its_data_once() -> None:
    """Through Durable (the envelope in front of the codec) a stored array is still copied once:
    the payload reaches the codec as a view of the record, not as a slice of it."""
    arr = np.arange(4_000_000, dtype=np.float64)  # 32 MB
    store = Durable(InMemoryKV(), MsgpackCodec())
    store.put("a", arr)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        back = store.get("a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert same(arr, back)
    assert peak - before < 1.2 * arr.nbytes


def _crafted(state: object) -> bytes:
    """A msgpack record holding a numpy array with `state` (as MsgpackCodec frames one)."""
    body: bytes = msgpack.packb([msgpack.ExtType(15, b""), "numpy.ndarray", state])
    return b"\xc1\x00" + body


@pytest.mark.parametrize(("state", "why"), [
    (["<f8", [2], "C", b"\x00" * 8], "holds 8 bytes of data"),
    (["|O", [1], "C", b"\x00" * 8], "Python objects"),
    (["<f8", [1], "X", b"\x00" * 8], "order"),
    (["<f8", [-1], "C", b""], "shape"),
    (["no such dtype", [1], "C", b"\x00"], "malformed numpy dtype"),
    (["<f8", [1], "C"], "malformed numpy array state"),
])
def test_malformed_array_records_are_decode_errors(state: object, why: str) -> None:
    """A record whose array state does not add up is refused, saying what is wrong."""
    with pytest.raises(DecodeError, match=why):
        MsgpackCodec().decode(_crafted(state))


def test_raw_data_out_of_place_is_refused() -> None:
    """A blob reference anywhere but inside an array's state is a malformed record."""
    codec = MsgpackCodec()
    data = codec.encode({"a": np.zeros(100_000)})
    body_len = int.from_bytes(data[2:10], "little")
    body = msgpack.unpackb(data[10:10 + body_len], ext_hook=lambda c, d: msgpack.ExtType(c, d))
    blob = body["a"][2][3]
    assert blob.code == 16
    forged = msgpack.packb({"a": blob})
    record = b"\xc1\x01" + len(forged).to_bytes(8, "little") + forged + data[10 + body_len:]
    with pytest.raises(DecodeError, match="raw data where no type reads it"):
        codec.decode(record)


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.tag)
def test_decode_reads_a_view_of_a_record(codec: Codec) -> None:
    """decode takes a memoryview as well as bytes, so a caller holding a larger buffer (an
    envelope, say) can hand over the payload without copying it first."""
    value = {"w": np.arange(20_000, dtype=np.int32), "t": (1, "x")}
    data = b"head" + codec.encode(value)
    assert same(value, codec.decode(memoryview(data)[4:]))  # type: ignore[arg-type]


@pytest.mark.parametrize("state", [
    ["|S0", [4096], "C", b""],  # numpy widens S0 to S1: 4096 bytes nobody wrote
    ["<U0", [1 << 31], "C", b""],  # and U0 to U1: an 8 GiB array from a 40-byte record
    ["|V0", [1 << 62, 1 << 62, 4], "C", b""],  # more elements than an array can hold
], ids=["S0", "U0-huge", "V0-overflow"])
def test_zero_sized_dtypes_that_numpy_would_widen_are_refused(state: list[object]) -> None:
    """A record whose data length only checks out because its dtype has item size 0 is refused:
    the array would otherwise hold uninitialised memory or be allocated from nothing."""
    with pytest.raises(DecodeError):
        MsgpackCodec().decode(_crafted(state))


def test_an_empty_structured_dtype_still_round_trips() -> None:
    """A dtype with no fields (item size 0) that numpy keeps as it is still reads back."""
    arr = np.zeros(3, dtype=np.dtype([]))
    back = MsgpackCodec().decode(MsgpackCodec().encode(arr))
    assert isinstance(back, np.ndarray) and back.dtype == arr.dtype and back.shape == (3,)
