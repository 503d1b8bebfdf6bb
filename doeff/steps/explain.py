"""Why a step missed: the records of the same step, and which part of their keys differs.

A step's record carries a summary in its header (`info`, readable without the application's
code or the payload's codec):

    {"step": "fetch", "version": "2", "code": "1a2b3c4d5e6f" or null,
     "args": {"url": "<12 hex digits>", "limit": "<12 hex digits>"}}

Each argument's digest is that of its canonical encoding, so two records show *which* argument
differs without the store holding any argument's value (a secret passed to a step stays out of
the store's headers, which are never encrypted). Strict replay (`ReplayMissError`) and
`doeff cache explain` both read it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STEP_PREFIX = "step:"


@dataclass(frozen=True)
class StepKey:
    """A step key taken apart: `step:NAME@vVERSION[#CODE]:DIGEST`."""

    name: str
    version: str
    code: str | None
    digest: str

    def text(self) -> str:
        """The key itself."""
        code = f"#{self.code}" if self.code else ""
        return f"{STEP_PREFIX}{self.name}@v{self.version}{code}:{self.digest}"


def step_prefix(name: str) -> str:
    """The prefix every key of step `name` starts with."""
    return f"{STEP_PREFIX}{name}@v"


def parse_key(key: str) -> StepKey | None:
    """The parts of a step key, or None for any other key."""
    if not key.startswith(STEP_PREFIX):
        return None
    head, sep, digest = key.rpartition(":")
    name, at, version = head[len(STEP_PREFIX):].rpartition("@v")
    if not sep or not at or not name:
        return None
    version, hash_sign, code = version.partition("#")
    return StepKey(name, version, code if hash_sign else None, digest)


@dataclass(frozen=True)
class Recorded:
    """One stored record of a step, as its header and key describe it."""

    key: str
    info: Mapping[str, Any] | None
    expires_at: float | None = None
    updated_at: float | None = None

    @property
    def version(self) -> str:
        """The version it was recorded under ("?" when unknown)."""
        if self.info is not None and "version" in self.info:
            return str(self.info["version"])
        parsed = parse_key(self.key)
        return parsed.version if parsed is not None else "?"

    @property
    def code(self) -> str | None:
        """Its code fingerprint, if the step had `code=True`."""
        if self.info is not None:
            code = self.info.get("code")
            return None if code is None else str(code)
        parsed = parse_key(self.key)
        return None if parsed is None else parsed.code

    @property
    def args(self) -> Mapping[str, str]:
        """Each argument's digest (empty when the record has no info)."""
        args = (self.info or {}).get("args")
        return {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {}

    def expired(self, now: float | None = None) -> bool:
        """Whether its expiry has passed."""
        return self.expires_at is not None and self.expires_at <= (now or time.time())


def differences(want: Recorded, have: Recorded) -> list[str]:
    """What differs between the key asked for (`want`) and a recorded one (`have`)."""
    out = []
    if want.version != have.version:
        out.append(f"version (recorded v{have.version}, now v{want.version})")
    if want.code != have.code:
        out.append(f"code fingerprint (recorded {have.code or 'without code=True'}, now "
                   f"{want.code or 'without code=True'})")
    names = sorted(set(want.args) | set(have.args))
    changed = [n for n in names if want.args.get(n) != have.args.get(n)]
    if changed and have.args:
        out.append(f"argument{'s' if len(changed) > 1 else ''} {', '.join(changed)}")
    elif not out and want.key != have.key:
        out.append("arguments (the record holds no argument digests)")
    return out


def distance(want: Recorded, have: Recorded) -> int:
    """How many parts of the key differ (the version, the code, each argument)."""
    names = set(want.args) | set(have.args)
    return ((want.version != have.version) + (want.code != have.code)
            + sum(want.args.get(n) != have.args.get(n) for n in names))


def varying(records: Sequence[Recorded]) -> list[str]:
    """The parts of the key that take more than one value across `records`."""
    out = []
    if len({r.version for r in records}) > 1:
        out.append("version")
    if len({r.code for r in records}) > 1:
        out.append("code fingerprint")
    names = sorted({n for r in records for n in r.args})
    out += [f"argument {n}" for n in names if len({r.args.get(n) for r in records}) > 1]
    return out


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def explain_miss(key: str, want: Recorded | None, recorded: Iterable[Recorded] | None,
                 shown: str, most: int = 5) -> str:
    """Why `key` missed: it expired, or which records of the same step exist and how each
    differs (nearest first). `recorded` is None when the storage cannot list its records;
    `shown` is the call as the message shows it (e.g. `fetch(url='...')`)."""
    if recorded is None:
        return f"no record of {shown} under {key!r}; this storage cannot list its records"
    records = list(recorded)
    for r in records:
        if r.key == key and r.expired():
            return f"the record of {shown} under {key!r} expired at {_when(r.expires_at or 0)}"
    if want is None:
        return f"no record under {key!r}"
    others = [r for r in records if r.key != key and not r.expired()]
    parsed = parse_key(key)
    name = parsed.name if parsed is not None else key
    if not others:
        return f"no record of {shown} under {key!r}, and no record of step {name} at all"
    ranked = sorted(others, key=lambda r: (distance(want, r), r.key))
    lines = [f"{r.key} differs in {' and '.join(differences(want, r)) or 'nothing known'}"
             for r in ranked[:most]]
    more = f"; and {len(ranked) - most} more" if len(ranked) > most else ""
    count = (f"{len(others)} records of step {name} exist" if len(others) > 1
             else f"1 record of step {name} exists")
    return f"no record of {shown} under {key!r}; {count}: " + "; ".join(lines) + more


__all__ = ["STEP_PREFIX", "Recorded", "StepKey", "differences", "distance", "explain_miss",
           "parse_key", "step_prefix", "varying"]
