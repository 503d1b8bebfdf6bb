"""Leases: how one worker of many claims a step before computing it (`@step(claim=True)`).

A lease is a record of its own, under `LEASE_PREFIX + key`, written only by the conditional
writes of an `AtomicKVStore`:

- **claim**: `put_if_absent` of a fresh lease record. Of all the workers that try at once,
  exactly one succeeds; the others read the record and see who holds it until when.
- **renew** (heartbeat): every third of the lease, a background thread replaces the record by
  one with a later expiry with `compare_and_swap`, expecting the bytes it wrote last. If another
  worker took the lease over meanwhile, the swap fails and the lease is marked lost.
- **take over**: a worker that finds a lease past its expiry (its owner died, or stalled for a
  whole lease) replaces it with `compare_and_swap` on the bytes it read, so of several taking
  over at once exactly one succeeds.
- **release**: `compare_and_delete` on the bytes last written: a lease taken over is never
  deleted by its former owner.

Each lease record is an ordinary envelope record (JSON codec: its owner; the expiry in its
version 3 header), so `doeff cache ls` shows it and `doeff cache gc` removes a stale one; the
store (`Durable`, where bytes meet objects) makes and reads them through `LeaseRecords`.
Expiry compares wall clocks: hosts sharing a store need clocks within a small part of a lease.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from typing import Protocol

from doeff.errors import StorageError
from doeff.protocols import Held
from doeff.storage.backends.common import on_fork
from doeff.storage.base import AtomicKVStore

LEASE_PREFIX = "doeff:lease:"
_LINGER = 2.0  # seconds the renewing thread waits for a new lease before it ends
log = logging.getLogger("doeff.steps")

_counter = itertools.count(1)
_process: tuple[int, str] | None = None  # (pid, its owner prefix): a forked child makes its own


def owner_prefix() -> str:
    """`host:pid:random`, naming this process in the leases it takes."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}")
    return _process[1]


class LeaseRecords(Protocol):
    """How a store writes and reads its lease records."""

    def seal(self, lease_key: str, owner: str, expires_at: float) -> bytes:
        """The record of a lease held by `owner` until `expires_at` (Unix time)."""
        ...

    def owner(self, record: bytes, lease_key: str) -> str:
        """The owner a lease record names ("?" when it cannot be read)."""
        ...

    def expires_at(self, record: bytes) -> float | None:
        """When a lease record runs out (None when its header cannot be read)."""
        ...


class KVLease:
    """A lease this process holds on one key (see the module docstring)."""

    __slots__ = ("_lost", "due", "key", "lease_key", "owner", "record", "seconds", "took_over")

    def __init__(self, key: str, owner: str, record: bytes, seconds: float,
                 took_over: str | None) -> None:
        self.key = key
        self.lease_key = LEASE_PREFIX + key
        self.owner = owner
        self.record = record  # the bytes last written: what a renewal or release expects
        self.seconds = seconds
        self.took_over = took_over
        self._lost = False
        self.due = time.monotonic() + seconds / 3  # when the next renewal is due

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease taken over by another worker."""
        return self._lost

    def __repr__(self) -> str:
        state = "lost" if self._lost else "held"
        return f"<lease on {self.key!r:.60} by {self.owner} ({state})>"


class Leases:
    """The leases of one store held by this process, and the thread that renews them."""

    def __init__(self, kv: AtomicKVStore, records: LeaseRecords) -> None:
        self.kv = kv
        self.records = records
        self._held: dict[str, KVLease] = {}
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = 0.0  # when the renewing thread looks at the leases next
        self._closed = False
        on_fork(self)

    def _after_fork_in_child(self) -> None:
        # The parent's leases are the parent's; its renewing thread does not exist here.
        self._held = {}
        self._thread = None
        self._lock = threading.Condition()

    def _record(self, lease_key: str, owner: str, seconds: float) -> bytes:
        return self.records.seal(lease_key, owner, time.time() + seconds)

    def claim(self, key: str, seconds: float) -> KVLease | Held:
        """Take the lease on `key`, take over an expired one, or say who holds it."""
        lease_key = LEASE_PREFIX + key
        owner = f"{owner_prefix()}:{next(_counter)}"
        while True:
            record = self._record(lease_key, owner, seconds)
            if self.kv.put_if_absent(lease_key, record):
                return self._hold(KVLease(key, owner, record, seconds, None))
            current = self.kv.get(lease_key)
            if current is None:
                continue  # released between the two calls: try again
            # A header that cannot be read has no expiry: taken over like a dead owner's.
            until = self.records.expires_at(current)
            if until is not None and until > time.time():
                return Held(key, self.records.owner(current, lease_key), until)
            if self.kv.compare_and_swap(lease_key, current, record):
                previous = self.records.owner(current, lease_key)
                log.warning("%s: took over the lease of %s, which expired (its owner died or "
                            "stalled)", key, previous)
                return self._hold(KVLease(key, owner, record, seconds, previous))

    def _hold(self, lease: KVLease) -> KVLease:
        with self._lock:
            self._held[lease.lease_key] = lease
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                                name="doeff-leases")
                self._thread.start()
            elif lease.due < self._wakes_at:  # only then is the sleeping thread late for it
                self._lock.notify_all()
        return lease

    def release(self, lease: KVLease) -> bool:
        """Stop renewing `lease` and delete its record; False if it was taken over."""
        with self._lock:
            self._held.pop(lease.lease_key, None)
        if lease.lost:
            return False
        with self._lock:  # a renewal in flight has written its record by now
            record = lease.record
        return self.kv.compare_and_delete(lease.lease_key, record)

    def renew(self, lease: KVLease) -> bool:
        """Push the lease's expiry a full lease ahead; False (and `lost`) if taken over."""
        record = self._record(lease.lease_key, lease.owner, lease.seconds)
        if self.kv.compare_and_swap(lease.lease_key, lease.record, record):
            lease.record = record
            lease.due = time.monotonic() + lease.seconds / 3
            return True
        lease._lost = True
        log.warning("%s: the lease of %s was taken over by another worker (it expired before "
                    "a renewal); the step may be computed twice", lease.key, lease.owner)
        return False

    def _renew_loop(self) -> None:
        """Renew each held lease every third of its length; end once none has been held for
        a while (kept meanwhile: claimed steps often come one after another)."""
        with self._lock:
            while not self._closed:
                if not self._held:
                    self._wakes_at = float("inf")  # any new lease must wake it
                    self._lock.wait(_LINGER)
                    if not self._held:
                        break
                now = time.monotonic()
                due = [lease for lease in self._held.values() if lease.due <= now]
                for lease in due:
                    try:
                        if not self.renew(lease):
                            self._held.pop(lease.lease_key, None)
                    except StorageError as exc:  # tried again a little later
                        lease.due = now + min(1.0, lease.seconds / 10)
                        log.warning("%s: renewing its lease failed: %s", lease.key, exc)
                if self._held:
                    self._wakes_at = min(lease.due for lease in self._held.values())
                    self._lock.wait(max(self._wakes_at - time.monotonic(), 0.0))
            self._thread = None

    def close(self) -> None:
        """Stop renewing (the leases run out by themselves)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()


def is_lease_key(key: str) -> bool:
    """Whether `key` holds a lease record rather than a step's value."""
    return key.startswith(LEASE_PREFIX)


__all__ = ["LEASE_PREFIX", "Held", "KVLease", "LeaseRecords", "Leases", "is_lease_key",
           "owner_prefix"]
