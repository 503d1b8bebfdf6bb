"""What every KVStore backend shares: key and value checks, error messages, fork hooks.

Written once here so that every backend accepts exactly the same keys and words its errors the
same way.
"""

from __future__ import annotations

import os
import re
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Literal, Protocol

from doeff.errors import (
    IncompatibleStoreError,
    InvalidKeyError,
    InvalidOptionError,
    InvalidValueError,
    ReadOnlyStoreError,
    StorageError,
    StoreClosedError,
    StoreForkedError,
)
from doeff.storage.base import Closing, KVStore

Durability = Literal["normal", "full"]
DURABILITIES: tuple[Durability, ...] = ("normal", "full")


def check_durability(durability: str, store: str) -> Durability:
    """Return `durability` if it is one of DURABILITIES, else raise InvalidOptionError."""
    if durability == "normal":
        return "normal"
    if durability == "full":
        return "full"
    raise InvalidOptionError(
        f"{store}: durability must be one of {DURABILITIES}, got {durability!r}"
    )


def key_bytes(key: object, store: object) -> bytes:
    """The UTF-8 bytes of `key`; InvalidKeyError if it is not a str or not valid Unicode."""
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"{store!r}: keys must be str, got {type(key).__name__} {key!r:.80}; "
            f"build a string key, e.g. f\"step:{{...}}\""
        )
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            f"{store!r}: key {key!r:.80} is not valid Unicode ({exc.reason} at index "
            f"{exc.start}); keys must be encodable as UTF-8, so remove the lone surrogate"
        ) from exc


def check_prefix(prefix: object, store: object) -> bytes:
    """The UTF-8 bytes of a records() prefix; InvalidKeyError if it is not a valid Unicode str."""
    if not isinstance(prefix, str):
        raise InvalidKeyError(
            f"{store!r}: records() takes a str prefix, got {type(prefix).__name__} "
            f"{prefix!r:.80}; pass \"\" for every record"
        )
    try:
        return prefix.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            f"{store!r}: records() prefix {prefix!r:.80} is not valid Unicode ({exc.reason} at "
            f"index {exc.start}); no key can start with it, so remove the lone surrogate"
        ) from exc


def check_key(key: object, store: object) -> str:
    """`key` once known to be a valid Unicode str (an ASCII str costs one flag test)."""
    if type(key) is str and key.isascii():
        return key
    key_bytes(key, store)
    assert isinstance(key, str)  # key_bytes raised otherwise
    return key


def check_value(value: object, store: object, key: str) -> bytes:
    """`value` as bytes; InvalidValueError for anything that is not bytes-like."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidValueError(
        f"{store!r}: put({key!r:.80}) needs a bytes value, got {type(value).__name__}; "
        f"a KVStore holds bytes only, wrap it in Durable(kv, codec) to store objects"
    )


def closed_error(store: object, op: str) -> StoreClosedError:
    """The error for `op` on a store after close()."""
    return StoreClosedError(
        f"{store!r} is closed, cannot {op}(); open the store again to keep using it"
    )


def foreign_store(store: object, what: str, found: str, advice: str) -> IncompatibleStoreError:
    """The error for a store location that holds something doeff did not write."""
    return IncompatibleStoreError(
        f"{store!r}: {what} is {found}, not a doeff store; it was left untouched. {advice}"
    )


def newer_store(store: object, what: str, version: int, supported: int) -> IncompatibleStoreError:
    """The error for a store written by a newer doeff schema than this one reads."""
    return IncompatibleStoreError(
        f"{store!r}: {what} has doeff schema version {version}, newer than the {supported} this "
        f"doeff reads; it was left untouched. Upgrade doeff"
    )


def read_only(store: object, op: str, why: str = "it was opened with readonly=True") -> (
        ReadOnlyStoreError):
    """The error for a write to a store that cannot be written."""
    return ReadOnlyStoreError(f"{store!r}: {op}() refused: the store is read-only ({why}); "
                              f"nothing was written")


def failure(
    cls: type[StorageError], store: object, op: str, key: str | None, cause: object, hint: str
) -> StorageError:
    """A StorageError saying which store, which operation on which key, why, and what to do."""
    call = f"{op}({key!r:.80})" if key is not None else f"{op}()"
    return cls(f"{store!r}: {call} failed: {cause}; {hint}")


class ForkAware(Protocol):
    """Something holding OS resources that a forked child must not share with its parent."""

    def _after_fork_in_child(self) -> None: ...


# Weak, so registering never keeps a closed store alive.
_FORK_AWARE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def on_fork(obj: ForkAware) -> None:
    """Call `obj._after_fork_in_child()` in every child forked from now on."""
    _FORK_AWARE.add(obj)


def _reset_after_fork() -> None:
    for obj in list(_FORK_AWARE):
        obj._after_fork_in_child()


# A hook instead of a per-operation getpid() check: forking is rare, operations are hot.
os.register_at_fork(after_in_child=_reset_after_fork)


# How long fork() waits for the threads inside a store operation to leave it (see ForkGate).
FORK_WAIT = 5.0


class ForkGate:
    """Holds `fork()` until no thread is inside an operation of a library whose locks a child
    would otherwise inherit locked (SQLite's mutexes, for one), for at most FORK_WAIT seconds.

    An operation calls `enter` before and `leave` after. Each side writes first and checks
    second (a thread appends itself, then looks at `closed`; fork sets `closed`, then looks at
    `inside`), so under the GIL one of them always sees the other. A child forked while a
    thread was still inside (an operation stuck for longer than FORK_WAIT) is `stuck`: every
    operation in it raises StoreForkedError rather than wait forever on a lock nobody holds.
    """

    def __init__(self, library: str) -> None:
        self.library = library
        self.inside: list[None] = []
        self.closed = False
        self.stuck = False
        self._busy_at_fork = False
        os.register_at_fork(before=self._before_fork, after_in_parent=self._reopen,
                            after_in_child=self._after_fork_in_child)

    def enter(self, store: object, op: str) -> None:
        """Mark this thread as inside the library; waits while a fork is under way."""
        inside = self.inside
        inside.append(None)
        while self.closed or self.stuck:
            inside.pop()
            if self.stuck:
                raise forked_error(store, op, self.library)
            time.sleep(0.0005)
            inside.append(None)

    def leave(self) -> None:
        """Mark this thread as out of the library again."""
        self.inside.pop()

    def _before_fork(self) -> None:
        self.closed = True
        deadline = time.monotonic() + FORK_WAIT
        while self.inside and time.monotonic() < deadline:
            time.sleep(0.0005)
        self._busy_at_fork = bool(self.inside)

    def _reopen(self) -> None:
        self.closed = False

    def _after_fork_in_child(self) -> None:
        # The threads that were inside do not exist here; what they held stays held.
        self.stuck = self.stuck or self._busy_at_fork
        self.inside.clear()
        self.closed = False


def forked_error(store: object, op: str, library: str) -> StoreForkedError:
    """The error for an operation in a child forked while another thread was inside `library`."""
    return StoreForkedError(
        f"{store!r}: {op}() refused: this process was forked while another thread of its "
        f"parent was inside a {library} operation for longer than {FORK_WAIT:g} s, so {library} "
        f"locks here may be held by a thread that does not exist in this process. Open stores "
        f"in a process that was not forked from a busy one: use multiprocessing's 'spawn' or "
        f"'forkserver' start method, or fork before any thread uses a store"
    )


def check_items(items: Iterable[tuple[str, bytes]], store: object) -> list[tuple[str, bytes]]:
    """Validate a whole batch before any of it is written, so a bad pair writes nothing."""
    try:
        pairs = list(items)
    except TypeError as exc:
        raise InvalidValueError(
            f"{store!r}: put_many() takes an iterable of (key, value) pairs, got "
            f"{type(items).__name__} {items!r:.80}"
        ) from exc
    batch = []
    for index, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidValueError(
                f"{store!r}: put_many() takes (key, value) pairs; item {index} is "
                f"{type(pair).__name__} {pair!r:.80}, nothing was written"
            )
        key = check_key(pair[0], store)
        batch.append((key, check_value(pair[1], store, key)))
    return batch


class KVBase(Closing):
    """What the backends share: context management, a `records()` built on `items()`, and a
    `check()` that finds nothing wrong where the backend has nothing to check."""

    readonly = False

    def items(self) -> list[tuple[str, bytes]]:
        """All (key, value) pairs."""
        raise NotImplementedError

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, None) for keys starting with `prefix`, sorted: no update times here."""
        check_prefix(prefix, self)
        return sorted((k, v, None) for k, v in self.items() if k.startswith(prefix))

    def check(self) -> list[str]:
        """The problems the backend's own consistency check finds; empty when it is sound."""
        return []


def disk_full(path: str) -> bool:
    """True when the filesystem holding `path` is (nearly) out of space.

    Some failures of a full disk come back as plain I/O errors (LMDB's commit gives EIO, SQLite
    "disk I/O error" when it cannot size its WAL index), so they are classed by the free space
    they left behind.
    """
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW


_FULL_BELOW = 4 << 20  # free bytes under which a failed write is put down to a full disk


def writable(path: str) -> bool:
    """True unless the directory (or file) at `path` is read-only to this process or its mount."""
    return os.access(path, os.W_OK)



# -- namespaces: a second keyspace of the same store -----------------------------------------

_NAMESPACE_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")


def check_namespace(name: object, store: object) -> str:
    """`name` if it can name a namespace (lowercase letters, digits, _; a letter first; at
    most 31 characters: it becomes part of a table or database name), else InvalidOptionError."""
    if not isinstance(name, str) or not _NAMESPACE_NAME.fullmatch(name):
        raise InvalidOptionError(
            f"{store!r}: namespace({name!r:.60}) refused: a namespace name is 1 to 31 "
            f"lowercase letters, digits and _, starting with a letter (e.g. 'runs')"
        )
    return name


class PendingNamespace(KVBase):
    """A namespace of a read-only store that does not exist yet: empty until a writer creates
    it, then the real one (looked for again at every operation until found).

    A reader must open a store whatever it holds, so a missing namespace reads as empty rather
    than as an error; `find()` returns the real namespace once it exists, else None.
    """

    readonly = True

    def __init__(self, store: object, name: str, find: Callable[[], KVStore | None]) -> None:
        self._store = store
        self._name = name
        self._find = find
        self._found: KVStore | None = None
        self._closed = False

    def _real(self, op: str) -> KVStore | None:
        if self._closed:
            raise closed_error(self, op)
        if self._found is None:
            self._found = self._find()
        return self._found

    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None (always None while the namespace does not exist)."""
        check_key(key, self)
        real = self._real("get")
        return None if real is None else real.get(key)

    def exists(self, key: str) -> bool:
        """True if `key` is stored."""
        return self.get(key) is not None

    def keys(self) -> list[str]:
        """A snapshot of all keys."""
        real = self._real("keys")
        return [] if real is None else list(real.keys())

    def items(self) -> list[tuple[str, bytes]]:
        """A snapshot of all (key, value) pairs."""
        real = self._real("items")
        return [] if real is None else list(real.items())

    def records(self, prefix: str = "") -> list[tuple[str, bytes, float | None]]:
        """(key, value, updated_at) for keys starting with `prefix`, sorted."""
        check_prefix(prefix, self)
        real = self._real("records")
        return [] if real is None else list(real.records(prefix))

    def put(self, key: str, value: bytes) -> None:
        """Refused: the store is read-only."""
        raise read_only(self, "put")

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Refused: the store is read-only."""
        raise read_only(self, "put_many")

    def delete(self, key: str) -> bool:
        """Refused: the store is read-only."""
        raise read_only(self, "delete")

    def clear(self) -> None:
        """Refused: the store is read-only."""
        raise read_only(self, "clear")

    def namespace(self, name: str) -> KVStore:
        """Refused: namespaces do not nest."""
        raise nested_namespace(self)

    def __len__(self) -> int:
        real = self._real("len")
        return 0 if real is None else len(real)

    def close(self) -> None:
        """Later operations raise StoreClosedError. Idempotent."""
        self._closed = True

    def __repr__(self) -> str:
        return f"{self._store!r}.namespace({self._name!r})"


def nested_namespace(store: object) -> InvalidOptionError:
    """The error for asking a namespace for a namespace of its own."""
    return InvalidOptionError(
        f"{store!r}: namespaces do not nest; call namespace() on the store itself"
    )
