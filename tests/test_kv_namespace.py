"""Namespaces: a second keyspace in the same store, which the store's own verbs never see and
which never sees them (run records live in one); every backend."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest
from storage_fixtures import KVBackend

from doeff.errors import InvalidOptionError, ReadOnlyStoreError, StoreClosedError
from doeff.storage import LMDBKV, KVStore, SQLiteKV


def _fill(kv: KVStore, tag: str) -> None:
    kv.put("shared", tag.encode())
    kv.put(f"only-{tag}", b"x")
    kv.put("k" * 3000, tag.encode())  # a long key: hashed by LMDB and PostgreSQL


def test_a_namespace_and_its_store_never_see_each_others_keys(kv: KVStore) -> None:
    """keys(), items(), len(), records() and get() of each side show only its own records,
    though both hold the same key names."""
    space = kv.namespace("runs")
    _fill(kv, "cache")
    _fill(space, "runs")
    assert sorted(kv.keys()) == sorted(["shared", "only-cache", "k" * 3000])
    assert sorted(space.keys()) == sorted(["shared", "only-runs", "k" * 3000])
    assert kv.get("shared") == b"cache" and space.get("shared") == b"runs"
    assert kv.get("only-runs") is None and space.get("only-cache") is None
    assert len(kv) == 3 and len(space) == 3
    assert dict(kv.items())["k" * 3000] == b"cache"
    assert [k for k, _, _ in space.records("only")] == ["only-runs"]


def test_clearing_one_side_leaves_the_other_whole(kv: KVStore) -> None:
    """clear() of the store keeps the namespace's records, and clear() of the namespace keeps
    the store's."""
    space = kv.namespace("runs")
    _fill(kv, "cache")
    _fill(space, "runs")
    kv.clear()
    assert len(kv) == 0 and list(kv.keys()) == []
    assert space.get("shared") == b"runs" and len(space) == 3
    _fill(kv, "cache")
    space.clear()
    assert len(space) == 0 and kv.get("shared") == b"cache" and len(kv) == 3


def test_two_namespaces_are_apart_and_a_name_reaches_the_same_data(kv: KVStore) -> None:
    """Namespaces of different names do not share keys; asking again by name finds the data."""
    kv.namespace("runs").put("r", b"1")
    kv.namespace("other").put("r", b"2")
    assert kv.namespace("runs").get("r") == b"1"
    assert kv.namespace("other").get("r") == b"2"


def test_namespace_records_survive_close_and_reopen(persistent_backend: KVBackend,
                                                    tmp_path: Path) -> None:
    """A namespace lives in the store's file, environment or database: a new handle sees it."""
    with persistent_backend.open(tmp_path) as kv:
        kv.namespace("runs").put("run:1", b"record")
        kv.put("step", b"value")
    with persistent_backend.open(tmp_path) as kv:
        assert kv.namespace("runs").get("run:1") == b"record"
        assert list(kv.keys()) == ["step"]


@pytest.mark.parametrize("bad", ["", "Runs", "1st", "a-b", "x" * 32, "runs ", None, 3])
def test_a_name_that_cannot_name_a_table_is_refused(kv: KVStore, bad: object) -> None:
    """Names are lowercase identifiers of at most 31 characters; anything else is an
    InvalidOptionError saying what a name may be."""
    with pytest.raises(InvalidOptionError, match="namespace name"):
        kv.namespace(bad)  # type: ignore[arg-type]


def test_closing_the_store_closes_its_namespaces(kv_backend: KVBackend, tmp_path: Path) -> None:
    """A namespace is part of its store: after the store is closed it refuses operations."""
    kv = kv_backend.open(tmp_path)
    space = kv.namespace("runs")
    space.put("a", b"1")
    kv.close()
    with pytest.raises(StoreClosedError):
        space.get("a")


def _readonly(kind: str, tmp_path: Path) -> tuple[KVStore, KVStore]:
    """A writable and a read-only handle on one new store of `kind`."""
    if kind == "sqlite":
        path = tmp_path / "ro.db"
        writer: KVStore = SQLiteKV(path)
        writer.put("step", b"v")
        return writer, SQLiteKV(path, readonly=True)
    path = tmp_path / "ro.lmdb"
    writer = LMDBKV(path)
    writer.put("step", b"v")
    return writer, LMDBKV(path, readonly=True)


@pytest.mark.parametrize("kind", ["sqlite", "lmdb"])
def test_a_read_only_store_without_the_namespace_reads_it_as_empty_until_created(
        kind: str, tmp_path: Path) -> None:
    """Opening read-only never creates the namespace: it reads as empty and refuses writes,
    then shows the records once a writer has created it."""
    writer, reader = _readonly(kind, tmp_path)
    with writer, reader:
        space = reader.namespace("runs")
        assert list(space.keys()) == [] and space.get("r") is None and len(space) == 0
        with pytest.raises(ReadOnlyStoreError):
            space.put("r", b"1")
        writer.namespace("runs").put("r", b"1")
        assert space.get("r") == b"1" and list(space.keys()) == ["r"]


def test_postgres_read_only_store_sees_a_namespace_created_later(tmp_path: Path) -> None:
    """The same for PostgreSQL: no table is created by a reader; the writer's table (registered
    in doeff_meta) is found later."""
    import pg_server

    reason = pg_server.unavailable()
    if reason is not None:
        pytest.skip(reason)
    from doeff.storage import PostgresKV

    writer = pg_server.open_kv(tmp_path)
    with writer, PostgresKV(writer.dsn, table=writer.table, readonly=True) as reader:
        assert reader.namespace("runs").get("r") is None
        space = reader.namespace("runs")
        assert space.get("r") is None and len(space) == 0
        writer.namespace("runs").put("r", b"1")
        assert space.get("r") == b"1"
        assert list(reader.keys()) == []


def test_an_lmdb_store_written_before_namespaces_opens_and_gains_one(tmp_path: Path) -> None:
    """An environment made without named databases (max_dbs=0, as doeff did before namespaces)
    opens as before; a namespace added to it leaves check(), len() and the keys clean."""
    path = tmp_path / "old.lmdb"
    with LMDBKV(path) as kv:
        kv.put("step", b"v")
    # The environment as an older doeff left it: reopened by LMDB itself with no named dbs.
    env = lmdb.open(str(path), max_dbs=0)
    with env.begin() as txn:
        assert txn.get(b"step") == b"v"
    env.close()
    with LMDBKV(path) as kv:
        kv.namespace("runs").put("r", b"1")
        assert kv.check() == [] and len(kv) == 1 and list(kv.keys()) == ["step"]
        kv.clear()
        assert len(kv) == 0 and kv.namespace("runs").get("r") == b"1"


def test_namespaces_do_not_nest(kv: KVStore) -> None:
    """A namespace has no namespaces of its own (InvalidOptionError) on the backends that keep
    them as tables or databases; in memory a nested one is simply another dict."""
    space = kv.namespace("runs")
    if type(space).__name__ == "InMemoryKV":
        space.namespace("more").put("a", b"1")
        assert space.get("a") is None
        return
    with pytest.raises(InvalidOptionError, match="do not nest"):
        space.namespace("more")
