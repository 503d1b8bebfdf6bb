"""Every failure a store meets is a DoeffError naming the store, and the store survives it.

Each case feeds one thing an audit found raising a raw exception (a key that is not UTF-8, a
damaged page, a garbage schema marker, a put racing close(), a malformed argument) and checks
the error's class, that it names the store, and that the store still opens with its data.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import pg_server
import pytest

from doeff.errors import (
    CorruptStoreError,
    IncompatibleStoreError,
    InvalidKeyError,
    InvalidValueError,
    StoreClosedError,
)
from doeff.storage import LMDBKV, KVStore, SQLiteKV

NOT_UTF8 = b"bad-\xff\xfe-key"


# -- arguments every backend checks -------------------------------------------------------------


@pytest.mark.parametrize("prefix", [None, 1, b"k", "\ud800"], ids=repr)
def test_a_bad_records_prefix_is_invalid_key_error(kv: KVStore, prefix: object) -> None:
    """records() with a prefix that is not a valid Unicode str raises InvalidKeyError naming
    the store, and the store keeps its data."""
    kv.put("k", b"v")
    with pytest.raises(InvalidKeyError, match="prefix") as info:
        kv.records(prefix)  # type: ignore[arg-type]
    assert repr(kv) in str(info.value)
    assert [(k, v) for k, v, _ in kv.records("")] == [("k", b"v")]


@pytest.mark.parametrize("items", [
    [("a", b"1"), ("b",)], [("a", b"1", b"extra")], ["ab"], [1], 5, [("a", b"1"), None],
], ids=repr)
def test_a_malformed_put_many_item_is_invalid_value_error(kv: KVStore, items: object) -> None:
    """put_many() with an item that is not a (key, value) pair, or with no iterable at all,
    raises InvalidValueError naming the store and writes nothing."""
    kv.put("kept", b"v")
    with pytest.raises(InvalidValueError, match="pair") as info:
        kv.put_many(items)  # type: ignore[arg-type]
    assert repr(kv) in str(info.value)
    assert dict(kv.items()) == {"kept": b"v"}


# -- SQLite: failures while rows are fetched ----------------------------------------------------


def test_sqlite_key_that_is_not_utf8_is_corrupt_store_error(tmp_path: Path) -> None:
    """A row whose key is not UTF-8 (written by another tool) makes keys(), items() and
    records() raise CorruptStoreError naming the store; other keys still read afterwards."""
    path = tmp_path / "s.db"
    with SQLiteKV(path) as kv:
        kv.put("good", b"v")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO doeff_kv VALUES (CAST(? AS TEXT), x'00', 0)", (NOT_UTF8,))
    conn.commit()
    conn.close()
    with SQLiteKV(path) as kv:
        for read in (kv.keys, kv.items, kv.records):
            with pytest.raises(CorruptStoreError, match="UTF-8") as info:
                read()
            assert str(path) in str(info.value)
        assert kv.get("good") == b"v"
    with SQLiteKV(path) as kv:
        assert kv.get("good") == b"v"


def _damage_a_table_leaf(path: Path) -> None:
    """Overwrite the cells of the last leaf page of doeff_kv's table with garbage, so that a
    scan meets it after it has returned rows from the pages before it."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    leaves = [page * page_size for page in range(1, len(data) // page_size)
              if data[page * page_size] == 0x0D]  # table b-tree leaf pages
    assert len(leaves) > 2
    start = leaves[-1]
    data[start + 8: start + page_size] = bytes([0xA5]) * (page_size - 8)
    path.write_bytes(bytes(data))


def test_sqlite_damaged_page_while_fetching_is_corrupt_store_error(tmp_path: Path) -> None:
    """A damaged table page met while rows are fetched makes items() and records() raise
    CorruptStoreError naming the store (keys() and len(), answered from the intact index, may
    still work); the store still opens, and every key reads back its own value or
    CorruptStoreError."""
    path = tmp_path / "s.db"
    data = {f"key:{i:04d}": os.urandom(300) for i in range(200)}
    with SQLiteKV(path) as kv:
        kv.put_many(data.items())
    _damage_a_table_leaf(path)
    with SQLiteKV(path) as kv:
        for read in (kv.items, kv.records):
            with pytest.raises(CorruptStoreError, match="damaged") as info:
                read()
            assert str(path) in str(info.value)
        with contextlib.suppress(CorruptStoreError):
            kv.keys()
        with contextlib.suppress(CorruptStoreError):
            len(kv)
    readable = 0
    with SQLiteKV(path) as kv:
        for key, value in data.items():
            try:
                got = kv.get(key)
            except CorruptStoreError:
                continue
            assert got in (value, None)
            readable += got == value
    assert readable > 100


# -- LMDB -------------------------------------------------------------------------------------


def _raw_put(path: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def test_lmdb_key_that_is_not_utf8_is_corrupt_store_error(tmp_path: Path) -> None:
    """A record whose key is not UTF-8 makes items(), keys() and records() raise
    CorruptStoreError naming the store; the other keys still read."""
    with LMDBKV(tmp_path / "l") as kv:
        kv.put("good", b"v")
    _raw_put(tmp_path / "l", NOT_UTF8, b"x")
    with LMDBKV(tmp_path / "l") as kv:
        for read in (kv.items, kv.keys, kv.records):
            with pytest.raises(CorruptStoreError, match="UTF-8") as info:
                read()
            assert str(tmp_path / "l") in str(info.value)
        assert kv.get("good") == b"v"


@pytest.mark.parametrize("marker", [b"garbage", b"", b"\xff\xfe", b"1.5"], ids=repr)
def test_lmdb_garbage_schema_marker_is_incompatible_store_error(
    tmp_path: Path, marker: bytes
) -> None:
    """A schema marker that is not a version number raises IncompatibleStoreError (not a
    ValueError) and leaves the data file byte-identical."""
    with LMDBKV(tmp_path / "l") as kv:
        kv.put("good", b"v")
    _raw_put(tmp_path / "l", b"\xfedoeff-schema", marker)
    before = (tmp_path / "l" / "data.mdb").read_bytes()
    with pytest.raises(IncompatibleStoreError, match="schema marker") as info:
        LMDBKV(tmp_path / "l")
    assert str(tmp_path / "l") in str(info.value)
    assert (tmp_path / "l" / "data.mdb").read_bytes() == before


def _until_closed(work: Callable[[str], object], label: str, done: list[str],
                  errors: list[BaseException]) -> None:
    """Call work(label + "0"), work(label + "1"), ... until the store is closed; note each
    call that returned."""
    try:
        for i in range(10_000):
            work(f"{label}{i}")
            done.append(f"{label}{i}")
    except StoreClosedError:
        pass
    except BaseException as exc:  # the finding: anything but StoreClosedError
        errors.append(exc)


def test_lmdb_operations_racing_close_raise_store_closed_error(tmp_path: Path) -> None:
    """Two threads putting values that grow the map, and two reading, all racing close() end
    with StoreClosedError, never a raw lmdb error; every put that returned is stored, and the
    directory opens again in the same process (close() left no environment behind)."""
    rng = random.Random(12)
    for trial in range(60):
        path = tmp_path / f"l{trial}"
        kv = LMDBKV(path, map_size=32 * 1024)
        puts: list[str] = []
        errors: list[BaseException] = []
        work: list[tuple[Callable[[str], object], str, list[str]]] = [
            (lambda key, kv=kv: kv.put(key, b"x" * 20_000), "a", puts),  # type: ignore[misc]
            (lambda key, kv=kv: kv.put(key, b"x" * 20_000), "b", puts),  # type: ignore[misc]
            (lambda key, kv=kv: kv.get(key), "a", []),  # type: ignore[misc]
            (lambda key, kv=kv: kv.items(), "", []),  # type: ignore[misc]
        ]
        threads = [threading.Thread(target=_until_closed, args=(*w, errors)) for w in work]
        for thread in threads:
            thread.start()
        time.sleep(rng.random() * 0.02)
        kv.close()
        for thread in threads:
            thread.join(60)
        assert errors == [], errors
        with LMDBKV(path) as again:
            assert all(again.get(key) == b"x" * 20_000 for key in puts)


# -- PostgreSQL -------------------------------------------------------------------------------


def test_postgres_key_that_is_not_utf8_is_corrupt_store_error(tmp_path: Path) -> None:
    """A row whose key bytes are not UTF-8 (inserted by SQL) makes keys(), items() and
    records() raise CorruptStoreError naming the table; other keys still read."""
    server = pg_server.require_server()
    import psycopg

    from doeff.storage.postgres import PostgresKV

    table = pg_server.table_for(tmp_path)
    with PostgresKV(server.dsn, table=table) as kv:
        kv.put("good", b"v")
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} (key_hash, key, value) VALUES "
                         "(sha256(%s), %s, 'x')", (NOT_UTF8, NOT_UTF8))
        for read in (kv.keys, kv.items, kv.records):
            with pytest.raises(CorruptStoreError, match="UTF-8") as info:
                read()
            assert table in str(info.value)
        assert kv.get("good") == b"v"

