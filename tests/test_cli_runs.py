"""`doeff runs ...` run for real in subprocesses against SQLite and LMDB stores."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import doeff

from doeff import do, run_sync
from doeff.effects import perform
from doeff.effects.cache import cached
from doeff.runs.store import RunStore
from doeff.serde import MsgpackCodec
from doeff.storage import LMDBKV, Durable, SQLiteKV


@do
def job(fail: bool) -> Generator[Any, Any, Any]:
    a = yield cached("a", lambda: perform(lambda: 1))
    b = yield cached("b", lambda: perform(lambda: 2))
    if fail:
        raise RuntimeError("the warehouse is closed")
    return a + b


@pytest.fixture(params=["sqlite", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store with a completed run `ok` and a failed run `bad`; its STORE argument."""
    if request.param == "sqlite":
        kv: Any = SQLiteKV(tmp_path / "wf.db")
        url = str(tmp_path / "wf.db")
    else:
        kv = LMDBKV(tmp_path / "wf.lmdb")
        url = f"lmdb://{tmp_path / 'wf.lmdb'}"
    with Durable(kv, MsgpackCodec()) as storage:
        run_sync(job(False), storage=storage, run_id="ok")
        run_sync(job(True), storage=storage, run_id="bad")
    yield url


def test_ls_lists_runs_and_cache_ls_does_not(store: str) -> None:
    """`runs ls` shows both runs with status and steps; `cache ls` only the steps' keys."""
    listed = doeff("runs", "ls", store)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "STARTED", "(UTC)", "AGE", "STEPS", "CURRENT",
                                "EFFECT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["ok"][1] == "completed" and rows["bad"][1] == "failed"
    assert rows["ok"][5] == "2" and rows["ok"][4] == "<1m"
    cache = doeff("cache", "ls", store)
    assert [line.split()[0] for line in cache.stdout.splitlines()[1:]] == ["a", "b"]
    only = doeff("runs", "ls", store, "--status", "failed", "--json")
    assert [r["run_id"] for r in json.loads(only.stdout)] == ["bad"]


def test_show_gives_the_error_with_its_traceback_and_the_steps(store: str) -> None:
    """`runs show` of a failed run: status, the steps, the error and the doeff traceback
    pointing at this file; --json is the record."""
    shown = doeff("runs", "show", store, "bad")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "status   failed" in out and "program  job, attempt 1" in out
    assert "error: RuntimeError: the warehouse is closed" in out
    assert "test_cli_runs.py" in out and 'raise RuntimeError("the warehouse is closed")' in out
    steps = [line.split()[:2] for line in out.split("steps:\n")[1].split("\n\n")[0]
             .splitlines()[1:]]
    assert steps == [["hit", "a"], ["hit", "b"]]  # `ok` ran first and stored them
    record = json.loads(doeff("runs", "show", store, "ok", "--json").stdout)
    assert record["status"] == "completed" and [s["key"] for s in record["steps"]] == ["a", "b"]


def test_missing_runs_and_stores_exit_like_doeff_cache(store: str, tmp_path: Path) -> None:
    """A missing run is exit 1 with one line; a missing store exit 2; cancelling a run that
    ended exit 1 saying so."""
    missing = doeff("runs", "show", store, "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("doeff: ")
    assert "no run nope" in missing.stderr and len(missing.stderr.splitlines()) == 1
    nostore = doeff("runs", "ls", str(tmp_path / "absent.db"))
    assert nostore.returncode == 2 and "no such store" in nostore.stderr
    ended = doeff("runs", "cancel", store, "ok")
    assert ended.returncode == 1 and "is completed: there is nothing to cancel" in ended.stderr


def test_watch_of_an_ended_run_prints_a_line_and_tells_how_it_ended(store: str) -> None:
    """Piped, `watch` prints plain lines and returns at once for an ended run: 0 completed,
    1 failed."""
    ok = doeff("runs", "watch", store, "ok")
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 1
    assert " ok completed step " in ok.stdout and "\x1b" not in ok.stdout
    bad = doeff("runs", "watch", store, "bad")
    assert bad.returncode == 1 and " bad failed " in bad.stdout


def test_rm_and_prune_remove_records_but_not_steps(store: str) -> None:
    """`rm` deletes a record (exit 1 naming the ones missing); `prune` those older than the
    given age; the cache's records stay."""
    removed = doeff("runs", "rm", store, "ok", "ghost")
    assert removed.returncode == 1 and "removed 1 run record" in removed.stdout
    assert "no run ghost" in removed.stderr
    assert doeff("runs", "prune", store, "--older-than", "1h").stdout.strip() == \
        "removed 0 run records"
    time.sleep(1.1)
    assert doeff("runs", "prune", store, "--older-than", "1s").stdout.strip() == \
        "removed 1 run record"
    assert doeff("runs", "ls", store).stdout.splitlines()[1:] == []
    assert len(doeff("cache", "ls", store).stdout.splitlines()) == 3


def test_reading_commands_change_nothing_in_a_store_without_runs(tmp_path: Path) -> None:
    """ls, show and watch open the store read-only: on a store no run has recorded into they
    list nothing, and the file gains no table and no byte."""
    path = tmp_path / "plain.db"
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        storage.put("step", 1)
    before = path.read_bytes()
    listed = doeff("runs", "ls", str(path))
    assert listed.returncode == 0 and listed.stdout.splitlines()[1:] == [], listed.stderr
    assert doeff("runs", "show", str(path), "x").returncode == 1
    assert doeff("runs", "watch", str(path)).returncode == 0
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["doeff_kv"]


def test_text_read_from_a_record_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """A crafted record's escape sequences come out escaped in ls and show."""
    path = tmp_path / "evil.db"
    with SQLiteKV(path) as kv:
        now = time.time()
        RunStore(kv.namespace("runs")).write({
            "run_id": "evil", "status": "completed", "program": "\x1b[2Jclear",
            "started_at": now, "updated_at": now, "heartbeat_at": now, "ended_at": now,
            "current_effect": {"type": "X", "repr": "\x1b]0;title\x07"}, "tasks": [],
            "steps": [{"key": "\x1b[31mred", "outcome": "hit", "seconds": 0, "bytes": 1,
                       "at": now}]})
    for args in (("ls",), ("show",)):
        out = doeff("runs", *args, str(path), *(["evil"] if args == ("show",) else []))
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and "\\x1b" in out.stdout


def test_a_request_that_does_not_show_in_time_says_why(tmp_path: Path) -> None:
    """`runs cancel --timeout` that runs out says whether the run took the request (it lands
    when the call in progress returns, and it does) or has not read it (the request stays)."""
    import threading

    from doeff import run_workflow
    from doeff.errors import CancellationError
    from doeff.runs import get_run, pending_request

    path = tmp_path / "wf.db"
    gate = threading.Event()
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        execution = run_workflow(cached("long", lambda: perform(gate.wait, 60)),
                                 storage=storage, run_id="long")
        try:
            deadline = time.monotonic() + 30
            while not ((r := get_run(storage, "long")) and r.current_effect is not None):
                assert time.monotonic() < deadline, "the run never reached its call"
                time.sleep(0.05)
            taken = doeff("runs", "cancel", str(path), "long", "--timeout", "1")
        finally:
            gate.set()
        assert taken.returncode == 1 and len(taken.stderr.splitlines()) == 1
        assert "it has taken the request, which lands when the call in progress" \
            in taken.stderr
        assert isinstance(execution.wait(30).error, CancellationError)
        now = time.time()  # a live record nobody heartbeats for: the request is never read
        RunStore(storage.run_records()).write({
            "run_id": "stalled", "status": "running", "program": "p", "started_at": now,
            "updated_at": now, "heartbeat_at": now, "ended_at": None, "host": "elsewhere",
            "pid": 1, "tasks": [], "steps": []})
        unread = doeff("runs", "cancel", str(path), "stalled", "--timeout", "0.3")
        assert unread.returncode == 1
        assert "it has not read the request yet; the request stays" in unread.stderr
        assert pending_request(storage, "stalled") == "cancel"


def test_durations_read_the_same_in_runs_and_cache_commands(store: str) -> None:
    """`runs prune --older-than` and `cache rm --older-than` take the same durations (2w
    included) and refuse the same way."""
    assert doeff("runs", "prune", store, "--older-than", "2w").returncode == 0
    for command in (("runs", "prune"), ("cache", "rm")):
        bad = doeff(*command, store, "--older-than", "soon")
        assert bad.returncode == 2
        assert "'soon' is not a duration; write a number with s, m, h, d or w" in bad.stderr
