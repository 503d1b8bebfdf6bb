"""Built-in support for values of optional libraries (numpy, pandas) and for pydantic models.

Nothing here imports those libraries up front: a numpy value can only exist once numpy is imported,
so its adapter module is imported the first time such a value is encoded (or a record naming one
is decoded). `import doeff.serde` therefore loads none of them.
"""

from __future__ import annotations

from doeff.errors import DecodeError, install_hint
from doeff.serde.adapter import Adapter

# Wire names of the built-in types, by the library that defines them. Users cannot register these.
NAMES: dict[str, frozenset[str]] = {
    "numpy": frozenset({"numpy.ndarray", "numpy.scalar"}),
    "pandas": frozenset({"pandas.DataFrame", "pandas.Series", "pandas.Index"}),
}
BUILTIN_NAMES: frozenset[str] = frozenset().union(*NAMES.values())
# Which extra installs each library.
EXTRAS = {"numpy": "numpy", "pandas": "pandas"}

# Adapters found so far, by exact type (None: a numpy/pandas type with no built-in support).
_by_type: dict[type, Adapter | None] = {}


def builtin_for_type(cls: type) -> Adapter | None:
    """The built-in adapter for values of exactly `cls`, or None."""
    try:
        return _by_type[cls]
    except KeyError:
        pass
    library = cls.__module__.partition(".")[0]
    if library not in NAMES:
        return None  # not cached: user classes come and go
    if library == "numpy":
        from doeff.serde.ext import numpy as module
    else:
        from doeff.serde.ext import pandas as module  # type: ignore[no-redef]
    found = _by_type[cls] = module.adapter_for(cls)
    return found


def builtin_for_name(name: str) -> Adapter | None:
    """The built-in adapter for wire name `name`, or None if the name is not a built-in one;
    `DecodeError` naming the extra to install when its library is missing."""
    library = name.partition(".")[0]
    if name not in NAMES.get(library, ()):
        return None
    try:
        if library == "numpy":
            from doeff.serde.ext import numpy as module
        else:
            from doeff.serde.ext import pandas as module  # type: ignore[no-redef]
    except ImportError as exc:
        raise DecodeError(
            f"the record holds a {name}, and reading it needs {exc.name or library}, which is "
            f"not installed here: {install_hint(EXTRAS[library])}"
        ) from exc
    return module.adapter_named(name)
