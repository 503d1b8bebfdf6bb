"""`doeff cache check STORE`: is the store sound? Also what `doeff cache stats` reports.

Two checks: the backend's own (SQLite's `integrity_check`; for LMDB and PostgreSQL a walk over
every record's layout), which finds a damaged file even where reads still answer, and each
record's envelope (header and checksum), which finds a record changed after it was written.
Neither decodes a payload, so no pickle is loaded.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from doeff.cli.args import add_store
from doeff.cli.errors import EXIT_FAILED
from doeff.cli.output import plural, print_json, show_key, warn
from doeff.cli.scan import Record, scan, verify
from doeff.cli.store import open_store, store_label
from doeff.errors import CorruptStoreError
from doeff.storage.base import KVStore

_LISTED_KEYS = 10  # at most this many keys are spelled out in the `rm` advice
SHOWN = 10  # problems of the store itself shown in text output (--json has them all)


@runtime_checkable
class _SelfChecking(Protocol):
    def check(self) -> list[str]: ...


@dataclass
class Findings:
    """What reading a whole store found: its records, and what is wrong with it."""

    records: list[Record] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)  # the store itself (its file, its table)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, what is wrong)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.damage and not self.unreadable

    def damage_lines(self, limit: int | None = None) -> list[str]:
        """The store's own problems, one per line; past `limit` of them (SQLite reports one per
        damaged cell), a line counting the rest."""
        shown = self.damage if limit is None else self.damage[:limit]
        rest = len(self.damage) - len(shown)
        return [*shown, *([f"... and {plural(rest, 'more problem')} of the store itself"]
                          if rest else [])]

    def problems(self, limit: int | None = None) -> list[str]:
        """Every problem on one line each, the store's own first (see damage_lines)."""
        return [*self.damage_lines(limit),
                *(f"{show_key(k)}: {why}" for k, why in self.unreadable)]


def inspect(kv: KVStore) -> Findings:
    """Run the backend's check and every record's envelope check."""
    found = Findings()
    if isinstance(kv, _SelfChecking):
        found.damage.extend(kv.check())
    try:
        found.records = list(scan(kv))
    except CorruptStoreError as exc:
        found.damage.append(f"the records cannot be listed: {exc.__cause__ or exc}")
    for record in found.records:
        problem = verify(record)
        if problem is not None:
            found.unreadable.append((record.key, problem))
    return found


def advice(name: str, found: Findings, *, rm: bool = True) -> list[str]:
    """What to do about what `inspect` found, one line per kind of problem (`rm=False`: not
    the line naming the records to delete)."""
    lines = []
    if found.unreadable and rm:
        keys = [k for k, _ in found.unreadable]
        plain = len(keys) <= _LISTED_KEYS and all(show_key(k) == k for k in keys)
        listed = " ".join(shlex.quote(k) for k in keys) if plain else "KEY... (listed above)"
        lines.append(f"{name}: {len(keys)} of {plural(len(found.records), 'record')} cannot be "
                     f"read; delete them to recompute their steps: doeff cache rm "
                     f"{shlex.quote(name)} {listed}")
    if found.damage:
        lines.append(f"{name}: the store is damaged; restore it from a backup, or copy the "
                     f"records that can still be read to a new store: doeff cache migrate "
                     f"{shlex.quote(name)} --into NEW_STORE")
    return lines


def cmd_check(ns: argparse.Namespace) -> int:
    """Check the store and every record; exit 1 when anything is wrong."""
    name = store_label(ns.store)
    with open_store(ns.store, readonly=True) as kv:
        found = inspect(kv)
    if ns.json:
        print_json({
            "store": name, "ok": found.ok, "records": len(found.records),
            "damage": found.damage,
            "unreadable": [{"key": k, "problem": why} for k, why in found.unreadable],
        })
        return 0 if found.ok else EXIT_FAILED
    if found.ok:
        print(f"{name}: ok ({plural(len(found.records), 'record')}; integrity check passed, "
              f"every record's checksum matches)")
        return 0
    for problem in found.problems(SHOWN):
        warn(f"{name}: {problem}")
    for line in advice(name, found):
        warn(line)
    return EXIT_FAILED


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `doeff cache check`."""
    p = sub.add_parser("check", help="check the store and every record for damage",
                       description="Run the store's own integrity check (SQLite's "
                       "integrity_check; for LMDB and PostgreSQL a walk over every record) and "
                       "check every record's header and checksum, without decoding any value. "
                       "Prints ok, or each problem with what to do; exit 1 if anything is wrong.")
    add_store(p)
    p.add_argument("--json", action="store_true",
                   help="print {store, ok, records, damage, unreadable}")
    p.set_defaults(func=cmd_check)
