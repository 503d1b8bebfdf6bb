"""fork() while another thread is inside a store operation: the child never hangs.

A child forked from a busy process either uses the store on resources of its own, or — when an
operation of the parent's was stuck for longer than fork() waits for it — gets a
`StoreForkedError` saying to open stores after forking. Every backend is run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import lmdb
import pytest
from storage_fixtures import KVBackend

import doeff.storage.backends.common as common
from doeff.errors import StoreForkedError
from doeff.storage import LMDBKV, InMemoryKV, KVStore, SQLiteKV

FORK = mp.get_context("fork")
CHILDREN = 12
CHILD_TIMEOUT = 60.0  # a healthy child takes milliseconds; a hung one never ends


def _busy(kv: KVStore, stop: threading.Event, started: threading.Event,
          errors: list[BaseException]) -> None:
    """Keep the store busy with every kind of operation until `stop` is set."""
    i = 0
    try:
        while not stop.is_set():
            kv.put(f"busy:{i % 50}", os.urandom(1000 + 500 * (i % 7)))
            kv.put_many([(f"batch:{i % 50}:{j}", b"x" * 200) for j in range(20)])
            kv.get(f"busy:{(i * 7) % 50}")
            if i % 5 == 0:
                list(kv.items())
            started.set()
            i += 1
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _use_in_child(kv: KVStore, name: str) -> None:
    """What each forked child does with the store its parent opened: write, read, list."""
    kv.put(name, name.encode())
    assert kv.get(name) == name.encode()
    assert name in list(kv.keys())


def _fork_children_while_busy(kv: KVStore) -> list[int | None]:
    """Fork CHILDREN children while a thread keeps `kv` busy; their exit codes (None: hung)."""
    stop, started = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    thread = threading.Thread(target=_busy, args=(kv, stop, started, errors))
    thread.start()
    codes: list[int | None] = []
    try:
        assert started.wait(60)
        for n in range(CHILDREN):
            proc = FORK.Process(target=_use_in_child, args=(kv, f"child:{n}"), daemon=True)
            proc.start()
            proc.join(CHILD_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join()
                codes.append(None)
            else:
                codes.append(proc.exitcode)
            time.sleep(0.003 * n)  # fork at different points of the busy loop
    finally:
        stop.set()
        thread.join(120)
    assert errors == []
    return codes


def test_forked_children_of_a_busy_process_use_the_store(
    kv_backend: KVBackend, tmp_path: Path
) -> None:
    """Twelve children forked while another thread writes, reads and lists the store all use
    the inherited store without hanging; the parent's store keeps working and, where it is
    shared, holds every child's write."""
    kv = kv_backend.open(tmp_path)
    try:
        codes = _fork_children_while_busy(kv)
        assert codes == [0] * CHILDREN
        kv.put("parent:after", b"ok")
        assert kv.get("parent:after") == b"ok"
        if kv_backend.persistent:
            assert all(kv.get(f"child:{n}") == f"child:{n}".encode() for n in range(CHILDREN))
    finally:
        kv.close()


def _child_reports(target: Callable[..., object], *args: object) -> Any:
    """Run `target(*args)` in a forked child and return what it reported through a pipe."""
    read, write = FORK.Pipe(duplex=False)

    def run() -> None:
        try:
            write.send(target(*args))
        except BaseException as exc:  # the report is the test's subject
            write.send(f"{type(exc).__name__}: {exc}")

    proc = FORK.Process(target=run, daemon=True)
    proc.start()
    try:
        assert read.poll(CHILD_TIMEOUT), "the forked child hung"
        return read.recv()
    finally:
        proc.kill()  # a no-op once it has exited; a hung child must not outlive the test
        proc.join(CHILD_TIMEOUT)


def _put_and_reopen(kv: KVStore, reopen: Callable[[], KVStore]) -> str:
    """In the child: a put on the inherited store, then a put on a store opened anew."""
    outcomes = []
    inherited: Callable[[], KVStore] = lambda: kv  # noqa: E731
    for get_store in (inherited, reopen):
        try:
            get_store().put("child", b"c")
            outcomes.append("ok")
        except StoreForkedError as exc:
            outcomes.append(f"StoreForkedError: {exc}")
    return " | ".join(outcomes)


def test_sqlite_child_forked_during_a_stuck_write_gets_store_forked_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a parent's put is stuck (another process holds the write lock) longer than fork()
    waits, the child's store operations raise StoreForkedError — also on a store the child
    opens itself — instead of hanging; the parent's put goes through once the lock is freed."""
    monkeypatch.setattr(common, "FORK_WAIT", 0.2)
    path = tmp_path / "s.db"
    kv = SQLiteKV(path)
    kv.put("before", b"b")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held by "another process"
    done: list[BaseException | None] = []

    def stuck_put() -> None:
        try:
            kv.put("stuck", b"s")
            done.append(None)
        except BaseException as exc:  # reported below
            done.append(exc)

    thread = threading.Thread(target=stuck_put)
    thread.start()
    time.sleep(0.3)  # the put is now waiting for the lock (it waits up to 30 s)
    report = _child_reports(_put_and_reopen, kv, lambda: SQLiteKV(tmp_path / "other.db"))
    holder.execute("COMMIT")
    holder.close()
    thread.join(60)
    parts = report.split(" | ")
    assert len(parts) == 2 and all(p.startswith("StoreForkedError") for p in parts), report
    assert "spawn" in parts[0] and "SQLiteKV" in parts[0]
    assert done == [None] and kv.get("stuck") == b"s"
    kv.close()


def _hold_lmdb_writer_lock(path: str, ready: EventType, release: EventType) -> None:
    """Hold LMDB's writer lock on `path` until `release` is set (in a process of its own, with
    raw lmdb: LMDB allows one environment per path per process)."""
    env = lmdb.open(path)
    with env.begin(write=True):
        ready.set()
        release.wait(60)
    env.close()


def test_lmdb_child_forked_during_a_stuck_write_gets_store_forked_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a parent's LMDB put waits (another process holds LMDB's writer lock) longer than
    fork() waits for it, the child's operations on that store raise StoreForkedError instead of
    hanging, while another LMDB store still works in the child."""
    monkeypatch.setattr(common, "FORK_WAIT", 0.2)
    kv = LMDBKV(tmp_path / "l")
    kv.put("before", b"b")
    other = LMDBKV(tmp_path / "other")
    spawn = mp.get_context("spawn")
    ready, release = spawn.Event(), spawn.Event()
    holder = spawn.Process(target=_hold_lmdb_writer_lock, args=(str(tmp_path / "l"), ready,
                                                                  release))
    holder.start()
    assert ready.wait(60)
    thread = threading.Thread(target=kv.put, args=("stuck", b"s"))
    thread.start()
    time.sleep(0.3)  # the put now waits for the writer lock
    report = _child_reports(_put_and_reopen, kv, lambda: other)
    release.set()
    holder.join(60)
    thread.join(60)
    assert report.startswith("StoreForkedError") and report.endswith("| ok"), report
    assert "spawn" in report
    assert kv.get("stuck") == b"s"
    kv.close()
    other.close()


def _put_and_count(kv: KVStore) -> int:
    kv.put("child", b"c")
    return len(list(kv.keys()))


def test_in_memory_store_forked_while_a_thread_lists_it_is_usable_in_the_child() -> None:
    """A child forked while another thread holds InMemoryKV's lock (listing 50,000 entries)
    lists and writes its own copy of the store instead of waiting forever for that lock."""
    kv = InMemoryKV()
    kv.put_many([(f"k{i}", b"v") for i in range(50_000)])
    stop = threading.Event()

    def list_forever() -> None:
        while not stop.is_set():
            kv.items()

    thread = threading.Thread(target=list_forever)
    thread.start()
    try:
        reports = [_child_reports(_put_and_count, kv) for _ in range(CHILDREN)]
    finally:
        stop.set()
        thread.join(60)
    assert reports == [50_001] * CHILDREN
