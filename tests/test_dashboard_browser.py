"""The dashboard in a real browser: headless Chromium (through Selenium) loads the pages of a real
`doeff dashboard` server while a real recorded workflow runs in another process on a SQLite store.

It sees the run in the runs table, its K stack at the workflow's own file and line, its step count
grow without a reload (server-sent events), the cancel button end it as "failed" (doeff.runs has
no "cancelled" status: a cancelled run failed with CancellationError), pause and resume, a
SIGKILLed run turn "lost", a hostile key shown as text, --read-only leave out the buttons, and
--token let in only a browser that opened the printed address.
Under CI (CI=true, set by .ci/run, which installs chromium) the tests fail without Chromium;
elsewhere they skip.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import (
    TIMEOUT,
    Dashboard,
    Workflow,
    int_of,
    new_driver,
    require_chromium,
    start_dashboard,
    start_workflow,
    stop,
    text_of,
    wait_for,
)
from dashboard_workflow import WORKFLOW_FILE, marked_line

from doeff.runs.api import runs_of
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV

XSS_KEY = "<img src=x onerror=alert(1)>"
XSS_VALUE = "<script>alert(2)</script><b>bold?</b>"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    require_chromium()
    browser = new_driver()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store holding one record (the dashboard opens existing stores only)."""
    path = tmp_path_factory.mktemp("store") / "wf.db"
    with Durable(SQLiteKV(str(path)), MsgpackCodec()) as storage:
        storage.put("plain-key", {"rows": [1, 2, 3]})
    return path


@pytest.fixture(scope="module")
def dashboard(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    server = start_dashboard(store, tmp_path_factory.mktemp("dashboard"))
    yield server
    stop(server.process)


@pytest.fixture
def workflow(store: Path, request: pytest.FixtureRequest) -> Iterator[Workflow]:
    """The workflow running as run `wf-TESTNAME`, killed at the end if it still runs."""
    run = start_workflow(store, f"wf-{request.node.name.removeprefix('test_')}")
    yield run
    stop(run.process, signal.SIGKILL)


def run_page(driver: Any, dashboard: Dashboard, run_id: str) -> None:
    """Open the run's page and wait until it shows the run's live status."""
    driver.get(dashboard.page(f"/run/{run_id}"))
    wait_for(driver, lambda d: text_of(d, "#run-id") == run_id and text_of(d, "#run-status"),
             f"#run-id {run_id!r} and a #run-status")


def status_is(status: str) -> Any:
    return lambda d: text_of(d, "#run-status") == status


def test_runs_table_shows_the_run_running(driver: Any, dashboard: Dashboard,
                                          workflow: Workflow) -> None:
    driver.get(dashboard.page("/"))
    row = f'tr.run[data-run-id="{workflow.run_id}"]'
    wait_for(driver, lambda d: d.find_element("css selector", row), f"a row {row}")
    wait_for(driver, lambda d: d.find_element("css selector", row).get_attribute("data-status")
             == "running", f"{row} with data-status=running")
    # The table is redrawn live: each read is retried if its row was replaced meanwhile.
    wait_for(driver, lambda d: text_of(d, f"{row} td.status") == "running",
             f"{row} td.status running")
    wait_for(driver, lambda d: (int_of(d, f"{row} td.steps") or 0) > 0, f"{row} td.steps > 0")
    link = wait_for(driver, lambda d: d.find_element("css selector", f"{row} td.run-id a")
                    .get_attribute("href"), f"{row}'s link")
    assert link.endswith(f"/run/{workflow.run_id}")

    # The filter keeps the running run under "running" and drops it under "completed".
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", "#status-filter")).select_by_value("completed")
    wait_for(driver, lambda d: not d.find_elements("css selector", row),
             f"{row} to leave the table filtered on 'completed'")
    Select(driver.find_element("css selector", "#status-filter")).select_by_value("running")
    wait_for(driver, lambda d: d.find_elements("css selector", row),
             f"{row} back in the table filtered on 'running'")


def test_k_stack_shows_the_workflows_file_and_line(driver: Any, dashboard: Dashboard,
                                                   workflow: Workflow, tmp_path: Path) -> None:
    run_page(driver, dashboard, workflow.run_id)
    where = f"{WORKFLOW_FILE.name}:{marked_line()}"

    def frames(d: Any) -> list[str]:
        return [str(e.text).strip() for e in
                d.find_elements("css selector", "section.task ol.k-stack li.frame .frame-where")]

    wait_for(driver, lambda d: any(f.endswith(where) for f in frames(d)),
             f"a .frame-where ending with {where}")
    assert text_of(driver, "#run-status") == "running"
    assert driver.find_elements("css selector", 'section.task[data-task] li.frame .frame-type')
    # Between two records the effect at hand may be a look-up or a store; mostly it is the call.
    wait_for(driver, lambda d: "Perform" in text_of(d, "#current-effect"),
             "#current-effect showing the step's Perform")
    driver.save_screenshot(str(tmp_path / "run-page.png"))
    assert (tmp_path / "run-page.png").stat().st_size > 10_000


def test_step_count_grows_without_a_reload(driver: Any, dashboard: Dashboard,
                                           workflow: Workflow) -> None:
    run_page(driver, dashboard, workflow.run_id)
    first = wait_for(driver, lambda d: int_of(d, "#run-steps"), "an integer in #run-steps") or 0
    driver.execute_script("window.__sameDocument = true;")  # gone if the page reloads
    updated = driver.execute_script("return Number(document.body.dataset.updated || 0)")
    bars = len(driver.find_elements("css selector", "#step-timeline .step"))

    wait_for(driver, lambda d: (int_of(d, "#run-steps") or 0) >= first + 20,
             f"#run-steps to grow from {first} by 20")
    wait_for(driver, lambda d: len(d.find_elements("css selector", "#step-timeline .step"))
             > bars, f"#step-timeline to grow past {bars} .step")
    assert driver.execute_script("return window.__sameDocument === true"), "the page reloaded"
    assert driver.execute_script("return Number(document.body.dataset.updated)") > updated
    # One script reads every bar at once: bar by bar over WebDriver, a timeline of hundreds
    # of bars redrawn live went stale before the last was read, on every try.
    outcomes = set(wait_for(driver, lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('#step-timeline .step'),"
        " (e) => e.getAttribute('data-outcome'))"), "the timeline's outcomes"))
    assert outcomes == {"computed"}  # every tick is a new step: none is read back


def test_cancel_button_ends_the_run_as_failed(driver: Any, dashboard: Dashboard,
                                              workflow: Workflow) -> None:
    run_page(driver, dashboard, workflow.run_id)
    wait_for(driver, status_is("running"), "#run-status running")
    driver.execute_script("window.__sameDocument = true;")
    click(driver, "#cancel-btn")

    wait_for(driver, status_is("failed"), "#run-status to turn 'failed' after cancel")
    error = wait_for(driver, lambda d: d.find_element("css selector", "#run-error")
                     .is_displayed() and text_of(d, "#run-error pre.traceback"),
                     "#run-error with its traceback shown")
    assert "CancellationError" in error
    assert driver.execute_script("return window.__sameDocument === true"), "the page reloaded"
    # What the page says is what doeff.runs and the workflow's own process say.
    assert '"error": "CancellationError"' in workflow.outcome()
    record = workflow.record()
    assert record.status == "failed" and record.error.type == "CancellationError"


def test_pause_and_resume_buttons(driver: Any, dashboard: Dashboard,
                                  workflow: Workflow) -> None:
    run_page(driver, dashboard, workflow.run_id)
    wait_for(driver, status_is("running"), "#run-status running")
    click(driver, "#pause-btn")
    wait_for(driver, status_is("paused"), "#run-status to turn 'paused'")
    paused_at = workflow.record().step_count
    assert workflow.record().status == "paused"
    click(driver, "#resume-btn")
    wait_for(driver, status_is("running"), "#run-status back to 'running'")
    wait_for(driver, lambda d: (int_of(d, "#run-steps") or 0) > paused_at,
             f"#run-steps to move past {paused_at} after resume")


def test_a_sigkilled_run_shows_as_lost(driver: Any, dashboard: Dashboard,
                                       workflow: Workflow) -> None:
    run_page(driver, dashboard, workflow.run_id)
    wait_for(driver, status_is("running"), "#run-status running")
    driver.execute_script("window.__sameDocument = true;")
    workflow.process.send_signal(signal.SIGKILL)
    workflow.process.wait(TIMEOUT)  # reaped: the record's pid is gone, so it reads as lost

    wait_for(driver, status_is("lost"), "#run-status to turn 'lost' after SIGKILL")
    assert driver.execute_script("return window.__sameDocument === true"), "the page reloaded"
    wait_for(driver, lambda d: d.find_element("css selector", "#run-error").is_displayed(),
             "#run-error shown for a lost run")
    # The K stack of the last heartbeat stays: where the run was when it died.
    where = f"{WORKFLOW_FILE.name}:{marked_line()}"
    wait_for(driver, lambda d: any(str(e.text).strip().endswith(where) for e in
                                   d.find_elements("css selector", "li.frame .frame-where")),
             f"a .frame-where ending with {where} after the kill")
    assert workflow.record().status == "lost"

    driver.get(dashboard.page("/"))
    row = f'tr.run[data-run-id="{workflow.run_id}"]'
    wait_for(driver, lambda d: d.find_element("css selector", row).get_attribute("data-status")
             == "lost", f"{row} with data-status=lost")


def test_a_hostile_key_shows_as_text(driver: Any, dashboard: Dashboard, store: Path) -> None:
    with Durable(SQLiteKV(str(store)), MsgpackCodec()) as storage:
        storage.put(XSS_KEY, XSS_VALUE)
    driver.get(dashboard.page("/cache"))

    def hostile_row(d: Any) -> Any:
        for row in d.find_elements("css selector", "#cache tr.record"):
            if row.get_attribute("data-key") == XSS_KEY:
                return row
        return None

    row = wait_for(driver, hostile_row, f"a #cache row whose data-key is {XSS_KEY!r}")
    assert row.find_element("css selector", "td.key").text.strip() == XSS_KEY
    assert XSS_VALUE in row.find_element("css selector", "td.value").text
    # Inserted as text, the markup made no element: no <img>, <script> or <b> in the table.
    made = driver.execute_script(
        "return document.querySelectorAll('#cache img, #cache script, #cache b').length")
    assert made == 0
    wait_for(driver, lambda d: d.find_element("css selector", "#stats-chart"), "#stats-chart")
    assert_no_alert(driver)


def test_read_only_leaves_out_the_buttons(driver: Any, store: Path, workflow: Workflow,
                                          tmp_path: Path) -> None:
    server = start_dashboard(store, tmp_path, "--read-only")
    try:
        run_page(driver, server, workflow.run_id)
        wait_for(driver, status_is("running"), "#run-status running")
        for button in ("#cancel-btn", "#pause-btn", "#resume-btn"):
            assert not driver.find_elements("css selector", button), f"{button} is there"
        # Nor does the API take the request the button would have sent, token or not.
        status = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const meta = document.querySelector('meta[name="csrf-token"]');
            fetch(arguments[0], {method: 'POST',
                                 headers: {'X-CSRF-Token': meta ? meta.content : ''}})
              .then(r => done(r.status), e => done(String(e)));
            """, f"/api/runs/{workflow.run_id}/cancel")
        assert status in (403, 405)
        assert workflow.record().status == "running"
    finally:
        stop(server.process)


def test_token_signs_the_browser_in_once(driver: Any, store: Path, workflow: Workflow,
                                         tmp_path: Path) -> None:
    server = start_dashboard(store, tmp_path, "--token", "s3cret-token")
    try:
        assert server.url.endswith("/?token=s3cret-token")
        driver.delete_all_cookies()
        driver.get(server.page("/"))
        assert "needs its token" in text_of(driver, "body")
        assert not driver.find_elements("css selector", "#runs")

        driver.get(server.url)  # sets an HttpOnly cookie, then loads the page without the token
        row = f'tr.run[data-run-id="{workflow.run_id}"]'
        wait_for(driver, lambda d: d.find_element("css selector", row).get_attribute(
            "data-status") == "running", f"{row} running, the stream authorized by the cookie")
        assert "token" not in driver.current_url
        assert "s3cret-token" not in driver.execute_script("return document.cookie")
    finally:
        driver.delete_all_cookies()
        stop(server.process)


def test_odd_run_records_show_as_what_they_are(driver: Any, dashboard: Dashboard,
                                               store: Path) -> None:
    """The runs `.` and `..` (which a browser would resolve away in a path) open their own
    pages; a record that cannot be read is listed with why and its page says so; a failed
    run's 3000-line traceback scrolls in its box, leaving the timeline within reach; an address
    with a malformed %-escape shows a missing run, not a dead page."""
    now = time.time()
    record = {"status": "completed", "attempt": 1, "started_at": now, "updated_at": now,
              "ended_at": now, "heartbeat_at": now, "host": "elsewhere", "pid": 1,
              "step_count": 1, "current_effect": None, "tasks": [], "steps": [],
              "steps_omitted": 0, "error": None, "attempts": []}
    trace = "\n".join(f'  File "deep.py", line {i}, in deep' for i in range(3000))
    with Durable(SQLiteKV(str(store)), MsgpackCodec()) as storage:
        runs = runs_of(storage)
        for dots in (".", ".."):
            runs.write({**record, "run_id": dots, "program": f"dots {dots}"})
        runs.write({**record, "run_id": "deep-failure", "program": "deep", "status": "failed",
                    "error": {"type": "RecursionError", "message": "too deep",
                              "traceback": trace}})
        runs.kv.put("run:garbage", b"\x00\xffnot a record")

    for dots in (".", ".."):
        driver.get(dashboard.page("/"))
        link = wait_for(driver, _element(f'tr.run[data-run-id="{dots}"] td.run-id a'),
                        f"the link of {dots}")
        driver.get(link.get_attribute("href"))
        wait_for(driver, _shows("#run-program", f"dots {dots}"), f"the page of run {dots!r}")
        assert text_of(driver, "#run-id") == dots

    driver.get(dashboard.page("/"))
    bad = wait_for(driver, lambda d: d.find_element(
        "css selector", '#unreadable-runs li[data-run-id="garbage"]'), "garbage listed")
    assert "not a doeff record" in bad.text
    run_page(driver, dashboard, "garbage")
    wait_for(driver, status_is("unreadable"), "#run-status unreadable")
    assert "cannot be read" in text_of(driver, "#run-unreadable")

    run_page(driver, dashboard, "deep-failure")
    wait_for(driver, status_is("failed"), "#run-status failed")
    box, timeline_top, viewport = driver.execute_script(
        """const pre = document.querySelector('#run-error pre.traceback');
        const top = document.getElementById('step-timeline').getBoundingClientRect().top;
        return [[pre.scrollHeight, pre.clientHeight], top + window.scrollY, innerHeight];""")
    assert box[0] > box[1], "the traceback does not scroll in its box"
    assert timeline_top < 2 * viewport, f"the timeline starts {timeline_top} px down"

    driver.get(dashboard.page("/run/%E0%A4%A"))
    wait_for(driver, status_is("missing"), "#run-status missing for a malformed address")


def _element(css: str) -> Any:
    return lambda d: d.find_element("css selector", css)


def _shows(css: str, text: str) -> Any:
    return lambda d: text_of(d, css) == text


def click(driver: Any, css: str) -> None:
    """Click `css` once it is there and enabled, accepting a confirm() it may ask."""
    from selenium.common.exceptions import NoAlertPresentException

    def enabled(d: Any) -> Any:
        button = d.find_element("css selector", css)
        return button if button.is_enabled() else None

    wait_for(driver, enabled, f"{css} enabled").click()
    try:
        driver.switch_to.alert.accept()
    except NoAlertPresentException:
        pass


def assert_no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    raise AssertionError(f"an alert fired: {text!r}")


def _row_ids(driver: Any) -> list[str]:
    return [str(r) for r in driver.execute_script(
        "return [...document.querySelectorAll('#runs tbody tr.run')].map(r => r.dataset.runId)")]


def test_a_long_runs_list_shows_its_first_page_and_show_more_loads_the_next(
        driver: Any, tmp_path: Path) -> None:
    """With 250 recorded runs the table shows the newest 100 and says "100 of 250 runs";
    "Show more" adds the next 100, in order; a run recorded meanwhile comes in on top without
    losing the row it pushed off the first page; the last click shows every run and the button
    goes. Filtered on a status, the pages are of that status."""
    from dashboard_store import record_runs, status_of
    from selenium.webdriver.support.ui import Select

    store = tmp_path / "many.db"
    order = record_runs(store, 250)
    server = start_dashboard(store, tmp_path)
    try:
        driver.get(server.page("/"))
        wait_for(driver, _shows("#run-count", "100 of 250 runs"), '"100 of 250 runs"')
        assert _row_ids(driver) == order[:100]
        assert text_of(driver, "#status-filter option[value='failed']") == "failed (84)"
        click(driver, "#show-more")
        wait_for(driver, _shows("#run-count", "200 of 250 runs"), '"200 of 250 runs"')
        assert _row_ids(driver) == order[:200]

        newest = record_runs(store, 1, first=250)
        wait_for(driver, _shows("#run-count", "201 of 251 runs"), '"201 of 251 runs"')
        assert _row_ids(driver) == newest + order[:200]
        click(driver, "#show-more")
        wait_for(driver, _shows("#run-count", "251 of 251 runs"), '"251 of 251 runs"')
        assert _row_ids(driver) == newest + order
        assert not driver.find_element("css selector", "#show-more").is_displayed()

        completed = [r for r in newest + order if status_of(int(r[4:])) == "completed"]
        Select(driver.find_element("css selector", "#status-filter")).select_by_value(
            "completed")
        wait_for(driver, _shows("#run-count", f"100 of {len(completed)} completed runs"),
                 "the first page of completed runs")
        assert _row_ids(driver) == completed[:100]
        click(driver, "#show-more")
        wait_for(driver, _shows("#run-count",
                                f"{len(completed)} of {len(completed)} completed runs"),
                 "every completed run")
        assert _row_ids(driver) == completed
        assert not driver.find_element("css selector", "#show-more").is_displayed()
    finally:
        stop(server.process)
