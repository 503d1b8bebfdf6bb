"""`same(a, b)`: equal values with identical types all the way down, for every type the msgpack
and JSON codecs carry (numpy, pandas and pydantic compared by their own exact rules)."""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
from datetime import datetime, time
from decimal import Decimal
from typing import Any


def same(a: Any, b: Any) -> bool:
    """True when `b` is `a` read back exactly: same types, same values, recursively (NaN equals
    NaN, -0.0 is not 0.0, a numpy array keeps dtype, byte order, shape and memory order)."""
    if type(a) is not type(b):
        return False
    if a is b:  # singletons such as pd.NA, whose == gives neither True nor False
        return True
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(a, np.ndarray):
        return _same_array(a, b)
    if np is not None and isinstance(a, np.generic):
        return bool(a.dtype == b.dtype and a.dtype.str == b.dtype.str
                    and a.tobytes() == b.tobytes())
    if pd is not None and isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        return _same_pandas(pd, a, b)
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, datetime | time):
        return repr(a) == repr(b)  # includes tzinfo (name, key) and fold, which == ignores
    if isinstance(a, enum.Enum):
        return a is b or (a.value == b.value and isinstance(a, enum.Flag))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(a, pydantic.BaseModel):
        return (same(a.__dict__, b.__dict__)
                and a.__pydantic_fields_set__ == b.__pydantic_fields_set__
                and same(a.__pydantic_extra__, b.__pydantic_extra__)
                and same(a.__pydantic_private__, b.__pydantic_private__))
    fields = _fields(a)
    if fields is not None:
        return all(same(getattr(a, f), getattr(b, f)) for f in fields) and (
            getattr(a, "__dict__", {}).keys() == getattr(b, "__dict__", {}).keys())
    return bool(a == b)


def _fields(value: Any) -> list[str] | None:
    if dataclasses.is_dataclass(value):
        return [f.name for f in dataclasses.fields(value)]
    attrs = getattr(type(value), "__attrs_attrs__", None)
    return None if attrs is None else [a.name for a in attrs]


def _same_array(a: Any, b: Any) -> bool:
    if not (a.dtype == b.dtype and a.dtype.str == b.dtype.str and a.shape == b.shape):
        return False
    # Memory order survives: a C-ordered array comes back C-ordered, a Fortran one Fortran.
    if a.flags.c_contiguous != b.flags.c_contiguous and (a.flags.c_contiguous
                                                         or a.flags.f_contiguous):
        return False
    if a.flags.f_contiguous and not a.flags.c_contiguous and not b.flags.f_contiguous:
        return False
    return bool(a.tobytes() == b.tobytes()) and bool(b.flags.writeable)


def _same_pandas(pd: Any, a: Any, b: Any) -> bool:
    check = dict(check_exact=True, check_freq=True)
    try:
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_flags=True, **check)
            pd.testing.assert_index_equal(a.columns, b.columns, exact=True)
            dtypes = list(map(repr, a.dtypes)) == list(map(repr, b.dtypes))
        elif isinstance(a, pd.Series):
            pd.testing.assert_series_equal(a, b, **check)
            dtypes = repr(a.dtype) == repr(b.dtype)
        else:
            pd.testing.assert_index_equal(a, b, exact=True, check_exact=True)
            dtypes = repr(a.dtype) == repr(b.dtype) and getattr(a, "freq", None) == getattr(
                b, "freq", None)
        if not isinstance(a, pd.Index):
            pd.testing.assert_index_equal(a.index, b.index, exact=True, check_exact=True)
    except AssertionError:
        return False
    # Object columns hold Python values: compare those exactly too (None is not NaN).
    if isinstance(a, pd.DataFrame):
        objects = all(same(a.iloc[:, i].tolist(), b.iloc[:, i].tolist())
                      for i, dtype in enumerate(a.dtypes) if dtype.kind == "O")
    else:
        plain = a.dtype.kind != "O" or isinstance(a, pd.MultiIndex)  # levels checked above
        objects = plain or same(list(a), list(b))
    return dtypes and objects and same(getattr(a, "attrs", {}), getattr(b, "attrs", {}))
