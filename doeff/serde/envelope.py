"""The envelope: every stored value is ``header + payload``, so a record names its own codec.

Byte layout (version 2, or 3 for a record with metadata; version 1 records stay readable)::

    size  field
    2     magic  b"DF"
    1     format version (2, or 3)
    1+n   codec tag: its length n, then n bytes of A-Z a-z 0-9 . _ + -
    1     number of transform steps applied to the payload, then for each, in the order applied:
    1+m     its name: length m, then m bytes (same characters as a tag)
    1+p     its parameters: length p, then p bytes (e.g. an encryption key id and nonce)
    1+s   signing key id: its length s (0 = unsigned), then s hex digits
    8     version 3 only: when the record expires, in milliseconds since the Unix epoch
          (unsigned, little-endian; 0 = never)
    2+i   version 3 only: the record's info: its length i (little-endian), then i bytes of a
          JSON object (a step's name, version, code fingerprint and argument digests)
    32    HMAC-SHA256, only when signed: over the header bytes before it, the key's length
          (4 bytes, little-endian), the key, and the payload
    4     CRC-32 (little-endian) over the header bytes before it, the key, and the payload
    ...   payload: ``codec.encode(value)`` with the steps applied

The key is the one the record is stored under, as UTF-8 (no key: the empty string). Binding it
into the checks makes a value read under another key (copied there, or a corrupted database
page answering for the wrong row) a `DecodeError` instead of a wrong value, just as the CRC
makes a flipped byte or a cut-off record one. The signature takes the key's length too, so a
record for key "ab" cannot pass for one for key "a" by moving a byte into the payload.

Version 1 (``DF | 1 | n | tag | CRC-32 of header+payload | payload``) had no key binding, steps
or signature; such records are read as before. Version 3 is version 2 plus the expiry and info
fields, which tools read without the payload's codec (`doeff cache ls`, `gc`, `explain`); they
sit inside the checksum and the signature, so an expiry cannot be changed without the key. A
record with neither is written as version 2, readable by a doeff that predates version 3.

Reading checks, in order, before any payload byte is decoded: the header's shape and characters,
the trust policy (is the codec trusted? decided from the header alone), the CRC, the signature
(when the reader has keys); then it undoes the steps and decodes.
"""

from __future__ import annotations

import hmac
import json
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from doeff.errors import (
    DecodeError,
    DoeffError,
    EncodeError,
    InvalidKeyError,
    InvalidOptionError,
    MissingExtraError,
    SignatureError,
    brief,
)
from doeff.serde.codec import Codec
from doeff.serde.registry import NAME, NAME_CHARS, check_tag
from doeff.serde.signing import KEY_ID_SIZE, MAC_SIZE, Hmac, Signer
from doeff.serde.transforms import Transform, default_transform
from doeff.serde.trust import DEFAULT_TRUST, Trust

MAGIC = b"DF"
VERSION = 2
META_VERSION = 3  # VERSION plus an expiry and an info field
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")
_META_FIXED = _U64.size + _U16.size  # the expiry and the info's length
_unpack_meta = struct.Struct("<QH").unpack_from  # both at once: (expiry in ms, info's length)
MAX_INFO = 0xFFFF  # bytes of JSON a record's info may hold
_pack_u32 = _U32.pack
_pack_u16 = _U16.pack
_NEVER = _U64.pack(0)  # the expiry field of a record that never expires
_unpack_u32 = _U32.unpack_from
_compare_digest = hmac.compare_digest
# The 4-byte length prefixes of keys up to 255 bytes, made once: a signed store's every read and
# write signs its key behind one (`_bound`), and an index is cheaper than packing.
_LENGTHS = tuple(_pack_u32(n) for n in range(256))
_NAME_BYTES = re.compile(NAME.pattern.encode("ascii"))
_KEY_ID_BYTES = re.compile(rb"[0-9a-f]{%d}" % KEY_ID_SIZE)
# (tag, signing key id) -> (header prefix of a record with no steps, its CRC-32); built once.
_prefixes: dict[tuple[str, str], tuple[bytes, int]] = {}
_MISS = object()  # "not a record the fast path can read": go the long way
EXPIRED = object()  # what `Envelope.unseal_live` answers for a record past its expiry
# A payload this large is handed to a codec that reads buffers as a view of the record, not as
# a copy: decoding a large array then copies its bytes once, into the array. Smaller payloads
# are sliced (cheaper than a view), and codecs that do not say they read buffers get bytes.
_VIEW_FROM = 1 << 16


def _payload(data: bytes, start: int, reader: Codec) -> bytes:
    """The payload of `data` from `start`, for `reader` (see `_VIEW_FROM`)."""
    if len(data) - start >= _VIEW_FROM and getattr(reader, "reads_buffers", False):
        view: bytes = memoryview(data)[start:]  # type: ignore[assignment]
        return view
    return data[start:]

SigningKey = bytes | Sequence[bytes]


@dataclass(frozen=True)
class EnvelopeInfo:
    """What a record's header says, read without decoding (or unpickling) its payload."""

    tag: str
    version: int
    header_size: int
    payload_size: int
    transforms: tuple[str, ...] = ()  # the steps applied to the payload, in order
    key_id: str | None = None  # the id of the key that signed it; None if unsigned
    expires_at: float | None = None  # Unix time after which the record is a miss; None: never
    info: Mapping[str, Any] | None = None  # the JSON object a writer attached (a step's summary)


@dataclass(frozen=True)
class _Header:
    """A parsed header: `signed_end` is where the signature starts (what it covers)."""

    tag: str
    version: int
    steps: tuple[tuple[str, bytes], ...]
    key_id: str | None
    mac: bytes
    signed_end: int
    crc_at: int
    expires_at: float | None = None
    info: bytes = b""

    @property
    def start(self) -> int:
        return self.crc_at + 4


def _key_bytes(key: object) -> bytes:
    """`key` as UTF-8 (lone surrogates kept, so distinct keys stay distinct); b"" for None."""
    if key is None:
        return b""
    if type(key) is not str:
        raise InvalidKeyError(f"a record's key must be a str, got {type(key).__name__} {key!r:.60}")
    return key.encode("utf-8", "surrogatepass")


def _bound(kb: bytes) -> bytes:
    """The key as the signature and the transforms take it: behind its length."""
    n = len(kb)
    return (_LENGTHS[n] if n < 256 else _pack_u32(n)) + kb


def _head(tag: str, steps: list[bytes], key_id: str, meta: bytes | None = None) -> bytes:
    """The header of a record up to its signature (or CRC); `steps` are encoded already, and
    `meta` (the expiry and info fields, see `_meta`) makes it a version 3 header."""
    raw = check_tag(tag)
    version = VERSION if meta is None else META_VERSION
    return (MAGIC + bytes((version, len(raw))) + raw + bytes((len(steps),)) + b"".join(steps)
            + bytes((len(key_id),)) + key_id.encode("ascii") + (meta or b""))


class EncodedInfo(dict[str, Any]):
    """A record's info whose JSON text its maker wrote already (`json`: ASCII bytes, keys
    sorted, no spaces), so sealing skips encoding it again: a step makes one per stored
    result, from parts it prepared once. Built as a dict is (no __init__ of its own, which
    would cost a Python call per stored step); its maker sets `json` next."""

    __slots__ = ("json",)
    json: bytes


def _meta(expires_at: float | None, info: Mapping[str, Any] | None) -> bytes:
    """The version 3 fields: the expiry in milliseconds (0 = never), then the info as JSON."""
    if expires_at is None and type(info) is EncodedInfo and len(info.json) <= MAX_INFO:
        return _NEVER + _pack_u16(len(info.json)) + info.json  # a step's record
    if expires_at is None:
        millis = 0
    else:
        if not isinstance(expires_at, int | float) or not 0 < expires_at < 2 ** 53 / 1000:
            raise InvalidOptionError(
                f"expires_at={expires_at!r}: give a Unix time in seconds (e.g. time.time() + "
                f"3600), or None for a record that never expires"
            )
        millis = max(1, round(expires_at * 1000))
    text = b""
    if type(info) is EncodedInfo:
        text = info.json
        if len(text) > MAX_INFO:
            raise InvalidOptionError(f"info: a record's info must be at most {MAX_INFO} bytes of "
                                     f"JSON, got {len(text)}")
    elif info is not None:
        try:
            text = json.dumps(info, separators=(",", ":"), sort_keys=True,
                              ensure_ascii=True, allow_nan=False).encode("ascii")
        except (TypeError, ValueError) as exc:
            raise InvalidOptionError(
                f"info={info!r:.80}: a record's info must be a JSON object of str, int, bool "
                f"and None values ({exc})"
            ) from exc
        if not isinstance(info, Mapping) or len(text) > MAX_INFO:
            raise InvalidOptionError(
                f"info: a record's info must be a JSON object of at most {MAX_INFO} bytes, got "
                f"{type(info).__name__} of {len(text)} bytes"
            )
    return _U64.pack(millis) + _U16.pack(len(text)) + text


def expires_at(data: bytes) -> float | None:
    """When a record expires (Unix time), read from its header alone; None for a record that
    never expires (any version 1 or 2 record) or whose header cannot be read (opening it then
    says what is wrong)."""
    if type(data) is not bytes or len(data) < 4 or data[2] != META_VERSION:
        return None
    try:
        pos = 4 + data[3]  # past the tag
        for _ in range(data[pos]):  # past the steps' names and parameters
            pos += 1
            pos += 1 + data[pos]
            pos += data[pos]
        pos += 1
        pos += 1 + data[pos]  # past the signing key id
        millis: int = _unpack_u64(data, pos)[0]
    except (IndexError, struct.error):
        return None
    return millis / 1000 if millis else None


_unpack_u64 = _U64.unpack_from


def _prefix(tag: str, key_id: str = "") -> tuple[bytes, int]:
    """The header of a `tag` record with no steps, up to its signature (or CRC), and its CRC."""
    cached = _prefixes.get((tag, key_id))
    if cached is None:
        head = _head(tag, [], key_id)
        cached = _prefixes[(tag, key_id)] = (head, zlib.crc32(head))
    return cached


def _key(key: str | None) -> bytes:
    """The key as the checks take it (UTF-8); the common ASCII key costs no further call."""
    return key.encode() if type(key) is str and key.isascii() else _key_bytes(key)


def _encode_failed(codec: Codec, value: object, exc: Exception) -> EncodeError:
    # A user codec's own error: keep the one error type callers catch.
    return EncodeError(
        f"codec {codec.tag!r} failed to encode a {type(value).__qualname__}: {brief(exc)}"
    )


def _seal_plain(value: object, codec: Codec, head: bytes, head_crc: int,
                key: str | None) -> bytes:
    """The record of `value`, unsigned and with no steps (`head` is its header up to the CRC,
    `head_crc` that header's CRC): the common record, built with as few calls as possible."""
    try:
        payload = codec.encode(value)
    except EncodeError:
        raise
    except Exception as exc:
        raise _encode_failed(codec, value, exc) from exc
    kb = key.encode() if type(key) is str and key.isascii() else _key_bytes(key)
    return b"".join((head, _pack_u32(zlib.crc32(payload, zlib.crc32(kb, head_crc))), payload))


def _seal_signed(value: object, codec: Codec, head: bytes, head_crc: int, mac_of: Hmac,
                 key: str | None) -> bytes:
    """The record of `value` signed, with no steps: `_seal_plain` plus the signature, where
    `mac_of` is the signing key's HMAC with `head` absorbed (`Signer.prepared`)."""
    try:
        payload = codec.encode(value)
    except EncodeError:
        raise
    except Exception as exc:
        raise _encode_failed(codec, value, exc) from exc
    kb = key.encode() if type(key) is str and key.isascii() else _key_bytes(key)
    # `_bound(kb)` written out: this is the per-record call of a signed store.
    n = len(kb)
    mac = mac_of.pair((_LENGTHS[n] if n < 256 else _pack_u32(n)) + kb, payload)
    crc = zlib.crc32(payload, zlib.crc32(mac + kb, head_crc))  # one call for the small parts
    return b"".join((head, mac, _pack_u32(crc), payload))


def _seal(value: object, codec: Codec, kb: bytes, signer: Signer | None,
          transforms: Sequence[Transform], meta: bytes | None = None) -> bytes:
    """The record of `value` with the signature, steps and version 3 fields (`meta`) asked for
    (see the module docstring)."""
    try:
        payload = codec.encode(value)
    except EncodeError:
        raise
    except Exception as exc:
        raise _encode_failed(codec, value, exc) from exc
    bound = _bound(kb)
    steps: list[bytes] = []
    if transforms:
        context = bound + codec.tag.encode("ascii")
        for step in transforms:
            try:
                done = step.apply(payload, context)
            except DoeffError:
                raise
            except Exception as exc:  # a user transform's own error
                raise EncodeError(f"transform {step.name!r} failed: {brief(exc)}") from exc
            if done is not None:
                params, payload = done
                name = step.name.encode("ascii")
                steps.append(bytes((len(name),)) + name + bytes((len(params),)) + params)
                context += b"/" + name
    kid = "" if signer is None else signer.key_id
    if steps or meta is not None:
        head = _head(codec.tag, steps, kid, meta)
        head_crc = zlib.crc32(head)
    else:
        head, head_crc = _prefix(codec.tag, kid)
    if signer is not None:
        mac = signer.sign(head, bound, payload)
        head_crc = zlib.crc32(mac, head_crc)
        head += mac
    crc = zlib.crc32(payload, zlib.crc32(kb, head_crc))
    return b"".join((head, _pack_u32(crc), payload))


def seal(value: object, codec: Codec, *, key: str | None = None,
         signing_key: SigningKey | None = None, transforms: Iterable[Transform] = (),
         expires_at: float | None = None, info: Mapping[str, Any] | None = None) -> bytes:
    """`value` encoded by `codec`, behind a header naming the codec (see the module docstring).

    `key` binds the record to the key it will be stored under (reading it under another key is a
    `DecodeError`); `signing_key` signs it; `transforms` are applied to the payload in order;
    `expires_at` (a Unix time) and `info` (a small JSON object) go into a version 3 header.
    """
    if signing_key is None and not transforms and expires_at is None and info is None:
        head, head_crc = _prefix(codec.tag)
        return _seal_plain(value, codec, head, head_crc, key)
    return Envelope(codec, signing_key=signing_key, transforms=transforms).seal(
        value, key, expires_at=expires_at, info=info)


def _field(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    """The length-prefixed field at `pos` and the position after it."""
    if pos >= len(data) or pos + 1 + data[pos] > len(data):
        raise DecodeError(f"truncated record: the header ends inside its {what} "
                          f"({len(data)} bytes in all)")
    end = pos + 1 + data[pos]
    return data[pos + 1:end], end


def _name(raw: bytes, what: str) -> str:
    if _NAME_BYTES.fullmatch(raw) is None:
        raise DecodeError(f"corrupt record: {what} {raw!r} is not {NAME_CHARS}")
    return raw.decode("ascii")


def _parse(data: bytes) -> _Header:
    """The header of a record, or `DecodeError` saying what is wrong with it."""
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
    if version not in (1, VERSION, META_VERSION):
        newer = (" (written by a newer doeff; upgrade to read it)" if version > META_VERSION
                 else "")
        raise DecodeError(
            f"record has format version {version}; this doeff reads versions 1 to "
            f"{META_VERSION}{newer}"
        )
    raw_tag, pos = _field(data, 3, "codec tag")
    if not raw_tag:
        raise DecodeError("corrupt record: its codec tag is empty")
    tag = _name(raw_tag, "codec tag")
    if version == 1:
        if len(data) < pos + 4:
            raise DecodeError(f"truncated record: the header announces a {len(raw_tag)}-byte "
                              f"codec tag and a checksum, but the record has only {len(data)} "
                              "bytes")
        return _Header(tag, 1, (), None, b"", pos, pos)
    if pos >= len(data):
        raise DecodeError(f"truncated record: the header ends after its codec tag "
                          f"({len(data)} bytes in all)")
    steps = []
    count, pos = data[pos], pos + 1
    for _ in range(count):
        raw_name, pos = _field(data, pos, "transform names")
        params, pos = _field(data, pos, "transform parameters")
        steps.append((_name(raw_name, "transform name"), params))
    raw_kid, pos = _field(data, pos, "signing key id")
    key_id = None
    if raw_kid:
        if _KEY_ID_BYTES.fullmatch(raw_kid) is None:
            raise DecodeError(f"corrupt record: signing key id {raw_kid!r} is not "
                              f"{KEY_ID_SIZE} hex digits")
        key_id = raw_kid.decode("ascii")
    names = [name for name, _ in steps]
    if len(set(names)) != len(names):
        raise DecodeError(f"corrupt record: a transform appears twice in its steps {names}; "
                          "doeff applies each step once")
    expiry: float | None = None
    info = b""
    if version == META_VERSION:
        if len(data) < pos + _META_FIXED:
            raise DecodeError(f"truncated record: the header ends inside its expiry "
                              f"({len(data)} bytes in all)")
        millis = _unpack_u64(data, pos)[0]
        expiry = millis / 1000 if millis else None
        size = _U16.unpack_from(data, pos + 8)[0]
        pos += _META_FIXED
        info = data[pos:pos + size]
        pos += size
        if len(info) < size:
            raise DecodeError(f"truncated record: the header ends inside its info "
                              f"({len(data)} bytes in all)")
    signed_end = pos
    mac = data[pos:pos + MAC_SIZE] if key_id is not None else b""
    pos += len(mac)
    if len(data) < pos + 4 or (key_id is not None and len(mac) < MAC_SIZE):
        raise DecodeError(f"truncated record: the header ends inside its checksum or "
                          f"signature ({len(data)} bytes in all)")
    return _Header(tag, version, tuple(steps), key_id, mac, signed_end, pos, expiry, info)


def _info(h: _Header) -> Mapping[str, Any] | None:
    """A header's info as the JSON object it holds; DecodeError when it is not one."""
    if not h.info:
        return None
    try:
        value = json.loads(h.info.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # crafted: nested deep
        raise DecodeError(f"corrupt record: its info is not a JSON object "
                          f"({type(exc).__name__}: {exc!s:.100})") from None
    if not isinstance(value, dict):
        raise DecodeError(f"corrupt record: its info is a JSON {type(value).__name__}, not an "
                          "object")
    return value


def _described(data: bytes, h: _Header) -> EnvelopeInfo:
    return EnvelopeInfo(tag=h.tag, version=h.version, header_size=h.start,
                        payload_size=len(data) - h.start,
                        transforms=tuple(name for name, _ in h.steps), key_id=h.key_id,
                        expires_at=h.expires_at, info=_info(h))


def peek(data: bytes) -> EnvelopeInfo:
    """The header of a record (codec tag, version, sizes, steps, signing key id, expiry, info);
    the payload is not decoded and nothing is verified beyond the header's shape."""
    return _described(data, _parse(data))


def check(data: bytes, key: str | None = None) -> EnvelopeInfo:
    """Check a record's header and checksum (bound to `key` for format 2) without decoding its
    payload, undoing its steps or verifying a signature: what a store check can tell from the
    bytes alone, with no codec, transform key or trust decision. `DecodeError` says what is
    wrong; otherwise the header is returned, as `peek` gives it."""
    h = _parse(data)
    crc = zlib.crc32(data[:h.crc_at])
    if h.version > 1:
        crc = zlib.crc32(_key_bytes(key), crc)
    if zlib.crc32(memoryview(data)[h.start:], crc) != _unpack_u32(data, h.crc_at)[0]:
        raise _checksum_error(data, h.tag, key)
    return _described(data, h)


def _checksum_error(data: bytes, tag: str, key: str | None) -> DecodeError:
    under = "" if key is None else f" read under {key!r:.80}"
    return DecodeError(
        f"corrupt record: checksum mismatch ({len(data)} bytes, codec {tag!r}{under}); the record "
        "was truncated or changed after it was written, or it was written under another key"
    )


def _decode_failed(tag: str, exc: Exception) -> DecodeError:
    # A user codec's own error: never leak another type.
    return DecodeError(f"codec {tag!r} failed to decode a record: {brief(exc)}")


def _decode(reader: Codec, tag: str, payload: bytes) -> object:
    try:
        return reader.decode(payload)
    except DecodeError:
        raise
    except Exception as exc:
        raise _decode_failed(tag, exc) from exc


def _open_plain(data: bytes, codec: Codec, head: bytes, head_crc: int,
                key: str | None) -> object:
    """The value of an unsigned record of `codec` with no steps (its header up to the CRC is
    `head`), or `_MISS` for any other record: the common case, so it skips parsing."""
    start = len(head) + 4
    if type(data) is not bytes or len(data) < start or not data.startswith(head):
        return _MISS
    # `_payload` written out for the small record, as in `Envelope._open_signed`.
    payload = data[start:] if len(data) - start < _VIEW_FROM else _payload(data, start, codec)
    kb = key.encode() if type(key) is str and key.isascii() else _key_bytes(key)
    if zlib.crc32(payload, zlib.crc32(kb, head_crc)) != _unpack_u32(data, start - 4)[0]:
        raise _checksum_error(data, codec.tag, key)
    try:
        return codec.decode(payload)
    except DecodeError:
        raise
    except Exception as exc:
        raise _decode_failed(codec.tag, exc) from exc


def _open(data: bytes, kb: bytes, key: str | None, own: Codec | None, trust: Trust,
          signer: Signer | None, transforms: dict[str, Transform]) -> object:
    """The value in any record, checked in the order the module docstring gives."""
    h = _parse(data)
    reader = trust.reader(h.tag, own, key)
    payload = data[h.start:] if h.steps else _payload(data, h.start, reader)
    crc = zlib.crc32(data[:h.crc_at])
    if h.version > 1:
        crc = zlib.crc32(kb, crc)
    if zlib.crc32(payload, crc) != _unpack_u32(data, h.crc_at)[0]:
        raise _checksum_error(data, h.tag, key)
    if signer is not None:
        if h.key_id is None:
            raise SignatureError(
                f"{_where(key)} is not signed, and this reader accepts only records signed with "
                f"key {' or '.join(signer.key_ids)}; delete it to recompute the step, or re-sign "
                "a store you trust: doeff cache migrate STORE --to CODEC --signing-key-file FILE "
                "--accept-unsigned"
            )
        _verify(signer, h.key_id, h.mac, data[:h.signed_end], _bound(kb), payload, key)
    if h.steps:
        payload = _undo(h, payload, _bound(kb), transforms)
    return _decode(reader, h.tag, payload)


def _where(key: str | None) -> str:
    return "a record" if key is None else f"the record under {key!r:.80}"


def _verify(signer: Signer, key_id: str, mac: bytes, head: bytes, bound: bytes, payload: bytes,
            key: str | None) -> None:
    """`SignatureError` unless `mac` signs the record with one of the signer's keys."""
    problem = signer.problem(key_id, mac, head, bound, payload)
    if problem is not None:
        raise SignatureError(f"{_where(key)} is refused: {problem}")


def _undo(h: _Header, payload: bytes, bound: bytes, transforms: dict[str, Transform]) -> bytes:
    """`payload` with the record's steps undone, last first."""
    contexts = [bound + h.tag.encode("ascii")]
    for name, _ in h.steps[:-1]:
        contexts.append(contexts[-1] + b"/" + name.encode("ascii"))
    for (name, params), context in zip(reversed(h.steps), reversed(contexts), strict=True):
        try:
            step = transforms.get(name) or default_transform(name)
        except MissingExtraError as exc:
            raise DecodeError(f"the record is stored with {name}: {exc}") from exc
        if step is None:
            raise DecodeError(
                f"the record is stored with the transform {name!r}, which this reader is not "
                f"configured with; open the store with transforms=[...] including it"
            )
        try:
            payload = step.undo(payload, params, context)
        except DecodeError:
            raise
        except Exception as exc:  # a user transform's own error
            raise DecodeError(f"transform {name!r} failed to undo: {brief(exc)}") from exc
    return payload


def unseal(data: bytes, codec: Codec | None = None, *, key: str | None = None,
           trust: Iterable[Codec | str] | None = None, signing_key: SigningKey | None = None,
           transforms: Iterable[Transform] = ()) -> object:
    """The value in a record, decoded by the codec its tag names, if the reader trusts it.

    `codec` (the reader's own, e.g. with its registered types) reads the records it wrote and is
    always trusted. Other records are decoded only when their tag is in `trust` (codecs or
    tags; default msgpack and json, which cannot run code): any other, pickle included, raises
    `UntrustedRecordError` before its payload is read. `key` is the key the record was sealed
    under; `signing_key` makes unsigned or wrongly signed records a `SignatureError`.
    """
    if signing_key is None and codec is not None:
        head, head_crc = _prefix(codec.tag)
        value = _open_plain(data, codec, head, head_crc, key)
        if value is not _MISS:
            return value
    policy = DEFAULT_TRUST if trust is None else Trust(trust)
    signer = None if signing_key is None else Signer(signing_key)
    return _open(data, _key_bytes(key), key, codec, policy, signer, _by_name(transforms))


def _by_name(transforms: Iterable[Transform]) -> dict[str, Transform]:
    """The transforms by name; `InvalidOptionError` for a non-transform or a repeated name."""
    out: dict[str, Transform] = {}
    for step in transforms:
        name = getattr(step, "name", None)
        if not isinstance(step, Transform) or type(name) is not str:
            raise InvalidOptionError(
                f"transforms: {step!r} is not a Transform (name, apply, undo); use Zstd(), "
                "AesGcm(key) or a class of your own with those"
            )
        if NAME.fullmatch(name) is None:
            raise InvalidOptionError(f"transforms: the name {name!r} is not {NAME_CHARS}")
        if name in out:
            raise InvalidOptionError(f"transforms: {name!r} is listed twice")
        out[name] = step
    return out


class Envelope:
    """One way of sealing and opening records: a codec, the codecs trusted on read, signing
    keys and payload transforms. `Durable` keeps one; the common record (its own codec, no step
    applied, signed by its current key if it signs) is read without parsing.

        env = Envelope(MsgpackCodec(), signing_key=key, transforms=[Zstd()])
        env.unseal(env.seal({"rows": 3}, "step:1"), "step:1")   # {'rows': 3}
    """

    __slots__ = ("_by_name", "_head", "_head3", "_head3_crc", "_head_crc", "_mac", "_min3",
                 "_plain", "_pos3",
                 "_start", "codec", "signer", "transforms", "trust")

    def __init__(self, codec: Codec, *, trust: Trust | Iterable[Codec | str] | None = None,
                 signing_key: SigningKey | None = None,
                 transforms: Iterable[Transform] = ()) -> None:
        self.codec = codec
        self.trust = trust if isinstance(trust, Trust) else (
            DEFAULT_TRUST if trust is None else Trust(trust))
        self.signer = None if signing_key is None else Signer(signing_key)
        self._by_name = _by_name(transforms)
        self.transforms = tuple(self._by_name.values())
        self._plain = self.signer is None and not self.transforms
        self._head, self._head_crc = _prefix(
            codec.tag, "" if self.signer is None else self.signer.key_id)
        # The current key's HMAC with the fixed header already absorbed: signing and checking
        # the common record costs two hash copies, not a key schedule.
        self._mac = None if self.signer is None else self.signer.prepared(self._head)
        self._start = len(self._head) + (0 if self.signer is None else MAC_SIZE) + 4
        # A version 3 record of the plain kind starts with this, its fields follow.
        self._head3 = _head(codec.tag, [], "", b"")
        self._head3_crc = zlib.crc32(self._head3)
        self._pos3 = len(self._head3)  # where its fields start
        self._min3 = self._pos3 + _META_FIXED + 4  # the shortest such record: no info, no payload

    def seal(self, value: object, key: str | None = None, codec: Codec | None = None, *,
             expires_at: float | None = None, info: Mapping[str, Any] | None = None) -> bytes:
        """The record of `value` under `key`, by `codec` (default: the envelope's own); with
        `expires_at` or `info`, a version 3 record that carries them in its header."""
        if expires_at is not None or info is not None:
            meta = _meta(expires_at, info)
            if self._plain and (codec is None or codec is self.codec):
                # The common step record: no parsing of options, the fixed head's CRC reused.
                return _seal_plain(value, self.codec, self._head3 + meta,
                                   zlib.crc32(meta, self._head3_crc), key)
            return _seal(value, codec or self.codec, _key(key), self.signer, self.transforms,
                         meta)
        if codec is None or codec is self.codec:
            if self._plain:
                return _seal_plain(value, self.codec, self._head, self._head_crc, key)
            if self._mac is not None and not self.transforms:
                return _seal_signed(value, self.codec, self._head, self._head_crc, self._mac, key)
            codec = self.codec
        return _seal(value, codec, _key(key), self.signer, self.transforms)

    def unseal(self, data: bytes, key: str | None = None) -> object:
        """The value of a record read under `key`, checked as the module docstring says."""
        if self._plain:
            value = _open_plain(data, self.codec, self._head, self._head_crc, key)
            if value is not _MISS:
                return value
            if type(data) is bytes and data.startswith(self._head3):
                return self._open_plain3(data, key)
        elif (self._mac is not None and type(data) is bytes and len(data) >= self._start
              and data.startswith(self._head)):
            return self._open_signed(data, self.signer, self._mac, key)  # type: ignore[arg-type]
        return _open(data, _key_bytes(key), key, self.codec, self.trust, self.signer,
                     self._by_name)

    def unseal_live(self, data: bytes, key: str | None, now: Callable[[], float]) -> object:
        """`unseal`, or `EXPIRED` for a record whose header says it expired by `now()` (called
        only for a record that expires): the expiry is read where the common records keep it,
        without walking the header twice."""
        if self._plain and type(data) is bytes and len(data) > 2:
            # The version byte says which of the two common records this is, if either.
            if data[2] != META_VERSION:
                value = _open_plain(data, self.codec, self._head, self._head_crc, key)
                if value is not _MISS:
                    return value  # a version 2 record: it never expires
            elif len(data) >= self._min3 and data.startswith(self._head3):
                millis, size = _unpack_meta(data, self._pos3)
                if millis and millis / 1000 <= now():
                    return EXPIRED
                return self._open_plain3(data, key, size)
        until = expires_at(data)
        if until is not None and until <= now():
            return EXPIRED
        return self.unseal(data, key)

    def _open_plain3(self, data: bytes, key: str | None, size: int = -1) -> object:
        """A version 3 record of the envelope's codec, unsigned, with no steps: the header's
        fields are skipped by their sizes instead of parsed (the general path checks them).
        `size`, the info's length, when the caller has read it (and checked `_min3`)."""
        pos = self._pos3
        if size < 0:
            if len(data) < self._min3:
                return _open(data, _key_bytes(key), key, self.codec, self.trust, None, {})
            size = _unpack_meta(data, pos)[1]
        crc_at = pos + _META_FIXED + size
        start = crc_at + 4
        if len(data) < start:
            return _open(data, _key_bytes(key), key, self.codec, self.trust, None, {})
        # `_payload` and `_key` written out for the small record, as in `_open_signed`.
        payload = (data[start:] if len(data) - start < _VIEW_FROM
                   else _payload(data, start, self.codec))
        kb = key.encode() if type(key) is str and key.isascii() else _key_bytes(key)
        crc = zlib.crc32(payload, zlib.crc32(kb, zlib.crc32(data[pos:crc_at], self._head3_crc)))
        if crc != _unpack_u32(data, crc_at)[0]:
            raise _checksum_error(data, self.codec.tag, key)
        try:
            return self.codec.decode(payload)
        except DecodeError:
            raise
        except Exception as exc:
            raise _decode_failed(self.codec.tag, exc) from exc

    def _open_signed(self, data: bytes, signer: Signer, mac_of: Hmac, key: str | None) -> object:
        """A record of the envelope's codec, signed by its current key, with no steps."""
        start = self._start
        mac = data[start - 4 - MAC_SIZE:start - 4]
        # `_payload` and `_key` written out for the small record: a signed store's every read.
        payload = (data[start:] if len(data) - start < _VIEW_FROM
                   else _payload(data, start, self.codec))
        kb = key.encode() if type(key) is str and key.isascii() else _key_bytes(key)
        crc = zlib.crc32(payload, zlib.crc32(mac + kb, self._head_crc))
        if crc != _unpack_u32(data, start - 4)[0]:
            raise _checksum_error(data, self.codec.tag, key)
        n = len(kb)
        bound = (_LENGTHS[n] if n < 256 else _pack_u32(n)) + kb
        if not _compare_digest(mac_of.pair(bound, payload), mac):
            _verify(signer, signer.key_id, mac, self._head, bound, payload, key)  # says why
        try:
            return self.codec.decode(payload)
        except DecodeError:
            raise
        except Exception as exc:
            raise _decode_failed(self.codec.tag, exc) from exc
