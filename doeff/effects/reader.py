"""Reader effects: read the environment, or run a sub-program with a changed one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from doeff.effects.base import Effect, Runnable, effect, fast_constructor
from doeff.errors import InvalidEffectError


@effect
class Ask(Effect):
    """Answer the environment's value for `key` (`EnvKeyError` when it has none)."""

    key: Any


@effect
class Local(Effect):
    """Run `program` with the environment updated by `updates`; answer its result."""

    updates: Mapping[Any, Any]
    program: Runnable


_ask = fast_constructor(Ask)
_local = fast_constructor(Local)


def ask(key: Any) -> Ask:
    """Read `key` from the environment given to `run_sync(env=...)` or set by `local`."""
    return _ask(key)


def local(updates: Mapping[Any, Any], program: Runnable) -> Local:
    """Run `program` (a program or an effect) in the environment updated with `updates`."""
    if not isinstance(updates, Mapping):
        raise InvalidEffectError(
            f"local(updates, program): updates must be a mapping such as a dict, got "
            f"{type(updates).__name__} {updates!r:.60}"
        )
    return _local(dict(updates), program)
