"""The LMDB environment behind `LMDBKV`: one per directory and process, reopened to adopt a
map another process grew, allocated on disk before LMDB maps it, and handed safely across fork.

LMDB forbids opening one environment twice in a process, so every `LMDBKV` on a directory shares
one `Env` from `REGISTRY`. A forked child must not use its parent's environment either: fork
waits (at most FORK_WAIT seconds) for the transactions in flight to end, then the child reopens
each environment — or, if one was still busy, refuses it with StoreForkedError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import lmdb as _lmdb

from doeff.errors import StorageError
from doeff.storage.backends import common
from doeff.storage.backends.common import failure, forked_error

# The size LMDB gives its lock file for its default 126 readers. A lock file made here is
# allocated to this size up front; an existing one keeps its size (processes that have it
# mapped must agree on it) and only has its holes filled.
_LOCK_SIZE: Final = 8192
# Named databases an environment may hold (namespaces); the number only sizes a table of handles,
# and stores written before namespaces existed open with it all the same.
MAX_NAMESPACES: Final = 16


class Env:
    """The one LMDB environment of a directory in this process (LMDB forbids opening it twice).

    Reads take no lock: they announce themselves in `readers` and check `paused`. Growing the map
    (set_mapsize) invalidates every transaction of the process, so it pauses reads, waits for the
    announced ones to finish, then resizes. Both sides write first and check second, so under the
    GIL one of them always sees the other. fork() uses the same protocol to let the operations in
    flight finish (see `_before_fork`).
    """

    def __init__(self, path: str, map_size: int, durability: str, *, readonly: bool,
                 lock: bool) -> None:
        self.path = path
        self.map_size = map_size
        self.durability = durability
        self.readonly = readonly
        self.lock = lock  # LMDB's reader lock: off only for read-only media with no lock file
        self.refs = 0
        # The namespaces' named databases opened so far: name -> handle (see LMDBNamespace).
        self.named: dict[bytes, _lmdb._Database] = {}
        # Set in a forked child when the environment cannot be used there: the error to raise.
        self.unusable: Callable[[object, str], StorageError] | None = None
        self._open()

    def _open(self) -> None:
        self._open_env()
        self.write_lock = threading.Lock()
        self.readers: list[None] = []
        self.paused = False
        self.closed = False

    def _open_env(self) -> None:
        """Open the environment, retrying while another process grows the map under the open."""
        if not self.readonly:
            prepare_lock_file(self.path)
        while True:
            try:
                env = _lmdb.open(
                    self.path, map_size=self.map_size, subdir=True, create=False,
                    readonly=self.readonly, lock=self.lock,
                    # No cached spare read txn: a forked child closing its inherited copy of the
                    # env would release the parent's reader slot with it (MDB_BAD_RSLOT).
                    sync=True, metasync=self.durability == "full", max_spare_txns=0,
                    max_dbs=MAX_NAMESPACES,
                )
            except _lmdb.MapResizedError:
                continue  # the next open reads the size the other process recorded
            try:
                # LMDB adopts the size recorded in the file when another process grew it.
                self.map_size = env.info()["map_size"]
                self.limit = env.max_key_size()
                self.page = env.stat()["psize"]
                self.db = env.open_db()  # the unnamed main database, for clear()
                # Handles die with the environment: reopen the namespaces' databases (they
                # exist, so nothing is written here).
                self.named = {name: env.open_db(name, create=False)
                              for name in getattr(self, "named", {})}
            except _lmdb.MapResizedError:
                env.close()
                continue
            except BaseException:
                env.close()
                raise
            self.env = env
            return

    def after_fork_in_child(self, quiet: bool) -> None:
        """Make the environment usable in a forked child, or mark it unusable there."""
        if not quiet:
            # A thread of the parent was inside a transaction when it forked: closing the copy
            # would abort that transaction here and release the parent's reader slot, so the
            # copy is left alone and this environment is refused in the child.
            self.readers = []
            self.write_lock = threading.Lock()
            self.paused = True
            self.unusable = lambda store, op: forked_error(store, op, "LMDB")
            return
        # A child must not use its parent's environment (LMDB's rule); close the inherited copy
        # (this releases only the child's own reader slots) and open the files afresh.
        self.env.close()
        try:
            self._open()
        except (_lmdb.Error, OSError, StorageError) as exc:
            self.readers, self.paused = [], True
            self.unusable = failed_reopen(exc, "the forked child could not reopen the "
                                           "environment; open the store again")

    def wait_unpaused(self) -> None:
        """Wait while a resize (or a fork) holds reads back."""
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
        read is in flight; the caller holds write_lock and has checked the store is open.

        Close and reopen rather than set_mapsize(): with reads running on other threads in
        between, set_mapsize left the next write transaction blocked forever in py-lmdb 3.0.
        """
        self.reopen(new_size, self.readonly)

    def reopen(self, map_size: int, readonly: bool) -> None:
        """Close and open again (see resize), possibly switching between read-only and not."""
        self.paused = True
        try:
            while self.readers:
                time.sleep(0.0001)
            self.env.close()
            self.map_size, self.readonly = map_size, readonly
            try:
                self._open_env()
            except BaseException as exc:
                self.unusable = failed_reopen(exc, "the environment could not be reopened; "
                                               "open the store again")
                raise
        finally:
            self.paused = False


def failed_reopen(exc: BaseException, hint: str) -> Callable[[object, str], StorageError]:
    """What an environment that could not be reopened raises from then on."""
    return lambda store, op: failure(StorageError, store, op, None, exc, hint)


class Registry:
    """The environments open in this process, by real path, and the lock that guards opening
    and closing them (replaced in a forked child: the parent may have held it)."""

    def __init__(self) -> None:
        self.envs: dict[str, Env] = {}
        self.lock = threading.Lock()


REGISTRY = Registry()
# Directory descriptors holding the creation lock (flock) at this moment: a forked child must
# close its copies, or the lock would stay held for as long as the child lives.
_CREATING: set[int] = set()


def prepare_lock_file(path: str) -> None:
    """Allocate LMDB's lock file on disk before LMDB maps it: LMDB writes it through memory, so
    a page the filesystem cannot supply (a full disk) would kill the process with SIGBUS.

    Must run while this process has no environment open on `path`: closing a descriptor of the
    file drops every fcntl lock the process holds on it, LMDB's included.
    """
    fd = os.open(os.path.join(path, "lock.mdb"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.posix_fallocate(fd, 0, max(os.fstat(fd).st_size, _LOCK_SIZE))
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no holes to fill there
            raise
    finally:
        os.close(fd)


@contextmanager
def creation_lock(path: str) -> Iterator[None]:
    """Hold an exclusive flock on the store's directory: doeff processes opening the same
    directory decide whether it is new, and mark it, one at a time."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    _CREATING.add(fd)
    try:
        with contextlib.suppress(OSError):  # no flock (some network filesystems): go unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _CREATING.discard(fd)
        os.close(fd)  # releases the flock


# -- fork: let the operations in flight finish, then give the child environments of its own ----

_QUIET: dict[int, bool] = {}  # id(env) -> whether fork found it idle (set between the hooks)
_HELD: list[threading.Lock] = []  # locks taken by _before_fork, released in the parent after


def _before_fork() -> None:
    deadline = time.monotonic() + common.FORK_WAIT
    _QUIET.clear()
    if REGISTRY.lock.acquire(timeout=common.FORK_WAIT):
        _HELD.append(REGISTRY.lock)
    for sh in list(REGISTRY.envs.values()):
        quiet = sh.write_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        if quiet:
            _HELD.append(sh.write_lock)
            sh.paused = True  # reads wait; resize cannot run (it needs write_lock)
            while sh.readers and time.monotonic() < deadline:
                time.sleep(0.0005)
            quiet = not sh.readers
        _QUIET[id(sh)] = quiet


def _after_fork_in_parent() -> None:
    for sh in REGISTRY.envs.values():
        if _QUIET.get(id(sh)) is not None and sh.write_lock in _HELD:
            sh.paused = False
    while _HELD:
        _HELD.pop().release()


def _after_fork_in_child() -> None:
    REGISTRY.lock = threading.Lock()  # the parent may have held it while forking
    _HELD.clear()
    for fd in list(_CREATING):  # another thread's creation lock: not ours to hold
        with contextlib.suppress(OSError):
            os.close(fd)
    _CREATING.clear()
    for sh in REGISTRY.envs.values():
        sh.after_fork_in_child(_QUIET.get(id(sh), False) and not sh.readers)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
