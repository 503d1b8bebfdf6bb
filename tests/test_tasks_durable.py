"""A durable fan-out: cached items of concurrent tasks, SIGKILLed mid-way, resume recomputing
only what was in flight (at most max_concurrency items), on SQLite and LMDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ITEMS = 50
K = 4  # max_concurrency

WORKER = textwrap.dedent("""
    import os, sys, time
    from dataclasses import dataclass
    from doeff import Effect, do, run_sync
    from doeff.effects import cached, gather, perform
    from doeff.serde import MsgpackCodec
    from doeff.storage import Durable, LMDBKV, SQLiteKV

    backend, path, ran_log, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    fd = os.open(ran_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def compute(i):
        os.write(fd, f"{i}\\n".encode())  # survives SIGKILL: the kernel has it
        time.sleep(0.03)
        return {"item": i, "square": i * i}

    @dataclass(frozen=True)
    class Done(Effect):  # answered on the machine thread, at once (a perform would queue)
        item: int

    @do
    def item(i):
        value = yield cached(f"item:{i}", lambda: perform(compute, i))
        yield Done(i)  # only after the put returned
        return value["square"]

    @do
    def fan_out():
        return sum((yield gather(*[item(i) for i in range(ITEMS)])))

    kv = SQLiteKV(path) if backend == "sqlite" else LMDBKV(path)
    with Durable(kv, MsgpackCodec()) as storage:
        done = {Done: lambda eff: print(f"done {eff.item}", flush=True)}
        result = run_sync(fan_out(), storage=storage, max_concurrency=k, handlers=done)
        print("result", result.value, flush=True)
""").replace("ITEMS", str(ITEMS))


def _run(backend: str, path: Path, ran_log: Path, kill_after: int | None) -> list[str]:
    """Run the worker; SIGKILL it once `kill_after` items have finished."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, backend, str(path), str(ran_log),
                             str(K)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.strip())
        if kill_after is not None and sum(x.startswith("done") for x in lines) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    return lines


def _started(ran_log: Path) -> list[int]:
    return [int(x) for x in ran_log.read_text().split()] if ran_log.exists() else []


@pytest.mark.parametrize("backend", ["sqlite", "lmdb"])
def test_a_killed_fan_out_recomputes_only_the_items_in_flight(backend: str,
                                                               tmp_path: Path) -> None:
    """Killed after 20 of 50 items, the re-run computes each item once, except the ones that
    were running at the kill: at most max_concurrency of them."""
    path, ran_log = tmp_path / f"fan.{backend}", tmp_path / "ran.log"
    first = _run(backend, path, ran_log, kill_after=20)
    assert not any(x.startswith("result") for x in first)  # it was killed mid-way
    started_first = _started(ran_log)
    assert 20 <= len(started_first) < ITEMS
    finished_first = {int(x.split()[1]) for x in first if x.startswith("done")}
    second = _run(backend, path, ran_log, kill_after=None)
    assert second[-1] == f"result {sum(i * i for i in range(ITEMS))}"
    started_second = _started(ran_log)[len(started_first):]
    again = set(started_first) & set(started_second)
    assert not again & finished_first  # no finished item ran again
    assert len(again) <= K, again  # only items in flight at the kill
    assert sorted(set(started_first) | set(started_second)) == list(range(ITEMS))
    assert len(started_second) == len(set(started_second))  # each once in the re-run
