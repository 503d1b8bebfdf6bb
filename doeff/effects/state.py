"""State effects: read and write named values in the machine's store S."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from doeff.effects.base import Effect


@dataclass(frozen=True, slots=True)
class Get(Effect):
    """Answer the store's value for `key`, or `default` when it has none."""

    key: Any
    default: Any = None


@dataclass(frozen=True, slots=True)
class Put(Effect):
    """Set the store's value for `key`; answers None."""

    key: Any
    value: Any


@dataclass(frozen=True, slots=True)
class Modify(Effect):
    """Replace the store's value for `key` with `fn(old)`; answers the new value."""

    key: Any
    fn: Callable[[Any], Any]
    default: Any = None


def get(key: Any, default: Any = None) -> Get:
    """Read `key` from the store (`default` when it was never put)."""
    return Get(key, default)


def put(key: Any, value: Any) -> Put:
    """Write `value` under `key` in the store."""
    return Put(key, value)


def modify(key: Any, fn: Callable[[Any], Any], default: Any = None) -> Modify:
    """Apply `fn` to the value under `key` (`default` when missing) and store the result."""
    return Modify(key, fn, default)
