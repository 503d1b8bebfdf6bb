"""OpenTelemetry spans of a run given `tracer=`, read back from the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from doeff import do, run_sync
from doeff.effects import gather, perform, spawn, wait
from doeff.effects.cache import cached
from doeff.errors import InvalidOptionError
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV


@pytest.fixture
def traced() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    """A tracer whose finished spans land in an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("doeff-tests"), exporter
    provider.shutdown()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Any]:
    """A msgpack store on a SQLite file."""
    with Durable(SQLiteKV(tmp_path / "wf.db"), MsgpackCodec()) as store:
        yield store


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


@do
def leaf(name: str) -> Generator[Any, Any, str]:
    value: str = yield cached(name, lambda: perform(lambda: name.upper()))
    return value


@do
def outer() -> Generator[Any, Any, Any]:
    first = yield leaf("first")
    # A step whose computation gathers two tasks: their steps belong under it.
    both = yield cached("both", lambda: gather(leaf("left"), leaf("right")))
    return first, both


def test_a_span_per_run_and_per_step_with_their_attributes(traced: Any, storage: Any) -> None:
    """The run's span holds a span per step: key, outcome, codec, bytes, duration; a second run
    reads the steps back as hits."""
    tracer, exporter = traced
    assert run_sync(leaf("k"), storage=storage, tracer=tracer, run_id="traced").value == "K"
    spans = by_name(exporter.get_finished_spans())
    run, step = spans["doeff run leaf"], spans["doeff step k"]
    assert run.attributes is not None and run.attributes["run.id"] == "traced"
    assert parent_of(step) == span_id(run)
    assert step.attributes is not None
    assert step.attributes["step.outcome"] == "computed"
    assert step.attributes["step.codec"] == "msgpack"
    assert isinstance(step.attributes["step.bytes"], int)
    assert step.attributes["step.bytes"] > 0
    assert float(step.attributes["step.seconds"]) >= 0  # type: ignore[arg-type]
    exporter.clear()
    run_sync(leaf("k"), storage=storage, tracer=tracer)
    again = by_name(exporter.get_finished_spans())["doeff step k"]
    assert again.attributes is not None and again.attributes["step.outcome"] == "hit"


def test_steps_of_concurrent_tasks_sit_under_the_step_that_spawned_them(
        traced: Any, storage: Any) -> None:
    """A step computed by gathering two tasks is the parent of both tasks' steps; a step
    before it is a sibling under the run."""
    tracer, exporter = traced
    assert run_sync(outer(), storage=storage, tracer=tracer).is_ok()
    spans = by_name(exporter.get_finished_spans())
    run, both = spans["doeff run outer"], spans["doeff step both"]
    assert parent_of(spans["doeff step first"]) == span_id(run)
    assert parent_of(both) == span_id(run)
    assert parent_of(spans["doeff step left"]) == span_id(both)
    assert parent_of(spans["doeff step right"]) == span_id(both)
    assert both.start_time is not None and both.end_time is not None
    for name in ("left", "right"):
        inner = spans[f"doeff step {name}"]
        assert inner.start_time is not None and inner.end_time is not None
        assert both.start_time <= inner.start_time and inner.end_time <= both.end_time


def test_a_task_spawned_after_a_step_ended_is_not_its_child(traced: Any, storage: Any) -> None:
    """Parenting follows when a task was spawned: a task spawned inside a step's computation
    stays under that step even when its own step runs after the step ended; one spawned
    after it sits under the run."""
    tracer, exporter = traced

    handles: list[Any] = []

    @do
    def start_inside() -> Generator[Any, Any, Any]:
        handles.append((yield spawn(leaf("inside"))))
        return 1  # the step's value; the task runs on after the step is stored

    @do
    def spawner() -> Generator[Any, Any, Any]:
        yield cached("early", start_inside)
        late = yield spawn(leaf("outside"))
        return (yield wait(handles[0])), (yield wait(late))

    assert run_sync(spawner(), storage=storage, tracer=tracer).is_ok()
    spans = by_name(exporter.get_finished_spans())
    assert parent_of(spans["doeff step inside"]) == span_id(spans["doeff step early"])
    run = next(span for name, span in spans.items() if name.startswith("doeff run"))
    assert parent_of(spans["doeff step outside"]) == span_id(run)


def test_a_step_that_cannot_be_stored_and_a_failed_run_are_errors(
        traced: Any, storage: Any) -> None:
    """A value the codec refuses makes its step's span an error with the exception; the run's
    span fails with the run."""
    tracer, exporter = traced
    result = run_sync(cached("bad", lambda: perform(object)), storage=storage, tracer=tracer)
    assert result.is_err()
    spans = by_name(exporter.get_finished_spans())
    step = spans["doeff step bad"]
    run = next(span for name, span in spans.items() if name.startswith("doeff run"))
    assert step.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in step.events)
    assert run.status.status_code is StatusCode.ERROR


def test_a_tracer_that_is_not_one_is_refused() -> None:
    """tracer= takes an OpenTelemetry Tracer; anything else is an InvalidOptionError."""
    with pytest.raises(InvalidOptionError, match="tracer= must be an OpenTelemetry Tracer"):
        run_sync(perform(lambda: 1), tracer="not a tracer")
