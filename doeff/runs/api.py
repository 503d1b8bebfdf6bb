"""Reading and steering recorded runs from any process: `list_runs`, `get_run`, `cancel_run`,
`pause_run`, `resume_run`, `pending_request`, `delete_run`, `prune_runs`.

`storage` is anything that holds run records: a `Durable`, an `InMemoryStorage`, or a bare
`KVStore` (e.g. `SQLiteKV("wf.db", readonly=True)`: reading needs neither the application's
code nor its codec).
"""

from __future__ import annotations

import time
from typing import Any

from doeff.errors import InvalidOptionError, RunNotFoundError, RunStateError
from doeff.runs.record import LOST_AFTER, STATUSES, RunRecord
from doeff.runs.store import RunStore, run_store


def runs_of(storage: Any) -> RunStore:
    """The run records of `storage` (a DurableStorage that holds them, or a KVStore)."""
    if hasattr(storage, "namespace") and not hasattr(storage, "run_records"):
        return RunStore(storage.namespace("runs"))
    return run_store(storage)


def list_runs(storage: Any, status: str | None = None, *,
              lost_after: float = LOST_AFTER) -> list[RunRecord]:
    """Every run recorded in `storage`, newest first, as seen now (a run whose process died is
    "lost"); only those of `status` if given. Records that cannot be read are left out."""
    if status is not None and status not in STATUSES:
        raise _bad_status(status)
    now = time.time()
    records = [r.seen(now=now, lost_after=lost_after) for _, r in runs_of(storage).scan()
               if isinstance(r, RunRecord)]
    records.sort(key=lambda r: (-r.started_at, r.run_id))
    return [r for r in records if status is None or r.status == status]


def get_run(storage: Any, run_id: str, *, lost_after: float = LOST_AFTER) -> RunRecord | None:
    """The record of `run_id` as seen now, or None if there is none."""
    record = runs_of(storage).read(run_id)
    return None if record is None else record.seen(lost_after=lost_after)


def _live(runs: RunStore, run_id: str, action: str, lost_after: float) -> RunRecord:
    record = runs.read(run_id)
    if record is None:
        raise RunNotFoundError(f"no run {run_id!r:.80} in this store; `doeff runs ls STORE` "
                               f"lists the runs it holds")
    seen = record.seen(lost_after=lost_after)
    if seen.ended:
        why = f" ({seen.lost_reason})" if seen.lost_reason else ""
        raise RunStateError(f"run {run_id!r:.80} is {seen.status}{why}: there is nothing to "
                            f"{action}")
    return seen


def _request(storage: Any, run_id: str, action: str, lost_after: float) -> RunRecord:
    runs = runs_of(storage)
    record = _live(runs, run_id, action, lost_after)
    runs.request(run_id, action)
    return record


def cancel_run(storage: Any, run_id: str, *, lost_after: float = LOST_AFTER) -> RunRecord:
    """Ask the running `run_id` to cancel: at its next heartbeat (within a second) it throws
    CancellationError into the program, as `WorkflowExecution.cancel()` does. Returns the
    record as it was; RunNotFoundError or RunStateError (it has ended) otherwise."""
    return _request(storage, run_id, "cancel", lost_after)


def pause_run(storage: Any, run_id: str, *, lost_after: float = LOST_AFTER) -> RunRecord:
    """Ask the running `run_id` to stop at its next step boundary (status "paused")."""
    return _request(storage, run_id, "pause", lost_after)


def resume_run(storage: Any, run_id: str, *, lost_after: float = LOST_AFTER) -> RunRecord:
    """Ask the paused `run_id` to go on."""
    return _request(storage, run_id, "resume", lost_after)


def pending_request(storage: Any, run_id: str) -> str | None:
    """The request ("cancel", "pause" or "resume") left for `run_id` that the run has not read
    yet, or None: once it is gone, the run has taken it (a cancel then lands at the program's
    next `yield`, after a call in progress returns)."""
    return runs_of(storage).pending(run_id)


def delete_run(storage: Any, run_id: str) -> bool:
    """Remove the record of `run_id` (not its cached steps); True if it existed."""
    return runs_of(storage).delete(run_id)


def prune_runs(storage: Any, older_than: float, *, lost_after: float = LOST_AFTER,
               now: float | None = None) -> list[str]:
    """Remove the records of runs that ended (completed, failed or lost) more than
    `older_than` seconds ago; returns their ids. Live runs are never removed."""
    now = time.time() if now is None else now
    runs = runs_of(storage)
    gone = []
    for run_id, record in runs.scan():
        if not isinstance(record, RunRecord):
            continue
        seen = record.seen(now=now, lost_after=lost_after)
        ended_at = seen.ended_at if seen.ended_at is not None else seen.heartbeat_at
        if seen.ended and now - ended_at > older_than and runs.delete(run_id):
            gone.append(run_id)
    return gone


def _bad_status(status: str) -> InvalidOptionError:
    return InvalidOptionError(f"status={status!r:.40} is none of {', '.join(STATUSES)}")


__all__ = ["cancel_run", "delete_run", "get_run", "list_runs", "pause_run", "pending_request",
           "prune_runs", "resume_run", "runs_of"]
