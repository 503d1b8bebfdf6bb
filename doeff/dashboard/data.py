"""What the dashboard shows, as plain JSON types: run summaries and records, cache records with
their values as text, store statistics. No web framework here.

Everything is read with the readers of `doeff runs` and `doeff cache`: run records through
`doeff.runs` (msgpack, never the application's codec), cache records from their headers, values
decoded under the same trust policy as `doeff cache get` (pickle-family only with
--unsafe-pickle). Text read from a store is sent as data; the page inserts it as text.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from doeff.cli.cache import UNREADABLE, codec_totals, decode_value
from doeff.cli.errors import CLIError
from doeff.cli.output import show_time, show_value
from doeff.cli.runs import show_age
from doeff.cli.scan import UNSAFE_TAGS, Record, pickle_refusal, scan
from doeff.errors import DecodeError, InvalidOptionError
from doeff.runs import RunRecord
from doeff.runs.api import runs_of
from doeff.runs.record import LOST_AFTER, STATUSES
from doeff.runs.store import RUN
from doeff.steps.explain import step_prefix
from doeff.storage.base import KVStore

VALUE_CHARS = 4000  # a value's text is cut here (`doeff cache get` shows it all)
CACHE_LIMIT = 200  # records listed when the request gives no limit
MAX_LIMIT = 5000
RUNS_PAGE = 100  # runs in a page of the runs list when the request gives no limit


@dataclass(frozen=True)
class Policy:
    """How values are read: whether pickle-family records may be loaded, and the signing keys."""

    unsafe_pickle: bool = False
    signing_keys: list[bytes] | None = None


def cursor_of(record: RunRecord) -> str:
    """The place of `record` in the runs list, as the `before=` of the page after it: its
    start time and id (the list's order), as unpadded URL-safe base64 of JSON."""
    text = json.dumps([record.started_at, record.run_id], ensure_ascii=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _order(started_at: float, run_id: str) -> tuple[float, str]:
    return -started_at, run_id  # newest first; runs started at the same time by id


def place_of(cursor: str) -> tuple[float, str]:
    """The list order's key of the place `cursor` (made by `cursor_of`) names;
    InvalidOptionError saying so if it names none."""
    value = None
    if cursor.isascii():
        try:
            value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, binascii.Error, RecursionError):  # bad base64/UTF-8/JSON, too deep
            pass
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)
            and isinstance(value[0], int | float) and not isinstance(value[0], bool)
            and math.isfinite(value[0])):
        return _order(float(value[0]), value[1])
    raise InvalidOptionError(
        f"before={cursor!r:.60} is not a cursor of this list: give the `next` of an "
        f"/api/runs answer, or the `cursor` of a run in it (or no before= for the first page)")


@dataclass(frozen=True)
class RunPage:
    """One page of the runs list, and how many runs the whole list has of each status."""

    records: list[RunRecord]
    next: str | None  # the `before=` of the page after it; None if it is the last
    counts: dict[str, int]  # every status, 0 included
    total: int  # every readable run


def run_page(records: Sequence[RunRecord], *, status: str | None = None,
             limit: int = RUNS_PAGE, before: str | None = None) -> RunPage:
    """The first `limit` of `records` (newest first, as `RunReader.all` gives them) that come
    after the place `before` names and have `status` (if given). A cursor is a place, not a
    run: runs that start later, or the deletion of the run it was made from, leave the pages
    after it as they were."""
    counts: Counter[str] = Counter(r.status for r in records)
    matching = [r for r in records if status is None or r.status == status]
    start = 0
    if before is not None:
        place = place_of(before)
        start = bisect.bisect_right(matching, place,
                                    key=lambda r: _order(r.started_at, r.run_id))
    page = matching[start:start + limit]
    more = start + limit < len(matching)
    return RunPage(records=page, next=cursor_of(page[-1]) if page and more else None,
                   counts={s: counts.get(s, 0) for s in STATUSES}, total=len(records))


def run_summary(record: RunRecord, now: float) -> dict[str, Any]:
    """One row of the runs table; `cursor` is the `before=` of the runs after it."""
    effect = record.current_effect
    return {
        "run_id": record.run_id, "cursor": cursor_of(record), "status": record.status,
        "lost_reason": record.lost_reason,
        "program": record.program, "attempt": record.attempt,
        "started_at": record.started_at, "started": show_time(record.started_at),
        "age": show_age(max(0.0, now - record.started_at)),
        "step_count": record.step_count,
        "durable_steps": len(record.steps) + record.steps_omitted,
        "effect": None if effect is None else effect.repr,
    }


class RunReader:
    """The run records of a store, read again on every call but decoded only when their bytes
    changed: the live views poll it several times a second. Thread-safe."""

    def __init__(self, kv: KVStore, lost_after: float = LOST_AFTER) -> None:
        self.runs = runs_of(kv)
        self.lost_after = lost_after
        self._decoded: dict[str, tuple[bytes, RunRecord | DecodeError | None]] = {}
        self._lock = threading.Lock()
        # Why each record that `all` left out cannot be read, by run id (as of its last call).
        self.unreadable: dict[str, str] = {}
        # The last list read, with the (monotonic) time it was made: what every open runs page
        # is sent a page of, read once for all of them (see `listing`).
        self._listing: tuple[float, list[RunRecord], dict[str, str]] | None = None
        self._listing_lock = threading.Lock()

    def all(self, status: str | None = None) -> list[RunRecord]:
        """Every readable run as seen now ("lost" computed), newest first; `status` filters.
        The others are named in `unreadable`, as `doeff runs ls` warns of them."""
        with self._lock:
            fresh: dict[str, tuple[bytes, RunRecord | DecodeError | None]] = {}
            for key, raw, _ in self.runs.kv.records(RUN):
                run_id = key[len(RUN):]
                known = self._decoded.get(run_id)
                fresh[run_id] = known if known is not None and known[0] == raw else \
                    (raw, self._decode(run_id, raw))
            self._decoded = fresh
            self.unreadable = {k: str(r) for k, (_, r) in fresh.items()
                               if isinstance(r, DecodeError)}
        now = time.time()
        records = [r.seen(now=now, lost_after=self.lost_after)
                   for _, r in fresh.values() if isinstance(r, RunRecord)]
        records.sort(key=lambda r: _order(r.started_at, r.run_id))
        return [r for r in records if status is None or r.status == status]

    def listing(self, max_age: float = 0.0) -> tuple[list[RunRecord], dict[str, str]]:
        """`all()` and `unreadable`, read again only if those at hand are older than `max_age`
        seconds. Each open runs page polls this; without sharing, every one of them would read
        the whole list."""
        with self._listing_lock:
            made = self._listing
            if made is None or time.monotonic() - made[0] > max_age:
                records = self.all()
                made = self._listing = (time.monotonic(), records, dict(self.unreadable))
            return made[1], made[2]

    def one(self, run_id: str) -> RunRecord | None:
        """The record of `run_id` as seen now, or None if there is none; DecodeError saying why
        if it cannot be read."""
        raw = self.runs.kv.get(RUN + run_id)
        if raw is None:
            return None
        with self._lock:
            known = self._decoded.get(run_id)
        if known is not None and known[0] == raw:
            record = known[1]
        else:
            # A run page polls its run five times a second: a record of a wide fan-out is a
            # megabyte, so it is decoded again only when its bytes changed.
            record = self._decode(run_id, raw)
            with self._lock:
                self._decoded[run_id] = (raw, record)
        if isinstance(record, DecodeError):
            raise record
        return None if record is None else record.seen(lost_after=self.lost_after)

    def _decode(self, run_id: str, raw: bytes) -> RunRecord | DecodeError:
        try:
            return self.runs.decode(run_id, raw)
        except DecodeError as exc:
            return exc


def run_detail(record: RunRecord) -> dict[str, Any]:
    """A whole record for the run page: the record's own JSON and the summary's fields."""
    data = record.to_json()
    data["summary"] = run_summary(record, time.time())
    return data


class RunListFeed:
    """The first page of the runs list (of one status, if given) and the list's counts, as
    changes since the last `poll` (the first gives the whole page): what /api/events sends."""

    def __init__(self, reader: RunReader, *, status: str | None = None,
                 limit: int = RUNS_PAGE, share_for: float = 0.0) -> None:
        self.reader = reader
        self.status = status
        self.limit = limit
        self.share_for = share_for  # seconds a list read for another page may be reused
        self.shown: dict[str, dict[str, Any]] | None = None
        self.told: tuple[Any, ...] = ()  # the counts and unreadable runs last sent

    def poll(self) -> dict[str, Any] | None:
        """`{"full", "runs": [changed summaries], "removed": [ids], "below": [ids],
        "unreadable": [{run_id, error}], "counts": {status: n}, "total": n}`, or None if
        nothing changed. `removed`: runs gone from the list (deleted, or no longer of the
        status); `below`: runs still in it that newer ones pushed off the page. The counts
        and `unreadable` are always whole."""
        records, bad = self.reader.listing(self.share_for)
        page = run_page(records, status=self.status, limit=self.limit)
        now = time.time()
        current = {r.run_id: run_summary(r, now) for r in page.records}
        unreadable = [{"run_id": k, "error": v} for k, v in sorted(bad.items())]
        told = (page.counts, page.total, unreadable)
        shown, self.shown = self.shown, current
        told_before, self.told = self.told, told
        whole = {"counts": page.counts, "total": page.total, "unreadable": unreadable}
        if shown is None:
            return {"full": True, "runs": list(current.values()), "removed": [], "below": [],
                    **whole}
        changed = [s for k, s in current.items() if shown.get(k) != s]
        gone = [k for k in shown if k not in current]
        if not changed and not gone and told == told_before:
            return None
        listed = {r.run_id for r in records if self.status in (None, r.status)} if gone \
            else set()
        return {"full": False, "runs": changed, "removed": [k for k in gone if k not in listed],
                "below": [k for k in gone if k in listed], **whole}


class RunFeed:
    """One run's record each time it changes: what /api/runs/ID/events sends."""

    def __init__(self, reader: RunReader, run_id: str) -> None:
        self.reader = reader
        self.run_id = run_id
        self.last: object = ...  # nothing sent yet

    def poll(self) -> tuple[str, dict[str, Any]] | None:
        """("run", the record), ("missing", {run_id}) or ("unreadable", {run_id, error}) when
        it changed since the last poll; None if it did not."""
        try:
            record = self.reader.one(self.run_id)
        except DecodeError as exc:
            if self.last == str(exc):
                return None
            self.last = str(exc)
            return "unreadable", {"run_id": self.run_id, "error": str(exc)}
        # The reader gives the same decoded record while its bytes stay the same, so this is
        # cheap until it changes (fields compared by identity first).
        if record == self.last:
            return None
        self.last = record
        if record is None:
            return "missing", {"run_id": self.run_id}
        return "run", run_detail(record)


def _value_text(value: object) -> str:
    text = show_value(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def cache_row(kv_record: Record, policy: Policy, now: float) -> dict[str, Any]:
    """One row of the cache table: header facts, and the value as text, or why it is not shown."""
    r = kv_record
    row: dict[str, Any] = {
        "key": r.key, "codec": r.tag or UNREADABLE, "size": r.size,
        "updated_at": r.updated_at, "updated": show_time(r.updated_at),
        "age": None if r.updated_at is None else show_age(max(0.0, now - r.updated_at)),
        "expires_at": r.expires_at,
        "expiry": "-" if r.expires_at is None else
        show_time(r.expires_at) + (" (expired)" if r.expires_at <= now else ""),
        "signed_by": r.key_id, "value": None, "hidden": None, "error": r.error,
    }
    if r.error is not None:
        return row
    if r.tag in UNSAFE_TAGS and not policy.unsafe_pickle:
        row["hidden"] = pickle_refusal(f"hidden: a {r.tag} record")
        return row
    ns = argparse.Namespace(unsafe_pickle=policy.unsafe_pickle)
    try:
        row["value"] = _value_text(decode_value(r.raw, r.key, ns, policy.signing_keys, []))
    except CLIError as exc:
        row["error"] = str(exc)
    return row


def cache_rows(kv: KVStore, policy: Policy, *, prefix: str = "", step: str | None = None,
               limit: int = CACHE_LIMIT) -> list[dict[str, Any]]:
    """The first `limit` records (in key order) whose key starts with `prefix` and, if `step`
    is given, that belong to the step of that name."""
    starts = step_prefix(step) if step else ""
    # Scan the narrower of the two prefixes; the other one filters.
    first, other = (starts, prefix) if len(starts) >= len(prefix) else (prefix, starts)
    now = time.time()
    rows = []
    for record in scan(kv, first):
        if not record.key.startswith(other):
            continue
        rows.append(cache_row(record, policy, now))
        if len(rows) >= limit:
            break
    return rows


def store_stats(kv: KVStore) -> dict[str, Any]:
    """Records and bytes, in all and per codec, from record headers (as `doeff cache stats`)."""
    counts = codec_totals(scan(kv))
    bad = counts.pop(UNREADABLE, [0, 0])
    return {
        "records": sum(c for c, _ in counts.values()) + bad[0],
        "bytes": sum(b for _, b in counts.values()) + bad[1],
        "codecs": {t: {"records": c, "bytes": b} for t, (c, b) in sorted(counts.items())},
        "unreadable": {"records": bad[0], "bytes": bad[1]},
    }


__all__ = ["CACHE_LIMIT", "MAX_LIMIT", "RUNS_PAGE", "Policy", "RunFeed", "RunListFeed",
           "RunPage", "RunReader", "cache_row", "cache_rows", "cursor_of", "place_of",
           "run_detail", "run_page", "run_summary", "store_stats"]
