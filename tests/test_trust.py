"""The trust policy: a store decodes its own codec, msgpack and JSON, and refuses anything else
from the header, on every read path and every backend; the exploit from issue 11 stays dead."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from envelope_helpers import KEY, VERSIONS, CountingCodec, planted_record
from storage_fixtures import KVBackend
from test_cli import doeff, make_store

from doeff import do, run_sync, run_workflow
from doeff.effects import cached, cacheget, perform
from doeff.errors import (
    EncodeError,
    InvalidOptionError,
    UnsignedPickleWarning,
    UntrustedRecordError,
)
from doeff.serde import (
    CloudpickleCodec,
    Codec,
    JSONCodec,
    MsgpackCodec,
    PickleCodec,
    Trust,
    peek,
    seal,
    unseal,
)
from doeff.storage import Durable, InMemoryKV, SQLiteKV, SQLiteStorage

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("version", VERSIONS)
def test_planted_pickle_is_refused_on_every_read_path(kv_backend: KVBackend, tmp_path: Path,
                                                      version: str) -> None:
    """A pickle record written raw into a msgpack store is refused by get, items and unseal on
    every backend, in either format, and its payload never runs."""
    marker = tmp_path / "payload-ran"
    record = planted_record(marker, "step", version)
    with Durable(kv_backend.open(tmp_path), MsgpackCodec()) as store:
        store.put("fine", [1, 2])
        store.kv.put("step", record)
        with pytest.raises(UntrustedRecordError) as caught:
            store.get("step")
        with pytest.raises(UntrustedRecordError):
            store.items()
        assert store.get("fine") == [1, 2]
        assert store.keys() and "step" in store.keys()  # listing keys decodes nothing
    for reader, key in ((None, None), (None, "step"), (MsgpackCodec(), "step")):
        with pytest.raises(UntrustedRecordError):
            unseal(record, reader, key=key)
    assert not marker.exists()
    message = str(caught.value)
    for part in ("'step'", "'pickle'", "does not trust", "trust=[..., 'pickle']",
                 "doeff cache migrate"):
        assert part in message, part


def test_the_planted_payload_is_live(tmp_path: Path) -> None:
    """The planted record really runs its payload when trusted: the refusals above are not
    vacuous."""
    marker = tmp_path / "payload-ran"
    for version in VERSIONS:
        unseal(planted_record(marker, "step", version), key="step", trust=["pickle"])
        assert marker.exists()
        marker.unlink()


def test_a_workflow_resuming_over_a_planted_record_fails_without_running_it(
        tmp_path: Path) -> None:
    """cached() over a planted pickle ends the run with UntrustedRecordError; nothing ran and
    nothing was recomputed over it."""
    marker = tmp_path / "payload-ran"
    kv = SQLiteKV(tmp_path / "wf.db")
    kv.put("step", planted_record(marker, "step"))
    computed: list[int] = []
    with Durable(kv, MsgpackCodec()) as store:
        result = run_sync(cached("step", lambda: perform(computed.append, 1)), storage=store)
    assert isinstance(result.error, UntrustedRecordError)
    assert not marker.exists() and computed == []


def test_observability_views_obey_the_policy(tmp_path: Path) -> None:
    """get_cache_entries refuses a planted record; a snapshot's cache_keys lists it without
    decoding anything."""
    marker = tmp_path / "payload-ran"
    kv = InMemoryKV()
    kv.put("planted", planted_record(marker, "planted"))

    @do
    def workflow() -> Generator[Any, Any, Any]:
        return (yield cacheget("missing"))

    execution = run_workflow(workflow(), storage=Durable(kv, MsgpackCodec()))
    execution.wait(30)
    assert execution.monitor.snapshot().cache_keys == ("planted",)
    with pytest.raises(UntrustedRecordError):
        execution.monitor.get_cache_entries()
    assert not marker.exists()


def test_cli_get_refuses_the_planted_record(tmp_path: Path) -> None:
    """`doeff cache get` refuses the planted record, in either format, without running it."""
    marker = tmp_path / "payload-ran"
    store = make_store("sqlite", tmp_path)
    store.fill((v, planted_record(marker, v, v)) for v in VERSIONS)
    for key in VERSIONS:
        result = doeff("cache", "get", store.url, key)
        assert result.returncode == 1 and "--unsafe-pickle" in result.stderr
    assert not marker.exists()


def test_default_trust_is_own_codec_plus_msgpack_and_json() -> None:
    """By default a store reads its own records and msgpack/JSON ones; pickle, cloudpickle and
    user codecs are refused until listed in trust= (as tags or as codecs)."""
    kv = InMemoryKV()
    writers: list[Codec] = [MsgpackCodec(), JSONCodec(), PickleCodec(), CloudpickleCodec(),
                            CountingCodec()]
    for codec in writers:
        Durable(kv, codec).put(codec.tag, {"from": codec.tag})
    reader = Durable(kv, JSONCodec())
    assert reader.get("msgpack") == {"from": "msgpack"} and reader.get("json") == {"from": "json"}
    for tag in ("pickle", "cloudpickle", "counting"):
        with pytest.raises(UntrustedRecordError, match=f"codec '{tag}'"):
            reader.get(tag)
    counting = CountingCodec()
    everything = Durable(kv, JSONCodec(), trust=["msgpack", "pickle", "cloudpickle", counting])
    assert dict(everything.items()) == {c.tag: {"from": c.tag} for c in writers}
    assert counting.decodes == 1  # a codec listed in trust reads its own tag's records
    only_own = Durable(kv, JSONCodec(), trust=[])
    assert only_own.get("json") == {"from": "json"}
    with pytest.raises(UntrustedRecordError, match=r"it trusts json\)"):
        only_own.get("msgpack")


def test_refused_records_are_not_decoded() -> None:
    """A record of an untrusted codec never reaches that codec's decoder."""
    counting = CountingCodec()
    record = seal([1], counting, key="k")
    with pytest.raises(UntrustedRecordError):
        unseal(record, MsgpackCodec(), key="k")
    with pytest.raises(UntrustedRecordError):
        unseal(record, key="k", trust=["msgpack", "json"])
    assert counting.decodes == 0
    assert unseal(record, counting, key="k") == [1] and counting.decodes == 1


@pytest.mark.parametrize("bad", ["pickle", [5], [b"pickle"], ["bad tag"], [object()], 5,
                                 [MsgpackCodec]])
def test_unusable_trust_lists_are_refused(bad: Any) -> None:
    """trust= must be a list of codecs or tags; anything else is an InvalidOptionError."""
    with pytest.raises(InvalidOptionError):
        Trust(bad)
    with pytest.raises(InvalidOptionError):
        Durable(InMemoryKV(), MsgpackCodec(), trust=bad)


def test_sqlite_storage_reads_its_own_pickles_and_warns_without_a_signing_key(
        tmp_path: Path) -> None:
    """SQLiteStorage keeps pickle as its own codec, so its records stay readable; opened without
    a signing key it warns with the fix, and with one it does not."""
    with pytest.warns(UnsignedPickleWarning, match="signing_key=") as caught:
        store = SQLiteStorage(tmp_path / "a.db")
    assert caught[0].filename == __file__  # points at the line that opened the store
    with store:
        store.put("k", {1: (2,)})
        assert store.get("k") == {1: (2,)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with SQLiteStorage(tmp_path / "b.db", signing_key=KEY) as signed:
            signed.put("k", {1: (2,)})
            assert signed.get("k") == {1: (2,)}
        Durable(InMemoryKV(), MsgpackCodec()).close()
    with pytest.warns(UnsignedPickleWarning, match="cloudpickle"):
        Durable(InMemoryKV(), MsgpackCodec(), trust=["cloudpickle"])


def test_the_pickle_warning_is_shown_once_per_place(tmp_path: Path) -> None:
    """Opening unsigned pickle stores in a loop prints the warning once (Python's default
    filters, no pytest in between)."""
    code = (
        "from doeff.storage import SQLiteStorage\n"
        f"for i in range(3):\n    SQLiteStorage({str(tmp_path)!r} + f'/{{i}}.db').close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("UnsignedPickleWarning") == 1
    assert "signing_key=" in done.stderr


def test_fallback_stores_what_the_codec_cannot_with_a_trusted_second_codec() -> None:
    """With fallback=, a value outside the codec's domain is stored by the fallback and read
    back; plain values stay in the first codec; an untrusted fallback is refused up front."""
    with pytest.raises(InvalidOptionError, match="trust="):
        Durable(InMemoryKV(), MsgpackCodec(), fallback=PickleCodec())
    kv = InMemoryKV()
    store = Durable(kv, MsgpackCodec(), fallback=PickleCodec(), trust=["pickle"],
                    signing_key=KEY)
    store.put("odd", {"z": 1 + 2j})
    store.put("plain", {"z": 1})
    raw_odd, raw_plain = kv.get("odd"), kv.get("plain")
    assert raw_odd is not None and raw_plain is not None
    assert (peek(raw_odd).tag, peek(raw_plain).tag) == ("pickle", "msgpack")
    assert store.get("odd") == {"z": 1 + 2j} and store.get("plain") == {"z": 1}


def test_encode_error_keeps_the_key_and_the_value() -> None:
    """A value no codec of the store can write raises EncodeError naming both codecs and
    carrying the key and the value; nothing is written."""
    value = {"lock": object()}
    store = Durable(InMemoryKV(), MsgpackCodec(), fallback=JSONCodec())
    with pytest.raises(EncodeError) as caught:
        store.put("k", value)
    assert caught.value.key == "k" and caught.value.value is value
    assert "fallback json failed too" in str(caught.value)
    assert not store.exists("k")


def test_cached_hands_back_a_computed_value_it_could_not_store() -> None:
    """When cached() computed a value the storage cannot encode, the EncodeError names the step
    and carries the value, which the program can still use."""
    value = {"rows": 3, "handle": object()}

    @do
    def workflow() -> Generator[Any, Any, Any]:
        try:
            return (yield cached("fetch", lambda: perform(lambda: value)))
        except EncodeError as err:
            return err

    with Durable(InMemoryKV(), MsgpackCodec()) as store:
        err = run_sync(workflow(), storage=store).value
        assert not store.exists("fetch")
    assert isinstance(err, EncodeError)
    assert err.key == "fetch" and err.value is value
    assert "cached('fetch')" in str(err) and ".value" in str(err)
