"""PostgresKV beyond the shared contract: schema checks, lost connections, forks, many workers."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_server
import pytest

from doeff import do, run_sync
from doeff.effects import perform
from doeff.effects.cache import cached, cacheput
from doeff.errors import IncompatibleStoreError, StorageError, StorageUnavailableError
from doeff.serde import PickleCodec
from doeff.storage import Durable

if os.environ.get("CI"):
    import psycopg  # in CI these tests must run: a missing extra is a failure, not a skip
else:
    psycopg = pytest.importorskip(
        "psycopg", reason="install the extra: pip install -e '.[postgres]'"
    )
from doeff.storage.postgres import PostgresKV

ROOT = Path(__file__).resolve().parents[1]
FORK = mp.get_context("fork")
STEPS = 50


@pytest.fixture
def dsn() -> str:
    """The session server's DSN (skipped, or failed under CI, when no server can start)."""
    return pg_server.require_server().dsn


@pytest.fixture
def table(tmp_path: Path) -> str:
    """A table name no other test uses."""
    return pg_server.table_for(tmp_path)


def sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh autocommit connection and return its rows (if any)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


# -- schema ------------------------------------------------------------------------------------


def _open_and_put(dsn: str, table: str, start: Any, worker: int) -> None:
    start.wait()
    with PostgresKV(dsn, table=table) as kv:
        kv.put(f"w{worker}", b"x")


def test_processes_creating_the_same_table_at_once_all_succeed(dsn: str, table: str) -> None:
    """Six processes opening one new table at the same moment all succeed; one meta row results."""
    start = FORK.Event()
    procs = [FORK.Process(target=_open_and_put, args=(dsn, table, start, w)) for w in range(6)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    with PostgresKV(dsn, table=table) as kv:
        assert sorted(kv.keys()) == [f"w{w}" for w in range(6)]
    assert sql(dsn, "SELECT schema_version FROM doeff_meta WHERE table_name = %s", table) == [(1,)]


def test_foreign_table_is_refused_and_left_untouched(dsn: str, table: str) -> None:
    """A table doeff did not create raises IncompatibleStoreError; its rows and shape stay."""
    sql(dsn, f"CREATE TABLE {table} (key text PRIMARY KEY, value bytea)")
    sql(dsn, f"INSERT INTO {table} VALUES ('mine', 'data')")
    with pytest.raises(IncompatibleStoreError, match="not a doeff store"):
        PostgresKV(dsn, table=table)
    assert sql(dsn, f"SELECT key, value FROM {table}") == [("mine", b"data")]
    assert sql(dsn, "SELECT 1 FROM doeff_meta WHERE table_name = %s", table) == []


def test_newer_schema_is_refused_and_left_untouched(dsn: str, table: str) -> None:
    """A doeff table marked with a newer schema version raises IncompatibleStoreError, unchanged."""
    with PostgresKV(dsn, table=table) as kv:
        kv.put("k", b"v")
    sql(dsn, "UPDATE doeff_meta SET schema_version = 99 WHERE table_name = %s", table)
    with pytest.raises(IncompatibleStoreError, match="newer"):
        PostgresKV(dsn, table=table)
    assert sql(dsn, f"SELECT value FROM {table}") == [(b"v",)]
    assert sql(dsn, "SELECT schema_version FROM doeff_meta WHERE table_name = %s", table) == [(99,)]


def test_foreign_meta_table_is_refused_and_nothing_is_created(dsn: str, table: str) -> None:
    """A schema whose doeff_meta is someone else's table is refused; no kv table is created."""
    schema = "s_" + table
    sql(dsn, f"CREATE SCHEMA {schema}")
    sql(dsn, f"CREATE TABLE {schema}.doeff_meta (id int)")
    with pytest.raises(IncompatibleStoreError, match="doeff_meta"):
        PostgresKV(dsn, table=f"{schema}.kv")
    assert sql(dsn, "SELECT to_regclass(%s) IS NULL", f"{schema}.kv") == [(True,)]


def test_schema_qualified_table_and_bad_names(dsn: str, table: str) -> None:
    """`schema.table` stores in that schema; names that are not identifiers are a ValueError."""
    schema = "q_" + table
    sql(dsn, f"CREATE SCHEMA {schema}")
    with PostgresKV(dsn, table=f"{schema}.wf") as kv:
        kv.put("k", b"v")
    assert sql(dsn, f"SELECT value FROM {schema}.wf") == [(b"v",)]
    for bad in ("", "a b", "x;drop table y", "a.b.c", "doeff_meta", "t" * 64):
        with pytest.raises(ValueError):
            PostgresKV(dsn, table=bad)


def test_repr_never_shows_the_password(dsn: str, table: str) -> None:
    """The store's repr (used in every error message) names host and database, not the password."""
    with PostgresKV(dsn + " password=s3cret", table=table) as kv:
        assert "s3cret" not in repr(kv) and "127.0.0.1" in repr(kv)


def test_unreachable_server_is_storage_unavailable() -> None:
    """Opening a store on a port where no server listens raises StorageUnavailableError."""
    with pytest.raises(StorageUnavailableError, match="connect"):
        PostgresKV("host=127.0.0.1 port=1 user=doeff dbname=postgres connect_timeout=2")


def test_keys_are_stored_as_utf8_bytes_readable_from_sql(dsn: str, table: str) -> None:
    """Keys, NUL included, are stored as their UTF-8 bytes and updated_at is recorded."""
    with PostgresKV(dsn, table=table) as kv:
        kv.put("a\x00é", b"v")
        ((key, value, updated_at),) = kv.records()
    assert (key, value) == ("a\x00é", b"v")
    assert updated_at is not None and abs(updated_at - time.time()) < 60
    assert sql(dsn, f"SELECT key, value FROM {table}") == [("a\x00é".encode(), b"v")]


# -- lost connections --------------------------------------------------------------------------


def _kill_blocked_inserts(dsn: str, table: str, times: int, locker: Any,
                          killed: list[int]) -> None:
    """Terminate the backend of each INSERT into `table` that waits on our lock, then unlock."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as admin:
        while len(killed) < times and time.monotonic() < deadline:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE %s", (f"INSERT INTO %{table}%",)).fetchone()
            if row is None:
                time.sleep(0.01)
                continue
            admin.execute("SELECT pg_terminate_backend(%s)", row)
            killed.append(row[0])
    locker.rollback()


@pytest.fixture
def locked(dsn: str, table: str) -> Iterator[tuple[PostgresKV, Any]]:
    """A store holding k=old, plus an open transaction that blocks every write to its table."""
    kv = PostgresKV(dsn, table=table, retries=0)
    kv.put("k", b"old")
    locker = psycopg.connect(dsn)
    locker.execute(f"LOCK TABLE {table} IN SHARE MODE")  # readers pass, writers wait
    try:
        yield kv, locker
    finally:
        locker.close()
        kv.close()


def test_connection_killed_during_put_raises_at_the_yield(
        locked: tuple[PostgresKV, Any], dsn: str, table: str) -> None:
    """A put whose session is killed mid-statement raises StorageError at the program's yield
    and leaves the previous value, and nothing else, in the table."""
    kv, locker = locked
    killed: list[int] = []
    killer = threading.Thread(target=_kill_blocked_inserts,
                              args=(dsn, table, 1, locker, killed))

    @do
    def workflow() -> Any:
        try:
            yield cacheput("k", "new")
        except StorageError as err:
            return err
        return None

    killer.start()
    err = run_sync(workflow(), storage=Durable(kv, PickleCodec())).value
    killer.join()
    assert len(killed) == 1
    assert isinstance(err, StorageUnavailableError), err
    assert "put('k')" in str(err) and isinstance(err.__cause__, psycopg.OperationalError)
    assert kv.get("k") == b"old" and len(kv) == 1
    assert sql(dsn, f"SELECT count(*) FROM {table}") == [(1,)]
    kv.put("k", b"after")  # the pool replaced the dead connection
    assert kv.get("k") == b"after"


def test_put_retried_after_its_connection_is_killed(dsn: str, table: str) -> None:
    """With retries on, a put whose session is killed is applied once on a fresh connection."""
    with PostgresKV(dsn, table=table) as kv:
        kv.put("k", b"old")
        locker = psycopg.connect(dsn)
        locker.execute(f"LOCK TABLE {table} IN SHARE MODE")
        killed: list[int] = []
        killer = threading.Thread(target=_kill_blocked_inserts,
                                  args=(dsn, table, 1, locker, killed))
        killer.start()
        kv.put("k", b"new")
        killer.join()
        locker.close()
        assert len(killed) == 1
        assert kv.get("k") == b"new" and len(kv) == 1


def test_a_delete_killed_before_it_committed_is_retried_and_answers_true(
        dsn: str, table: str) -> None:
    """A delete whose session is killed before it committed finds the key still there, so it
    is retried on a fresh connection and answers True."""
    with PostgresKV(dsn, table=table) as kv:
        kv.put("k", b"v")
        conn = psycopg.connect(dsn)
        conn.execute(f"LOCK TABLE {table} IN SHARE MODE")  # the delete waits for this lock
        killed: list[int] = []
        stop = threading.Event()

        def kill_delete_once() -> None:
            with psycopg.connect(dsn, autocommit=True) as admin:
                while not stop.is_set():
                    row = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE %s", (f"DELETE FROM %{table}%",)).fetchone()
                    if row:
                        admin.execute("SELECT pg_terminate_backend(%s)", row)
                        killed.append(row[0])
                        conn.rollback()
                        return
                    time.sleep(0.01)

        killer = threading.Thread(target=kill_delete_once)
        killer.start()
        assert kv.delete("k") is True
        stop.set()
        killer.join()
        conn.close()
        assert len(killed) == 1
        assert kv.get("k") is None


def test_server_restart_surfaces_unavailable_then_recovers() -> None:
    """While the server is down operations raise StorageUnavailableError; after it is back the
    same store works again, with what was committed before."""
    try:
        server = pg_server.PgServer()
    except pg_server.ServerUnavailable:
        pg_server.require_server()  # skips, or fails under CI, with the reason
        raise
    try:
        kv = PostgresKV(server.dsn, min_size=2, timeout=1.0, retries=1)
        kv.put("a", b"1")
        server.halt()
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError) as info:
            kv.put("b", b"2")
        # Only a bound against hanging (timeout=1 s, one retry), far above the expected ~2 s.
        assert time.monotonic() - started < 60
        assert isinstance(info.value.__cause__, psycopg.Error)
        server.restart()
        # The pool reconnects in the background with backoff (1 s, 2 s, ...), and this store
        # waits only 1 s for a connection, so the first calls may still report the outage.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert kv.get("a") == b"1"
                break
            except StorageUnavailableError:
                assert time.monotonic() < deadline, "the store did not recover in 30 s"
        assert kv.get("b") is None
        kv.put("b", b"2")
        assert sorted(kv.items()) == [("a", b"1"), ("b", b"2")]
        kv.close()
    finally:
        server.stop()


# -- processes and threads ---------------------------------------------------------------------


def _use_inherited(kv: PostgresKV) -> None:
    for i in range(100):
        kv.put(f"child:{i}", b"c")
    kv.close()


def test_forked_child_can_use_the_parents_store(dsn: str, table: str) -> None:
    """A child forked with an open store uses it on its own connections; the parent's still work."""
    kv = PostgresKV(dsn, table=table)
    kv.put("parent", b"p")
    child = FORK.Process(target=_use_inherited, args=(kv,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    kv.put("parent", b"still usable")
    assert len(kv) == 101 and kv.get("parent") == b"still usable"
    kv.close()


def test_put_if_absent_has_exactly_one_winner(dsn: str, table: str) -> None:
    """Of 8 threads claiming one key at once exactly one succeeds, and its value is stored."""
    with PostgresKV(dsn, table=table) as kv:
        barrier = threading.Barrier(8)
        wins: list[int] = []

        def claim(worker: int) -> None:
            barrier.wait()
            if kv.put_if_absent("claim", f"w{worker}".encode()):
                wins.append(worker)

        threads = [threading.Thread(target=claim, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1
        assert kv.get("claim") == f"w{wins[0]}".encode()
        assert kv.put_if_absent("claim", b"late") is False


def slow_step(i: int, acc: int, computed: list[int]) -> int:
    """One workflow step: a little work, recorded so the test can count computations."""
    computed.append(i)
    time.sleep(0.002)  # long enough for the workers to interleave
    return (acc * 31 + i) % 1_000_003


@do
def fifty_steps(computed: list[int]) -> Any:
    """The cached workflow every worker runs: step i depends on step i-1."""
    acc = 0
    for i in range(STEPS):
        acc = yield cached(f"step:{i:02d}", functools.partial(perform, slow_step, i, acc,
                                                              computed))
    return acc


def _workflow_worker(dsn: str, table: str, start: Any, results: Any) -> None:
    computed: list[int] = []
    start.wait()
    with Durable(PostgresKV(dsn, table=table), PickleCodec()) as storage:
        result = run_sync(fifty_steps(computed), storage=storage)
    results.put((result.value if result.is_ok() else repr(result.error), len(computed)))


def test_four_workers_share_one_workflow_cache(dsn: str, table: str) -> None:
    """4 processes run the same 50-step cached workflow on one PostgresKV at once: all return
    the right result and every step key is stored once with its one correct value."""
    expected_steps, acc = {}, 0
    for i in range(STEPS):
        acc = (acc * 31 + i) % 1_000_003
        expected_steps[f"step:{i:02d}"] = acc
    start, results = FORK.Event(), FORK.Queue()
    procs = [FORK.Process(target=_workflow_worker, args=(dsn, table, start, results))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = []
    for _ in procs:
        try:
            outcomes.append(results.get(timeout=60))
        except queue.Empty:
            break
    for proc in procs:
        proc.join(30)
    assert [p.exitcode for p in procs] == [0] * 4
    assert [value for value, _ in outcomes] == [acc] * 4
    assert STEPS <= sum(n for _, n in outcomes) <= 4 * STEPS  # each step computed at least once
    with Durable(PostgresKV(dsn, table=table), PickleCodec()) as storage:
        assert dict(storage.items()) == expected_steps
    assert sql(dsn, f"SELECT count(*), count(DISTINCT key) FROM {table}") == [(STEPS, STEPS)]


# -- the test set-up itself --------------------------------------------------------------------


def _pytest_without_server(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DOEFF_PG_BINDIR"] = "/nonexistent"  # as if the server were not installed
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q",
         "tests/test_kv_contract.py", "-k", "postgres and put_then_get and not namespace"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_without_a_server_tests_skip_locally_and_fail_in_ci() -> None:
    """With no server binaries the Postgres tests skip with a how-to, and fail when CI is set."""
    local = _pytest_without_server(ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    assert "apt-get install postgresql" in local.stdout
    in_ci = _pytest_without_server(ci=True)
    assert in_ci.returncode == 1, in_ci.stdout
    assert "CI is set, so this is a failure" in in_ci.stdout
