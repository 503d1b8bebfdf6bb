"""`SQLiteKV`: a KVStore in one SQLite file, safe across threads, processes and fork.

The file is in WAL mode. `durability="normal"` sets `synchronous=NORMAL`: a put that returned
survives the process being killed; a power loss may roll back the last puts but never corrupts
the file. `durability="full"` sets `synchronous=FULL`: every put is fsynced before it returns.

Every put is one autocommit statement (an upsert), so no multi-statement transaction ever holds
a read lock that must later be upgraded — the case where SQLite gives up with "database is
locked" without waiting. The busy timeout covers the rest; a retry loop with backoff covers what
SQLite reports as busy without consulting the timeout (e.g. WAL recovery by another process).

A path is a file name: files are opened through a `file:` URI built here (percent-encoded, made
absolute once), so a name such as `file:x.db?mode=memory` is a file of that name, and new pooled
connections reach the same file after the process changes directory.
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
from urllib.parse import quote

from doeff.errors import (
    CorruptStoreError,
    IncompatibleStoreError,
    InvalidOptionError,
    ReadOnlyStoreError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from doeff.storage.backends.common import (
    ForkGate,
    KVBase,
    PendingNamespace,
    check_durability,
    check_items,
    check_key,
    check_namespace,
    check_prefix,
    check_value,
    closed_error,
    disk_full,
    failure,
    foreign_store,
    nested_namespace,
    newer_store,
    on_fork,
    read_only,
    writable,
)
from doeff.storage.base import KVStore

# "doef" in ASCII: written to the header's application_id so a doeff store is recognisable.
APPLICATION_ID: Final = 0x646F6566
SCHEMA_VERSION: Final = 1
MEMORY: Final = ":memory:"

_CREATE = (
    "CREATE TABLE IF NOT EXISTS doeff_kv ("
    "key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, updated_at REAL NOT NULL)"
)
# The table as _CREATE makes it, as `PRAGMA table_info` describes it.
_TABLE_INFO = "SELECT * FROM pragma_table_info('doeff_kv')"
_COLUMNS = [(0, "key", "TEXT", 1, None, 1), (1, "value", "BLOB", 1, None, 0),
            (2, "updated_at", "REAL", 1, None, 0)]
_TRIGGERS = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
_PUT = (
    "INSERT INTO doeff_kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
_GET = "SELECT value FROM doeff_kv WHERE key = ?"
_EXISTS = "SELECT 1 FROM doeff_kv WHERE key = ?"
_DELETE = "DELETE FROM doeff_kv WHERE key = ?"
# Whole-store reads scan the table, NOT INDEXED: the keys come from the rows themselves, so a
# damaged index entry cannot make a record come out under another record's key.
_KEYS = "SELECT key FROM doeff_kv NOT INDEXED"
_ITEMS = "SELECT key, value FROM doeff_kv NOT INDEXED"
_INDEXED_KEYS = "SELECT key FROM doeff_kv INDEXED BY sqlite_autoindex_doeff_kv_1"
# Compared as UTF-8 bytes: TEXT functions stop at a NUL, which a key may hold (and substr() of
# an empty blob is not a blob, hence the empty-prefix case). Sorted in Python: code point order
# is UTF-8 byte order, SQLite's BINARY order.
_RECORDS = (
    "SELECT key, value, updated_at FROM doeff_kv NOT INDEXED "
    "WHERE ?1 = 0 OR substr(CAST(key AS BLOB), 1, ?1) = ?2"
)
_CLEAR = "DELETE FROM doeff_kv"
# The conditional writes claims are built from: each one statement, so atomic across processes.
_PUT_NEW = ("INSERT INTO doeff_kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING")
_SWAP = "UPDATE doeff_kv SET value = ?, updated_at = ? WHERE key = ? AND value = ?"
_DELETE_IF = "DELETE FROM doeff_kv WHERE key = ? AND value = ?"
# application_id, schema version, schema objects, pages: a database with no pages at all is a
# new (or zero-byte) file; one with pages but no schema is somebody's empty database.
_HEADER = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), (SELECT count(*) FROM sqlite_master), "
    "(SELECT page_count FROM pragma_page_count())"
)
_LEN = "SELECT count(*) FROM doeff_kv"
_RAW_KEYS = "SELECT rowid, CAST(key AS BLOB) FROM doeff_kv"

_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_MAX_IDLE = 8  # idle connections kept per store; more threads than that open and close extras
_TIMEOUT = 30.0  # seconds a write waits for another writer before StorageUnavailableError
_READ_ONLY_MEDIA = "it is on read-only media or in a directory this process cannot write"

# Connections a forked child inherited: never used again, and never closed either, because
# closing them in the child could disturb the parent's locks on the same file.
_ABANDONED: list[sqlite3.Cursor] = []
# SQLite's locks are process-wide (the memory allocator's mutex, the per-file lock tables), so
# one gate covers every SQLiteKV of the process.
_GATE = ForkGate("SQLite")

_Header = tuple[int, int, int, int]


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # primary result code


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY_CODES or "locked" in str(exc)


def _file_uri(path: str, mode: str) -> str:
    """A `file:` URI naming `path` exactly (percent-encoded), opened with `mode` (a query)."""
    return f"file:{quote(path)}?{mode}"


class SQLiteKV(KVBase):
    """A KVStore in a SQLite file (WAL mode); `":memory:"` gives one database for all threads.

    `readonly=True` opens an existing store for reading only (also on read-only media): every
    write raises ReadOnlyStoreError. A missing path or a zero-byte file becomes a new store;
    `create=True` also turns an existing empty SQLite database (no tables) into one.

    >>> with SQLiteKV(":memory:") as kv:
    ...     kv.put("step:1", b"done"); kv.get("step:1")
    b'done'
    """

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "normal",
                 readonly: bool = False, create: bool = False) -> None:
        self.path = os.fspath(path)
        self.durability = check_durability(durability, f"SQLiteKV({self.path!r})")
        self.readonly = readonly
        self.create = create
        if self.path == "":
            raise InvalidOptionError(
                "SQLiteKV(''): the empty path is refused (SQLite would give each connection a "
                "private temporary database, so nothing would be stored); give a file name, or "
                "':memory:' for one in-memory database"
            )
        if self.path == MEMORY and readonly:
            raise InvalidOptionError(
                "SQLiteKV(':memory:', readonly=True): a new in-memory database is empty, so "
                "there is nothing to read; drop readonly=True"
            )
        self._file = os.path.abspath(self.path)
        self._uri = _file_uri(self._file, "mode=ro" if readonly else "mode=rwc")
        self._closed = False
        self._idle: list[sqlite3.Cursor] = []
        self._take: Callable[[str], sqlite3.Cursor]
        self._give: Callable[[sqlite3.Cursor], None]
        _GATE.enter(self, "open")
        try:
            first = self._open_checked()
        finally:
            _GATE.leave()
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
        if self.path == MEMORY:
            conn = sqlite3.connect(MEMORY, timeout=_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self._uri, timeout=_TIMEOUT, isolation_level=None,
                                   check_same_thread=False, uri=True)
        if not self.readonly:
            conn.execute("PRAGMA synchronous = "
                         + ("FULL" if self.durability == "full" else "NORMAL"))
        return conn.cursor()

    def _open_checked(self) -> sqlite3.Cursor:
        """The first connection: checks the file is a doeff store (or new) before any write."""
        if self.readonly and not os.path.isfile(self._file):
            raise StorageUnavailableError(
                f"{self!r}: no store at {self._file!r}; readonly=True opens an existing store "
                f"and never creates one"
            )
        deadline = time.monotonic() + _TIMEOUT
        delay = 0.002
        while True:
            cur: sqlite3.Cursor | None = None
            try:
                cur = self._connect()
                self._init_schema(cur)
                return cur
            except sqlite3.Error as exc:
                if cur is not None:
                    cur.connection.close()
                if self.readonly and self._use_immutable(exc):
                    continue
                # Several processes creating the same new file race for its first write lock
                # and for the switch to WAL; SQLite reports some of that as busy at once.
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise self._wrap(exc, "open", None) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.2)
            except BaseException:
                if cur is not None:
                    cur.connection.close()
                raise

    def _use_immutable(self, exc: sqlite3.Error) -> bool:
        """After a read-only open failed for want of a WAL index (-shm) that cannot be made,
        switch to reading the file as immutable — only when no write-ahead log holds data the
        file lacks. True if the open should be tried again that way."""
        # CANTOPEN: no -shm can be created (read-only media); IOERR: none can be sized (a full
        # disk).
        if (_code(exc) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR)
                or "immutable=1" in self._uri):
            return False
        with contextlib.suppress(OSError):
            if os.path.getsize(self._file + "-wal") > 0:
                return False
        self._uri = _file_uri(self._file, "mode=ro&immutable=1")
        return True

    def _header(self, cur: sqlite3.Cursor) -> _Header:
        # One statement, so one read transaction: separate reads could straddle another
        # process's creating commit and see a table without its application_id.
        row: _Header = cur.execute(_HEADER).fetchone()
        return row

    def _init_schema(self, cur: sqlite3.Cursor) -> None:
        # Read before writing anything: a foreign or newer file must come out byte-for-byte intact.
        header = self._header(cur)
        if self._may_create(header):
            cur.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have made it a store meanwhile. (Not the page count
                # again: inside a write transaction a new database already counts page 1.)
                header = self._header(cur)
                if header[:3] == (0, 0, 0):
                    cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    cur.execute(_CREATE)
                    header = (APPLICATION_ID, SCHEMA_VERSION, 1, 2)
                cur.execute("COMMIT")
            except BaseException:
                cur.connection.rollback()
                raise
        self._check_header(*header)
        self._check_table(cur)
        if self.readonly or self.path == MEMORY:
            return
        # fetchall(): a pragma left with an unread row keeps its statement, and its lock, alive.
        if cur.execute("PRAGMA journal_mode").fetchall() != [("wal",)]:
            cur.execute("PRAGMA journal_mode = WAL").fetchall()

    def _may_create(self, header: _Header) -> bool:
        """Whether to make the database a store: it has no pages (a new or zero-byte file), or
        it is an empty database and create=True was passed."""
        app_id, _, tables, pages = header
        empty = app_id == 0 and tables == 0
        return not self.readonly and empty and (pages == 0 or self.create)

    def _check_header(self, app_id: int, version: int, tables: int, pages: int) -> None:
        if app_id == 0 and tables == 0:
            what = "an empty file" if pages == 0 else "an empty SQLite database (no tables)"
            raise foreign_store(
                self, repr(self.path), what,
                "Pass create=True to make it a doeff store"
                if pages else "Open it without readonly=True to make it a new store",
            )
        if app_id != APPLICATION_ID:
            raise foreign_store(
                self, repr(self.path),
                f"a SQLite database (application_id={app_id}, {tables} schema objects)",
                "Point SQLiteKV at a new file or at one doeff created",
            )
        if version > SCHEMA_VERSION:
            raise newer_store(self, repr(self.path), version, SCHEMA_VERSION)

    def _check_table(self, cur: sqlite3.Cursor) -> None:
        """`IncompatibleStoreError` unless doeff's table is exactly what doeff creates, with no
        trigger in the file: a file claiming doeff's application id with a table of its own
        (other columns, no primary key) would hand out keys or values of any type."""
        columns = cur.execute(_TABLE_INFO).fetchall()
        triggers = cur.execute(_TRIGGERS).fetchone()[0]
        if columns != _COLUMNS or triggers:
            found = ", ".join(f"{name} {kind or 'untyped'}{' pk' if pk else ''}"
                              for _, name, kind, _, _, pk in columns) or "no doeff_kv table"
            raise foreign_store(
                self, repr(self.path),
                f"a SQLite database with doeff's application id but a table doeff did not make "
                f"({found}; {triggers} triggers)",
                "Point SQLiteKV at a new file or at one doeff created",
            )

    def _take_pooled(self, op: str) -> sqlite3.Cursor:
        # ForkGate.enter's common case written out (mark this thread inside, then look for a
        # fork; see ForkGate): the call was a measurable share of a get. A fork under way, or a
        # stuck child, goes through enter itself, which waits or refuses.
        inside = _GATE.inside
        inside.append(None)
        if _GATE.closed or _GATE.stuck:
            inside.pop()
            _GATE.enter(self, op)
        try:
            return self._idle.pop()
        except IndexError:
            try:
                if self._closed:
                    raise closed_error(self, op) from None
                try:
                    return self._connect()
                except sqlite3.Error as exc:
                    raise self._wrap(exc, "connect", None) from exc
            except BaseException:
                _GATE.leave()
                raise

    def _give_pooled(self, cur: sqlite3.Cursor) -> None:
        idle = self._idle
        if len(idle) < _MAX_IDLE:
            idle.append(cur)
            if self._closed:  # close() ran while this operation was in flight
                self._drain()
        else:
            cur.connection.close()
        _GATE.inside.pop()  # _GATE.leave(), written out as enter's common case is above

    def _take_shared(self, op: str) -> sqlite3.Cursor:
        _GATE.enter(self, op)
        self._lock.acquire()
        if self._closed:
            self._lock.release()
            _GATE.leave()
            raise closed_error(self, op)
        return self._shared

    def _give_shared(self, cur: sqlite3.Cursor) -> None:
        self._lock.release()
        _GATE.leave()

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

    def _run(self, op: str, key: str | None, sql: str, params: tuple[Any, ...],
             fetch: Callable[[sqlite3.Cursor], Any]) -> Any:
        """`fetch(cur.execute(sql, params))` on a pooled connection, retrying while busy; every
        failure, fetching rows included, becomes a StorageError."""
        cur = self._take(op)
        try:
            try:
                return fetch(cur.execute(sql, params))
            except sqlite3.Error as exc:
                return fetch(self._retry(exc, cur, sql, params, op, key))
        except sqlite3.Error as exc:  # raised while fetching the retried statement's rows
            raise self._wrap(exc, op, key) from exc
        finally:
            self._give(cur)

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
        if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR
                                           and disk_full(os.path.dirname(self._file))):
            return failure(StorageFullError, self, op, key, exc,
                           "free disk space; the write was not applied")
        if code == sqlite3.SQLITE_NOTADB:
            return failure(IncompatibleStoreError, self, op, key, exc,
                           "the file is not a SQLite database; it was left untouched")
        if code in _BUSY_CODES or _is_busy(exc):
            return failure(StorageUnavailableError, self, op, key, exc,
                           f"another connection held the lock for {_TIMEOUT:.0f} s or more; "
                           "find the process holding it and retry")
        if code == sqlite3.SQLITE_READONLY:
            return self._read_only_failure(op, key, exc)
        if code == sqlite3.SQLITE_CANTOPEN:
            if self.path != MEMORY and not self.readonly and not self._can_write():
                return self._read_only_failure(op, key, exc)
            return failure(StorageUnavailableError, self, op, key, exc,
                           "check that the directory exists and is writable")
        if code == sqlite3.SQLITE_CORRUPT or "decode to UTF-8" in str(exc):
            return failure(CorruptStoreError, self, op, key, exc,
                           "the file is damaged; run `doeff cache check` on it, then restore it "
                           "from a backup or copy what can be read to a new store "
                           "(`doeff cache migrate STORE --into NEW`)")
        return failure(StorageError, self, op, key, exc, "nothing was written")

    def _can_write(self) -> bool:
        """Whether this process could write the store's file and its directory."""
        directory = os.path.dirname(self._file)
        return writable(directory) and (not os.path.exists(self._file)
                                        or writable(self._file))

    def _read_only_failure(self, op: str, key: str | None, exc: sqlite3.Error) -> StorageError:
        if op == "open" and not os.path.exists(self._file):
            hint = "the directory is read-only, and a new store needs a writable one"
        else:
            hint = (f"{_READ_ONLY_MEDIA}: open it with SQLiteKV({self.path!r}, readonly=True) "
                    f"to read it")
        return failure(ReadOnlyStoreError, self, op, key, exc, hint)

    # -- the KVStore verbs -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or None when missing."""
        if type(key) is not str or not key.isascii():  # check_key's common case costs no call
            key = check_key(key, self)
        cur = self._take("get")
        try:
            # _run inlined on the two hot paths: a Python call is a measurable share of a get.
            try:
                row = cur.execute(_GET, (key,)).fetchone()
            except sqlite3.Error as exc:
                row = self._retry(exc, cur, _GET, (key,), "get", key).fetchone()
        except sqlite3.Error as exc:
            raise self._wrap(exc, "get", key) from exc
        finally:
            self._give(cur)
        return None if row is None else row[0]

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key` in one committed statement; the old value stays on error."""
        if type(key) is not str or not key.isascii():  # as in get
            key = check_key(key, self)
        params = (key, value if type(value) is bytes else check_value(value, self, key),
                  time.time())
        if self.readonly:
            raise read_only(self, "put")
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
        if self.readonly:
            raise read_only(self, "delete")
        deleted: bool = self._run("delete", key, _DELETE, (key,), lambda c: c.rowcount > 0)
        return deleted

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        key = check_key(key, self)
        found: bool = self._run("exists", key, _EXISTS, (key,),
                                lambda c: c.fetchone() is not None)
        return found

    def keys(self) -> list[str]:
        """A snapshot of all keys: from the table's rows or, where a table page is damaged,
        from the key index (so what is left of a damaged store can still be listed)."""
        try:
            rows = self._run("keys", None, _KEYS, (), _fetchall)
        except CorruptStoreError:
            rows = self._run("keys", None, _INDEXED_KEYS, (), _fetchall)
        return [k for (k,) in rows]

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        rows: list[tuple[str, bytes]] = self._run("items", None, _ITEMS, (), _fetchall)
        return rows

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every pair in one transaction: all of them, or none if anything fails."""
        now = time.time()
        rows = [(k, v, now) for k, v in check_items(items, self)]
        if self.readonly:
            raise read_only(self, "put_many")
        self._write_batch("put_many", _PUT, rows)

    def _write_batch(self, op: str, sql: str, rows: list[tuple[str, bytes, float]]) -> None:
        """`sql` for every row, in one transaction: all of them, or none if anything fails."""
        cur = self._take(op)
        try:
            # IMMEDIATE takes the write lock up front (waiting as a put would), so the
            # transaction never has to upgrade a read lock, which SQLite refuses under contention.
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._retry(exc, cur, "BEGIN IMMEDIATE", (), op, None)
            try:
                cur.executemany(sql, rows)
                cur.execute("COMMIT")
            except BaseException as exc:
                # Also on KeyboardInterrupt: the connection goes back to the pool, and must not
                # go back inside a transaction.
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._wrap(exc, op, None) from exc
                raise
        finally:
            self._give(cur)

    # -- conditional writes (claims) and batch deletes --------------------------------------

    def put_if_absent(self, key: str, value: bytes) -> bool:
        """Store `value` only if `key` is missing; True if this call stored it. Atomic across
        threads and processes: of several concurrent calls on one key, exactly one gets True."""
        key = check_key(key, self)
        params = (key, check_value(value, self, key), time.time())
        if self.readonly:
            raise read_only(self, "put_if_absent")
        stored: bool = self._run("put_if_absent", key, _PUT_NEW, params, _one_row)
        return stored

    def compare_and_swap(self, key: str, expected: bytes, value: bytes) -> bool:
        """Replace the value under `key` by `value` only if it is `expected` now; True if
        replaced (False when missing or different). Atomic across threads and processes."""
        key = check_key(key, self)
        params = (check_value(value, self, key), time.time(), key,
                  check_value(expected, self, key))
        if self.readonly:
            raise read_only(self, "compare_and_swap")
        swapped: bool = self._run("compare_and_swap", key, _SWAP, params, _one_row)
        return swapped

    def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if its value is `expected` now; True if removed."""
        key = check_key(key, self)
        params = (key, check_value(expected, self, key))
        if self.readonly:
            raise read_only(self, "compare_and_delete")
        deleted: bool = self._run("compare_and_delete", key, _DELETE_IF, params, _one_row)
        return deleted

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key given in one transaction (all, or none on error); the number that
        existed."""
        batch = [(check_key(k, self),) for k in keys]
        if self.readonly:
            raise read_only(self, "delete_many")
        cur = self._take("delete_many")
        try:
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._retry(exc, cur, "BEGIN IMMEDIATE", (), "delete_many", None)
            try:
                before = cur.connection.total_changes
                cur.executemany(_DELETE, batch)
                count = cur.connection.total_changes - before
                cur.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._wrap(exc, "delete_many", None) from exc
                raise
        finally:
            self._give(cur)
        return count

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, updated_at as a Unix time) for keys starting with `prefix`, sorted."""
        head = check_prefix(prefix, self)
        rows: list[tuple[str, bytes, float | None]] = self._run(
            "records", None, _RECORDS, (len(head), head), _fetchall)
        rows.sort(key=_first)
        return rows

    def clear(self) -> None:
        """Delete every entry."""
        if self.readonly:
            raise read_only(self, "clear")
        self._run("clear", None, _CLEAR, (), _fetchall)

    def __len__(self) -> int:
        count: int = self._run("len", None, _LEN, (), _fetchall)[0][0]
        return count

    def check(self) -> list[str]:
        """SQLite's `integrity_check`, and every key readable as UTF-8: the problems found."""
        try:
            rows = self._run("check", None, "PRAGMA integrity_check", (), _fetchall)
        except CorruptStoreError as exc:
            return [f"SQLite cannot check the file: {exc}"]
        problems = [line for (text,) in rows if text != "ok" for line in text.splitlines()
                    if not line.startswith("*** in database")]
        try:
            raw_keys = self._run("check", None, _RAW_KEYS, (), _fetchall)
        except CorruptStoreError as exc:
            return [*problems, f"the keys cannot be read: {exc}"]
        for rowid, raw in raw_keys:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"row {rowid}: key {raw!r:.80} is not UTF-8")
        return problems

    def namespace(self, name: str) -> KVStore:
        """A keyspace of its own: another table of the same file (created on first use; a
        read-only store sees it once a writer has created it)."""
        space = SQLiteNamespace(self, check_namespace(name, self))
        if not self.readonly:
            space.create()
            return space
        if space.present():
            return space
        return PendingNamespace(self, name, lambda: space if space.present() else None)

    def close(self) -> None:
        """Close every connection; later operations raise StoreClosedError. Idempotent."""
        self._closed = True
        if _GATE.stuck:  # closing would touch SQLite's locks, which may be held for ever here
            if self.path != MEMORY:
                self._after_fork_in_child()
            return
        _GATE.enter(self, "close")
        try:
            if self.path == MEMORY:
                with self._lock:
                    self._shared.connection.close()
            else:
                self._drain()
        finally:
            _GATE.leave()

    def __repr__(self) -> str:
        return f"SQLiteKV({self.path!r})"


class SQLiteNamespace(KVBase):
    """A namespace of a `SQLiteKV`: the table `doeff_ns_NAME` of the same file, reached
    through the store's own connections (so it shares its locking, retries and errors)."""

    def __init__(self, store: SQLiteKV, name: str) -> None:
        self._store = store
        self._name = name
        self.readonly = store.readonly
        self._closed = False
        table = f"doeff_ns_{name}"  # a checked name: letters, digits and _
        self._create = _CREATE.replace("doeff_kv", table)
        self._put = _PUT.replace("doeff_kv", table)
        self._get = _GET.replace("doeff_kv", table)
        self._delete = _DELETE.replace("doeff_kv", table)
        self._delete_if = _DELETE_IF.replace("doeff_kv", table)
        self._items = _ITEMS.replace("doeff_kv", table)
        self._records = _RECORDS.replace("doeff_kv", table)
        self._clear = _CLEAR.replace("doeff_kv", table)
        self._len = _LEN.replace("doeff_kv", table)
        self._table = table

    def _run(self, op: str, key: str | None, sql: str, params: tuple[Any, ...],
             fetch: Callable[[sqlite3.Cursor], Any]) -> Any:
        if self._closed:
            raise closed_error(self, op)
        return self._store._run(op, key, sql, params, fetch)

    def create(self) -> None:
        """Create the table if it is missing."""
        self._run("namespace", None, self._create, (), _fetchall)

    def present(self) -> bool:
        """Whether the table exists (a read-only store never creates it)."""
        rows = self._run("namespace", None, _HAS_TABLE, (self._table,), _fetchall)
        return bool(rows)

    def _writable(self, op: str) -> None:
        if self.readonly:
            raise read_only(self, op)

    def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or None when missing."""
        key = check_key(key, self)
        row = self._run("get", key, self._get, (key,), _fetchone)
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key` in one committed statement."""
        key = check_key(key, self)
        params = (key, check_value(value, self, key), time.time())
        self._writable("put")
        self._run("put", key, self._put, params, _fetchall)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every pair in one transaction: all of them, or none if anything fails."""
        now = time.time()
        rows = [(k, v, now) for k, v in check_items(items, self)]
        self._writable("put_many")
        if self._closed:
            raise closed_error(self, "put_many")
        self._store._write_batch("put_many", self._put, rows)

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        key = check_key(key, self)
        self._writable("delete")
        deleted: bool = self._run("delete", key, self._delete, (key,),
                                  lambda c: c.rowcount > 0)
        return deleted

    def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if its value is `expected` now; True if removed."""
        key = check_key(key, self)
        params = (key, check_value(expected, self, key))
        self._writable("compare_and_delete")
        deleted: bool = self._run("compare_and_delete", key, self._delete_if, params, _one_row)
        return deleted

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        return self.get(key) is not None

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        return [k for k, _ in self.items()]

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        rows: list[tuple[str, bytes]] = self._run("items", None, self._items, (), _fetchall)
        return rows

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, updated_at as a Unix time) for keys starting with `prefix`, sorted."""
        head = check_prefix(prefix, self)
        rows: list[tuple[str, bytes, float | None]] = self._run(
            "records", None, self._records, (len(head), head), _fetchall)
        rows.sort(key=_first)
        return rows

    def clear(self) -> None:
        """Delete every entry of the namespace."""
        self._writable("clear")
        self._run("clear", None, self._clear, (), _fetchall)

    def namespace(self, name: str) -> KVStore:
        """Refused: namespaces do not nest."""
        raise nested_namespace(self)

    def __len__(self) -> int:
        count: int = self._run("len", None, self._len, (), _fetchall)[0][0]
        return count

    def close(self) -> None:
        """Later operations raise StoreClosedError (the store itself stays open)."""
        self._closed = True

    def __repr__(self) -> str:
        return f"{self._store!r}.namespace({self._name!r})"


_HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"


def _fetchone(cur: sqlite3.Cursor) -> Any:
    return cur.fetchone()


def _fetchall(cur: sqlite3.Cursor) -> list[Any]:
    return cur.fetchall()


def _first(row: tuple[str, bytes, float | None]) -> str:
    return row[0]


def _one_row(cur: sqlite3.Cursor) -> bool:
    return cur.rowcount == 1


__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteKV"]
