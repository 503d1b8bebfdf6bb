"""The `doeff` command, run for real in subprocesses against real SQLite and LMDB stores."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from doeff.serde import Codec, JSONCodec, MsgpackCodec, PickleCodec, seal
from doeff.storage import LMDBKV, KVStore, SQLiteKV

ROOT = Path(__file__).resolve().parent.parent


def doeff(*args: str, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m doeff ARGS` (with `env` added to the environment) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "doeff", *args], capture_output=True, text=True, timeout=120,
        cwd=cwd or ROOT, env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )


@dataclass
class Store:
    """A store on disk: the STORE argument naming it, and how to open it in this process."""

    url: str
    open: Callable[[], KVStore]

    def fill(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Put raw records into the store."""
        with self.open() as kv:
            for key, raw in items:
                kv.put(key, raw)

    def snapshot(self) -> dict[str, bytes]:
        """Every (key, raw record) now stored."""
        with self.open() as kv:
            return dict(kv.items())


def make_store(kind: str, tmp_path: Path) -> Store:
    """An empty store of `kind` ("sqlite", "lmdb" or "bare", a bare SQLite path)."""
    if kind == "lmdb":
        path = tmp_path / "store"
        LMDBKV(path).close()
        return Store(f"lmdb://{path}", lambda: LMDBKV(path))
    db = tmp_path / "wf.db"
    SQLiteKV(db).close()
    return Store(f"sqlite://{db}" if kind == "sqlite" else str(db), lambda: SQLiteKV(db))


@pytest.fixture(params=["sqlite", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store of each kind that STORE can name on disk."""
    return make_store(request.param, tmp_path)


class Booby:
    """Unpickling this creates the file `path`: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


SAMPLE: dict[str, tuple[object, Codec]] = {
    "fetch": ([{"id": 1, "amount": 10.5}], MsgpackCodec()),
    "enrich": ((1, 2, frozenset({3})), MsgpackCodec()),
    "summary": ({"orders": 40}, JSONCodec()),
}


def sample_records() -> list[tuple[str, bytes]]:
    """Records in two codecs."""
    return [(key, seal(value, codec, key=key)) for key, (value, codec) in SAMPLE.items()]


@pytest.mark.parametrize("command", [
    [], ["cache"], ["cache", "ls"], ["cache", "get"], ["cache", "rm"], ["cache", "clear"],
    ["cache", "stats"], ["cache", "migrate"], ["demo"],
])
def test_help_on_every_command(command: list[str]) -> None:
    """`--help` works on every command and exits 0 with a usage line naming it."""
    result = doeff(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: doeff {' '.join(command)}".rstrip())


def test_no_arguments_prints_the_commands() -> None:
    """`doeff` alone lists its commands, cache and demo, and exits 0 as before."""
    result = doeff()
    assert result.returncode == 0
    assert "cache" in result.stdout and "demo" in result.stdout


def test_ls_lists_key_codec_size_and_time(store: Store) -> None:
    """`ls` prints one row per record, sorted by key, with codec tag, byte size and UTC time."""
    records = sample_records()
    store.fill(records)
    result = doeff("cache", "ls", store.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "CODEC", "SIZE", "UPDATED", "(UTC)"]
    rows = [line.split() for line in lines[1:]]
    expected = sorted([key, SAMPLE[key][1].tag, str(len(raw))] for key, raw in records)
    assert [r[:3] for r in rows] == expected
    for row in rows:  # a date and a time, or "-" where the backend keeps no time
        assert row[3:] == ["-"] or (len(row[3]) == 10 and row[4].endswith("Z"))
    if not store.url.startswith("lmdb"):
        assert all(row[3] != "-" for row in rows)


def test_ls_prefix_and_json(store: Store) -> None:
    """`ls --prefix P --json` gives a JSON array of only the keys starting with P."""
    store.fill(sample_records())
    result = doeff("cache", "ls", store.url, "--prefix", "f", "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["key"] == "fetch" and entry["codec"] == "msgpack" and entry["error"] is None
    assert entry["size"] == len(seal(SAMPLE["fetch"][0], MsgpackCodec()))


def test_get_decodes_with_the_recorded_codec(store: Store) -> None:
    """`get` decodes each record with the codec named in it, keeping Python types visible."""
    store.fill(sample_records())
    assert doeff("cache", "get", store.url, "enrich").stdout == "(1, 2, frozenset({3}))\n"
    assert doeff("cache", "get", store.url, "summary").stdout == "{'orders': 40}\n"


def test_get_json(store: Store) -> None:
    """`get --json` gives key, codec, size and the value in JSON types."""
    store.fill(sample_records())
    result = doeff("cache", "get", store.url, "enrich", "--json")
    assert json.loads(result.stdout) == {
        "key": "enrich", "codec": "msgpack",
        "size": len(seal(SAMPLE["enrich"][0], MsgpackCodec())), "value": [1, 2, [3]],
    }


def test_pickles_are_never_loaded_without_the_flag(store: Store, tmp_path: Path) -> None:
    """ls, stats and get leave a pickle unloaded; `get --unsafe-pickle` loads it."""
    marker = tmp_path / "pickle-was-loaded"
    store.fill([("trap", seal(Booby(marker), PickleCodec(), key="trap"))])
    assert doeff("cache", "ls", store.url).returncode == 0
    assert doeff("cache", "stats", store.url).returncode == 0
    refused = doeff("cache", "get", store.url, "trap")
    assert refused.returncode == 1
    assert "--unsafe-pickle" in refused.stderr and "pickle record" in refused.stderr
    assert not marker.exists()
    assert doeff("cache", "get", store.url, "trap", "--unsafe-pickle").returncode == 0
    assert marker.exists()


def test_get_missing_key(store: Store) -> None:
    """`get` of a key that is not stored says so on one line and exits 1."""
    result = doeff("cache", "get", store.url, "nope")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"doeff: {store.url}: no key nope"]


def test_unreadable_records_are_reported_per_key(store: Store) -> None:
    """A foreign record and a corrupted one are named per key; the good records still show."""
    good = seal({"ok": True}, JSONCodec(), key="good")
    flipped = bytearray(seal({"amount": 1}, JSONCodec(), key="flipped"))
    flipped[-2] ^= 0xFF
    store.fill([("good", good), ("foreign", b"hello world"), ("flipped", bytes(flipped))])

    ls = doeff("cache", "ls", store.url)
    assert ls.returncode == 0 and "Traceback" not in ls.stderr
    assert [line.split()[:2] for line in ls.stdout.splitlines()[1:]] == [
        ["flipped", "json"], ["foreign", "?"], ["good", "json"],
    ]
    assert ls.stderr.startswith("doeff: foreign: unreadable record: not a doeff record")

    get = doeff("cache", "get", store.url, "flipped")
    assert get.returncode == 1 and "checksum mismatch" in get.stderr
    assert len(get.stderr.splitlines()) == 1

    stats = doeff("cache", "stats", store.url)
    assert "? (unreadable)        1     11" in stats.stdout


def test_rm_deletes_keys_and_reports_missing_ones(store: Store) -> None:
    """`rm` deletes the given keys, names any that were missing, and then exits 1."""
    store.fill(sample_records())
    result = doeff("cache", "rm", store.url, "fetch", "absent", "summary")
    assert result.returncode == 1
    assert result.stdout == "removed 2 records\n"
    assert result.stderr == f"doeff: {store.url}: no key absent\n"
    assert set(store.snapshot()) == {"enrich"}
    assert doeff("cache", "rm", store.url, "enrich").returncode == 0


def test_odd_keys_are_shown_quoted_and_removable(store: Store) -> None:
    """The empty key and keys with line breaks are listed as Python literals and can be rm'd."""
    store.fill([("", seal(1, JSONCodec(), key="")), ("a\nb", seal(2, JSONCodec(), key="a\nb"))])
    ls = doeff("cache", "ls", store.url)
    assert [line.split()[0] for line in ls.stdout.splitlines()[1:]] == ["''", "'a\\nb'"]
    assert doeff("cache", "rm", store.url, "", "a\nb").returncode == 0
    assert store.snapshot() == {}


def test_clear_needs_yes(store: Store) -> None:
    """`clear` without --yes deletes nothing and exits 2; with it, the store is empty."""
    store.fill(sample_records())
    refused = doeff("cache", "clear", store.url)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert len(store.snapshot()) == 3
    done = doeff("cache", "clear", store.url, "--yes")
    assert done.returncode == 0 and done.stdout == f"removed 3 records from {store.url}\n"
    assert store.snapshot() == {}


def test_stats_counts_records_and_bytes_per_codec(store: Store) -> None:
    """`stats --json` has the record count and bytes, in all and per codec, from the records."""
    records = [*sample_records(), ("p", seal(b"x" * 100, PickleCodec(), key="p"))]
    store.fill(records)
    result = doeff("cache", "stats", store.url, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    by_tag: dict[str, list[int]] = {}
    for key, raw in records:
        tag = "pickle" if key == "p" else SAMPLE[key][1].tag
        cell = by_tag.setdefault(tag, [0, 0])
        cell[0] += 1
        cell[1] += len(raw)
    assert stats["records"] == 4 and stats["bytes"] == sum(len(r) for _, r in records)
    assert stats["codecs"] == {t: {"records": c, "bytes": b} for t, (c, b) in by_tag.items()}
    assert stats["unreadable"] == {"records": 0, "bytes": 0}
    text = doeff("cache", "stats", store.url).stdout
    assert f"records  4\nbytes    {stats['bytes']} " in text
    assert "msgpack        2" in text


def _text_file(tmp_path: Path) -> str:
    (tmp_path / "notes.txt").write_text("not a database\n")
    return str(tmp_path / "notes.txt")


def _empty_file(tmp_path: Path) -> str:
    (tmp_path / "empty.db").touch()
    return f"sqlite://{tmp_path / 'empty.db'}"


def _foreign_sqlite(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    return str(tmp_path / "app.db")


def _plain_dir(tmp_path: Path) -> str:
    (tmp_path / "dir").mkdir()
    return f"lmdb://{tmp_path / 'dir'}"


BAD_STORES: dict[str, tuple[Callable[[Path], str], str]] = {
    "missing sqlite file": (lambda p: str(p / "nope.db"), "no such store"),
    "missing sqlite url": (lambda p: f"sqlite://{p / 'nope.db'}", "no such store"),
    "missing lmdb dir": (lambda p: f"lmdb://{p / 'nope'}", "no such store"),
    "wrong scheme": (lambda p: "redis://localhost/0", "unknown store scheme 'redis'"),
    "relative url": (lambda p: "sqlite://wf.db", "three slashes"),
    "text file": (_text_file, "not a SQLite database"),
    "empty file": (_empty_file, "an empty file"),
    "foreign sqlite db": (_foreign_sqlite, "not a doeff store"),
    "directory as sqlite": (lambda p: str(p), "not a file"),
    "dir without lmdb": (_plain_dir, "not an LMDB store"),
}


def check_refused(url: str, command: list[str], expected: str, tmp_path: Path) -> None:
    """`doeff cache COMMAND` on `url` fails on one stderr line, exit 2, touching no file."""
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = doeff("cache", command[0], url, *command[1:])
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and expected in result.stderr, result.stderr
    assert result.stdout == ""
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("case", BAD_STORES)
def test_bad_store_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    """A missing, foreign or mis-named store gives one stderr line, exit 2, and creates nothing."""
    make, expected = BAD_STORES[case]
    check_refused(make(tmp_path), ["ls"], expected, tmp_path)


@pytest.mark.parametrize("case", ["missing sqlite file", "foreign sqlite db", "wrong scheme"])
@pytest.mark.parametrize("command", [["stats"], ["get", "k"], ["rm", "k"], ["clear", "--yes"],
                                     ["migrate", "--to", "json"]])
def test_every_command_refuses_a_bad_store(case: str, command: list[str], tmp_path: Path) -> None:
    """Every command, reading or writing, refuses a bad store the same way as ls."""
    make, expected = BAD_STORES[case]
    check_refused(make(tmp_path), command, expected, tmp_path)


def test_bare_path_means_sqlite(tmp_path: Path) -> None:
    """A bare path, absolute or relative to the working directory, names a SQLite file."""
    store = make_store("bare", tmp_path)
    store.fill(sample_records())
    assert len(doeff("cache", "ls", store.url).stdout.splitlines()) == 4
    result = doeff("cache", "ls", "wf.db", cwd=tmp_path)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 4


def test_payload_pickle_is_plain_pickle() -> None:
    """The booby-trap fixture really runs code when unpickled (so the tests above mean it)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        pickle.loads(pickle.dumps(Booby(Path(d) / "x"))).close()
        assert (Path(d) / "x").exists()


def test_postgresql_store(tmp_path: Path) -> None:
    """A postgresql:// STORE with ?table= is listed and read; a missing table is not created."""
    import pg_server
    import psycopg

    from doeff.storage.postgres import PostgresKV

    server = pg_server.require_server()
    table = pg_server.table_for(tmp_path)
    url = f"postgresql://doeff@127.0.0.1:{server.port}/postgres"
    with PostgresKV(server.dsn, table=table) as kv:
        for key, raw in sample_records():
            kv.put(key, raw)
    ls = doeff("cache", "ls", f"{url}?table={table}")
    assert ls.returncode == 0, ls.stderr
    assert [line.split()[:2] for line in ls.stdout.splitlines()[1:]] == [
        ["enrich", "msgpack"], ["fetch", "msgpack"], ["summary", "json"],
    ]
    got = doeff("cache", "get", f"{url}?table={table}", "enrich")
    assert got.stdout == "(1, 2, frozenset({3}))\n"
    missing = doeff("cache", "ls", f"{url}?table={table}_nope")
    assert missing.returncode == 2 and "no such store" in missing.stderr
    with psycopg.connect(server.dsn) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f"{table}_nope",)).fetchone()
    assert found == (None,)


def test_get_shows_huge_ints_and_json_keeps_every_key_and_valid_utf8(tmp_path: Path) -> None:
    """An int past Python's 4300-digit print limit, keys that collide as JSON strings and a
    lone surrogate all come out readable: no traceback, valid JSON, no entry lost."""
    store = make_store("sqlite", tmp_path)
    store.fill([
        ("big", seal(10**5000, MsgpackCodec(), key="big")),
        ("keys", seal({1: "int", "1": "str"}, MsgpackCodec(), key="keys")),
        ("sur", seal("x\udc80y", PickleCodec(), key="sur")),
    ])
    big = doeff("cache", "get", store.url, "big")
    assert big.returncode == 0, big.stderr
    assert big.stdout == "<int of 5001 digits>\n"  # past the limit: shown by its digit count
    keys = doeff("cache", "get", store.url, "keys", "--json")
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout)["value"] == {"pairs": [[1, "int"], ["1", "str"]]}
    sur = doeff("cache", "get", store.url, "sur", "--json", "--unsafe-pickle")
    assert sur.returncode == 0, sur.stderr
    assert json.loads(sur.stdout)["value"] == "x\udc80y"


def test_an_empty_lmdb_data_file_is_not_a_store(tmp_path: Path) -> None:
    """A directory whose data.mdb is empty is refused with one line and left as it was."""
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "data.mdb").write_bytes(b"")
    result = doeff("cache", "ls", f"lmdb://{tmp_path / 'env'}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "empty" in result.stderr
    assert (tmp_path / "env" / "data.mdb").stat().st_size == 0
