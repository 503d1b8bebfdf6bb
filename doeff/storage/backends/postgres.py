"""`PostgresKV`: a KVStore in one PostgreSQL table, shared by many workers on many hosts.

Needs the `postgres` extra of this project (psycopg 3 and its connection pool): from a checkout,
`pip install -e '.[postgres]'`.

Layout: one row per key in `table` — `key_hash` (SHA-256 of the key's UTF-8, the primary key),
`key` (the UTF-8 bytes, as `bytea` because `text` cannot hold NUL), `value` (`bytea`) and
`updated_at`. The primary key is a hash because a btree entry is limited to about 2.7 KB while
keys are not. A `doeff_meta` table in the same schema records which tables are doeff stores and
their schema version; a table missing from it, or marked with a newer version, is refused with
`IncompatibleStoreError` and left untouched.

Every operation is one statement in its own transaction on a pooled autocommit connection, so a
put is applied whole or not at all. When the connection is lost, an operation is retried on a
fresh connection if that is safe: reads, puts and clears (repeating an upsert or a full delete
leaves the same state), and deletes and `put_if_absent` calls once the store shows that the lost
attempt did not commit. Otherwise, and when the server stays unreachable, it raises
`StorageUnavailableError`, chained from psycopg's error.

The cache does not lock anything: two workers may both compute a step and the last put wins.
`put_if_absent`, `compare_and_swap` and `compare_and_delete` are what claimed steps (which run
once across workers) build their leases from.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

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
    KVBase,
    PendingNamespace,
    check_items,
    check_namespace,
    check_prefix,
    check_value,
    closed_error,
    failure,
    foreign_store,
    key_bytes,
    nested_namespace,
    newer_store,
    on_fork,
    read_only,
)
from doeff.storage.base import KVStore

T = TypeVar("T")
Conn = psycopg.Connection[Any]

SCHEMA_VERSION: Final = 1
META_TABLE: Final = "doeff_meta"
# "doef" in ASCII, as SQLiteKV's application_id: the advisory lock held while creating tables.
_INIT_LOCK: Final = 0x646F6566
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
# SQLSTATEs meaning the session is gone: class 08 (connection exception), the server shutting
# down or restarting (57P01-57P03). psycopg also flags such connections as `broken`.
_LOST_STATES: Final = ("08", "57P01", "57P02", "57P03")

# Pools a forked child inherited: never used or closed there, because closing them would end
# the parent's sessions on the same sockets.
_ABANDONED: list[ConnectionPool[Any]] = []


def _split_table(table: str) -> tuple[str | None, str]:
    parts = table.split(".")
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise InvalidOptionError(
            f"PostgresKV: table must be a plain identifier or schema.identifier (letters, "
            f"digits, _ and $, at most 63 each), got {table!r}"
        )
    if parts[-1] == META_TABLE:
        raise InvalidOptionError(
            f"PostgresKV: {META_TABLE!r} is reserved for doeff's own bookkeeping; pick another "
            f"table= name"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _lost(exc: BaseException, conn: Conn | None) -> bool:
    """True if `exc` means the session died (as opposed to the statement being refused)."""
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    if conn is not None and conn.broken:
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(_LOST_STATES)


class PostgresKV(KVBase):
    """A KVStore in a PostgreSQL table, safe across threads, processes and hosts.

    For example (with a server at the DSN's address)::

        with PostgresKV("host=db.internal dbname=app user=worker") as kv:
            kv.put("step:1", b"done")
            kv.get("step:1")  # b'done'

    `min_size`/`max_size` bound the connection pool (one connection per concurrently running
    operation); `timeout` is how long an operation waits for a connection; `retries` is how
    many times an operation whose connection was lost is retried when that is safe;
    `connect_kwargs` go to `psycopg.connect` (e.g. `{"prepare_threshold": None}` behind a
    PgBouncer in transaction mode older than 1.21). `readonly=True` opens an existing table
    only, in read-only sessions, and refuses every write with ReadOnlyStoreError.
    """

    def __init__(self, dsn: str, *, table: str = "doeff_kv", min_size: int = 1,
                 max_size: int = 8, timeout: float = 30.0, retries: int = 3,
                 connect_kwargs: Mapping[str, Any] | None = None,
                 readonly: bool = False) -> None:
        self.dsn = dsn
        self.connect_kwargs = dict(connect_kwargs or {})
        self.readonly = readonly
        self.table = table
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.retries = retries
        self._schema, self._name = _split_table(table)
        self._closed = False
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Conn] | None = None
        try:
            conn = psycopg.connect(dsn, **self.connect_kwargs)
        except psycopg.Error as exc:
            raise self._wrap(exc, "connect", None) from exc
        try:
            self._configure(conn)
            self._init_schema(conn)
        except psycopg.Error as exc:
            raise self._wrap(exc, "open", None) from exc
        finally:
            conn.close()
        self._open_pool("open")
        on_fork(self)

    # -- schema ------------------------------------------------------------------------------

    def _init_schema(self, conn: Conn) -> None:
        """Create the table if missing, else check it is a doeff table this version reads."""
        with conn.transaction():
            # Serialises creation across processes: CREATE TABLE IF NOT EXISTS alone still
            # fails with a unique violation when two sessions race.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INIT_LOCK,))
            given = sql.Identifier(*filter(None, (self._schema, self._name))).as_string(conn)
            row = conn.execute(
                "SELECT coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)), %s, current_schema()),"
                " to_regclass(%s) IS NOT NULL",
                (given, self._schema, given),
            ).fetchone()
            assert row is not None  # a SELECT without FROM returns one row
            schema, exists = row
            if schema is None:
                raise StorageError(
                    f"{self!r}: no schema to create {self._name!r} in (search_path names no "
                    f"existing schema); pass table='schema.{self._name}' or fix search_path"
                )
            kv = sql.Identifier(schema, self._name)
            meta = sql.Identifier(schema, META_TABLE)
            self._compose(conn, kv)
            meta_exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (meta.as_string(conn),)
            ).fetchone() == (True,)
            if exists:
                self._check_existing(conn, meta, meta_exists)
                return
            if self.readonly:
                raise StorageUnavailableError(
                    f"{self!r}: no store: the database has no table {self.table!r}; "
                    f"readonly=True opens an existing store and never creates one"
                )
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY,"
                " schema_version integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
            ).format(meta))
            conn.execute(sql.SQL(
                "CREATE TABLE {} (key_hash bytea PRIMARY KEY, key bytea NOT NULL,"
                " value bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(kv))
            try:
                # A leftover row for a dropped table is overwritten: the table is new.
                conn.execute(sql.SQL(
                    "INSERT INTO {} (table_name, schema_version) VALUES (%s, %s)"
                    " ON CONFLICT (table_name) DO UPDATE"
                    " SET schema_version = excluded.schema_version, created_at = now()"
                ).format(meta), (self._name, SCHEMA_VERSION))
            except (pg_errors.UndefinedColumn, pg_errors.InvalidColumnReference,
                    pg_errors.DatatypeMismatch) as exc:
                raise self._foreign_meta(schema, exc) from exc

    def _check_existing(self, conn: Conn, meta: sql.Identifier, meta_exists: bool) -> None:
        """Refuse an existing table that doeff did not create or that a newer doeff wrote."""
        version: object = None
        if meta_exists:
            try:
                row = conn.execute(
                    sql.SQL("SELECT schema_version FROM {} WHERE table_name = %s").format(meta),
                    (self._name,),
                ).fetchone()
            except (pg_errors.UndefinedColumn, pg_errors.DatatypeMismatch) as exc:
                raise self._foreign_meta(meta.as_string(conn), exc) from exc
            version = None if row is None else row[0]
        if not isinstance(version, int):
            raise foreign_store(self, f"table {self.table!r}",
                                f"a table with no entry in {META_TABLE}",
                                "Pass another table= name")
        if version > SCHEMA_VERSION:
            raise newer_store(self, f"table {self.table!r}", version, SCHEMA_VERSION)

    def _foreign_meta(self, where: str, exc: BaseException) -> IncompatibleStoreError:
        return IncompatibleStoreError(
            f"{self!r}: a table named {META_TABLE} in {where} exists but is not doeff's ({exc}); "
            f"nothing was changed. Use a schema without it: table='schema.{self._name}'"
        )

    def _compose(self, conn: Conn, kv: sql.Identifier) -> None:
        """Render every statement once, as bytes (psycopg accepts those without re-quoting)."""

        def q(text: str) -> bytes:
            return sql.SQL(text).format(kv=kv).as_bytes(conn)

        self._q_get = q("SELECT value FROM {kv} WHERE key_hash = %b")
        self._q_exists = q("SELECT 1 FROM {kv} WHERE key_hash = %b")
        self._q_put = q(
            "INSERT INTO {kv} (key_hash, key, value) VALUES (%b, %b, %b) ON CONFLICT (key_hash)"
            " DO UPDATE SET value = excluded.value, updated_at = now()"
        )
        self._q_put_new = q(
            "INSERT INTO {kv} (key_hash, key, value) VALUES (%b, %b, %b)"
            " ON CONFLICT (key_hash) DO NOTHING"
        )
        self._q_delete = q("DELETE FROM {kv} WHERE key_hash = %b")
        self._q_swap = q("UPDATE {kv} SET value = %b, updated_at = now()"
                         " WHERE key_hash = %b AND value = %b")
        self._q_delete_if = q("DELETE FROM {kv} WHERE key_hash = %b AND value = %b")
        self._q_delete_many = q("DELETE FROM {kv} WHERE key_hash = ANY(%b)")
        self._q_keys = q("SELECT key FROM {kv}")
        self._q_items = q("SELECT key, value FROM {kv}")
        # bytea compares byte by byte, and UTF-8 byte order is code point order: str order.
        self._q_records = q(
            "SELECT key, value, extract(epoch FROM updated_at)::float8 FROM {kv}"
            " WHERE substring(key FROM 1 FOR %b::integer) = %b ORDER BY key"
        )
        self._q_clear = q("DELETE FROM {kv}")
        self._q_check = q("SELECT key_hash, key FROM {kv}")
        self._q_len = q("SELECT count(*) FROM {kv}")

    # -- connections -------------------------------------------------------------------------

    def _configure(self, conn: Conn) -> None:
        """Make a read-only store's sessions read-only on the server too."""
        if self.readonly:
            with conn.transaction():
                conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

    def _open_pool(self, op: str) -> ConnectionPool[Conn]:
        with self._lock:
            if self._closed:  # close() ran after the caller's check: open nothing new
                raise closed_error(self, op)
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size,
                    kwargs={**self.connect_kwargs, "autocommit": True}, timeout=self.timeout,
                    open=True, name=f"doeff-{self.table}", configure=self._configure,
                )
            return self._pool

    def _after_fork_in_child(self) -> None:
        if self._pool is not None:
            _ABANDONED.append(self._pool)
        self._pool = None  # the child opens its own on first use
        self._lock = threading.Lock()  # another thread may have held the parent's at fork time

    def _run(self, op: str, key: str | None, fn: Callable[[Conn], T], *,
             retry: Callable[[], bool] | None = None) -> T:
        """`fn(conn)` on a pooled connection; on a lost connection, retry if `retry()` says so.

        `retry` is None for operations that are always safe to repeat.
        """
        attempt = 0
        while True:
            if self._closed:
                raise closed_error(self, op)
            pool = self._pool or self._open_pool(op)
            conn: Conn | None = None
            try:
                conn = pool.getconn()
                return fn(conn)
            except PoolTimeout as exc:
                # After a lost attempt a write may have committed before the outage.
                applied = ("nothing was applied" if attempt == 0
                           else "an earlier, lost attempt may have been applied")
                raise failure(StorageUnavailableError, self, op, key, exc,
                              f"no connection to the server within {self.timeout:g} s; check "
                              f"that it is up and reachable ({applied})") from exc
            except PoolClosed as exc:
                raise closed_error(self, op) from exc
            except psycopg.Error as exc:
                if not _lost(exc, conn) or attempt >= self.retries:
                    raise self._wrap(exc, op, key) from exc
                error = exc
            finally:
                if conn is not None:
                    pool.putconn(conn)  # a broken connection is discarded and replaced
            attempt += 1
            time.sleep(0.05 * 2 ** (attempt - 1))
            with contextlib.suppress(psycopg.Error):  # e.g. closed meanwhile: checked above
                pool.check()  # drop the other idle connections the same outage killed
            if retry is not None and not retry():
                raise failure(StorageUnavailableError, self, op, key, error,
                              "the connection was lost and whether the write was applied "
                              "cannot be told; read the key back to see") from error

    def _wrap(self, exc: psycopg.Error, op: str, key: str | None) -> StorageError:
        if self._closed and isinstance(exc, PoolClosed):
            return closed_error(self, op)
        if isinstance(exc, pg_errors.DiskFull | pg_errors.OutOfMemory):
            return failure(StorageFullError, self, op, key, exc,
                           "free space on the database server; the write was not applied")
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return failure(ReadOnlyStoreError, self, op, key, exc,
                           "the server only allows reads here (a standby, or a read-only "
                           "session): open the store with readonly=True to read it; nothing "
                           "was written")
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return failure(StorageError, self, op, key, exc,
                           f"grant the DSN's role access to {self.table!r} and {META_TABLE}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return failure(StorageUnavailableError, self, op, key, exc,
                           "the server could not be reached or the connection was lost; "
                           "check the server and retry")
        return failure(StorageError, self, op, key, exc, "the operation was not applied")

    # -- the KVStore verbs -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or None when missing."""
        h = hashlib.sha256(key_bytes(key, self)).digest()
        row = self._run("get", key, lambda c: c.execute(self._q_get, (h,), binary=True).fetchone())
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key` in one committed upsert; the old value stays on error."""
        kb = key_bytes(key, self)
        value = check_value(value, self, key)
        if self.readonly:
            raise read_only(self, "put")
        params = (hashlib.sha256(kb).digest(), kb, value)
        # Retried even when the lost attempt may have committed: the same upsert again
        # leaves the same row, so the caller cannot tell one application from two.
        self._run("put", key, lambda c: c.execute(self._q_put, params))

    def put_if_absent(self, key: str, value: bytes) -> bool:
        """Store `value` only if `key` is missing; True if this call stored it (PostgreSQL only).

        Atomic across every worker: of several concurrent calls on one key exactly one gets
        True. Give each caller a distinct value (e.g. its worker id) so that, after a lost
        connection, the call can tell from the stored value whether its own insert committed.
        """
        kb = key_bytes(key, self)
        value = check_value(value, self, key)
        if self.readonly:
            raise read_only(self, "put_if_absent")
        h = hashlib.sha256(kb).digest()
        params = (h, kb, value)
        outcome: list[bool] = []

        def resolve() -> bool:
            # After a lost attempt the retried insert finds the row if the lost one committed,
            # so its rowcount alone would say False: the stored value says whose insert won.
            stored = self.get(key)
            outcome.append(stored is not None and stored == value)
            return True  # inserting again when the key is present changes nothing

        def insert(c: Conn) -> bool:
            return c.execute(self._q_put_new, params).rowcount == 1

        result = self._run("put_if_absent", key, insert, retry=resolve)
        return result or (bool(outcome) and outcome[-1])

    def compare_and_swap(self, key: str, expected: bytes, value: bytes) -> bool:
        """Replace the value under `key` by `value` only if it is `expected` now; True if
        replaced. Atomic across every worker. As with `put_if_absent`, give each writer distinct
        values: after a lost connection the stored value tells whether this call's swap won."""
        h = hashlib.sha256(key_bytes(key, self)).digest()
        value = check_value(value, self, key)
        params = (value, h, check_value(expected, self, key))
        if self.readonly:
            raise read_only(self, "compare_and_swap")
        outcome: list[bool] = []

        def resolve() -> bool:
            outcome.append(self.get(key) == value)
            return True  # swapping again when it committed changes nothing (expected is gone)

        swapped = self._run("compare_and_swap", key,
                            lambda c: c.execute(self._q_swap, params).rowcount == 1,
                            retry=resolve)
        return swapped or (bool(outcome) and outcome[-1])

    def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if its value is `expected` now; True if removed."""
        h = hashlib.sha256(key_bytes(key, self)).digest()
        params = (h, check_value(expected, self, key))
        if self.readonly:
            raise read_only(self, "compare_and_delete")
        # Retried only while the value is still there: once it is gone there is no telling
        # whether this call removed it.
        deleted: bool = self._run(
            "compare_and_delete", key,
            lambda c: c.execute(self._q_delete_if, params).rowcount == 1,
            retry=lambda: self.get(key) == params[1])
        return deleted

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key given in one statement (all, or none on error); the number that
        existed. Not retried after a lost connection: the count could not be told."""
        hashes = [hashlib.sha256(key_bytes(k, self)).digest() for k in keys]
        if self.readonly:
            raise read_only(self, "delete_many")
        if not hashes:
            return 0
        count: int = self._run("delete_many", None,
                               lambda c: c.execute(self._q_delete_many, (hashes,)).rowcount,
                               retry=lambda: False)
        return count

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        h = hashlib.sha256(key_bytes(key, self)).digest()
        if self.readonly:
            raise read_only(self, "delete")
        # Only retried while the key is still there, i.e. the lost attempt did not commit: once
        # it is gone there is no telling whether this call removed it, so that is an error.
        return self._run("delete", key, lambda c: c.execute(self._q_delete, (h,)).rowcount > 0,
                         retry=lambda: self.exists(key))

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        h = hashlib.sha256(key_bytes(key, self)).digest()
        return self._run("exists", key,
                         lambda c: c.execute(self._q_exists, (h,)).fetchone() is not None)

    def _all(self, query: bytes, op: str) -> list[Any]:
        return self._run(op, None, lambda c: c.execute(query, binary=True).fetchall())

    def _text(self, raw: bytes, op: str) -> str:
        """A stored key as str; CorruptStoreError for bytes that are not UTF-8."""
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise failure(CorruptStoreError, self, op, None,
                          f"the row with key {bytes(raw)!r:.80} cannot be read: it is not UTF-8",
                          "a row was written by something other than doeff; run `doeff cache "
                          "check` on the store and delete that row with SQL") from exc

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        return [self._text(k, "keys") for (k,) in self._all(self._q_keys, "keys")]

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        return [(self._text(k, "items"), bytes(v)) for k, v in self._all(self._q_items, "items")]

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every pair in one transaction: all of them, or none if anything fails.

        Retried after a lost connection like `put`: the same upserts again leave the same rows.
        """
        rows = [(hashlib.sha256(k.encode()).digest(), k.encode(), v)
                for k, v in check_items(items, self)]
        if self.readonly:
            raise read_only(self, "put_many")

        def write(c: Conn) -> None:
            with c.transaction():
                c.cursor().executemany(self._q_put, rows)

        self._run("put_many", None, write)

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, updated_at as a Unix time) for keys starting with `prefix`, sorted."""
        head = check_prefix(prefix, self)
        rows = self._run("records", None, lambda c: c.execute(
            self._q_records, (len(head), head), binary=True).fetchall())
        return [(self._text(k, "records"), bytes(v), t) for k, v, t in rows]

    def clear(self) -> None:
        """Delete every entry (safe to repeat, so retried after a lost connection)."""
        if self.readonly:
            raise read_only(self, "clear")
        self._run("clear", None, lambda c: c.execute(self._q_clear))

    def check(self) -> list[str]:
        """Every row's key_hash is the SHA-256 of its key, and every key is UTF-8."""
        problems = []
        for key_hash, raw in self._all(self._q_check, "check"):
            try:
                key: object = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"the key {bytes(raw)!r:.80} is not UTF-8")
                continue
            if hashlib.sha256(bytes(raw)).digest() != bytes(key_hash):
                problems.append(f"the row of key {key!r:.80} has a key_hash that is not the "
                                f"SHA-256 of its key: get() cannot find it")
        return problems

    def __len__(self) -> int:
        count: int = self._all(self._q_len, "len")[0][0]
        return count

    def namespace(self, name: str) -> KVStore:
        """A keyspace of its own: another table beside this one (`TABLE__NAME`, registered in
        doeff_meta), created on first use and reached through this store's pool; a read-only
        store sees it once a writer has created it."""
        space = PostgresNamespace(self, check_namespace(name, self))
        if space.found():
            return space
        return PendingNamespace(self, name, lambda: space if space.found() else None)

    def close(self) -> None:
        """Close the pool; later operations raise StoreClosedError. Idempotent."""
        self._closed = True
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __repr__(self) -> str:
        try:
            parts = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            where = "?"
        else:  # never the password
            where = " ".join(f"{k}={parts[k]}" for k in ("host", "port", "dbname") if k in parts)
        return f"PostgresKV({where!r}, table={self.table!r})"


class PostgresNamespace(PostgresKV):
    """A namespace of a `PostgresKV`: a table of its own in the same schema, with the same
    layout, whose statements run on the store's pool (its retries and errors included)."""

    def __init__(self, store: PostgresKV, name: str) -> None:  # shares the store's pool
        suffix = f"__{name}"
        table = store._name[:63 - len(suffix)] + suffix  # PostgreSQL's 63-byte identifiers
        self._store = store
        self.dsn = store.dsn
        self.connect_kwargs = store.connect_kwargs
        self.readonly = store.readonly
        self.retries = store.retries
        self.timeout = store.timeout
        self._schema, self._name = store._schema, table
        self.table = table if store._schema is None else f"{store._schema}.{table}"
        self._closed = False
        self._ready = False

    def found(self) -> bool:
        """Create the table (or, read-only, find it) and compile the statements; False when a
        read-only store has none yet."""
        if not self._ready:
            if self.readonly and not self._run("namespace", None, self._exists):
                return False
            self._run("namespace", None, self._init_schema)
            self._ready = True
        return True

    def _exists(self, conn: Conn) -> bool:
        name = sql.Identifier(*filter(None, (self._schema, self._name))).as_string(conn)
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return row == (True,)

    def _run(self, op: str, key: str | None, fn: Callable[[Conn], T], *,
             retry: Callable[[], bool] | None = None) -> T:
        if self._closed:
            raise closed_error(self, op)
        return self._store._run(op, key, fn, retry=retry)

    def namespace(self, name: str) -> KVStore:
        """Refused: namespaces do not nest."""
        raise nested_namespace(self)

    def close(self) -> None:
        """Later operations raise StoreClosedError (the store itself stays open)."""
        self._closed = True


__all__ = ["META_TABLE", "SCHEMA_VERSION", "PostgresKV"]
