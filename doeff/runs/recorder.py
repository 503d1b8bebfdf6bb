"""`Recorder`: keeps the record of one run in its store while the run goes on.

Nothing here runs on the machine's hot path. The machine thread only appends step entries (see
`StepTap`); a daemon heartbeat thread does the rest, every TICK seconds:
- it reads the control request (cancel, pause, resume) left by another process and applies it
  through the run's `WorkflowControl`, with the same semantics as `WorkflowExecution.cancel()`;
- it writes the record when the status changed, when a step ended or the machine moved (at
  most every MIN_GAP seconds), and every HEARTBEAT seconds regardless (also while the run is
  blocked in a long call or paused: the heartbeat is what tells a live run from a lost one).
Each write takes a snapshot through the control (answered at the next step boundary, or at once
while the machine waits in a handler), so the record's K stacks are the machine's own.
The final record is written on the machine's thread as the run ends, before anyone waiting for
the run is woken.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import traceback
import warnings
from collections import deque
from typing import Any

from doeff.cesk.result import CESKResult
from doeff.cesk.tasks import Task
from doeff.cesk.traceback import short_repr
from doeff.errors import DoeffError, RunRecordWarning, RunStateError
from doeff.observability.monitor import WorkflowControl
from doeff.observability.snapshot import ExecutionSnapshot, KFrameSnapshot
from doeff.runs.record import HOST, LOST_AFTER
from doeff.runs.store import RunStore, check_run_id

TICK = 0.2  # seconds between looks at the status and the control request
MIN_GAP = 0.25  # at most this often a record is written while the machine moves
HEARTBEAT = 1.0  # at least this often a record is written, whatever the run does
MAX_STEPS = 500  # step entries kept in a record (the latest); the rest are counted
SNAPSHOT_WAIT = 0.5  # how long a write waits for the machine to reach a step boundary


def new_run_id(program: str) -> str:
    """A fresh id: the program's name, the UTC time and a random suffix."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{program}-{stamp}-{secrets.token_hex(3)}"


def effect_json(effect: Any) -> dict[str, str] | None:
    """An effect as records show it."""
    if effect is None:
        return None
    return {"type": type(effect).__name__, "repr": short_repr(effect, 160)}


def frames_json(k_stack: tuple[KFrameSnapshot, ...]) -> list[dict[str, Any]]:
    """K frames as records show them, innermost first."""
    out = []
    for frame in k_stack:
        loc = frame.location
        out.append({"frame_type": frame.frame_type, "description": frame.description,
                    "file": None if loc is None else loc.filename,
                    "line": None if loc is None else loc.lineno,
                    "function": None if loc is None else loc.function,
                    "code": None if loc is None else loc.code})
    return out


def tasks_json(snap: ExecutionSnapshot) -> list[dict[str, Any]]:
    """Every live task of a snapshot, the main one first; a failed run's K where it failed."""
    if snap.status == "failed":
        return [{"task_id": 0, "status": "failed", "current_effect": None,
                 "k_stack": frames_json(snap.k_stack)}]
    return [{"task_id": t.task_id, "status": t.status,
             "current_effect": effect_json(t.current_effect), "k_stack": frames_json(t.k_stack)}
            for t in snap.tasks]


def error_json(result: CESKResult[Any]) -> dict[str, str] | None:
    """A failed run's error, with its doeff traceback."""
    err = result.error
    if err is None:
        return None
    text = result.format_error() or "".join(traceback.format_exception_only(err)).strip()
    return {"type": type(err).__qualname__, "message": str(err), "traceback": text}


class Recorder:
    """The record of one run: begun before the run starts, ended as it ends (`end`)."""

    def __init__(self, runs: RunStore, run_id: str, control: WorkflowControl,
                 program: str) -> None:
        self.runs = runs
        self.run_id = check_run_id(run_id)
        self.control = control
        self.program = program
        # (key, outcome, seconds, bytes, at), appended by the machine thread and copied by
        # the writer with deque.copy(), which no append can interleave with (it holds the GIL).
        self.steps: deque[tuple[str, str, float, int | None, float]] = deque(maxlen=MAX_STEPS)
        self.omitted = 0
        self.attempt = 1
        self.attempts: list[dict[str, Any]] = []
        self.started_at = time.time()
        self.stop = threading.Event()
        self.wake = threading.Event()  # a step ended: write soon (at most every MIN_GAP)
        self.nudged = False
        self.thread: threading.Thread | None = None
        self.warned = False

    # -- steps (machine thread) ------------------------------------------------------------

    wants_starts = False  # nothing to record until a step ends

    def step_started(self, key: str, task: Task, at: float) -> None:
        """A step's look-up missed (nothing to record until it ends)."""

    def step_ended(self, key: str, outcome: str, seconds: float, nbytes: int | None,
                   error: BaseException | None, task: Task) -> None:
        """Append the step (a failed put is not a step: the run's error says why)."""
        if error is not None:
            return
        steps = self.steps
        if len(steps) == steps.maxlen:
            self.omitted += 1
        steps.append((key, outcome, seconds, nbytes, time.time()))
        if not self.nudged:  # one Event.set per write at most, not one per step
            self.nudged = True
            self.wake.set()

    # -- beginning and end -------------------------------------------------------------------

    def begin(self) -> None:
        """Continue an earlier record of the same id (or refuse if that run is alive), write
        the first record, start the heartbeat."""
        old = self.runs.read(self.run_id)
        if old is not None:
            seen = old.seen(lost_after=LOST_AFTER)
            if not seen.ended:
                raise RunStateError(
                    f"run {self.run_id!r} is {seen.status} in process {old.pid} on {old.host} "
                    f"(heartbeat {time.time() - old.heartbeat_at:.0f} s ago); wait for it to "
                    f"end, cancel it (doeff runs cancel STORE {self.run_id}), or pick another "
                    f"run_id"
                )
            self.attempt = old.attempt + 1
            self.attempts = [a for a in old.to_json()["attempts"]]
            self.attempts.append({
                "attempt": old.attempt, "status": seen.status, "started_at": old.started_at,
                "ended_at": old.ended_at if old.ended_at is not None else old.heartbeat_at,
                "error": None if old.error is None else old.to_json()["error"],
            })
        try:
            self.runs.take_request(self.run_id)  # a request left for an earlier attempt is stale
        except DoeffError as exc:  # a read-only store: the run goes on, as when writes fail
            self._warn(exc)
        self.write(self.control.snapshot(0), final=None)
        self.thread = threading.Thread(target=self._beat, name=f"doeff-run-{self.run_id}",
                                       daemon=True)
        self.thread.start()

    def end(self, result: CESKResult[Any], final: ExecutionSnapshot) -> None:
        """Stop the heartbeat and write the final record (called as the run ends)."""
        self.stop.set()
        self.wake.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.write(final, final=result)

    # -- the heartbeat thread ----------------------------------------------------------------

    def _beat(self) -> None:
        control = self.control
        m = control.m
        written_at = time.monotonic()
        status, steps = control.status, m.steps
        while True:
            since = time.monotonic() - written_at
            if since < MIN_GAP:  # no write sooner than MIN_GAP after the last, nudged or not
                self.stop.wait(MIN_GAP - since)
            else:
                self.wake.wait(TICK)
            self.wake.clear()
            self.nudged = False
            if self.stop.is_set():
                return
            try:
                self.runs.take_request(self.run_id, self._apply)
            except DoeffError as exc:
                self._warn(exc)
            now = time.monotonic()
            moved = m.steps != steps
            if (control.status == status and now - written_at < HEARTBEAT
                    and not (moved and now - written_at >= MIN_GAP)):
                continue
            snap = control.snapshot(SNAPSHOT_WAIT)
            if self.stop.is_set():
                return  # the run ended meanwhile: the final record is written by end()
            status, steps = snap.status, m.steps
            self.write(snap, final=None)
            written_at = time.monotonic()

    def _apply(self, action: str) -> None:
        if action == "cancel":
            self.control.cancel()
        elif action == "pause":
            self.control.pause()
        elif action == "resume":
            self.control.resume()

    # -- writing -----------------------------------------------------------------------------

    def write(self, snap: ExecutionSnapshot, final: CESKResult[Any] | None) -> None:
        """Write the record as of `snap` (`final`: the run's result once it has ended)."""
        now = time.time()
        omitted = self.omitted
        steps = [{"key": key, "outcome": outcome, "seconds": round(seconds, 6), "bytes": nbytes,
                  "at": at} for key, outcome, seconds, nbytes, at in self.steps.copy()]
        status = snap.status
        record = {
            "run_id": self.run_id, "status": status, "attempt": self.attempt,
            "program": self.program, "started_at": self.started_at, "updated_at": now,
            "ended_at": now if final is not None else None, "heartbeat_at": now,
            "host": HOST, "pid": os.getpid(), "step_count": snap.step_count,
            "current_effect": effect_json(snap.current_effect),
            "tasks": tasks_json(snap), "steps": steps, "steps_omitted": omitted,
            "error": None if final is None else error_json(final),
            "attempts": self.attempts,
        }
        try:
            self.runs.write(record)
        except DoeffError as exc:
            self._warn(exc)

    def _warn(self, exc: DoeffError) -> None:
        if not self.warned:  # once per run: a store that refuses once usually goes on refusing
            self.warned = True
            warnings.warn(f"run {self.run_id!r}: its record could not be written or its "
                          f"requests read: {type(exc).__name__}: {exc}; the run goes on",
                          RunRecordWarning, stacklevel=2)


__all__ = ["HEARTBEAT", "MAX_STEPS", "MIN_GAP", "TICK", "Recorder", "effect_json",
           "error_json", "frames_json", "new_run_id", "tasks_json"]
