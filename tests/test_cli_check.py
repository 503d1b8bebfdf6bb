"""`doeff cache check` and `stats` find damage; every reading command opens the store read-only.

Damage is real: bytes of a SQLite file changed on disk (an index entry, a table page), a record
changed after it was written, an LMDB record another program wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import pytest
from test_cli import ROOT, Store, doeff, make_store

from doeff.serde import JSONCodec, MsgpackCodec, PickleCodec, peek, seal, unseal
from doeff.storage import LMDBKV, SQLiteKV

RECORDS = [(f"key:{i:04d}", seal({"i": i, "pad": "x" * 40}, MsgpackCodec(), key=f"key:{i:04d}"))
           for i in range(300)]


@pytest.fixture(params=["sqlite", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty SQLite or LMDB store."""
    return make_store(request.param, tmp_path)


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return size


def damage_index_entry(path: Path, key: str) -> None:
    """Change `key` inside the primary-key index only, as a flipped bit on disk would: the row
    stays in the table, but the index no longer leads to it."""
    size = _page_size(path)
    data = bytearray(path.read_bytes())
    needle = key.encode()
    for start in range(0, len(data), size):
        page = data[start:start + size]
        if page[0] == 0x0A and needle in page:  # an index b-tree leaf page holding the key
            at = start + page.index(needle)
            data[at + len(needle) - 1] ^= 0x01
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"{key} not found in an index page")


def damage_table_page(path: Path) -> None:
    """Overwrite the last leaf page of the table with garbage."""
    size = _page_size(path)
    data = bytearray(path.read_bytes())
    leaves = [p for p in range(size, len(data), size) if data[p] == 0x0D]
    data[leaves[-1] + 8:leaves[-1] + size] = bytes([0xA5]) * (size - 8)
    path.write_bytes(bytes(data))


def test_check_passes_a_sound_store(store: Store) -> None:
    """`check` on a sound store exits 0 and says how many records it checked."""
    store.fill(RECORDS[:5])
    result = doeff("cache", "check", store.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{store.url}: ok (5 records; integrity check passed, every " \
                            f"record's checksum matches)\n"
    assert result.stderr == ""


def test_check_finds_a_record_changed_after_it_was_written(store: Store) -> None:
    """A record whose bytes changed, and one that is not a doeff record, are each named with
    what is wrong and what to do; check exits 1 and reads no pickle."""
    flipped = bytearray(seal({"amount": 1}, JSONCodec(), key="flipped"))
    flipped[-2] ^= 0xFF
    store.fill([*RECORDS[:3], ("flipped", bytes(flipped)), ("foreign", b"written by others"),
                ("pickled", seal([1], PickleCodec(), key="pickled"))])
    result = doeff("cache", "check", store.url)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"doeff: {store.url}: flipped: corrupt record: checksum mismatch")
    assert lines[1].startswith(f"doeff: {store.url}: foreign: not a doeff record")
    assert lines[2] == (f"doeff: {store.url}: 2 of 6 records cannot be read; delete them to "
                        f"recompute their steps: doeff cache rm {store.url} flipped foreign")
    assert len(lines) == 3


def test_check_and_stats_find_a_damaged_index(tmp_path: Path) -> None:
    """With an index entry changed on disk, get() misses a stored key; check and stats run
    SQLite's integrity check, name the problem and the remedy, and exit 1; migrate --into then
    saves every record under its own key (not the one the damaged index names)."""
    store = make_store("sqlite", tmp_path)
    store.fill(RECORDS)
    path = tmp_path / "wf.db"
    damage_index_entry(path, "key:0123")
    with SQLiteKV(path) as kv:
        assert kv.get("key:0123") is None  # the row is there, but the index lost it
    for command in (["check"], ["stats"]):
        result = doeff("cache", *command, store.url)
        assert result.returncode == 1, result
        assert "missing from index" in result.stderr or "wrong # of entries" in result.stderr
        advice = result.stderr.splitlines()[-1]
        assert "restore it from a backup" in advice
        assert f"doeff cache migrate {store.url} --into NEW_STORE" in advice
    stats = json.loads(doeff("cache", "stats", store.url, "--json").stdout)
    assert stats["records"] == 300 and stats["problems"]
    saved = tmp_path / "saved.db"
    copied = doeff("cache", "migrate", store.url, "--into", str(saved))
    assert copied.returncode == 0, copied.stderr
    with SQLiteKV(saved) as kv:  # each record under its own key: read from the table's rows
        assert dict(kv.items()) == dict(RECORDS)


def test_check_reports_a_table_page_it_cannot_read(tmp_path: Path) -> None:
    """A damaged table page makes check exit 1 naming the damage, on one line per problem,
    never a traceback."""
    store = make_store("sqlite", tmp_path)
    store.fill(RECORDS)
    damage_table_page(tmp_path / "wf.db")
    result = doeff("cache", "check", store.url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert "restore it from a backup" in result.stderr.splitlines()[-1]


def test_migrate_into_copies_the_readable_records_of_a_damaged_store(tmp_path: Path) -> None:
    """`migrate --into NEW` copies every record that can still be read into a new store, byte
    for byte, lists the ones it could not, and leaves the damaged store as it was."""
    store = make_store("sqlite", tmp_path)
    store.fill(RECORDS)
    path = tmp_path / "wf.db"
    damage_table_page(path)
    before = path.read_bytes()
    new = tmp_path / "saved.db"
    result = doeff("cache", "migrate", store.url, "--into", str(new))
    assert result.returncode == 1, result
    assert path.read_bytes() == before
    with SQLiteKV(new) as saved:
        copied = dict(saved.items())
    assert 100 < len(copied) < 300
    assert all(raw == dict(RECORDS)[key] for key, raw in copied.items())
    assert f"copied {len(copied)} of " in result.stdout
    assert doeff("cache", "check", str(new)).returncode == 0


def test_migrate_into_a_new_store_with_another_codec(store: Store, tmp_path: Path) -> None:
    """`migrate --into NEW --to CODEC` writes every record re-encoded into a new store and
    leaves the source untouched; NEW must not exist yet."""
    store.fill(RECORDS[:10])
    before = store.snapshot()
    new = tmp_path / "json.db"
    result = doeff("cache", "migrate", store.url, "--into", str(new), "--to", "json")
    assert result.returncode == 0, result.stderr
    assert store.snapshot() == before
    with SQLiteKV(new) as kv:
        assert {k: peek(v).tag for k, v in kv.items()} == dict.fromkeys(before, "json")
        assert ({k: unseal(v, key=k) for k, v in kv.items()}
                == {k: unseal(v, key=k) for k, v in before.items()})
    again = doeff("cache", "migrate", store.url, "--into", str(new))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_check_finds_a_foreign_lmdb_record(tmp_path: Path) -> None:
    """An LMDB record whose key is not UTF-8 (another program's) is named by check."""
    store = make_store("lmdb", tmp_path)
    store.fill(RECORDS[:3])
    env = lmdb.open(str(tmp_path / "store"))
    with env.begin(write=True) as txn:
        txn.put(b"\xff\xfe-not-ours", b"x")
    env.close()
    result = doeff("cache", "check", store.url)
    assert result.returncode == 1
    assert "cannot be read" in result.stderr and "restore it from a backup" in result.stderr


def test_a_malformed_postgresql_url_is_one_line_exit_2() -> None:
    """A postgresql:// URL that cannot be parsed is refused on one line, exit 2, with its
    password hidden — not an 'unexpected ValueError'."""
    result = doeff("cache", "ls", "postgresql://u:secret@[::1")
    assert result.returncode == 2
    assert result.stderr.startswith("doeff: postgresql://u:***@[::1: ")
    assert "unexpected" not in result.stderr and "secret" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_reading_commands_leave_an_empty_sqlite_database_unchanged(tmp_path: Path) -> None:
    """ls, stats, check and get on an empty SQLite database someone else made (no tables)
    refuse it as not a doeff store and leave every byte as it was."""
    path = tmp_path / "theirs.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    for command in (["ls"], ["stats"], ["check"], ["get", "k"]):
        result = doeff("cache", command[0], str(path), *command[1:])
        assert result.returncode == 2 and "not a doeff store" in result.stderr, result
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["theirs.db"]


ON_READ_ONLY_MEDIA = """
set -e
mount --bind "$1" "$1"
mount -o remount,ro,bind "$1"
shift
for store in "$@"; do
    for command in ls stats check; do
        "$PYTHON" -m doeff cache "$command" "$store" >/dev/null || echo "$command $store: $?"
    done
    "$PYTHON" -m doeff cache get "$store" key:0001 >/dev/null || echo "get $store: $?"
    "$PYTHON" -m doeff cache rm "$store" key:0001 2>&1 >/dev/null | sed "s/^/rm: /" || true
done
"""


def test_reading_commands_work_on_read_only_media(tmp_path: Path) -> None:
    """On a read-only mount, ls, stats, check and get work on SQLite and LMDB stores (they open
    them read-only); rm fails with a message saying the store is read-only."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("read-only media need unshare and root, which CI has")
        pytest.skip("a read-only bind mount in a private mount namespace needs root")
    media = tmp_path / "media"
    media.mkdir()
    with SQLiteKV(media / "wf.db") as kv:
        kv.put_many(RECORDS[:5])
    with LMDBKV(media / "wf.lmdb") as kv:
        kv.put_many(RECORDS[:5])
    stores = [str(media / "wf.db"), f"lmdb://{media / 'wf.lmdb'}"]
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", textwrap.dedent(ON_READ_ONLY_MEDIA), "sh", str(media),
         *stores],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    failures = [line for line in proc.stdout.splitlines() if not line.startswith("rm: ")]
    assert failures == []
    rm_lines = [line for line in proc.stdout.splitlines() if line.startswith("rm: ")]
    assert len(rm_lines) == 2 and all("read-only" in line for line in rm_lines), rm_lines


def test_check_on_postgresql_finds_a_row_get_cannot_reach(tmp_path: Path) -> None:
    """On a PostgreSQL store, check passes sound rows and names a row whose key_hash is not its
    key's (get() cannot find it), and a key that is not UTF-8; exit 1."""
    import pg_server
    import psycopg

    from doeff.storage.postgres import PostgresKV

    server = pg_server.require_server()
    table = pg_server.table_for(tmp_path)
    url = f"postgresql://doeff@127.0.0.1:{server.port}/postgres?table={table}"
    with PostgresKV(server.dsn, table=table) as kv:
        kv.put_many(RECORDS[:4])
    assert doeff("cache", "check", url).returncode == 0
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET key_hash = sha256('other') "
                     "WHERE key = 'key:0002'::bytea")
        conn.execute(f"INSERT INTO {table} (key_hash, key, value) "
                     "VALUES (sha256('\\xff'::bytea), '\\xff'::bytea, 'x')")
    result = doeff("cache", "check", url)
    assert result.returncode == 1
    assert "key_hash that is not the SHA-256 of its key" in result.stderr
    assert "is not UTF-8" in result.stderr
