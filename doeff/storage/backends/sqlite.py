"""`SQLiteKV`: a KVStore in one SQLite file, safe across threads and processes.

The file is in WAL mode. `durability="normal"` sets `synchronous=NORMAL`: a put that returned
survives the process being killed; a power loss may roll back the last puts but never corrupts
the file. `durability="full"` sets `synchronous=FULL`: every put is fsynced before it returns.

Every put is one autocommit statement (an upsert), so no multi-statement transaction ever holds
a read lock that must later be upgraded — the case where SQLite gives up with "database is
locked" without waiting. The busy timeout covers the rest; a retry loop with backoff covers what
SQLite reports as busy without consulting the timeout (e.g. WAL recovery by another process).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from doeff.errors import (
    IncompatibleStoreError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from doeff.storage.backends.common import (
    KVBase,
    check_durability,
    check_items,
    check_key,
    check_value,
    closed_error,
    failure,
    foreign_store,
    newer_store,
    on_fork,
)

# "doef" in ASCII: written to the header's application_id so a doeff store is recognisable.
APPLICATION_ID: Final = 0x646F6566
SCHEMA_VERSION: Final = 1
MEMORY: Final = ":memory:"

_CREATE = (
    "CREATE TABLE IF NOT EXISTS doeff_kv ("
    "key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, updated_at REAL NOT NULL)"
)
_PUT = (
    "INSERT INTO doeff_kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
_GET = "SELECT value FROM doeff_kv WHERE key = ?"
_EXISTS = "SELECT 1 FROM doeff_kv WHERE key = ?"
_DELETE = "DELETE FROM doeff_kv WHERE key = ?"
_KEYS = "SELECT key FROM doeff_kv"
_ITEMS = "SELECT key, value FROM doeff_kv"
# Compared as UTF-8 bytes: TEXT functions stop at a NUL, which a key may hold (and substr() of
# an empty blob is not a blob, hence the empty-prefix case). BINARY order is byte order, which
# for UTF-8 is code point order, as Python's sorted() gives.
_RECORDS = (
    "SELECT key, value, updated_at FROM doeff_kv "
    "WHERE ?1 = 0 OR substr(CAST(key AS BLOB), 1, ?1) = ?2 ORDER BY key"
)
_CLEAR = "DELETE FROM doeff_kv"
_HEADER = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), (SELECT count(*) FROM sqlite_master)"
)
_LEN = "SELECT count(*) FROM doeff_kv"

_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_MAX_IDLE = 8  # idle connections kept per store; more threads than that open and close extras
_TIMEOUT = 30.0  # seconds a write waits for another writer before StorageUnavailableError

# Connections a forked child inherited: never used again, and never closed either, because
# closing them in the child could disturb the parent's locks on the same file.
_ABANDONED: list[sqlite3.Cursor] = []


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # primary result code


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY_CODES or "locked" in str(exc)


class SQLiteKV(KVBase):
    """A KVStore in a SQLite file (WAL mode); `":memory:"` gives one database for all threads.

    >>> with SQLiteKV(":memory:") as kv:
    ...     kv.put("step:1", b"done"); kv.get("step:1")
    b'done'
    """

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "normal") -> None:
        self.path = os.fspath(path)
        self.durability = check_durability(durability, f"SQLiteKV({self.path!r})")
        self._closed = False
        self._idle: list[sqlite3.Cursor] = []
        self._take: Callable[[str], sqlite3.Cursor]
        self._give: Callable[[sqlite3.Cursor], None]
        first = self._open_checked()
        if self.path == MEMORY:
            # Every connection to ":memory:" is its own database, so all threads share this one.
            self._shared = first
            self._lock = threading.Lock()
            self._take, self._give = self._take_shared, self._give_shared
        else:
            # A pool, not a connection per thread: connections are returned after each operation,
            # so threads that come and go leak nothing, and readers never wait for each other.
            self._idle.append(first)
            self._take, self._give = self._take_pooled, self._give_pooled
            on_fork(self)

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Cursor:
        # isolation_level=None: autocommit, each statement is its own transaction (see module doc).
        conn = sqlite3.connect(
            self.path, timeout=_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous = " + ("FULL" if self.durability == "full" else "NORMAL"))
        return conn.cursor()

    def _open_checked(self) -> sqlite3.Cursor:
        """The first connection: checks the file is a doeff store (or new) before any write."""
        deadline = time.monotonic() + _TIMEOUT
        delay = 0.002
        while True:
            try:
                cur = self._connect()
            except sqlite3.Error as exc:
                raise self._wrap(exc, "open", None) from exc
            try:
                self._init_schema(cur)
                return cur
            except sqlite3.Error as exc:
                cur.connection.close()
                # Several processes creating the same new file race for its first write lock
                # and for the switch to WAL; SQLite reports some of that as busy at once.
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise self._wrap(exc, "open", None) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.2)
            except BaseException:
                cur.connection.close()
                raise

    def _header(self, cur: sqlite3.Cursor) -> tuple[int, int, int]:
        # One statement, so one read transaction: three separate reads could straddle another
        # process's creating commit and see a table without its application_id.
        row: tuple[int, int, int] = cur.execute(_HEADER).fetchone()
        return row

    def _init_schema(self, cur: sqlite3.Cursor) -> None:
        # Read before writing anything: a foreign or newer file must come out byte-for-byte intact.
        header = self._header(cur)
        if header == (0, 0, 0):
            cur.execute("BEGIN IMMEDIATE")
            try:
                header = self._header(cur)  # another process may have won the race meanwhile
                if header == (0, 0, 0):
                    cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    cur.execute(_CREATE)
                    header = (APPLICATION_ID, SCHEMA_VERSION, 1)
                cur.execute("COMMIT")
            except BaseException:
                cur.connection.rollback()
                raise
        self._check_header(*header)
        # fetchall(): a pragma left with an unread row keeps its statement, and its lock, alive.
        if self.path != MEMORY and cur.execute("PRAGMA journal_mode").fetchall() != [("wal",)]:
            cur.execute("PRAGMA journal_mode = WAL").fetchall()

    def _check_header(self, app_id: int, version: int, tables: int) -> None:
        if app_id != APPLICATION_ID:
            raise foreign_store(
                self, repr(self.path),
                f"a SQLite database (application_id={app_id}, {tables} schema objects)",
                "Point SQLiteKV at a new file or at one doeff created",
            )
        if version > SCHEMA_VERSION:
            raise newer_store(self, repr(self.path), version, SCHEMA_VERSION)

    def _take_pooled(self, op: str) -> sqlite3.Cursor:
        try:
            return self._idle.pop()
        except IndexError:
            if self._closed:
                raise closed_error(self, op) from None
            try:
                return self._connect()
            except sqlite3.Error as exc:
                raise self._wrap(exc, "connect", None) from exc

    def _give_pooled(self, cur: sqlite3.Cursor) -> None:
        idle = self._idle
        if len(idle) < _MAX_IDLE:
            idle.append(cur)
            if self._closed:  # close() ran while this operation was in flight
                self._drain()
        else:
            cur.connection.close()

    def _take_shared(self, op: str) -> sqlite3.Cursor:
        self._lock.acquire()
        if self._closed:
            self._lock.release()
            raise closed_error(self, op)
        return self._shared

    def _give_shared(self, cur: sqlite3.Cursor) -> None:
        self._lock.release()

    def _drain(self) -> None:
        idle = self._idle
        while idle:
            try:
                idle.pop().connection.close()
            except IndexError:  # another thread drained the last one
                break

    def _after_fork_in_child(self) -> None:
        _ABANDONED.extend(self._idle)
        self._idle = []

    # -- running statements ------------------------------------------------------------------

    def _exec(self, cur: sqlite3.Cursor, sql: str, params: tuple[Any, ...], op: str,
              key: str | None) -> sqlite3.Cursor:
        """`cur.execute(sql, params)`, retrying while busy, errors turned into StorageError."""
        try:
            return cur.execute(sql, params)
        except sqlite3.Error as exc:
            return self._retry(exc, cur, sql, params, op, key)

    def _retry(self, exc: sqlite3.Error, cur: sqlite3.Cursor, sql: str,
               params: tuple[Any, ...], op: str, key: str | None) -> sqlite3.Cursor:
        deadline = time.monotonic() + _TIMEOUT
        delay = 0.002
        while _is_busy(exc) and time.monotonic() < deadline:
            time.sleep(delay * (0.5 + random.random()))  # jitter: don't retry in lockstep
            delay = min(delay * 2, 0.2)
            try:
                return cur.execute(sql, params)
            except sqlite3.Error as again:
                exc = again
        raise self._wrap(exc, op, key) from exc

    def _wrap(self, exc: sqlite3.Error, op: str, key: str | None) -> StorageError:
        code = _code(exc)
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
            return closed_error(self, op)
        if code == sqlite3.SQLITE_FULL:
            return failure(StorageFullError, self, op, key, exc,
                           "free disk space; the write was not applied")
        if code == sqlite3.SQLITE_NOTADB:
            return failure(IncompatibleStoreError, self, op, key, exc,
                           "the file is not a SQLite database; it was left untouched")
        if code in _BUSY_CODES or _is_busy(exc):
            return failure(StorageUnavailableError, self, op, key, exc,
                           f"another connection held the lock for {_TIMEOUT:.0f} s or more; "
                           "find the process holding it and retry")
        if code == sqlite3.SQLITE_CANTOPEN:
            return failure(StorageUnavailableError, self, op, key, exc,
                           "check that the directory exists and is writable")
        if code == sqlite3.SQLITE_CORRUPT:
            return failure(StorageError, self, op, key, exc,
                           "the file is damaged; restore it from a backup or start a new one")
        return failure(StorageError, self, op, key, exc, "nothing was written")

    # -- the KVStore verbs -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or None when missing."""
        key = check_key(key, self)
        cur = self._take("get")
        try:
            # _exec inlined on the two hot paths: a Python call is a measurable share of a get.
            try:
                row = cur.execute(_GET, (key,)).fetchone()
            except sqlite3.Error as exc:
                row = self._retry(exc, cur, _GET, (key,), "get", key).fetchone()
        finally:
            self._give(cur)
        return None if row is None else row[0]

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key` in one committed statement; the old value stays on error."""
        key = check_key(key, self)
        params = (key, check_value(value, self, key), time.time())
        cur = self._take("put")
        try:
            try:
                cur.execute(_PUT, params)
            except sqlite3.Error as exc:
                self._retry(exc, cur, _PUT, params, "put", key)
        finally:
            self._give(cur)

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        key = check_key(key, self)
        cur = self._take("delete")
        try:
            return self._exec(cur, _DELETE, (key,), "delete", key).rowcount > 0
        finally:
            self._give(cur)

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        key = check_key(key, self)
        cur = self._take("exists")
        try:
            return self._exec(cur, _EXISTS, (key,), "exists", key).fetchone() is not None
        finally:
            self._give(cur)

    def _all(self, sql: str, op: str) -> list[Any]:
        cur = self._take(op)
        try:
            return self._exec(cur, sql, (), op, None).fetchall()
        finally:
            self._give(cur)

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        return [k for (k,) in self._all(_KEYS, "keys")]

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        return self._all(_ITEMS, "items")

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every pair in one transaction: all of them, or none if anything fails."""
        now = time.time()
        rows = [(k, v, now) for k, v in check_items(items, self)]
        cur = self._take("put_many")
        try:
            # IMMEDIATE takes the write lock up front (waiting as a put would), so the
            # transaction never has to upgrade a read lock, which SQLite refuses under contention.
            self._exec(cur, "BEGIN IMMEDIATE", (), "put_many", None)
            try:
                cur.executemany(_PUT, rows)
                cur.execute("COMMIT")
            except BaseException as exc:
                # Also on KeyboardInterrupt: the connection goes back to the pool, and must not
                # go back inside a transaction.
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._wrap(exc, "put_many", None) from exc
                raise
        finally:
            self._give(cur)

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, updated_at as a Unix time) for keys starting with `prefix`, sorted."""
        cur = self._take("records")
        try:
            head = prefix.encode("utf-8")
            return self._exec(cur, _RECORDS, (len(head), head), "records", None).fetchall()
        finally:
            self._give(cur)

    def clear(self) -> None:
        """Delete every entry."""
        self._all(_CLEAR, "clear")

    def __len__(self) -> int:
        count: int = self._all(_LEN, "len")[0][0]
        return count

    def close(self) -> None:
        """Close every connection; later operations raise StoreClosedError. Idempotent."""
        self._closed = True
        if self.path == MEMORY:
            with self._lock:
                self._shared.connection.close()
        else:
            self._drain()

    def __repr__(self) -> str:
        return f"SQLiteKV({self.path!r})"


__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteKV"]
