"""Claimed steps compute once across workers: in one run, across threads, and across real
processes on SQLite, LMDB and PostgreSQL — including a lease holder that is SIGKILLed."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_server
import pytest

from doeff import run_sync, run_workflow, step
from doeff.cli.app import main as cli_main
from doeff.effects import cached, gather, perform
from doeff.effects.cache import Claim
from doeff.errors import StepClaimError
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, InMemoryKV, InMemoryStorage, SQLiteKV
from doeff.storage.claims import LEASE_PREFIX

WORKERS = Path(__file__).with_name("step_workers.py")


@pytest.fixture(params=["sqlite", "lmdb", "postgres"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store the worker processes share, as step_workers.py names it."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'wf.db'}"
    if request.param == "lmdb":
        return f"lmdb:{tmp_path / 'wf.lmdb'}"
    server = pg_server.require_server()
    return f"postgres:{pg_server.table_for(tmp_path)}:{server.dsn}"


_started: list[subprocess.Popen[str]] = []


def _worker(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=WORKERS.parent)
    _started.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    """A failing test must not leave its workers waiting for ever."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _computed(log: Path) -> collections.Counter[tuple[str, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return collections.Counter((name, index) for name, index, _ in map(str.split, lines))


def test_four_processes_compute_fifty_claimed_steps_exactly_once(store_spec: str,
                                                                 tmp_path: Path) -> None:
    """Four worker processes run the same 50 claimed steps at once (each in its own order):
    every step is computed once, and every worker gets every result."""
    log, go = tmp_path / "computed.log", tmp_path / "go"
    procs = [_worker("many", store_spec, str(log), str(go), str(seed)) for seed in range(4)]
    time.sleep(0.3)  # let them import and open the store
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    for result in outputs:
        assert {int(k): v for k, v in result.items()} == {i: i * i for i in range(50)}
    counts = _computed(log)
    assert counts == collections.Counter({("work", str(i)): 1 for i in range(50)})


def test_a_killed_lease_holder_is_taken_over_once_its_lease_expires(store_spec: str,
                                                                    tmp_path: Path) -> None:
    """A worker SIGKILLed while computing a claimed step holds its lease until it expires;
    then another worker takes the step over, computes it and stores it."""
    log = tmp_path / "computed.log"
    holder = _worker("hold", store_spec, str(log))
    deadline = time.monotonic() + 30
    while _computed(log)[("slow", "1")] == 0:
        assert holder.poll() is None, holder.communicate()[1]
        assert time.monotonic() < deadline, "the holder never started computing"
        time.sleep(0.02)
    time.sleep(1.2)  # its lease has been renewed at least once by now (every third of it)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    killed_at = time.monotonic()
    taker = _worker("take", store_spec, str(log))
    out, err = taker.communicate(timeout=60)
    assert taker.returncode == 0, err
    result = json.loads(out)
    assert result["value"] == f"computed by {taker.pid}"
    # It waited for the dead holder's lease (3 s from its last renewal) to run out.
    assert time.monotonic() - killed_at >= 0.3
    assert result["waited"] > 0.2
    assert "took over the lease" in err
    assert _computed(log) == collections.Counter({("slow", "1"): 1, ("slow", "0"): 1})


# -- in one process ------------------------------------------------------------------------------


@pytest.fixture(params=["InMemoryStorage", "Durable"])
def storage(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A storage that can claim: the default in-memory one, and Durable over InMemoryKV."""
    if request.param == "InMemoryStorage":
        yield InMemoryStorage()
    else:
        with Durable(InMemoryKV(), MsgpackCodec()) as durable:
            yield durable


def test_concurrent_tasks_of_one_run_compute_a_claimed_step_once(storage: Any) -> None:
    """Five tasks of one gather reaching the same claimed step: one computes, four wait."""
    calls: list[int] = []

    @step(claim=Claim(lease=5, poll=0.01))
    def costly(x: int) -> int:
        calls.append(x)
        time.sleep(0.05)
        return x + 1

    result = run_sync(gather(*[costly(7) for _ in range(5)]), storage=storage)
    assert result.value == [8] * 5
    assert calls == [7]
    assert not [k for k in storage.keys() if k.startswith(LEASE_PREFIX)]


def test_runs_in_threads_share_a_claimed_cached_step(tmp_path: Path) -> None:
    """cached(claim=True) in four runs on four threads over one SQLite store: computed once."""
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        time.sleep(0.1)
        return "done"

    program = cached("report", lambda: perform(compute), claim=Claim(lease=5, poll=0.01))
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        runs = [run_workflow(program, storage=store) for _ in range(4)]
        assert [r.wait(30).value for r in runs] == ["done"] * 4
    assert calls == [1]


def test_a_waiting_worker_gives_up_after_claim_wait(tmp_path: Path) -> None:
    """Claim(wait=...) bounds how long a worker waits for another's live lease."""
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        lease = store.claim("step:slow", 30)
        program = cached("step:slow", lambda: perform(lambda: 1),
                         claim=Claim(lease=5, poll=0.01, wait=0.1))
        result = run_sync(program, storage=store)
        store.release_claim(lease)  # type: ignore[arg-type]
    assert isinstance(result.error, StepClaimError)
    assert "claimed by" in str(result.error) and "wait" in str(result.error)


def test_a_failed_claimed_step_releases_its_lease_and_caches_nothing(storage: Any) -> None:
    """A claimed step that raises gives its lease back (the next worker can compute it)."""

    @step(claim=Claim(lease=5, poll=0.01))
    def broken(x: int) -> int:
        raise ValueError("no")

    assert isinstance(run_sync(broken(1), storage=storage).error, ValueError)
    assert storage.keys() == []


def test_lease_records_are_readable_in_ls_while_held(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A lease held in a store shows in `doeff cache ls` as a JSON record with its expiry,
    not as an unreadable one."""
    path = tmp_path / "wf.db"
    with Durable(SQLiteKV(path), MsgpackCodec()) as store:
        lease = store.claim("step:x@v1:00", 30)
        assert cli_main(["cache", "ls", str(path), "--json"]) == 0
        out, err = capsys.readouterr()
        store.release_claim(lease)  # type: ignore[arg-type]
    [row] = json.loads(out)
    assert row["key"] == LEASE_PREFIX + "step:x@v1:00"
    assert row["codec"] == "json" and row["error"] is None and row["expires_at"] is not None
    assert err == ""


def test_a_lease_is_renewed_while_its_step_computes(tmp_path: Path) -> None:
    """While the holder computes for longer than its lease, its heartbeat keeps the lease
    alive: a second worker keeps waiting instead of taking it over."""
    started = threading.Event()
    calls: list[str] = []

    @step(claim=Claim(lease=0.3, poll=0.02))
    def long(x: int) -> str:
        calls.append("ran")
        started.set()
        time.sleep(1.0)  # more than three leases
        return "slow result"

    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        first = run_workflow(long(1), storage=store)
        assert started.wait(10)
        second = run_workflow(long(1), storage=store)
        assert first.wait(30).value == "slow result"
        assert second.wait(30).value == "slow result"
    assert calls == ["ran"]


def test_a_store_that_cannot_claim_says_so() -> None:
    """claim=True on a storage without claims is a StepClaimError naming the storage."""

    class Plain:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        def get(self, key: str) -> Any:
            return self.data.get(key)

        def put(self, key: str, value: Any) -> None:
            self.data[key] = value

        def delete(self, key: str) -> bool:
            return self.data.pop(key, None) is not None

        def exists(self, key: str) -> bool:
            return key in self.data

        def keys(self) -> list[str]:
            return list(self.data)

        def items(self) -> list[tuple[str, Any]]:
            return list(self.data.items())

        def clear(self) -> None:
            self.data.clear()

    result = run_sync(cached("k", lambda: perform(lambda: 1), claim=True), storage=Plain())
    assert isinstance(result.error, StepClaimError) and "Plain cannot" in str(result.error)



def test_a_lease_taken_after_another_was_released_is_renewed_in_time(tmp_path: Path) -> None:
    """The renewing thread, idle after a release, wakes for the next lease: that lease stays
    alive past its length while held."""
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        first = store.claim("a", 0.3)
        store.release_claim(first)  # type: ignore[arg-type]
        second = store.claim("b", 0.3)
        time.sleep(0.6)  # two lease lengths
        held = store.claim("b", 0.3)
        assert getattr(held, "owner", None) == second.owner
        assert not getattr(second, "lost", True)
        store.release_claim(second)  # type: ignore[arg-type]
