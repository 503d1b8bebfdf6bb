"""`StepTap`: the cache handlers of one machine, wrapped to report each step to listeners.

Installed only in runs that want steps (a `run_id=`, a `tracer=`): a look-up that finds a value
is a "hit"; a look-up that finds none starts a step, and the put of its key ends it as
"computed", its duration counted from the miss (so it covers the computation). The handlers run
on the machine's thread, with the running task known, so listeners can tell tasks apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from doeff.cesk.machine import Handler, Machine
from doeff.cesk.tasks import Task
from doeff.effects.cache import CacheGet, CacheLookup, CachePut, CacheStore
from doeff.protocols import DurableStorage


class StepListener(Protocol):
    """Told about the steps of one run, on the machine's thread."""

    # False for a listener whose step_started does nothing: the tap then does not call it (nor
    # read the clock for it) on every miss.
    wants_starts: bool

    def step_started(self, key: str, task: Task, at: float) -> None:
        """A look-up of `key` found nothing: the step's computation starts."""
        ...

    def step_ended(self, key: str, outcome: str, seconds: float, nbytes: int | None,
                   error: BaseException | None, task: Task) -> None:
        """A step ended: "hit" (read back) or "computed" (stored, or failing to store)."""
        ...


class StepTap:
    """Wraps the look-up and store handlers of `m` (CacheGet and CacheLookup, CachePut and
    CacheStore, whatever handles them) to tell `listeners`."""

    def __init__(self, m: Machine, storage: DurableStorage | None,
                 listeners: list[StepListener]) -> None:
        self.m = m
        # Bound methods taken once: the wrappers run on every look-up and store.
        self.starts = [listener.step_started for listener in listeners
                       if listener.wants_starts]
        self.ends = [listener.step_ended for listener in listeners]
        sized = getattr(storage, "last_record_size", None)
        self.size: Callable[[], int | None] = sized if callable(sized) else _unknown
        self.misses: dict[str, float] = {}  # key -> when its look-up missed

    def install(self) -> None:
        """Wrap the handlers now in the machine's table (before the run starts)."""
        handlers = self.m.handlers
        if CacheGet in handlers:
            handlers[CacheGet] = self._get(handlers[CacheGet], lookup=False)
        if CacheLookup in handlers:  # answers (found, value): a stored None is found too
            handlers[CacheLookup] = self._get(handlers[CacheLookup], lookup=True)
        for kind in (CachePut, CacheStore):
            if kind in handlers:
                handlers[kind] = self._put(handlers[kind])

    def _get(self, inner: Handler, lookup: bool) -> Handler:
        m, starts, ends, misses = self.m, self.starts, self.ends, self.misses
        clock, size, now = time.perf_counter, self.size, time.time

        def cacheget(eff: CacheGet | CacheLookup) -> Any:
            started = clock()
            value = inner(eff)
            if value[0] if lookup else value is not None:
                if misses:
                    misses.pop(eff.key, None)
                seconds, nbytes = clock() - started, size()
                for ended in ends:
                    ended(eff.key, "hit", seconds, nbytes, None, m.task)
            elif eff.key not in misses:
                misses[eff.key] = started
                if starts:
                    at = now()
                    for start in starts:
                        start(eff.key, m.task, at)
            return value

        cacheget.__wrapped__ = inner  # type: ignore[attr-defined]
        return cacheget

    def _put(self, inner: Handler) -> Handler:
        m, ends, misses = self.m, self.ends, self.misses
        clock, size = time.perf_counter, self.size

        def cacheput(eff: CachePut | CacheStore) -> Any:
            started = misses.pop(eff.key, None) if misses else None
            at = clock()
            try:
                answer = inner(eff)
            except BaseException as err:
                seconds = clock() - (at if started is None else started)
                for ended in ends:
                    ended(eff.key, "computed", seconds, None, err, m.task)
                raise
            seconds, nbytes = clock() - (at if started is None else started), size()
            for ended in ends:
                ended(eff.key, "computed", seconds, nbytes, None, m.task)
            return answer

        cacheput.__wrapped__ = inner  # type: ignore[attr-defined]
        return cacheput


def _unknown() -> int | None:
    return None


__all__ = ["StepListener", "StepTap"]
