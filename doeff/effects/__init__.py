"""Everything a program can ask for: frozen dataclasses with lowercase constructors.

Each class is made by `doeff.effects.base.effect`: a frozen, slotted dataclass that is cheap to
build, most of all through its lowercase constructor.

Naming: class `CacheGet`, constructor `cacheget`; a trailing underscore where the lowercase name
is a Python keyword (`finally_`, `await_`).
"""

from doeff.effects.base import Effect
from doeff.effects.cache import (
    CacheClaim,
    CacheDelete,
    CacheExists,
    CacheFill,
    CacheGet,
    CacheLookup,
    CachePut,
    CacheRelease,
    CacheStore,
    cached,
    cachedelete,
    cacheexists,
    cacheget,
    cacheput,
    cachestore,
)
from doeff.effects.error import Catch, Finally, Safe, catch, finally_, safe
from doeff.effects.io import Await, Gather, Perform, await_, gather, perform
from doeff.effects.reader import Ask, Local, ask, local
from doeff.effects.retry import retry
from doeff.effects.state import Get, Modify, Put, get, modify, put
from doeff.effects.tasks import (
    Cancel,
    Limit,
    Race,
    Spawn,
    Wait,
    cancel,
    limit,
    race,
    spawn,
    wait,
)
from doeff.effects.timeout import timeout
from doeff.effects.writer import Listen, Tell, listen, tell

__all__ = [
    "Ask",
    "Await",
    "CacheClaim",
    "CacheDelete",
    "CacheExists",
    "CacheFill",
    "CacheGet",
    "CacheLookup",
    "CachePut",
    "CacheRelease",
    "CacheStore",
    "Cancel",
    "Catch",
    "Effect",
    "Finally",
    "Gather",
    "Get",
    "Limit",
    "Listen",
    "Local",
    "Modify",
    "Perform",
    "Put",
    "Race",
    "Safe",
    "Spawn",
    "Tell",
    "Wait",
    "ask",
    "await_",
    "cached",
    "cachedelete",
    "cacheexists",
    "cacheget",
    "cacheput",
    "cachestore",
    "cancel",
    "catch",
    "finally_",
    "gather",
    "get",
    "limit",
    "listen",
    "local",
    "modify",
    "perform",
    "put",
    "race",
    "retry",
    "safe",
    "spawn",
    "tell",
    "timeout",
    "wait",
]
