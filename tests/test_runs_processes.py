"""Runs seen from another process: a worker process runs a recorded workflow while this process
lists, watches, pauses, resumes and cancels it, and SIGKILLs it to see it "lost" with the K
stack of its last heartbeat; on every backend that outlives a process.

The workflows are defined in this file and the worker runs this file, so the K stacks the
records show point at lines of this file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
TIMEOUT = 60.0  # generous: a loaded 2-core machine starts processes slowly

# -- the worker side -------------------------------------------------------------------------


def open_storage(spec: str) -> Any:
    """A msgpack Durable over the store `spec` names: sqlite:PATH, lmdb:PATH, postgres:DSN|T."""
    from doeff.serde import MsgpackCodec
    from doeff.storage import LMDBKV, Durable, SQLiteKV

    kind, _, target = spec.partition(":")
    if kind == "sqlite":
        kv: Any = SQLiteKV(target)
    elif kind == "lmdb":
        kv = LMDBKV(target)
    else:
        from doeff.storage import PostgresKV

        dsn, _, table = target.rpartition("|")
        kv = PostgresKV(dsn, table=table)
    return Durable(kv, MsgpackCodec())


def block_forever() -> None:
    """A step that never finishes (the test kills or cancels the worker inside it)."""
    time.sleep(3600)


def quick(i: int) -> int:
    return i * i


def slowly(i: int) -> int:
    time.sleep(0.05)
    return i


def workflows() -> dict[str, Callable[[str], Any]]:
    from doeff import do
    from doeff.effects import perform
    from doeff.effects.cache import cached

    @do
    def stuck(prefix: str) -> Generator[Any, Any, Any]:
        total = 0
        for i in range(3):
            total += yield cached(f"{prefix}:{i}", lambda i=i: perform(quick, i))  # type: ignore[misc]
        yield cached(f"{prefix}:stuck", lambda: perform(block_forever))  # STUCK HERE
        return total

    @do
    def long(prefix: str) -> Generator[Any, Any, Any]:
        total = 0
        for i in range(400):  # 20 s at most: the test cancels it long before
            total += yield cached(f"{prefix}:{i}", lambda i=i: perform(slowly, i))  # type: ignore[misc]
        return total

    @do
    def short(prefix: str) -> Generator[Any, Any, Any]:
        total = 0
        for i in range(5):
            total += yield cached(f"shared:{i}", lambda i=i: perform(quick, i))  # type: ignore[misc]
            total += yield cached(f"{prefix}:{i}", lambda i=i: perform(slowly, i))  # type: ignore[misc]
        return total

    return {"stuck": stuck, "long": long, "short": short}


def worker(spec: str, name: str, run_id: str) -> int:
    """Run workflow `name` recorded as `run_id`; print its outcome as one JSON line."""
    from doeff import run_sync

    with open_storage(spec) as storage:
        result = run_sync(workflows()[name](run_id), storage=storage, run_id=run_id)
    print(json.dumps({"ok": result.is_ok(),
                      "error": None if result.is_ok() else type(result.error).__name__}))
    return 0


# -- the test side -----------------------------------------------------------------------------


def start(spec: str, name: str, run_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, str(HERE), spec, name, run_id],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def doeff(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "doeff", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=env)


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Poll `check` until it returns something truthy; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stuck_line() -> int:
    return next(n for n, line in enumerate(HERE.read_text().splitlines(), 1)
                if "# STUCK HERE" in line and "yield" in line)


def _backends(tmp_path: Path) -> Iterator[tuple[str, str]]:
    yield "sqlite", f"sqlite:{tmp_path / 'runs.db'}"
    yield "lmdb", f"lmdb:{tmp_path / 'runs.lmdb'}"


@pytest.fixture(params=["sqlite", "lmdb", "postgres"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store every process can open, on each backend that outlives a process."""
    if request.param == "postgres":
        import pg_server

        reason = pg_server.unavailable()
        if reason is not None:
            pytest.skip(reason)
        return f"postgres:{pg_server.session_server().dsn}|{pg_server.table_for(tmp_path)}"
    return dict(_backends(tmp_path))[request.param]


def test_a_killed_worker_shows_as_lost_where_it_was(spec: str) -> None:
    """While the worker blocks in a long step the record says running, with the K stack at
    this file's line and the effect it waits on; after SIGKILL the run reads "lost", still
    showing that place; running the same id again continues the record and reads the finished
    steps back."""
    from doeff.runs import get_run, list_runs

    with open_storage(spec) as storage:
        proc = start(spec, "stuck", "job-1")
        try:
            running = wait_for("the worker to block in its fourth step", lambda: (
                (r := get_run(storage, "job-1")) is not None and r.current_effect is not None
                and r.current_effect.type == "Perform" and len(r.steps) == 3 and r))
            assert running.status == "running" and running.pid == proc.pid
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT)
        lost = get_run(storage, "job-1")
        assert lost is not None and lost.status == "lost"
        assert "has exited" in (lost.lost_reason or "")
        assert lost.current_effect is not None and "block_forever" in lost.current_effect.repr
        user = [f for f in lost.tasks[0].k_stack if f.file == str(HERE)]
        assert user and user[0].line == stuck_line() and user[0].function == "stuck"
        assert [s.key for s in lost.steps] == ["job-1:0", "job-1:1", "job-1:2"]
        assert all(s.outcome == "computed" and s.bytes for s in lost.steps)
        assert [r.status for r in list_runs(storage, status="lost")] == ["lost"]

        again = start(spec, "stuck", "job-1")
        try:
            resumed = wait_for("the second attempt to block", lambda: (
                (r := get_run(storage, "job-1")) is not None and r.attempt == 2
                and r.current_effect is not None and len(r.steps) == 3 and r))
        finally:
            again.send_signal(signal.SIGKILL)
            again.wait(TIMEOUT)
        assert [s.outcome for s in resumed.steps] == ["hit", "hit", "hit"]
        assert [(a.attempt, a.status) for a in resumed.attempts] == [(1, "lost")]


def test_pause_resume_and_cancel_from_another_process(tmp_path: Path) -> None:
    """`doeff runs pause` stops the worker at a step boundary (its step count stays put),
    `resume` lets it go on, `cancel` ends it with CancellationError, as WorkflowExecution's
    own methods would; each lands while the worker runs, and the command says so."""
    from doeff.runs import get_run

    spec = f"sqlite:{tmp_path / 'steer.db'}"
    store = str(tmp_path / "steer.db")
    proc = start(spec, "long", "steer")
    try:
        with open_storage(spec) as storage:
            wait_for("a few steps", lambda: (r := get_run(storage, "steer")) is not None
                     and len(r.steps) >= 3)
            paused = doeff("runs", "pause", store, "steer")
            assert paused.returncode == 0, paused.stderr
            assert paused.stdout.startswith("run steer: paused (paused at step")
            first = get_run(storage, "steer")
            assert first is not None and first.status == "paused"
            time.sleep(1.5)  # a few heartbeats: the record stays fresh, the machine still
            later = get_run(storage, "steer")
            assert later is not None and later.status == "paused"
            assert later.step_count == first.step_count
            assert later.heartbeat_at > first.heartbeat_at
            resumed = doeff("runs", "resume", store, "steer")
            assert resumed.returncode == 0, resumed.stderr
            wait_for("steps after the resume", lambda: (r := get_run(storage, "steer"))
                     is not None and r.step_count > first.step_count)
            cancelled = doeff("runs", "cancel", store, "steer")
            assert cancelled.returncode == 0, cancelled.stderr
            assert cancelled.stdout.startswith("run steer: cancelled (failed at step")
            out, _ = proc.communicate(timeout=TIMEOUT)
            assert json.loads(out) == {"ok": False, "error": "CancellationError"}
            ended = get_run(storage, "steer")
            assert ended is not None and ended.status == "failed"
            assert ended.error is not None and ended.error.type == "CancellationError"
            again = doeff("runs", "cancel", store, "steer")
            assert again.returncode == 1 and "is failed: there is nothing to cancel" in \
                again.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


def test_several_runs_share_one_store_and_are_watched_to_their_end(tmp_path: Path) -> None:
    """Three workers on one store keep three records, each listing only its own steps (a key
    two runs share is read back by whichever came second); `doeff runs watch` piped prints
    plain lines and returns when every run has ended."""
    from doeff.runs import list_runs

    spec = f"sqlite:{tmp_path / 'shared.db'}"
    store = str(tmp_path / "shared.db")
    procs = [start(spec, "short", f"w{i}") for i in range(3)]
    try:
        with open_storage(spec) as storage:
            wait_for("three records", lambda: len(list_runs(storage)) == 3)
            watched = doeff("runs", "watch", store, "--interval", "0.1")
            for proc in procs:
                assert json.loads(proc.communicate(timeout=TIMEOUT)[0])["ok"]
            records = {r.run_id: r for r in list_runs(storage)}
        assert watched.returncode == 0, watched.stderr
        lines = watched.stdout.splitlines()
        assert lines and all("\x1b" not in line for line in lines)
        assert {line.split()[2] for line in lines} == {"w0", "w1", "w2"}
        assert sorted(records) == ["w0", "w1", "w2"]
        for run_id, record in records.items():
            assert record.status == "completed"
            own = [s.key for s in record.steps if not s.key.startswith("shared:")]
            assert own == [f"{run_id}:{i}" for i in range(5)]
            assert [s.key for s in record.steps if s.key.startswith("shared:")] == \
                [f"shared:{i}" for i in range(5)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT)



def test_watch_on_a_terminal_redraws_in_place_as_the_run_moves(tmp_path: Path) -> None:
    """`doeff runs watch STORE RUN` on a terminal (a real pseudo-terminal) clears and redraws
    the run's view in place as its step count grows, and exits when the run ends."""
    import pty
    import re

    spec = f"sqlite:{tmp_path / 'tty.db'}"
    store = str(tmp_path / "tty.db")
    proc = start(spec, "long", "tty-run")
    main, replica = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    watcher: subprocess.Popen[bytes] | None = None
    try:
        with open_storage(spec) as storage:
            from doeff.runs import cancel_run, get_run

            wait_for("the run to start", lambda: (r := get_run(storage, "tty-run")) is not None
                     and r.status == "running")
            watcher = subprocess.Popen(
                [sys.executable, "-m", "doeff", "runs", "watch", store, "tty-run",
                 "--interval", "0.1"], stdin=replica, stdout=replica, stderr=replica, env=env)
            os.close(replica)
            seen = b""

            def steps_shown() -> list[int]:
                return [int(n) for n in re.findall(rb"\nsteps\s+(\d+) ", seen)]

            def read_more() -> bool:
                nonlocal seen
                import select

                if select.select([main], [], [], 0.05)[0]:
                    seen += os.read(main, 65536)
                return len(set(steps_shown())) >= 3

            wait_for("three redraws with different step counts", read_more)
            cancel_run(storage, "tty-run")
            assert watcher.wait(TIMEOUT) == 1  # the run ended failed (cancelled): exit 1
        while True:  # drain what the watcher wrote last
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        frames = seen.split(b"\x1b[H\x1b[J")
        assert len(frames) >= 4  # nothing before the first clear, then one frame per redraw
        assert all(f.startswith(b"run      tty-run") for f in frames[1:])
        counts = steps_shown()
        assert counts == sorted(counts) and counts[-1] > counts[0]
        assert b"status   failed" in frames[-1]
    finally:
        os.close(main)
        for p in (proc, watcher):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(TIMEOUT)


if __name__ == "__main__":
    sys.exit(worker(*sys.argv[1:]))
