"""`doeff dashboard`'s HTTP API, served for real: the command runs in a subprocess on a free
loopback port over a real SQLite store holding real recorded runs, and httpx talks to it."""

from __future__ import annotations

import json
import os
import pickle
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_cli import doeff

from doeff import do, run_sync, run_workflow, step
from doeff.cli.output import show_value
from doeff.effects import perform
from doeff.effects.cache import cached
from doeff.errors import InvalidKeyError, install_hint
from doeff.runs.api import runs_of
from doeff.serde import MsgpackCodec, PickleCodec
from doeff.serde.envelope import seal
from doeff.storage import LMDBKV, Durable, SQLiteKV

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.filterwarnings("ignore::doeff.errors.UnsignedPickleWarning")

XSS_KEY = "<img src=x onerror=alert(1)>"
ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "doeff" / "dashboard" / "static"


# -- the store: two runs, steps, a hostile key, pickles -------------------------------------


@step(name="app.fetch")
def fetch(table: str) -> list[str]:
    return [f"{table}-{i}" for i in range(3)]


@do
def job(fail: bool) -> Generator[Any, Any, Any]:
    rows = yield fetch("orders")
    yield fetch("users")
    total = yield cached("report:total", lambda: perform(len, rows))
    if fail:
        raise RuntimeError("the warehouse is closed <img src=y onerror=alert(3)>")
    return total


class Trap:
    """Unpickling it creates the file `path`: proof that a process loaded a pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store with runs `ok` (completed) and `bad` (failed), the records of the step
    app.fetch and of `report:total`, a key made of HTML, and two pickle records (`pickled`, and
    `trap`, whose loading creates the file `trap-loaded` beside the store)."""
    folder = tmp_path_factory.mktemp("dashboard")
    path = folder / "wf.db"
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        assert run_sync(job(False), storage=storage, run_id="ok").is_ok()
        assert run_sync(job(True), storage=storage, run_id="bad").is_err()
        storage.put(XSS_KEY, "<script>alert(2)</script>")
    with Durable(SQLiteKV(path), PickleCodec()) as storage:
        storage.put("pickled", {"secret": 42})
        storage.put("trap", Trap(str(folder / "trap-loaded")))
    return str(path)


# -- the server ------------------------------------------------------------------------------


@contextmanager
def dashboard(store: str, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`doeff dashboard STORE --port 0 ARGS` running; (its printed address, the process).
    Stopped with SIGTERM at the end, which must end it with status 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DOEFF_DASHBOARD_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "doeff", "dashboard", store, "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        match = re.fullmatch(r"doeff dashboard: serving (http://127\.0\.0\.1:\d+/)(\?token=.*)?\n",
                             line)
        assert match, f"printed {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield line.split("serving ", 1)[1].strip(), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the dashboard did not stop within 10 s of SIGTERM") from None
        finally:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        assert code == 0, f"exit status {code} after SIGTERM"


@pytest.fixture(scope="module")
def base(store: str) -> Iterator[str]:
    """The address of a default dashboard (loopback, no token) of `store`."""
    with dashboard(store) as (url, _):
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    """An HTTP client of the default dashboard, keeping cookies like a browser."""
    with httpx.Client(base_url=base, timeout=10) as c:
        yield c


def csrf(c: httpx.Client, page: str = "/") -> str:
    """Load `page` (which sets the session cookie) and return its CSRF token."""
    html = c.get(page).text
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert match, html
    return match.group(1)


def events(response: httpx.Response, within: float = 30.0) -> Iterator[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent event stream; AssertionError if the next one
    takes more than `within` seconds (the stream's keep-alive comments, every 5 s, would
    otherwise keep a read waiting forever for an event that never comes)."""
    name, data = None, []
    deadline = time.monotonic() + within
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise AssertionError(f"no event within {within:g} s")
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif line == "" and name is not None:
            yield name, json.loads("\n".join(data))
            name, data = None, []
            deadline = time.monotonic() + within


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


# -- runs ----------------------------------------------------------------------------------


def test_runs_list_gives_summaries_and_filters_by_status(client: httpx.Client) -> None:
    """/api/runs lists both runs with status and step counts, newest first; ?status= keeps one
    status; an unknown status is a 400 naming the valid ones."""
    runs = {r["run_id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert runs["ok"]["status"] == "completed" and runs["bad"]["status"] == "failed"
    assert runs["ok"]["durable_steps"] == 3 and runs["ok"]["step_count"] > 0
    assert runs["bad"]["effect"] is None and runs["ok"]["age"] == "<1m"
    failed = client.get("/api/runs", params={"status": "failed"}).json()["runs"]
    assert "bad" in [r["run_id"] for r in failed] and {r["status"] for r in failed} == {"failed"}
    done = client.get("/api/runs", params={"status": "completed"}).json()["runs"]
    assert [r["run_id"] for r in done] == ["ok"]
    bad = client.get("/api/runs", params={"status": "sleeping"})
    assert bad.status_code == 400 and "running" in bad.json()["error"]


def test_run_detail_has_the_error_traceback_k_stack_and_steps(client: httpx.Client) -> None:
    """/api/runs/bad is the failed run's record: its error with the doeff traceback pointing at
    this file, its K stack with this file's lines, its steps (hits: `ok` stored them first)."""
    record = client.get("/api/runs/bad").json()
    assert record["run_id"] == "bad" and record["status"] == "failed"
    assert record["error"]["type"] == "RuntimeError"
    assert "test_dashboard_api.py" in record["error"]["traceback"]
    assert "raise RuntimeError" in record["error"]["traceback"]
    frames = record["tasks"][0]["k_stack"]
    assert any(f["file"].endswith("test_dashboard_api.py") and f["line"] for f in frames)
    assert [(s["outcome"], s["key"].split("@")[0]) for s in record["steps"]] == [
        ("hit", "step:app.fetch"), ("hit", "step:app.fetch"), ("hit", "report:total")]
    assert record["summary"]["durable_steps"] == 3
    missing = client.get("/api/runs/nope")
    assert missing.status_code == 404 and "no run nope" in missing.json()["error"]


@do
def forever() -> Generator[Any, Any, None]:
    while True:
        yield perform(time.sleep, 0.02)


@pytest.fixture
def live(store: str) -> Iterator[str]:
    """A run `live` going on in this process (recorded in `store`) until the test ends."""
    with Durable(SQLiteKV(store), MsgpackCodec()) as storage:
        execution = run_workflow(forever(), storage=storage, run_id="live")
        try:
            yield "live"
        finally:
            execution.cancel()
            execution.wait(timeout=10)


def test_cancel_pause_resume_need_the_session_csrf_token(client: httpx.Client,
                                                         live: str) -> None:
    """A POST without the CSRF token, with a wrong one or with another session's is 403 and
    changes nothing; with the page's token, pause, resume and cancel reach the running run."""
    def status() -> str:
        return str(client.get(f"/api/runs/{live}").json()["status"])

    wait_for(lambda: status() == "running", "the run showing as running")
    token = csrf(client)
    assert client.post(f"/api/runs/{live}/pause").status_code == 403
    for bad in ("0" * 64, "é" * 64):
        wrong = client.post(f"/api/runs/{live}/pause",
                            headers={b"X-CSRF-Token": bad.encode("latin-1")})
        assert wrong.status_code == 403 and "CSRF" in wrong.json()["error"]
    with httpx.Client(base_url=str(client.base_url), timeout=10) as other:
        csrf(other)  # another browser: another session, whose cookie does not fit `token`
        assert other.post(f"/api/runs/{live}/pause",
                          headers={"X-CSRF-Token": token}).status_code == 403
    foreign = client.post(f"/api/runs/{live}/pause", headers={
        "X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    time.sleep(0.5)  # a few heartbeats: a request that slipped through would have landed
    assert status() == "running"

    headers = {"X-CSRF-Token": token}
    paused = client.post(f"/api/runs/{live}/pause", headers=headers)
    assert paused.status_code == 200 and paused.json()["requested"] == "pause"
    wait_for(lambda: status() == "paused", "pause")
    assert client.post(f"/api/runs/{live}/resume", headers=headers).status_code == 200
    wait_for(lambda: status() == "running", "resume")
    assert client.post(f"/api/runs/{live}/cancel", headers=headers).status_code == 200
    wait_for(lambda: status() == "failed", "cancel")
    record = client.get(f"/api/runs/{live}").json()
    assert record["error"]["type"] in ("CancellationError", "CancelledError")
    ended = client.post(f"/api/runs/{live}/cancel", headers=headers)
    assert ended.status_code == 409 and "nothing to cancel" in ended.json()["error"]
    unknown = client.post("/api/runs/ghost/cancel", headers=headers)
    assert unknown.status_code == 404


def test_read_only_hides_the_controls_and_refuses_every_post(store: str,
                                                             client: httpx.Client) -> None:
    """--read-only: the run page has no buttons, and a POST with a valid CSRF token is 403
    (the default server has them)."""
    with dashboard(store, "--read-only") as (url, _), httpx.Client(base_url=url) as c:
        page = c.get("/run/ok").text
        assert 'id="run-status"' in page
        assert not re.search(r'id="(cancel|pause|resume)-btn"', page)
        refused = c.post("/api/runs/ok/cancel", headers={"X-CSRF-Token": csrf(c)})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
        assert c.get("/api/runs/ok").json()["status"] == "completed"
    assert re.search(r'id="cancel-btn"', client.get("/run/ok").text)


# -- safety -------------------------------------------------------------------------------


def test_a_token_is_needed_on_every_request_by_bearer_or_by_cookie(store: str) -> None:
    """With --token: 401 without it or with a wrong one; a Bearer header works; `?token=` on a
    page sets an HttpOnly cookie and redirects to the address without the token, after which
    the cookie alone lets the browser in."""
    with dashboard(store, "--token", "s3cret-T") as (url, _):
        assert url.endswith("/?token=s3cret-T")
        root = url.split("?")[0]
        with httpx.Client(base_url=root) as c:
            assert c.get("/api/runs").status_code == 401
            assert c.get("/").status_code == 401
            assert c.get("/static/run.js").status_code == 401
            assert c.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code \
                == 401
            assert c.get("/", params={"token": "wrong"}).status_code == 401
            port = root.rstrip("/").rsplit(":", 1)[1]
            forged = {f"doeff_token_{port}": "wrong"}
            with httpx.Client(base_url=root, cookies=forged) as impostor:
                assert impostor.get("/api/runs").status_code == 401
            ok = c.get("/api/runs", headers={"Authorization": "Bearer s3cret-T"})
            assert ok.status_code == 200
            assert {r["run_id"] for r in ok.json()["runs"]} >= {"ok", "bad"}
            signin = c.get("/cache", params={"token": "s3cret-T", "prefix": "a"})
            assert signin.status_code == 303 and signin.headers["location"] == "/cache?prefix=a"
            cookie = signin.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert c.get("/api/runs").status_code == 200  # the cookie now
            odd = c.get("/run/a%3Fb%23c", params={"token": "s3cret-T"})
            assert odd.status_code == 303 and odd.headers["location"] == "/run/a%3Fb%23c"
            assert c.get("/cache").status_code == 200
            # A path starting `//` must not come back as an address on another host.
            away = c.get(root.rstrip("/") + "//evil.example/x?token=s3cret-T")
            assert away.status_code == 303 and away.headers["location"] == "/evil.example/x"


def test_a_host_header_other_than_the_bound_host_is_refused(client: httpx.Client,
                                                            base: str) -> None:
    """DNS rebinding: a request naming another host gets 421, the bound names work."""
    port = base.rstrip("/").rsplit(":", 1)[1]
    assert client.get("/api/runs", headers={"Host": f"evil.example:{port}"}).status_code == 421
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 421
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 200


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []
        self.in_script = False
        self.inline = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self.in_script = True

    def handle_endtag(self, tag: str) -> None:
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.inline += data.strip()


@pytest.mark.parametrize("page", ["/", "/run/ok", "/cache"])
def test_pages_load_only_their_own_scripts_under_a_strict_csp(client: httpx.Client,
                                                              page: str) -> None:
    """Every page is served with a CSP that allows scripts from the server only (no inline),
    and has no inline script or event-handler attribute of its own; its scripts load."""
    response = client.get(page)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    found = _Scripts()
    found.feed(response.text)
    assert found.scripts and not found.inline and not found.handlers
    for script in found.scripts:
        src = script["src"]
        assert src is not None and src.startswith("/static/")
        loaded = client.get(src)
        assert loaded.status_code == 200 and "javascript" in loaded.headers["content-type"]
    assert client.get("/api/runs").headers["content-security-policy"] == csp


def test_static_files_are_only_the_packaged_ones(client: httpx.Client) -> None:
    """/static/ serves the package's files; any other name, a path included, is a 404."""
    assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")
    for name in ("nope.js", "run.html", "..%2F__init__.py", "../app.py"):
        assert client.get(f"/static/{name}").status_code == 404


def test_store_text_is_served_as_data_never_as_markup(client: httpx.Client) -> None:
    """A key and a value made of HTML come back verbatim inside JSON (application/json,
    nosniff), never in an HTML response; the pages' scripts insert text only (no innerHTML,
    outerHTML, insertAdjacentHTML or document.write anywhere)."""
    rows = client.get("/api/cache", params={"prefix": "<img"})
    assert rows.headers["content-type"] == "application/json"
    assert [(r["key"], r["value"]) for r in rows.json()] == [
        (XSS_KEY, "'<script>alert(2)</script>'")]
    record = client.get("/api/runs/bad").json()
    assert "<img src=y onerror=alert(3)>" in record["error"]["message"]
    for page in ("/", "/cache", "/run/bad", f"/run/{XSS_KEY}"):
        html = client.get(page).text
        assert "onerror" not in html and "alert(" not in html
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"


# -- live updates ---------------------------------------------------------------------------


def test_event_streams_send_a_change_when_a_run_record_changes(client: httpx.Client,
                                                               store: str) -> None:
    """/api/events starts with every run, then sends only what changed (a new run, then its
    removal); a run's own stream sends its record again when it changes (its step count),
    and says when there is no such run."""
    with Durable(SQLiteKV(store), MsgpackCodec()) as storage:
        runs = runs_of(storage)
        record = client.get("/api/runs/ok").json()
        record.pop("summary")
        with client.stream("GET", "/api/events", timeout=5) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            received = events(stream)
            name, first = next(received)
            assert name == "runs" and first["full"]
            assert {"ok", "bad"} <= {r["run_id"] for r in first["runs"]}
            runs.write({**record, "run_id": "fresh", "started_at": time.time()})
            name, change = next(received)
            assert name == "runs" and not change["full"] and change["removed"] == []
            assert [r["run_id"] for r in change["runs"]] == ["fresh"]
            with client.stream("GET", "/api/runs/fresh/events", timeout=5) as one:
                received_one = events(one)
                name, shown = next(received_one)
                assert name == "run" and shown["step_count"] == record["step_count"]
                runs.write({**record, "run_id": "fresh", "step_count": 12345})
                name, shown = next(received_one)
                assert name == "run" and shown["step_count"] == 12345
                name, change = next(received)  # the list saw the new step count too
                assert [(r["run_id"], r["step_count"]) for r in change["runs"]] == [
                    ("fresh", 12345)]
                runs.delete("fresh")
                assert next(received_one) == ("missing", {"run_id": "fresh"})
            name, change = next(received)
            assert {k: change[k] for k in ("full", "runs", "removed", "below")} == {
                "full": False, "runs": [], "removed": ["fresh"], "below": []}
            assert change["total"] == first["total"] and change["unreadable"] == []
        with client.stream("GET", "/api/runs/ghost/events", timeout=5) as stream:
            assert next(events(stream)) == ("missing", {"run_id": "ghost"})


def test_a_failing_store_is_reported_on_the_stream_which_stays_up(tmp_path: Path) -> None:
    """When reading the store fails (here its runs table vanishes under the server), the stream
    sends `store-error` with the reason, keeps polling, and goes on once the store is back."""
    path = tmp_path / "wf.db"
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        assert run_sync(job(False), storage=storage, run_id="ok").is_ok()
    with dashboard(str(path)) as (url, _), httpx.stream("GET", url + "api/events",
                                                        timeout=5) as stream:
        received = events(stream)
        assert next(received)[0] == "runs"
        with sqlite3.connect(path) as db:
            saved = db.execute("SELECT * FROM doeff_ns_runs").fetchall()
            schema = db.execute("SELECT sql FROM sqlite_master WHERE name = 'doeff_ns_runs'"
                                ).fetchone()[0]
            db.execute("DROP TABLE doeff_ns_runs")
        name, data = next(received)
        assert name == "store-error" and "Error" in data["error"]
        with sqlite3.connect(path) as db:
            db.execute(schema)
            marks = ", ".join("?" * len(saved[0]))
            db.executemany(f"INSERT INTO doeff_ns_runs VALUES ({marks})", saved)
        with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
            assert run_sync(job(False), storage=storage, run_id="after").is_ok()
        while (found := next(received))[0] == "store-error":
            pass
        name, data = found
        assert name == "runs" and [r["run_id"] for r in data["runs"]] == ["after"]


def test_sigterm_ends_the_server_at_once_even_with_a_stream_open(store: str) -> None:
    """An open event stream does not hold the shutdown: SIGTERM ends the command, status 0."""
    with dashboard(store) as (url, proc):
        opened = threading.Event()

        def follow() -> None:
            try:
                with httpx.stream("GET", url + "api/events", timeout=20) as stream:
                    for _ in stream.iter_lines():
                        opened.set()
            except httpx.HTTPError:
                pass

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert opened.wait(10)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        reader.join(timeout=10)
        assert proc.stderr is not None and proc.stderr.read() == ""


# -- the cache ------------------------------------------------------------------------------


def test_cache_lists_records_by_prefix_and_by_step(client: httpx.Client) -> None:
    """/api/cache lists every record in key order with codec, size, age and expiry; ?prefix=
    and ?step= select (both at once: both apply); ?limit= caps the list and is checked."""
    every = client.get("/api/cache").json()
    keys = [r["key"] for r in every]
    assert keys == sorted(keys) and {"pickled", "trap", "report:total", XSS_KEY} <= set(keys)
    total = next(r for r in every if r["key"] == "report:total")
    assert total["codec"] == "msgpack" and total["value"] == "3" and total["size"] > 10
    assert total["age"] == "<1m" and total["expiry"] == "-"
    fetched = client.get("/api/cache", params={"step": "app.fetch"}).json()
    assert len(fetched) == 2 and all(r["key"].startswith("step:app.fetch@v1:") for r in fetched)
    assert {r["value"] for r in fetched} == {"['orders-0', 'orders-1', 'orders-2']",
                                             "['users-0', 'users-1', 'users-2']"}
    assert client.get("/api/cache", params={"prefix": "report:"}).json()[0]["key"] == \
        "report:total"
    assert client.get("/api/cache", params={"prefix": "report:", "step": "app.fetch"}).json() \
        == []
    assert client.get("/api/cache", params={"step": "app.nothing"}).json() == []
    assert len(client.get("/api/cache", params={"limit": "2"}).json()) == 2
    for limit in ("0", "x", "100000"):
        assert client.get("/api/cache", params={"limit": limit}).status_code == 400


def test_pickle_values_stay_hidden_unless_the_server_has_unsafe_pickle(
        store: str, client: httpx.Client) -> None:
    """Without --unsafe-pickle a pickle record's value is hidden with the reason, and nothing
    is unpickled (the trap record's side effect does not happen); with it, values show."""
    marker = Path(store).parent / "trap-loaded"
    rows = {r["key"]: r for r in client.get("/api/cache").json()}
    for key in ("pickled", "trap"):
        assert rows[key]["codec"] == "pickle" and rows[key]["value"] is None
        assert "--unsafe-pickle" in rows[key]["hidden"]
    assert rows["report:total"]["hidden"] is None
    assert not marker.exists()
    assert client.get("/api/info").json()["unsafe_pickle"] is False
    with dashboard(store, "--unsafe-pickle") as (url, _), httpx.Client(base_url=url) as c:
        rows = {r["key"]: r for r in c.get("/api/cache").json()}
        assert rows["pickled"]["value"] == "{'secret': 42}" and rows["pickled"]["hidden"] is None
        assert marker.exists()  # the flag means what it says: the pickle was loaded


def test_stats_count_records_and_bytes_by_codec(client: httpx.Client, store: str) -> None:
    """/api/stats gives records and bytes per codec, equal to what the store holds."""
    expected: dict[str, list[int]] = {}
    with SQLiteKV(store, readonly=True) as kv:
        for key, raw, _ in kv.records():
            tag = "pickle" if key in ("pickled", "trap") else "msgpack"
            cell = expected.setdefault(tag, [0, 0])
            cell[0] += 1
            cell[1] += len(raw)
    stats = client.get("/api/stats").json()
    assert {t: [c["records"], c["bytes"]] for t, c in stats["codecs"].items()} == expected
    assert stats["records"] == sum(c for c, _ in expected.values())
    assert stats["bytes"] == sum(b for _, b in expected.values())
    assert stats["unreadable"] == {"records": 0, "bytes": 0}


def test_an_lmdb_store_is_served_too(tmp_path: Path) -> None:
    """`lmdb:///DIR` works as with the other commands: its runs and records are listed."""
    folder = tmp_path / "wf.lmdb"
    with Durable(LMDBKV(folder), MsgpackCodec()) as storage:
        assert run_sync(job(False), storage=storage, run_id="on-lmdb").is_ok()
    with dashboard(f"lmdb://{folder}") as (url, _), httpx.Client(base_url=url) as c:
        assert [(r["run_id"], r["status"]) for r in c.get("/api/runs").json()["runs"]] == [
            ("on-lmdb", "completed")]
        assert [r["key"] for r in c.get("/api/cache", params={"prefix": "report"}).json()] \
            == ["report:total"]


def test_a_postgresql_store_is_served_too(tmp_path: Path) -> None:
    """`postgresql://...?table=T` works as with the other commands: runs and records listed."""
    import pg_server

    from doeff.storage.postgres import PostgresKV

    server = pg_server.require_server()
    table = pg_server.table_for(tmp_path)
    with Durable(PostgresKV(server.dsn, table=table), MsgpackCodec()) as storage:
        assert run_sync(job(True), storage=storage, run_id="on-pg").is_err()
    url = f"postgresql://doeff@127.0.0.1:{server.port}/postgres?table={table}"
    with dashboard(url, "--read-only") as (address, _), httpx.Client(base_url=address) as c:
        assert [(r["run_id"], r["status"]) for r in c.get("/api/runs").json()["runs"]] == [
            ("on-pg", "failed")]
        assert c.get("/api/runs/on-pg").json()["error"]["type"] == "RuntimeError"
        assert [r["key"] for r in c.get("/api/cache", params={"prefix": "report"}).json()] \
            == ["report:total"]
        assert c.get("/api/info").json()["store"] == url


# -- the command ----------------------------------------------------------------------------


def test_a_non_loopback_host_needs_a_token(store: str) -> None:
    """--host 0.0.0.0 without --token: one line naming --token, exit 2, nothing served."""
    try:
        done = subprocess.run([sys.executable, "-m", "doeff", "dashboard", store, "--host",
                               "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                              timeout=20, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("it served on 0.0.0.0 without a token") from exc
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "--token" in done.stderr
    bad = doeff("dashboard", store, "--token", "a b;c", "--port", "0")
    assert bad.returncode == 2 and "--token" in bad.stderr


def test_a_missing_extra_is_one_line_naming_it(store: str) -> None:
    """Without starlette or uvicorn importable, the command says which extra to install."""
    for missing in ("starlette", "uvicorn"):
        code = (f"import sys; sys.modules[{missing!r}] = None\n"
                "from doeff.__main__ import main\n"
                f"sys.exit(main(['dashboard', {store!r}]))\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert install_hint("dashboard") in done.stderr and "doeff[dashboard]" in done.stderr


def test_a_missing_store_or_a_busy_port_is_exit_2(store: str, tmp_path: Path) -> None:
    """The store must exist (nothing is created); a port in use is said, not a traceback."""
    gone = doeff("dashboard", str(tmp_path / "absent.db"), "--port", "0")
    assert gone.returncode == 2 and "no such store" in gone.stderr
    assert not (tmp_path / "absent.db").exists()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = doeff("dashboard", store, "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen" in busy.stderr
    assert "--port 0" in busy.stderr  # what to do about it
    assert len(busy.stderr.splitlines()) == 1


def test_importing_doeff_and_its_command_loads_no_web_framework() -> None:
    """`import doeff`, the CLI and the dashboard package import neither starlette nor uvicorn:
    only `doeff dashboard` does, when it runs."""
    code = ("import sys, doeff, doeff.cli.app, doeff.__main__, doeff.dashboard, "
            "doeff.dashboard.data, doeff.dashboard.command\n"
            "print(sorted(m for m in sys.modules if m.partition('.')[0] in "
            "('starlette', 'uvicorn', 'anyio')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pickled_trap_really_runs_code_when_loaded(tmp_path: Path) -> None:
    """The trap the pickle test relies on does create its file when unpickled."""
    marker = tmp_path / "loaded"
    pickle.loads(pickle.dumps(Trap(str(marker))))
    assert marker.exists()


# -- any key, any value ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def blank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the path of an empty store, the address of a dashboard serving it)."""
    path = str(tmp_path_factory.mktemp("blank") / "blank.db")
    with SQLiteKV(path) as kv:
        kv.put("seed", b"")
        kv.delete("seed")
    with dashboard(path) as (url, _):
        yield path, url


_KEYS = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=20) | st.binary(max_size=20)
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_KEYS, value=_VALUES, cut=st.integers(min_value=0, max_value=40))
def test_any_key_and_value_come_back_as_the_data_they_are(blank: tuple[str, str], key: str,
                                                          value: Any, cut: int) -> None:
    """For every key and msgpack value: /api/cache, filtered by any prefix of the key, lists
    the key exactly as stored and the value as `doeff cache get` prints it."""
    path, url = blank
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        try:
            storage.put(key, value)
        except InvalidKeyError:
            assume(False)
        try:
            with httpx.Client(base_url=url, timeout=10) as c:
                rows = c.get("/api/cache", params={"prefix": key[:cut]}).json()
        finally:
            storage.delete(key)
    assert [(r["key"], r["value"], r["codec"]) for r in rows] == \
        [(key, show_value(value), "msgpack")]


# -- damaged and crafted run records ---------------------------------------------------------


def _strict_json(text: str) -> Any:
    """`text` parsed as JSON proper: NaN and Infinity, which browsers refuse, are an error."""
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a JSON answer: a browser cannot parse it")

    return json.loads(text, parse_constant=refuse)


def _crafted(**fields: Any) -> dict[str, Any]:
    now = time.time()
    return {"run_id": "?", "status": "completed", "attempt": 1, "program": "p",
            "started_at": now, "updated_at": now, "ended_at": now, "heartbeat_at": now,
            "host": "elsewhere", "pid": 1, "step_count": 1, "current_effect": None,
            "tasks": [], "steps": [], "steps_omitted": 0, "error": None, "attempts": [],
            **fields}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dashboard of a store whose runs namespace holds what no recorder writes: bytes that
    are no record (`garbage`), times no calendar holds (`nan`, `inf`: refused as records;
    `far`: a finite year past 9999), a live run of this host with a pid past any OS's
    (`huge-pid`), the ids `.` and `..`, and a cache record whose time is infinite."""
    path = tmp_path_factory.mktemp("damaged") / "wf.db"
    from doeff.runs.record import HOST

    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        storage.put("when", 1)
        runs = runs_of(storage)
        runs.kv.put("run:garbage", b"\x00\xffnot a record")
        # A run record that is a pickle: loading it would create `trap-loaded`.
        runs.kv.put("run:pickled", seal(Trap(str(path.parent / "trap-loaded")), PickleCodec(),
                                        key="run:pickled"))
        runs.write(_crafted(run_id="nan", started_at=float("nan")))
        runs.write(_crafted(run_id="inf", heartbeat_at=float("inf")))
        runs.write(_crafted(run_id="far", started_at=1e300))
        runs.write(_crafted(run_id="huge-pid", status="running", ended_at=None, host=HOST,
                            pid=2 ** 62))
        for dots in (".", ".."):
            runs.write(_crafted(run_id=dots, program=f"dots {dots}"))
    with sqlite3.connect(path) as db:  # as a damaged or hand-edited file may hold it
        db.execute("UPDATE doeff_kv SET updated_at = 9e999 WHERE key = 'when'")
    with dashboard(str(path)) as (url, _):
        yield url


def test_damaged_run_records_break_neither_the_list_nor_its_stream(damaged: str) -> None:
    """Records that cannot be read, and readable ones with odd numbers, leave /api/runs and
    the list's stream working and strict JSON: the readable runs listed (a time past year 9999
    shown as a number, a pid no process has as lost), the others named with why."""
    with httpx.Client(base_url=damaged, timeout=10) as c:
        listed = c.get("/api/runs")
        assert listed.status_code == 200, listed.text
        runs = {r["run_id"]: r for r in _strict_json(listed.text)["runs"]}
        assert sorted(runs) == [".", "..", "far", "huge-pid"]
        assert "not a date" in runs["far"]["started"]
        assert runs["huge-pid"]["status"] == "lost"
        with c.stream("GET", "/api/events") as stream:
            lines = stream.iter_lines()
            while next(lines) != "event: runs":
                pass
            first = _strict_json(next(lines)[len("data: "):])
    assert first["full"] and sorted(r["run_id"] for r in first["runs"]) == sorted(runs)
    why = {b["run_id"]: b["error"] for b in first["unreadable"]}
    assert sorted(why) == ["garbage", "inf", "nan", "pickled"]
    assert "not a doeff record" in why["garbage"] and "does not trust" in why["pickled"]
    assert "not a finite number" in why["nan"] and "not a finite number" in why["inf"]


def test_an_unreadable_run_says_why_on_its_page_stream_and_actions(damaged: str) -> None:
    """A run whose record cannot be read is a 422 saying why (not a 404 "no run"), its
    stream sends `event: unreadable`, and a cancel of it is a 422, not a server error."""
    with httpx.Client(base_url=damaged, timeout=10) as c:
        one = c.get("/api/runs/garbage")
        assert one.status_code == 422 and "cannot be read" in one.json()["error"]
        with c.stream("GET", "/api/runs/garbage/events") as stream:
            found = next(events(stream))
        assert found[0] == "unreadable" and "cannot be read" in found[1]["error"]
        cancel = c.post("/api/runs/garbage/cancel", headers={"X-CSRF-Token": csrf(c)})
        assert cancel.status_code == 422 and "cannot be read" in cancel.json()["error"]
        assert c.get("/api/runs/ghost").status_code == 404


def test_the_run_ids_dot_and_dot_dot_are_reached_by_query(damaged: str) -> None:
    """Browsers resolve `.` and `..` away as path segments, even percent-encoded: an empty
    id in the path and `?id=` name such a run, for its record, its stream and its actions."""
    with httpx.Client(base_url=damaged, timeout=10) as c:
        for dots in (".", ".."):
            record = c.get("/api/runs/", params={"id": dots})
            assert record.status_code == 200 and record.json()["program"] == f"dots {dots}"
            with c.stream("GET", "/api/runs//events", params={"id": dots}) as stream:
                name, data = next(events(stream))
            assert name == "run" and data["run_id"] == dots
            ended = c.post("/api/runs//cancel", params={"id": dots},
                           headers={"X-CSRF-Token": csrf(c)})
            assert ended.status_code == 409 and "completed" in ended.json()["error"]


def test_a_cache_record_with_an_infinite_time_is_listed_as_json(damaged: str) -> None:
    """An infinite `updated_at` (a damaged file) leaves /api/cache strict JSON, time as null."""
    with httpx.Client(base_url=damaged, timeout=10) as c:
        answer = c.get("/api/cache")
    assert answer.status_code == 200, answer.text
    (row,) = _strict_json(answer.text)
    assert row["key"] == "when" and row["updated_at"] is None and row["value"] == "1"


def test_a_pickled_run_record_is_never_loaded(damaged: str) -> None:
    """Run records are read as msgpack only: a pickle among them, listed, fetched and
    streamed, is named unreadable and never loaded (its trap file never appears)."""
    with httpx.Client(base_url=damaged, timeout=10) as c:
        assert c.get("/api/runs").status_code == 200
        one = c.get("/api/runs/pickled")
        assert one.status_code == 422 and "does not trust" in one.json()["error"]
        with c.stream("GET", "/api/runs/pickled/events") as stream:
            assert next(events(stream))[0] == "unreadable"
        folder = Path(c.get("/api/info").json()["store"]).parent
    assert (folder / "wf.db").exists() and not (folder / "trap-loaded").exists()


def test_a_stream_whose_poll_fails_in_any_way_says_so_and_goes_on(tmp_path: Path) -> None:
    """Whatever a poll raises (a store's error, or reading what it holds failing some other
    way), the stream sends `event: store-error` naming it and polls again: it never dies."""
    from doeff.dashboard.app import Endpoints, Settings

    answers: list[Any] = [RuntimeError("reading went wrong"), ("run", {"n": 1})]

    def poll() -> tuple[str, Any] | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    async def first_three() -> list[str]:
        stream = Endpoints(Settings(kv=SQLiteKV(tmp_path / "s.db"), store="s.db", poll=0.01)) \
            ._events(poll)
        sent = [await stream.__anext__() for _ in range(3)]
        await stream.aclose()  # type: ignore[attr-defined]
        return sent

    import anyio

    sent = anyio.run(first_three)
    assert sent[1] == 'event: store-error\ndata: {"error":"RuntimeError: reading went wrong"}\n\n'
    assert sent[2] == 'event: run\ndata: {"n":1}\n\n'


def test_open_runs_pages_share_one_read_of_the_list(tmp_path: Path) -> None:
    """The runs pages' streams polling within `share_for` of each other read the store's run
    list once between them (each page read it alone before: the server's work grew with every
    open tab); a change is still seen once that window has passed."""
    from doeff.dashboard.data import RunListFeed, RunReader

    path = tmp_path / "s.db"
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        runs_of(storage).write(_crafted(run_id="one"))
        reader = RunReader(storage.kv)
        reads = 0
        read_all = reader.all

        def counted(status: str | None = None) -> Any:
            nonlocal reads
            reads += 1
            return read_all(status)

        reader.all = counted  # type: ignore[method-assign]
        pages = [RunListFeed(reader, share_for=60.0) for _ in range(5)]
        assert all(p.poll() is not None for p in pages) and reads == 1
        alone = RunListFeed(reader)  # share_for=0: reads for itself
        assert alone.poll() is not None and reads == 2
        runs_of(storage).write(_crafted(run_id="two"))
        change = alone.poll()
        assert change is not None and [r["run_id"] for r in change["runs"]] == ["two"]
        assert pages[0].poll() is not None  # the list `alone` read is younger than 60 s
        assert reads == 3


def test_a_run_page_decodes_its_record_only_when_its_bytes_change(tmp_path: Path) -> None:
    """A run's stream polls its record five times a second, and a wide fan-out's is a
    megabyte: it is decoded again only when its bytes change, while "lost" (a matter of time,
    not bytes) is still seen on the record as it was."""
    from doeff.dashboard.data import RunFeed, RunReader

    with Durable(SQLiteKV(tmp_path / "s.db"), MsgpackCodec()) as storage:
        runs = runs_of(storage)
        runs.write(_crafted(run_id="r", status="running", ended_at=None))
        reader = RunReader(storage.kv, lost_after=0.5)
        decodes = 0
        decode = reader.runs.decode

        def counted(run_id: str, raw: bytes) -> Any:
            nonlocal decodes
            decodes += 1
            return decode(run_id, raw)

        reader.runs.decode = counted  # type: ignore[method-assign]
        feed = RunFeed(reader, "r")
        first = feed.poll()
        assert first is not None and first[1]["status"] == "running"
        assert [feed.poll() for _ in range(5)] == [None] * 5 and decodes == 1
        runs.write(_crafted(run_id="r", status="running", ended_at=None, step_count=7))
        changed = feed.poll()
        assert changed is not None and changed[1]["step_count"] == 7 and decodes == 2
        wait_for(lambda: (found := feed.poll()) is not None and found[1]["status"] == "lost",
                 "the run showing as lost without a heartbeat")
        assert decodes == 2
