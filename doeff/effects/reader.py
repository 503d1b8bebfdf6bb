"""Reader effects: read the environment, or run a sub-program with a changed one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from doeff.effects.base import Effect


@dataclass(frozen=True, slots=True)
class Ask(Effect):
    """Answer the environment's value for `key` (`EnvKeyError` when it has none)."""

    key: Any


@dataclass(frozen=True, slots=True)
class Local(Effect):
    """Run `program` with the environment updated by `updates`; answer its result."""

    updates: Mapping[Any, Any]
    program: Any


def ask(key: Any) -> Ask:
    """Read `key` from the environment given to `run_sync(env=...)` or set by `local`."""
    return Ask(key)


def local(updates: Mapping[Any, Any], program: Any) -> Local:
    """Run `program` (a program or an effect) in the environment updated with `updates`."""
    return Local(dict(updates), program)
