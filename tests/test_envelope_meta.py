"""Envelope format 3 (an expiry and an info summary in the header) and what Durable builds on
it: one-read look-ups that tell a stored None from a miss, expiring records, headers listed
without decoding — on every DurableStorage."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from storage_fixtures import SEAL_KEY, sealing_options

from doeff.errors import DecodeError, InvalidOptionError, SignatureError
from doeff.serde import Envelope, JSONCodec, MsgpackCodec, peek, seal, unseal
from doeff.serde.envelope import META_VERSION, EncodedInfo, check, expires_at

INFO = {"step": "fetch", "version": "2", "code": None, "args": {"url": "0123456789ab"}}


def test_a_record_with_metadata_round_trips_and_says_it_in_its_header() -> None:
    """A version 3 record decodes to its value; peek reads its expiry and info without the
    payload's codec."""
    until = time.time() + 60
    record = seal({"rows": 3}, MsgpackCodec(), key="k", expires_at=until, info=INFO)
    assert record[2] == META_VERSION
    assert unseal(record, MsgpackCodec(), key="k") == {"rows": 3}
    header = peek(record)
    assert header.info == INFO and header.expires_at == pytest.approx(until, abs=0.001)
    assert check(record, "k").info == INFO
    assert expires_at(record) == header.expires_at


def test_a_record_without_metadata_stays_version_2() -> None:
    """Records with neither expiry nor info are written as before (older readers read them)."""
    record = seal(1, MsgpackCodec(), key="k")
    assert record[2] == 2 and expires_at(record) is None and peek(record).info is None


@pytest.mark.parametrize("options", [{}, {"signing_key": SEAL_KEY}, "sealed"],
                         ids=["plain", "signed", "signed+zstd+aes"])
def test_metadata_is_bound_by_the_checksum_and_the_signature(options: Any) -> None:
    """Changing a version 3 header's expiry — to keep a record alive — makes it unreadable: the
    checksum (and, when signed, the signature) covers it."""
    kwargs = sealing_options() if options == "sealed" else options
    envelope = Envelope(JSONCodec(), **kwargs)
    record = envelope.seal([1, 2], "k", expires_at=time.time() + 1, info=INFO)
    assert envelope.unseal(record, "k") == [1, 2]
    at = record.index(b"{\"args\"") - 10  # the expiry's 8 bytes sit before the info's length
    forged = record[:at] + b"\xff" * 8 + record[at + 8:]
    with pytest.raises(DecodeError):
        envelope.unseal(forged, "k")
    if kwargs:
        unsigned = Envelope(JSONCodec()).seal([1, 2], "k", expires_at=time.time() + 1)
        with pytest.raises(SignatureError):
            envelope.unseal(unsigned, "k")


def test_bad_metadata_is_refused_when_sealing() -> None:
    """An expiry that is not a Unix time, or info that is not a small JSON object, is refused."""
    for bad in (-1, "soon", float("inf")):
        with pytest.raises(InvalidOptionError):
            seal(1, JSONCodec(), expires_at=bad)  # type: ignore[arg-type]
    for info in ([1], {"x": object()}, {"x": "y" * 70_000}):
        with pytest.raises(InvalidOptionError):
            seal(1, JSONCodec(), info=info)  # type: ignore[arg-type]


@given(st.binary(max_size=64))
def test_no_bytes_after_a_version_3_start_crash_a_reader(tail: bytes) -> None:
    """For all byte strings after a version 3 header's start: reading it fails with
    DecodeError or succeeds; `expires_at` never raises."""
    record = b"DF\x03\x04json" + tail
    expires_at(record)
    try:
        peek(record)
        unseal(record, JSONCodec(), key="k")
    except DecodeError:
        pass


@pytest.mark.parametrize("text", [b"[" * 60_000, b'{"a":' * 13_000, b"\xff{}", b"[1]"],
                         ids=["deep-array", "deep-object", "not-ascii", "array"])
def test_a_crafted_info_is_a_decode_error_for_its_readers(text: bytes) -> None:
    """A record whose header info (checksum and all made by whoever wrote it) is deeply nested,
    not ASCII or not an object: peek and check raise DecodeError, not RecursionError; the
    value itself, which does not depend on the info, still decodes."""
    info = EncodedInfo()
    info.json = text
    record = seal(7, MsgpackCodec(), key="k", info=info)
    for read in (peek, lambda r: check(r, "k")):
        with pytest.raises(DecodeError, match="its info is"):
            read(record)
    assert unseal(record, MsgpackCodec(), key="k") == 7


# -- Durable over every backend and codec -------------------------------------------------


def test_lookup_tells_a_stored_none_from_a_miss(durable: Any) -> None:
    """lookup answers (True, None) for a stored None and (False, None) for a missing key."""
    durable.put("none", None)
    assert durable.lookup("none") == (True, None)
    assert durable.lookup("missing") == (False, None)
    durable.put("one", 1)
    assert durable.lookup("one") == (True, 1)


def test_expired_records_are_misses_until_gc_removes_them(durable: Any) -> None:
    """A record past its expiry is a miss for lookup, get, exists and items; gc deletes it."""
    durable.put_record("old", "v", expires_at=time.time() - 1, info={"step": "s"})
    durable.put_record("new", "v", expires_at=time.time() + 60)
    durable.put("plain", "v")
    assert durable.lookup("old") == (False, None) and durable.get("old") is None
    assert not durable.exists("old")
    assert dict(durable.items()) == {"new": "v", "plain": "v"}
    assert durable.lookup("new") == (True, "v")
    assert durable.gc() == 1
    assert sorted(durable.keys()) == ["new", "plain"]


def test_describe_reads_expiry_and_info_from_headers(durable: Any) -> None:
    """describe lists records by key with their expiry and info, nothing decoded."""
    until = time.time() + 60
    durable.put_record("step:a", 1, expires_at=until, info=INFO)
    durable.put("step:b", 2)
    durable.put("other", 3)
    metas = durable.describe("step:")
    assert [m.key for m in metas] == ["step:a", "step:b"]
    assert metas[0].info == INFO and metas[0].expires_at == pytest.approx(until, abs=0.001)
    assert metas[1].info is None and metas[1].expires_at is None


def test_a_claim_is_exclusive_until_released(durable: Any) -> None:
    """Of two claims on one key the second sees the first's holder; after release it is free."""
    lease = durable.claim("step:x", 30)
    held = durable.claim("step:x", 30)
    assert held.owner == lease.owner and held.expires_at > time.time()
    assert durable.release_claim(lease) is True
    again = durable.claim("step:x", 30)
    assert again.owner != lease.owner
    assert durable.release_claim(again) is True


@given(st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda name: name != "a"),
                       st.integers(), max_size=4))
def test_a_steps_prepared_info_json_is_its_mapping(kwargs: dict[str, int]) -> None:
    """For all keyword-argument names (other than the positional `a` they go beside), the JSON a
    step writes for its record's info is exactly `json.dumps` of the mapping it describes (sorted,
    compact, ASCII)."""
    import json

    from doeff import step

    @step(name="snow☃.step", code=True)
    def spread(a: int, **rest: int) -> int:
        return a

    info = spread._call((1,), kwargs).info()
    assert info.json == json.dumps(dict(info), sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=True).encode()
    assert peek(seal(0, JSONCodec(), info=info)).info == dict(info)


def _one(a: Any) -> None:
    return None


def _two(a: Any, b: Any) -> None:
    return None


def _three(a: Any, b: Any, c: Any) -> None:
    return None


@given(st.lists(st.integers() | st.text(max_size=5), min_size=1, max_size=3),
       st.booleans())
def test_a_steps_info_digests_each_argument_by_itself(values: list[Any], by_key: bool) -> None:
    """For all argument lists (one argument or several, or a `key=` callable's value): the info
    of a step's record holds, per argument name, the first 12 hex digits of the digest of that
    argument's canonical part alone."""
    from doeff import step
    from doeff.steps.keys import digest, encode_arguments

    fn = (_one, _two, _three)[len(values) - 1]
    if by_key:
        made = step(name="by.key", key=lambda *args: list(args))(fn)
        names, bound = ["key"], [list(values)]
    else:
        made = step(name="by.args")(fn)
        names, bound = ["a", "b", "c"][:len(values)], values
    call = made._call(tuple(values), {})
    parts = encode_arguments(names, bound, "test")
    assert call.info()["args"] == {name: digest(part, 12)
                                   for name, part in zip(names, parts, strict=True)}
