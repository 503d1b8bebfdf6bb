"""`doeff cache gc`, `explain`, `rm --prefix/--step/--older-than/--dry-run`, and the expiry in
`ls`: the commands for steps' records, on real stores."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from doeff import run_sync, step
from doeff.cli.app import main
from doeff.effects import gather
from doeff.serde import JSONCodec, MsgpackCodec
from doeff.storage import LMDBKV, Durable, SQLiteKV
from doeff.storage.base import KVStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@step(name="fetch")
def fetch(url: str, limit: int = 10) -> str:
    return url * limit


@step(name="fetch", version=2)
def fetch_v2(url: str, limit: int = 10) -> str:
    return url


@step(name="quote", ttl=1.0)  # long enough that a loaded machine reads it before it expires
def quote(symbol: str) -> float:
    return 1.5


def record(kv: KVStore) -> None:
    with Durable(kv, MsgpackCodec()) as storage:
        run_sync(gather(fetch("a"), fetch("b"), fetch("a", 3), fetch_v2("a"), quote("X")),
                 storage=storage)
        storage.put("other:1", "kept")


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite store holding four fetch records, an expiring quote and another key."""
    path = tmp_path / "wf.db"
    record(SQLiteKV(path))
    return str(path)


def test_ls_shows_an_expiry_column_and_json_field(db: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """ls adds EXPIRES (UTC) when a record expires; --json gives expires_at for every record."""
    code, out, _ = run(capsys, "cache", "ls", db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[-2:] == ["EXPIRES", "(UTC)"]
    [quote_line] = [line for line in lines if line.startswith("step:quote@v1:")]
    assert quote_line.endswith("Z") and quote_line.count("Z") == 2
    code, out, _ = run(capsys, "cache", "ls", db, "--json")
    rows = {r["key"]: r for r in json.loads(out)}
    assert rows["other:1"]["expires_at"] is None
    assert rows[quote.key("X")]["expires_at"] is not None


def test_explain_lists_a_steps_records_and_what_differs(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """explain shows version, code and each argument's digest per record, and which parts of
    the key vary between them."""
    code, out, _ = run(capsys, "cache", "explain", db, "fetch")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "step fetch: 4 records"
    assert lines[1].split() == ["KEY", "VERSION", "CODE", "limit", "url"]
    assert len(lines) == 7
    assert lines[-1] == "they differ in: version, argument limit, argument url"
    versions = sorted(line.split()[1] for line in lines[2:6])
    assert versions == ["1", "1", "1", "2"]
    code, out, _ = run(capsys, "cache", "explain", db, fetch.key("a"), "--json")
    data = json.loads(out)
    assert data["step"] == "fetch" and len(data["records"]) == 4
    assert set(data["records"][0]["args"]) == {"url", "limit"}


def test_explain_of_an_unknown_step_names_the_steps_there(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A step without records exits 1 and lists the steps the store has."""
    code, _, err = run(capsys, "cache", "explain", db, "nope")
    assert code == 1
    assert "no records of step nope; steps in the store: fetch, quote" in err


def test_gc_deletes_only_expired_records(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """gc removes expired records (with --dry-run, lists them first) and nothing else."""
    code, out, _ = run(capsys, "cache", "gc", db)
    assert (code, out) == (0, "removed 0 expired records from " + db + "\n")
    time.sleep(1.05)
    code, out, _ = run(capsys, "cache", "gc", db, "--dry-run")
    assert code == 0 and out.endswith(f"would remove 1 expired record from {db}\n")
    assert quote.key("X") in out
    code, out, _ = run(capsys, "cache", "gc", db)
    assert out == f"removed 1 expired record from {db}\n"
    code, out, _ = run(capsys, "cache", "ls", db, "--json")
    assert len(json.loads(out)) == 5


def test_gc_keeps_a_record_rewritten_since_it_was_read(tmp_path: Path) -> None:
    """gc deletes a record only if it still holds the expired bytes it read."""
    kv = SQLiteKV(tmp_path / "wf.db")
    with Durable(kv, JSONCodec()) as storage:
        storage.put_record("k", 1, expires_at=time.time() - 1)
        stale = kv.get("k")
        storage.put("k", 2)  # rewritten, no expiry
        assert stale is not None and not kv.compare_and_delete("k", stale)
        assert storage.gc() == 0 and storage.get("k") == 2


def test_rm_step_removes_every_version_of_one_step(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """rm --step NAME removes all of that step's records, versions included, and no other."""
    code, out, _ = run(capsys, "cache", "rm", db, "--step", "fetch", "--dry-run")
    assert code == 0 and out.splitlines()[-1] == f"would remove 4 records from {db}"
    code, out, _ = run(capsys, "cache", "rm", db, "--step", "fetch")
    assert out == f"removed 4 records from {db}\n"
    code, out, _ = run(capsys, "cache", "ls", db, "--json")
    assert sorted(r["key"].split(":")[0] for r in json.loads(out)) == ["other", "step"]


def test_rm_selections_combine(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--prefix and --older-than both apply: only records matching every selection go."""
    _, out, _ = run(capsys, "cache", "rm", db, "--prefix", "step:", "--older-than", "1h")
    assert out == f"removed 0 records from {db}\n"
    time.sleep(0.05)
    _, out, _ = run(capsys, "cache", "rm", db, "--prefix", "other:", "--older-than", "0s")
    assert out == f"removed 1 record from {db}\n"


def test_rm_older_than_refuses_a_store_without_update_times(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """LMDB keeps no update times: --older-than says so instead of guessing."""
    path = tmp_path / "wf.lmdb"
    record(LMDBKV(path))
    code, _, err = run(capsys, "cache", "rm", f"lmdb://{path}", "--older-than", "1d")
    assert code == 2 and "does not record" in err and "LMDB" in err
    code, out, _ = run(capsys, "cache", "rm", f"lmdb://{path}", "--step", "fetch")
    assert out.startswith("removed 4 records")


def test_rm_needs_keys_or_a_selection_not_both(db: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """rm with nothing to select, or with keys and a selection, is refused."""
    assert run(capsys, "cache", "rm", db)[0] == 2
    code, _, err = run(capsys, "cache", "rm", db, "other:1", "--step", "fetch")
    assert code == 2 and "not both" in err
    with pytest.raises(SystemExit) as exited:
        main(["cache", "rm", db, "--older-than", "soon"])
    assert exited.value.code == 2 and "not a duration" in capsys.readouterr().err


def test_rm_dry_run_of_keys_removes_nothing(db: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """rm KEY --dry-run counts what would go and keeps it."""
    code, out, _ = run(capsys, "cache", "rm", db, "other:1", "--dry-run")
    assert (code, out) == (0, "would remove 1 record\n")
    assert SQLiteKV(db).get("other:1") is not None


def test_rm_selection_is_one_transaction(db: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """If deleting one record of the selection fails, none is deleted (all or nothing)."""
    # The failure is planted as a trigger, which SQLiteKV refuses in a store: let this one in.
    monkeypatch.setattr("doeff.storage.backends.sqlite._TRIGGERS", "SELECT 0")
    last = max(k for k in SQLiteKV(db).keys() if k.startswith("step:fetch@"))
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TRIGGER refuse BEFORE DELETE ON doeff_kv WHEN old.key = '{last}' "
                 f"BEGIN SELECT RAISE(ABORT, 'this record may not be deleted'); END")
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "cache", "rm", db, "--step", "fetch")
    assert code == 1 and "may not be deleted" in err
    assert len(SQLiteKV(db).keys()) == 6


def test_migrate_keeps_expiry_and_step_summaries(db: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Re-encoding a store keeps each record's expiry and step summary."""
    before = {m.key: (m.expires_at, m.info) for m in Durable(SQLiteKV(db), JSONCodec())
              .describe()}
    code, _, err = run(capsys, "cache", "migrate", db, "--to", "json")
    assert code == 0, err
    after = {m.key: (m.expires_at, m.info) for m in Durable(SQLiteKV(db), JSONCodec())
             .describe()}
    assert after == before
    assert after[quote.key("X")][0] is not None


def test_check_and_stats_accept_step_records(db: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Records with an expiry and a summary in their header pass `check` and count in `stats`."""
    code, out, err = run(capsys, "cache", "check", db)
    assert code == 0 and "ok (6 records" in out and err == ""
    code, out, _ = run(capsys, "cache", "stats", db, "--json")
    assert code == 0 and json.loads(out)["records"] == 6
