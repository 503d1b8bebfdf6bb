"""A workflow SIGKILLed at random points resumes without re-running finished steps."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

STEPS = 30

WORKER = textwrap.dedent("""
    import os, sys
    from doeff import do, run_sync
    from doeff.effects import perform
    from doeff.effects.cache import cached
    from doeff.serde import MsgpackCodec
    from doeff.storage import Durable, SQLiteKV

    db, ran_log = sys.argv[1], sys.argv[2]
    fd = os.open(ran_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def compute(i):
        os.write(fd, f"{i}\\n".encode())  # survives SIGKILL: the kernel has it
        return {"step": i, "square": i * i, "tags": ["x"] * (i % 4)}

    @do
    def workflow():
        total = 0
        for i in range(STEPS):
            value = yield cached(f"step:{i}", lambda i=i: perform(compute, i))
            print(f"done {i}", flush=True)   # only after the put returned
            total += value["square"]
        return total

    with Durable(SQLiteKV(db), MsgpackCodec()) as storage:
        print("result", run_sync(workflow(), storage=storage).value, flush=True)
""").replace("STEPS", str(STEPS))


def _attempt(db: Path, ran_log: Path, kill_after: int | None, rng: random.Random) -> list[str]:
    """Run the worker; SIGKILL it after `kill_after` finished steps (plus a random delay)."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(ran_log)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.strip())
        done = sum(1 for x in lines if x.startswith("done"))
        if kill_after is not None and done >= kill_after:
            time.sleep(rng.random() * 0.003)  # land the kill anywhere in the next step
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    return lines


def _computed(ran_log: Path) -> list[int]:
    return [int(x) for x in ran_log.read_text().split()] if ran_log.exists() else []


def test_sigkilled_workflow_resumes_without_redoing_finished_steps(tmp_path: Path) -> None:
    """After SIGKILLs at random points, no finished step runs again and the result is right."""
    rng = random.Random(424)
    db, ran_log = tmp_path / "wf.db", tmp_path / "ran.log"
    kills = sorted(rng.sample(range(1, STEPS - 1), 4))
    finished_so_far: set[int] = set()
    for kill_after in [*kills, None]:
        before = len(_computed(ran_log))
        lines = _attempt(db, ran_log, kill_after, rng)
        computed_now = _computed(ran_log)[before:]
        # Nothing that finished in an earlier attempt was computed again in this one.
        assert not finished_so_far & set(computed_now), (finished_so_far, computed_now)
        finished_so_far |= {int(x.split()[1]) for x in lines if x.startswith("done")}
        if kill_after is None:
            assert lines[-1] == f"result {sum(i * i for i in range(STEPS))}"

    computed = _computed(ran_log)
    assert set(computed) == set(range(STEPS))
    # Only a step in flight at a kill may have been computed twice.
    assert len(computed) - STEPS <= len(kills)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
