"""Run every benchmark, one after the other (`make bench`). Pass --quick for a short run."""

from __future__ import annotations

import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = [
    "interpreter", "codecs", "storage", "storage_postgres", "workflow", "observability",
]


def main() -> None:
    """Import each benchmark module beside this file and call its `main()`."""
    sys.path.insert(0, HERE)
    quick = ["--quick"] if "--quick" in sys.argv[1:] else []
    for name in BENCHMARKS:
        if not os.path.exists(os.path.join(HERE, f"{name}.py")):
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(name).main(quick)
        print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
