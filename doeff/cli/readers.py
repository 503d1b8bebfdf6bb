"""The codec `doeff cache get` reads a record with: exact for the types it can load, structural
views (`doeff.serde.view`) for the rest.

``--import MODULE`` imports the application's modules first (the current directory is on the
import path). Their types are then found three ways: a codec they registered process-wide
(`register_codec`), a `MsgpackCodec`/`JSONCodec`/`TypeRegistry` they define at module level
(whose registrations, custom names and hooks included, are used), and a class reachable as
``MODULE.Qualname`` for a record written under its default name. Only modules named on the command
line are searched: a record never chooses what gets imported.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from doeff.cli.errors import CLIError
from doeff.errors import RegistrationError, UnknownCodecError
from doeff.serde import Codec, JSONCodec, MsgpackCodec, TypeRegistry, get_codec
from doeff.serde.view import view


def import_modules(names: list[str]) -> list[ModuleType]:
    """The modules named by --import, imported with the current directory on the path."""
    if names and os.getcwd() not in sys.path and "" not in sys.path:
        # Last, not first: a file here must not shadow a library imported later (numpy...).
        sys.path.append(os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:
            raise CLIError(f"--import {name}: {type(exc).__name__}: {exc}") from exc
    return modules


def reader_for(tag: str, modules: list[ModuleType]) -> Codec | None:
    """The codec to read records tagged `tag` with, or None if no codec has that tag (the
    envelope then says so)."""
    try:
        base = get_codec(tag)
    except UnknownCodecError:
        return None
    if not isinstance(base, MsgpackCodec | JSONCodec):
        return base
    types = base.types.copy()
    for module in modules:
        for value in list(vars(module).values()):
            if isinstance(value, MsgpackCodec | JSONCodec):
                types.merge(value.types)
            elif isinstance(value, TypeRegistry):
                types.merge(value)
    types.unknown = lambda name, state: _resolve(types, modules, name, state)
    return type(base)(types=types)


def _class_named(module: ModuleType, qualname: str) -> type | None:
    """The class of `module` whose qualified name is `qualname`, looked up in namespaces only
    (`vars`, never `getattr`): the name comes from the record, so no property, module
    `__getattr__` or lazy import of the application may run because of it."""
    found: object = module
    for part in qualname.split("."):
        space = vars(found) if isinstance(found, ModuleType | type) else {}
        found = space.get(part)
        if found is None:
            return None
    if (isinstance(found, type) and found.__module__ == module.__name__
            and found.__qualname__ == qualname):
        return found
    return None


def _resolve(types: TypeRegistry, modules: list[ModuleType], name: str, state: Any) -> object:
    """Rebuild `name` from a class found as ``MODULE.Qualname`` in an imported module, or give
    its structural view."""
    for module in modules:
        prefix = module.__name__ + "."
        if not name.startswith(prefix):
            continue
        found = _class_named(module, name[len(prefix):])
        if found is not None:
            try:
                types.register(found, name)
            except RegistrationError:
                break
            return types.rebuild(name, state)
    return view(name, state)
