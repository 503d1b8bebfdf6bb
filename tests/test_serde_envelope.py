"""The envelope: seal/unseal/peek, the registry, and corrupt records always giving DecodeError."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_serde_roundtrip import USER_TYPES, Box, make_codecs, same, values

import doeff.serde.registry as registry
from doeff.errors import DecodeError, EncodeError, UnknownCodecError
from doeff.serde import (
    Codec,
    JSONCodec,
    MsgpackCodec,
    get_codec,
    peek,
    register_codec,
    seal,
    unseal,
)

SAMPLE = {"rows": [(1, "a"), (2, "b")], "score": 0.5, "ok": True}


class ReprCodec:
    """A user codec with its own tag."""

    tag = "test-repr"

    def encode(self, obj: object) -> bytes:
        return repr(obj).encode()

    def decode(self, data: bytes) -> object:
        if data == b"boom":
            raise KeyError("boom")
        return eval(data.decode())  # test-only: reads back what encode wrote


class ExplodingCodec(ReprCodec):
    """A user codec whose encoder fails with its own exception type."""

    tag = "test-explode"

    def encode(self, obj: object) -> bytes:
        raise ValueError("no")


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register codecs without leaking them into other tests."""
    monkeypatch.setattr(registry, "_codecs", dict(registry._codecs))


@pytest.mark.parametrize("codec", make_codecs(), ids=lambda c: c.tag)
def test_seal_unseal_round_trips_with_every_codec(codec: Codec) -> None:
    """unseal(seal(x, codec), codec) gives x back, and the header names the codec."""
    record = seal(SAMPLE, codec)
    assert same(unseal(record, codec), SAMPLE)
    assert peek(record).tag == codec.tag


def test_unseal_dispatches_on_the_tag_without_a_reader_codec() -> None:
    """Records from several codecs are each read by the codec registered under their tag, the
    pickle family only when trusted."""
    for tag in ("pickle", "cloudpickle", "msgpack", "json"):
        assert same(unseal(seal(SAMPLE, get_codec(tag)), trust=[tag]), SAMPLE)
    for tag in ("msgpack", "json"):
        assert same(unseal(seal(SAMPLE, get_codec(tag))), SAMPLE)
    assert same(unseal(seal(SAMPLE, JSONCodec()), MsgpackCodec()), SAMPLE)


def test_peek_reads_the_header_without_decoding() -> None:
    """peek reports tag, version and sizes even when the payload could never be decoded."""
    record = seal(b"boom", ReprCodec())  # ReprCodec writes b"b'boom'": decode would eval it
    info = peek(record)
    assert (info.tag, info.version, info.transforms, info.key_id) == ("test-repr", 2, (), None)
    assert info.header_size == 4 + len("test-repr") + 2 + 4
    assert info.header_size + info.payload_size == len(record)


def test_header_layout_is_as_documented() -> None:
    """Magic, version 2, tag, no steps, no signature, a CRC-32 over the header, the key and the
    payload, then the codec's payload."""
    codec = MsgpackCodec()
    record = seal([1, 2], codec, key="k")
    payload = codec.encode([1, 2])
    assert record[:4] == b"DF\x02\x07" and record[4:11] == b"msgpack"
    assert record[11:13] == b"\0\0" and record[17:] == payload
    assert int.from_bytes(record[13:17], "little") == zlib.crc32(record[:13] + b"k" + payload)


def test_version_1_records_stay_readable() -> None:
    """A record in the first format (no key binding) is read under any key, as before."""
    payload = MsgpackCodec().encode({"a": (1, 2)})
    head = b"DF\x01\x07msgpack"
    record = head + zlib.crc32(head + payload).to_bytes(4, "little") + payload
    assert peek(record).version == 1
    for key in (None, "any", "other"):
        assert unseal(record, MsgpackCodec(), key=key) == {"a": (1, 2)}
        assert unseal(record, key=key) == {"a": (1, 2)}


def test_user_codec_works_end_to_end(isolated_registry: None) -> None:
    """A registered user codec is found by tag by get_codec and by unseal."""
    codec = ReprCodec()
    register_codec(codec)
    assert get_codec("test-repr") is codec
    assert unseal(seal({"a": (1,)}, codec), trust=["test-repr"]) == {"a": (1,)}


def test_unknown_tag_message_names_it_and_the_registered_tags() -> None:
    """A record from an unregistered codec says which codec wrote it and how to fix it."""
    record = seal([1], ReprCodec())
    with pytest.raises(DecodeError) as caught:
        unseal(record, MsgpackCodec(), trust=["test-repr"])
    message = str(caught.value)
    for part in ("'test-repr'", "not registered", "'msgpack'", "register_codec", "json, msgpack"):
        assert part in message


def test_get_codec_unknown_tag_is_a_lookup_error() -> None:
    """get_codec raises UnknownCodecError (a LookupError) listing what is registered."""
    with pytest.raises(LookupError, match="registered: cloudpickle, json, msgpack, pickle"):
        get_codec("nope")
    with pytest.raises(UnknownCodecError):
        get_codec("nope")


def test_decoder_exceptions_become_decode_errors(isolated_registry: None) -> None:
    """A user decoder's KeyError reaches the caller as DecodeError chained to the cause."""
    register_codec(ReprCodec())
    record = b"DF\x01\x09test-repr" + zlib.crc32(b"DF\x01\x09test-repr" + b"boom").to_bytes(
        4, "little"
    ) + b"boom"
    with pytest.raises(DecodeError) as caught:
        unseal(record, trust=["test-repr"])
    assert isinstance(caught.value.__cause__, KeyError)


def test_encoder_exceptions_become_encode_errors() -> None:
    """A user encoder's ValueError reaches the caller as EncodeError."""
    with pytest.raises(EncodeError, match="test-explode"):
        seal(1, ExplodingCodec())


def test_reader_codec_supplies_registered_types() -> None:
    """unseal uses the reader's codec (and its types) when tags match; the default lacks them."""
    codec = MsgpackCodec(types=USER_TYPES)
    record = seal(Box(1), codec)
    assert unseal(record, codec) == Box(1)
    with pytest.raises(DecodeError, match=r"test_serde_roundtrip\.Box"):
        unseal(record)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (b"", "expected magic"),
        (b"\x80\x05K\x01.", "not a doeff record"),
        (b"DF", "truncated"),
        (b"DF\x04\x04json" + b"\0" * 8, "newer doeff"),
        (b"DF\x00\x04json" + b"\0" * 8, "format version 0"),
        (b"DF\x01\x00\0\0\0\0", "tag is empty"),
        (b"DF\x01\x09json\0\0\0\0", "truncated"),
        (b"DF\x01\x04\xffson\0\0\0\0", "is not 1-255 of A-Z"),
        (b"DF\x02\x04j\x1b[2", "is not 1-255 of A-Z"),
        (b"DF\x02\x04json\x01\x04zstd", "truncated"),
        (b"DF\x02\x04json\x00\x08ABCDEFGH" + b"\0" * 36, "not 8 hex digits"),
        (b"DF\x02\x04json\x00\x0812345678" + b"\0" * 35, "truncated"),
        (b"DF\x01\x04json\0\0\0\0[1]", "checksum"),
    ],
)
def test_malformed_records_say_what_was_found(record: bytes, expected: str) -> None:
    """Wrong magic, newer or zero version, bad tag and bad checksum each get their own message."""
    with pytest.raises(DecodeError, match=expected):
        unseal(record)


def test_unseal_refuses_non_bytes() -> None:
    """A str or None handed to unseal is a DecodeError, not an AttributeError."""
    for bad in ("DF", None):
        with pytest.raises(DecodeError):
            unseal(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", make_codecs(), ids=lambda c: c.tag)
def test_every_truncation_is_a_decode_error(codec: Codec) -> None:
    """Cutting a record at any length gives DecodeError."""
    record = seal(SAMPLE, codec)
    for size in range(len(record)):
        with pytest.raises(DecodeError):
            unseal(record[:size], codec)


@pytest.mark.parametrize("codec", make_codecs(), ids=lambda c: c.tag)
@given(value=values, data=st.data())
def test_byte_flips_give_decode_error(codec: Codec, value: object, data: Any) -> None:
    """Changing any one byte of a record gives DecodeError (the CRC catches payload damage)."""
    record = bytearray(seal(value, codec))
    index = data.draw(st.integers(0, len(record) - 1))
    record[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecodeError):
        unseal(bytes(record), codec)


@given(blob=st.binary(max_size=64), prefix=st.sampled_from([b"", b"DF\x01\x07msgpack"]))
def test_arbitrary_bytes_never_raise_another_exception(blob: bytes, prefix: bytes) -> None:
    """Random input to unseal either decodes or raises DecodeError."""
    try:
        unseal(prefix + blob)
    except DecodeError:
        pass


@pytest.mark.parametrize("codec", make_codecs()[:2], ids=lambda c: c.tag)
@given(value=values, data=st.data())
def test_damaged_payloads_give_decode_error_or_a_value(
    codec: Codec, value: object, data: Any
) -> None:
    """The msgpack/JSON decoders on damaged bytes (no CRC in the way) raise only DecodeError."""
    payload = bytearray(codec.encode(value))
    if payload:
        index = data.draw(st.integers(0, len(payload) - 1))
        payload[index] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(payload)))
    try:
        codec.decode(bytes(payload[:cut]))
    except DecodeError:
        pass
