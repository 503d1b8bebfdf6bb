"""What is particular to SQLiteKV and LMDBKV: foreign files, schemas, map growth, handles."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import lmdb
import pytest

from doeff.errors import IncompatibleStoreError, StorageError
from doeff.storage import LMDBKV, SQLiteKV
from doeff.storage.sqlite import APPLICATION_ID, SCHEMA_VERSION


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_non_doeff_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A SQLite file with someone else's tables raises IncompatibleStoreError, bytes untouched."""
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()
    before = digest(path)
    with pytest.raises(IncompatibleStoreError, match="not a doeff store") as info:
        SQLiteKV(path)
    assert str(path) in str(info.value)
    assert digest(path) == before
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_file_that_is_not_sqlite_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A file that is not a database at all raises IncompatibleStoreError and is not modified."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some text, not a database\n" * 200)
    before = digest(path)
    with pytest.raises(IncompatibleStoreError):
        SQLiteKV(path)
    assert digest(path) == before


def test_newer_schema_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A doeff store whose schema version is newer than ours is refused and not modified."""
    path = tmp_path / "future.db"
    with SQLiteKV(path) as kv:
        kv.put("k", b"v")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = digest(path)
    with pytest.raises(IncompatibleStoreError, match="newer"):
        SQLiteKV(path)
    assert digest(path) == before


def test_sqlite_header_records_application_and_schema(tmp_path: Path) -> None:
    """A new SQLite store records doeff's application_id and schema version, in WAL mode."""
    SQLiteKV(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_records_updated_at(tmp_path: Path) -> None:
    """Each row carries the time of its last put (shown by `doeff cache ls`)."""
    with SQLiteKV(tmp_path / "s.db") as kv:
        before = time.time()
        kv.put("a", b"123")
        ((key, value, updated),) = kv.records()
    assert (key, value) == ("a", b"123") and updated is not None
    assert before - 1 <= updated <= time.time() + 1


def test_sqlite_memory_is_one_database_for_all_threads() -> None:
    """SQLiteKV(":memory:") shows a put made on one thread to every other thread."""
    with SQLiteKV(":memory:") as kv:
        thread = threading.Thread(target=kv.put, args=("from-thread", b"x"))
        thread.start()
        thread.join()
        assert kv.get("from-thread") == b"x"
    with SQLiteKV(":memory:") as other:
        assert other.get("from-thread") is None  # two ":memory:" stores are two databases


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_durability_settings_open(tmp_path: Path, durability: str) -> None:
    """Both durability settings open, write and read on SQLite and LMDB."""
    with SQLiteKV(tmp_path / "s.db", durability=durability) as s, \
            LMDBKV(tmp_path / "l", durability=durability) as lm:
        for kv in (s, lm):
            kv.put("k", b"v")
            assert kv.get("k") == b"v"


def test_unknown_durability_is_a_value_error(tmp_path: Path) -> None:
    """A durability other than "normal" or "full" is refused up front."""
    with pytest.raises(ValueError, match="durability"):
        SQLiteKV(tmp_path / "s.db", durability="fast")
    with pytest.raises(ValueError, match="durability"):
        LMDBKV(tmp_path / "l", durability="fast")


def test_two_sqlite_handles_on_one_file(tmp_path: Path) -> None:
    """Two SQLiteKV on the same file in one process see each other's writes."""
    with SQLiteKV(tmp_path / "s.db") as a, SQLiteKV(tmp_path / "s.db") as b:
        a.put("k", b"from a")
        assert b.get("k") == b"from a"


def test_two_lmdb_handles_on_one_directory(tmp_path: Path) -> None:
    """Two LMDBKV on one directory share it; closing one leaves the other working."""
    a, b = LMDBKV(tmp_path / "l"), LMDBKV(tmp_path / "l")
    a.put("k", b"from a")
    assert b.get("k") == b"from a"
    a.close()
    b.put("k2", b"still open")
    assert b.get("k2") == b"still open"
    b.close()
    with LMDBKV(tmp_path / "l") as c:
        assert len(c) == 2


def test_lmdb_map_grows_instead_of_map_full(tmp_path: Path) -> None:
    """With a 64 KB map, writing megabytes grows the map instead of raising MapFullError."""
    with LMDBKV(tmp_path / "l", map_size=64 * 1024) as kv:
        for i in range(40):
            kv.put(f"k{i}", bytes([i]) * 100_000)
        assert all(kv.get(f"k{i}") == bytes([i]) * 100_000 for i in range(40))


def test_lmdb_adopts_a_map_grown_by_another_handle_process(tmp_path: Path) -> None:
    """A store keeps working after another process grew the map beyond its own size."""
    import multiprocessing as mp

    kv = LMDBKV(tmp_path / "l", map_size=64 * 1024)
    kv.put("first", b"1")

    def grow() -> None:
        with LMDBKV(tmp_path / "l", map_size=64 * 1024) as child:
            for i in range(30):
                child.put(f"big{i}", b"x" * 100_000)

    proc = mp.get_context("fork").Process(target=grow)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert kv.get("big29") == b"x" * 100_000
    kv.put("after", b"2")
    assert len(kv) == 32
    kv.close()


def test_lmdb_growth_while_other_threads_read(tmp_path: Path) -> None:
    """Readers on other threads keep getting right answers while a writer grows the map."""
    kv = LMDBKV(tmp_path / "l", map_size=64 * 1024)
    kv.put("stable", b"s")
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0, 0, 0]
    reading = threading.Barrier(4)

    def reader(index: int) -> None:
        try:
            reading.wait(30)
            while not stop.is_set():
                assert kv.get("stable") == b"s"
                reads[index] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    reading.wait(30)  # every reader is about to read before the map starts growing
    for i in range(30):
        kv.put(f"big{i}", b"y" * 100_000)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(n > 0 for n in reads), reads
    kv.close()


def test_non_doeff_lmdb_environment_is_refused(tmp_path: Path) -> None:
    """An LMDB environment written by someone else raises IncompatibleStoreError, data intact."""
    env = lmdb.open(str(tmp_path / "theirs"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"their-key", b"their-value")
    env.close()
    before = digest(tmp_path / "theirs" / "data.mdb")
    with pytest.raises(IncompatibleStoreError, match="not a doeff store"):
        LMDBKV(tmp_path / "theirs")
    assert digest(tmp_path / "theirs" / "data.mdb") == before
    LMDBKV(tmp_path / "fresh").close()  # the refused open left no handle behind


def test_lmdb_after_fork_child_reads_and_writes(tmp_path: Path) -> None:
    """A forked child uses the store its parent opened; the parent then sees the child's write."""
    import multiprocessing as mp

    kv = LMDBKV(tmp_path / "l")
    kv.put("parent", b"p")

    def child() -> None:
        assert kv.get("parent") == b"p"
        kv.put("child", b"c")

    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert kv.get("child") == b"c"
    kv.put("parent-again", b"p2")
    assert len(kv) == 3
    kv.close()


def test_storage_errors_name_the_store(tmp_path: Path) -> None:
    """A backend failure is a StorageError whose message names the store's path."""
    missing_dir = tmp_path / "no" / "such" / "dir" / "s.db"
    with pytest.raises(StorageError) as info:
        SQLiteKV(missing_dir)
    assert str(missing_dir) in str(info.value) and info.value.__cause__ is not None
