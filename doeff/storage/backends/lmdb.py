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
- 0xFE + b"doeff-schema" holds the schema version (and marks the directory as a doeff store).
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

import lmdb as _lmdb

from doeff.errors import IncompatibleStoreError, StorageError, StorageFullError
from doeff.storage.backends.common import (
    KVBase,
    check_durability,
    check_items,
    check_value,
    closed_error,
    failure,
    foreign_store,
    key_bytes,
    newer_store,
    on_fork,
)

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
DEFAULT_MAP_SIZE: Final = 1 << 30  # grows by doubling when full; only address space until used
_META: Final = b"\xfedoeff-schema"
_HASHED: Final = 0xFF
_LEN = struct.Struct(">I")


class _Env:
    """The one LMDB environment of a directory in this process (LMDB forbids opening it twice).

    Reads take no lock: they announce themselves in `readers` and check `paused`. Growing the map
    (set_mapsize) invalidates every transaction of the process, so it pauses reads, waits for the
    announced ones to finish, then resizes. Both sides write first and check second, so under the
    GIL one of them always sees the other.
    """

    def __init__(self, path: str, map_size: int, durability: str) -> None:
        self.path = path
        self.map_size = map_size
        self.durability = durability
        self.refs = 0
        self._open()

    def _open(self) -> None:
        self._open_env()
        self.write_lock = threading.Lock()
        self.readers: list[None] = []
        self.paused = False
        self.closed = False

    def _open_env(self) -> None:
        self.env = _lmdb.open(
            self.path, map_size=self.map_size, subdir=True, lock=True,
            # No cached spare read txn: a forked child closing its inherited copy of the env
            # would release the parent's reader slot with it (MDB_BAD_RSLOT in the parent).
            sync=True, metasync=self.durability == "full", max_spare_txns=0,
        )
        # LMDB adopts the size recorded in the file when another process grew it.
        self.map_size = self.env.info()["map_size"]
        self.limit = self.env.max_key_size()
        self.page = self.env.stat()["psize"]
        self.db = self.env.open_db()  # the unnamed main database, for clear()

    def after_fork_in_child(self) -> None:
        # A child must not use its parent's environment (LMDB's rule); close the inherited copy
        # (this releases only the child's own reader slots) and open the files afresh.
        self.env.close()
        self._open()

    def wait_unpaused(self) -> None:
        while self.paused and not self.closed:
            time.sleep(0.0005)

    def make_room(self, nbytes: int) -> None:
        """Grow the map before a write of about `nbytes` could fill it; caller holds write_lock.

        Growing ahead matters: py-lmdb 3.0 hangs when a write hits MapFullError while two or
        more threads are reading, so MapFullError must stay the rare fallback.
        """
        used = (self.env.info()["last_pgno"] + 1) * self.page
        need = used + 2 * nbytes + 64 * self.page  # copy-on-write pages of the tree, headroom
        if need > self.map_size:
            self.resize(max(2 * self.map_size, 2 * need))

    def resize(self, new_size: int) -> None:
        """Reopen with a map of `new_size` (0: the size another process gave the file) once no
        read is in flight; the caller holds write_lock.

        Close and reopen rather than set_mapsize(): with reads running on other threads in
        between, set_mapsize left the next write transaction blocked forever in py-lmdb 3.0.
        """
        self.paused = True
        try:
            while self.readers:
                time.sleep(0.0001)
            self.env.close()
            self.map_size = new_size
            self._open_env()
        finally:
            self.paused = False


_OPEN: dict[str, _Env] = {}
_OPEN_LOCK = threading.Lock()


def _reopen_all_after_fork() -> None:
    for shared in _OPEN.values():
        shared.after_fork_in_child()


class _ForkHook:
    """Reopens every environment of this process in a forked child."""

    def _after_fork_in_child(self) -> None:
        global _OPEN_LOCK
        _OPEN_LOCK = threading.Lock()  # the parent may have held it while forking
        _reopen_all_after_fork()


_FORK_HOOK = _ForkHook()
on_fork(_FORK_HOOK)


class LMDBKV(KVBase):
    """A KVStore in an LMDB directory; the map grows by itself, any key length works.

    >>> with LMDBKV("store") as kv:
    ...     kv.put("step:1", b"done"); kv.get("step:1")
    b'done'
    """

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = DEFAULT_MAP_SIZE,
                 durability: str = "normal") -> None:
        self.path = os.fspath(path)
        self.durability = check_durability(durability, f"LMDBKV({self.path!r})")
        self._closed = False
        real = os.path.realpath(self.path)
        with _OPEN_LOCK:
            shared = _OPEN.get(real)
            if shared is None:
                try:
                    shared = _Env(self.path, map_size, self.durability)
                except _lmdb.Error as exc:
                    raise self._wrap(exc, "open", None) from exc
                try:
                    self._check_schema(shared)
                except BaseException:
                    shared.env.close()
                    raise
                _OPEN[real] = shared
            shared.refs += 1
        self._real = real
        self._sh = shared

    def _check_schema(self, shared: _Env) -> None:
        """Raise IncompatibleStoreError for a foreign or newer store; mark a new one as ours."""
        with shared.env.begin() as txn:
            version = txn.get(_META)
            entries = txn.stat()["entries"]
        if version is None and entries == 0:
            with shared.env.begin(write=True) as txn:
                if not txn.put(_META, str(SCHEMA_VERSION).encode(), overwrite=False):
                    version = txn.get(_META)  # another process created it meanwhile
        if version is None and entries:
            raise foreign_store(
                self, repr(self.path),
                f"an LMDB environment ({entries} records, no doeff schema marker)",
                "Point LMDBKV at a new directory or at one doeff created",
            )
        if version is not None and int(version) > SCHEMA_VERSION:
            raise newer_store(self, repr(self.path), int(version), SCHEMA_VERSION)

    # -- plumbing ----------------------------------------------------------------------------

    def _wrap(self, exc: _lmdb.Error, op: str, key: str | None) -> StorageError:
        if (isinstance(exc, _lmdb.DiskError) or "No space left" in str(exc)
                or (op in _WRITES and _disk_full(self.path))):
            return failure(StorageFullError, self, op, key, exc,
                           "free disk space; the write was not applied")
        if isinstance(exc, _lmdb.InvalidError | _lmdb.VersionMismatchError):
            return failure(IncompatibleStoreError, self, op, key, exc,
                           "the directory does not hold an LMDB environment this doeff reads")
        return failure(StorageError, self, op, key, exc, "nothing was written")

    def _live(self, op: str) -> _Env:
        if self._closed:
            raise closed_error(self, op)
        return self._sh

    def _record_key(self, kb: bytes) -> tuple[bytes, bool]:
        """The LMDB key for UTF-8 key bytes `kb`, and whether it is a hashed (long) one."""
        if 0 < len(kb) <= self._sh.limit:
            return kb, False
        return bytes((_HASHED,)) + hashlib.sha256(kb).digest(), True

    def _read_raw(self, sh: _Env, record: bytes, op: str, key: str) -> bytes | None:
        readers = sh.readers
        while True:
            readers.append(None)
            try:
                if not sh.paused:
                    txn = sh.env.begin()
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

    def _before_reading_again(self, sh: _Env, op: str) -> None:
        """After a read that could not run: fail if closed, else wait out or adopt a resize."""
        if sh.closed:
            raise closed_error(self, op)
        if sh.paused:
            sh.wait_unpaused()
        else:
            with sh.write_lock:
                sh.resize(0)

    @contextmanager
    def _reading(self, op: str) -> Iterator[_lmdb.Transaction]:
        """A read transaction for the slower whole-store reads (same protocol as _read_raw)."""
        sh = self._live(op)
        while True:
            sh.readers.append(None)
            try:
                if not sh.paused:
                    with sh.env.begin() as txn:
                        yield txn
                    return
            except _lmdb.MapResizedError:
                pass
            except _lmdb.Error as exc:
                raise self._wrap(exc, op, None) from exc
            finally:
                sh.readers.pop()
            self._before_reading_again(sh, op)

    def _write(self, op: str, key: str | None, nbytes: int,
               body: Callable[[_lmdb.Transaction], T]) -> T:
        sh = self._live(op)
        with sh.write_lock:  # LMDB allows one writer anyway; the lock also orders resizes
            sh.make_room(nbytes)
            while True:
                try:
                    with sh.env.begin(write=True) as txn:
                        return body(txn)
                except _lmdb.MapFullError:
                    sh.resize(sh.map_size * 2)  # the aborted txn wrote nothing; grow, retry
                except _lmdb.MapResizedError:
                    sh.resize(0)
                except _lmdb.Error as exc:
                    raise self._wrap(exc, op, key) from exc

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
        if hashed and self.get(key) is None:
            return False  # a different long key with the same hash: not ours to delete
        deleted: bool = self._write("delete", key, 0, lambda txn: txn.delete(record))
        return deleted

    def _records(self, op: str) -> list[tuple[bytes, bytes]]:
        with self._reading(op) as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor()]

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        out = []
        for record, raw in self._records("items"):
            if record[:1] == b"\xff":
                (n,) = _LEN.unpack_from(raw)
                out.append((raw[4:4 + n].decode(), raw[4 + n:]))
            elif record[:1] != b"\xfe":
                out.append((record.decode(), raw))
        return out

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        return [k for k, _ in self.items()]

    def clear(self) -> None:
        """Delete every entry (the schema marker stays)."""
        sh = self._live("clear")

        def body(txn: _lmdb.Transaction) -> None:
            version = txn.get(_META)
            txn.drop(sh.db, delete=False)
            if version is not None:
                txn.put(_META, version)

        self._write("clear", None, 0, body)

    def __len__(self) -> int:
        with self._reading("len") as txn:
            has_meta = txn.get(_META) is not None
            entries: int = txn.stat()["entries"]
        return entries - has_meta

    def close(self) -> None:
        """Release this handle; the environment closes with its last handle. Idempotent."""
        with _OPEN_LOCK:
            if self._closed:
                return
            self._closed = True
            sh = self._sh
            sh.refs -= 1
            if sh.refs == 0 and _OPEN.get(self._real) is sh:
                del _OPEN[self._real]
                with sh.write_lock:
                    sh.paused = True  # in-flight reads finish; new ones see the store closed
                    while sh.readers:
                        time.sleep(0.0001)
                    sh.closed = True
                    sh.env.close()

    def __repr__(self) -> str:
        return f"LMDBKV({self.path!r})"


def _unpack_long(raw: bytes, kb: bytes) -> bytes | None:
    """The value of a hashed record, or None if it holds another key with the same hash."""
    (n,) = _LEN.unpack_from(raw)
    return raw[4 + n:] if raw[4:4 + n] == kb else None


_WRITES = frozenset({"put", "put_many", "delete", "clear"})
_FULL_BELOW = 4 << 20  # free bytes under which a failed write is put down to a full disk


def _disk_full(path: str) -> bool:
    """True when the filesystem holding `path` is (nearly) out of space.

    LMDB reports a commit that ran out of disk as a plain I/O error (EIO), not ENOSPC, so a
    failed write is classed as "disk full" by looking at the free space it left behind.
    """
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW
