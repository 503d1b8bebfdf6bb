"""Retries and timeouts: effects that compose with tasks. Attempts count every try; exhausting
them raises the last error with the others attached; a timeout cancels an await at its deadline,
hands a blocking call's caller StepTimeoutError at the deadline, and a process step is killed."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from doeff import Retry, do, retry, run_sync, step, timeout
from doeff.effects import await_, gather, perform, safe
from doeff.errors import (
    InvalidEffectError,
    InvalidOptionError,
    StepProcessError,
    StepTimeoutError,
    UsageError,
)
from doeff.storage import InMemoryStorage

NO_WAIT = Retry(attempts=3, backoff=0, jitter=0)


class Flaky:
    """A callable failing its first `failures` calls with `error`."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return f"ok after {self.calls}"


def test_attempts_count_every_try_the_first_included() -> None:
    """attempts=3 tries three times in all: two failures then a success is a success."""
    flaky = Flaky(2)
    assert run_sync(retry(perform(flaky), NO_WAIT)).value == "ok after 3"
    flaky = Flaky(3)
    assert isinstance(run_sync(retry(perform(flaky), NO_WAIT)).error, ConnectionError)
    assert flaky.calls == 3


def test_exhausted_attempts_raise_the_last_error_with_the_others_attached() -> None:
    """The last error is raised as it is; each earlier attempt's error is a note and the
    __context__ chain links every attempt's error."""
    error = run_sync(retry(perform(Flaky(5)), NO_WAIT)).error
    assert isinstance(error, ConnectionError) and str(error) == "failure 3"
    assert error.__notes__ == [
        "attempt 1 of 3 failed: ConnectionError: failure 1",
        "attempt 2 of 3 failed: ConnectionError: failure 2",
        "attempt 3 of 3 failed with this error: retries exhausted",
    ]
    assert str(error.__context__) == "failure 2"
    assert error.__context__ is not None and str(error.__context__.__context__) == "failure 1"


def test_only_the_listed_errors_are_retried() -> None:
    """on=(...) limits retries; other errors pass at once, and misuse is never retried."""
    flaky = Flaky(2, ValueError)
    policy = Retry(attempts=3, backoff=0, on=(ConnectionError,))
    assert isinstance(run_sync(retry(perform(flaky), policy)).error, ValueError)
    assert flaky.calls == 1

    calls: list[int] = []

    def misuse() -> None:
        calls.append(1)
        raise InvalidEffectError("a bug in the program")

    assert isinstance(run_sync(retry(perform(misuse), Retry(backoff=0))).error, UsageError)
    assert calls == [1]


def test_backoff_grows_by_factor_up_to_the_maximum() -> None:
    """The waits are backoff, backoff*factor, ... capped at max_backoff, shortened by jitter."""
    policy = Retry(attempts=6, backoff=1, factor=3, max_backoff=5, jitter=0)
    assert [policy.delay(n) for n in range(1, 5)] == [1, 3, 5, 5]
    jittery = Retry(backoff=1, jitter=0.5)
    assert all(0.5 <= jittery.delay(1) <= 1 for _ in range(50))


def test_waits_between_attempts_let_other_tasks_run() -> None:
    """A retry's wait is an asyncio sleep: a sibling task runs meanwhile (gather overlaps)."""
    order: list[str] = []

    def failing_once() -> str:
        order.append("try")
        if order.count("try") == 1:
            raise ConnectionError("once")
        return "retried"

    async def sibling() -> str:
        await asyncio.sleep(0.02)
        order.append("sibling")
        return "sibling"

    policy = Retry(attempts=2, backoff=0.2, jitter=0)
    started = time.monotonic()
    result = run_sync(gather(retry(perform(failing_once), policy), await_(sibling())))
    assert result.value == ["retried", "sibling"]
    assert order == ["try", "sibling", "try"]
    assert time.monotonic() - started < 0.5


def test_failed_attempts_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Each failed attempt that is retried is logged with its error and the wait."""
    with caplog.at_level(logging.WARNING, logger="doeff.steps"):
        run_sync(retry(perform(Flaky(1)), NO_WAIT))
    [message] = [r.getMessage() for r in caplog.records]
    assert "attempt 1 of 3 failed (ConnectionError: failure 1); retrying" in message


def test_a_retried_step_stores_only_its_success() -> None:
    """@step(retry=...) retries the computation; only the value is cached, never an error."""
    flaky = Flaky(2)
    fetch = step(name="fetch", retry=NO_WAIT)(lambda: flaky())
    storage = InMemoryStorage()
    assert run_sync(fetch(), storage=storage).value == "ok after 3"
    assert run_sync(fetch(), storage=storage).value == "ok after 3"
    assert flaky.calls == 3


def test_an_async_step_is_retried_with_a_new_coroutine_each_time() -> None:
    """Every attempt of an async step awaits a coroutine of its own."""
    flaky = Flaky(2)

    @step(retry=NO_WAIT)
    async def fetch() -> str:
        await asyncio.sleep(0)
        return flaky()

    assert run_sync(fetch()).value == "ok after 3"


def test_retry_refuses_an_await_and_bad_policies() -> None:
    """An await_ effect cannot be retried (one coroutine); policies are checked when made."""

    async def coro() -> None:
        return None

    awaitable = coro()
    with pytest.raises(InvalidEffectError, match="awaited only once"):
        retry(await_(awaitable), NO_WAIT)
    awaitable.close()
    for bad in ({"attempts": 0}, {"backoff": -1}, {"factor": 0.5}, {"jitter": 2},
                {"on": (int,)}, {"attempts": True}):
        with pytest.raises(InvalidOptionError):
            Retry(**bad)


# -- timeouts -------------------------------------------------------------------------------


def test_an_await_is_cancelled_at_the_deadline() -> None:
    """timeout() cancels an await in flight at its deadline: the coroutine sees the cancel."""
    seen: list[str] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "late"

    @do
    def program() -> Generator[Any, Any, str]:
        value: str = yield await_(slow())
        return value

    started = time.monotonic()
    result = run_sync(timeout(program(), 0.1))
    assert isinstance(result.error, StepTimeoutError)
    assert isinstance(result.error, TimeoutError)
    assert time.monotonic() - started < 1.0
    assert seen == ["cancelled"]


def test_a_blocking_call_gets_the_error_at_the_deadline_and_its_result_is_dropped() -> None:
    """A blocking perform cannot be killed: its caller gets StepTimeoutError at the deadline
    (long before the call returns); the call's late result is discarded, never cached."""
    caught: list[float] = []
    calls: list[str] = []

    @step(name="sleepy", timeout=0.1)
    def sleepy() -> str:
        time.sleep(0.6)
        calls.append("returned")
        return "late"

    @do
    def program() -> Generator[Any, Any, Any]:
        started = time.monotonic()
        outcome = yield safe(sleepy())
        caught.append(time.monotonic() - started)
        return outcome

    storage = InMemoryStorage()
    result = run_sync(program(), storage=storage)
    assert isinstance(result.value.error, StepTimeoutError)
    assert "cannot be stopped" in str(result.value.error)
    assert caught[0] < 0.45  # at the deadline, not when the call returned
    assert calls == ["returned"]  # the run ended only after the call returned...
    assert storage.keys() == []  # ...and its result was dropped


def test_a_program_within_its_deadline_answers_its_value() -> None:
    """A timeout that does not fire changes nothing; an error inside passes through."""
    assert run_sync(timeout(perform(lambda: 5), 2)).value == 5
    error = run_sync(timeout(perform(Flaky(1)), 2)).error
    assert isinstance(error, ConnectionError)


def test_each_attempt_has_its_own_deadline() -> None:
    """@step(timeout=, retry=): the timeout applies to each attempt, and a timed-out attempt
    is retried."""
    attempts: list[int] = []

    async def sometimes_slow() -> str:
        attempts.append(1)
        await asyncio.sleep(5 if len(attempts) == 1 else 0)
        return "second try"

    fetch = step(name="fetch", timeout=0.1, retry=NO_WAIT)(sometimes_slow)
    assert run_sync(fetch()).value == "second try"
    assert len(attempts) == 2


def _sleep_and_mark(path: str, seconds: float) -> str:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "done"


def test_an_isolated_step_is_killed_at_its_deadline(tmp_path: Path) -> None:
    """isolate="process" runs the step in a child process, killed at the deadline (the error
    names its pid; that process ran the function and is gone)."""
    marker = tmp_path / "pid"
    # 3 s: a loaded machine has taken over 1 s to start the child and reach the function
    slow = step(name="slow", timeout=3.0, isolate="process")(_sleep_and_mark)
    started = time.monotonic()
    result = run_sync(slow(str(marker), 60))
    assert isinstance(result.error, StepTimeoutError) and "was killed" in str(result.error)
    assert time.monotonic() - started < 30
    found = re.search(r"\(pid (\d+)\) was killed", str(result.error))
    assert found is not None, str(result.error)
    pid = int(found.group(1))
    assert pid != os.getpid()
    assert int(marker.read_text()) == pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_an_isolated_step_returns_its_value_and_raises_its_error(tmp_path: Path) -> None:
    """A child process's result comes back (functions defined anywhere, by cloudpickle), and
    so does its error; a child that dies is a StepProcessError."""
    ok = step(name="ok", isolate="process")(lambda x: x * 2)
    assert run_sync(ok(21)).value == 42

    def bad() -> None:
        raise KeyError("inside")

    error = run_sync(step(name="bad", isolate="process")(bad)()).error
    assert isinstance(error, KeyError)

    died = step(name="died", isolate="process")(lambda: os._exit(3))
    error = run_sync(died()).error
    assert isinstance(error, StepProcessError) and "exit code 3" in str(error)


def test_isolate_is_refused_for_a_do_program() -> None:
    """A @do program runs on this process's machine: it cannot be isolated."""
    with pytest.raises(InvalidOptionError, match="isolate"):
        step(isolate="process")(do(lambda: 1))
