"""What opening a path does: a path is a file name (never a SQLite URI), and only an explicit
create turns something that exists into a doeff store."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import lmdb
import pytest

from doeff.errors import IncompatibleStoreError, InvalidOptionError
from doeff.storage import LMDBKV, SQLiteKV
from doeff.storage.sqlite import APPLICATION_ID

ROOT = Path(__file__).resolve().parents[1]
FORK = mp.get_context("fork")


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_in_new_process(path: str, key: str) -> str:
    """`SQLiteKV(path).get(key)` in a fresh interpreter, as its repr (b'...' or None)."""
    code = ("import sys; from doeff.storage import SQLiteKV; "
            "print(SQLiteKV(sys.argv[1]).get(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, path, key], capture_output=True,
                          text=True, timeout=60, check=False, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("name", ["file:wf.db?mode=memory", "file:x.db?nolock=1",
                                  "file:y.db", "odd?name#with%41marks.db"])
def test_a_sqlite_path_is_a_file_name_never_a_uri(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path that looks like a SQLite URI (or holds ?, # and %) names a file of exactly that
    name: what is put there is on disk, read back by another process, and nothing else is made."""
    monkeypatch.chdir(tmp_path)
    with SQLiteKV(name) as kv:
        kv.put("k", b"durable")
    assert os.path.isfile(tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == [name]  # WAL files removed on close, nothing else
    assert read_in_new_process(name, "k") == "b'durable'"


def test_the_empty_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLiteKV("") raises InvalidOptionError (SQLite would give each connection a private
    temporary database) and creates nothing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidOptionError, match="empty path"):
        SQLiteKV("")
    assert os.listdir(tmp_path) == []


def test_memory_keeps_its_meaning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLiteKV(":memory:") is still one in-memory database and writes no file."""
    monkeypatch.chdir(tmp_path)
    with SQLiteKV(":memory:") as kv:
        kv.put("k", b"v")
        assert kv.get("k") == b"v"
    assert os.listdir(tmp_path) == []


def _chdir_then_use(kv: SQLiteKV, elsewhere: str) -> None:
    os.chdir(elsewhere)
    assert kv.get("k") == b"v"  # the child's first connection is a new one
    kv.put("from-child", b"c")


def test_a_relative_path_keeps_naming_the_same_file_after_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store opened by a relative path keeps using that file when the process changes
    directory before opening new connections (here: a forked child, which opens its own)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    kv = SQLiteKV("rel.db")
    kv.put("k", b"v")
    proc = FORK.Process(target=_chdir_then_use, args=(kv, str(tmp_path / "b")))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert kv.get("from-child") == b"c"
    assert os.listdir(tmp_path / "b") == []
    kv.close()


# -- only an explicit create makes a store ------------------------------------------------------


def _empty_sqlite_database(path: Path) -> None:
    """A valid SQLite database with no tables and application_id 0, as other tools leave."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE scratch (x)")
    conn.execute("DROP TABLE scratch")
    conn.commit()
    conn.close()


def test_an_empty_sqlite_database_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    """Opening an existing empty SQLite database (no tables, application_id 0) raises
    IncompatibleStoreError naming create=True and changes no byte of it."""
    path = tmp_path / "empty.db"
    _empty_sqlite_database(path)
    before = digest(path)
    with pytest.raises(IncompatibleStoreError, match="create=True"):
        SQLiteKV(path)
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["empty.db"]


@pytest.mark.parametrize("table", [
    "CREATE TABLE doeff_kv (key, value, updated_at)",  # untyped: keys of any type
    "CREATE TABLE doeff_kv (key TEXT NOT NULL, value BLOB NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE doeff_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, "
    "updated_at REAL NOT NULL, extra TEXT)",
], ids=["untyped", "no-primary-key", "extra-column"])
def test_a_file_with_doeffs_id_but_another_table_is_refused(tmp_path: Path, table: str) -> None:
    """A SQLite file that claims doeff's application id but holds a doeff_kv table doeff did not
    make (which could hand out non-str keys or two values for one key) is refused untouched."""
    path = tmp_path / "forged.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(table)
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(IncompatibleStoreError, match="a table doeff did not make"):
        SQLiteKV(path)
    assert digest(path) == before


def test_a_store_with_a_trigger_is_refused(tmp_path: Path) -> None:
    """A trigger in a doeff store could rewrite what a put stores: the file is refused."""
    path = tmp_path / "trig.db"
    SQLiteKV(path).close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER t AFTER INSERT ON doeff_kv BEGIN "
                 "UPDATE doeff_kv SET value = x'00' WHERE key = new.key; END")
    conn.commit()
    conn.close()
    with pytest.raises(IncompatibleStoreError, match="1 triggers"):
        SQLiteKV(path)


def test_create_true_makes_an_empty_sqlite_database_a_store(tmp_path: Path) -> None:
    """SQLiteKV(path, create=True) turns an existing empty SQLite database into a store."""
    path = tmp_path / "empty.db"
    _empty_sqlite_database(path)
    with SQLiteKV(path, create=True) as kv:
        kv.put("k", b"v")
    with SQLiteKV(path) as kv:
        assert kv.get("k") == b"v"


def test_a_zero_byte_file_becomes_a_sqlite_store(tmp_path: Path) -> None:
    """A zero-byte file (e.g. from `touch`) is a new store, as a missing path is."""
    path = tmp_path / "touched.db"
    path.touch()
    with SQLiteKV(path) as kv:
        kv.put("k", b"v")
    with SQLiteKV(path) as kv:
        assert kv.get("k") == b"v"


def test_an_empty_lmdb_environment_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    """Opening an LMDB environment someone else created, with no records, raises
    IncompatibleStoreError naming create=True and leaves its data file byte-identical."""
    path = tmp_path / "theirs"
    lmdb.open(str(path), map_size=1 << 20).close()
    before = digest(path / "data.mdb")
    with pytest.raises(IncompatibleStoreError, match="create=True"):
        LMDBKV(path)
    assert digest(path / "data.mdb") == before
    with LMDBKV(path, create=True) as kv:
        kv.put("k", b"v")
    with LMDBKV(path) as kv:
        assert kv.get("k") == b"v"


def test_an_empty_directory_becomes_an_lmdb_store(tmp_path: Path) -> None:
    """An existing empty directory (no data.mdb yet) is a new LMDB store, as a missing one is."""
    (tmp_path / "dir").mkdir()
    with LMDBKV(tmp_path / "dir") as kv:
        kv.put("k", b"v")
    with LMDBKV(tmp_path / "dir") as kv:
        assert kv.get("k") == b"v"


def _create_lmdb_at_once(path: str, start: EventType, worker: int) -> None:
    start.wait()
    with LMDBKV(path) as kv:
        kv.put(f"w{worker}", b"x")


def test_processes_creating_the_same_new_lmdb_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Eight processes creating the same new LMDB store at one moment all succeed: none of them
    takes another's half-made environment for a foreign one."""
    for attempt in range(3):
        path = str(tmp_path / f"new{attempt}")
        start = FORK.Event()
        procs = [FORK.Process(target=_create_lmdb_at_once, args=(path, start, w))
                 for w in range(8)]
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(60)
        assert [p.exitcode for p in procs] == [0] * 8
        with LMDBKV(path) as kv:
            assert sorted(kv.keys()) == [f"w{w}" for w in range(8)]
