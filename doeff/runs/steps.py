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
        self.listeners = listeners
        sized = getattr(storage, "last_record_size", None)
        self.size: Callable[[], int | None] = sized if callable(sized) else _unknown
        self.misses: dict[str, float] = {}  # key -> when its look-up missed

    def install(self) -> None:
        """Wrap the handlers now in the machine's table (before the run starts)."""
        handlers = self.m.handlers
        if CacheGet in handlers:
            handlers[CacheGet] = self._get(handlers[CacheGet], lambda v: v is not None)
        if CacheLookup in handlers:  # answers (found, value): a stored None is found too
            handlers[CacheLookup] = self._get(handlers[CacheLookup], lambda v: bool(v[0]))
        for kind in (CachePut, CacheStore):
            if kind in handlers:
                handlers[kind] = self._put(handlers[kind])

    def _get(self, inner: Handler, found: Callable[[Any], bool]) -> Handler:
        m, listeners, misses, clock = self.m, self.listeners, self.misses, time.perf_counter

        def cacheget(eff: CacheGet | CacheLookup) -> Any:
            started = clock()
            value = inner(eff)
            if not found(value):
                if eff.key not in misses:
                    misses[eff.key] = started
                    for listener in listeners:
                        listener.step_started(eff.key, m.task, time.time())
            else:
                misses.pop(eff.key, None)
                seconds, nbytes = clock() - started, self.size()
                for listener in listeners:
                    listener.step_ended(eff.key, "hit", seconds, nbytes, None, m.task)
            return value

        cacheget.__wrapped__ = inner  # type: ignore[attr-defined]
        return cacheget

    def _put(self, inner: Handler) -> Handler:
        m, listeners, misses, clock = self.m, self.listeners, self.misses, time.perf_counter

        def cacheput(eff: CachePut | CacheStore) -> Any:
            started = misses.pop(eff.key, None)
            at = clock()
            try:
                answer = inner(eff)
            except BaseException as err:
                seconds = clock() - (at if started is None else started)
                for listener in listeners:
                    listener.step_ended(eff.key, "computed", seconds, None, err, m.task)
                raise
            seconds, nbytes = clock() - (at if started is None else started), self.size()
            for listener in listeners:
                listener.step_ended(eff.key, "computed", seconds, nbytes, None, m.task)
            return answer

        cacheput.__wrapped__ = inner  # type: ignore[attr-defined]
        return cacheput


def _unknown() -> int | None:
    return None


__all__ = ["StepListener", "StepTap"]
