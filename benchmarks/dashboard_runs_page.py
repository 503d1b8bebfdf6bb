"""What a store of many runs costs the dashboard's runs page: the size of the runs stream's first
event, the time a cold page takes to draw its table, and the server's CPU while one page is open
and nothing changes, over a SQLite store of --runs recorded runs.

Served by this checkout and, with --baseline DIR, by the doeff of another checkout (e.g. the
main branch before the runs list was paged), both in the same run over the same store:

    python benchmarks/dashboard_runs_page.py [--quick] [--runs N] [--baseline /work/main]

- first event: the bytes of the `event: runs` message /api/events sends first (its data line),
  and how long after the request it arrived;
- cold draw: a fresh load of `/` in headless Chromium, from the start of navigation to the
  table's first draw (the first `data-updated` mark with rows in the table), as the page's own
  clock (`performance.now()`) tells it; the median of --repeat loads;
- idle CPU: the server process's user+system CPU seconds over --idle seconds with one runs page
  open and the store unchanged (the stream polls the store 5 times a second);
- /api/runs: the bytes of a plain `GET /api/runs`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The tests' own plumbing: the same server, browser and stores as the browser tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx
from dashboard_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    ROOT,
    Dashboard,
    new_driver,
    start_dashboard,
    stop,
)
from dashboard_store import record_runs

# Injected before the page's own scripts (DevTools, so the page's CSP does not apply to it):
# notes when the table is first drawn.
WATCH_DRAW = """
new MutationObserver((_, observer) => {
  if (document.body && document.body.dataset.updated &&
      document.querySelector('#runs tbody tr')) {
    window.__drawnAt = performance.now();
    observer.disconnect();
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def first_event(server: Dashboard) -> tuple[int, float]:
    """(bytes of the data of the first `event: runs`, seconds from the request to it)."""
    started = time.perf_counter()
    with httpx.stream("GET", server.page("/api/events"), timeout=60) as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line == "event: runs":
                data = next(lines)
                return len(data.encode()), time.perf_counter() - started
    raise AssertionError("the stream ended before its first event")


def cold_draws(driver: Any, server: Dashboard, rows: int, repeat: int) -> list[float]:
    """Seconds from navigation to the runs table's first draw, for `repeat` fresh loads."""
    from selenium.webdriver.support.ui import WebDriverWait

    draws = []
    for _ in range(repeat):
        driver.get("about:blank")
        driver.get(server.page("/"))
        WebDriverWait(driver, 60, poll_frequency=0.02).until(
            lambda d: d.execute_script("return window.__drawnAt !== undefined"))
        drawn = driver.execute_script("return window.__drawnAt")
        shown = driver.execute_script("return document.querySelectorAll('#runs tbody tr').length")
        assert shown == rows, f"the table drew {shown} rows, not {rows}"
        draws.append(float(drawn) / 1000)
    return draws


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, root: Path, store: Path, folder: Path, driver: Any, rows: int,
            args: argparse.Namespace) -> dict[str, Any]:
    server = start_dashboard(store, folder, root=root)
    try:
        size, wait = first_event(server)
        plain = len(httpx.get(server.page("/api/runs"), timeout=60).content)
        draws = cold_draws(driver, server, rows, args.repeat)
        before = cpu_seconds(server.process.pid)
        time.sleep(args.idle)
        idle = cpu_seconds(server.process.pid) - before
    finally:
        stop(server.process)
    return {"name": name, "event": size, "wait": wait, "plain": plain, "draws": draws,
            "idle": idle, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 runs, 3 loads, 3 s idle")
    parser.add_argument("--runs", type=int, default=None, help="runs in the store (1000)")
    parser.add_argument("--repeat", type=int, default=None, help="cold loads per server (7)")
    parser.add_argument("--idle", type=float, default=None, help="seconds of idle CPU (10)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout whose doeff serves the same store for comparison")
    args = parser.parse_args()
    runs = args.runs or (300 if args.quick else 1000)
    args.repeat = args.repeat or (3 if args.quick else 7)
    args.idle = args.idle or (3.0 if args.quick else 10.0)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        print(f"skipped: needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
              f"chromium-driver)")
        return 0
    from doeff.dashboard.data import RUNS_PAGE

    folder = Path(tempfile.mkdtemp(prefix="doeff-dashboard-runs-"))
    store = folder / "wf.db"
    record_runs(store, runs)
    driver = new_driver()
    results = []
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_DRAW})
        if args.baseline is not None:
            # The old page draws every run; the new one a page of them.
            results.append(measure(f"baseline ({args.baseline})", args.baseline, store,
                                   folder, driver, runs, args))
        results.append(measure("this checkout", ROOT, store, folder, driver,
                               min(runs, RUNS_PAGE), args))
    finally:
        driver.quit()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"the runs page over a store of {runs} runs (SQLite); cold draw: median of "
          f"{args.repeat} loads in headless Chromium; idle CPU over {args.idle:g} s")
    for r in results:
        print(f"  {r['name']}:\n"
              f"    first event  {r['event'] / 1024:8.1f} KiB  (after {r['wait'] * 1000:.0f} ms)\n"
              f"    cold draw    {statistics.median(r['draws']) * 1000:8.0f} ms   "
              f"(min {min(r['draws']) * 1000:.0f}, max {max(r['draws']) * 1000:.0f}; "
              f"{r['rows']} rows)\n"
              f"    idle CPU     {r['idle']:8.2f} s per {args.idle:g} s\n"
              f"    GET /api/runs {r['plain'] / 1024:7.1f} KiB")
    if len(results) == 2:
        old, new = results
        draw = statistics.median(old["draws"]) / statistics.median(new["draws"])
        print(f"  ratios (baseline / this): first event {old['event'] / new['event']:.1f}x, "
              f"cold draw {draw:.1f}x, "
              f"idle CPU {old['idle'] / max(new['idle'], 1e-9):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
