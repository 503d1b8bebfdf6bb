"""`JSONCodec`: readable JSON (via orjson) with exact round trips over the documented domain.

Plain JSON values are written plainly. Everything else is a one-key object whose key starts with
``$``: ``{"$tuple": [...]}``, ``{"$set": [...]}``, ``{"$frozenset": [...]}`` (elements sorted by
their encoded bytes), ``{"$int": "..."}`` (beyond 64 bits), ``{"$float": "nan"}`` (also ``"inf"``,
``"-inf"``), ``{"$bytes": base64}``, ``{"$dict": [[key, value], ...]}`` (keys not all str),
``{"$datetime"|"$time": ...}``, ``{"$date": ...}``, ``{"$timedelta": ...}`` (forms of
`doeff.serde.temporal`), ``{"$decimal": "..."}``, ``{"$uuid": "..."}``, ``{"$obj": [name,
state]}`` (registered and built-in types, `doeff.serde.types`; raw data in a state is
``{"$bytes": ...}``). A user dict with exactly one key starting with ``$`` is escaped as
``{"$esc": {...}}`` so it is never mistaken for a tag.

Decoding rebuilds tagged values with an explicit stack, not recursion, so every depth orjson
reads (1024 levels; it writes at most 254) decodes, whatever the caller's own stack depth.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NoReturn
from uuid import UUID

import msgpack  # type: ignore[import-untyped]
import orjson

from doeff.errors import DecodeError, EncodeError, brief
from doeff.serde import temporal
from doeff.serde.blob import Blob
from doeff.serde.domain import explain
from doeff.serde.types import TypeRegistry

# orjson would silently write datetimes, dataclasses and str/int/dict/list subclasses in its own
# lossy way; passing them through sends them to `_refuse`, which sends us to the exact path.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_OPTIONS |= orjson.OPT_PASSTHROUGH_SUBCLASS
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what orjson writes as a JSON number
_DECIMAL_DIGITS_BITS = 12_000  # under Python's 4300-digit int/str limit; larger ints go as hex
# The longest decimal "$int" the encoder writes (12,000 bits is 3,613 digits). A longer one is
# refused before int() sees it: parsing decimal digits takes time quadratic in their number, and
# the process may have lifted Python's own limit.
_DECIMAL_DIGITS_MAX = 3_700
# A float64 whose exponent bits are all ones (NaN, ±inf) in msgpack output; a false match inside
# a str or bytes only sends the value down the exact path, which is always correct.
_non_finite = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]").search
# A string starting with "$" (a tag, or user data needing escape). A compiled search is cheaper
# here than `b'"$' in data`, which sets up a buffer and a search for every call.
_tag_in = re.compile(rb'"\$').search
_KEEP_PACKER_BELOW = 1 << 20


def _refuse(obj: object) -> NoReturn:
    raise TypeError(type(obj).__qualname__)


class JSONCodec:
    """JSON with exact round trips; register dataclasses, Enums, pydantic models... to carry them
    by name (numpy arrays and pandas frames are built in).

        codec = JSONCodec()
        codec.encode({"when": (1, 2)})  # b'{"when":{"$tuple":[1,2]}}'
    """

    tag = "json"
    reads_buffers = True  # decode() takes a memoryview as well as bytes (see the envelope)

    def __init__(self, types: Iterable[type] | TypeRegistry = ()) -> None:
        self.types = types if isinstance(types, TypeRegistry) else TypeRegistry(types)
        self._local = threading.local()
        self._writers: dict[type, Callable[[Any], object]] = {
            tuple: lambda v: {"$tuple": [self._to_json(x) for x in v]},
            set: lambda v: {"$set": self._canonical(v)},
            frozenset: lambda v: {"$frozenset": self._canonical(v)},
            bytes: lambda v: {"$bytes": base64.b64encode(v).decode("ascii")},
            Blob: lambda v: {"$bytes": base64.b64encode(v.view).decode("ascii")},
            datetime: lambda v: {"$datetime": temporal.datetime_to_wire(v)},
            date: lambda v: {"$date": temporal.date_to_wire(v)},
            time: lambda v: {"$time": temporal.time_to_wire(v)},
            timedelta: lambda v: {"$timedelta": temporal.timedelta_to_wire(v)},
            Decimal: lambda v: {"$decimal": str(v)},
            UUID: lambda v: {"$uuid": str(v)},
        }

    def __repr__(self) -> str:
        return f"JSONCodec(types={self.types.names()!r})"

    def register(
        self,
        cls: type,
        name: str | None = None,
        *,
        encode: Callable[[Any], object] | None = None,
        decode: Callable[[Any], object] | None = None,
    ) -> None:
        """Carry `cls` under `name` (default ``module.qualname``); see `TypeRegistry.register`."""
        self.types.register(cls, name, encode=encode, decode=decode)

    def encode(self, obj: object) -> bytes:
        """`obj` as UTF-8 JSON, or `EncodeError` naming the first value outside the domain."""
        data = self._plain(obj)
        if data is not None:
            return data
        try:
            return orjson.dumps(self._to_json(obj), default=_refuse, option=_OPTIONS)
        except Exception as exc:
            raise explain(self.tag, obj, self.types, exc) from exc

    def decode(self, data: bytes) -> object:
        """The value `encode` wrote; `DecodeError` for anything else."""
        try:
            value = orjson.loads(data)
            if _tag_in(data) is None:  # no tag anywhere: the plain JSON value is the value
                return value
            return self._from_json(value)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"json cannot decode {len(data)} bytes: {brief(exc)}") from exc

    def _plain(self, obj: object) -> bytes | None:
        """orjson's own output when that is exact, else None (then `_to_json` rewrites the value).

        orjson writes tuples, UUIDs, NaN and Enum members (even IntEnum/StrEnum, which compare
        equal to their values) without complaint, so a check must come first; a Python walk
        would cost several times orjson itself. msgpack's C packer with ``strict_types`` refuses
        every type but exact None/bool/int/float/str/bytes/list/dict, which leaves NaN and ±inf
        (found in its output) and whatever orjson then refuses (bytes, big ints, non-str keys).
        """
        try:
            packer = self._local.packer
        except AttributeError:
            packer = self._local.packer = msgpack.Packer(default=_refuse, strict_types=True)
        try:
            packed = packer.pack(obj)
            if len(packed) >= _KEEP_PACKER_BELOW:
                del self._local.packer  # do not hold a large buffer for the thread's lifetime
            if _non_finite(packed):
                return None
            data: bytes = orjson.dumps(obj, default=_refuse, option=_OPTIONS)
        except Exception:
            return None
        # A user key that looks like a tag ("$tuple") must be escaped by the exact path.
        return None if _tag_in(data) else data

    def _to_json(self, value: Any) -> object:
        """`value` rewritten into plain JSON types, tagging everything JSON lacks."""
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is int:
            if _INT_MIN <= value <= _INT_MAX:
                return value
            small = value.bit_length() < _DECIMAL_DIGITS_BITS
            return {"$int": str(value) if small else hex(value)}
        if kind is float:
            return value if value - value == 0.0 else {"$float": repr(value)}
        if kind is list:
            return [self._to_json(x) for x in value]
        if kind is dict:
            if set(map(type, value)) <= {str}:
                out = {k: self._to_json(v) for k, v in value.items()}
                if len(out) == 1 and next(iter(out)).startswith("$"):
                    return {"$esc": out}
                return out
            return {"$dict": [[self._to_json(k), self._to_json(v)] for k, v in value.items()]}
        writer = self._writers.get(kind)
        if writer is not None:
            return writer(value)
        reduced = self.types.reduce(value)
        if reduced is not None:
            return {"$obj": [reduced[0], self._to_json(reduced[1])]}
        raise EncodeError(f"type {kind.__qualname__} is not in the json domain")

    def _canonical(self, items: Iterable[object]) -> list[object]:
        """Set elements sorted by their encoded bytes, so equal sets give equal JSON."""
        encoded = [self._to_json(x) for x in items]
        encoded.sort(key=lambda x: orjson.dumps(x, default=_refuse, option=_OPTIONS))
        return encoded

    def _from_json(self, root: Any) -> object:
        """Undo `_to_json`: rebuild every tagged object below `root`, depth first.

        `work` holds values to visit and builders to run; a builder takes its arguments, the
        rebuilt children, from the end of `done`.
        """
        work: list[tuple[_Build | None, Any, int]] = [(None, root, 0)]
        done: list[Any] = []
        while work:
            build, item, count = work.pop()
            if build is not None:
                at = len(done) - count
                args = done[at:]
                del done[at:]
                done.append(build(self, item, args))
                continue
            kind = type(item)
            if kind is dict:
                if len(item) == 1:
                    key = next(iter(item))
                    if key.startswith("$"):
                        self._visit_tag(key, item[key], work, done)
                        continue
                children = list(item.values())
                build, item = _build_dict, tuple(item)
            elif kind is list:
                children, build = item, _build_list
            else:
                done.append(item)
                continue
            if _CONTAINERS.isdisjoint(map(type, children)):
                done.append(build(self, item, list(children)))  # nothing below to rebuild
            else:
                work.append((build, item, len(children)))
                work.extend((None, child, 0) for child in reversed(children))
        return done[0]

    def _visit_tag(self, key: str, wire: Any, work: list[Any], done: list[Any]) -> None:
        """Rebuild a leaf tag at once; schedule a container tag's children and its builder."""
        leaf = _LEAF_READERS.get(key)
        if leaf is not None:
            done.append(leaf(wire))
            return
        if key in _SEQUENCES:
            build, extra, children = _SEQUENCES[key], None, _expect(wire, list)
        elif key == "$dict":
            children = [part for pair in _expect(wire, list) for part in _pair(pair)]
            build, extra = _build_pairs, None
        elif key == "$esc":
            build, extra, children = _build_dict, tuple(_expect(wire, dict)), list(wire.values())
        elif key == "$obj":
            name, state = _pair(wire)
            build, extra, children = _build_obj, name, [state]
        else:
            raise DecodeError(f"json record holds an unknown tag {key!r}")
        work.append((build, extra, len(children)))
        work.extend((None, child, 0) for child in reversed(children))


# A builder: (codec, what the tag carried besides its children, the rebuilt children) -> value.
_Build = Callable[[JSONCodec, Any, list[Any]], object]
_CONTAINERS = frozenset({list, dict})


def _build_list(codec: JSONCodec, extra: Any, items: list[Any]) -> object:
    return items


def _build_dict(codec: JSONCodec, keys: tuple[str, ...], values: list[Any]) -> object:
    return dict(zip(keys, values, strict=True))


def _build_pairs(codec: JSONCodec, extra: Any, flat: list[Any]) -> object:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _build_obj(codec: JSONCodec, name: Any, state: list[Any]) -> object:
    return codec.types.rebuild(name, state[0])


_SEQUENCES: dict[str, _Build] = {
    "$tuple": lambda codec, extra, items: tuple(items),
    "$set": lambda codec, extra, items: set(items),
    "$frozenset": lambda codec, extra, items: frozenset(items),
}


def _read_int(wire: Any) -> int:
    text = _expect(wire, str)
    if len(text) > _DECIMAL_DIGITS_MAX and not text.lstrip("-").startswith("0x"):
        raise DecodeError(
            f"json record holds a decimal $int of {len(text)} characters; doeff writes ints "
            f"beyond {_DECIMAL_DIGITS_BITS} bits in hex"
        )
    return int(text, 0)


_LEAF_READERS: dict[str, Callable[[Any], object]] = {
    "$int": _read_int,
    "$float": lambda w: float(_expect(w, str)),
    "$bytes": lambda w: base64.b64decode(_expect(w, str), validate=True),
    "$datetime": temporal.datetime_from_wire,
    "$date": temporal.date_from_wire,
    "$time": temporal.time_from_wire,
    "$timedelta": temporal.timedelta_from_wire,
    "$decimal": lambda w: Decimal(_expect(w, str)),
    "$uuid": lambda w: UUID(_expect(w, str)),
}


def _pair(wire: Any) -> list[Any]:
    """`wire` if it is a JSON array of two items, else `DecodeError`."""
    if type(wire) is not list or len(wire) != 2:
        raise DecodeError(f"expected a JSON array of two items, found {wire!r:.60}")
    return wire


def _expect(wire: Any, kind: type) -> Any:
    """`wire` if it has the JSON type a tag needs, else `DecodeError`."""
    if type(wire) is not kind:
        raise DecodeError(f"expected a JSON {kind.__name__}, found {type(wire).__name__}")
    return wire
