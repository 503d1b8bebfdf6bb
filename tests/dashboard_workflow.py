"""A recorded workflow for the dashboard's browser tests and its latency benchmark, run as a
script in a process of its own:

    python tests/dashboard_workflow.py STORE RUN_ID [--steps N] [--pause S] [--stamps FILE]

It runs `ticking` with `run_workflow(..., run_id=RUN_ID)` on the SQLite store at STORE: N durable
steps, each sleeping S seconds, so the run stays alive long enough to be watched. With --stamps it
appends "INDEX WALL_CLOCK" to FILE right after each step ends (the benchmark's start of the clock).
It prints one JSON line with the run's outcome when it ends.

The K stack of the run shows the line marked below: tests look the marker up rather than
hard-coding a line number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, TextIO

from doeff import do, run_workflow, step
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV

WORKFLOW_FILE = Path(__file__).resolve()
MARKER = "# <- the dashboard's K stack shows this line"


def marked_line() -> int:
    """The line of this file holding the marker: where the running workflow waits."""
    for number, text in enumerate(WORKFLOW_FILE.read_text().splitlines(), start=1):
        if text.rstrip().endswith(MARKER) and "MARKER" not in text:
            return number
    raise AssertionError(f"no line ends with {MARKER!r} in {WORKFLOW_FILE}")


@step
def tick(i: int, run: str, pause: float) -> int:  # `run` keeps runs apart: no step is a hit
    time.sleep(pause)
    return i


@do
def ticking(run: str, n: int, pause: float, stamps: TextIO | None) -> Generator[Any, Any, int]:
    total = 0
    for i in range(n):
        total += yield tick(i, run, pause)  # <- the dashboard's K stack shows this line
        if stamps is not None:
            stamps.write(f"{i} {time.time():.6f}\n")
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store")
    parser.add_argument("run_id")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.1)
    parser.add_argument("--stamps", type=Path, default=None)
    args = parser.parse_args(argv)

    stamps = None if args.stamps is None else args.stamps.open("a", buffering=1)
    program = ticking(args.run_id, args.steps, args.pause, stamps)
    with Durable(SQLiteKV(args.store), MsgpackCodec()) as storage:
        result = run_workflow(program, storage=storage, run_id=args.run_id).wait()
    if stamps is not None:
        stamps.close()
    print(json.dumps({"ok": result.is_ok(),
                      "error": None if result.is_ok() else type(result.error).__name__}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
