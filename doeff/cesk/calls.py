"""The default handler of `perform`, shared by the inline path and the executor path."""

from __future__ import annotations

from typing import Any

from doeff.effects.io import Perform
from doeff.errors import InvalidEffectError


def perform(eff: Perform) -> Any:
    """Call the effect's function."""
    try:
        return eff.fn(*eff.args, **eff.kwargs)
    except TypeError as err:
        if callable(eff.fn):
            raise  # the function's own TypeError
        raise not_callable("perform", eff.fn) from err


def not_callable(name: str, fn: Any) -> InvalidEffectError:
    """The error for an effect whose function cannot be called at all (a misuse)."""
    return InvalidEffectError(
        f"{name}(fn, ...): fn must be callable, got {type(fn).__name__} {fn!r:.60}"
    )
