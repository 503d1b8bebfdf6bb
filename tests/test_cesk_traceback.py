"""Tracebacks: the program frames pending at an error, with the user's own files and lines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from doeff import CESKResult, do, run_sync
from doeff.cesk_traceback import CapturedTraceback, CodeLocation
from doeff.effects import catch, finally_, local, perform

_LINES = Path(__file__).read_text().splitlines()


def _line_of(marker: str) -> int:
    """The line number in this file of the line that ends with `# <marker>`."""
    matches = [i + 1 for i, text in enumerate(_LINES) if text.rstrip().endswith(f"# {marker}")]
    assert len(matches) == 1, marker
    return matches[0]


def traceback_of(result: CESKResult[Any]) -> CapturedTraceback:
    """The traceback of a failed run (failing the test if the run has none)."""
    assert result.traceback is not None, f"no traceback: the run answered {result!r}"
    return result.traceback


@do
def parse(text: str) -> Any:
    yield perform(lambda: None)
    return int(text)  # raise-site


@do
def load(text: str) -> Any:
    value = yield parse(text)  # load-waits
    return value


@do
def pipeline() -> Any:
    out = yield local({"stage": "load"}, load("not a number"))  # pipeline-waits
    return out


def test_traceback_lists_pending_program_frames_with_user_lines() -> None:
    """The captured frames are pipeline -> load -> parse at this file's lines, outermost first."""
    result = run_sync(pipeline())
    assert isinstance(result.error, ValueError)
    frames = traceback_of(result).program_frames
    assert [(f.filename, f.lineno, f.function) for f in frames] == [
        (__file__, _line_of("pipeline-waits"), "pipeline"),
        (__file__, _line_of("load-waits"), "load"),
        (__file__, _line_of("raise-site"), "parse"),
    ]
    assert frames[-1].code == "return int(text)  # raise-site"
    assert all(isinstance(f, CodeLocation) for f in frames)


def test_traceback_never_shows_doeff_internals() -> None:
    """No program frame and no Python traceback line points into the doeff package."""
    import doeff

    pkg = os.path.dirname(doeff.__file__)
    result = run_sync(pipeline())
    text = str(traceback_of(result))
    assert pkg not in text
    assert all(not f.filename.startswith(pkg) for f in traceback_of(result).program_frames)


def test_traceback_str_reads_like_python() -> None:
    """str(traceback) shows File/line/function lines, the source text and the exception."""
    text = str(traceback_of(run_sync(pipeline())))
    assert f'File "{__file__}", line {_line_of("raise-site")}, in parse' in text
    assert "return int(text)  # raise-site" in text
    assert "ValueError: invalid literal for int()" in text
    assert text.index("pipeline") < text.index("in load") < text.index("in parse")


@do
def failing_effect() -> Any:
    yield perform(int, "x")  # effect-site


@do
def outer_effect() -> Any:
    return (yield failing_effect())  # outer-effect-site


def test_handler_error_points_at_the_yield_that_asked() -> None:
    """An error raised by a handler is located at the user's yield line."""
    frames = traceback_of(run_sync(outer_effect())).program_frames
    assert [(f.lineno, f.function) for f in frames] == [
        (_line_of("outer-effect-site"), "outer_effect"),
        (_line_of("effect-site"), "failing_effect"),
    ]


@do
def rethrow() -> Any:
    try:
        yield parse("bad")  # rethrow-waits
    except ValueError as err:
        raise RuntimeError("wrapped") from err  # rethrow-site


def test_a_new_error_raised_while_handling_is_located_where_raised() -> None:
    """A new exception raised in an except block is located at its own raise line."""
    frames = traceback_of(run_sync(rethrow())).program_frames
    assert [f.lineno for f in frames] == [_line_of("rethrow-site")]


def test_caught_errors_leave_no_traceback_on_success() -> None:
    """A run whose errors were all caught is ok and has no traceback."""

    @do
    def prog() -> Any:
        return (yield catch(pipeline(), lambda e: "fine"))

    result = run_sync(prog())
    assert result.value == "fine"
    assert result.traceback is None
    assert result.format_error() == ""


@do
def plain_parse(text: str) -> int:
    return int(text)  # plain-raise-site


@do
def calls_plain() -> Any:
    return (yield plain_parse("nope"))  # calls-plain-site


def test_a_raising_non_generator_body_is_listed_where_it_raised() -> None:
    """A @do body that never yields is the last program frame, at its raising line, and the
    Python traceback starts there instead of repeating the programs waiting on it."""
    result = run_sync(calls_plain())
    assert isinstance(result.error, ValueError)
    tb = traceback_of(result)
    assert [(f.lineno, f.function) for f in tb.program_frames] == [
        (_line_of("calls-plain-site"), "calls_plain"),
        (_line_of("plain-raise-site"), "plain_parse"),
    ]
    python = tb.python_traceback.splitlines()
    assert python[0] == "Traceback (most recent call last):"
    assert python[1].endswith(f"line {_line_of('plain-raise-site')}, in plain_parse")
    assert "calls_plain" not in tb.python_traceback
    assert python[-1].startswith("ValueError: invalid literal")


@do
def cleanup_with_its_own_caught_error() -> Any:
    try:
        yield perform(int, "also bad")
    except ValueError:
        pass


@do
def fails_through_cleanup() -> Any:
    return (yield finally_(parse("bad"), cleanup_with_its_own_caught_error()))  # through-cleanup


def test_an_error_caught_during_cleanup_does_not_replace_the_traceback() -> None:
    """An error raised and caught inside a finally_ cleanup leaves the first error's frames."""
    result = run_sync(fails_through_cleanup())
    assert isinstance(result.error, ValueError) and "'bad'" in str(result.error)
    frames = traceback_of(result).program_frames
    assert [(f.lineno, f.function) for f in frames] == [
        (_line_of("through-cleanup"), "fails_through_cleanup"),
        (_line_of("raise-site"), "parse"),
    ]


def _plain_generator() -> Any:
    yield 1
    raise KeyError("inside a plain generator")  # plain-gen-raise


def _consumes_plain_generator() -> list[Any]:
    return list(_plain_generator())  # consumes-plain


@do
def performs_consumer() -> Any:
    return (yield perform(_consumes_plain_generator))  # performs-consumer


def test_a_plain_generator_inside_a_function_is_not_a_program_frame() -> None:
    """Only programs are program frames; the function that iterated the generator stays in the
    Python traceback."""
    result = run_sync(performs_consumer())
    frames = traceback_of(result).program_frames
    assert [f.lineno for f in frames] == [_line_of("performs-consumer")]
    text = traceback_of(result).python_traceback
    assert f"line {_line_of('consumes-plain')}, in _consumes_plain_generator" in text
    assert f"line {_line_of('plain-gen-raise')}, in _plain_generator" in text


SHARED = LookupError("one instance, raised by every run")


def _raise_shared() -> None:
    raise SHARED


@do
def raises_shared() -> Any:
    yield perform(_raise_shared)  # raises-shared


def test_an_exception_instance_raised_again_shows_only_this_runs_frames() -> None:
    """Raising the same exception object in several runs does not pile up older runs' frames."""
    for _ in range(3):
        result = run_sync(raises_shared())
        assert result.error is SHARED
    frames = traceback_of(result).program_frames
    assert [f.lineno for f in frames] == [_line_of("raises-shared")]
