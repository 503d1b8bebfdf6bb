"""`doeff demo`: a durable workflow on SQLite, killed partway with SIGKILL, then resumed.

The parent process runs the workflow in a worker subprocess, kills it with SIGKILL while a step
is in flight, and runs it again on the same store. The second attempt reads the finished steps
back instead of running them again. The worker reports each step as a JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from doeff.effects.cache import cached
from doeff.effects.io import perform
from doeff.program import do
from doeff.runners import run_sync

STEP_SECONDS = 0.4
KILL_DURING = "summarize"  # the step in flight when attempt 1 is killed
RUN_ID = "nightly"  # the worker records its run under this id (doeff runs show STORE nightly)

# -- the workflow: each step pretends to be expensive ------------------------------------------


def fetch_orders() -> list[dict[str, Any]]:
    time.sleep(STEP_SECONDS)
    return [{"id": i, "customer": f"c{i % 7}", "amount": round(10 + i * 3.7, 2)} for i in range(40)]


def enrich(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    time.sleep(STEP_SECONDS)
    return [{**o, "region": ("north", "south", "east")[o["id"] % 3]} for o in orders]


def score_risk(orders: list[dict[str, Any]]) -> dict[int, float]:
    time.sleep(STEP_SECONDS)  # stands for a slow model call
    return {o["id"]: round((o["amount"] % 17) / 17, 3) for o in orders}


def summarize(orders: list[dict[str, Any]], risk: dict[int, float]) -> dict[str, Any]:
    time.sleep(STEP_SECONDS)
    by_region: dict[str, float] = {}
    for o in orders:
        by_region[o["region"]] = round(by_region.get(o["region"], 0.0) + o["amount"], 2)
    return {"orders": len(orders), "revenue": by_region,
            "high_risk": sorted(i for i, r in risk.items() if r > 0.8)}


def render(summary: dict[str, Any]) -> str:
    time.sleep(STEP_SECONDS)
    regions = ", ".join(f"{k} {v:.2f}" for k, v in sorted(summary["revenue"].items()))
    return f"{summary['orders']} orders; revenue {regions}; {len(summary['high_risk'])} high-risk"


def report(event: str, step: str, **fields: Any) -> None:
    """One progress line for the parent process (flushed: the worker may be killed any time)."""
    print(json.dumps({"event": event, "step": step, **fields}), flush=True)


@do
def step(name: str, fn: Callable[..., Any], *args: Any) -> Generator[Any, Any, Any]:
    """Run one cached step, reporting whether it ran or was read back, and how long it took."""
    ran: list[bool] = []

    def compute() -> Any:
        ran.append(True)
        report("start", name)
        return fn(*args)

    started = time.perf_counter()
    value = yield cached(f"demo:{name}", lambda: perform(compute))
    report("ran" if ran else "cached", name, seconds=time.perf_counter() - started)
    return value


@do
def nightly_report() -> Generator[Any, Any, str]:
    """The demo workflow: five expensive steps, each cached under its own key."""
    orders = yield step("fetch_orders", fetch_orders)
    enriched = yield step("enrich", enrich, orders)
    risk = yield step("score_risk", score_risk, enriched)
    summary = yield step("summarize", summarize, enriched, risk)
    text = yield step("render", render, summary)
    return str(text)


STEPS = ["fetch_orders", "enrich", "score_risk", "summarize", "render"]


def open_store(path: str) -> Any:
    """The demo's store: the embedded default, SQLite, with the msgpack codec."""
    from doeff.serde import MsgpackCodec
    from doeff.storage import Durable, SQLiteKV

    return Durable(SQLiteKV(path), MsgpackCodec())


def worker(path: str) -> int:
    """Run the workflow once against the store at `path` (the subprocess side)."""
    with open_store(path) as storage:
        result = run_sync(nightly_report(), storage=storage, run_id=RUN_ID)
    if result.is_err():
        print(result.format_error(), file=sys.stderr)
        return 1
    report("done", "", result=result.value)
    return 0


# -- the parent: run, kill, run again, and show what happened ---------------------------------


@dataclass
class Attempt:
    pid: int
    lines: dict[str, str]
    result: str | None = None
    killed: bool = False


def _fmt(event: dict[str, Any]) -> str:
    seconds = float(event["seconds"])
    if event["event"] == "cached":
        return f"read back   {seconds * 1e3:7.2f} ms"
    return f"ran         {seconds:7.2f} s"


def run_attempt(path: str, kill_during: str | None) -> Attempt:
    """Start a worker; SIGKILL it when `kill_during` starts; collect what each step did."""
    cmd = [sys.executable, "-m", "doeff", "demo", "--worker", "--db", path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    attempt = Attempt(proc.pid, {})
    assert proc.stdout is not None
    for raw in proc.stdout:
        event = json.loads(raw)
        name = event["step"]
        if event["event"] == "start":
            attempt.lines[name] = "running..."
            if name == kill_during:
                _recorded_in(path, name)
                os.kill(proc.pid, signal.SIGKILL)
                attempt.killed = True
                attempt.lines[name] = "SIGKILL while running: this step never finished"
                break
        elif event["event"] in ("ran", "cached"):
            attempt.lines[name] = _fmt(event)
        elif event["event"] == "done":
            attempt.result = event["result"]
    proc.wait()
    return attempt


def _recorded_in(path: str, name: str, patience: float = 3.0) -> None:
    """Wait (briefly) until the run's record shows it inside step `name`: its heartbeat writes
    the record soon after each step, and the demo kills it once the record knows."""
    from doeff.runs import get_run
    from doeff.storage import SQLiteKV

    deadline = time.monotonic() + patience
    with SQLiteKV(path, readonly=True) as kv:
        while time.monotonic() < deadline:
            record = get_run(kv, RUN_ID)
            if record is not None and len(record.steps) >= STEPS.index(name) and \
                    record.current_effect is not None:
                return
            time.sleep(0.02)


def show(title: str, attempt: Attempt) -> None:
    print(f"\n{title} (worker pid {attempt.pid})")
    for name in STEPS:
        if name in attempt.lines:
            print(f"  {name:14} {attempt.lines[name]}")
    if attempt.result is not None:
        print(f"  result: {attempt.result}")


def _doeff_command() -> str:
    """How to run `doeff` from here: the console script beside this interpreter (in make's
    .venv), as a relative path when that is shorter."""
    script = os.path.join(os.path.dirname(sys.executable), "doeff")
    if not os.path.exists(script):
        return f"{sys.executable} -m doeff"
    relative = os.path.relpath(script)
    return relative if len(relative) < len(script) else script


def _reuse(path: str) -> str | None:
    """Empty the demo store at `path` for a new demo, or say why it must be left alone.

    The demo starts from an empty store, but it only ever empties a store that holds nothing
    but its own `demo:` records: any other file at `path` is someone else's and stays as it is.
    """
    from doeff.errors import DoeffError
    from doeff.storage import SQLiteKV

    if not os.path.isfile(path):
        return f"{path} exists and is not a file"
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            return f"{path} is not a SQLite database"
    try:
        with SQLiteKV(path) as kv:
            others = [k for k in kv.keys() if not k.startswith("demo:")]
            if not others:  # (only then: a namespace() would add its table to the file)
                runs = kv.namespace("runs")
                others = [k for k in runs.keys() if k.split(":", 1)[-1] != RUN_ID]
            if others:
                return f"{path} holds records the demo did not write (e.g. {others[0]!r})"
            kv.clear()
            runs.clear()
    except DoeffError as exc:
        return f"{path} is not a store of this demo: {exc}"
    return None


def _show_store(path: str, *args: str) -> None:
    """What `doeff ARGS` says about the store, as a user would see it (default `cache ls`)."""
    args = args or ("cache", "ls")
    cmd = [sys.executable, "-m", "doeff", *args[:2], path, *args[2:]]
    listing = subprocess.run(cmd, capture_output=True, text=True, check=False)
    print(f"\n$ doeff {' '.join(args[:2])} {path} {' '.join(args[2:])}".rstrip())
    print((listing.stdout or listing.stderr).rstrip())


def demo(path: str | None, keep: bool) -> int:
    """The whole demo: attempt 1 is killed mid-workflow, attempt 2 resumes it."""
    scratch = None
    if path is None:
        scratch = tempfile.mkdtemp(prefix="doeff-demo-")
        path = os.path.join(scratch, "workflow.db")
    elif os.path.exists(path):
        why = _reuse(path)
        if why is not None:
            print(f"doeff demo: {why}; it was left untouched. Pass --db with a new path.",
                  file=sys.stderr)
            return 2
    try:
        return _run_demo(path, keep or scratch is None)
    finally:
        if scratch is not None and not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_demo(path: str, kept: bool) -> int:
    print("doeff demo: a durable 5-step workflow, killed partway, then run again")
    print(f"store: {path}  (SQLite, WAL; values encoded with msgpack)")
    print(f"each step takes {STEP_SECONDS:.1f} s when it really runs")

    first = run_attempt(path, KILL_DURING)
    show("attempt 1", first)
    if not first.killed:
        print("the worker finished before it could be killed", file=sys.stderr)
        return 1
    print("\nthe killed run's record says where it was when it died:")
    _show_store(path, "runs", "show", RUN_ID)
    second = run_attempt(path, None)
    show("attempt 2, same store", second)
    print("\nthe same run, resumed: attempt 2 read the finished steps back")
    _show_store(path, "runs", "show", RUN_ID)

    finished_before = [n for n in STEPS if first.lines.get(n, "").startswith("ran")]
    rerun = [n for n in finished_before if second.lines.get(n, "").startswith("ran")]
    print(f"\nattempt 2 read back {len(finished_before) - len(rerun)} of the "
          f"{len(finished_before)} steps attempt 1 finished, re-ran {len(rerun)} of them, "
          f"and ran the rest.")
    _show_store(path)
    if kept:
        print(f"\nthe store is kept: {_doeff_command()} cache ls {path}")
        print(f"see its runs and records in a browser: {_doeff_command()} dashboard {path}")
    else:
        print("\nthe temporary store was removed (doeff demo --keep keeps it for a look, "
              "e.g. with doeff dashboard STORE)")
    return 0 if second.result is not None and not rerun else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `doeff demo`."""
    parser = argparse.ArgumentParser(
        prog="doeff demo",
        description="Run a durable workflow on SQLite, SIGKILL it partway, then run it again "
        "and show which steps were read back from the store.",
    )
    parser.add_argument("--db", help="SQLite file to use (default: a new temporary file, "
                        "removed at the end); an existing file is only reused if it is a store "
                        "of an earlier demo")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary store to inspect it afterwards")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.db)
    return demo(args.db, args.keep)
