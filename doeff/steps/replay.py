"""Strict replay (`run_sync(..., replay="strict")`): a step or `cacheget` that misses raises
`ReplayMissError` instead of computing.

It is the mode for a test or CI run that replays recorded results — LLM answers, API responses
— with no network: anything not recorded fails loudly, with the reason. The error lists the
records of the same step that do exist and which part of their keys differs from the one asked
for (version, code fingerprint, which argument), or says that the record expired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doeff.effects.cache import CacheGet, CacheLookup
from doeff.errors import InvalidOptionError, ReplayMissError
from doeff.protocols import DurableStorage, RecordStorage
from doeff.steps.explain import Recorded, explain_miss, parse_key, step_prefix

REPLAY_MODES = (None, "strict")
_HINT = ("record it by running once without replay=\"strict\"; `doeff cache explain STORE "
         "STEP` lists a step's records")


def check_replay(replay: object) -> str | None:
    """`replay=` checked: None (compute on a miss) or "strict"."""
    if replay not in REPLAY_MODES:
        raise InvalidOptionError(
            f"replay={replay!r:.40}: give \"strict\" (a miss raises ReplayMissError) or None"
        )
    return None if replay is None else "strict"


def _records(storage: DurableStorage, key: str) -> list[Recorded] | None:
    """The records of the step `key` belongs to (or of `key` itself for a hand-written key),
    from their headers; None when the storage cannot list them."""
    if not isinstance(storage, RecordStorage):
        return None
    parsed = parse_key(key)
    prefix = step_prefix(parsed.name) if parsed is not None else key
    return [Recorded(m.key, m.info, m.expires_at, m.updated_at)
            for m in storage.describe(prefix) if parsed is not None or m.key == key]


def miss_error(storage: DurableStorage, key: str, call: Any) -> ReplayMissError:
    """The error for a miss under strict replay, explained as well as the storage allows."""
    want = call.recorded() if call is not None else None
    shown = call.shown() if call is not None else f"cacheget({key!r})"
    why = explain_miss(key, want, _records(storage, key), shown)
    return ReplayMissError(f"strict replay: {why}; {_HINT}")


def strict_handlers(storage: DurableStorage,
                    table: dict[type, Callable[[Any], Any]]) -> dict[type, Callable[[Any], Any]]:
    """Handlers of CacheLookup and CacheGet that raise `ReplayMissError` on a miss, over the
    ones in `table` (the machine's cache handlers)."""
    look_up = table[CacheLookup]

    def strict_lookup(eff: CacheLookup) -> tuple[bool, Any]:
        found: tuple[bool, Any] = look_up(eff)
        if not found[0]:
            raise miss_error(storage, eff.key, eff.call)
        return found

    def strict_get(eff: CacheGet) -> Any:
        found, value = look_up(CacheLookup(eff.key))
        if not found:
            raise miss_error(storage, eff.key, None)
        return value

    return {CacheLookup: strict_lookup, CacheGet: strict_get}


__all__ = ["REPLAY_MODES", "check_replay", "miss_error", "strict_handlers"]
