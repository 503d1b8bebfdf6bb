"""State effects: read and write named values in the machine's store S."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doeff.effects.base import Effect, effect, fast_constructor


@effect
class Get(Effect):
    """Answer the store's value for `key`, or `default` when it has none."""

    key: Any
    default: Any = None


@effect
class Put(Effect):
    """Set the store's value for `key`; answers None."""

    key: Any
    value: Any


@effect
class Modify(Effect):
    """Replace the store's value for `key` with `fn(old)`; answers the new value."""

    key: Any
    fn: Callable[[Any], Any]
    default: Any = None


_get = fast_constructor(Get)
_put = fast_constructor(Put)
_modify = fast_constructor(Modify)


def get(key: Any, default: Any = None) -> Get:
    """Read `key` from the store (`default` when it was never put)."""
    return _get(key, default)


def put(key: Any, value: Any) -> Put:
    """Write `value` under `key` in the store."""
    return _put(key, value)


def modify(key: Any, fn: Callable[[Any], Any], default: Any = None) -> Modify:
    """Apply `fn` to the value under `key` (`default` when missing) and store the result."""
    return _modify(key, fn, default)
