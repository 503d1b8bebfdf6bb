"""`LMDBKV`: a KVStore in an LMDB directory — the fastest reads, safe across processes and fork.

Durability (LMDB's own flags; `writemap` is never used, so a wild write cannot reach the file):
- `"normal"`: `sync=True, metasync=False` — data pages are flushed at every commit, the meta
  page lazily. A put that returned survives the process being killed; a power loss may undo the
  last commits but keeps the database intact.
- `"full"`: `sync=True, metasync=True` — every commit is on disk before the put returns.

Record layout in LMDB's single unnamed database (UTF-8 never contains the bytes 0xFE or 0xFF,
so these prefixes cannot collide with a real key):
- a key of 1..max_key_size UTF-8 bytes is stored as itself, its value as is;
- any other key (empty, or longer than LMDB allows) is stored under 0xFF + sha256(key), its value
  as `len(key) (4 bytes) + key + value`, so keys() and items() give the original key back;
- 0xFE + b"doeff-schema" holds the schema version (and marks the directory as a doeff store);
- 0xFE + b"doeff-ns:" + NAME is LMDB's own record of the named database that holds the
  namespace NAME (`namespace()`), whose records follow the same layout.

Hostile conditions: every transaction, the opening ones included, adopts a map another process
grew and retries; the lock file (which LMDB maps and writes through memory) is allocated on disk
before LMDB touches it, so a full disk is a StorageFullError, not a SIGBUS; only a new directory
(no data.mdb, or an empty one) or `create=True` makes a store, under a lock other doeff processes
respect, so two creating at once never take each other's half-made environment for a foreign one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import lmdb as _lmdb

from doeff.errors import (
    CorruptStoreError,
    IncompatibleStoreError,
    ReadOnlyStoreError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)
from doeff.storage.backends.common import (
    KVBase,
    PendingNamespace,
    check_durability,
    check_items,
    check_namespace,
    check_value,
    closed_error,
    disk_full,
    failure,
    foreign_store,
    key_bytes,
    nested_namespace,
    newer_store,
    read_only,
)
from doeff.storage.backends.lmdb_env import REGISTRY, Env, creation_lock, prepare_lock_file
from doeff.storage.base import KVStore

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
DEFAULT_MAP_SIZE: Final = 1 << 30  # grows by doubling when full; only address space until used
_META: Final = b"\xfedoeff-schema"
# The main database's record of a namespace's named database: this prefix + its name.
SPACE_PREFIX: Final = b"\xfedoeff-ns:"
_HASHED: Final = 0xFF
_LEN = struct.Struct(">I")
_READ_ONLY_ERRNOS: Final = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_READ_ONLY_MEDIA = "it is on read-only media or in a directory this process cannot write"


class LMDBKV(KVBase):
    """A KVStore in an LMDB directory; the map grows by itself, any key length works.

    `readonly=True` opens an existing store for reading only (also on read-only media): every
    write raises ReadOnlyStoreError. A missing directory, or one without a data.mdb (or with an
    empty one), becomes a new store; `create=True` also turns an existing LMDB environment that
    holds no records into one.

    >>> with LMDBKV("store") as kv:
    ...     kv.put("step:1", b"done"); kv.get("step:1")
    b'done'
    """

    _space: bytes | None = None  # the named database of a namespace; None: the main one

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = DEFAULT_MAP_SIZE,
                 durability: str = "normal", readonly: bool = False,
                 create: bool = False) -> None:
        self.path = os.fspath(path)
        self.durability = check_durability(durability, f"LMDBKV({self.path!r})")
        self.readonly = readonly
        self._closed = False
        real = os.path.realpath(self.path)
        with REGISTRY.lock:
            shared = REGISTRY.envs.get(real)
            if shared is None:
                shared = self._open_new(map_size, create)
                REGISTRY.envs[real] = shared
            elif shared.unusable is not None:
                raise shared.unusable(self, "open")
            elif shared.readonly and not readonly:
                self._upgrade(shared)
            shared.refs += 1
        self._real = real
        self._sh = shared

    # -- opening -----------------------------------------------------------------------------

    def _open_new(self, map_size: int, create: bool) -> Env:
        """Open the environment of a directory no handle of this process has open yet."""
        try:
            if self.readonly:
                return self._open_checked(map_size, create=False)
            self._make_directory()
            with creation_lock(self.path):
                return self._open_checked(map_size, create)
        except OSError as exc:
            raise self._os_failure(exc, "open") from exc
        except _lmdb.Error as exc:
            raise self._wrap(exc, "open", None) from exc

    def _make_directory(self) -> None:
        try:
            os.mkdir(self.path)
        except FileExistsError:
            if not os.path.isdir(self.path):
                raise foreign_store(self, repr(self.path), "a file",
                                    "LMDBKV takes a directory; choose another path") from None

    def _open_checked(self, map_size: int, create: bool) -> Env:
        data = os.path.join(self.path, "data.mdb")
        new = not os.path.exists(data) or os.path.getsize(data) == 0
        if self.readonly and new:
            raise StorageUnavailableError(
                f"{self!r}: no store at {self.path!r} (no data.mdb, or an empty one); "
                f"readonly=True opens an existing store and never creates one"
            )
        shared = self._env(map_size)
        try:
            self._check_schema(shared, may_mark=new or create)
        except BaseException:
            shared.env.close()
            raise
        return shared

    def _env(self, map_size: int) -> Env:
        """An Env for this directory; read-only media without a lock file are read unlocked."""
        lock = True
        if self.readonly:
            try:
                prepare_lock_file(self.path)
            except OSError as exc:
                if exc.errno not in _READ_ONLY_ERRNOS:
                    raise  # ENOSPC included: unlocked reads could race a writer
                # Nothing can write to read-only media, so no writer races these reads; and
                # where no lock file can be made, no process is using LMDB's locks either.
                lock = False
        return Env(self.path, map_size, self.durability, readonly=self.readonly, lock=lock)

    def _check_schema(self, shared: Env, *, may_mark: bool) -> None:
        """Raise IncompatibleStoreError for a foreign or newer store; mark a new one as ours."""
        while True:
            try:
                return self._check_schema_once(shared, may_mark)
            except _lmdb.MapResizedError:
                shared.resize(0)  # not shared with any thread yet

    def _check_schema_once(self, shared: Env, may_mark: bool) -> None:
        with shared.env.begin() as txn:
            marker = txn.get(_META)
            entries = txn.stat()["entries"]
        if marker is None and entries == 0 and may_mark and not self.readonly:
            with shared.env.begin(write=True) as txn:
                if not txn.put(_META, str(SCHEMA_VERSION).encode(), overwrite=False):
                    marker = txn.get(_META)  # another process created it meanwhile
            if marker is None:
                return
        if marker is None:
            found = (f"an LMDB environment ({entries} records, no doeff schema marker)"
                     if entries else "an empty LMDB environment (no doeff schema marker)")
            advice = ("Pass create=True to make it a doeff store" if not entries else
                      "Point LMDBKV at a new directory or at one doeff created")
            raise foreign_store(self, repr(self.path), found, advice)
        version = _parse_version(marker)
        if version is None:
            raise IncompatibleStoreError(
                f"{self!r}: the doeff schema marker of {self.path!r} is {marker!r:.40}, not a "
                f"version number: the store is damaged or was not written by doeff; it was "
                f"left untouched. Restore it from a backup or point LMDBKV elsewhere"
            )
        if version > SCHEMA_VERSION:
            raise newer_store(self, repr(self.path), version, SCHEMA_VERSION)

    def _upgrade(self, shared: Env) -> None:
        """Reopen an environment that read-only handles opened, for this read-write handle."""
        with shared.write_lock:
            try:
                shared.reopen(shared.map_size, readonly=False)
            except (OSError, _lmdb.Error) as exc:
                shared.reopen(shared.map_size, readonly=True)  # the read-only handles go on
                shared.unusable = None
                if isinstance(exc, OSError):
                    raise self._os_failure(exc, "open") from exc
                raise self._wrap(exc, "open", None) from exc

    def _os_failure(self, exc: OSError, op: str) -> StorageError:
        if exc.errno == errno.ENOSPC:
            return failure(StorageFullError, self, op, None, exc,
                           "free disk space; nothing was written")
        if exc.errno in _READ_ONLY_ERRNOS:
            hint = (f"{_READ_ONLY_MEDIA}: open it with LMDBKV({self.path!r}, readonly=True) to "
                    f"read it" if os.path.exists(os.path.join(self.path, "data.mdb")) else
                    "the directory is read-only, and a new store needs a writable one")
            return failure(ReadOnlyStoreError, self, op, None, exc, hint)
        return failure(StorageUnavailableError, self, op, None, exc,
                       "check that the parent directory exists")

    # -- plumbing ----------------------------------------------------------------------------

    def _wrap(self, exc: _lmdb.Error, op: str, key: str | None) -> StorageError:
        if (isinstance(exc, _lmdb.DiskError) or "No space left" in str(exc)
                or (op in _WRITES and disk_full(self.path))):
            return failure(StorageFullError, self, op, key, exc,
                           "free disk space; the write was not applied")
        if isinstance(exc, _lmdb.ReadonlyError) or "Permission denied" in str(exc) \
                or "Read-only file system" in str(exc):
            return failure(ReadOnlyStoreError, self, op, key, exc,
                           f"{_READ_ONLY_MEDIA}: open it with readonly=True to read it")
        if isinstance(exc, _lmdb.InvalidError | _lmdb.VersionMismatchError):
            return failure(IncompatibleStoreError, self, op, key, exc,
                           "the directory does not hold an LMDB environment this doeff reads")
        if isinstance(exc, _lmdb.CorruptedError | _lmdb.PageNotFoundError):
            return failure(CorruptStoreError, self, op, key, exc, _DAMAGED)
        return failure(StorageError, self, op, key, exc, "nothing was written")

    def _live(self, op: str) -> Env:
        if self._closed:
            raise closed_error(self, op)
        return self._sh

    def _record_key(self, kb: bytes) -> tuple[bytes, bool]:
        """The LMDB key for UTF-8 key bytes `kb`, and whether it is a hashed (long) one."""
        if 0 < len(kb) <= self._sh.limit:
            return kb, False
        return bytes((_HASHED,)) + hashlib.sha256(kb).digest(), True

    def _read_raw(self, sh: Env, record: bytes, op: str, key: str) -> bytes | None:
        readers = sh.readers
        while True:
            readers.append(None)
            try:
                if not sh.paused:
                    txn = sh.env.begin() if self._space is None else self._begin_space(sh)
                    try:
                        return txn.get(record)
                    finally:
                        txn.abort()
            except _lmdb.MapResizedError:
                pass  # another process grew the map: adopt its size below, then read again
            except _lmdb.Error as exc:
                raise self._wrap(exc, op, key) from exc
            finally:
                readers.pop()
            self._before_reading_again(sh, op)
            readers = sh.readers  # a forked child has a new list

    def _before_reading_again(self, sh: Env, op: str) -> None:
        """After a read that could not run: fail if closed, else wait out or adopt a resize."""
        if sh.unusable is not None:
            raise sh.unusable(self, op)
        if sh.closed:
            raise closed_error(self, op)
        if sh.paused:
            sh.wait_unpaused()
        else:
            with sh.write_lock:
                if sh.closed:  # close() ran meanwhile: reopening would resurrect it
                    raise closed_error(self, op)
                try:
                    sh.resize(0)
                except OSError as exc:
                    raise self._os_failure(exc, op) from exc
                except _lmdb.Error as exc:
                    raise self._wrap(exc, op, None) from exc

    @contextmanager
    def _reading(self, op: str) -> Iterator[_lmdb.Transaction]:
        """A read transaction for the slower whole-store reads (same protocol as _read_raw)."""
        sh = self._live(op)
        while True:
            readers = sh.readers
            readers.append(None)
            try:
                if not sh.paused:
                    with (sh.env.begin() if self._space is None
                          else self._begin_space(sh)) as txn:
                        yield txn
                    return
            except _lmdb.MapResizedError:
                pass
            except _lmdb.Error as exc:
                raise self._wrap(exc, op, None) from exc
            finally:
                readers.pop()
            self._before_reading_again(sh, op)

    def _write(self, op: str, key: str | None, nbytes: int,
               body: Callable[[_lmdb.Transaction], T]) -> T:
        sh = self._live(op)
        if self.readonly:
            raise read_only(self, op)
        with sh.write_lock:  # LMDB allows one writer anyway; the lock also orders resizes
            # Checked again under the lock: close() (or a fork) may have run since _live.
            if sh.unusable is not None:
                raise sh.unusable(self, op)
            if sh.closed or self._closed:
                raise closed_error(self, op)
            try:
                sh.make_room(nbytes)
                while True:
                    try:
                        with (sh.env.begin(write=True) if self._space is None
                              else self._begin_space(sh, write=True)) as txn:
                            return body(txn)
                    except _lmdb.MapFullError:
                        sh.resize(sh.map_size * 2)  # the aborted txn wrote nothing; grow, retry
                    except _lmdb.MapResizedError:
                        sh.resize(0)
            except _lmdb.Error as exc:
                raise self._wrap(exc, op, key) from exc
            except OSError as exc:  # reopening the grown map
                raise self._os_failure(exc, op) from exc

    # -- the KVStore verbs -------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the bytes under `key`, or None when missing."""
        kb = key_bytes(key, self)
        sh = self._live("get")
        if 0 < len(kb) <= sh.limit:
            return self._read_raw(sh, kb, "get", key)
        raw = self._read_raw(sh, self._record_key(kb)[0], "get", key)
        return None if raw is None else _unpack_long(raw, kb)

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        return self.get(key) is not None

    def _pair(self, key: str, value: bytes) -> tuple[bytes, bytes]:
        """The LMDB (record key, record value) that stores checked `value` under `key`."""
        kb = key_bytes(key, self)
        record, hashed = self._record_key(kb)
        if hashed:  # the full key rides along, so items() can give it back
            value = _LEN.pack(len(kb)) + kb + value
        return record, value

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key` in one committed transaction; the old value stays on error."""
        record, raw = self._pair(key, check_value(value, self, key))
        self._write("put", key, len(record) + len(raw), lambda txn: txn.put(record, raw))

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every pair in one write transaction: all of them, or none if anything fails."""
        batch = [self._pair(k, v) for k, v in check_items(items, self)]

        def body(txn: _lmdb.Transaction) -> None:
            for record, raw in batch:
                txn.put(record, raw)

        self._write("put_many", None, sum(len(r) + len(v) for r, v in batch), body)

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed."""
        record, hashed = self._record_key(key_bytes(key, self))
        if self.readonly:
            raise read_only(self, "delete")
        if hashed and self.get(key) is None:
            return False  # a different long key with the same hash: not ours to delete
        deleted: bool = self._write("delete", key, 0, lambda txn: txn.delete(record))
        return deleted

    # -- conditional writes (claims) and batch deletes --------------------------------------
    # Each runs in one write transaction, which LMDB serialises across threads and processes.

    def _current(self, txn: _lmdb.Transaction, record: bytes, kb: bytes,
                 hashed: bool) -> bytes | None:
        """The value stored for key bytes `kb` under LMDB key `record`, inside `txn`."""
        raw = txn.get(record)
        if raw is None:
            return None
        return _unpack_long(bytes(raw), kb) if hashed else bytes(raw)

    def put_if_absent(self, key: str, value: bytes) -> bool:
        """Store `value` only if `key` is missing; True if this call stored it."""
        kb = key_bytes(key, self)
        record, raw = self._pair(key, check_value(value, self, key))

        def body(txn: _lmdb.Transaction) -> bool:
            stored: bool = txn.put(record, raw, overwrite=False)
            return stored

        result: bool = self._write("put_if_absent", key, len(record) + len(raw) + len(kb), body)
        return result

    def compare_and_swap(self, key: str, expected: bytes, value: bytes) -> bool:
        """Replace the value under `key` by `value` only if it is `expected` now."""
        kb = key_bytes(key, self)
        expected = check_value(expected, self, key)
        record, raw = self._pair(key, check_value(value, self, key))
        hashed = self._record_key(kb)[1]

        def body(txn: _lmdb.Transaction) -> bool:
            if self._current(txn, record, kb, hashed) != expected:
                return False
            txn.put(record, raw)
            return True

        swapped: bool = self._write("compare_and_swap", key, len(record) + len(raw), body)
        return swapped

    def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove `key` only if its value is `expected` now."""
        kb = key_bytes(key, self)
        expected = check_value(expected, self, key)
        record, hashed = self._record_key(kb)

        def body(txn: _lmdb.Transaction) -> bool:
            if self._current(txn, record, kb, hashed) != expected:
                return False
            deleted: bool = txn.delete(record)
            return deleted

        result: bool = self._write("compare_and_delete", key, 0, body)
        return result

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key given in one transaction (all, or none on error); the number that
        existed."""
        batch = [(kb, *self._record_key(kb)) for kb in (key_bytes(k, self) for k in keys)]

        def body(txn: _lmdb.Transaction) -> int:
            count = 0
            for kb, record, hashed in batch:
                if self._current(txn, record, kb, hashed) is not None:
                    count += txn.delete(record)
            return count

        deleted: int = self._write("delete_many", None, 0, body)
        return deleted

    def _records(self, op: str) -> list[tuple[bytes, bytes]]:
        with self._reading(op) as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor()]

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        out = []
        for record, raw in self._records("items"):
            if record[:1] != b"\xfe":
                out.append(self._decode(record, raw, "items"))
        return out

    def _decode(self, record: bytes, raw: bytes, op: str) -> tuple[str, bytes]:
        """The (key, value) a record stores; CorruptStoreError when it is not one of ours."""
        key, value = record, raw
        if record[:1] == b"\xff":
            n = _LEN.unpack_from(raw)[0] if len(raw) >= 4 else -1
            if not 0 <= n <= len(raw) - 4:
                raise failure(CorruptStoreError, self, op, None,
                              f"the record {record!r:.60} cannot be read: its {len(raw)} bytes "
                              f"do not hold the key length they announce", _DAMAGED)
            key, value = raw[4:4 + n], raw[4 + n:]
        try:
            return key.decode(), value
        except UnicodeDecodeError as exc:
            raise failure(CorruptStoreError, self, op, None,
                          f"the record {record!r:.60} cannot be read: its key is not UTF-8",
                          _DAMAGED) from exc

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        return [k for k, _ in self.items()]

    def clear(self) -> None:
        """Delete every entry (the schema marker stays)."""
        sh = self._live("clear")

        def body(txn: _lmdb.Transaction) -> None:
            if _spaces(txn):
                # Dropping the main database would drop the namespaces' records with it (and
                # leak their pages): delete the cache's records one by one instead.
                cursor = txn.cursor()
                going = cursor.first()
                while going:
                    going = (cursor.next() if cursor.key()[:1] == b"\xfe"
                             else cursor.delete())
                return
            version = txn.get(_META)
            txn.drop(sh.db, delete=False)
            if version is not None:
                txn.put(_META, version)

        self._write("clear", None, 0, body)

    def __len__(self) -> int:
        with self._reading("len") as txn:
            has_meta = txn.get(_META) is not None
            entries: int = txn.stat()["entries"]
            spaces = _spaces(txn)
        return entries - has_meta - spaces

    def namespace(self, name: str) -> KVStore:
        """A keyspace of its own: a named database of the same environment (created on first
        use; a read-only store sees it once a writer has created it)."""
        space = LMDBNamespace(self, check_namespace(name, self))
        if space.ensure("namespace"):
            return space
        return PendingNamespace(self, name,
                                lambda: space if space.ensure("namespace") else None)

    def _begin_space(self, sh: Env, write: bool = False) -> _lmdb.Transaction[bytes]:
        """A transaction on this namespace's named database (see LMDBNamespace.ensure)."""
        assert self._space is not None
        handle = sh.named.get(self._space)
        if handle is None:  # the environment was reopened without it (it cannot be found)
            raise failure(StorageError, self, "open", None, "the namespace's database is gone",
                          "open the store again")
        return sh.env.begin(write=write, db=handle)

    def check(self) -> list[str]:
        """Walk every record: each must be one this layout writes (UTF-8 key, matching hash)."""
        try:
            records = self._records("check")
        except CorruptStoreError as exc:
            return [f"the records cannot be walked: {exc}"]
        problems = []
        for record, raw in records:
            if record[:1] == b"\xfe":
                if record.startswith(SPACE_PREFIX):
                    continue  # a namespace's named database (checked through namespace())
                if record != _META or _parse_version(raw) is None:
                    problems.append(f"unknown marker record {record!r:.60} = {raw!r:.40}")
                continue
            try:
                key, _ = self._decode(record, raw, "check")
            except CorruptStoreError as exc:
                problems.append(str(exc))
                continue
            if record[:1] == b"\xff" and self._record_key(key.encode())[0] != record:
                problems.append(f"the record {record!r:.60} holds the key {key!r:.60}, whose "
                                f"hash is not the record's: it was changed after it was written")
        return problems

    def close(self) -> None:
        """Release this handle; the environment closes with its last handle. Idempotent."""
        with REGISTRY.lock:
            if self._closed:
                return
            self._closed = True
            sh = self._sh
            sh.refs -= 1
            if sh.refs == 0 and REGISTRY.envs.get(self._real) is sh:
                del REGISTRY.envs[self._real]
                if sh.unusable is not None:  # a forked child's copy: left alone (see above)
                    sh.closed = True
                    return
                with sh.write_lock:
                    sh.paused = True  # in-flight reads finish; new ones see the store closed
                    while sh.readers:
                        time.sleep(0.0001)
                    sh.closed = True
                    sh.env.close()

    def __repr__(self) -> str:
        return f"LMDBKV({self.path!r})"


class LMDBNamespace(LMDBKV):
    """A namespace of an `LMDBKV`: a named database of the same environment, with the same
    record layout, reached through the store's own environment (resizes, fork and errors
    included). Closing the store closes it."""

    def __init__(self, store: LMDBKV, name: str) -> None:  # shares the store's environment
        self.path = store.path
        self.durability = store.durability
        self.readonly = store.readonly
        self._store = store
        self._name = name
        self._space = SPACE_PREFIX + name.encode()
        self._closed = False
        self._real = store._real
        self._sh = store._sh

    def _live(self, op: str) -> Env:
        if self._closed or self._store._closed:
            raise closed_error(self, op)
        return self._sh

    def ensure(self, op: str) -> bool:
        """Open the named database (creating it unless read-only); False if it is missing."""
        sh = self._live(op)
        assert self._space is not None
        if self._space in sh.named:
            return True
        with sh.write_lock:  # LMDB: no two opens of a database at once in one process
            if sh.unusable is not None:
                raise sh.unusable(self, op)
            if sh.closed:
                raise closed_error(self, op)
            while self._space not in sh.named:
                try:
                    sh.named[self._space] = sh.env.open_db(self._space,
                                                           create=not self.readonly)
                except _lmdb.NotFoundError:
                    return False
                except _lmdb.MapResizedError:
                    sh.resize(0)
                except _lmdb.Error as exc:
                    raise self._wrap(exc, op, None) from exc
        return True

    def clear(self) -> None:
        """Delete every entry of the namespace."""
        space = self._space
        assert space is not None
        sh = self._live("clear")
        self._write("clear", None, 0, lambda txn: txn.drop(sh.named[space], delete=False))

    def __len__(self) -> int:
        sh = self._live("len")
        assert self._space is not None
        with self._reading("len") as txn:
            entries: int = txn.stat(sh.named[self._space])["entries"]
        return entries

    def namespace(self, name: str) -> KVStore:
        """Refused: namespaces do not nest."""
        raise nested_namespace(self)

    def close(self) -> None:
        """Later operations raise StoreClosedError (the store itself stays open)."""
        self._closed = True

    def __repr__(self) -> str:
        return f"{self._store!r}.namespace({self._name!r})"


def _spaces(txn: _lmdb.Transaction[Any]) -> int:
    """How many namespaces (named databases) the main database lists."""
    cursor = txn.cursor()
    count = 0
    going = cursor.set_range(SPACE_PREFIX)
    while going and cursor.key().startswith(SPACE_PREFIX):
        count += 1
        going = cursor.next()
    return count


def _parse_version(marker: bytes) -> int | None:
    """The schema version a marker holds, or None when it is not a plain decimal number."""
    if not marker or not marker.isdigit() or len(marker) > 9:
        return None
    return int(marker)


def _unpack_long(raw: bytes, kb: bytes) -> bytes | None:
    """The value of a hashed record, or None if it holds another key with the same hash."""
    (n,) = _LEN.unpack_from(raw)
    return raw[4 + n:] if raw[4:4 + n] == kb else None


_WRITES = frozenset({"put", "put_many", "delete", "clear", "put_if_absent", "compare_and_swap",
                     "compare_and_delete", "delete_many"})
_DAMAGED = ("the store is damaged or holds records another program wrote; run `doeff cache "
            "check` on it, then restore it from a backup or copy what can be read to a new "
            "store (`doeff cache migrate STORE --into NEW`)")
