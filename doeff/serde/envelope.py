"""The envelope: every stored value is ``header + payload``, so a record names its own codec.

Byte layout (version 1)::

    offset  size  field
    0       2     magic  b"DF"
    2       1     format version (1)
    3       1     n = length of the codec tag
    4       n     codec tag, ASCII (e.g. b"msgpack")
    4+n     4     CRC-32 (little-endian) of bytes [0, 4+n) followed by the payload
    8+n     ...   payload: exactly what ``codec.encode(value)`` returned

The CRC makes a flipped byte or a cut-off record a `DecodeError` instead of a different value:
a cached step result that silently changed would break a replay in a way nobody can trace.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from doeff.errors import DecodeError, EncodeError, UnknownCodecError
from doeff.serde.codec import Codec
from doeff.serde.registry import check_tag, get_codec

MAGIC = b"DF"
VERSION = 1
_CRC = struct.Struct("<I")
_pack_crc = _CRC.pack
_unpack_crc = _CRC.unpack_from
_PREFIX = MAGIC + bytes((VERSION,))
# tag -> (header bytes before the CRC, CRC-32 of those bytes); built once per tag.
_headers: dict[str, tuple[bytes, int]] = {}


@dataclass(frozen=True)
class EnvelopeInfo:
    """What a record's header says, read without decoding (or unpickling) its payload."""

    tag: str
    version: int
    header_size: int
    payload_size: int


def _header(tag: str) -> tuple[bytes, int]:
    """The header prefix for `tag` and its CRC, cached."""
    cached = _headers.get(tag)
    if cached is None:
        raw = check_tag(tag)
        head = _PREFIX + bytes((len(raw),)) + raw
        cached = _headers[tag] = (head, zlib.crc32(head))
    return cached


def seal(value: object, codec: Codec) -> bytes:
    """`value` encoded by `codec`, behind a header naming the codec (see the module docstring)."""
    head, head_crc = _header(codec.tag)
    try:
        payload = codec.encode(value)
    except EncodeError:
        raise
    except Exception as exc:  # a user codec's own error: keep the one error type callers catch
        raise EncodeError(
            f"codec {codec.tag!r} failed to encode a {type(value).__qualname__}: {exc!r}"
        ) from exc
    return b"".join((head, _pack_crc(zlib.crc32(payload, head_crc)), payload))


def _parse(data: bytes) -> tuple[str, int]:
    """The tag and the payload offset of a record, or `DecodeError` saying what is wrong."""
    if type(data) is not bytes:
        raise DecodeError(f"a record must be bytes, got {type(data).__qualname__}")
    if data[:2] != MAGIC:
        raise DecodeError(
            f"not a doeff record: expected magic {MAGIC!r}, found {data[:2]!r} "
            f"(first bytes {data[:8]!r}, {len(data)} bytes in all)"
        )
    if len(data) < 4:
        raise DecodeError(f"truncated record: {len(data)} bytes, shorter than any header")
    version = data[2]
    if version != VERSION:
        newer = " (written by a newer doeff; upgrade to read it)" if version > VERSION else ""
        raise DecodeError(
            f"record has format version {version}; this doeff reads version {VERSION}{newer}"
        )
    end = 4 + data[3]
    if data[3] == 0 or len(data) < end + 4:
        raise DecodeError(
            f"truncated record: the header announces a {data[3]}-byte codec tag and a checksum, "
            f"but the record has only {len(data)} bytes"
        )
    try:
        tag = data[4:end].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"corrupt record: codec tag {data[4:end]!r} is not ASCII") from None
    return tag, end + 4


def peek(data: bytes) -> EnvelopeInfo:
    """The header of a record (codec tag, version, sizes); the payload is not decoded."""
    tag, start = _parse(data)
    return EnvelopeInfo(tag=tag, version=data[2], header_size=start, payload_size=len(data) - start)


def unseal(data: bytes, codec: Codec | None = None) -> object:
    """The value in a record, decoded by the codec its tag names.

    `codec` (the reader's own, e.g. with its registered types) is used when the record's tag
    matches it; any other tag is looked up with `get_codec`.
    """
    if codec is not None and type(data) is bytes:
        # Fast path: a record written by the reader's own codec starts with its cached header.
        head, head_crc = _header(codec.tag)
        start = len(head) + 4
        if data.startswith(head) and len(data) >= start:
            payload = data[start:]
            if zlib.crc32(payload, head_crc) != _unpack_crc(data, start - 4)[0]:
                raise _checksum_error(data, codec.tag)
            return _decode(codec, codec.tag, payload)
    tag, start = _parse(data)
    payload = data[start:]
    if zlib.crc32(payload, zlib.crc32(data[: start - 4])) != _unpack_crc(data, start - 4)[0]:
        raise _checksum_error(data, tag)
    if codec is not None and codec.tag == tag:
        reader = codec
    else:
        try:
            reader = get_codec(tag)
        except UnknownCodecError:
            mine = f" (the reader's codec is {codec.tag!r})" if codec is not None else ""
            raise DecodeError(
                f"record written with codec {tag!r}, which is not registered in this process"
                f"{mine}; call register_codec(...) with an instance of that codec"
                f" — {_registered()}"
            ) from None
    return _decode(reader, tag, payload)


def _decode(reader: Codec, tag: str, payload: bytes) -> object:
    try:
        return reader.decode(payload)
    except DecodeError:
        raise
    except Exception as exc:  # a user codec's own error: never leak another type
        raise DecodeError(f"codec {tag!r} failed to decode a record: {exc!r}") from exc


def _checksum_error(data: bytes, tag: str) -> DecodeError:
    return DecodeError(
        f"corrupt record: checksum mismatch ({len(data)} bytes, codec {tag!r}); "
        "the record was truncated or changed after it was written"
    )


def _registered() -> str:
    """``registered: a, b`` for error messages."""
    from doeff.serde.registry import registered_tags

    return "registered: " + ", ".join(registered_tags())
