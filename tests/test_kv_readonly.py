"""readonly=True: reads work on read-only media, every write raises ReadOnlyStoreError.

Read-only media are a real read-only bind mount in a private mount namespace (`unshare -m`,
as tests/test_storage_full.py does for a full disk); that needs root, which CI has.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pg_server
import pytest

from doeff.errors import IncompatibleStoreError, ReadOnlyStoreError, StorageError
from doeff.storage import LMDBKV, KVStore, SQLiteKV

ROOT = Path(__file__).resolve().parents[1]
DATA = {"a": b"1", "b": b"22", "long:" + "x" * 600: b"333"}

OPENERS: dict[str, Callable[..., KVStore]] = {
    "sqlite": lambda d, **kw: SQLiteKV(d / "store.db", **kw),
    "lmdb": lambda d, **kw: LMDBKV(d / "store.lmdb", **kw),
}


def _fill(kv: KVStore) -> None:
    for key, value in DATA.items():
        kv.put(key, value)


def _writes(kv: KVStore) -> dict[str, Callable[[], object]]:
    return {"put": lambda: kv.put("a", b"new"), "delete": lambda: kv.delete("a"),
            "clear": kv.clear, "put_many": lambda: kv.put_many([("n", b"v")])}


def _tree_digest(directory: Path) -> dict[str, str]:
    """SHA-256 of each data file under `directory`: not LMDB's lock file or SQLite's WAL index,
    which readers write, nor an empty WAL, which a SQLite reader may create."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "lock.mdb"
            and not p.name.endswith("-shm")
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


@pytest.mark.parametrize("backend", OPENERS)
def test_readonly_reads_and_refuses_every_write(backend: str, tmp_path: Path) -> None:
    """A store opened with readonly=True answers every read; put, delete, clear and put_many
    raise ReadOnlyStoreError and the store's data files keep every byte."""
    with OPENERS[backend](tmp_path) as kv:
        _fill(kv)
    before = _tree_digest(tmp_path)
    with OPENERS[backend](tmp_path, readonly=True) as kv:
        assert dict(kv.items()) == DATA and len(kv) == 3 and kv.exists("b")
        assert [k for k, _, _ in kv.records("long:")] == ["long:" + "x" * 600]
        for name, write in _writes(kv).items():
            with pytest.raises(ReadOnlyStoreError, match="read-only") as info:
                write()
            assert name in str(info.value)
        assert dict(kv.items()) == DATA
    assert _tree_digest(tmp_path) == before


@pytest.mark.parametrize("backend", OPENERS)
def test_readonly_never_creates_a_store(backend: str, tmp_path: Path) -> None:
    """readonly=True on a path that holds no store raises a StorageError and creates nothing."""
    with pytest.raises(StorageError, match="no store"):
        OPENERS[backend](tmp_path, readonly=True)
    assert os.listdir(tmp_path) == []


def test_readonly_refuses_a_foreign_sqlite_file(tmp_path: Path) -> None:
    """readonly=True still checks the file is a doeff store."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "store.db")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(IncompatibleStoreError):
        SQLiteKV(tmp_path / "store.db", readonly=True)


def test_readonly_and_read_write_handles_share_one_lmdb_environment(tmp_path: Path) -> None:
    """A read-only and a read-write LMDBKV on one directory in one process both work, in
    either order: the read-only one sees the other's writes and still refuses its own."""
    with LMDBKV(tmp_path / "l") as rw:
        rw.put("a", b"1")
    reader = LMDBKV(tmp_path / "l", readonly=True)
    writer = LMDBKV(tmp_path / "l")
    writer.put("b", b"2")
    assert reader.get("b") == b"2"
    with pytest.raises(ReadOnlyStoreError):
        reader.put("c", b"3")
    reader.close()
    writer.put("c", b"3")
    assert writer.get("c") == b"3"
    writer.close()


# -- read-only media ----------------------------------------------------------------------------

ON_READ_ONLY_MEDIA = textwrap.dedent("""
    import json, os, sys, threading
    from doeff.errors import ReadOnlyStoreError
    from doeff.storage import LMDBKV, SQLiteKV

    where = sys.argv[1]
    def opener(backend, name):
        path = os.path.join(where, name)
        return (lambda **kw: SQLiteKV(path, **kw)) if backend == "sqlite" else \\
            (lambda **kw: LMDBKV(path, **kw))

    def attempt(action):
        try:
            return ["ok", action()]
        except Exception as exc:
            return [type(exc).__name__, str(exc)]

    out = {}
    for backend, name in [("sqlite", "clean.db"), ("sqlite", "crashed.db"),
                          ("lmdb", "clean.lmdb")]:
        open_store = opener(backend, name)
        def reads():
            with open_store(readonly=True) as kv:
                got = {}
                def reader(i):  # several threads: each may need a connection of its own
                    got[i] = sorted(kv.keys())
                threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
                for t in threads: t.start()
                for t in threads: t.join()
                writes = attempt(lambda: kv.put("x", b"y"))
                return [kv.get("a").decode(), got[0] == got[3] and len(got[0]), writes[0]]
        def read_write():
            with open_store() as kv:
                kv.get("a")
                kv.put("x", b"y")
        out[name] = {"readonly": attempt(reads), "read_write": attempt(read_write)}
    out["new.db"] = attempt(lambda: opener("sqlite", "new.db")().close())
    out["new.lmdb"] = attempt(lambda: opener("lmdb", "new.lmdb")().close())
    print(json.dumps(out))
""")

MOUNT_READ_ONLY = """
set -e
mount --bind "$1" "$1"
mount -o remount,ro,bind "$1"
exec "$2" -c "$3" "$1"
"""

LEAVE_WAL_BEHIND = """
import os, sys
from doeff.storage import SQLiteKV
kv = SQLiteKV(sys.argv[1])
for key, value in [("a", b"1"), ("b", b"22")]:
    kv.put(key, value)
os._exit(0)  # as if killed: the -wal and -shm files stay, the WAL is not checkpointed
"""


def _unshare_reason() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is missing (util-linux)"
    if os.geteuid() != 0:
        return "a read-only bind mount in a private mount namespace needs root"
    return None


def test_stores_on_read_only_media(tmp_path: Path) -> None:
    """On a read-only mount, readonly=True reads SQLite (cleanly closed, or with the WAL a
    killed writer left) and LMDB stores from several threads and refuses writes with
    ReadOnlyStoreError; without it, the first write or the open raises ReadOnlyStoreError
    saying to pass readonly=True; creating a new store raises ReadOnlyStoreError too."""
    reason = _unshare_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot make read-only media in CI: {reason}")
        pytest.skip(f"cannot make read-only media here: {reason}")
    media = tmp_path / "media"
    media.mkdir()
    with SQLiteKV(media / "clean.db") as kv:
        kv.put_many([("a", b"1"), ("b", b"22")])
    subprocess.run([sys.executable, "-c", LEAVE_WAL_BEHIND, str(media / "crashed.db")],
                   check=True, timeout=60, cwd=ROOT)
    assert (media / "crashed.db-wal").stat().st_size > 0
    with LMDBKV(media / "clean.lmdb") as kv:
        kv.put_many([("a", b"1"), ("b", b"22")])
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", MOUNT_READ_ONLY, "sh", str(media), sys.executable,
         ON_READ_ONLY_MEDIA],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name in ("clean.db", "crashed.db", "clean.lmdb"):
        assert out[name]["readonly"] == ["ok", ["1", 2, "ReadOnlyStoreError"]], (name, out)
        error, message = out[name]["read_write"]
        assert error == "ReadOnlyStoreError" and "readonly=True" in message, (name, out)
    for name in ("new.db", "new.lmdb"):
        assert out[name][0] == "ReadOnlyStoreError" and "read-only" in out[name][1], out


# -- PostgreSQL ---------------------------------------------------------------------------------


def test_postgres_readonly_reads_refuses_writes_and_creates_no_table(tmp_path: Path) -> None:
    """PostgresKV(readonly=True) reads an existing table, refuses every write with
    ReadOnlyStoreError, and on a missing table raises instead of creating it."""
    server = pg_server.require_server()
    from doeff.storage.postgres import PostgresKV

    table = pg_server.table_for(tmp_path)
    with pytest.raises(StorageError, match="no store"):
        PostgresKV(server.dsn, table=table, readonly=True)
    with PostgresKV(server.dsn, table=table) as kv:
        _fill(kv)
    with PostgresKV(server.dsn, table=table, readonly=True) as kv:
        assert dict(kv.items()) == DATA and len(kv) == 3
        for name, write in _writes(kv).items():
            with pytest.raises(ReadOnlyStoreError, match="read-only") as info:
                write()
            assert name in str(info.value)
        with pytest.raises(ReadOnlyStoreError):
            kv.put_if_absent("new", b"v")
        assert dict(kv.items()) == DATA


def test_postgres_server_refusing_writes_is_read_only_store_error(tmp_path: Path) -> None:
    """When the server refuses writes (read-only sessions, as on a standby) a store opened
    without readonly=True raises ReadOnlyStoreError saying to pass it, and reads still work."""
    server = pg_server.require_server()
    from doeff.storage.postgres import PostgresKV

    table = pg_server.table_for(tmp_path)
    with PostgresKV(server.dsn, table=table) as kv:
        _fill(kv)
    read_only_sessions = {"options": "-c default_transaction_read_only=on"}
    with PostgresKV(server.dsn, table=table, connect_kwargs=read_only_sessions) as kv:
        assert dict(kv.items()) == DATA
        with pytest.raises(ReadOnlyStoreError, match="readonly=True"):
            kv.put("a", b"new")
        assert kv.get("a") == b"1"
