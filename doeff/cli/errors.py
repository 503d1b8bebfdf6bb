"""`CLIError`: a failure the command reports as one line on stderr, with its exit code."""

from __future__ import annotations

# Exit codes: 0 done; 1 the command ran but could not do all it was asked (a missing key, an
# unreadable record, a refused or failed migration); 2 the command could not start (bad usage,
# a missing or foreign store, an unknown scheme or codec) — 2 is also what argparse uses.
EXIT_FAILED = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A one-line message for stderr and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """`text` with its line breaks folded, so every error stays on one line."""
    return " ".join(text.split())
