"""How long a pause, resume or cancel asked from another process takes to land in a run.

A worker process runs a recorded workflow (`run_id=`) of 20 ms steps on SQLite; this process asks
it to pause, resume and cancel through `doeff.runs` and polls the run's record every 5 ms until
the record shows the request landed (paused; running again; ended). The runs issue promises
"within a second". Figures are wall-clock from the request to the record that shows it, so they
include the worker's heartbeat (it reads requests every TICK seconds) and the record write.

    python benchmarks/runs_control.py [--quick]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from typing import Any

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def worker(path: str, run_id: str) -> int:
    """Run 20 ms steps until cancelled (the measuring side ends it)."""
    from doeff import do, run_sync
    from doeff.effects import perform
    from doeff.serde import MsgpackCodec
    from doeff.storage import Durable, SQLiteKV

    @do
    def steps() -> Generator[Any, Any, Any]:
        for _ in range(100_000):
            yield perform(time.sleep, 0.02)

    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        run_sync(steps(), storage=storage, run_id=run_id)
    return 0


def landed(storage: Any, run_id: str, check: Callable[[Any], bool]) -> float:
    """Seconds until the run's record satisfies `check` (polled every 5 ms)."""
    from doeff.runs import get_run

    started = time.perf_counter()
    while True:
        record = get_run(storage, run_id)
        if record is not None and check(record):
            return time.perf_counter() - started
        if time.perf_counter() - started > 30:
            raise RuntimeError(f"run {run_id}: the request did not land within 30 s")
        time.sleep(0.005)


def main() -> int:
    from doeff.runs import cancel_run, get_run, pause_run, resume_run
    from doeff.serde import MsgpackCodec
    from doeff.storage import Durable, SQLiteKV

    rounds = 2 if "--quick" in sys.argv[1:] else 6
    times: dict[str, list[float]] = {"pause": [], "resume": [], "cancel": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "control.db")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
        with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
            for n in range(rounds):
                run_id = f"bench-{n}"
                proc = subprocess.Popen([sys.executable, HERE, "--worker", path, run_id], env=env)
                try:
                    landed(storage, run_id, lambda r: r.status == "running" and r.step_count > 10)
                    pause_run(storage, run_id)
                    times["pause"].append(landed(storage, run_id,
                                                 lambda r: r.status == "paused"))
                    resume_run(storage, run_id)
                    times["resume"].append(landed(storage, run_id,
                                                  lambda r: r.status == "running"))
                    cancel_run(storage, run_id)
                    times["cancel"].append(landed(storage, run_id, lambda r: r.ended))
                    proc.wait(30)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                record = get_run(storage, run_id)
                assert record is not None and record.status == "failed", record
    print(f"a request from another process until the run's record shows it landed "
          f"(SQLite, 20 ms steps, {rounds} runs; promise: within 1 s)")
    print(f"{'request':8} {'median':>8} {'max':>8}")
    for name, values in times.items():
        print(f"{name:8} {statistics.median(values) * 1e3:6.0f} ms {max(values) * 1e3:6.0f} ms")
    worst = max(max(v) for v in times.values())
    print(f"within 1 s: {'met' if worst <= 1.0 else 'NOT met'} (worst {worst * 1e3:.0f} ms)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(worker(sys.argv[2], sys.argv[3]))
    sys.exit(main())
