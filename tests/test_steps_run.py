"""Running steps: plain, async and @do functions compute once and replay; a miss costs one read
and one write, a hit one read; versions, expiry (ttl) and failures; steps in snapshots."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from doeff import Retry, do, run_async, run_sync, step
from doeff.cli.app import main as cli_main
from doeff.effects import cached, cacheget, cachestore, gather, perform
from doeff.errors import InvalidOptionError, StorageError
from doeff.observability.snapshot import ExecutionSnapshot
from doeff.serde import MsgpackCodec, PickleCodec
from doeff.steps.explain import parse_key
from doeff.storage import Durable, InMemoryKV, InMemoryStorage, SQLiteKV


class CountingKV(InMemoryKV):
    """InMemoryKV that counts the reads and writes Durable asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return super().get(key)

    def exists(self, key: str) -> bool:
        self.reads += 1
        return super().exists(key)

    def put(self, key: str, value: bytes) -> None:
        self.writes += 1
        super().put(key, value)

    def counts(self) -> tuple[int, int]:
        out = (self.reads, self.writes)
        self.reads = self.writes = 0
        return out


def test_a_plain_function_step_computes_once_then_replays() -> None:
    """The first call computes and stores; the same call again answers the stored value."""
    calls: list[int] = []

    @step
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    storage = InMemoryStorage()
    assert run_sync(double(4), storage=storage).value == 8
    assert run_sync(double(x=4), storage=storage).value == 8
    assert run_sync(double(5), storage=storage).value == 10
    assert calls == [4, 5]


def test_decorator_forms_all_work() -> None:
    """@step, @step() and @step(version=...) give working steps."""

    @step
    def a(x: int) -> int:
        return x

    @step()
    def b(x: int) -> int:
        return x

    @step(version=3)
    def c(x: int) -> int:
        return x

    assert run_sync(gather(a(1), b(2), c(3))).value == [1, 2, 3]
    assert "@v3:" in c.key(3)
    with pytest.raises(InvalidOptionError):
        step(a.fn, version=2)  # type: ignore[call-overload]


def test_async_and_do_steps_compute_once() -> None:
    """An async def step is awaited, a @do step runs as a sub-program; both replay."""
    calls: list[str] = []

    @step
    async def fetch(url: str) -> str:
        calls.append(url)
        await asyncio.sleep(0)
        return url.upper()

    @step
    @do
    def pipeline(url: str) -> Generator[Any, Any, str]:
        calls.append("pipeline")
        page: str = yield fetch(url)
        return page + "!"

    storage = InMemoryStorage()
    assert run_sync(pipeline("a"), storage=storage).value == "A!"
    assert run_sync(pipeline("a"), storage=storage).value == "A!"
    assert calls == ["pipeline", "a"]


def test_async_steps_run_under_run_async() -> None:
    """Steps work on the caller's loop too."""

    @step
    async def fetch(url: str) -> str:
        await asyncio.sleep(0)
        return url * 2

    assert asyncio.run(run_async(gather(fetch("a"), fetch("b")))).value == ["aa", "bb"]


@pytest.mark.parametrize("maker", ["step", "cached"])
def test_a_miss_is_one_read_and_one_write_and_a_hit_one_read(maker: str) -> None:
    """Through Durable, a first run of a step reads the KV store once and writes once; a replay
    reads once and writes nothing (a stored None included)."""
    kv = CountingKV()
    storage = Durable(kv, MsgpackCodec())

    @step
    def nothing(x: int) -> None:
        return None

    program = nothing(1) if maker == "step" else cached("k", lambda: perform(lambda: None))
    assert run_sync(program, storage=storage).value is None
    assert kv.counts() == (1, 1)
    assert run_sync(program, storage=storage).value is None
    assert kv.counts() == (1, 0)


def test_a_failing_step_stores_nothing_and_runs_again() -> None:
    """A step that raises is not cached: the next call computes again."""
    calls: list[int] = []

    @step
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("down")
        return x

    storage = InMemoryStorage()
    assert isinstance(run_sync(flaky(1), storage=storage).error, ConnectionError)
    assert storage.keys() == []
    assert run_sync(flaky(1), storage=storage).value == 1
    assert calls == [1, 1]


def test_bumping_the_version_recomputes() -> None:
    """A new version is a new key: the old result is not replayed."""
    storage = InMemoryStorage()

    @step(name="price", version=1)
    def v1(x: int) -> int:
        return x

    @step(name="price", version=2)
    def v2(x: int) -> int:
        return x * 100

    assert run_sync(v1(3), storage=storage).value == 3
    assert run_sync(v2(3), storage=storage).value == 300
    assert sorted(parse_key(k).version for k in storage.keys()) == ["1", "2"]  # type: ignore[union-attr]


def test_records_carry_a_summary_without_argument_values(tmp_path: Path) -> None:
    """A step's record header holds its name, version, code fingerprint and a digest per
    argument — never an argument's value."""
    storage = Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec())

    @step(name="login", version=4)
    def login(user: str, password: str) -> str:
        return "token"

    run_sync(login("ada", "hunter2"), storage=storage)
    [meta] = storage.describe()
    assert meta.info is not None
    assert meta.info["step"] == "login" and meta.info["version"] == "4"
    assert meta.info["code"] is None and sorted(meta.info["args"]) == ["password", "user"]
    raw = storage.kv.get(meta.key)
    assert raw is not None and b"hunter2" not in raw[:100] and b"ada" not in raw[:100]


# -- expiry ---------------------------------------------------------------------------------


@pytest.fixture(params=["InMemoryStorage", "Durable+SQLite", "Durable+sealed"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Storages that keep an expiry: in memory, SQLite, and SQLite signed and encrypted."""
    if request.param == "InMemoryStorage":
        return InMemoryStorage()
    if request.param == "Durable+SQLite":
        return Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec())
    from storage_fixtures import sealing_options

    return Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec(), **sealing_options())


def test_an_expired_record_is_a_miss(store: Any) -> None:
    """Within its ttl a step replays; after it, the step computes again."""
    calls: list[int] = []

    # 1.5 s, not less: on a loaded machine the replay right after the first run has been seen
    # to come more than 0.3 s later.
    @step(ttl=1.5)
    def quote(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert run_sync(quote(1), storage=store).value == 1
    assert run_sync(quote(1), storage=store).value == 1
    time.sleep(1.55)
    assert run_sync(quote(1), storage=store).value == 2
    assert calls == [1, 1]


def test_expiry_survives_a_restart(tmp_path: Path) -> None:
    """The expiry is stored with the record: a new process (a new store object) sees it."""
    path = tmp_path / "wf.db"

    @step(ttl=datetime.timedelta(seconds=1.5))  # the checks before expiry fit in it when loaded
    def quote(x: int) -> str:
        return "fresh"

    with Durable(SQLiteKV(path), PickleCodec(), trust=["pickle"]) as first:
        run_sync(quote(1), storage=first)
    with Durable(SQLiteKV(path), PickleCodec(), trust=["pickle"]) as second:
        key = quote.key(1)
        assert second.lookup(key) == (True, "fresh")
        [meta] = second.describe()
        assert meta.expires_at is not None and meta.expires_at > time.time()
        time.sleep(1.55)
        assert second.lookup(key) == (False, None)
        assert second.get(key) is None and not second.exists(key)
        assert second.keys() == [key]  # still there, until gc
        assert second.gc() == 1 and second.keys() == []


def test_cachestore_ttl_and_cached_ttl_expire_too() -> None:
    """cachestore(ttl=) and cached(ttl=) store records that expire."""
    storage = InMemoryStorage()

    @do
    def program() -> Generator[Any, Any, Any]:
        yield cachestore("a", 1, ttl=1.0)  # read back below: alive for a loaded machine
        b = yield cached("b", lambda: perform(lambda: 2), ttl=1.0)
        return (yield cacheget("a")), b

    assert run_sync(program(), storage=storage).value == (1, 2)
    time.sleep(1.1)
    assert storage.lookup("a") == (False, None) and storage.lookup("b") == (False, None)


def test_ttl_on_a_storage_that_cannot_expire_records_is_an_error() -> None:
    """A storage without expiry support refuses ttl= clearly instead of keeping for ever."""

    class Plain:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}
            self.get = self.data.get
            self.keys = lambda: list(self.data)
            self.items = lambda: list(self.data.items())
            self.clear = self.data.clear

        def put(self, key: str, value: Any) -> None:
            self.data[key] = value

        def delete(self, key: str) -> bool:
            return self.data.pop(key, None) is not None

        def exists(self, key: str) -> bool:
            return key in self.data

    result = run_sync(cachestore("k", 1, ttl=5), storage=Plain())
    assert isinstance(result.error, StorageError) and "cannot keep an expiry" in str(
        result.error)


@pytest.mark.parametrize("ttl", [0, -1, "10", True])
def test_bad_ttl_is_refused(ttl: Any) -> None:
    """ttl must be a positive number of seconds or a timedelta."""
    with pytest.raises(InvalidOptionError, match="ttl"):
        step(ttl=ttl)(lambda: 1)


# -- seen from outside ----------------------------------------------------------------------


def test_snapshots_name_the_step_and_the_attempt() -> None:
    """While a retried step computes, the snapshot's K shows the step by name and which
    attempt is running."""
    seen: list[str] = []

    @step(name="fetch", retry=Retry(attempts=2, backoff=0))
    def fetch(x: int) -> int:
        if not seen:
            seen.append("first")
            raise ConnectionError("once")
        return x

    descriptions: list[str] = []

    def watch(snapshot: ExecutionSnapshot) -> None:
        descriptions.extend(f.description for f in snapshot.k_stack)

    assert run_sync(fetch(1), on_step=watch).value == 1
    assert any(d.startswith("step fetch()") for d in descriptions)
    assert any("fetch(x=1) (attempt 2 of 2)()" in d for d in descriptions)


def test_ls_shows_step_names_and_versions(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`doeff cache ls` lists a step's records under keys naming the step and version."""
    path = tmp_path / "wf.db"

    @step(name="report", version=2)
    def report(day: str) -> str:
        return day

    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        run_sync(report("mon"), storage=storage)
    assert cli_main(["cache", "ls", str(path)]) == 0
    out = capsys.readouterr().out
    assert "step:report@v2:" in out


