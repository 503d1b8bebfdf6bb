"""Signed envelopes: HMAC-SHA256 bound to the key, key ids and rotation; any change to a signed
record is refused before its payload is decoded."""

from __future__ import annotations

import hmac
import zlib
from pathlib import Path
from typing import Any

import pytest
from envelope_helpers import KEY, OTHER_KEY, VERSIONS, CountingCodec, Exploit, planted_record
from hypothesis import example, given
from hypothesis import strategies as st
from storage_fixtures import KVBackend
from test_cli import doeff, make_store

from doeff.errors import DecodeError, InvalidOptionError, SignatureError
from doeff.serde import (
    Envelope,
    JSONCodec,
    MsgpackCodec,
    PickleCodec,
    Signer,
    peek,
    read_key_file,
    seal,
)
from doeff.serde.signing import Hmac, key_id
from doeff.storage import Durable, InMemoryKV

VALUE = {"rows": [(1, "a"), (2, "b")], "score": 0.5}


def recrc(record: bytes | bytearray, key: str) -> bytes:
    """`record` with its CRC recomputed for `key`: what a forger without the signing key can do."""
    info = peek(bytes(record))
    crc_at = info.header_size - 4
    crc = zlib.crc32(bytes(record[info.header_size:]),
                     zlib.crc32(key.encode(), zlib.crc32(bytes(record[:crc_at]))))
    return bytes(record[:crc_at]) + crc.to_bytes(4, "little") + bytes(record[info.header_size:])


@given(secret=st.binary(min_size=0, max_size=200), parts=st.lists(st.binary(), max_size=4))
@example(secret=b"k" * 64, parts=[b"block-sized key"])
@example(secret=b"k" * 65, parts=[b"a key longer than a block is hashed first"])
def test_hmac_matches_the_standard_library(secret: bytes, parts: list[bytes]) -> None:
    """Our precomputed HMAC-SHA256 equals hmac.digest for every key length and message."""
    assert Hmac(secret).digest(*parts) == hmac.digest(secret, b"".join(parts), "sha256")


def test_signed_records_round_trip_and_name_their_key(kv_backend: KVBackend,
                                                      tmp_path: Path) -> None:
    """A signed store reads back what it wrote, on every backend; each record names the id of
    the key that signed it."""
    with Durable(kv_backend.open(tmp_path), MsgpackCodec(), signing_key=KEY) as store:
        store.put("step", VALUE)
        assert store.get("step") == VALUE
        raw = store.kv.get("step")
        assert raw is not None and peek(raw).key_id == key_id(KEY) == Signer(KEY).key_id


def test_missing_unknown_and_wrong_signatures_are_refused_before_decoding() -> None:
    """An unsigned record, one signed with a key the reader lacks, and one whose signature does
    not match are each a SignatureError naming the key, and nothing is decoded."""
    counting = CountingCodec()
    kv = InMemoryKV()
    store = Durable(kv, counting, signing_key=KEY)
    kv.put("unsigned", seal(VALUE, counting, key="unsigned"))
    kv.put("foreign", seal(VALUE, counting, key="foreign", signing_key=OTHER_KEY))
    forged = bytearray(seal(VALUE, counting, key="forged", signing_key=KEY))
    forged[-1] ^= 1
    kv.put("forged", recrc(forged, "forged"))
    expected = {"unsigned": "is not signed", "foreign": f"key id {key_id(OTHER_KEY)}",
                "forged": "does not match"}
    for key, reason in expected.items():
        with pytest.raises(SignatureError, match=reason) as caught:
            store.get(key)
        assert f"'{key}'" in str(caught.value)
    assert counting.decodes == 0


def test_a_signing_key_makes_a_pickle_store_safe_from_planted_records(
        kv_backend: KVBackend, tmp_path: Path) -> None:
    """A pickle store with a signing key reads its own records and refuses the planted exploit
    (anyone can write a pickle record; only the key holder can sign one), on every backend."""
    marker = tmp_path / "payload-ran"
    with Durable(kv_backend.open(tmp_path), PickleCodec(), signing_key=KEY) as store:
        store.put("mine", {"z": 1 + 2j})
        for version in VERSIONS:
            store.kv.put(version, planted_record(marker, version, version))
            with pytest.raises(SignatureError, match="not signed"):
                store.get(version)
        assert store.get("mine") == {"z": 1 + 2j}
    assert not marker.exists()


@given(data=st.data())
def test_any_changed_byte_of_a_signed_record_is_refused(data: Any) -> None:
    """Flipping any byte of a signed record is a DecodeError, even with the CRC recomputed by
    the forger; nothing is decoded."""
    counting = CountingCodec()
    env = Envelope(counting, signing_key=KEY, trust=[])
    original = env.seal(VALUE, "step")
    record = bytearray(original)
    index = data.draw(st.integers(0, len(record) - 1), label="index")
    record[index] ^= data.draw(st.integers(1, 255), label="xor")
    forged = _recrc_or_same(record, "step")
    # (Recomputing the CRC after flipping a CRC byte just restores the original record.)
    for candidate in {bytes(record), forged} - {original}:
        with pytest.raises(DecodeError):
            env.unseal(candidate, "step")
    assert counting.decodes == 0


def _recrc_or_same(record: bytearray, key: str) -> bytes:
    """The forger's version when the header still parses; the damaged bytes otherwise."""
    try:
        return recrc(record, key)
    except DecodeError:
        return bytes(record)


def test_a_signed_record_copied_under_another_key_is_refused() -> None:
    """The signature covers the key: a valid record moved to another key fails even with a
    recomputed CRC."""
    env = Envelope(MsgpackCodec(), signing_key=KEY)
    record = env.seal(VALUE, "step:1")
    with pytest.raises(DecodeError, match="another key"):
        env.unseal(record, "step:2")
    with pytest.raises(SignatureError, match="does not match"):
        env.unseal(recrc(record, "step:2"), "step:2")


def test_a_signature_cannot_be_shifted_between_key_and_payload() -> None:
    """Moving the payload's first byte onto the end of the key ("a" + "bcP" -> "ab" + "cP")
    keeps the concatenation the same, but the signature covers the key's length: refused."""
    env = Envelope(JSONCodec(), signing_key=KEY)
    record = env.seal({"b": 1}, "a")  # the JSON payload starts with b"{"
    info = peek(record)
    head, payload = record[:info.header_size - 4], record[info.header_size:]
    shifted_key = "a" + payload[:1].decode()
    forged = recrc(head + b"\0\0\0\0" + payload[1:], shifted_key)
    with pytest.raises(SignatureError, match="does not match"):
        env.unseal(forged, shifted_key)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 300, 70_000])
def test_the_signed_fast_path_and_the_general_path_agree(size: int) -> None:
    """An Envelope's signed record (its own fast path) and `seal`'s (the general path) are the
    same bytes, for keys on both sides of the 256-byte boundary of the prepared key lengths, and
    each reads the other's; under a key one byte shorter or longer, both are refused."""
    key = "k" * size
    env = Envelope(MsgpackCodec(), signing_key=KEY)
    fast = env.seal(VALUE, key)
    assert fast == seal(VALUE, MsgpackCodec(), key=key, signing_key=KEY)
    assert env.unseal(fast, key) == VALUE
    assert Envelope(MsgpackCodec(), signing_key=KEY, trust=[]).unseal(fast, key) == VALUE
    for other in {key[:-1], key + "k"} - {key}:
        with pytest.raises(DecodeError):
            env.unseal(fast, other)
        with pytest.raises(SignatureError):
            env.unseal(recrc(fast, other), other)


def test_key_rotation(tmp_path: Path) -> None:
    """With [new, old] a store reads records of both keys and signs with the new one; once the
    old key is dropped its records are refused naming its id."""
    kv = InMemoryKV()
    Durable(kv, MsgpackCodec(), signing_key=OTHER_KEY).put("old", 1)
    rotating = Durable(kv, MsgpackCodec(), signing_key=[KEY, OTHER_KEY])
    rotating.put("new", 2)
    assert rotating.get("old") == 1 and rotating.get("new") == 2
    ids = {k: peek(raw).key_id for k, raw in kv.items()}
    assert ids == {"old": key_id(OTHER_KEY), "new": key_id(KEY)}
    done = Durable(kv, MsgpackCodec(), signing_key=KEY)
    assert done.get("new") == 2
    with pytest.raises(SignatureError, match=key_id(OTHER_KEY)):
        done.get("old")


def test_a_reader_without_keys_reads_signed_records_of_safe_codecs() -> None:
    """Signing restricts readers that hold keys; one without keys reads a signed msgpack record
    as it would an unsigned one (its trust policy still applies)."""
    record = seal(VALUE, MsgpackCodec(), key="k", signing_key=KEY)
    assert Durable(_with(record), MsgpackCodec()).get("k") == VALUE


def _with(record: bytes) -> InMemoryKV:
    kv = InMemoryKV()
    kv.put("k", record)
    return kv


@pytest.mark.parametrize(("keys", "expected"), [
    (b"short", "at least 16"),
    ("a str key" * 4, "must be bytes"),
    ([], "empty"),
    ([KEY, KEY], "listed twice"),
])
def test_unusable_signing_keys_are_refused(keys: Any, expected: str) -> None:
    """Short, non-bytes, missing and repeated keys are InvalidOptionErrors that say how to make
    a good key."""
    with pytest.raises(InvalidOptionError, match=expected):
        Durable(InMemoryKV(), MsgpackCodec(), signing_key=keys)


def test_key_files(tmp_path: Path) -> None:
    """A key file holds hex keys, one a line, the signing key first; comments and blank lines are
    skipped; a bad line is named by number without echoing its content."""
    good = tmp_path / "keys"
    good.write_text(f"# current\n{KEY.hex()}\n\n{OTHER_KEY.hex()}\n")
    assert read_key_file(good) == [KEY, OTHER_KEY]
    bad = tmp_path / "bad"
    bad.write_text(f"{KEY.hex()}\nsecret-not-hex\n")
    with pytest.raises(InvalidOptionError, match="line 2") as caught:
        read_key_file(bad)
    assert "secret-not-hex" not in str(caught.value)
    for content, reason in (("", "no key"), ("abcd\n", "at least 16")):
        bad.write_text(content)
        with pytest.raises(InvalidOptionError, match=reason):
            read_key_file(bad)
    with pytest.raises(InvalidOptionError, match="cannot read"):
        read_key_file(tmp_path / "missing")


def test_cli_verifies_signed_stores(tmp_path: Path) -> None:
    """`doeff cache get --signing-key-file` (or DOEFF_SIGNING_KEY_FILE) shows a record signed
    with the file's keys and refuses a forged one; a pickle whose signature fails is not loaded
    even with --unsafe-pickle."""
    keys = tmp_path / "keys"
    keys.write_text(KEY.hex() + "\n")
    marker = tmp_path / "payload-ran"
    store = make_store("sqlite", tmp_path)
    store.fill([
        ("good", seal(VALUE, MsgpackCodec(), key="good", signing_key=KEY)),
        ("forged", seal(VALUE, MsgpackCodec(), key="forged", signing_key=OTHER_KEY)),
        *((v, planted_record(marker, v, v)) for v in VERSIONS),
        ("forged-pickle", seal(Exploit(marker), PickleCodec(), key="forged-pickle",
                               signing_key=OTHER_KEY)),
    ])
    good = doeff("cache", "get", store.url, "good", "--signing-key-file", str(keys))
    assert good.returncode == 0 and "'score': 0.5" in good.stdout
    forged = doeff("cache", "get", store.url, "forged", "--signing-key-file", str(keys))
    assert forged.returncode == 1
    assert "refused record" in forged.stderr and key_id(OTHER_KEY) in forged.stderr
    for planted, reason in (("v1", "not signed"), ("v2", "not signed"),
                            ("forged-pickle", key_id(OTHER_KEY))):
        result = doeff("cache", "get", store.url, planted, "--unsafe-pickle",
                       env={"DOEFF_SIGNING_KEY_FILE": str(keys)})
        assert result.returncode == 1 and reason in result.stderr
    assert not marker.exists()
    bad = doeff("cache", "get", store.url, "good", "--signing-key-file", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "cannot read the key file" in bad.stderr


def test_cli_migrate_signs_and_rotates(tmp_path: Path) -> None:
    """migrate with a key file verifies every record and signs what it writes: unsigned records
    only with --accept-unsigned, records of an older key re-signed with the first; a signed
    store is not migrated without keys."""
    store = make_store("lmdb", tmp_path)
    store.fill([("plain", seal([1], MsgpackCodec(), key="plain")),
                ("old", seal([2], MsgpackCodec(), key="old", signing_key=OTHER_KEY))])
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY.hex()}\n{OTHER_KEY.hex()}\n")
    before = store.snapshot()
    refused = doeff("cache", "migrate", store.url, "--to", "msgpack",
                    "--signing-key-file", str(keys))
    assert refused.returncode == 1 and "plain" in refused.stderr and "not signed" in refused.stderr
    assert store.snapshot() == before
    done = doeff("cache", "migrate", store.url, "--to", "msgpack", "--signing-key-file",
                 str(keys), "--accept-unsigned")
    assert done.returncode == 0, done.stderr
    after = store.snapshot()
    assert {k: peek(v).key_id for k, v in after.items()} == dict.fromkeys(after, key_id(KEY))
    signed = Durable(store.open(), MsgpackCodec(), signing_key=KEY)
    assert (signed.get("plain"), signed.get("old")) == ([1], [2])
    signed.close()
    unkeyed = doeff("cache", "migrate", store.url, "--to", "json")
    assert unkeyed.returncode == 1 and "2 signed records" in unkeyed.stderr
    assert store.snapshot() == after
    # Nor re-encoded into a new store: that would turn records nobody verified into unsigned
    # ones (a copy of the bytes as they are keeps their signatures, and is allowed).
    laundered = doeff("cache", "migrate", store.url, "--into", str(tmp_path / "new.db"),
                      "--to", "json")
    assert laundered.returncode == 1 and "2 signed records" in laundered.stderr
    assert not (tmp_path / "new.db").exists()
    copied = doeff("cache", "migrate", store.url, "--into", str(tmp_path / "copy.db"))
    assert copied.returncode == 0, copied.stderr
