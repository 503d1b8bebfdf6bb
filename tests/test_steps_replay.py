"""Strict replay: a step or cacheget that misses raises ReplayMissError instead of computing,
and says why (which records of the step exist, and which part of their keys differs)."""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from doeff import do, run_sync, run_workflow, step
from doeff.effects import cached, cacheget, cacheput, gather, perform
from doeff.errors import InvalidOptionError, ReplayMissError
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, InMemoryStorage, SQLiteKV


@pytest.fixture
def storage(tmp_path: Path) -> Any:
    """A SQLite store, recorded into by the tests before they replay."""
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        yield store


def _ask(question: str, temperature: float = 0.0) -> str:
    raise AssertionError("replay must not call the model")


def test_recorded_steps_replay_without_computing(storage: Any) -> None:
    """Everything recorded replays under strict mode; nothing computes."""
    calls: list[str] = []

    @step(name="llm")
    def ask(question: str, temperature: float = 0.0) -> str:
        calls.append(question)
        return f"answer to {question}"

    recorded = run_sync(gather(ask("a"), ask("b")), storage=storage)
    replayed = run_sync(gather(ask("a"), ask(question="b", temperature=0.0)), storage=storage,
                        replay="strict")
    assert replayed.value == recorded.value == ["answer to a", "answer to b"]
    assert calls == ["a", "b"]


def test_a_new_argument_misses_and_names_the_argument(storage: Any) -> None:
    """A call with a different argument raises ReplayMissError naming that argument, and
    computes nothing."""
    record = step(name="llm")(lambda question, temperature=0.0: "x")
    run_sync(record("a"), storage=storage)
    replay = step(name="llm")(_ask)
    error = run_sync(replay("a", temperature=0.7), storage=storage, replay="strict").error
    assert isinstance(error, ReplayMissError)
    message = str(error)
    assert "llm(question='a', temperature=0.7)" in message
    assert "1 record of step llm exists" in message
    assert "differs in argument temperature" in message
    assert "question" not in message.split("differs in")[1]


def test_a_new_version_or_code_misses_and_says_so(storage: Any) -> None:
    """The explanation names a version change and a code fingerprint change."""
    run_sync(step(name="llm", version=1)(lambda question: "x")("a"), storage=storage)
    v2 = step(name="llm", version=2)(lambda question: "y")
    error = run_sync(v2("a"), storage=storage, replay="strict").error
    assert "differs in version (recorded v1, now v2)" in str(error)
    coded = step(name="llm", version=1, code=True)(lambda question: "z")
    error = run_sync(coded("a"), storage=storage, replay="strict").error
    assert "differs in code fingerprint (recorded without code=True, now " in str(error)


def test_nearest_records_come_first(storage: Any) -> None:
    """With several records of the step, the one differing least is listed first."""
    rec = step(name="f")(lambda a, b: 0)
    run_sync(gather(rec(1, 1), rec(2, 2)), storage=storage)
    error = str(run_sync(rec(1, 3), storage=storage, replay="strict").error)
    first, second = error.split("differs in")[1:3]
    assert first.strip().startswith("argument b;")
    assert second.strip().startswith("arguments a, b")


def test_an_expired_record_is_a_miss_that_says_it_expired(storage: Any) -> None:
    """Under strict replay an expired record raises, saying when it expired."""
    quote = step(name="quote", ttl=0.1)(lambda x: x)
    run_sync(quote(1), storage=storage)
    time.sleep(0.15)
    error = run_sync(quote(1), storage=storage, replay="strict").error
    assert isinstance(error, ReplayMissError) and "expired at" in str(error)


def test_a_step_never_recorded_says_there_is_none(storage: Any) -> None:
    """A step with no record at all says so."""
    error = run_sync(step(name="nothing")(lambda: 1)(), storage=storage, replay="strict").error
    assert "no record of step nothing at all" in str(error)


def test_cacheget_and_cached_miss_too_but_a_stored_none_is_a_hit(storage: Any) -> None:
    """Hand-written keys replay strictly too: cacheget of a missing key raises, a stored None
    is answered, and cached() raises instead of computing."""

    @do
    def record() -> Generator[Any, Any, None]:
        yield cacheput("none", None)

    run_sync(record(), storage=storage)
    assert run_sync(cacheget("none"), storage=storage, replay="strict").value is None
    error = run_sync(cacheget("missing"), storage=storage, replay="strict").error
    assert isinstance(error, ReplayMissError) and "'missing'" in str(error)
    called: list[int] = []
    program = cached("rows", lambda: perform(lambda: called.append(1)))
    assert isinstance(run_sync(program, storage=storage, replay="strict").error, ReplayMissError)
    assert called == []


def test_run_workflow_replays_strictly_too() -> None:
    """run_workflow(replay="strict") raises on a miss like run_sync."""
    storage = InMemoryStorage()
    execution = run_workflow(step(name="s")(lambda: 1)(), storage=storage, replay="strict")
    result = execution.wait(10)
    assert isinstance(result.error, ReplayMissError)
    assert "no record of step s at all" in str(result.error)


def test_a_storage_that_cannot_list_records_still_misses_loudly() -> None:
    """A storage without describe() cannot explain, but still raises."""

    class Plain:
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        def get(self, key: str) -> Any:
            return self.data.get(key)

        def put(self, key: str, value: Any) -> None:
            self.data[key] = value

        def delete(self, key: str) -> bool:
            return self.data.pop(key, None) is not None

        def exists(self, key: str) -> bool:
            return key in self.data

        def keys(self) -> list[str]:
            return list(self.data)

        def items(self) -> list[tuple[str, Any]]:
            return list(self.data.items())

        def clear(self) -> None:
            self.data.clear()

    error = run_sync(step(name="s")(lambda: 1)(), storage=Plain(), replay="strict").error
    assert isinstance(error, ReplayMissError) and "cannot list its records" in str(error)


def test_replay_takes_strict_or_none() -> None:
    """Any other replay= is InvalidOptionError, before anything runs."""
    with pytest.raises(InvalidOptionError, match="replay"):
        run_sync(perform(lambda: 1), replay="lenient")
