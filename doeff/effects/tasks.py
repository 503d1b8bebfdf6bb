"""Task effects: run programs concurrently in one run, wait for them, race them, cancel them,
and bound how many run at once under a name.

    @do
    def fan_out(urls):
        pages = yield gather(*[fetch(url) for url in urls])      # concurrent, results in order
        fastest = yield race(mirror_a(), mirror_b())             # first success, rest cancelled
        task = yield spawn(refresh_index())                      # runs beside this program
        summary = yield limit("llm", summarise(pages), concurrency=5, rate=(50, 60.0))
        yield wait(task)
        return summary
"""

from __future__ import annotations

from typing import Any

from doeff.effects.base import Effect, Runnable, effect, fast_constructor
from doeff.errors import InvalidEffectError


@effect
class Spawn(Effect):
    """Start `program` as a new task of the run; answer its `Task` handle at once."""

    program: Runnable


@effect
class Wait(Effect):
    """Wait for `task` to finish; answer its value, or raise its error."""

    task: Any


@effect
class Cancel(Effect):
    """Cancel `task` at its current `yield`; answer True if it was still running."""

    task: Any


@effect
class Race(Effect):
    """Run `programs` concurrently; answer the first successful result, cancelling the rest."""

    programs: tuple[Runnable, ...]


@effect
class Limit(Effect):
    """Run `program` under the run-wide limit `name` (at most `concurrency` in flight, at most
    `rate[0]` starts per `rate[1]` seconds)."""

    name: str
    program: Runnable
    concurrency: int | None = None
    rate: tuple[int, float] | None = None


_spawn = fast_constructor(Spawn)
_wait = fast_constructor(Wait)
_cancel = fast_constructor(Cancel)
_race = fast_constructor(Race)
_limit = fast_constructor(Limit)


def spawn(program: Runnable) -> Spawn:
    """Start `program` concurrently with the current one and answer its `Task`.

    The task starts with a copy of the current environment; state, log and storage are shared.
    A task still running when the program that spawned it ends is cancelled and waited for.
    """
    return _spawn(program)


def _check_task(name: str, task: Any) -> None:
    if not (hasattr(task, "task_id") and hasattr(task, "cancel")):
        raise InvalidEffectError(
            f"{name}(task): task must be a Task answered by spawn(...), got "
            f"{type(task).__name__} {task!r:.60}"
        )


def wait(task: Any) -> Wait:
    """Wait for a spawned task; answer its value or raise its error (with its traceback)."""
    _check_task("wait", task)
    return _wait(task)


def cancel(task: Any) -> Cancel:
    """Cancel a spawned task at its current `yield`; answers True if it had not finished.

    A task blocked in `await_` has the awaited task cancelled; one in a running `perform` is
    cancelled when the call returns. Its `finally_` cleanups run.
    """
    _check_task("cancel", task)
    return _cancel(task)


def race(*programs: Runnable) -> Race:
    """Run `programs` concurrently; the first to finish decides: `race` answers its value, or
    raises its error (with its traceback) if it failed.

    The others are cancelled (their cleanups run) before `race` answers or raises.
    """
    if not programs:
        raise InvalidEffectError("race() needs at least one program to run")
    return _race(programs)


def limit(name: str, program: Runnable, *, concurrency: int | None = None,
          rate: tuple[int, float] | None = None) -> Limit:
    """Run `program` under the named limit: at most `concurrency` programs under `name` in
    flight, and at most `starts` of them started per `per_seconds` with `rate=(starts,
    per_seconds)`, across every task of the run.

    The first use of a name fixes its parameters; later uses may give the same ones or none.
    A program waiting for its turn is a blocked task: others run meanwhile.
    """
    if not isinstance(name, str):
        raise InvalidEffectError(f"limit(name, ...): name must be a str, got {name!r:.60}")
    if concurrency is not None and (not _is_count(concurrency) or concurrency < 1):
        raise InvalidEffectError(
            f"limit({name!r}, ..., concurrency={concurrency!r:.60}): concurrency must be an "
            f"int >= 1 (not a bool), or None for no bound"
        )
    if rate is not None:
        ok = (isinstance(rate, tuple) and len(rate) == 2 and _is_count(rate[0])
              and rate[0] >= 1 and isinstance(rate[1], int | float)
              and not isinstance(rate[1], bool) and 0 < rate[1] <= LONGEST_RATE_WINDOW)
        if not ok:
            raise InvalidEffectError(
                f"limit({name!r}, ..., rate={rate!r:.60}): rate must be (starts, per_seconds): "
                f"an int >= 1 (not a bool) and a number of seconds > 0 and at most "
                f"{LONGEST_RATE_WINDOW:.0f} (a year), e.g. (50, 60.0): at most 50 starts in "
                f"any 60 s"
            )
        rate = (rate[0], float(rate[1]))
    return _limit(name, program, concurrency, rate)


# The longest window a rate may count starts in: a year (a longer one is surely a mistake, and
# its waits overflow the platform's clock arithmetic).
LONGEST_RATE_WINDOW = 365 * 24 * 3600.0


def _is_count(value: Any) -> bool:
    """An int that is not a bool (True would silently count as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
