"""Step keys: a canonical encoding of a step's bound arguments, and its SHA-256 digest.

The encoding depends on values only — never on `hash()`, the hash seed, memory addresses, dict
insertion order, the platform or the Python version — so a step called with equal arguments
gets the same key in every process. Each value is a tag byte and a self-delimiting body:

    None  n            bool  t / f          int  i<hex>;       float  d<8 bytes, IEEE big-endian>
    str   s<len>:<utf-8>                    bytes  b<len>:<raw>   bytearray  y<len>:<raw>
    tuple (<n>:<items>                      list  [<n>:<items>
    dict  {<n>:<key value pairs, sorted by the key's encoding>
    set   <<n>:<sorted items>               frozenset  ><n>:<sorted items>
    datetime, date, time (ISO text with its offset), timedelta, Decimal (exact text), UUID,
    complex, pathlib paths (POSIX text)
    other types  O<wire name><state>: dataclasses, attrs classes, NamedTuples, Enums and pydantic
                 models by `module.qualname` (or the name given to `register_key_type`) and
                 their fields; numpy arrays by dtype, shape and C-ordered bytes

So `1`, `1.0` and `True` are three keys, as are a tuple and a list of the same items; equal
floats are equal bits (`0.0` and `-0.0` differ, a NaN is its bits). Anything else (an open
file, a lock, a function) has no canonical form: `StepKeyError` names the argument and where in
it the value sits, and suggests `key=`.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import importlib
import pathlib
import struct
import sys
import uuid
from collections.abc import Callable
from typing import Any

from doeff.errors import EncodeError, RegistrationError, StepKeyError
from doeff.serde import ext, kinds
from doeff.serde.adapter import Adapter, type_name
from doeff.serde.blob import Blob

# Bumped if the encoding ever changes: it is hashed into every digest, so old keys then miss
# instead of colliding with new ones (tests pin digests of this version).
KEY_FORMAT = b"doeff-step-key/1\n"
MAX_DEPTH = 200  # containers nested deeper are refused (and a cycle is found this way)
DIGEST_HEX = 32  # hex digits of SHA-256 kept in a key: 128 bits
ARG_DIGEST_HEX = 12  # per argument, in a record's info (enough to tell two values apart)

_pack_double = struct.Struct(">d").pack


class _NoCanonicalForm(Exception):
    """Raised inside the encoder; `path` is filled in on the way out (innermost last)."""

    def __init__(self, value: object, why: str) -> None:
        super().__init__(why)
        self.value = value
        self.why = why
        self.path: list[str] = []


def _str(s: str) -> bytes:
    raw = s.encode() if s.isascii() else s.encode("utf-8", "surrogatepass")
    return b"s%d:" % len(raw) + raw


# Encodings of short strings and small ints, made once: dict keys, field names and small
# counts recur from call to call, and a look-up costs less than building the bytes again.
_SHORT_STR = 64  # characters of the longest str kept
_KEPT_STRS = 4096  # strs kept at most (then new ones are encoded each time)
_strs: dict[str, bytes] = {}
_INTS = [b"i%x;" % v for v in range(-16, 1024)]
_COUNTS = [b"%d:" % n for n in range(64)]


def _count(n: int) -> bytes:
    """A container's item count as its encoding writes it."""
    return _COUNTS[n] if n < 64 else b"%d:" % n


def _str_kept(s: str) -> bytes:
    """`_str(s)`, from `_strs` when it is there, put there when short and there is room."""
    encoded = _strs.get(s)
    if encoded is None:
        encoded = _str(s)
        if len(s) <= _SHORT_STR and len(_strs) < _KEPT_STRS:
            _strs[s] = encoded
    return encoded


def _leaf(value: Any, cls: type, depth: int) -> bytes:
    """The encoding of a value that is not an exact str or int (those are inlined by callers)."""
    fast = _EXACT.get(cls)
    return fast(value, depth) if fast is not None else _other(value, depth)


def _int(v: int) -> bytes:
    return b"i%x;" % v


def _bytes(v: bytes) -> bytes:
    return b"b%d:" % len(v) + v


def _items(tag: bytes, items: Any, depth: int) -> bytes:
    if depth >= MAX_DEPTH:
        raise _too_deep(items)
    parts: list[bytes] = []
    append = parts.append
    strs, ints = _strs, _INTS
    depth += 1
    for item in items:
        cls = item.__class__
        if cls is str:
            append(strs.get(item) or _str_kept(item))
        elif cls is int and -16 <= item < 1024:
            append(ints[item + 16])
        else:
            try:
                append(_leaf(item, cls, depth))
            except _NoCanonicalForm as exc:
                exc.path.append(f"[{len(parts)}]")
                raise
    return tag + _count(len(parts)) + b"".join(parts)


def _sorted_items(tag: bytes, items: Any, depth: int) -> bytes:
    if depth >= MAX_DEPTH:
        raise _too_deep(items)
    parts = []
    for item in items:
        try:
            parts.append(encode(item, depth + 1))
        except _NoCanonicalForm as exc:
            exc.path.append(f" (an item {item!r:.40})")
            raise
    parts.sort()
    return tag + _count(len(parts)) + b"".join(parts)


def _dict(value: dict[Any, Any], depth: int) -> bytes:
    if depth >= MAX_DEPTH:
        raise _too_deep(value)
    pairs: list[bytes] = []
    append = pairs.append
    strs, ints = _strs, _INTS
    depth += 1
    for k, v in value.items():
        cls = k.__class__
        if cls is str:
            ek = strs.get(k) or _str_kept(k)
        else:
            try:
                ek = _leaf(k, cls, depth)
            except _NoCanonicalForm as exc:
                exc.path.append(f" (a key {k!r:.40})")
                raise
        cls = v.__class__
        if cls is str:
            append(ek + (strs.get(v) or _str_kept(v)))
        elif cls is int and -16 <= v < 1024:
            append(ek + ints[v + 16])
        else:
            try:
                append(ek + _leaf(v, cls, depth))
            except _NoCanonicalForm as exc:
                exc.path.append(f"[{k!r:.40}]")
                raise
    pairs.sort()  # a key's encoding is self-delimiting, so sorting pairs sorts by key
    return b"{" + _count(len(pairs)) + b"".join(pairs)


def _text(tag: bytes, text: str) -> bytes:
    return tag + _str(text)


_EXACT: dict[type, Callable[[Any, int], bytes]] = {
    type(None): lambda v, d: b"n",
    bool: lambda v, d: b"t" if v else b"f",
    int: lambda v, d: b"i%x;" % v,
    float: lambda v, d: b"d" + _pack_double(v),
    complex: lambda v, d: b"c" + _pack_double(v.real) + _pack_double(v.imag),
    str: lambda v, d: _str(v),
    bytes: lambda v, d: _bytes(v),
    bytearray: lambda v, d: b"y%d:" % len(v) + bytes(v),
    tuple: lambda v, d: _items(b"(", v, d),
    list: lambda v, d: _items(b"[", v, d),
    dict: _dict,
    set: lambda v, d: _sorted_items(b"<", v, d),
    frozenset: lambda v, d: _sorted_items(b">", v, d),
    datetime.datetime: lambda v, d: _text(b"T", v.isoformat()),
    datetime.date: lambda v, d: _text(b"D", v.isoformat()),
    datetime.time: lambda v, d: _text(b"H", v.isoformat()),
    datetime.timedelta: lambda v, d: b"R" + _int(v.days) + _int(v.seconds) + _int(v.microseconds),
    decimal.Decimal: lambda v, d: _text(b"M", str(v)),
    uuid.UUID: lambda v, d: b"U" + v.bytes,
    Blob: lambda v, d: _bytes(bytes(v.view)),
}

# Types given a wire name (and optionally an encoder) by `register_key_type`, and adapters found
# for the others, by exact type.
_registered: dict[type, Adapter] = {}
_found: dict[type, Adapter | None] = {}


def register_key_type(cls: type, name: str | None = None, *,
                      encode: Callable[[Any], object] | None = None) -> None:
    """Encode values of `cls` in step keys under the wire name `name` (default
    `module.qualname`): by their fields (dataclasses, attrs, NamedTuple, Enum, pydantic), or by
    what `encode(value)` returns. A stable name keeps keys when the class moves or is renamed."""
    if not isinstance(cls, type):
        raise RegistrationError(f"register_key_type({cls!r:.60}): give a class")
    wire = type_name(cls) if name is None else name
    if type(wire) is not str or not wire:
        raise RegistrationError(f"register_key_type: a wire name must be a non-empty str, got "
                                f"{wire!r}")
    if encode is not None:
        _registered[cls] = Adapter(cls, wire, encode, lambda state: state)
    else:
        _registered[cls] = kinds.adapter_for(cls, wire, None, None)
    _found.pop(cls, None)


def _adapter(cls: type) -> Adapter | None:
    """How values of exactly `cls` are reduced to (wire name, state), if they can be."""
    adapter = _registered.get(cls)
    if adapter is not None:
        return adapter
    try:
        return _found[cls]
    except KeyError:
        pass
    found: Adapter | None = ext.builtin_for_type(cls)
    if found is None and _reducible(cls):
        try:
            found = kinds.adapter_for(cls, type_name(cls), None, None)
        except RegistrationError:
            found = None
    _found[cls] = found
    return found


def _reducible(cls: type) -> bool:
    """The kinds of class whose values are their fields (what `kinds.adapter_for` takes)."""
    if issubclass(cls, enum.Enum) or dataclasses.is_dataclass(cls):
        return True
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return True
    if hasattr(cls, "__attrs_attrs__"):
        return True
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _numpy_array(value: Any, depth: int) -> bytes:
    np = sys.modules["numpy"]
    if value.dtype.hasobject:
        raise _NoCanonicalForm(value, "a numpy array of Python objects has no raw data")
    data: bytes = np.ascontiguousarray(value).tobytes()
    return (b"A" + _str(value.dtype.str) + _items(b"(", value.shape, depth)
            + b"b%d:" % len(data) + data)


def _other(value: Any, depth: int) -> bytes:
    cls = type(value)
    if isinstance(value, pathlib.PurePath):
        return _text(b"P", value.as_posix())
    if cls.__module__ == "numpy" and cls.__name__ == "ndarray":
        return _numpy_array(value, depth)
    adapter = _adapter(cls)
    if adapter is None:
        raise _NoCanonicalForm(value, f"a {type_name(cls)} has no canonical encoding")
    try:
        state = adapter.reduce(value)
    except EncodeError as exc:
        raise _NoCanonicalForm(value, str(exc)) from None
    try:
        return b"O" + _str(adapter.name) + encode(state, depth + 1)
    except _NoCanonicalForm as exc:
        exc.path.append(f" (the state of a {adapter.name})")
        raise


def _too_deep(value: object) -> _NoCanonicalForm:
    return _NoCanonicalForm(value, f"it nests deeper than {MAX_DEPTH} levels (or refers to "
                                   f"itself)")


def encode(value: Any, depth: int = 0) -> bytes:
    """The canonical bytes of `value` (see the module docstring). Containers check the depth
    (a value that refers to itself is refused when it gets too deep)."""
    fast = _EXACT.get(value.__class__)
    if fast is not None:
        return fast(value, depth)
    return _other(value, depth)


def canonical(value: Any) -> bytes:
    """The canonical encoding of `value`; `StepKeyError` if it has none."""
    try:
        return encode(value)
    except _NoCanonicalForm as exc:
        raise StepKeyError(f"the value{''.join(reversed(exc.path))} has no canonical encoding: "
                           f"{exc.why}") from None


def _sha256() -> Callable[[bytes], Any]:
    """SHA-256 as CPython's own module computes it, where there is one: for inputs as short as
    a key's it takes about 10% less time than OpenSSL's (which copies its context to finish);
    the digest is the same."""
    for name in ("_sha2", "_sha256"):  # the module's name from Python 3.12 on, and before
        try:
            found: Callable[[bytes], Any] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return found
    return hashlib.sha256


_sha = _sha256()


def digest(data: bytes, size: int = DIGEST_HEX) -> str:
    """The first `size` hex digits of SHA-256 over the key format and `data`."""
    text: str = _sha(KEY_FORMAT + data).hexdigest()
    return text[:size]


def encode_arguments(names: list[str], values: Any, where: str,
                     params: str | None = None) -> list[bytes]:
    """Each argument's canonical part (its name, then its value), in the order given (sorted by
    name); `StepKeyError` naming the argument for a value with no canonical form (`params`, the
    step's parameter list, goes into the `key=lambda ...` it suggests)."""
    parts = []
    strs, ints = _strs, _INTS
    index = 0
    for value in values:
        name = names[index]
        index += 1
        cls = value.__class__
        try:
            if cls is str:
                body = strs.get(value) or _str_kept(value)
            elif cls is int and -16 <= value < 1024:
                body = ints[value + 16]
            elif cls is dict:
                body = _dict(value, 1)
            else:
                body = _leaf(value, cls, 1)
        except _NoCanonicalForm as exc:
            steps = exc.path[::-1]
            if len(steps) > 24:  # e.g. 200 levels of [0]: its two ends say where it is
                steps = [*steps[:16], "...", *steps[-6:]]
            inside = "".join(steps)
            raise StepKeyError(
                f"{where}: the argument {name}{inside} cannot be part of the step's key: "
                f"{exc.why}. Pass a value with a canonical form (str, int, float, bytes, "
                f"tuples, lists, dicts, sets, dates, dataclasses...), or give the step "
                f"key=lambda {params or ', '.join(names)}: ... returning one (e.g. an id)"
            ) from None
        head = _NAMES.get(name)
        if head is None:
            head = _str(name)
            if len(_NAMES) < 10_000:  # **kwargs may bring any names: the table stays small
                _NAMES[name] = head
        parts.append(head + body)
    return parts


_NAMES: dict[str, bytes] = {}  # an argument name's encoding, made once per name


__all__ = ["KEY_FORMAT", "canonical", "digest", "encode", "encode_arguments",
           "register_key_type"]
