"""Run records in one process: what a recorded run writes, how readers see it (lost, attempts,
bounded steps), run-scoped keys, and that a record never crashes its reader."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from doeff import do, run_sync, run_workflow
from doeff.effects import perform
from doeff.effects.cache import cached
from doeff.errors import DecodeError, InvalidOptionError, RunRecordWarning, RunStateError
from doeff.runs import RunRecord, delete_run, get_run, list_runs, prune_runs
from doeff.runs import recorder as recorder_module
from doeff.runs.record import HOST
from doeff.runs.store import RunStore
from doeff.serde import Envelope, MsgpackCodec
from doeff.storage import Durable, InMemoryStorage, SQLiteKV


@do
def steps(n: int, prefix: str = "s") -> Generator[Any, Any, Any]:
    total = 0
    for i in range(n):
        total += yield cached(f"{prefix}:{i}", lambda i=i: perform(lambda: i))  # type: ignore[misc]
    return total


@do
def _blocked(gate: threading.Event) -> Generator[Any, Any, Any]:
    """Waits in one call until `gate` is set, then a step a cancel must keep from running."""
    value = yield cached("slow", lambda: perform(gate.wait, 30))
    yield cached("after", lambda: perform(str, value))
    return value


def _in_its_call(storage: Any, run_id: str) -> bool:
    """Whether the record of `run_id` shows it inside a call."""
    record = get_run(storage, run_id)
    return record is not None and record.current_effect is not None


@pytest.fixture
def storage(tmp_path: Path) -> Any:
    """A msgpack store on a SQLite file."""
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        yield store


def test_a_recorded_run_keeps_its_record_apart_from_the_cache(storage: Any) -> None:
    """The record lists the run's steps in order, with sizes; the cache's keys, items and
    length show only the steps."""
    assert run_sync(steps(3), storage=storage, run_id="nightly").value == 3
    record = get_run(storage, "nightly")
    assert record is not None and record.status == "completed"
    assert [(s.key, s.outcome) for s in record.steps] == [
        ("s:0", "computed"), ("s:1", "computed"), ("s:2", "computed")]
    assert all(s.bytes and s.bytes > 0 for s in record.steps)
    assert record.ended_at is not None and record.error is None and record.pid > 0
    assert record.program == "steps" and record.attempt == 1 and record.host == HOST
    assert sorted(storage.keys()) == ["s:0", "s:1", "s:2"] and len(storage) == 3
    assert [k for k, _ in storage.items()] == sorted(storage.keys())


def test_running_an_id_again_continues_its_record(storage: Any) -> None:
    """A second run of the same id is attempt 2: the first is kept in `attempts`, and the
    steps it finished are listed as read back."""
    run_sync(steps(2), storage=storage, run_id="job")
    run_sync(steps(3), storage=storage, run_id="job")
    record = get_run(storage, "job")
    assert record is not None and record.attempt == 2
    assert [(a.attempt, a.status) for a in record.attempts] == [(1, "completed")]
    assert [s.outcome for s in record.steps] == ["hit", "hit", "computed"]


def test_a_failed_run_records_its_error_and_where_it_failed(storage: Any) -> None:
    """The record of a failing run holds the error's type, message and doeff traceback, and
    the K stack where it was raised."""

    @do
    def broken() -> Generator[Any, Any, None]:
        yield cached("ok", lambda: perform(lambda: 1))
        raise ValueError("no rows for 2024-05-01")

    assert run_sync(broken(), storage=storage, run_id="bad").is_err()
    record = get_run(storage, "bad")
    assert record is not None and record.status == "failed" and record.error is not None
    assert (record.error.type, record.error.message) == ("ValueError", "no rows for 2024-05-01")
    assert "test_runs.py" in record.error.traceback and "raise ValueError" in \
        record.error.traceback
    assert record.tasks[0].k_stack[0].function == "broken"


def test_a_generated_id_is_the_executions(storage: Any) -> None:
    """run_id=True makes an id from the program's name; the execution carries it."""
    execution = run_workflow(steps(1), storage=storage, run_id=True)
    execution.wait(30)
    assert execution.run_id is not None and execution.run_id.startswith("steps-")
    record = get_run(storage, execution.run_id)
    assert record is not None and record.status == "completed"


def test_a_record_is_there_as_soon_as_run_workflow_returns(storage: Any) -> None:
    """The first record is written before the workflow's thread starts."""
    gate = threading.Event()
    execution = run_workflow(cached("x", lambda: perform(gate.wait, 30)), storage=storage,
                             run_id="early")
    try:
        record = get_run(storage, "early")
        assert record is not None and record.status in ("pending", "running")
    finally:
        gate.set()
        execution.wait(30)


def test_the_heartbeat_goes_on_while_the_run_waits_in_a_long_call(storage: Any) -> None:
    """Blocked in one perform, the run's step count stays put while its heartbeat advances,
    and the record names the effect it waits on."""
    gate = threading.Event()
    execution = run_workflow(cached("slow", lambda: perform(gate.wait, 30)), storage=storage,
                             run_id="slow")
    try:
        first = _until(lambda: (r := get_run(storage, "slow")) is not None
                       and r.current_effect is not None and r)
        later = _until(lambda: (r := get_run(storage, "slow")) is not None
                       and r.heartbeat_at > first.heartbeat_at + 0.5 and r)
        assert later.step_count == first.step_count and later.status == "running"
        assert later.current_effect is not None and later.current_effect.type == "Perform"
    finally:
        gate.set()
        execution.wait(30)


def test_a_request_is_pending_until_the_run_has_taken_it(storage: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """pending_request shows a cancel until the run has read it, and only once it is applied:
    a caller that waits for it to go and then lets the blocked call return sees the cancel land
    at the next yield (the step after it never runs), even when applying it is slow."""
    from doeff.errors import CancellationError
    from doeff.runs import cancel_run, pending_request
    from doeff.runs.api import runs_of

    runs_of(storage).request("nobody", "pause")
    assert pending_request(storage, "nobody") == "pause"
    assert pending_request(storage, "slow") is None
    apply = recorder_module.Recorder._apply

    def slow_apply(self: Any, action: str) -> None:
        time.sleep(0.5)  # a reader must not see the request gone before it is applied
        apply(self, action)

    monkeypatch.setattr(recorder_module.Recorder, "_apply", slow_apply)
    gate = threading.Event()

    execution = run_workflow(_blocked(gate), storage=storage, run_id="slow")
    try:
        _until(lambda: _in_its_call(storage, "slow"))
        cancel_run(storage, "slow")
        assert pending_request(storage, "slow") in ("cancel", None)
        _until(lambda: pending_request(storage, "slow") is None)
    finally:
        gate.set()
    result = execution.wait(30)
    assert isinstance(result.error, CancellationError)
    assert "after" not in storage.keys()
    record = get_run(storage, "slow")
    assert record is not None and record.status == "failed"


def test_an_id_live_in_another_run_is_refused(storage: Any) -> None:
    """Starting a run whose id a live run holds is a RunStateError, raised before anything
    runs; the live run is untouched."""
    gate = threading.Event()
    execution = run_workflow(cached("g", lambda: perform(gate.wait, 30)), storage=storage,
                             run_id="one")
    try:
        with pytest.raises(RunStateError, match=r"'one' is (pending|running) in process"):
            run_sync(steps(1), storage=storage, run_id="one")
    finally:
        gate.set()
    assert execution.wait(30).is_ok()
    assert storage.get("s:0") is None


def test_steps_are_bounded_and_the_rest_counted(storage: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A record keeps the latest MAX_STEPS steps and counts the earlier ones."""
    monkeypatch.setattr(recorder_module, "MAX_STEPS", 4)
    run_sync(steps(10), storage=storage, run_id="many")
    record = get_run(storage, "many")
    assert record is not None
    assert [s.key for s in record.steps] == ["s:6", "s:7", "s:8", "s:9"]
    assert record.steps_omitted == 6


def test_options_that_cannot_record_are_refused(tmp_path: Path) -> None:
    """A bad run id, or a storage that cannot keep records apart from its keys, is an
    InvalidOptionError before the run starts."""

    class Plain(dict[str, Any]):
        def put(self, key: str, value: Any) -> None:
            self[key] = value

        def delete(self, key: str) -> bool:
            return self.pop(key, None) is not None

        def exists(self, key: str) -> bool:
            return key in self

        def clear(self) -> None:
            super().clear()

    ran: list[int] = []
    program = perform(lambda: ran.append(1))
    with pytest.raises(InvalidOptionError, match="cannot hold run records"):
        run_sync(program, storage=Plain(), run_id="x")
    for bad in ("", "a b", "x" * 201, "tab\there", 7):
        with pytest.raises(InvalidOptionError, match="run id"):
            run_sync(program, run_id=bad)  # type: ignore[arg-type]
    assert ran == []


def test_in_memory_storage_keeps_records_in_process() -> None:
    """InMemoryStorage keeps run records apart from its keys, for this process."""
    storage = InMemoryStorage()
    run_sync(steps(2), storage=storage, run_id="mem")
    record = get_run(storage, "mem")
    assert record is not None and record.status == "completed"
    assert sorted(storage.keys()) == ["s:0", "s:1"]


@pytest.mark.parametrize("stale_request", [False, True])
def test_a_store_that_refuses_records_warns_and_the_run_goes_on(tmp_path: Path,
                                                               stale_request: bool) -> None:
    """When the record cannot be written (a read-only store), the run still runs, with one
    RunRecordWarning; also when a request left for an earlier run of its id cannot be
    removed (it stays as it was)."""
    from doeff.runs import pending_request
    from doeff.runs.api import runs_of

    with SQLiteKV(tmp_path / "ro.db") as kv:
        if stale_request:
            runs_of(kv).request("ro", "cancel")
    with Durable(SQLiteKV(tmp_path / "ro.db", readonly=True), MsgpackCodec()) as storage, \
            pytest.warns(RunRecordWarning, match="could not be written") as caught:
        result = run_sync(perform(lambda: 5), storage=storage, run_id="ro")
    assert result.value == 5 and len(caught) == 1
    with SQLiteKV(tmp_path / "ro.db") as kv:
        assert pending_request(kv, "ro") == ("cancel" if stale_request else None)


def _record(**fields: Any) -> dict[str, Any]:
    now = time.time()
    base: dict[str, Any] = {
        "run_id": "r", "status": "running", "attempt": 1, "program": "p", "started_at": now,
        "updated_at": now, "ended_at": None, "heartbeat_at": now, "host": "elsewhere",
        "pid": 1, "step_count": 3, "current_effect": {"type": "Perform", "repr": "Perform()"},
        "tasks": [], "steps": [], "steps_omitted": 0, "error": None, "attempts": []}
    return {**base, **fields}


def test_a_live_record_without_a_recent_heartbeat_reads_as_lost(storage: Any) -> None:
    """A running record from another host whose heartbeat is older than lost_after shows as
    lost (the threshold is the reader's), keeping its last effect; a fresh one does not."""
    runs = RunStore(storage.run_records())
    runs.write(_record(run_id="old", heartbeat_at=time.time() - 100))
    runs.write(_record(run_id="fresh"))
    old = get_run(storage, "old")
    assert old is not None and old.status == "lost" and "no heartbeat for" in str(old.lost_reason)
    assert old.current_effect is not None and old.current_effect.type == "Perform"
    fresh = get_run(storage, "fresh")
    assert fresh is not None and fresh.status == "running"
    assert get_run(storage, "old", lost_after=1000) is not None
    assert get_run(storage, "old", lost_after=1000).status == "running"  # type: ignore[union-attr]
    assert [r.run_id for r in list_runs(storage, status="lost")] == ["old"]


def test_prune_and_delete_remove_only_what_they_should(storage: Any) -> None:
    """prune_runs removes runs that ended long enough ago (never live ones); delete_run one."""
    runs = RunStore(storage.run_records())
    now = time.time()
    runs.write(_record(run_id="done-long-ago", status="completed", ended_at=now - 3600))
    runs.write(_record(run_id="done-now", status="completed", ended_at=now))
    runs.write(_record(run_id="live"))
    assert prune_runs(storage, older_than=600) == ["done-long-ago"]
    assert sorted(r.run_id for r in list_runs(storage)) == ["done-now", "live"]
    assert delete_run(storage, "done-now") is True and delete_run(storage, "done-now") is False


def test_get_run_reads_a_bare_kvstore_without_the_codec(tmp_path: Path) -> None:
    """A reader needs neither the application's codec nor its code: a bare read-only KVStore
    reads the records a pickle store's runs wrote."""
    from doeff.serde import PickleCodec

    path = tmp_path / "p.db"
    with Durable(SQLiteKV(path), PickleCodec(), trust=["pickle"], signing_key=b"k" * 32) as st:
        run_sync(steps(1), storage=st, run_id="pickled")
    with SQLiteKV(path, readonly=True) as kv:
        record = get_run(kv, "pickled")
    assert record is not None and record.status == "completed"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=6),
    max_leaves=30)
_FIELDS = list(_record().keys())


@given(st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=12) | _json)
@example({"started_at": math.nan})
@example({"heartbeat_at": math.inf})
@example({"pid": 2 ** 62})
def test_no_record_crashes_its_reader(data: Any) -> None:
    """Whatever a record holds, reading it gives a RunRecord or a DecodeError naming it; a
    record read is one a reader can show: strict JSON (no NaN or infinity, which JSON cannot
    hold) and a "lost" check that works even when it claims a pid of this host's."""
    merged = {**_record(), **data} if isinstance(data, dict) else data
    here = {**merged, "host": HOST} if isinstance(merged, dict) else merged
    for candidate in (data, merged, here):
        try:
            record = RunRecord.from_json(candidate, "crafted")
        except DecodeError as exc:
            assert "crafted" in str(exc)
        else:
            json.dumps(record.to_json(), allow_nan=False)
            record.seen()


_requests = st.one_of(_json, st.fixed_dictionaries(
    {"action": st.sampled_from(["cancel", "pause", "resume", "stop", ""]) | _json}))


@given(st.binary(max_size=64) | _requests.map(
    lambda v: Envelope(MsgpackCodec()).seal(v, "control:r")))
def test_no_request_crashes_the_run_that_takes_it(raw: bytes) -> None:
    """For any bytes left as a run's control request (garbage, or a well-sealed value of any
    shape): pending_request answers an action or None, and taking it applies only a real
    action and removes exactly it."""
    from doeff.runs import pending_request
    from doeff.runs.store import ACTIONS, CONTROL

    storage = InMemoryStorage()
    runs = RunStore(storage.run_records())
    runs.kv.put(CONTROL + "r", raw)
    pending = pending_request(storage, "r")
    assert pending is None or pending in ACTIONS
    applied: list[str] = []
    assert runs.take_request("r", applied.append) == pending
    assert applied == ([] if pending is None else [pending])
    assert runs.kv.get(CONTROL + "r") is None


@pytest.mark.parametrize("field", ["started_at", "updated_at", "heartbeat_at", "ended_at"])
@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_time_that_is_no_number_is_a_decode_error(field: str, number: float) -> None:
    """NaN and the infinities (which msgpack carries) are no time: the record is refused."""
    with pytest.raises(DecodeError, match=f"{field}.*not a finite number"):
        RunRecord.from_json(_record(**{field: number}), "crafted")


def test_a_pid_no_process_can_have_reads_as_lost_on_this_host() -> None:
    """A live record of this host whose pid is past what the OS holds is lost, not a crash."""
    record = RunRecord.from_json(_record(host=HOST, pid=2 ** 62, heartbeat_at=time.time()))
    seen = record.seen()
    assert seen.status == "lost" and "has exited" in (seen.lost_reason or "")


def test_a_record_round_trips_through_json() -> None:
    """to_json gives back what from_json read."""
    data = _record(tasks=[{"task_id": 0, "status": "running", "current_effect": None,
                           "k_stack": [{"frame_type": "ReturnFrame", "file": "f.py", "line": 3,
                                        "function": "f", "description": "f() waiting",
                                        "code": "x = yield y"}]}],
                   steps=[{"key": "k", "outcome": "hit", "seconds": 0.5, "bytes": 10,
                           "at": 1.0}],
                   error={"type": "E", "message": "m", "traceback": "t"},
                   attempts=[{"attempt": 1, "status": "lost", "started_at": 1.0,
                              "ended_at": 2.0, "error": None}])
    assert RunRecord.from_json(data).to_json() == {**data, "lost_reason": None}


def _kv_of(kind: str, tmp_path: Path) -> Any:
    from doeff.storage import LMDBKV

    if kind == "sqlite":
        return Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec())
    if kind == "lmdb":
        return Durable(LMDBKV(tmp_path / "wf.lmdb"), MsgpackCodec())
    return InMemoryStorage()


@pytest.mark.parametrize("kind", ["sqlite", "lmdb", "memory"])
def test_a_request_left_while_another_is_applied_stays_for_the_next_take(
        kind: str, tmp_path: Path) -> None:
    """Another process asks to cancel while the run applies a pause it has read: taking the
    pause removes the pause only, so the cancel is there for the next heartbeat to take."""
    from doeff.runs.api import runs_of

    with _kv_of(kind, tmp_path) as storage:
        runs = runs_of(storage)
        runs.request("r", "pause")
        applied: list[str] = []

        def apply(action: str) -> None:
            applied.append(action)
            runs.request("r", "cancel")  # written between the read and the delete

        assert runs.take_request("r", apply) == "pause"
        assert runs.pending("r") == "cancel"
        assert runs.take_request("r", applied.append) == "cancel"
        assert applied == ["pause", "cancel"] and runs.pending("r") is None


def test_a_cancel_asked_while_a_pause_is_applied_lands(storage: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A recorded run blocked in a call is asked to pause, and to cancel while its heartbeat
    is still applying the pause: once the call returns the run ends cancelled, not paused
    for ever with the cancel lost."""
    from doeff.errors import CancellationError
    from doeff.runs import cancel_run, pause_run, pending_request

    apply = recorder_module.Recorder._apply
    applying = threading.Event()

    def slow_apply(self: Any, action: str) -> None:
        apply(self, action)
        if action == "pause":
            applying.set()
            time.sleep(0.5)  # the cancel below is left meanwhile

    monkeypatch.setattr(recorder_module.Recorder, "_apply", slow_apply)
    gate = threading.Event()

    execution = run_workflow(_blocked(gate), storage=storage, run_id="steered")
    try:
        _until(lambda: _in_its_call(storage, "steered"))
        pause_run(storage, "steered")
        assert applying.wait(30)
        cancel_run(storage, "steered")
        _until(lambda: pending_request(storage, "steered") is None)
        gate.set()
        result = execution.wait(10)
    finally:
        gate.set()
        execution.cancel()
    assert isinstance(result.error, CancellationError)
    assert "after" not in storage.keys()


def _until(check: Any) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")
