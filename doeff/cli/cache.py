"""`doeff cache ls|get|rm|clear|stats`: look at and repair the records of a durable store.

The commands that only read (ls, get, stats) open the store read-only. `rm`'s selections (by
prefix, step and age) live with the other commands for steps' records, in `doeff.cli.steps`.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable
from types import ModuleType

from doeff.cli.args import add_signing_key, add_store, add_unsafe_pickle
from doeff.cli.check import SHOWN, advice, inspect
from doeff.cli.errors import EXIT_FAILED, CLIError
from doeff.cli.output import (
    iso_time,
    jsonable,
    plural,
    print_json,
    printable,
    show_key,
    show_size,
    show_time,
    show_value,
    table,
    warn,
)
from doeff.cli.readers import import_modules, reader_for
from doeff.cli.scan import (
    UNSAFE_TAGS,
    Record,
    open_record,
    pickle_refusal,
    scan,
    signing_keys,
)
from doeff.cli.steps import add_rm_options, has_selection, rm_selection
from doeff.cli.store import open_store, store_label
from doeff.errors import DecodeError, SignatureError, UntrustedRecordError
from doeff.serde.envelope import peek

UNREADABLE = "?"  # the codec column of a record without a valid doeff header


def cmd_ls(ns: argparse.Namespace) -> int:
    """List keys with codec, size and update time, read from headers only."""
    with open_store(ns.store, readonly=True) as kv:
        records = list(scan(kv, ns.prefix))
    for r in records:
        if r.error is not None:
            warn(f"{show_key(r.key)}: unreadable record: {r.error}")
    if ns.json:
        print_json([
            {"key": r.key, "codec": r.tag, "size": r.size,
             "updated_at": iso_time(r.updated_at), "expires_at": iso_time(r.expires_at),
             "error": r.error, "signed_by": r.key_id, "transforms": list(r.transforms)}
            for r in records
        ])
    else:
        # An expiry column only where some record expires (steps with ttl=, claim leases).
        expiring = any(r.expires_at is not None for r in records)
        rows = [[show_key(r.key), r.tag or UNREADABLE, str(r.size), show_time(r.updated_at),
                 *([show_time(r.expires_at)] if expiring else [])] for r in records]
        headers = ["KEY", "CODEC", "SIZE", "UPDATED (UTC)"]
        print(table([*headers, *(["EXPIRES (UTC)"] if expiring else [])], rows, right={2}))
    return 0


def decode_value(raw: bytes, key: str, ns: argparse.Namespace, keys: list[bytes] | None,
                 modules: list[ModuleType]) -> object:
    """The value of the record `raw` stored under `key`, as `get` shows it: decoded by the codec
    its header names (exactly for the types `modules` bring, as views otherwise), pickle-family
    only with `ns.unsafe_pickle`. CLIError (exit 1) saying why when it is refused or unreadable.
    The dashboard shows values through this too."""
    try:
        tag = peek(raw).tag
        if tag in UNSAFE_TAGS and not ns.unsafe_pickle:
            raise CLIError(pickle_refusal(f"{show_key(key)} is a {tag} record"), EXIT_FAILED)
        return open_record(raw, key, ns, keys, reader=reader_for(tag, modules))
    except DecodeError as exc:
        what = "refused" if isinstance(exc, SignatureError | UntrustedRecordError) else \
            "unreadable"
        raise CLIError(f"{show_key(key)}: {what} record: {exc}", EXIT_FAILED) from exc


def cmd_get(ns: argparse.Namespace) -> int:
    """Print one value, decoded by the codec its record names if the command may decode it:
    exactly for the types this process can load (--import brings the application's), as
    structural views otherwise."""
    name = store_label(ns.store)
    modules = import_modules(ns.imports)
    keys = signing_keys(ns)
    with open_store(ns.store, readonly=True) as kv:
        raw = kv.get(ns.key)
    if raw is None:
        raise CLIError(f"{name}: no key {show_key(ns.key)}", EXIT_FAILED)
    value = decode_value(raw, ns.key, ns, keys, modules)
    if ns.json:
        print_json({"key": ns.key, "codec": peek(raw).tag, "size": len(raw),
                    "value": jsonable(value)})
    else:
        print(printable(show_value(value), keep="\n"))
    return 0


def cmd_rm(ns: argparse.Namespace) -> int:
    """Delete the given keys (exit 1 if any was missing), or the records a selection picks."""
    if has_selection(ns):
        if ns.keys:
            raise CLIError("give KEYs or --prefix/--step/--older-than, not both")
        return rm_selection(ns)
    if not ns.keys:
        raise CLIError("nothing to remove: give KEYs, or select with --prefix, --step or "
                       "--older-than")
    name = store_label(ns.store)
    missing = []
    removed = 0
    with open_store(ns.store, readonly=ns.dry_run) as kv:
        for key in ns.keys:
            if kv.exists(key) if ns.dry_run else kv.delete(key):
                removed += 1
            else:
                missing.append(key)
    if ns.dry_run:
        for key in missing:
            warn(f"{name}: no key {show_key(key)}")
        print(f"would remove {plural(removed, 'record')}")
        return EXIT_FAILED if missing else 0
    for key in missing:
        warn(f"{name}: no key {show_key(key)}")
    print(f"removed {plural(removed, 'record')}")
    return EXIT_FAILED if missing else 0


def cmd_clear(ns: argparse.Namespace) -> int:
    """Delete every record, only with --yes."""
    name = store_label(ns.store)
    with open_store(ns.store) as kv:
        count = len(kv)
        if not ns.yes:
            raise CLIError(
                f"clear would delete all {plural(count, 'record')} of {name}; "
                "add --yes to confirm"
            )
        kv.clear()
    print(f"removed {plural(count, 'record')} from {name}")
    return 0


def codec_totals(records: Iterable[Record]) -> dict[str, list[int]]:
    """[records, bytes] per codec tag (UNREADABLE for records without a valid header), from
    headers only; `stats` and the dashboard's chart count with this."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        cell = counts[r.tag if r.tag is not None else UNREADABLE]
        cell[0] += 1
        cell[1] += r.size
    return dict(counts)


def cmd_stats(ns: argparse.Namespace) -> int:
    """Record count and bytes, in all and per codec; problems as `check` finds them."""
    name = store_label(ns.store)
    with open_store(ns.store, readonly=True) as kv:
        found = inspect(kv)
    counts = codec_totals(found.records)
    total = sum(c for c, _ in counts.values())
    size = sum(b for _, b in counts.values())
    by_codec = sorted(counts.items())
    code = 0 if found.ok else EXIT_FAILED
    if ns.json:
        bad = counts.get(UNREADABLE, [0, 0])
        print_json({
            "store": name, "records": total, "bytes": size,
            "codecs": {t: {"records": c, "bytes": b} for t, (c, b) in by_codec if t != UNREADABLE},
            "unreadable": {"records": bad[0], "bytes": bad[1]},
            "problems": found.problems(),
        })
        return code
    print(f"store    {name}\nrecords  {total}\nbytes    {size} ({show_size(size)})")
    if by_codec:
        rows = [[t if t != UNREADABLE else "? (unreadable)", str(c), str(b), show_size(b)]
                for t, (c, b) in by_codec]
        print()
        print(table(["CODEC", "RECORDS", "BYTES", ""], rows, right={1, 2, 3}))
    for problem in found.damage_lines(SHOWN):
        warn(f"{name}: {problem}")
    if found.unreadable:
        warn(f"{name}: {plural(len(found.unreadable), 'record')} cannot be read; "
             f"`doeff cache check {name}` lists them")
    for line in advice(name, found, rm=False):
        warn(line)
    return code


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ls, get, rm, clear and stats under `doeff cache`."""
    p = sub.add_parser("ls", help="list keys with codec, size and update time",
                       description="List the records of STORE: key, codec, size in bytes and "
                       "update time (UTC; '-' where the backend records none). Only record "
                       "headers are read, so nothing is decoded or unpickled.")
    add_store(p)
    p.add_argument("--prefix", default="", metavar="P", help="only keys starting with P")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("get", help="print one value",
                       description="Print the value under KEY, decoded by the codec recorded "
                       "in its record (Python repr, or JSON with --json). A value of a type "
                       "this process cannot load is shown by its type name and fields; numpy "
                       "arrays by dtype, shape and first values; ints too long to print by "
                       "their digit count.")
    add_store(p)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--json", action="store_true",
                   help="print {key, codec, size, value}; value shown with JSON types only")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE (from the current directory too) to decode the "
                   "application's types exactly; repeatable")
    add_unsafe_pickle(p)
    add_signing_key(p)
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("rm", help="delete keys, or the records of a prefix, a step or an age",
                       description="Delete each KEY from STORE (exit 1 if any was not there); or, "
                       "instead of KEYs, every record the selections pick (--prefix, --step, "
                       "--older-than; all those given must match), in one transaction: all of "
                       "them or, on an error, none. --dry-run lists them instead.")
    add_store(p)
    p.add_argument("keys", metavar="KEY", nargs="*")
    add_rm_options(p)
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("clear", help="delete every record (needs --yes)",
                       description="Delete every record of STORE. Refuses without --yes.")
    add_store(p)
    p.add_argument("--yes", action="store_true", help="confirm deleting everything")
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser("stats", help="record count and bytes, per codec",
                       description="Count the records of STORE and their bytes, in all and per "
                       "codec, from record headers only. Runs the checks of `check` too: "
                       "problems go to stderr, and the exit status is 1 if there are any.")
    add_store(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_stats)
