"""SQLite and LMDB stores across real processes: restarts, concurrent writers, fork, SIGKILL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

from doeff.storage import LMDBKV, KVStore, SQLiteKV

ROOT = Path(__file__).resolve().parents[1]
FORK = mp.get_context("fork")

OPENERS: dict[str, Callable[[Path], KVStore]] = {
    "sqlite": lambda d: SQLiteKV(d / "store.db"),
    "lmdb": lambda d: LMDBKV(d / "store.lmdb"),
}
OPEN_CODE = {
    "sqlite": "from doeff.storage import SQLiteKV; kv = SQLiteKV(sys.argv[1] + '/store.db')",
    "lmdb": "from doeff.storage import LMDBKV; kv = LMDBKV(sys.argv[1] + '/store.lmdb')",
}


def run_python(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter (the project importable) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("backend", OPENERS)
def test_a_later_process_reads_what_an_earlier_process_put(backend: str, tmp_path: Path) -> None:
    """What one process put is read back by a second process started afterwards."""
    run_python(f"""
        import sys; {OPEN_CODE[backend]}
        kv.put("step:1", b"done"); kv.put("é" * 2000, b"long"); kv.close()
    """, str(tmp_path))
    out = run_python(f"""
        import sys; {OPEN_CODE[backend]}
        print(kv.get("step:1"), kv.get("é" * 2000), len(kv))
    """, str(tmp_path))
    assert out.split() == ["b'done'", "b'long'", "2"]


def test_sqlite_storage_objects_pickled_by_one_process_are_read_by_another(
    tmp_path: Path,
) -> None:
    """An object SQLiteStorage pickled in one process is read back by another."""
    code = """
        import sys
        from doeff.storage.sqlite import SQLiteStorage
        s = SQLiteStorage(sys.argv[1])
        if sys.argv[2] == "write":
            s.put("result", {"rows": (1, 2), "ok": True})
        else:
            print(s.get("result"))
    """
    db = str(tmp_path / "sqlite-storage.db")
    run_python(code, db, "write")
    assert run_python(code, db, "read").strip() == "{'rows': (1, 2), 'ok': True}"


def _writer(backend: str, directory: Path, worker: int, kv: KVStore | None) -> None:
    store = kv if kv is not None else OPENERS[backend](directory)
    for i in range(1000):
        store.put(f"p{worker}:{i}", f"{worker}/{i}".encode())
    store.close()


@pytest.mark.parametrize("inherited", [False, True], ids=["opened-in-child", "forked-handle"])
@pytest.mark.parametrize("backend", OPENERS)
def test_four_processes_thousand_puts_each(backend: str, inherited: bool, tmp_path: Path) -> None:
    """4 processes x 1,000 puts on one store: every write is present, no process fails.

    With a forked handle the children keep using the store object their parent opened.
    """
    parent = OPENERS[backend](tmp_path)
    handle = parent if inherited else None
    procs = [FORK.Process(target=_writer, args=(backend, tmp_path, w, handle)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    parent.put("parent", b"still usable")
    expected = {f"p{w}:{i}": f"{w}/{i}".encode() for w in range(4) for i in range(1000)}
    assert dict(parent.items()) == {**expected, "parent": b"still usable"}
    parent.close()


def _open_at_once(path: str, start: EventType, worker: int) -> None:
    start.wait()
    with SQLiteKV(path) as kv:
        kv.put(f"w{worker}", b"x")


def test_processes_opening_the_same_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Eight processes creating the same new SQLite store at the same moment all succeed."""
    for attempt in range(3):
        path = str(tmp_path / f"new{attempt}.db")
        start = FORK.Event()
        procs = [FORK.Process(target=_open_at_once, args=(path, start, w)) for w in range(8)]
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(60)
        assert [p.exitcode for p in procs] == [0] * 8
        with SQLiteKV(path) as kv:
            assert sorted(kv.keys()) == [f"w{w}" for w in range(8)]


KILL_LOOP = """
    import sys; {open}
    i = 0
    while True:
        kv.put(f"k{{i}}", b"v" * (i % 500))
        print(i, flush=True)  # acknowledged: put returned
        i += 1
"""


@pytest.mark.parametrize("backend", OPENERS)
def test_sigkill_loses_no_acknowledged_put(backend: str, tmp_path: Path) -> None:
    """A writer SIGKILLed mid-loop loses no put it acknowledged, and the file stays intact."""
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(KILL_LOOP.format(open=OPEN_CODE[backend])),
             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        acked, kill_at = -1, 150 + 97 * round_
        for line in proc.stdout:
            acked = int(line)
            if acked >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait()
        for line in proc.stdout:  # acks already in the pipe when the kill landed
            acked = int(line)
        # The writer really got that far and died of the kill (not of an error of its own).
        assert acked >= kill_at and proc.returncode == -signal.SIGKILL, (acked, proc.returncode)
        with OPENERS[backend](tmp_path) as kv:
            assert all(kv.get(f"k{i}") == b"v" * (i % 500) for i in range(acked + 1))
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "store.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
