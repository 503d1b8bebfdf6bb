"""Every KVStore backend and every codec the storage contract suite runs against.

Adding a backend is one more entry in KV_BACKENDS; its `unavailable` returns a reason to skip,
e.g. no database server reachable (tests/pg_server.py turns that into a failure in CI).
Fixtures: `kv_backend`, `persistent_backend`, `kv` (a fresh store), `durable` (every
DurableStorage, each Durable also signed + zstd + AES-GCM), `codec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg_server
import pytest

from doeff.storage import LMDBKV, InMemoryKV, InMemoryStorage, KVStore, SQLiteKV


def _always_available() -> str | None:
    return None


@dataclass(frozen=True)
class KVBackend:
    """How to open one backend: `open(dir)` twice on the same dir reaches the same data."""

    name: str
    open: Callable[[Path], KVStore]
    persistent: bool  # data survives close() and a new process opening the same dir
    unavailable: Callable[[], str | None] = field(default=_always_available)


KV_BACKENDS: list[KVBackend] = [
    KVBackend("memory", lambda d: InMemoryKV(), persistent=False),
    KVBackend("sqlite-file", lambda d: SQLiteKV(d / "store.db"), persistent=True),
    KVBackend("sqlite-memory", lambda d: SQLiteKV(":memory:"), persistent=False),
    KVBackend("lmdb", lambda d: LMDBKV(d / "store.lmdb"), persistent=True),
    # One table per test directory on the session's throwaway server (tests/pg_server.py).
    KVBackend("postgres", pg_server.open_kv, persistent=True, unavailable=pg_server.unavailable),
]


CODEC_NAMES = ["pickle", "cloudpickle", "msgpack", "json"]


def make_codec(name: str) -> Any:
    """A codec instance for a tag (looked up by class name, so serde owns the classes)."""
    import doeff.serde as serde

    classes = {"pickle": "PickleCodec", "cloudpickle": "CloudpickleCodec",
               "msgpack": "MsgpackCodec", "json": "JSONCodec"}
    return getattr(serde, classes[name])()


def _available(backend: KVBackend) -> KVBackend:
    reason = backend.unavailable()
    if reason is not None:
        pytest.skip(f"{backend.name}: {reason}")
    return backend


@pytest.fixture(params=KV_BACKENDS, ids=lambda b: b.name)
def kv_backend(request: pytest.FixtureRequest) -> KVBackend:
    """Each registered KVStore backend in turn (skipped with its reason when unavailable)."""
    return _available(request.param)


@pytest.fixture(params=[b for b in KV_BACKENDS if b.persistent], ids=lambda b: b.name)
def persistent_backend(request: pytest.FixtureRequest) -> KVBackend:
    """Each backend whose data outlives the store object and the process."""
    return _available(request.param)


@pytest.fixture
def kv(kv_backend: KVBackend, tmp_path: Path) -> Iterator[KVStore]:
    """A fresh, empty store of each backend, closed afterwards."""
    store = kv_backend.open(tmp_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=CODEC_NAMES)
def codec(request: pytest.FixtureRequest) -> Any:
    """Each codec in turn."""
    return make_codec(request.param)


# "+sealed": the same store signed, compressed and encrypted (every envelope feature at once).
DURABLE_KINDS = [f"{b.name}+{c}{s}" for b in KV_BACKENDS for c in CODEC_NAMES
                 for s in ("", "+sealed")] + ["InMemoryStorage", "SQLiteStorage"]
SEAL_KEY = bytes(range(32))


def sealing_options() -> dict[str, Any]:
    """Durable options that use every envelope feature: a signing key, zstd (for any record of
    64 bytes or more) and AES-256-GCM."""
    from doeff.serde import AesGcm, Zstd

    return {"signing_key": SEAL_KEY, "transforms": [Zstd(threshold=64), AesGcm(SEAL_KEY)]}


def _durable(kind: str, tmp_path: Path) -> Iterator[Any]:
    from doeff.storage import Durable, SQLiteStorage

    store: Any
    if kind == "InMemoryStorage":
        store = InMemoryStorage()
    elif kind == "SQLiteStorage":
        store = SQLiteStorage(tmp_path / "sqlite-storage.db")
    else:
        name, codec_name, *sealed = kind.split("+")
        backend = _available(next(b for b in KV_BACKENDS if b.name == name))
        options = sealing_options() if sealed else {}
        store = Durable(backend.open(tmp_path), make_codec(codec_name), **options)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=DURABLE_KINDS)
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Every DurableStorage: Durable over each backend x codec, InMemoryStorage, SQLiteStorage."""
    yield from _durable(request.param, tmp_path)


@pytest.fixture(params=[k for k in DURABLE_KINDS if k != "InMemoryStorage"])
def serializing_durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Every DurableStorage that encodes values (all but InMemoryStorage, which keeps objects)."""
    yield from _durable(request.param, tmp_path)
