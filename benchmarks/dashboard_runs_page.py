"""What a store of many runs costs the dashboard's runs page: the size of the runs stream's first
event, the time a cold page takes to draw its table, and the server's CPU while one page is open
and nothing changes, over a SQLite store of --runs recorded runs.

Served by this checkout and, with --baseline DIR, by the doeff of another checkout (e.g. the
main branch before the runs list was paged), both in the same run over the same store:

    python benchmarks/dashboard_runs_page.py [--quick] [--runs N] [--baseline /work/main]

- first event: the bytes of the `event: runs` message /api/events sends first (its data line),
  and how long after the request it arrived;
- cold draw: the first load of `/` in headless Chromium after the server started (which reads
  and decodes every run record), from the start of navigation to the table's first draw (the
  first `data-updated` mark with rows in the table), by the page's own clock
  (`performance.now()`); the median over --repeat servers;
- warm draw: the same for a fresh load of `/` right after (the server has the records decoded);
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
    with httpx.Client(timeout=60) as client:  # made first: making one takes ~50 ms
        started = time.perf_counter()
        with client.stream("GET", server.page("/api/events")) as stream:
            lines = stream.iter_lines()
            for line in lines:
                if line == "event: runs":
                    data = next(lines)
                    return len(data.encode()), time.perf_counter() - started
    raise AssertionError("the stream ended before its first event")


def draw(driver: Any, server: Dashboard, rows: int) -> float:
    """Seconds from navigation to the runs table's first draw, in a fresh load of `/`."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(server.page("/"))
    WebDriverWait(driver, 60, poll_frequency=0.02).until(
        lambda d: d.execute_script("return window.__drawnAt !== undefined"))
    drawn = driver.execute_script("return window.__drawnAt")
    shown = driver.execute_script("return document.querySelectorAll('#runs tbody tr').length")
    assert shown == rows, f"the table drew {shown} rows, not {rows}"
    return float(drawn) / 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, root: Path, store: Path, folder: Path, driver: Any, rows: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """The figures of one checkout: --repeat servers, each loaded cold (its first page, which
    reads every record) then warm (a fresh page, the records already decoded); the first
    event, GET /api/runs and the idle CPU on the last of them, its page still open."""
    cold, warm = [], []
    for i in range(args.repeat):
        server = start_dashboard(store, folder, root=root)
        try:
            cold.append(draw(driver, server, rows))
            warm.append(draw(driver, server, rows))
            if i < args.repeat - 1:
                continue
            size, wait = first_event(server)
            plain = len(httpx.get(server.page("/api/runs"), timeout=60).content)
            before = cpu_seconds(server.process.pid)
            time.sleep(args.idle)
            idle = cpu_seconds(server.process.pid) - before
        finally:
            stop(server.process)
    return {"name": name, "event": size, "wait": wait, "plain": plain, "cold": cold,
            "warm": warm, "idle": idle, "rows": rows}


def ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:6.0f} ms  (min {min(values) * 1000:.0f}, "
            f"max {max(values) * 1000:.0f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 runs, 3 servers, 3 s idle")
    parser.add_argument("--runs", type=int, default=None, help="runs in the store (1000)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="servers started, one cold and one warm load each (5)")
    parser.add_argument("--idle", type=float, default=None, help="seconds of idle CPU (10)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout whose doeff serves the same store for comparison")
    args = parser.parse_args()
    runs = args.runs or (300 if args.quick else 1000)
    args.repeat = args.repeat or (3 if args.quick else 5)
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

    print(f"the runs page over a store of {runs} runs (SQLite), headless Chromium; draws: "
          f"median of {args.repeat}; idle CPU over {args.idle:g} s")
    for r in results:
        print(f"  {r['name']}: the table draws {r['rows']} rows\n"
              f"    first event     {r['event'] / 1024:8.1f} KiB  (arrived {r['wait'] * 1000:.0f}"
              f" ms after the request, the server warm)\n"
              f"    cold draw       {ms(r['cold'])}  (the server's first page)\n"
              f"    warm draw       {ms(r['warm'])}  (a fresh page, records decoded)\n"
              f"    idle CPU        {r['idle']:8.2f} s per {args.idle:g} s, one page open\n"
              f"    GET /api/runs   {r['plain'] / 1024:8.1f} KiB")
    if len(results) == 2:
        old, new = results

        def ratio(key: str) -> float:
            return statistics.median(old[key]) / statistics.median(new[key])

        print(f"  baseline / this: first event {old['event'] / new['event']:.1f}x, "
              f"cold draw {ratio('cold'):.1f}x, warm draw {ratio('warm'):.1f}x, "
              f"idle CPU {old['idle'] / max(new['idle'], 1e-9):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
