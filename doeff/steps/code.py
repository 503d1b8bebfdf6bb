"""Code fingerprints (`@step(code=True)`): a digest of what a function's code does.

It covers the compiled code — bytecode, constants, the names it uses, its arguments and their
defaults — of the function and of every function, lambda and comprehension nested in it, plus
the functions listed in `code=[helper, ...]`. It leaves out what does not change behaviour: line
numbers, comments, blank lines, formatting, the file's name, and docstrings. So editing the body
of a step makes its key new (it is computed again), while reformatting the file does not.

What it cannot see: functions the step calls but that are not listed (`code=[helper]` adds
them), the values a closure captured, globals it reads, and libraries. Bytecode differs between
Python versions (3.11 and 3.12 compile the same source differently), so the fingerprint — and
with it the key of a `code=True` step — changes when the Python version does.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

from doeff.errors import InvalidOptionError, StepKeyError
from doeff.steps.keys import canonical

FINGERPRINT_HEX = 12
_CO_HAS_DOCSTRING = 0x4000000  # CPython 3.14's flag; before it, a docstring is co_consts[0]


def _unwrap(fn: Any) -> Any:
    """The plain function inside a step, a `@do` function, a wrapper or a bound method."""
    target = fn
    for _ in range(8):  # a step of a @do function of a wrapped function...
        inner = getattr(target, "fn", None) or getattr(target, "__wrapped__", None)
        if inner is None or inner is target:
            break
        target = inner
    return getattr(target, "__func__", target)


def code_of(fn: Any) -> CodeType:
    """The code object of a function, a `@do` function or a step (InvalidOptionError else)."""
    target = _unwrap(fn)
    code = getattr(target, "__code__", None)
    if not isinstance(code, CodeType):
        raise InvalidOptionError(
            f"code=[...]: {fn!r:.60} is not a Python function, so it has no code to fingerprint; "
            f"list the functions (def or lambda) the step calls"
        )
    return code


def _docstring_index(code: CodeType) -> int | None:
    """The index in co_consts of the code's docstring, if it has one."""
    if sys.version_info >= (3, 14):
        return 0 if code.co_flags & _CO_HAS_DOCSTRING else None
    if code.co_name.startswith("<") or not code.co_consts:
        return None  # lambdas, comprehensions and modules keep no docstring
    # Up to 3.13 a function's first constant is its docstring, or None when it has none.
    return 0 if isinstance(code.co_consts[0], str) else None


def _feed(h: Any, code: CodeType) -> None:
    skip = _docstring_index(code)
    h.update(canonical((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
                        code.co_flags & ~_CO_HAS_DOCSTRING, code.co_names, code.co_varnames,
                        code.co_freevars, code.co_cellvars)))
    h.update(code.co_code)
    h.update(code.co_exceptiontable)
    for index, const in enumerate(code.co_consts):
        if index == skip:
            h.update(b"docstring")
        elif isinstance(const, CodeType):
            h.update(b"code")
            _feed(h, const)
        else:
            h.update(canonical(const))


def _defaults(h: Any, fn: Any) -> None:
    """A function's default values (kept on the function, not in its code)."""
    target = _unwrap(fn)
    for defaults in (getattr(target, "__defaults__", None), getattr(target, "__kwdefaults__",
                                                                    None)):
        try:
            h.update(canonical(defaults))
        except StepKeyError:  # e.g. a default object: its type at least
            h.update(type(defaults).__qualname__.encode())


def fingerprint(fn: Callable[..., Any], helpers: Iterable[Any] = ()) -> str:
    """The code fingerprint of `fn` and `helpers`: 12 hex digits of SHA-256."""
    h = hashlib.sha256(b"doeff-code/1\n")
    _feed(h, code_of(fn))
    _defaults(h, fn)
    for helper in helpers:
        h.update(b"helper")
        _feed(h, code_of(helper))
        _defaults(h, helper)
    return h.hexdigest()[:FINGERPRINT_HEX]


__all__ = ["code_of", "fingerprint"]
