"""Plumbing for the dashboard's browser tests and its latency benchmark: headless Chromium driven
by Selenium, a real `doeff dashboard` server and real recorded workflows, each in a process of
its own.

Chromium and its driver are the OS's (Debian's `chromium` and `chromium-driver`, which .ci/run
installs), named by path so that Selenium never looks for, or downloads, a browser of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from dashboard_workflow import WORKFLOW_FILE

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT = 30.0  # generous: a loaded 2-core machine starts browsers and processes slowly
SERVING = "doeff dashboard: serving "

T = TypeVar("T")


def require_chromium() -> None:
    """Skip (locally) or fail (under CI, where .ci/run installs them) without Chromium."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not missing:
        return
    why = (f"the dashboard's browser tests need {' and '.join(missing)}: "
           f"apt-get install chromium chromium-driver (.ci/run does it)")
    if os.environ.get("CI"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def new_driver(width: int = 1280, height: int = 800) -> Any:
    """A headless Chromium of `width` x `height` CSS pixels (a selenium WebDriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path is what keeps selenium-manager (which downloads) out of the way.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(TIMEOUT)
    # --window-size counts the window's frame: fix the page's own viewport (and screenshots).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


def python_env(root: Path = ROOT) -> dict[str, str]:
    """The environment for a child Python that imports the doeff of the checkout `root`
    (this one unless a benchmark compares with another)."""
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """End `process` with `sig` (SIGKILL if it lingers) and reap it."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(TIMEOUT / 3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT)


# -- the server ---------------------------------------------------------------------------------


@dataclass
class Dashboard:
    """A `doeff dashboard` server process and the URL it printed."""

    process: subprocess.Popen[str]
    url: str  # as printed: "http://HOST:PORT/" (with "?token=T" when a token is set)
    log: Path  # its stderr
    lines: list[str] = field(default_factory=list)  # its stdout after the URL line

    def page(self, path: str) -> str:
        """The URL of `path` ("/run/ID") on this server."""
        base = self.url.split("?", 1)[0].rstrip("/")
        return base + path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_dashboard(store: Path, log_dir: Path, *flags: str, root: Path = ROOT) -> Dashboard:
    """Start `doeff dashboard STORE --port 0 FLAGS` (the doeff of the checkout `root`) and
    wait for the line naming its URL."""
    log = log_dir / f"dashboard-{time.monotonic_ns()}.log"
    with log.open("w") as err:  # a file, not a pipe: a chatty server never blocks on it
        process = subprocess.Popen(
            [sys.executable, "-m", "doeff", "dashboard", str(store), "--port", "0", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
            env=python_env(root), cwd=log_dir)
    assert process.stdout is not None
    first: list[str] = []
    got = threading.Event()
    dashboard = Dashboard(process, "", log)
    threading.Thread(target=_drain, args=(process.stdout, first, got, dashboard.lines),
                     daemon=True).start()
    if not got.wait(TIMEOUT) or not first or not first[0].startswith(SERVING):
        stop(process, signal.SIGKILL)
        printed = first[0] if first else "nothing"
        raise AssertionError(f"`doeff dashboard {store}` printed {printed!r} in {TIMEOUT:g} s, "
                             f"not {SERVING!r} and its URL; stderr:\n{dashboard.stderr()}")
    dashboard.url = first[0][len(SERVING):].strip()
    return dashboard


def _drain(stream: IO[str], first: list[str], got: threading.Event, rest: list[str]) -> None:
    """Read the server's stdout to its end: the first line for the test, the rest kept."""
    for line in stream:
        if not got.is_set():
            first.append(line)
            got.set()
        else:
            rest.append(line)
    got.set()  # stdout closed: the server exited (before printing, if `first` is empty)


# -- the workflow -------------------------------------------------------------------------------


@dataclass
class Workflow:
    """A recorded workflow (tests/dashboard_workflow.py) running in a process of its own."""

    process: subprocess.Popen[str]
    store: Path
    run_id: str

    def record(self) -> Any:
        """The run's record as `doeff.runs` sees it now (None before its first write)."""
        from doeff.runs import get_run
        from doeff.storage import SQLiteKV

        with SQLiteKV(str(self.store), readonly=True) as kv:
            return get_run(kv, self.run_id)

    def outcome(self) -> str:
        """What the process printed and logged once it has ended (waits for that)."""
        out, err = self.process.communicate(timeout=TIMEOUT)
        return out + err


def start_workflow(store: Path, run_id: str, *, steps: int = 2000, pause: float = 0.05,
                   stamps: Path | None = None, min_steps: int = 1) -> Workflow:
    """Start the workflow as `run_id`; return once its record holds `min_steps` steps."""
    extra = [] if stamps is None else ["--stamps", str(stamps)]
    process = subprocess.Popen(
        [sys.executable, str(WORKFLOW_FILE), str(store), run_id, "--steps", str(steps),
         "--pause", str(pause), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=python_env())
    workflow = Workflow(process, store, run_id)

    def recorded() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"workflow {run_id} exited early:\n{workflow.outcome()}")
        record = workflow.record()
        return record is not None and len(record.steps) >= min_steps

    poll_until(recorded, f"the record of {run_id} to hold {min_steps} step(s)")
    return workflow


def poll_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait (outside the browser) until `condition()` holds; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


# -- waiting in the browser ---------------------------------------------------------------------


def wait_for(driver: Any, condition: Callable[[Any], T], what: str,
             timeout: float = TIMEOUT) -> T:
    """`condition(driver)` once it is truthy; on timeout an AssertionError naming `what`, with
    the page's text and the browser's console to tell why."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(driver, timeout, poll_frequency=0.05,
                           ignored_exceptions=(NoSuchElementException,
                                               StaleElementReferenceException))
    try:
        return waiter.until(condition)
    except TimeoutException:
        raise AssertionError(f"waited {timeout:g} s for {what} on {driver.current_url}\n"
                             f"{describe_page(driver)}") from None


def describe_page(driver: Any) -> str:
    """The page's visible text and the browser's console messages (for failure messages)."""
    try:
        text = driver.execute_script("return document.body ? document.body.innerText : ''")
    except Exception as exc:  # the page itself may be what is broken
        text = f"(no text: {exc})"
    try:
        console = "\n".join(e.get("message", "") for e in driver.get_log("browser"))
    except Exception as exc:
        console = f"(no console: {exc})"
    return f"--- page text ---\n{str(text)[:3000]}\n--- console ---\n{console[:3000]}"


def text_of(driver: Any, css: str) -> str:
    """The text of the first element matching `css` (NoSuchElementException if none)."""
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text).strip()


def int_of(driver: Any, css: str) -> int | None:
    """The integer text of `css`, or None while it holds none."""
    text = text_of(driver, css).replace(",", "")
    return int(text) if text.isdigit() else None


__all__ = ["CHROMEDRIVER", "CHROMIUM", "TIMEOUT", "Dashboard", "Workflow",
           "describe_page", "int_of", "new_driver", "poll_until", "python_env",
           "require_chromium", "start_dashboard", "start_workflow", "stop", "text_of",
           "wait_for"]
