"""A progress bar on stderr, drawn only when stderr is a terminal (logs and pipes stay clean)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO

_WIDTH = 30
_EVERY = 0.1  # seconds between redraws: a redraw per record would cost more than the work
MIN_TOTAL = 1000  # shorter runs finish before a bar would be readable


class Progress:
    """`with Progress(total, "re-encoding") as bar: bar.advance()` — silent when not a TTY."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = total >= MIN_TOTAL and self.stream.isatty()
        self._next = 0.0

    def advance(self, n: int = 1) -> None:
        """Count `n` more items done; redraw at most every 0.1 s."""
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now >= self._next or self.done >= self.total:
                self._next = now + _EVERY
                self._draw()

    def _draw(self) -> None:
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {frac:4.0%} {self.done}/{self.total}")
        self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
