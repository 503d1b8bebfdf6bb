"""Cache effects on the machine: put/get/overwrite/exists/delete, replay, swappable storage
(the feature request's test cases and acceptance criteria), `cached`, and failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doeff import do, run_sync
from doeff.effects import catch, perform, put, safe
from doeff.effects.cache import (
    CacheGet,
    cached,
    cachedelete,
    cacheexists,
    cacheget,
    cacheput,
)
from doeff.errors import DoeffError, EncodeError, InvalidKeyError, NotAProgramError, StorageError
from doeff.serde import MsgpackCodec, PickleCodec
from doeff.storage import Durable, DurableStorage, InMemoryKV, InMemoryStorage, SQLiteKV
from doeff.storage.sqlite import SQLiteStorage


@pytest.fixture(params=["memory", "sqlite-pickle", "sqlite-msgpack"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Each kind of storage a workflow may be given."""
    if request.param == "memory":
        yield InMemoryStorage()
    elif request.param == "sqlite-pickle":
        with SQLiteStorage(tmp_path / "wf.db") as s:
            yield s
    else:
        with Durable(SQLiteKV(str(tmp_path / "wf.db")), MsgpackCodec()) as s:
            yield s


@do
def crud() -> Any:
    missing = yield cacheget("k")
    yield cacheput("k", {"v": 1})
    first = yield cacheget("k")
    yield cacheput("k", {"v": 2})
    second = yield cacheget("k")
    present = yield cacheexists("k")
    absent = yield cacheexists("nope")
    deleted = yield cachedelete("k")
    deleted_again = yield cachedelete("k")
    gone = yield cacheget("k")
    return missing, first, second, present, absent, deleted, deleted_again, gone


def test_cache_put_get_overwrite_exists_delete_on_every_storage(storage: Any) -> None:
    """cacheput/cacheget/cacheexists/cachedelete answer as the feature request says, on memory
    and SQLite storage alike."""
    assert run_sync(crud(), storage=storage).value == (
        None, {"v": 1}, {"v": 2}, True, False, True, False, None
    )
    assert isinstance(storage, DurableStorage)


def test_storage_is_swappable_per_run() -> None:
    """Each run uses the storage it is given; the default is a fresh in-memory store."""
    a, b = InMemoryStorage(), InMemoryStorage()

    @do
    def write(v: int) -> Any:
        yield cacheput("k", v)
        return (yield cacheget("k"))

    run_sync(write(1), storage=a)
    run_sync(write(2), storage=b)
    assert (a.get("k"), b.get("k")) == (1, 2)

    @do
    def read() -> Any:
        return (yield cacheget("k"))

    assert run_sync(write(3)).value == 3
    assert run_sync(read()).value is None  # a new default store each run


def test_replay_skips_expensive_step(tmp_path: Path) -> None:
    """On the second run the cached step is read back and its function not called."""
    calls: list[int] = []

    def expensive() -> list[int]:
        calls.append(1)
        return [1, 2, 3]

    @do
    def workflow() -> Any:
        rows = yield cacheget("rows")
        if rows is None:
            rows = yield perform(expensive)
            yield cacheput("rows", rows)
        return sum(rows)

    for _ in range(3):
        with SQLiteStorage(tmp_path / "wf.db") as s:
            assert run_sync(workflow(), storage=s).value == 6
    assert calls == [1]


def test_cached_computes_only_on_miss_and_caches_none() -> None:
    """cached() calls compute once, even when the value is None (a stored None is a hit)."""
    calls: list[str] = []

    def compute(tag: str) -> Any:
        calls.append(tag)
        return None

    @do
    def workflow() -> Any:
        a = yield cached("none-step", lambda: perform(compute, "a"))
        b = yield cached("none-step", lambda: perform(compute, "b"))
        return a, b

    storage = InMemoryStorage()
    assert run_sync(workflow(), storage=storage).value == (None, None)
    assert run_sync(workflow(), storage=storage).value == (None, None)
    assert calls == ["a"]
    assert storage.exists("none-step")


def test_cached_accepts_a_program_and_rejects_plain_values() -> None:
    """compute may return a program; returning a plain value is a misuse that even safe()
    does not swallow: NotAProgramError, a TypeError, pointing at perform()."""

    @do
    def sub() -> Any:
        return (yield perform(lambda: "from program"))

    @do
    def workflow() -> Any:
        ok = yield cached("p", lambda: sub())
        yield put("ok", ok)
        return (yield safe(cached("q", lambda: 42)))

    result = run_sync(workflow())
    assert result.state["ok"] == "from program"
    assert isinstance(result.error, NotAProgramError) and isinstance(result.error, TypeError)
    assert "perform(fn" in str(result.error)


# Each cache effect's constructor, taking a key of any type (what an untyped caller may pass).
KEYED_CONSTRUCTORS: dict[str, Callable[[Any], object]] = {
    "cacheget": cacheget,
    "cacheput": lambda key: cacheput(key, 1),
    "cachedelete": cachedelete,
    "cacheexists": cacheexists,
    "cached": lambda key: cached(key, lambda: perform(int)),
}


@pytest.mark.parametrize("build", KEYED_CONSTRUCTORS.values(), ids=KEYED_CONSTRUCTORS.keys())
def test_non_str_key_is_a_type_error_when_the_effect_is_built(
    build: Callable[[Any], object],
) -> None:
    """A non-str key fails at construction with a TypeError that is also a DoeffError."""
    for key in (1, b"k", None, ("a",)):
        with pytest.raises(TypeError) as info:
            build(key)
        assert isinstance(info.value, InvalidKeyError) and isinstance(info.value, DoeffError)
        assert "must be a str" in str(info.value)


def test_encode_error_raised_at_yield_and_previous_value_kept(tmp_path: Path) -> None:
    """An unserializable value raises EncodeError at the cacheput; the old value stays."""

    @do
    def workflow() -> Any:
        yield cacheput("k", [1, 2])
        try:
            yield cacheput("k", [1, object()])
        except EncodeError as err:
            message = str(err)
        else:
            message = ""
        return (yield cacheget("k")), message

    with Durable(SQLiteKV(str(tmp_path / "wf.db")), MsgpackCodec()) as s:
        value, message = run_sync(workflow(), storage=s).value
    assert value == [1, 2]
    assert "object" in message


class FailingStorage(InMemoryStorage):
    """A storage whose writes fail the way a broken disk would."""

    def put(self, key: str, value: Any) -> None:
        raise OSError(28, "No space left on device")


def test_storage_failure_is_a_doeff_error_at_the_yield_with_cause() -> None:
    """A non-doeff storage exception reaches the program as StorageError chained from it."""

    @do
    def workflow() -> Any:
        try:
            yield cacheput("k", 1)
        except StorageError as err:
            return err
        return None

    err = run_sync(workflow(), storage=FailingStorage()).value
    assert isinstance(err, StorageError)
    assert "No space left on device" in str(err) and "cacheput('k')" in str(err)
    assert isinstance(err.__cause__, OSError)


def test_storage_failure_caught_by_catch_effect_and_fails_run_when_uncaught() -> None:
    """The catch effect sees the storage error; uncaught, it ends the run pointing at the yield."""

    @do
    def put_it() -> Any:
        yield cacheput("k", 1)  # failing-put

    @do
    def guarded() -> Any:
        return (yield catch(put_it(), lambda e: type(e).__name__))

    assert run_sync(guarded(), storage=FailingStorage()).value == "StorageError"
    result = run_sync(put_it(), storage=FailingStorage())
    assert isinstance(result.error, StorageError)
    assert result.traceback is not None
    assert result.traceback.program_frames[-1].code.endswith("# failing-put")


def test_closed_store_error_is_raised_in_program(tmp_path: Path) -> None:
    """Using a closed store raises a StorageError inside the program."""
    s = Durable(SQLiteKV(str(tmp_path / "wf.db")), PickleCodec())
    s.close()

    @do
    def workflow() -> Any:
        return (yield safe(cacheget("k")))

    outcome = run_sync(workflow(), storage=s).value
    assert isinstance(outcome.error, StorageError)


def test_sqlite_workflow_persists_across_process_restart(tmp_path: Path) -> None:
    """A value cached by one process is read back by a new process."""
    db = tmp_path / "wf.db"
    script = textwrap.dedent(f"""
        import sys
        from doeff import do, run_sync
        from doeff.effects.cache import cached
        from doeff.effects import perform
        from doeff.storage.sqlite import SQLiteStorage

        @do
        def wf():
            return (yield cached("step", lambda: perform(lambda: sys.argv[1])))

        with SQLiteStorage({str(db)!r}) as s:
            print(run_sync(wf(), storage=s).value)
    """)
    first = subprocess.run([sys.executable, "-c", script, "first"], capture_output=True,
                           text=True, check=True)
    second = subprocess.run([sys.executable, "-c", script, "second"], capture_output=True,
                            text=True, check=True)
    assert (first.stdout.strip(), second.stdout.strip()) == ("first", "first")


def test_cache_effects_answer_through_in_memory_kv_with_every_codec() -> None:
    """Durable over InMemoryKV serves the cache effects with each codec."""
    from doeff.serde import CloudpickleCodec, JSONCodec

    for codec in (PickleCodec(), CloudpickleCodec(), MsgpackCodec(), JSONCodec()):
        storage = Durable(InMemoryKV(), codec)
        assert run_sync(crud(), storage=storage).value[1:3] == ({"v": 1}, {"v": 2})


def test_cache_effects_cannot_be_changed_after_construction() -> None:
    """Effects carry data only and cannot be changed after construction."""
    eff = CacheGet("k")
    with pytest.raises(AttributeError):
        eff.key = "other"  # type: ignore[misc]


class RacingStorage:
    """A storage of the seed's protocol only (no `lookup`), where another worker writes the
    step right after this worker's first miss."""

    def __init__(self) -> None:
        self.inner = InMemoryStorage()
        self.put, self.delete, self.exists = self.inner.put, self.inner.delete, self.inner.exists
        self.keys, self.items, self.clear = self.inner.keys, self.inner.items, self.inner.clear

    def get(self, key: str) -> Any:
        value = self.inner.get(key)
        if value is None and not self.inner.exists(key):
            self.inner.put(key, "written by the other worker")
        return value


def test_cached_returns_the_value_another_worker_stored_between_lookups() -> None:
    """On a storage without `lookup`, cached() reads get then exists; if the step appears
    between the two, it answers that value, not None."""
    calls: list[int] = []

    @do
    def workflow() -> Any:
        return (yield cached("step", lambda: perform(lambda: calls.append(1))))

    assert run_sync(workflow(), storage=RacingStorage()).value == "written by the other worker"
    assert calls == []
