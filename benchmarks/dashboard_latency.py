"""How long the dashboard takes to show a step: from the step ending in the workflow's process to
the run page in a headless Chromium drawing it, over ~20 steps of a real recorded workflow.

Three clocks, all the machine's wall clock:
- *ended*: the workflow (tests/dashboard_workflow.py --stamps) writes `time.time()` to a file
  right after each step returns to the program;
- *stored*: this process polls the run record in the store every 5 ms and notes when the record
  first holds the step (the recorder's write, seen from outside);
- *shown*: a MutationObserver in the page notes `Date.now()` when `#step-timeline` first draws it.
`shown - ended` is the latency; `stored - ended` is the recorder's part (it writes at most every
MIN_GAP seconds, nudged by each step) and `shown - stored` the dashboard's (its stream looks at
the store every POLL seconds, then the SSE message, the page's JSON parse and render). Steps pause
longer than MIN_GAP so that each lands in a record write of its own.

    python benchmarks/dashboard_latency.py [--quick] [--steps N] [--screenshot PATH]

--screenshot saves the run page mid-run (docs/dashboard-run.png is made that way).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# The tests' own plumbing: the same server, browser and workflow as the browser tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from dashboard_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    new_driver,
    poll_until,
    start_dashboard,
    start_workflow,
    stop,
    wait_for,
)

from doeff.dashboard.app import POLL
from doeff.runs import get_run
from doeff.runs.recorder import HEARTBEAT, MIN_GAP
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV

OBSERVE = """
window.__shown = [];
const count = () => document.querySelectorAll('#step-timeline .step').length;
let last = count();
new MutationObserver(() => {
  const n = count();
  if (n !== last) { last = n; window.__shown.push([Date.now() / 1000, n]); }
}).observe(document.body, {subtree: true, childList: true, attributes: true,
                           characterData: true});
return [Date.now() / 1000, last];
"""


def watch_store(store: Path, run_id: str, stored: dict[int, float], done: threading.Event) -> None:
    """Note when the run's record first holds each step (by count), every 5 ms until `done`."""
    with SQLiteKV(str(store), readonly=True) as kv:
        while not done.is_set():
            record = get_run(kv, run_id)
            if record is not None:
                now = time.time()
                for i in range(record.steps_omitted + len(record.steps)):
                    stored.setdefault(i, now)
            time.sleep(0.005)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"  {name:<26} median {statistics.median(ms):6.0f} ms   p90 {quantile(ms, 0.9):6.0f} ms"
            f"   min {min(ms):5.0f}   max {max(ms):5.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 steps instead of 20")
    parser.add_argument("--steps", type=int, default=None)
    # Not a multiple of POLL, so that steps end at every phase of the stream's polls.
    parser.add_argument("--pause", type=float, default=0.33, help="seconds each step sleeps")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    steps = args.steps or (8 if args.quick else 20)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        print(f"skipped: needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
              f"chromium-driver)")
        return 0

    folder = Path(tempfile.mkdtemp(prefix="doeff-dashboard-latency-"))
    store, stamps, run_id = folder / "wf.db", folder / "stamps.txt", "latency"
    with Durable(SQLiteKV(str(store)), MsgpackCodec()) as storage:
        storage.put("created", True)  # the dashboard opens existing stores only
    driver: Any = None
    server = workflow = None
    stored: dict[int, float] = {}
    done = threading.Event()
    try:
        driver = new_driver()
        server = start_dashboard(store, folder)
        # Two spare steps at the start: the page loads while they run, and is watched after.
        workflow = start_workflow(store, run_id, steps=steps + 3, pause=args.pause,
                                  stamps=stamps, min_steps=1)
        watcher = threading.Thread(target=watch_store, args=(store, run_id, stored, done),
                                   daemon=True)
        watcher.start()
        driver.get(server.page(f"/run/{run_id}"))
        wait_for(driver, lambda d: d.find_elements("css selector", "#step-timeline .step"),
                 "the step timeline")
        watched_from, _ = driver.execute_script(OBSERVE)
        if args.screenshot is not None:
            poll_until(lambda: len(stored) >= 6, "six steps in the record")
            wait_for(driver, lambda d: len(d.find_elements("css selector",
                                                           "#step-timeline .step")) >= 6,
                     "six steps on the page")
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.screenshot))
        workflow.process.wait(steps * args.pause * 10 + 60)
        time.sleep(2 * (MIN_GAP + POLL))  # the last step's write reaches the page
        shown: list[list[float]] = driver.execute_script("return window.__shown")
    finally:
        done.set()
        if workflow is not None:
            stop(workflow.process)
        if server is not None:
            stop(server.process)
        if driver is not None:
            driver.quit()

    ended = {int(i): float(t) for i, t in
             (line.split() for line in stamps.read_text().splitlines())}
    total, recorder, dashboard = [], [], []
    for i, t_end in sorted(ended.items()):
        if t_end < watched_from:
            continue  # ended before the page was watched
        t_shown = next((t for t, n in shown if n >= i + 1), None)
        if t_shown is None or i not in stored:
            continue
        total.append(t_shown - t_end)
        recorder.append(stored[i] - t_end)
        dashboard.append(t_shown - stored[i])
    shutil.rmtree(folder, ignore_errors=True)
    if len(total) < max(3, steps // 2):
        print(f"failed: only {len(total)} of {steps} steps were seen on the page", file=sys.stderr)
        return 1

    print(f"step ended -> shown in the browser, {len(total)} steps of {args.pause:g} s "
          f"(recorder MIN_GAP {MIN_GAP:g} s, HEARTBEAT {HEARTBEAT:g} s; dashboard POLL {POLL:g} s)")
    print(summary("total (ended -> shown)", total))
    print(summary("recorder (ended -> stored)", recorder))
    print(summary("dashboard (stored -> shown)", dashboard))
    print("  recorder: the heartbeat thread, nudged by the step, writes at once (its wake-up,\n"
          "    the snapshot and the SQLite write) unless it wrote less than MIN_GAP ago, e.g. a\n"
          "    heartbeat just before: then it waits out the rest of MIN_GAP;\n"
          "  dashboard: waiting for the run's stream to look at the store (every POLL: uniform in\n"
          "    0..POLL), then its read, one SSE message, the page's JSON parse and render; the\n"
          "    minimum is roughly that fixed part, the spread up to POLL is the wait.")
    if args.screenshot is not None:
        print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
