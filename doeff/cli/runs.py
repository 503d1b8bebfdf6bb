"""`doeff runs ls|show|watch|cancel|pause|resume|rm|prune`: the runs recorded in a store.

A run given `run_id=` keeps its record in the store's "runs" namespace (see doeff.runs); these
commands read it without the application's code. ls, show and watch open the store read-only;
cancel, pause and resume leave a request the run reads at its next heartbeat, then wait (a
few seconds at most) to see it land.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import TextIO

from doeff.cli.args import add_store, duration
from doeff.cli.errors import EXIT_FAILED, CLIError
from doeff.cli.output import (
    plural,
    print_json,
    printable,
    show_key,
    show_size,
    show_time,
    table,
    warn,
)
from doeff.cli.store import open_store, store_label
from doeff.errors import DecodeError, RunError
from doeff.runs import RunRecord, cancel_run, get_run, pause_run, pending_request, resume_run
from doeff.runs.api import runs_of
from doeff.runs.record import LOST_AFTER, STATUSES, TaskInfo

_LIVE = ("pending", "running", "paused")
_WAIT = 10.0  # seconds cancel/pause/resume wait for the run to show the request landed
_POLL = 0.2  # seconds between reads while waiting or watching


# -- formatting -----------------------------------------------------------------------------


def show_age(seconds: float) -> str:
    """An age for people, coarse on purpose: `<1m`, `5m`, `3h`, `2d` (`?` for no number)."""
    if not math.isfinite(seconds):  # a store's timestamp of infinity (a damaged record)
        return "?"
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def show_seconds(seconds: float) -> str:
    """A step's duration: `<1 ms`, `23 ms`, `0.41 s`, `12.0 s`."""
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s"


def _status(record: RunRecord) -> str:
    return record.status if record.lost_reason is None else \
        f"{record.status}: {record.lost_reason}"


def _effect(record: RunRecord, width: int = 50) -> str:
    effect = record.current_effect
    if effect is None:
        return "-"
    text = effect.repr
    return text if len(text) <= width else text[: width - 3] + "..."


def _steps(record: RunRecord) -> int:
    return len(record.steps) + record.steps_omitted


def _task_lines(task: TaskInfo) -> list[str]:
    at = "" if task.current_effect is None else f", at {task.current_effect.repr}"
    lines = [f"task {task.task_id} ({task.status}{at})"]
    for frame in task.k_stack:
        lines.append(f"  {frame.frame_type:16} {frame.description}")
        if frame.code:
            lines.append(f"  {'':16}   {frame.code}")
    return lines


def render(record: RunRecord) -> str:
    """`doeff runs show` of one record, as plain text (escaped: it was read from a store)."""
    hits = sum(1 for s in record.steps if s.outcome == "hit")
    earlier = ", ".join(f"{a.attempt} {a.status}" for a in record.attempts)
    lines = [
        f"run      {record.run_id}",
        f"status   {_status(record)}",
        f"program  {record.program}, attempt {record.attempt}"
        + (f" (earlier: {earlier})" if earlier else ""),
        f"started  {show_time(record.started_at)}   updated {show_time(record.updated_at)}"
        + (f"   ended {show_time(record.ended_at)}" if record.ended_at is not None else ""),
        f"steps    {_steps(record)} ({len(record.steps) - hits} computed, {hits} read back"
        + (f"; {record.steps_omitted} earlier not listed" if record.steps_omitted else "")
        + f"), {record.step_count} machine steps",
        f"effect   {'-' if record.current_effect is None else record.current_effect.repr}",
    ]
    if record.tasks:
        where = "where it was" if record.status == "lost" else (
            "where it failed" if record.status == "failed" else "where it is")
        lines += ["", f"{where}:"]
        for task in record.tasks:
            lines += ["  " + line for line in _task_lines(task)]
    if record.steps:
        lines += ["", "steps:"]
        rows = [[s.outcome, show_key(s.key), "-" if s.bytes is None else show_size(s.bytes),
                 show_seconds(s.seconds)] for s in record.steps]
        lines += ["  " + line for line in table(["OUTCOME", "KEY", "SIZE", "TIME"], rows,
                                                 right={2, 3}).splitlines()]
    if record.error is not None:
        lines += ["", f"error: {record.error.type}: {record.error.message}"]
        lines += ["  " + line for line in record.error.traceback.splitlines()]
    return "\n".join(printable(line) for line in lines)


def _listing(records: list[RunRecord], now: float) -> str:
    rows = [[r.run_id, r.status, show_time(r.started_at), show_age(now - r.started_at),
             str(_steps(r)), _effect(r)] for r in records]
    return table(["RUN", "STATUS", "STARTED (UTC)", "AGE", "STEPS", "CURRENT EFFECT"], rows,
                 right={4})


# -- commands -------------------------------------------------------------------------------


def _read_all(ns: argparse.Namespace) -> list[RunRecord]:
    with open_store(ns.store, readonly=True) as kv:
        found = list(runs_of(kv).scan())
    now = time.time()
    records = []
    for run_id, record in found:
        if isinstance(record, DecodeError):
            warn(f"{show_key(run_id)}: unreadable run record: {record}")
        else:
            records.append(record.seen(now=now, lost_after=ns.lost_after))
    records.sort(key=lambda r: (-r.started_at, r.run_id))
    return [r for r in records if ns.status is None or r.status in ns.status]


def cmd_ls(ns: argparse.Namespace) -> int:
    """List the runs: id, status, start, age, steps and current effect, newest first."""
    records = _read_all(ns)
    if ns.json:
        print_json([r.to_json() for r in records])
    else:
        print(_listing(records, time.time()))
    return 0


def _one(ns: argparse.Namespace) -> RunRecord:
    with open_store(ns.store, readonly=True) as kv:
        try:
            record = get_run(kv, ns.run, lost_after=ns.lost_after)
        except DecodeError as exc:
            raise CLIError(f"{show_key(ns.run)}: unreadable run record: {exc}",
                           EXIT_FAILED) from exc
    if record is None:
        raise CLIError(f"{store_label(ns.store)}: no run {show_key(ns.run)}", EXIT_FAILED)
    return record


def cmd_show(ns: argparse.Namespace) -> int:
    """Show one run: status, K stack of every task, current effect, steps, error."""
    record = _one(ns)
    if ns.json:
        print_json(record.to_json())
    else:
        print(render(record))
    return 0


def _line(record: RunRecord) -> str:
    """One line of `watch` piped: time, run, status, machine steps, current effect."""
    return printable(f"{show_time(time.time())} {record.run_id} {_status(record)} "
                     f"step {record.step_count} {_effect(record, 80)}")


def cmd_watch(ns: argparse.Namespace, out: TextIO | None = None) -> int:
    """Follow one run (or every run) until it ends: redrawn in place on a terminal, a line per
    change when piped. Exit 1 if the run failed or was lost."""
    out = out or sys.stdout
    tty = out.isatty()
    last: dict[str, str] = {}
    while True:
        if ns.run is not None:
            records = [_one(ns)]
        else:
            records = _read_all(ns)
        if tty:
            text = render(records[0]) if ns.run is not None else _listing(records, time.time())
            out.write("\x1b[H\x1b[J" + text + "\n")
        else:
            for record in records:
                key = f"{record.status} {record.step_count} {_effect(record, 80)}"
                if last.get(record.run_id) != key:
                    last[record.run_id] = key
                    out.write(_line(record) + "\n")
        out.flush()
        if not any(r.status in _LIVE for r in records):
            bad = [r for r in records if r.status in ("failed", "lost")]
            return EXIT_FAILED if ns.run is not None and bad else 0
        time.sleep(ns.interval)


_DONE = {"cancel": lambda r: r.ended, "pause": lambda r: r.status == "paused" or r.ended,
         "resume": lambda r: r.status != "paused"}
_SAID = {"cancel": "cancelled", "pause": "paused", "resume": "resumed"}


def cmd_request(ns: argparse.Namespace) -> int:
    """Ask a run to cancel, pause or resume; wait until its record shows it landed."""
    act = {"cancel": cancel_run, "pause": pause_run, "resume": resume_run}[ns.action]
    with open_store(ns.store) as kv:
        try:
            act(kv, ns.run, lost_after=ns.lost_after)
        except RunError as exc:
            raise CLIError(str(exc), EXIT_FAILED) from exc
        deadline = time.monotonic() + ns.timeout
        record = None
        while not ns.no_wait and time.monotonic() < deadline:
            time.sleep(_POLL)
            record = get_run(kv, ns.run, lost_after=ns.lost_after)
            if record is None or _DONE[ns.action](record):
                break
        else:
            if not ns.no_wait:
                why = ("it has taken the request, which lands when the call in progress "
                       "returns" if pending_request(kv, ns.run) is None else
                       "it has not read the request yet; the request stays until it does")
                raise CLIError(
                    f"run {show_key(ns.run)}: asked to {ns.action}, but it has not shown it "
                    f"within {ns.timeout:g} s: {why}", EXIT_FAILED)
    if record is None:
        print(f"run {printable(ns.run)}: asked to {ns.action}")
    else:
        print(f"run {printable(ns.run)}: {_SAID[ns.action]} ({_status(record)} at step "
              f"{record.step_count})")
    return 0


def cmd_rm(ns: argparse.Namespace) -> int:
    """Delete run records (never a live run's); exit 1 if any was missing or live."""
    name = store_label(ns.store)
    removed, failed = 0, False
    with open_store(ns.store) as kv:
        runs = runs_of(kv)
        for run_id in ns.runs:
            record = get_run(kv, run_id, lost_after=ns.lost_after)
            if record is None:
                warn(f"{name}: no run {show_key(run_id)}")
                failed = True
            elif record.status in _LIVE:
                warn(f"{name}: run {show_key(run_id)} is {record.status}; cancel it first")
                failed = True
            elif runs.delete(run_id):
                removed += 1
    print(f"removed {plural(removed, 'run record')}")
    return EXIT_FAILED if failed else 0


def cmd_prune(ns: argparse.Namespace) -> int:
    """Delete the records of runs that ended more than --older-than ago."""
    from doeff.runs import prune_runs

    with open_store(ns.store) as kv:
        gone = prune_runs(kv, ns.older_than, lost_after=ns.lost_after)
    print(f"removed {plural(len(gone), 'run record')}")
    return 0


# -- the parser -----------------------------------------------------------------------------


def _lost_after(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lost-after", type=duration, default=LOST_AFTER, metavar="T",
                   help=f"a live run whose heartbeat is older than T shows as lost "
                   f"(default {LOST_AFTER:g}s)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ls, show, watch, cancel, pause, resume, rm and prune under `doeff runs`."""
    p = sub.add_parser("ls", help="list the runs: status, age, steps, current effect",
                       description="List the runs recorded in STORE, newest first: id, status "
                       "(lost: its process died), start, age, steps and current effect.")
    add_store(p)
    p.add_argument("--status", action="append", choices=STATUSES, metavar="S",
                   help="only runs of status S (repeatable): " + ", ".join(STATUSES))
    p.add_argument("--json", action="store_true", help="print the records as a JSON array")
    _lost_after(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="one run: K stacks, current effect, steps, error",
                       description="Show one run: its status, every task's K stack with the "
                       "user's file and line (for a lost run: where it was when it died), the "
                       "current effect, its steps and its error with the doeff traceback.")
    add_store(p)
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    _lost_after(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("watch", help="follow a run (or all) until it ends",
                       description="Follow RUN (or every run) until it ends: redrawn in place "
                       "on a terminal, one line per change when piped. Exit status 1 if RUN "
                       "failed or was lost.")
    add_store(p)
    p.add_argument("run", metavar="RUN", nargs="?")
    p.add_argument("--interval", type=duration, default=0.5, metavar="T",
                   help="seconds between reads (default 0.5)")
    p.set_defaults(func=cmd_watch, status=None)
    _lost_after(p)

    for action, what in (("cancel", "cancel a running run (CancellationError at its yield)"),
                         ("pause", "pause a run at its next step boundary"),
                         ("resume", "resume a paused run")):
        p = sub.add_parser(action, help=what,
                           description=f"Ask RUN to {action}: it reads the request at its next "
                           "heartbeat (within a second). Waits until its record shows it "
                           "(exit 1 if it does not within --timeout).")
        add_store(p)
        p.add_argument("run", metavar="RUN")
        p.add_argument("--timeout", type=duration, default=_WAIT, metavar="T",
                       help=f"how long to wait for the run to show it (default {_WAIT:g}s)")
        p.add_argument("--no-wait", action="store_true", help="leave the request and return")
        _lost_after(p)
        p.set_defaults(func=cmd_request, action=action)

    p = sub.add_parser("rm", help="delete run records",
                       description="Delete the records of the given runs (not their cached "
                       "steps); a live run's is refused. Exit 1 if any was missing or live.")
    add_store(p)
    p.add_argument("runs", metavar="RUN", nargs="+")
    _lost_after(p)
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("prune", help="delete the records of runs that ended long ago",
                       description="Delete the records of runs that completed, failed or were "
                       "lost more than --older-than ago (live runs are kept).")
    add_store(p)
    p.add_argument("--older-than", type=duration, required=True, metavar="T",
                   help="e.g. 7d, 12h, 30m")
    _lost_after(p)
    p.set_defaults(func=cmd_prune)


__all__ = ["add_commands", "duration", "render", "show_age", "show_seconds"]
