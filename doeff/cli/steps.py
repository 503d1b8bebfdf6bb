"""`doeff cache gc|explain` and the selections of `doeff cache rm`: the commands for durable
steps' records (expiry, keys by step) — see docs/steps.md.

Everything is read from record headers: the expiry and a step's summary (version, code
fingerprint, one digest per argument) sit there, so no value is decoded and the application's
code is not needed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from doeff.cli.args import add_store, duration
from doeff.cli.errors import EXIT_FAILED, CLIError
from doeff.cli.output import iso_time, plural, print_json, show_key, show_time, table
from doeff.cli.scan import Record, scan
from doeff.cli.store import open_store, store_label
from doeff.steps.explain import Recorded, parse_key, step_prefix, varying
from doeff.storage.base import AtomicKVStore, KVStore


def _atomic(kv: KVStore, what: str) -> AtomicKVStore:
    if not isinstance(kv, AtomicKVStore):
        raise CLIError(f"{what} needs a store with conditional writes; {kv!r} has none")
    return kv


def _time_left(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    return show_time(ts) + (" (expired)" if ts <= now else "")


# -- gc ------------------------------------------------------------------------------------------


def cmd_gc(ns: argparse.Namespace) -> int:
    """Delete the records whose expiry has passed (step results and stale leases)."""
    name = store_label(ns.store)
    now = time.time()
    with open_store(ns.store, readonly=ns.dry_run) as kv:
        expired = [r for r in scan(kv) if r.expires_at is not None and r.expires_at <= now]
        if ns.dry_run:
            for r in expired:
                print(f"{show_key(r.key)}  expired {show_time(r.expires_at)}")
            print(f"would remove {plural(len(expired), 'expired record')} from {name}")
            return 0
        atomic = _atomic(kv, "gc")
        # Conditional on the bytes read: a record rewritten since the scan is fresh again.
        removed = sum(atomic.compare_and_delete(r.key, r.raw) for r in expired)
    print(f"removed {plural(removed, 'expired record')} from {name}")
    return 0


# -- rm with a selection ---------------------------------------------------------------------


def selected(ns: argparse.Namespace, records: Sequence[Record]) -> list[Record]:
    """The records `--prefix`, `--step` and `--older-than` select (all of those given)."""
    now = time.time()
    out = []
    for r in records:
        if ns.step is not None and not r.key.startswith(step_prefix(ns.step)):
            continue
        if ns.older_than is not None:
            if r.updated_at is None:
                raise CLIError(
                    f"--older-than needs the time each record was written, which this store "
                    f"does not record ({show_key(r.key)} has none; LMDB stores keep no update "
                    f"times); select with --prefix or --step instead")
            if now - r.updated_at < ns.older_than:
                continue
        out.append(r)
    return out


def rm_selection(ns: argparse.Namespace) -> int:
    """`rm --prefix/--step/--older-than`: every selected record in one transaction, or none."""
    name = store_label(ns.store)
    with open_store(ns.store, readonly=ns.dry_run) as kv:
        chosen = selected(ns, list(scan(kv, ns.prefix or "")))
        if ns.dry_run:
            for r in chosen:
                print(show_key(r.key))
            print(f"would remove {plural(len(chosen), 'record')} from {name}")
            return 0
        removed = _atomic(kv, "rm").delete_many([r.key for r in chosen])
    print(f"removed {plural(removed, 'record')} from {name}")
    return 0


def add_rm_options(p: argparse.ArgumentParser) -> None:
    """`rm`'s selections: by prefix, step and age, combined; and --dry-run."""
    p.add_argument("--prefix", metavar="P", help="every key starting with P")
    p.add_argument("--step", metavar="NAME",
                   help="every record of the step NAME (all versions and code fingerprints)")
    p.add_argument("--older-than", type=duration, metavar="DURATION",
                   help="written longer ago than DURATION (e.g. 7d, 12h, 30m; not on LMDB)")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be removed, remove nothing")


def has_selection(ns: argparse.Namespace) -> bool:
    """Whether `rm` was given a selection instead of keys."""
    return ns.prefix is not None or ns.step is not None or ns.older_than is not None


# -- explain ----------------------------------------------------------------------------------


def cmd_explain(ns: argparse.Namespace) -> int:
    """The records of one step, side by side, and the parts of the key that differ."""
    name = store_label(ns.store)
    parsed = parse_key(ns.step)
    step = parsed.name if parsed is not None else ns.step
    with open_store(ns.store, readonly=True) as kv:
        records = [Recorded(r.key, r.info, r.expires_at, r.updated_at)
                   for r in scan(kv, step_prefix(step))]
        if not records:
            steps = sorted({p.name for k in kv.keys() if (p := parse_key(k)) is not None})
            known = ", ".join(steps) if steps else "none"
            raise CLIError(f"{name}: no records of step {step}; steps in the store: {known}",
                           EXIT_FAILED)
    differ = varying(records)
    names = sorted({n for r in records for n in r.args})
    now = time.time()
    if ns.json:
        print_json({"step": step, "records": [
            {"key": r.key, "version": r.version, "code": r.code, "args": dict(r.args),
             "expires_at": iso_time(r.expires_at), "updated_at": iso_time(r.updated_at)}
            for r in records], "differ_in": differ})
        return 0
    print(f"step {step}: {plural(len(records), 'record')}")
    expiring = any(r.expires_at is not None for r in records)
    headers = ["KEY", "VERSION", "CODE", *names, *(["EXPIRES (UTC)"] if expiring else [])]
    rows = [[show_key(r.key), r.version, r.code or "-", *(r.args.get(n, "-") for n in names),
             *([_time_left(r.expires_at, now)] if expiring else [])] for r in records]
    print(table(headers, rows, right=set()))
    if len(records) > 1:
        print(f"they differ in: {', '.join(differ) if differ else 'nothing recorded'}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register gc and explain under `doeff cache`."""
    p = sub.add_parser("gc", help="delete expired records",
                       description="Delete every record of STORE whose expiry (a step's ttl=) "
                       "has passed, and every stale claim lease. A record rewritten since it "
                       "was read is kept.")
    add_store(p)
    p.add_argument("--dry-run", action="store_true",
                   help="list the expired records, remove nothing")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("explain", help="the records of a step, and how their keys differ",
                       description="List the records of the step STEP (its name, e.g. "
                       "app.fetch, or one of its keys): version, code fingerprint, a digest of "
                       "each argument and the expiry, read from record headers; then which "
                       "parts of the key differ between them. Argument values are never "
                       "stored, only their digests.")
    add_store(p)
    p.add_argument("step", metavar="STEP")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_explain)
