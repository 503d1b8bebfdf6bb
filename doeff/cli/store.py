"""STORE arguments: `sqlite:///path`, `lmdb:///path`, `postgresql://...` or a bare SQLite path.

Every command opens an existing store only. The backends create what is missing (a new SQLite
file, a new LMDB directory, a new PostgreSQL table), which is right for a workflow and wrong for
an operator who mistyped a path, so existence is checked here before a backend is constructed.
Commands that only read open the store with `readonly=True`: they work on read-only media and
cannot change a byte of it. `create_store` makes the one new store `migrate --into` writes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from doeff.cli.errors import CLIError, one_line
from doeff.errors import IncompatibleStoreError, InvalidOptionError, StorageError, install_hint
from doeff.storage.base import KVStore

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
FORMS = "sqlite:///PATH, lmdb:///PATH, postgresql://...[?table=NAME] or a bare path (SQLite)"
_SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_TABLE = "doeff_kv"  # PostgresKV's default


@dataclass(frozen=True)
class StoreURL:
    """A parsed STORE argument: which backend, and its path or DSN."""

    kind: str  # "sqlite", "lmdb" or "postgresql"
    target: str  # a filesystem path, or the DSN for postgresql
    text: str  # what the user typed, for messages
    table: str = DEFAULT_TABLE  # postgresql only: the table holding the store


def parse_store(text: str) -> StoreURL:
    """The backend and path (or DSN) named by `text`; CLIError for an unknown scheme."""
    m = _SCHEME.match(text)
    if m is None:
        if not text:
            raise CLIError(f"empty STORE; expected {FORMS}")
        return StoreURL("sqlite", text, text)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme in ("postgresql", "postgres"):
        return _postgres_url(text)
    if scheme in ("sqlite", "lmdb"):
        # scheme:///abs/path — the empty authority leaves the absolute path behind "//".
        if not rest.startswith("/"):
            raise CLIError(f"{text}: expected {scheme}:///ABSOLUTE/PATH (three slashes)")
        return StoreURL(scheme, rest, text)
    raise CLIError(f"{text}: unknown store scheme {scheme!r}; expected {FORMS}")


def _postgres_url(text: str) -> StoreURL:
    """A postgresql:// URL; its `table` query parameter (ours, not libpq's) picks the table."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (parsed lazily: a bad port raises here)
    except ValueError as exc:
        raise CLIError(f"{store_label(text)}: not a valid URL ({exc}); expected "
                       "postgresql://USER@HOST:PORT/DATABASE[?table=NAME]") from exc
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [v for k, v in query if k == "table"]
    if len(tables) > 1 or tables == [""]:
        raise CLIError(f"{store_label(text)}: give at most one non-empty table=NAME")
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "table"])))
    return StoreURL("postgresql", dsn, store_label(text), tables[0] if tables else DEFAULT_TABLE)


def store_label(text: str) -> str:
    """STORE as shown in messages: a postgresql:// password is replaced by `***`."""
    try:
        parts = urlsplit(text)
        if parts.scheme.lower() in ("postgresql", "postgres") and parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:  # not a parseable URL: still hide what stands where a password would
        return _PASSWORD.sub(r"\1:***@", text)
    return text


_PASSWORD = re.compile(r"^((?i:postgres(?:ql)?)://[^:/@]*):[^@/]*@")


def _check_sqlite(url: StoreURL) -> None:
    path = url.target
    if not os.path.exists(path):
        raise CLIError(f"{url.text}: no such store (no file at {path})")
    if not os.path.isfile(path):
        raise CLIError(f"{url.text}: not a file, while a SQLite store is one file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise CLIError(f"{url.text}: cannot read it: {exc.strerror}") from exc
    # SQLite would adopt an empty file as a new database; a foreign file must stay untouched.
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "not a SQLite database"
        raise CLIError(f"{url.text}: {what}, so not a doeff store")


def _check_lmdb(url: StoreURL) -> None:
    path = url.target
    if not os.path.exists(path):
        raise CLIError(f"{url.text}: no such store (no directory at {path})")
    if not os.path.isdir(path):
        raise CLIError(f"{url.text}: not a directory, while an LMDB store is one")
    data = os.path.join(path, "data.mdb")
    if not os.path.isfile(data):
        raise CLIError(f"{url.text}: no data.mdb in that directory, so not an LMDB store")
    if os.path.getsize(data) == 0:  # opening it would make it a new store, which reads must not
        raise CLIError(f"{url.text}: data.mdb is empty, so not a doeff store")


def _open_postgres(url: StoreURL, readonly: bool) -> KVStore:
    psycopg = _psycopg(url)
    from doeff.storage.backends.postgres import PostgresKV

    # PostgresKV creates its table when missing; look first so that a typo creates nothing.
    if not _table_exists(psycopg, url):
        raise CLIError(f"{url.text}: no such store (the database has no table {url.table})")
    try:
        return PostgresKV(url.target, table=url.table, readonly=readonly)
    except InvalidOptionError as exc:  # a table name PostgresKV refuses
        raise CLIError(f"{url.text}: {exc}") from exc


def _psycopg(url: StoreURL) -> Any:
    try:
        import psycopg

        import doeff.storage.backends.postgres  # noqa: F401 (psycopg_pool, checked here)
    except ImportError as exc:
        raise CLIError(
            f"{url.text}: postgresql:// stores need psycopg ({exc}); "
            f"install with {install_hint('postgres')}"
        ) from exc
    return psycopg


def _table_exists(psycopg: Any, url: StoreURL) -> bool:
    try:
        conn = psycopg.connect(url.target, connect_timeout=10)
    except psycopg.Error as exc:
        raise CLIError(f"{url.text}: cannot connect: {one_line(str(exc))}") from exc
    try:
        with conn:
            found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (url.table,)).fetchone()
    except psycopg.Error as exc:  # e.g. a table name that is not an identifier
        raise CLIError(f"{url.text}: table {url.table!r}: {one_line(str(exc))}") from exc
    return bool(found and found[0])


def open_store(text: str, *, readonly: bool = False) -> KVStore:
    """The existing store named by `text`; CLIError (exit 2) if it is missing or not doeff's.

    `readonly=True` for commands that only read: the store is opened read-only, so the command
    works on read-only media and cannot change it.
    """
    url = parse_store(text)
    try:
        if url.kind == "postgresql":
            return _open_postgres(url, readonly)
        if url.kind == "lmdb":
            from doeff.storage.backends.lmdb import LMDBKV

            _check_lmdb(url)
            return LMDBKV(url.target, readonly=readonly)
        from doeff.storage.backends.sqlite import SQLiteKV

        _check_sqlite(url)
        return SQLiteKV(url.target, readonly=readonly)
    except IncompatibleStoreError as exc:
        raise CLIError(f"{url.text}: not a doeff store: {one_line(str(exc))}") from exc
    except StorageError as exc:
        raise CLIError(f"{url.text}: cannot open: {one_line(str(exc))}") from exc


def create_store(text: str) -> KVStore:
    """A new, empty store at `text`; CLIError (exit 2) if something is there already."""
    url = parse_store(text)
    exists = (os.path.lexists(url.target) if url.kind == "sqlite" else
              os.path.exists(os.path.join(url.target, "data.mdb")) if url.kind == "lmdb" else
              _table_exists(_psycopg(url), url))
    if exists:
        raise CLIError(f"{url.text}: already exists; give a new store to write into")
    try:
        if url.kind == "postgresql":
            from doeff.storage.backends.postgres import PostgresKV

            return PostgresKV(url.target, table=url.table)
        if url.kind == "lmdb":
            from doeff.storage.backends.lmdb import LMDBKV

            return LMDBKV(url.target)
        from doeff.storage.backends.sqlite import SQLiteKV

        return SQLiteKV(url.target)
    except (InvalidOptionError, StorageError) as exc:
        raise CLIError(f"{url.text}: cannot create: {one_line(str(exc))}") from exc
