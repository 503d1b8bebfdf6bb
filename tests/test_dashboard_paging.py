"""The dashboard's runs list in pages: `/api/runs?limit=&before=&status=` and the runs stream,
which sends only the first page. Served for real (the command in a subprocess over a real
SQLite store of recorded runs, httpx as the client), and the paging function itself checked for
all lists of runs."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_store import record_runs, run_id_of, status_of
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dashboard_api import dashboard, events

from doeff.dashboard.data import RUNS_PAGE, run_page
from doeff.runs import RunRecord
from doeff.runs.api import runs_of
from doeff.runs.record import STATUSES
from doeff.serde import MsgpackCodec
from doeff.storage import Durable, SQLiteKV

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

COUNT = RUNS_PAGE + 30  # more than a default page
TIES = ["tie-b", "tie-a", "tie-c"]  # three runs started at the same instant


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """A dashboard over a store of COUNT runs a second apart and three more started together
    half a second before the oldest; (its address, every run id in the list's order)."""
    path = tmp_path_factory.mktemp("paging") / "wf.db"
    now = time.time()
    order = record_runs(path, COUNT, newest=now)
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        runs = runs_of(storage)
        seed = runs.read(order[0])
        assert seed is not None
        for run_id in TIES:
            runs.write({**seed.to_json(), "run_id": run_id, "status": "completed",
                        "started_at": now - COUNT + 0.5})
    with dashboard(str(path)) as (url, _):
        yield url, order + sorted(TIES)


def walk(c: httpx.Client, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of /api/runs with `params`, following `next` to the end."""
    pages: list[list[dict[str, Any]]] = []
    before = None
    while True:
        answer = c.get("/api/runs", params={**params, **({"before": before} if before else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body["runs"])
        before = body["next"]
        if before is None:
            return pages
        assert body["runs"] and before == body["runs"][-1]["cursor"]
        assert len(pages) < 200, "the pages never end"


def test_the_first_page_is_the_newest_runs_with_counts_by_status(
        many: tuple[str, list[str]]) -> None:
    """No parameters: the newest RUNS_PAGE runs, newest first, the cursor of the next page,
    and counts of the whole list by status (every status named, zeros too)."""
    url, order = many
    body = httpx.get(url + "api/runs", timeout=10).json()
    assert [r["run_id"] for r in body["runs"]] == order[:RUNS_PAGE]
    assert body["next"] == body["runs"][-1]["cursor"]
    failed = sum(status_of(i) == "failed" for i in range(COUNT))
    assert body["total"] == len(order)
    assert body["counts"] == {**{s: 0 for s in STATUSES}, "failed": failed,
                              "completed": len(order) - failed}


def test_the_pages_walk_the_whole_list_in_order_ties_by_id(many: tuple[str, list[str]]) -> None:
    """Following `next` with limit=7 gives every run once, newest first, runs that started
    at the same instant by id; each page holds 7 but the last, whose `next` is null."""
    url, order = many
    with httpx.Client(base_url=url, timeout=10) as c:
        pages = walk(c, limit=7)
    assert [r["run_id"] for page in pages for r in page] == order
    assert {len(page) for page in pages[:-1]} == {7} and 1 <= len(pages[-1]) <= 7


def test_a_status_filter_pages_through_that_status_only(many: tuple[str, list[str]]) -> None:
    """?status=failed with a limit: the failed runs only, in order, over pages that keep the
    filter; the counts stay those of the whole list."""
    url, order = many
    failed = [r for r in order if r.startswith("run-") and status_of(int(r[4:])) == "failed"]
    with httpx.Client(base_url=url, timeout=10) as c:
        pages = walk(c, status="failed", limit=10)
        whole = c.get("/api/runs", params={"status": "failed", "limit": 10}).json()
    assert [r["run_id"] for page in pages for r in page] == failed
    assert {r["status"] for page in pages for r in page} == {"failed"}
    assert whole["total"] == len(order) and whole["counts"]["failed"] == len(failed)


def test_a_cursor_keeps_its_place_when_runs_arrive_or_go(tmp_path: Path) -> None:
    """The page after a cursor is the same after newer runs were recorded and after the run
    the cursor came from was deleted: a cursor is a place in the order, not a run. The first
    page then starts with the new runs, and the counts include them."""
    path = tmp_path / "wf.db"
    record_runs(path, 30, newest=time.time() - 100)
    with dashboard(str(path)) as (url, _), httpx.Client(base_url=url, timeout=10) as c:
        first = c.get("/api/runs", params={"limit": 10}).json()
        second = c.get("/api/runs", params={"limit": 10, "before": first["next"]}).json()
        record_runs(path, 5, first=30)  # five runs newer than any
        with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
            assert runs_of(storage).delete(first["runs"][-1]["run_id"])
        again = c.get("/api/runs", params={"limit": 10, "before": first["next"]}).json()
        assert [r["run_id"] for r in again["runs"]] == [r["run_id"] for r in second["runs"]]
        assert again["next"] == second["next"]
        now = c.get("/api/runs", params={"limit": 10}).json()
        assert [r["run_id"] for r in now["runs"][:5]] == [run_id_of(i) for i in range(34, 29, -1)]
        assert now["total"] == 34


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("param", "value", "says"), [
    ("limit", "ten", "limit='ten' is not a whole number"),
    ("limit", "0", "limit=0 is out of range: 1 to 5000"),
    ("limit", "-3", "limit=-3 is out of range"),
    ("limit", "5001", "limit=5001 is out of range"),
    ("before", "garbage!", "before='garbage!' is not a cursor of this list"),
    ("before", _cursor({"run": "x"}), "is not a cursor of this list: give the `next`"),
    ("before", _cursor([1.5]), "is not a cursor"),
    ("before", _cursor([True, "x"]), "is not a cursor"),
    ("before", base64.urlsafe_b64encode(b'[NaN, "x"]').decode(), "is not a cursor"),
    ("before", "é", "is not a cursor"),
    ("before", base64.urlsafe_b64encode(b"[" * 5000).decode(), "is not a cursor"),
    ("status", "asleep", "status='asleep' is none of pending, running"),
])
def test_bad_page_parameters_are_400s_saying_what_to_give(many: tuple[str, list[str]],
                                                          param: str, value: str,
                                                          says: str) -> None:
    """A bad limit, cursor or status: 400 with a JSON error saying what was wrong and what is
    accepted; the stream refuses a bad limit or status the same way, before streaming."""
    url, _ = many
    answer = httpx.get(url + "api/runs", params={param: value}, timeout=10)
    assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    if param != "before":  # the stream has no cursor: it is the first page
        stream = httpx.get(url + "api/events", params={param: value}, timeout=10)
        assert stream.status_code == 400 and says in stream.json()["error"], stream.text


def test_the_runs_stream_sends_the_first_page_and_its_changes(tmp_path: Path) -> None:
    """/api/events?limit=5 sends the newest five runs and the counts; a newer run arrives:
    it is sent, and the run it pushed off the page is `below` (still a run, not removed); a
    run on the page deleted: `removed`, and the one that moved up is sent; a run off the page
    changing status sends only the new counts. ?status= streams that status's first page."""
    path = tmp_path / "wf.db"
    order = record_runs(path, 12, newest=time.time() - 100)
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage, \
            dashboard(str(path)) as (url, _), httpx.Client(base_url=url, timeout=10) as c:
        runs = runs_of(storage)
        with c.stream("GET", "/api/events", params={"limit": 5}) as stream:
            received = events(stream)
            name, first = next(received)
            assert name == "runs" and first["full"]
            assert [r["run_id"] for r in first["runs"]] == order[:5]
            assert first["total"] == 12 and first["counts"]["failed"] == 4
            record_runs(path, 1, first=12)
            _, change = next(received)
            assert [r["run_id"] for r in change["runs"]] == [run_id_of(12)]
            assert change["below"] == [order[4]] and change["removed"] == []
            assert change["total"] == 13 and not change["full"]
            assert runs.delete(order[1])
            _, change = next(received)
            assert change["removed"] == [order[1]] and change["below"] == []
            assert [r["run_id"] for r in change["runs"]] == [order[4]]
            off_page = runs.read(order[9])
            assert off_page is not None and off_page.status == "completed"
            runs.write({**off_page.to_json(), "status": "failed"})
            _, change = next(received)
            assert change["runs"] == change["removed"] == change["below"] == []
            assert change["counts"]["failed"] == 6 and change["total"] == 12
        with c.stream("GET", "/api/events", params={"status": "failed", "limit": 3}) as stream:
            _, first = next(events(stream))
            failed = [r for r in order if r != order[1] and
                      (status_of(int(r[4:])) == "failed" or r == order[9])]
            assert [r["run_id"] for r in first["runs"]] == [run_id_of(12), *failed][:3]


# -- the paging function, for all lists -------------------------------------------------------


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """A real run record, which the property below copies under other ids and times."""
    path = tmp_path_factory.mktemp("seed") / "wf.db"
    record_runs(path, 1)
    with Durable(SQLiteKV(path), MsgpackCodec()) as storage:
        found = runs_of(storage).read(run_id_of(0))
    assert found is not None
    return found


RUNS = st.lists(st.tuples(st.text(max_size=6), st.sampled_from([0.0, 1.5, 2.0, 1e9]),
                          st.sampled_from(STATUSES)), unique_by=lambda t: t[0], max_size=25)


@settings(max_examples=200, deadline=None)
@given(runs=RUNS, newer=RUNS, limit=st.integers(1, 8),
       status=st.sampled_from([None, *STATUSES]), stop=st.integers(0, 5))
def test_walking_pages_gives_each_run_once_in_order_whatever_arrives_meanwhile(
        seed: RunRecord, runs: list[tuple[str, float, str]], newer: list[tuple[str, float, str]],
        limit: int, status: str | None, stop: int) -> None:
    """For any runs (ids any text, start times tied or not), any limit and status: following
    `next` gives every run of that status once, newest first (ties by id), even when runs newer
    than all of them are added after `stop` pages; the counts are those of the whole list."""
    records = [dataclasses.replace(seed, run_id=i, started_at=t, status=s)  # type: ignore[arg-type]
               for i, t, s in runs]
    ids = {i for i, _, _ in runs}
    later = [dataclasses.replace(seed, run_id=i, started_at=t + 2e9, status=s)  # type: ignore[arg-type]
             for i, t, s in newer if i not in ids]

    def listed(rs: list[RunRecord]) -> list[RunRecord]:
        return sorted(rs, key=lambda r: (-r.started_at, r.run_id))

    expected = [r.run_id for r in listed(records) if status in (None, r.status)]
    seen: list[str] = []
    before = None
    for n in range(len(records) + len(later) + 2):
        page = run_page(listed(records + (later if n >= stop else [])), status=status,
                        limit=limit, before=before)
        seen += [r.run_id for r in page.records]
        if n < stop:
            assert page.total == len(records)
            assert page.counts == {s: sum(r.status == s for r in records) for s in STATUSES}
        before = page.next
        if before is None:
            break
    else:
        pytest.fail("the pages never ended")
    # The new runs come before the first page's place: a walk begun before them never sees
    # them, and one begun after them starts with them.
    if stop == 0:
        expected = [r.run_id for r in listed(later) if status in (None, r.status)] + expected
    assert seen == expected
