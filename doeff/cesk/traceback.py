"""Where things happened: source locations of program frames, and tracebacks captured from K.

A Python traceback of a failed doeff run would show the machine's loop, not the user's programs:
the generators that were waiting on each other are not on the Python stack. So when an exception
first appears, the machine records the chain of program frames pending on K, each as the
user's file and line where that generator is suspended.
"""

from __future__ import annotations

import linecache
import os
import traceback as _tb
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import CodeType, FrameType, GeneratorType, TracebackType
from typing import Any

# Frames whose code lives in the doeff package are machinery; users never need to see them.
_DOEFF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_APPS_DIR = os.path.join(_DOEFF_DIR, "cli") + os.sep


def short_repr(obj: Any, width: int = 60) -> str:
    """`repr(obj)`, cut to `width` characters with "..." (for messages and snapshots)."""
    text = repr(obj)
    return text if len(text) <= width else text[: width - 3] + "..."


def is_internal(filename: str) -> bool:
    """True for code inside the doeff library itself (not its command-line applications)."""
    # The shell's programs (the demo's workflow) are applications of doeff, written as a user
    # writes them: their K stacks and tracebacks show their own lines like any user's.
    return filename.startswith(_DOEFF_DIR) and not filename.startswith(_APPS_DIR)


@dataclass(frozen=True, slots=True)
class CodeLocation:
    """A line of source: file, line number, function name and the line's text."""

    filename: str
    lineno: int
    function: str
    code: str

    @classmethod
    def of(cls, code: CodeType, lineno: int) -> CodeLocation:
        text = linecache.getline(code.co_filename, lineno).strip()
        return cls(code.co_filename, lineno, code.co_name, text)

    def short(self) -> str:
        """`file.py:42`, the form used in snapshot descriptions."""
        return f"{os.path.basename(self.filename)}:{self.lineno}"

    def __str__(self) -> str:
        head = f'  File "{self.filename}", line {self.lineno}, in {self.function}'
        return f"{head}\n    {self.code}" if self.code else head


def frame_chain(gen: Any) -> Iterator[FrameType]:
    """The frames of `gen` and of whatever it delegates to via `yield from`, outermost first."""
    while gen is not None:
        frame = getattr(gen, "gi_frame", None) or getattr(gen, "cr_frame", None)
        if frame is None:
            return
        yield frame
        gen = getattr(gen, "gi_yieldfrom", None) or getattr(gen, "cr_await", None)


# (code, line): a location not yet turned into a CodeLocation, which costs a source look-up.
CodeMark = tuple[CodeType, int]


def suspended_marks(gen: GeneratorType[Any, Any, Any]) -> list[CodeMark]:
    """(code, line) where `gen` (and any `yield from` chain below it) waits, user code only."""
    return [
        (f.f_code, f.f_lineno)
        for f in frame_chain(gen)
        if not is_internal(f.f_code.co_filename)
    ]


def suspended_at(gen: GeneratorType[Any, Any, Any]) -> list[CodeLocation]:
    """User locations where `gen` (and any `yield from` chain below it) is suspended."""
    return [CodeLocation.of(code, line) for code, line in suspended_marks(gen)]


def line_at(code: CodeType, offset: int) -> int | None:
    """The source line of the instruction at bytecode `offset` in `code` (as `f_lineno` would
    say for a frame stopped there), or None for an offset with no line."""
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line
    return None


def raised_line(code: CodeType, tb: TracebackType | None) -> int | None:
    """The line of `code` that an exception left through, read from its traceback."""
    found = None
    while tb is not None:
        if tb.tb_frame.f_code is code:
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def raised_at(code: CodeType, tb: TracebackType | None) -> CodeLocation | None:
    """`raised_line` as a CodeLocation."""
    line = raised_line(code, tb)
    return None if line is None else CodeLocation.of(code, line)


def user_python_traceback(exc: BaseException, origin: CodeType | None = None) -> str:
    """The Python traceback of `exc` without doeff's own frames.

    With `origin` (the code of the generator that raised), it starts at that generator: the
    programs that were waiting on it are already listed as program frames.
    """
    entries = list(_tb.walk_tb(exc.__traceback__))
    if origin is not None:
        starts = [i for i, (frame, _) in enumerate(entries) if frame.f_code is origin]
        if starts:
            entries = entries[starts[-1] :]
    summary = _tb.StackSummary.extract(iter(entries))
    kept = _tb.StackSummary.from_list([fs for fs in summary if not is_internal(fs.filename)])
    lines = ["Traceback (most recent call last):\n", *kept.format()]
    lines.extend(_tb.format_exception_only(type(exc), exc))
    return "".join(lines)


class CapturedTraceback:
    """The program frames pending when `error` happened (outermost first), and its Python trace.

    Built on the error path of every raise, caught ones included, so it keeps bare (code, line)
    marks and looks the source lines up only when someone reads `program_frames`.
    """

    __slots__ = ("_frames", "_marks", "error", "origin")

    def __init__(
        self, marks: Iterable[CodeMark], error: BaseException, origin: CodeType | None = None
    ) -> None:
        self._marks = tuple(marks)
        self._frames: tuple[CodeLocation, ...] | None = None
        self.error = error
        self.origin = origin

    @property
    def marks(self) -> tuple[CodeMark, ...]:
        """The (code, line) of each program frame, outermost first, not yet looked up."""
        return self._marks

    @property
    def program_frames(self) -> tuple[CodeLocation, ...]:
        """Where each pending program waited, outermost first (the last one raised)."""
        if self._frames is None:
            self._frames = tuple(CodeLocation.of(code, line) for code, line in self._marks)
        return self._frames

    @property
    def python_traceback(self) -> str:
        """The Python traceback of the raise, library frames left out."""
        return user_python_traceback(self.error, self.origin)

    def __str__(self) -> str:
        lines = ["Program frames (most recent call last):"]
        lines.extend(str(loc) for loc in self.program_frames)
        lines.append(self.python_traceback.rstrip("\n"))
        return "\n".join(lines)
