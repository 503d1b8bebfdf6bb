"""Run every benchmark, one after the other (`make bench`). Pass --quick for a short run.

Each runs in its own process, as `python benchmarks/NAME.py`, so none inherits another's state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = [
    "interpreter", "codecs", "envelope", "storage", "storage_postgres", "workflow",
    "observability", "runs_control", "concurrency", "steps", "dashboard_latency",
    "dashboard_runs_page",
]


def main() -> int:
    """Run each benchmark script beside this file; non-zero if any of them failed."""
    quick = ["--quick"] if "--quick" in sys.argv[1:] else []
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, os.path.join(HERE, f"{name}.py"), *quick])
        print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
