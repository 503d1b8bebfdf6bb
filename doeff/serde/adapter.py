"""`Adapter`: how values of one type travel as ``(name, state)`` (see `doeff.serde.types`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def type_name(cls: type) -> str:
    """The default wire name of a type: ``module.qualname``."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class Adapter:
    """How values of one exact type travel: a wire name, a reducer to a state, a rebuilder back.

    `user_state` says the state can hold the user's own values (a dataclass's fields), which the
    msgpack codec checks for types its C packer would otherwise write silently as something else.
    """

    cls: type
    name: str
    reduce: Callable[[Any], object]
    rebuild: Callable[[Any], object]
    user_state: bool = True


# An unregistered wire name met while decoding: (name, state) -> the value to use in its place.
Unknown = Callable[[str, Any], object]
