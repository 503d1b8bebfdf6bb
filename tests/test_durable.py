"""The DurableStorage contract on Durable (every backend x codec), InMemoryStorage and
SQLiteStorage."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from storage_fixtures import CODEC_NAMES, KVBackend, make_codec

from doeff.errors import DecodeError, EncodeError, StoreClosedError, UntrustedRecordError
from doeff.serde import SAFE_TAGS, JSONCodec, MsgpackCodec, PickleCodec, peek
from doeff.storage import Durable, DurableStorage, InMemoryKV, InMemoryStorage, SQLiteKV

# Inside every codec's domain (JSON's included), so one value serves the whole matrix.
VALUE = {"rows": [1, 2.5, "x", None, True], "name": "étape", "n": 2**70}
LARGE = {"rows": [{"id": i, "name": f"row {i}", "ok": i % 2 == 0} for i in range(300)]}


def test_is_durable_storage(durable: Any) -> None:
    """Every DurableStorage implementation passes the runtime-checkable protocol check."""
    assert isinstance(durable, DurableStorage)


def test_put_then_get_returns_the_value_and_a_second_put_replaces_it(durable: Any) -> None:
    """Put then get returns the value; a second put replaces it."""
    durable.put("step", VALUE)
    assert durable.get("step") == VALUE
    durable.put("step", {"v": 2})
    assert durable.get("step") == {"v": 2}
    assert len(durable) == 1


def test_get_of_a_missing_key_is_none(durable: Any) -> None:
    """Get of a missing key returns None."""
    assert durable.get("nothing here") is None


def test_exists_tells_stored_from_missing_and_delete_says_whether_it_removed(
    durable: Any,
) -> None:
    """exists tells stored from missing; delete returns whether the key existed."""
    durable.put("k", [1])
    assert durable.exists("k") and not durable.exists("j")
    assert durable.delete("k") is True
    assert durable.delete("k") is False
    assert not durable.exists("k")


def test_none_is_a_storable_value(durable: Any) -> None:
    """A stored None reads back as None while exists() says the key is there."""
    durable.put("k", None)
    assert durable.get("k") is None and durable.exists("k")


def test_keys_items_clear(durable: Any) -> None:
    """keys and items list every entry decoded; clear empties the store."""
    for i in range(5):
        durable.put(f"k{i}", {"i": i})
    assert sorted(durable.keys()) == [f"k{i}" for i in range(5)]
    assert dict(durable.items()) == {f"k{i}": {"i": i} for i in range(5)}
    durable.clear()
    assert len(durable) == 0 and list(durable.keys()) == []


def test_large_values_round_trip(durable: Any) -> None:
    """A value of several KB round-trips; in the sealed stores each record went through zstd
    and AES-GCM and says so, in the others it went through nothing."""
    durable.put("big", LARGE)
    durable.put("small", 1)
    assert durable.get("big") == LARGE and durable.get("small") == 1
    if isinstance(durable, Durable):
        raw = durable.kv.get("big")
        assert raw is not None
        sealed = bool(durable.envelope.transforms)
        assert peek(raw).transforms == (("zstd", "aes256gcm") if sealed else ())
        assert (peek(raw).key_id is not None) == sealed


def test_unserializable_value_writes_nothing(serializing_durable: Any) -> None:
    """An unserializable value raises EncodeError naming the key and keeps the previous value."""
    durable = serializing_durable
    durable.put("k", "previous")
    with pytest.raises(EncodeError, match="'k'"):
        durable.put("k", threading.Lock())
    with pytest.raises(EncodeError):
        durable.put("fresh", threading.Lock())
    assert durable.get("k") == "previous"
    assert not durable.exists("fresh") and len(durable) == 1


def test_closed_store_raises(durable: Any) -> None:
    """After close(), operations raise StoreClosedError; close is idempotent."""
    durable.close()
    durable.close()
    with pytest.raises(StoreClosedError):
        durable.put("k", 1)
    with pytest.raises(StoreClosedError):
        durable.get("k")


@pytest.mark.parametrize("writer", CODEC_NAMES)
def test_records_of_any_codec_are_read_through_their_tag(writer: str) -> None:
    """A record written with one codec is read by a Durable using another that trusts it: msgpack
    and JSON by default, pickle-family only when listed in trust=."""
    kv = InMemoryKV()
    Durable(kv, make_codec(writer)).put("k", VALUE)
    for reader in CODEC_NAMES:
        if writer in SAFE_TAGS or writer == reader:
            assert Durable(kv, make_codec(reader)).get("k") == VALUE
        else:
            with pytest.raises(UntrustedRecordError):
                Durable(kv, make_codec(reader)).get("k")
        assert Durable(kv, make_codec(reader), trust=[writer]).get("k") == VALUE


def test_corrupt_record_is_decode_error_naming_the_key(kv_backend: KVBackend,
                                                       tmp_path: Path) -> None:
    """A record that is not a valid envelope raises DecodeError naming its key, on get and items."""
    with Durable(kv_backend.open(tmp_path), MsgpackCodec()) as store:
        store.put("good", 1)
        store.kv.put("bad key", b"definitely not an envelope")
        with pytest.raises(DecodeError, match="'bad key'") as info:
            store.get("bad key")
        assert info.value.__cause__ is not None
        with pytest.raises(DecodeError, match="'bad key'"):
            dict(store.items())
        good = store.kv.get("good")
        assert good is not None
        store.kv.put("truncated", good[:-1])
        with pytest.raises(DecodeError, match="'truncated'"):
            store.get("truncated")
        assert store.get("good") == 1


def test_switching_codec_keeps_old_records_readable(tmp_path: Path) -> None:
    """A SQLite store written with pickle stays readable after reopening it with JSON that
    trusts pickle."""
    with Durable(SQLiteKV(tmp_path / "s.db"), PickleCodec()) as store:
        store.put("old", (1, frozenset({2})))
    with Durable(SQLiteKV(tmp_path / "s.db"), JSONCodec(), trust=["pickle"]) as store:
        store.put("new", [3])
        assert store.get("old") == (1, frozenset({2}))
        assert store.get("new") == [3]


def test_storage_classes_import_paths_and_sqlite_storage_defaults(tmp_path: Path) -> None:
    """The import paths ISSUE-CORE-424 names work; SQLiteStorage defaults to pickle, accepts
    codec= and keeps values across connections."""
    from doeff.storage.memory import InMemoryStorage as MemoryFromItsPath
    from doeff.storage.sqlite import SQLiteStorage

    assert MemoryFromItsPath is InMemoryStorage
    with SQLiteStorage(tmp_path / "a.db") as store:
        assert isinstance(store.codec, PickleCodec)
        store.put("k", {1: (2,)})
        assert store.get("k") == {1: (2,)}
    with SQLiteStorage(tmp_path / "b.db", codec=MsgpackCodec(), durability="full") as store:
        assert isinstance(store.codec, MsgpackCodec) and isinstance(store.kv, SQLiteKV)
    with SQLiteStorage(tmp_path / "a.db") as store:  # persists across connections
        assert store.get("k") == {1: (2,)}


def test_in_memory_storage_keeps_the_very_object_unserialized() -> None:
    """InMemoryStorage stores the very object, unserialized, even an unpicklable one."""
    store = InMemoryStorage()
    lock = threading.Lock()
    store.put("lock", lock)
    assert store.get("lock") is lock


def test_durable_exposes_kv_and_codec() -> None:
    """Durable keeps its KVStore and Codec as `.kv` and `.codec`."""
    kv, codec = InMemoryKV(), MsgpackCodec()
    store = Durable(kv, codec)
    assert store.kv is kv and store.codec is codec
    assert "InMemoryKV" in repr(store)


def test_threads_share_a_durable_store(tmp_path: Path) -> None:
    """8 threads x 200 puts through one Durable over SQLite: every value reads back."""
    store = Durable(SQLiteKV(tmp_path / "s.db"), MsgpackCodec())

    def writer(t: int) -> None:
        for i in range(200):
            store.put(f"{t}:{i}", {"t": t, "i": i})

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 1600
    assert store.get("7:199") == {"t": 7, "i": 199}
    store.close()
