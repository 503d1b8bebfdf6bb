"""Payload transforms: zstd above a threshold, AES-256-GCM with key ids, chains recorded in the
envelope; tampered or foreign records refused; optional packages imported only when used."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard
from envelope_helpers import KEY, OTHER_KEY, CountingCodec
from hypothesis import given
from hypothesis import strategies as st
from storage_fixtures import KVBackend, sealing_options

from doeff.errors import DecodeError, EncodeError, InvalidOptionError
from doeff.serde import AesGcm, Codec, Envelope, MsgpackCodec, Zstd, peek, seal, unseal
from doeff.storage import Durable, InMemoryKV

ROOT = Path(__file__).resolve().parent.parent
ROWS = [{"id": i, "name": f"row {i}", "tags": ["alpha", "beta"], "ok": i % 2 == 0}
        for i in range(200)]


def test_zstd_compresses_only_records_that_are_large_and_shrink() -> None:
    """Records under the threshold, or that do not shrink, name no zstd step and are stored as
    encoded; the others are smaller and read back exactly."""
    env = Envelope(MsgpackCodec(), transforms=[Zstd(threshold=256)])
    small = env.seal("a" * 200, "s")  # compressible, but under the threshold
    noise = env.seal(os.urandom(4096), "n")
    big = env.seal(ROWS, "b")
    assert peek(small).transforms == () and peek(noise).transforms == ()
    assert small == seal("a" * 200, MsgpackCodec(), key="s")
    assert peek(big).transforms == ("zstd",)
    assert len(big) < len(seal(ROWS, MsgpackCodec(), key="b")) / 4
    assert env.unseal(big, "b") == ROWS and env.unseal(small, "s") == "a" * 200


def test_any_reader_undoes_zstd_without_configuration() -> None:
    """zstd needs no key: a reader not configured with it still reads compressed records."""
    record = seal(ROWS, MsgpackCodec(), key="b", transforms=[Zstd(threshold=0)])
    assert unseal(record, key="b") == ROWS


def _zstd_record(frame: bytes, key: str = "k") -> bytes:
    """A msgpack record claiming one zstd step whose payload is `frame`, as a forger builds it
    (the layout of docs/serialization.md)."""
    head = b"DF\x02\x07msgpack\x01\x04zstd\x00\x00"
    crc = zlib.crc32(frame, zlib.crc32(key.encode(), zlib.crc32(head)))
    return head + crc.to_bytes(4, "little") + frame


def test_zstd_refuses_frames_that_would_blow_up_or_mislead() -> None:
    """A frame announcing more than max_size, one of unknown size, garbage and trailing bytes
    are DecodeErrors, never a huge allocation or a silently cut value."""
    payload = MsgpackCodec().encode(ROWS)
    frame = zstandard.ZstdCompressor().compress(payload)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(payload)
    env = Envelope(MsgpackCodec(), transforms=[Zstd(max_size=len(payload) - 1)])
    cases = {
        "accepts at most": _zstd_record(frame),
        "unknown size": _zstd_record(unsized),
        "not a zstd frame": _zstd_record(b"\x00" * 40),
        "cannot decompress": _zstd_record(frame + b"tail"),
    }
    for reason, record in cases.items():
        reader = env if reason == "accepts at most" else Envelope(MsgpackCodec())
        with pytest.raises(DecodeError, match=reason):
            reader.unseal(record, "k")
    assert Envelope(MsgpackCodec()).unseal(_zstd_record(frame), "k") == ROWS


def test_a_small_record_cannot_make_a_huge_error_message() -> None:
    """A 1 KB record that decompresses to a msgpack int and 16 MiB of trailing zeros is refused
    with a message of bounded size (the decoder's own error holds the trailing bytes)."""
    frame = zstandard.ZstdCompressor().compress(MsgpackCodec().encode(1) + bytes(16 << 20))
    assert len(frame) < 2048
    with pytest.raises(DecodeError) as info:
        Envelope(MsgpackCodec()).unseal(_zstd_record(frame), "k")
    assert len(str(info.value)) < 2000


def test_a_record_naming_a_step_twice_is_refused() -> None:
    """doeff applies each step once, so a record whose header repeats a step (to multiply what a
    small record decompresses to) is a DecodeError before any step is undone."""
    frame = zstandard.ZstdCompressor().compress(zstandard.ZstdCompressor().compress(b"x" * 64))
    head = b"DF\x02\x07msgpack\x02\x04zstd\x00\x04zstd\x00\x00"
    record = head + zlib.crc32(frame, zlib.crc32(b"k", zlib.crc32(head))).to_bytes(4, "little")
    with pytest.raises(DecodeError, match="appears twice"):
        unseal(record + frame, key="k")


def test_aes_gcm_hides_the_value_and_reads_it_back_with_the_key() -> None:
    """An encrypted record does not contain its plaintext; only a reader holding the key (by
    id, for rotation) reads it, and one without the transform is told what it needs."""
    secret = b"the launch code is 0000" * 3
    env = Envelope(MsgpackCodec(), transforms=[AesGcm(KEY)])
    record = env.seal(secret, "k")
    assert secret[:16] not in record and peek(record).transforms == ("aes256gcm",)
    assert env.unseal(record, "k") == secret
    rotated = Envelope(MsgpackCodec(), transforms=[AesGcm([OTHER_KEY, KEY])])
    assert rotated.unseal(record, "k") == secret
    assert peek(rotated.seal(1, "k")) == peek(Envelope(
        MsgpackCodec(), transforms=[AesGcm(OTHER_KEY)]).seal(1, "k"))
    with pytest.raises(DecodeError, match="does not hold"):
        Envelope(MsgpackCodec(), transforms=[AesGcm(OTHER_KEY)]).unseal(record, "k")
    with pytest.raises(DecodeError, match="not configured with"):
        unseal(record, MsgpackCodec(), key="k")


def test_an_encrypted_record_moved_under_another_key_does_not_decrypt() -> None:
    """The record's key is authenticated data of the encryption: a ciphertext moved to another
    key fails even when the forger recomputes the CRC."""
    from test_signing import recrc

    env = Envelope(MsgpackCodec(), transforms=[AesGcm(KEY)])
    record = env.seal([1, 2], "step:1")
    with pytest.raises(DecodeError, match="authentication failed"):
        env.unseal(recrc(record, "step:2"), "step:2")


@given(data=st.data())
def test_any_changed_byte_of_an_encrypted_record_is_refused(data: Any) -> None:
    """Flipping any byte of a compressed and encrypted record is a DecodeError, with or without
    a recomputed CRC, and nothing reaches the decoder."""
    from test_signing import _recrc_or_same

    counting = CountingCodec()
    env = Envelope(counting, transforms=[Zstd(threshold=0), AesGcm(KEY)])
    original = env.seal(ROWS[:20], "step")
    assert peek(original).transforms == ("zstd", "aes256gcm")
    record = bytearray(original)
    index = data.draw(st.integers(0, len(record) - 1), label="index")
    record[index] ^= data.draw(st.integers(1, 255), label="xor")
    for candidate in {bytes(record), _recrc_or_same(record, "step")} - {original}:
        with pytest.raises(DecodeError):
            env.unseal(candidate, "step")
    assert counting.decodes == 0


def test_chain_with_signing_round_trips_in_a_durable() -> None:
    """A store with zstd, AES-GCM and a signing key reads back large and small values, and
    each record lists the steps it went through, in order."""
    kv = InMemoryKV()
    store = Durable(kv, MsgpackCodec(), signing_key=KEY,
                    transforms=[Zstd(threshold=128), AesGcm(KEY)])
    store.put("big", ROWS)
    store.put("small", 1)
    assert store.get("big") == ROWS and store.get("small") == 1
    steps = {k: peek(raw).transforms for k, raw in kv.items()}
    assert steps == {"big": ("zstd", "aes256gcm"), "small": ("aes256gcm",)}


class Reverse:
    """A user transform: reverses the bytes (any name in the allowed characters works)."""

    name = "test.reverse"

    def apply(self, data: bytes, context: bytes) -> tuple[bytes, bytes] | None:
        return b"", data[::-1]

    def undo(self, data: bytes, params: bytes, context: bytes) -> bytes:
        if not data:
            raise ValueError("empty")
        return data[::-1]


def test_user_transforms_and_their_errors() -> None:
    """A user transform is applied and undone by name; its own exceptions become Encode/Decode
    errors; an unknown step on read says which transform is missing."""
    env = Envelope(MsgpackCodec(), transforms=[Reverse()])
    record = env.seal({"a": 1}, "k")
    assert peek(record).transforms == ("test.reverse",) and env.unseal(record, "k") == {"a": 1}
    with pytest.raises(DecodeError, match=r"'test\.reverse'"):
        unseal(record, MsgpackCodec(), key="k")

    class Broken(Reverse):
        def apply(self, data: bytes, context: bytes) -> tuple[bytes, bytes] | None:
            raise RuntimeError("disk on fire")

    with pytest.raises(EncodeError, match="disk on fire"):
        Envelope(MsgpackCodec(), transforms=[Broken()]).seal(1, "k")


@pytest.mark.parametrize(("transforms", "expected"), [
    ([object()], "not a Transform"),
    ([Zstd(), Zstd()], "listed twice"),
    ([type("Bad", (Reverse,), {"name": "bad name"})()], "not 1-255"),
])
def test_unusable_transform_lists_are_refused(transforms: list[Any], expected: str) -> None:
    """Things that are not transforms, repeated names and names outside the allowed characters
    are InvalidOptionErrors."""
    with pytest.raises(InvalidOptionError, match=expected):
        Durable(InMemoryKV(), MsgpackCodec(), transforms=transforms)


@pytest.mark.parametrize(("build", "expected"), [
    (lambda: AesGcm(b"16 bytes is not"), "must be 32 bytes"),
    (lambda: AesGcm([]), "at least one key"),
    (lambda: AesGcm([KEY, KEY]), "listed twice"),
    (lambda: Zstd(level=99), "level"),
    (lambda: Zstd(threshold=-1), "threshold"),
])
def test_unusable_transform_options_are_refused(build: Any, expected: str) -> None:
    """Wrong key sizes, empty or repeated keys and out-of-range zstd options are refused."""
    with pytest.raises(InvalidOptionError, match=expected):
        build()


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_import_doeff_loads_neither_zstandard_nor_cryptography() -> None:
    """The optional packages are imported when a transform is built, not at `import doeff`."""
    done = _run("import sys, doeff, doeff.serde, doeff.storage\n"
                "print(sorted(m for m in ('zstandard', 'cryptography') if m in sys.modules))\n"
                "doeff.serde.Zstd(); doeff.serde.AesGcm(bytes(32))\n"
                "print(sorted(m for m in ('zstandard', 'cryptography') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "['cryptography', 'zstandard']"]


@pytest.mark.parametrize(("module", "build", "extra"), [
    ("zstandard", "Zstd()", "zstd"),
    ("cryptography", "AesGcm(bytes(32))", "crypto"),
])
def test_a_missing_package_names_its_extra(module: str, build: str, extra: str) -> None:
    """Without the package, building the transform is a MissingExtraError (an ImportError) and
    reading a record that needs it is a DecodeError, both naming the extra to install."""
    record = seal(ROWS, MsgpackCodec(), key="k", transforms=[Zstd(threshold=0)])
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from doeff.serde import AesGcm, Zstd, unseal\n"
        "from doeff.errors import DecodeError, MissingExtraError\n"
        f"try:\n    {build}\nexcept MissingExtraError as e:\n"
        "    print(isinstance(e, ImportError), e)\n"
        f"try:\n    unseal({record!r}, key='k')\nexcept DecodeError as e:\n    print(e)\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first.startswith("True ") and f"pip install -e '/path/to/doeff[{extra}]'" in first
    if module == "zstandard":
        assert "pip install -e '/path/to/doeff[zstd]'" in rest[0]


def test_sealed_records_survive_reopening(persistent_backend: KVBackend, codec: Codec,
                                          tmp_path: Path) -> None:
    """A signed, compressed and encrypted store reopened on the same data reads everything back
    with each codec; a reader without the encryption key is told what it lacks."""
    with Durable(persistent_backend.open(tmp_path), codec, **sealing_options()) as store:
        store.put("big", ROWS)
        store.put("small", [1])
    with Durable(persistent_backend.open(tmp_path), codec, **sealing_options()) as store:
        assert store.get("big") == ROWS and store.get("small") == [1]
    with Durable(persistent_backend.open(tmp_path), codec, trust=[codec.tag]) as store:
        with pytest.raises(DecodeError, match="aes256gcm"):
            store.get("big")


def test_transforms_are_thread_safe() -> None:
    """Threads sharing one compressed, encrypted store each read back exactly what they wrote."""
    store = Durable(InMemoryKV(), MsgpackCodec(), transforms=[Zstd(threshold=0), AesGcm(KEY)])
    failures: list[str] = []

    def work(worker: int) -> None:
        block = os.urandom(1000)
        for i in range(40):
            # Large enough that compressions overlap in time (zstd releases the GIL).
            value = [worker, i, block * (100 + i)]
            try:
                store.put(f"{worker}:{i}", value)
                if store.get(f"{worker}:{i}") != value:
                    failures.append(f"{worker}:{i}: another value")
            except DecodeError as exc:
                failures.append(f"{worker}:{i}: {exc}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(store) == 160
