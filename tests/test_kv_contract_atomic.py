"""The conditional-write part of the KVStore contract (put_if_absent, compare_and_swap,
compare_and_delete, delete_many), run against every backend in storage_fixtures.KV_BACKENDS."""

from __future__ import annotations

import threading

import pytest

from doeff.errors import InvalidKeyError, InvalidValueError
from doeff.storage.base import AtomicKVStore, KVStore

LONG = "k" * 10_240  # stored under a hash by LMDB: the conditions must still see the real key
KEYS = {"short": "lease:1", "long": LONG, "empty": "", "non-ascii": "étape/日本語"}


def test_every_backend_is_an_atomic_kvstore(kv: KVStore) -> None:
    """Every backend has the conditional writes claims need."""
    assert isinstance(kv, AtomicKVStore)


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_put_if_absent_stores_only_when_missing(kv: AtomicKVStore, key: str) -> None:
    """put_if_absent stores and answers True on a missing key, and leaves a present one alone."""
    assert kv.put_if_absent(key, b"first") is True
    assert kv.put_if_absent(key, b"second") is False
    assert kv.get(key) == b"first"


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_compare_and_swap_replaces_only_the_expected_bytes(kv: AtomicKVStore, key: str) -> None:
    """compare_and_swap replaces the value only when it is exactly the expected one."""
    assert kv.compare_and_swap(key, b"a", b"b") is False  # missing
    assert kv.get(key) is None
    kv.put(key, b"a")
    assert kv.compare_and_swap(key, b"a-not", b"b") is False
    assert kv.get(key) == b"a"
    assert kv.compare_and_swap(key, b"a", b"b") is True
    assert kv.get(key) == b"b"
    assert kv.compare_and_swap(key, b"a", b"c") is False  # a stale expectation
    assert kv.get(key) == b"b"


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_compare_and_delete_removes_only_the_expected_bytes(kv: AtomicKVStore, key: str) -> None:
    """compare_and_delete removes the key only while it holds exactly the expected value."""
    assert kv.compare_and_delete(key, b"a") is False
    kv.put(key, b"a")
    assert kv.compare_and_delete(key, b"b") is False
    assert kv.get(key) == b"a"
    assert kv.compare_and_delete(key, b"a") is True
    assert kv.get(key) is None
    assert kv.compare_and_delete(key, b"a") is False


def test_long_keys_sharing_a_hash_prefix_stay_apart_in_conditions(kv: AtomicKVStore) -> None:
    """Conditional writes on one long key never act on another long key."""
    a, b = LONG + "a", LONG + "b"
    assert kv.put_if_absent(a, b"1") and kv.put_if_absent(b, b"1")
    assert kv.compare_and_swap(a, b"1", b"2")
    assert kv.get(b) == b"1"
    assert kv.compare_and_delete(b, b"1")
    assert kv.get(a) == b"2" and kv.get(b) is None


def test_delete_many_removes_the_keys_given_and_counts_them(kv: AtomicKVStore) -> None:
    """delete_many removes every key given, ignores missing ones, and counts what it removed."""
    for i in range(10):
        kv.put(f"k{i}", b"v")
    kv.put(LONG, b"v")
    assert kv.delete_many(["k1", "k3", "missing", LONG, "k3"]) == 3
    assert sorted(kv.keys()) == sorted(f"k{i}" for i in range(10) if i not in (1, 3))
    assert kv.delete_many([]) == 0


def test_delete_many_with_a_bad_key_deletes_nothing(kv: AtomicKVStore) -> None:
    """A key that is not a valid str anywhere in the batch refuses the whole batch."""
    kv.put("a", b"v")
    with pytest.raises(InvalidKeyError):
        kv.delete_many(["a", 3])  # type: ignore[list-item]
    assert kv.get("a") == b"v"


def test_conditional_writes_refuse_non_bytes(kv: AtomicKVStore) -> None:
    """Values and expectations must be bytes, as for put."""
    with pytest.raises(InvalidValueError):
        kv.put_if_absent("k", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        kv.compare_and_swap("k", "a", b"b")  # type: ignore[arg-type]
    assert kv.get("k") is None


def test_one_of_many_threads_wins_put_if_absent(kv: AtomicKVStore) -> None:
    """Of eight threads racing put_if_absent on each of 20 keys, exactly one wins each key."""
    wins: list[tuple[str, int]] = []
    barrier = threading.Barrier(8)

    def race(me: int) -> None:
        barrier.wait()
        for i in range(20):
            if kv.put_if_absent(f"claim:{i}", str(me).encode()):
                wins.append((f"claim:{i}", me))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for k, _ in wins) == sorted(f"claim:{i}" for i in range(20))
    for key, me in wins:
        assert kv.get(key) == str(me).encode()


def test_compare_and_swap_counter_loses_no_increment(kv: AtomicKVStore) -> None:
    """Four threads incrementing a counter by compare-and-swap retries end at the exact sum."""
    kv.put("n", b"0")

    def bump() -> None:
        for _ in range(50):
            while True:
                current = kv.get("n")
                assert current is not None
                if kv.compare_and_swap("n", current, str(int(current) + 1).encode()):
                    break

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kv.get("n") == b"200"
