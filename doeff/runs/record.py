"""`RunRecord`: what a recorded run keeps in its store, as plain JSON types.

A record is written by the run's own process (see `doeff.runs.recorder`) and read by anyone:
`doeff runs`, the dashboard, `get_run`. Reading never trusts it: every field is checked for its
type, and a record that is not one becomes a `DecodeError` naming the run, never a crash.

"lost" is never written: a reader computes it from a "running" or "paused" record whose
heartbeat is older than `lost_after` seconds, or whose process, on the reader's own host, is
gone. Such a record keeps the K stacks and the effect of its last heartbeat: where the run was
when it died.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from doeff.errors import DecodeError

RunStatus = Literal["pending", "running", "paused", "completed", "failed", "lost"]
STATUSES: tuple[str, ...] = ("pending", "running", "paused", "completed", "failed", "lost")
ENDED = frozenset({"completed", "failed"})
LOST_AFTER = 30.0  # seconds without a heartbeat after which a live record shows as "lost"
HOST = socket.gethostname()


@dataclass(frozen=True)
class EffectInfo:
    """An effect as a record shows it: its type name and a short repr."""

    type: str
    repr: str


@dataclass(frozen=True)
class FrameInfo:
    """One K frame: its type, the user's file and line, the function, a description."""

    frame_type: str
    file: str | None
    line: int | None
    function: str | None
    description: str
    code: str | None = None  # the source line's text


@dataclass(frozen=True)
class TaskInfo:
    """One live task: id (0 is the main task), status, the effect at hand, K innermost first."""

    task_id: int
    status: str
    current_effect: EffectInfo | None
    k_stack: tuple[FrameInfo, ...]


@dataclass(frozen=True)
class StepInfo:
    """One step the run read back ("hit") or computed and stored ("computed")."""

    key: str
    outcome: str
    seconds: float
    bytes: int | None
    at: float


@dataclass(frozen=True)
class ErrorInfo:
    """The error a run failed with: its type, message and doeff traceback."""

    type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class AttemptInfo:
    """An earlier attempt of the same run id: how it ended ("lost" if its process died)."""

    attempt: int
    status: str
    started_at: float | None
    ended_at: float | None
    error: ErrorInfo | None


@dataclass(frozen=True)
class RunRecord:
    """A run as its store records it (`status` "lost" computed on read; see the module doc).

    `steps` are the current attempt's, in order, at most a bounded number of the latest;
    `steps_omitted` counts the earlier ones left out. `lost_reason` says why a record shows as
    "lost" (None otherwise).
    """

    run_id: str
    status: RunStatus
    attempt: int
    program: str
    started_at: float
    updated_at: float
    ended_at: float | None
    heartbeat_at: float
    host: str
    pid: int
    step_count: int
    current_effect: EffectInfo | None
    tasks: tuple[TaskInfo, ...]
    steps: tuple[StepInfo, ...]
    steps_omitted: int
    error: ErrorInfo | None
    attempts: tuple[AttemptInfo, ...]
    lost_reason: str | None = None

    @property
    def ended(self) -> bool:
        """True once the run has completed, failed or been lost."""
        return self.status in ENDED or self.status == "lost"

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON types (dicts, lists, str, int, float, None)."""
        return _plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: object, run_id: str = "?") -> RunRecord:
        """The record `data` holds; DecodeError naming `run_id` if it is not one."""
        try:
            return _record(data)
        except DecodeError as exc:
            raise DecodeError(f"run record {run_id!r:.80} is not one doeff writes: {exc}; "
                              f"delete it (doeff runs rm STORE RUN)") from exc

    def seen(self, *, now: float | None = None, lost_after: float = LOST_AFTER) -> RunRecord:
        """The record as a reader sees it now: "lost" if its process stopped heartbeating."""
        if self.status not in ("running", "paused", "pending"):
            return self
        now = time.time() if now is None else now
        silent = now - self.heartbeat_at
        reason = None
        if silent > lost_after:
            reason = f"no heartbeat for {silent:.0f} s (lost after {lost_after:g} s)"
        elif self.host == HOST and not pid_alive(self.pid):
            reason = f"its process (pid {self.pid} on {self.host}) has exited"
        if reason is None:
            return self
        return replace(self, status="lost", lost_reason=reason)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (a zombie, killed but not reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OverflowError:  # past what a pid_t holds: no process has it (a damaged record)
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return True  # no /proc (not Linux): the signal check is all there is
    return state != [b"Z"]


# -- to and from plain JSON types ---------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def _get(data: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any = ...) -> Any:
    if name not in data:
        if default is ...:
            raise DecodeError(f"no field {name!r}")
        return default
    value = data[name]
    # bool is an int in Python, and never a valid number here.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise DecodeError(f"field {name!r} is {type(value).__name__}, not {names}")
    return value


_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))


def _num(data: dict[str, Any], name: str, default: Any = ...) -> float | None:
    """A number field as a float (None where allowed and given)."""
    value = _get(data, name, _OPT_NUM if default is None else _NUM, default)
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError as exc:  # an int no float can hold
        raise DecodeError(f"field {name!r} is an int too large for a time or duration") from exc
    if not math.isfinite(number):  # msgpack carries NaN and infinities; no time or duration is one
        raise DecodeError(f"field {name!r} is {number}, not a finite number")
    return number


def _dict(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DecodeError(f"{what} is {type(data).__name__}, not an object")
    return data


def _list(data: dict[str, Any], name: str) -> list[Any]:
    value: list[Any] = _get(data, name, (list,), [])
    return value


def _effect(data: object) -> EffectInfo | None:
    if data is None:
        return None
    d = _dict(data, "current_effect")
    return EffectInfo(_get(d, "type", (str,)), _get(d, "repr", (str,)))


def _error(data: object) -> ErrorInfo | None:
    if data is None:
        return None
    d = _dict(data, "error")
    return ErrorInfo(_get(d, "type", (str,)), _get(d, "message", (str,)),
                     _get(d, "traceback", (str,), ""))


def _frame(data: object) -> FrameInfo:
    d = _dict(data, "frame")
    return FrameInfo(_get(d, "frame_type", (str,)), _get(d, "file", _OPT_STR, None),
                     _get(d, "line", _OPT_INT, None), _get(d, "function", _OPT_STR, None),
                     _get(d, "description", (str,), ""), _get(d, "code", _OPT_STR, None))


def _task(data: object) -> TaskInfo:
    d = _dict(data, "task")
    return TaskInfo(_get(d, "task_id", (int,)), _get(d, "status", (str,)),
                    _effect(d.get("current_effect")),
                    tuple(_frame(f) for f in _list(d, "k_stack")))


def _step(data: object) -> StepInfo:
    d = _dict(data, "step")
    return StepInfo(_get(d, "key", (str,)), _get(d, "outcome", (str,)),
                    _num(d, "seconds") or 0.0, _get(d, "bytes", _OPT_INT, None),
                    _num(d, "at") or 0.0)


def _attempt(data: object) -> AttemptInfo:
    d = _dict(data, "attempt")
    return AttemptInfo(_get(d, "attempt", (int,)), _get(d, "status", (str,)),
                       _num(d, "started_at", None), _num(d, "ended_at", None),
                       _error(d.get("error")))


def _record(data: object) -> RunRecord:
    d = _dict(data, "the record")
    status = _get(d, "status", (str,))
    if status not in STATUSES:
        raise DecodeError(f"status {status!r:.40} is none of {', '.join(STATUSES)}")
    return RunRecord(
        run_id=_get(d, "run_id", (str,)),
        status=status,
        attempt=_get(d, "attempt", (int,), 1),
        program=_get(d, "program", (str,), "?"),
        started_at=_num(d, "started_at") or 0.0,
        updated_at=_num(d, "updated_at") or 0.0,
        ended_at=_num(d, "ended_at", None),
        heartbeat_at=_num(d, "heartbeat_at") or 0.0,
        host=_get(d, "host", (str,), ""),
        pid=_get(d, "pid", (int,), 0),
        step_count=_get(d, "step_count", (int,), 0),
        current_effect=_effect(d.get("current_effect")),
        tasks=tuple(_task(t) for t in _list(d, "tasks")),
        steps=tuple(_step(s) for s in _list(d, "steps")),
        steps_omitted=_get(d, "steps_omitted", (int,), 0),
        error=_error(d.get("error")),
        attempts=tuple(_attempt(a) for a in _list(d, "attempts")),
        lost_reason=_get(d, "lost_reason", _OPT_STR, None),
    )


__all__ = ["ENDED", "LOST_AFTER", "STATUSES", "AttemptInfo", "EffectInfo", "ErrorInfo",
           "FrameInfo", "RunRecord", "RunStatus", "StepInfo", "TaskInfo", "pid_alive"]
