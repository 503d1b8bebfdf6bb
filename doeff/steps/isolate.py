"""`isolate="process"`: run a step's function in a child process, killed at its deadline.

A thread cannot be stopped from outside, so a blocking step that overruns its timeout keeps its
thread busy; a process can be. The child is a fresh interpreter (`python -c`, this one's
executable and `sys.path`): it imports none of the parent's `__main__` — so a script needs no
`if __name__ == "__main__":` guard for it — and inherits none of its threads or locks. The
function and its arguments travel to it by cloudpickle (functions of a script or a notebook by
value), the result comes back the same way on a pipe of its own, so what the function prints
still reaches the terminal. Starting it costs what starting Python costs (tens of
milliseconds): isolate steps that are worth it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import select
import subprocess
import sys
import time
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from doeff.errors import StepProcessError, StepTimeoutError

_KILL_WAIT = 5.0  # seconds to wait for a killed child to be reaped
_BOOT = "import sys; from doeff.steps.isolate import child; child(int(sys.argv[1]))"


def child(fd: int) -> None:  # runs in the child process
    """Read the parent's sys.path, then (fn, args, kwargs), from stdin; run it; write
    (ok, value) to `fd`."""
    data = sys.stdin.buffer.read()
    outcome: tuple[bool, Any]
    try:
        size = int.from_bytes(data[:4], "little")
        # The path first: unpickling a function by reference imports its module.
        sys.path[:] = pickle.loads(data[4:4 + size])
        fn, args, kwargs = cloudpickle.loads(data[4 + size:])
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        outcome = (True, result)
    except BaseException as exc:  # every failure travels back to the parent
        outcome = (False, exc)
    try:
        message = cloudpickle.dumps(outcome)
    except Exception as unpicklable:
        message = cloudpickle.dumps((False, StepProcessError(
            f"the step's {'result' if outcome[0] else 'error'} {outcome[1]!r:.80} could not be "
            f"sent back to the parent process: {unpicklable}")))
    with os.fdopen(fd, "wb") as out:
        out.write(message)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _read_until(fd: int, deadline: float | None) -> bytes | None:
    """Everything written to `fd` until EOF, or None if the deadline comes first."""
    chunks: list[bytes] = []
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and (left <= 0 or not select.select([fd], [], [], left)[0]):
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_isolated(label: str, seconds: float | None, fn: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
    """`fn(*args, **kwargs)` in a child process; `StepTimeoutError` after `seconds`, when the
    child is killed."""
    path = pickle.dumps(list(sys.path))
    payload = len(path).to_bytes(4, "little") + path + cloudpickle.dumps((fn, args, kwargs))
    read_end, write_end = os.pipe()
    started = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(write_end)],
                                stdin=subprocess.PIPE, pass_fds=(write_end,))
    finally:
        os.close(write_end)  # the child holds the only writing end: EOF once it exits
    try:
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(payload)
        deadline = None if seconds is None else started + seconds
        message = _read_until(read_end, deadline)
        if message is None:
            proc.kill()
            proc.wait(_KILL_WAIT)
            raise StepTimeoutError(
                f"{label} was still running after {seconds:g} s (its timeout): its process "
                f"(pid {proc.pid}) was killed"
            )
        code = proc.wait(_KILL_WAIT)
        if not message:
            raise StepProcessError(
                f"{label}: its process (pid {proc.pid}) ended with exit code {code} after "
                f"{time.monotonic() - started:.1f} s without sending a result (it crashed or "
                f"was killed)"
            )
    finally:
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait(_KILL_WAIT)
    ok, value = cloudpickle.loads(message)
    if not ok:
        raise value
    return value


__all__ = ["child", "run_isolated"]
