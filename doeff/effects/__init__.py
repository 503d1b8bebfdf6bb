"""Everything a program can ask for: frozen dataclasses with lowercase constructors.

Each class is made by `doeff.effects.base.effect`: a frozen, slotted dataclass that is cheap to
build, most of all through its lowercase constructor.

Naming: class `CacheGet`, constructor `cacheget`; a trailing underscore where the lowercase name
is a Python keyword (`finally_`, `await_`).
"""

from doeff.effects.base import Effect
from doeff.effects.cache import (
    CacheDelete,
    CacheExists,
    CacheGet,
    CachePut,
    cached,
    cachedelete,
    cacheexists,
    cacheget,
    cacheput,
)
from doeff.effects.error import Catch, Finally, Safe, catch, finally_, safe
from doeff.effects.io import Await, Gather, Perform, await_, gather, perform
from doeff.effects.reader import Ask, Local, ask, local
from doeff.effects.state import Get, Modify, Put, get, modify, put
from doeff.effects.writer import Listen, Tell, listen, tell

__all__ = [
    "Ask",
    "Await",
    "CacheDelete",
    "CacheExists",
    "CacheGet",
    "CachePut",
    "Catch",
    "Effect",
    "Finally",
    "Gather",
    "Get",
    "Listen",
    "Local",
    "Modify",
    "Perform",
    "Put",
    "Safe",
    "Tell",
    "ask",
    "await_",
    "cached",
    "cachedelete",
    "cacheexists",
    "cacheget",
    "cacheput",
    "catch",
    "finally_",
    "gather",
    "get",
    "listen",
    "local",
    "modify",
    "perform",
    "put",
    "safe",
    "tell",
]
