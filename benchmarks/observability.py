"""Cost of observability on the interpreter's get/put loop, as ratios measured in the same run.

(a) `run_sync` with no observer; (b) `run_sync` with a no-op `on_step` (a snapshot per step);
(c) `run_workflow` with another thread calling `monitor.snapshot()` at 100 Hz. Goals: (b)/(a) at
most 3x, (c)/(a) at most 1.1x.

    python benchmarks/observability.py [--quick]
"""

from __future__ import annotations

import argparse
import threading
import time

from interpreter import best_of, getput  # the same loop and timer as the machine's benchmark

from doeff import run_sync
from doeff.cesk_observability import ExecutionSnapshot, run_workflow


def plain(n: int) -> None:
    """(a): no observer at all."""
    run_sync(getput(n))


def noop(_: ExecutionSnapshot) -> None:
    """The cheapest possible `on_step`."""


def with_on_step(n: int) -> None:
    """(b): a snapshot handed to a no-op callback after every step."""
    run_sync(getput(n), on_step=noop)


def polled(n: int, hz: float = 100.0) -> int:
    """(c): a background workflow whose monitor another thread polls at `hz`; returns the polls."""
    execution = run_workflow(getput(n))
    polls = 0

    def poll() -> None:
        nonlocal polls
        while not execution.done:
            execution.monitor.snapshot()
            polls += 1
            time.sleep(1.0 / hz)

    poller = threading.Thread(target=poll)
    poller.start()
    execution.wait()
    poller.join()
    return polls


def main(argv: list[str] | None = None) -> None:
    """Print per-step costs of (a), (b), (c) and their ratios to (a)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    n = 50_000 if args.quick else 200_000
    repeat = 3 if args.quick else 5
    steps = 2 * n + 1
    # Interleave the three so drift on a shared machine hits them alike.
    times: dict[str, float] = {"a": float("inf"), "b": float("inf"), "c": float("inf")}
    polls = 0
    for _ in range(repeat):
        times["a"] = min(times["a"], best_of(lambda: plain(n), 1))
        times["b"] = min(times["b"], best_of(lambda: with_on_step(n), 1))
        start = time.perf_counter()
        polls = polled(n)
        times["c"] = min(times["c"], time.perf_counter() - start)
    labels = {
        "a": "(a) run_sync, no observer",
        "b": "(b) run_sync, no-op on_step",
        "c": "(c) run_workflow, polled 100 Hz",
    }
    print(f"get/put loop, {steps} steps, best of {repeat}")
    print(f"{'case':34} {'µs/step':>8} {'ratio':>7}")
    for key, label in labels.items():
        per_step = times[key] / steps * 1e6
        print(f"{label:34} {per_step:8.3f} {times[key] / times['a']:6.2f}x")
    print(f"(c) answered {polls} snapshots in its last run")
    print("goals: (b) at most 3x, (c) at most 1.1x")


if __name__ == "__main__":
    main()
