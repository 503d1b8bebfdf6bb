"""The KVStore contract, run against every backend in storage_fixtures.KV_BACKENDS, and against
a namespace of each (`kv.namespace(...)`: a keyspace of its own in the same store)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storage_fixtures import KVBackend

from doeff.errors import InvalidKeyError, InvalidValueError, StorageError, StoreClosedError
from doeff.storage import KVStore

VALID_KEYS = {
    "empty": "",
    "ascii": "step:1",
    "non-ascii": "étape/日本語/🎉",
    "nul": "a\x00b",
    "10KB-ascii": "k" * 10_240,
    "10KB-non-ascii": "é" * 5_120 + "🎉",
    "separator-like": "\xff\xfe",  # code points whose UTF-8 starts with 0xC3, not raw 0xFF
}


@pytest.fixture(params=["store", "namespace"])
def kv(kv_backend: KVBackend, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[KVStore]:
    """A fresh, empty store of each backend, or a namespace of one; closed afterwards."""
    store = kv_backend.open(tmp_path)
    try:
        yield store if request.param == "store" else store.namespace("contract")
    finally:
        store.close()


def test_is_a_kvstore(kv: KVStore) -> None:
    """Every backend satisfies the runtime-checkable KVStore protocol."""
    assert isinstance(kv, KVStore)


def test_put_then_get_returns_the_value(kv: KVStore) -> None:
    """A value put under a key is returned by get."""
    kv.put("k", b"value")
    assert kv.get("k") == b"value"


def test_get_of_a_key_never_stored_is_none(kv: KVStore) -> None:
    """Get of a key never stored returns None."""
    assert kv.get("missing") is None


def test_second_put_replaces_the_value(kv: KVStore) -> None:
    """A second put under the same key replaces the value."""
    kv.put("k", b"old")
    kv.put("k", b"new")
    assert kv.get("k") == b"new"
    assert len(kv) == 1


def test_delete_removes_a_stored_key_and_says_whether_it_existed(kv: KVStore) -> None:
    """Delete returns True for a stored key and removes it, False when missing."""
    kv.put("k", b"v")
    assert kv.delete("k") is True
    assert kv.get("k") is None
    assert kv.delete("k") is False


def test_exists_is_true_only_for_stored_keys(kv: KVStore) -> None:
    """exists is True for a stored key and False otherwise."""
    kv.put("k", b"")
    assert kv.exists("k") is True
    assert kv.exists("other") is False


def test_keys_items_len_clear(kv: KVStore) -> None:
    """keys, items and len reflect the stored entries; clear removes them all."""
    data = {f"key{i}": bytes([i]) * i for i in range(20)}
    for key, value in data.items():
        kv.put(key, value)
    assert sorted(kv.keys()) == sorted(data)
    assert dict(kv.items()) == data
    assert len(kv) == 20
    kv.clear()
    assert len(kv) == 0 and list(kv.keys()) == [] and kv.get("key3") is None
    kv.put("again", b"x")
    assert list(kv.items()) == [("again", b"x")]


@pytest.mark.parametrize("key", VALID_KEYS.values(), ids=VALID_KEYS.keys())
def test_every_valid_unicode_key_works(kv: KVStore, key: str) -> None:
    """Empty, non-ASCII, NUL-bearing and 10 KB keys round-trip, and keys() returns them intact."""
    kv.put(key, b"v1")
    kv.put(key, b"v2")
    assert kv.get(key) == b"v2"
    assert kv.exists(key)
    assert list(kv.keys()) == [key]
    assert list(kv.items()) == [(key, b"v2")]
    assert len(kv) == 1
    assert kv.delete(key) is True
    assert kv.get(key) is None and len(kv) == 0


def test_long_keys_sharing_a_prefix_stay_distinct(kv: KVStore) -> None:
    """Two 10 KB keys that differ only in their last character are two entries."""
    a, b = "p" * 10_000 + "a", "p" * 10_000 + "b"
    kv.put(a, b"A")
    kv.put(b, b"B")
    assert (kv.get(a), kv.get(b)) == (b"A", b"B")
    assert sorted(kv.keys()) == [a, b]


@pytest.mark.parametrize("bad", [1, None, b"bytes-key", ("t",)], ids=repr)
def test_non_str_key_is_invalid_key_error(kv: KVStore, bad: object) -> None:
    """A key that is not a str is an InvalidKeyError (a TypeError) on every verb."""
    for call in (lambda: kv.get(bad), lambda: kv.put(bad, b"v"),  # type: ignore[arg-type]
                 lambda: kv.delete(bad), lambda: kv.exists(bad)):  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError) as info:
            call()
        assert isinstance(info.value, TypeError) and "str" in str(info.value)
    assert len(kv) == 0


def test_lone_surrogate_is_rejected(kv: KVStore) -> None:
    """A key holding a lone surrogate is rejected with InvalidKeyError and writes nothing."""
    with pytest.raises(InvalidKeyError, match="surrogate"):
        kv.put("bad\ud800key", b"v")
    with pytest.raises(InvalidKeyError):
        kv.get("\udfff")
    assert len(kv) == 0


def test_non_bytes_value_keeps_previous(kv: KVStore) -> None:
    """A put of a non-bytes value raises InvalidValueError and keeps the previous value."""
    kv.put("k", b"old")
    with pytest.raises(InvalidValueError, match="bytes"):
        kv.put("k", "a str")  # type: ignore[arg-type]
    assert kv.get("k") == b"old"


def test_bytes_like_values_are_stored_as_bytes(kv: KVStore) -> None:
    """bytearray and memoryview values are accepted and read back as bytes."""
    kv.put("a", bytearray(b"ba"))  # type: ignore[arg-type]
    kv.put("m", memoryview(b"mv"))  # type: ignore[arg-type]
    assert (kv.get("a"), kv.get("m")) == (b"ba", b"mv")
    assert type(kv.get("a")) is bytes


def test_large_value_round_trips(kv: KVStore) -> None:
    """A 4 MB value round-trips byte for byte."""
    big = bytes(range(256)) * (4 * 4096)
    kv.put("big", big)
    assert kv.get("big") == big


def test_close_is_idempotent_and_later_ops_fail(kv: KVStore) -> None:
    """close() may be called twice; every later operation raises StoreClosedError."""
    kv.put("k", b"v")
    kv.close()
    kv.close()
    for call in (lambda: kv.get("k"), lambda: kv.put("k", b"v"), lambda: kv.delete("k"),
                 lambda: kv.exists("k"), lambda: kv.keys(), lambda: kv.items(),
                 lambda: kv.clear(), lambda: len(kv)):
        with pytest.raises(StoreClosedError, match="closed"):
            call()
    assert issubclass(StoreClosedError, StorageError)


def test_context_manager_closes(kv_backend: KVBackend, tmp_path: Path) -> None:
    """Leaving a `with` block closes the store."""
    with kv_backend.open(tmp_path) as store:
        store.put("k", b"v")
    with pytest.raises(StoreClosedError):
        store.get("k")


def test_persistent_backend_keeps_data_across_close_and_reopen(
    persistent_backend: KVBackend, tmp_path: Path
) -> None:
    """A persistent backend returns, after close and reopen, what was written before."""
    with persistent_backend.open(tmp_path) as store:
        store.put("k", b"v")
        store.put("\u00e9" * 3000, b"long")
    with persistent_backend.open(tmp_path) as store:
        assert store.get("k") == b"v"
        assert store.get("\u00e9" * 3000) == b"long"
        assert len(store) == 2


def test_eight_threads_thousand_puts_each(kv: KVStore) -> None:
    """8 threads x 1,000 puts on one store: every write is present and no thread fails."""
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(1000):
                kv.put(f"t{t}:{i}", f"{t}-{i}".encode())
                if i % 100 == 0:
                    assert kv.get(f"t{t}:{i}") == f"{t}-{i}".encode()
        except BaseException as exc:  # reported below, with the thread's traceback attached
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(kv) == 8000
    assert dict(kv.items()) == {f"t{t}:{i}": f"{t}-{i}".encode()
                                for t in range(8) for i in range(1000)}


def test_put_many_writes_every_pair(kv: KVStore) -> None:
    """put_many stores each pair, replacing earlier values, long and non-ASCII keys included."""
    kv.put("a", b"old")
    pairs = [("a", b"new"), ("", b"empty"), ("\u00e9" * 3000, b"long"), ("z", b"")]
    kv.put_many(iter(pairs))
    assert sorted(kv.items()) == sorted(pairs)


def test_put_many_with_a_bad_pair_writes_nothing(kv: KVStore) -> None:
    """A batch holding one invalid pair raises and leaves the store exactly as it was."""
    kv.put("a", b"keep")
    batches: list[list[tuple[Any, Any]]] = [  # deliberately ill-typed pairs
        [("a", b"x"), ("b", "not bytes")],
        [("a", b"x"), (7, b"v")],
        [("a", b"x"), ("\ud800", b"v")],
    ]
    for bad in batches:
        with pytest.raises(StorageError):
            kv.put_many(bad)
        assert list(kv.items()) == [("a", b"keep")]


def test_records_filter_by_prefix_in_key_order(kv: KVStore) -> None:
    """records(prefix) lists (key, value, updated_at) for matching keys, sorted by key."""
    kv.put_many([("step:2", b"b"), ("other", b"o"), ("step:1", b"a"), ("st\u00e9p", b"e")])
    got = list(kv.records("step:"))
    assert [(k, v) for k, v, _ in got] == [("step:1", b"a"), ("step:2", b"b")]
    assert all(t is None or isinstance(t, float) for _, _, t in got)
    assert [k for k, _, _ in kv.records()] == sorted(["step:2", "other", "step:1", "st\u00e9p"])


@pytest.mark.parametrize(
    "prefix", ["", "a\x00", "\u00e9", "\U0001f389"], ids=["empty", "nul", "e-acute", "emoji"]
)
def test_records_prefix_with_nul_and_non_ascii(kv: KVStore, prefix: str) -> None:
    """Prefixes holding NUL or non-ASCII characters select the same keys on every backend."""
    keys = ["a\x00b", "a\x00", "a", "ab", "\u00e9t\u00e9", "\u00e9", "e", "\U0001f389!", "x", ""]
    kv.put_many([(k, k.encode()) for k in keys])
    assert [k for k, _, _ in kv.records(prefix)] == sorted(k for k in keys if k.startswith(prefix))
