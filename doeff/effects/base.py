"""`Effect`: the base class of everything a program may yield to ask the machine for something."""

from __future__ import annotations


class Effect:
    """Base of all effects: frozen dataclasses that carry data, never behaviour.

    A user effect subclasses it and is answered by a handler given to `run_sync(handlers=...)`::

        @dataclass(frozen=True)
        class Fetch(Effect):
            url: str

        run_sync(program(), handlers={Fetch: lambda eff: http_get(eff.url)})
    """

    __slots__ = ()
