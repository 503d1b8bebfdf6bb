"""numpy arrays and scalars, carried exactly without pickle.

An ``ndarray`` (exactly that type; subclasses such as ``np.matrix`` or masked arrays are refused)
is written as ``[descr, shape, order, data]``: the dtype in numpy's own ``.npy`` description
(byte order, structured fields and sub-arrays included), the shape, ``"C"`` or ``"F"`` for the
memory order, and the raw bytes as a `Blob` in that order. Any non-object dtype is accepted;
strides of a non-contiguous view are not kept (it is written as a C-ordered copy), and the decoded
array is always writeable and owns its memory. A scalar (``np.float32(1.5)``,
``np.datetime64(...)``, a structured ``np.void``...) is ``[descr, raw bytes]``.

Decoding copies the data once, from the record into the new array.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
from numpy.lib.format import descr_to_dtype, dtype_to_descr

from doeff.errors import DecodeError, EncodeError
from doeff.serde.adapter import Adapter
from doeff.serde.blob import Blob, blob_data

ARRAY, SCALAR = "numpy.ndarray", "numpy.scalar"


def _check_dtype(dtype: np.dtype[Any], what: str) -> Any:
    """The wire description of `dtype`, or `EncodeError` for one that cannot be carried."""
    if dtype.hasobject:
        raise EncodeError(
            f"a numpy {what} of dtype {dtype} holds Python objects, which are not raw data; "
            "convert it to a list (arr.tolist()) or to a typed dtype"
        )
    if dtype.metadata:
        raise EncodeError(f"a numpy {what} whose dtype carries metadata cannot be stored exactly")
    return dtype_to_descr(dtype)


def _read_dtype(descr: object) -> np.dtype[Any]:
    """The dtype a record describes; `DecodeError` for a malformed or object dtype."""
    try:
        dtype = descr_to_dtype(descr)  # type: ignore[arg-type]
    except Exception as exc:
        raise DecodeError(f"record holds a malformed numpy dtype {descr!r}: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError("record holds a numpy dtype of Python objects, which doeff never writes")
    return dtype


def _check_kept(dtype: np.dtype[Any]) -> None:
    """`DecodeError` for a dtype numpy would not keep as described (it widens an `S0` or `U0` to
    one character), which no array doeff wrote can have: its data would not be the record's."""
    if np.empty(0, dtype).dtype != dtype:
        raise DecodeError(f"record holds a numpy dtype {dtype!r} that numpy does not keep as it "
                          "is; doeff never writes one")


def reduce_array(arr: np.ndarray[Any, Any]) -> list[object]:
    """``[descr, shape, order, data]`` (see the module docstring)."""
    descr = _check_dtype(arr.dtype, "array")
    if arr.flags.c_contiguous:
        order, flat = "C", arr
    elif arr.flags.f_contiguous:
        order, flat = "F", arr.T  # the transpose of a Fortran-ordered array is C-ordered
    else:
        order, flat = "C", np.ascontiguousarray(arr)
    # A byte view of the data (no copy); datetime64 and the like do not export buffers themselves.
    data = Blob(flat.reshape(-1).view(np.uint8)) if arr.dtype.itemsize else Blob(b"")
    return [descr, list(arr.shape), order, data]


def rebuild_array(state: object) -> np.ndarray[Any, Any]:
    """The array `reduce_array` described; its data copied once out of the record."""
    if type(state) is not list or len(state) != 4:
        raise DecodeError(f"malformed numpy array state: a {type(state).__name__}")
    descr, shape, order, data = state
    dtype = _read_dtype(descr)
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise DecodeError(f"malformed numpy array shape {shape!r}")
    if order not in ("C", "F"):
        raise DecodeError(f"malformed numpy array order {order!r}")
    raw = blob_data(data)
    count = math.prod(shape)
    if count >= 1 << 63:
        raise DecodeError(f"numpy array record has shape {tuple(shape)}: more elements than an "
                          "array can hold")
    _check_kept(dtype)
    size = count * dtype.itemsize
    if raw.nbytes != size:
        raise DecodeError(
            f"numpy array record holds {raw.nbytes} bytes of data, but its shape {tuple(shape)} "
            f"and dtype {dtype} need {size}"
        )
    if dtype.itemsize == 0:
        return np.zeros(shape, dtype, order=order)  # no data to copy: nothing left uninitialised
    # The one copy: numpy allocates the result (aligned, writeable, owning its memory).
    flat = np.frombuffer(raw, np.uint8).copy().view(dtype)
    return flat.reshape(shape, order=order)


def reduce_scalar(value: np.generic) -> list[object]:
    """``[descr, raw bytes]``."""
    descr = _check_dtype(value.dtype, "scalar")
    return [descr, value.tobytes() if value.dtype.itemsize else b""]


def rebuild_scalar(state: object) -> np.generic:
    """The scalar `reduce_scalar` described."""
    if type(state) is not list or len(state) != 2:
        raise DecodeError(f"malformed numpy scalar state: a {type(state).__name__}")
    dtype = _read_dtype(state[0])
    raw = blob_data(state[1])
    if raw.nbytes != dtype.itemsize:
        raise DecodeError(f"numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes, "
                          f"the record holds {raw.nbytes}")
    if dtype.itemsize == 0:
        return cast(np.generic, np.zeros((), dtype)[()])
    # A copy, so a structured (void) scalar does not view the record's bytes.
    scalar: np.generic = np.frombuffer(raw, dtype, count=1).copy()[0]
    return scalar


_ARRAY = Adapter(np.ndarray, ARRAY, reduce_array, rebuild_array, user_state=False)


def adapter_for(cls: type) -> Adapter | None:
    """The adapter for values of exactly `cls`: ``np.ndarray`` or a numpy scalar type."""
    if cls is np.ndarray:
        return _ARRAY
    if issubclass(cls, np.generic) and cls.__module__ == "numpy":
        return Adapter(cls, SCALAR, reduce_scalar, rebuild_scalar, user_state=False)
    return None


def adapter_named(name: str) -> Adapter:
    """The adapter that reads records named `name` (one of this module's names)."""
    if name == ARRAY:
        return _ARRAY
    return Adapter(np.generic, SCALAR, reduce_scalar, rebuild_scalar, user_state=False)
