"""Code fingerprints (`@step(code=True)`): editing what a step does changes its key; comments,
formatting, line numbers and docstrings do not."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from doeff import run_sync, step
from doeff.errors import InvalidOptionError
from doeff.steps import fingerprint
from doeff.steps.explain import parse_key
from doeff.storage import InMemoryStorage

BASE = '''
def total(rows, scale=2):
    """Sum the rows."""
    def weight(r):
        return r * scale
    return sum(weight(r) for r in rows)
'''


def define(source: str, name: str = "total") -> Any:
    """The function `name` defined by `source` (in a module of its own, as a file would)."""
    namespace: dict[str, Any] = {"__name__": "pipeline"}
    exec(compile(textwrap.dedent(source), "pipeline.py", "exec"), namespace)
    return namespace[name]


def fp(source: str) -> str:
    return fingerprint(define(source))


def test_same_code_same_fingerprint() -> None:
    """The same source compiled twice has one fingerprint."""
    assert fp(BASE) == fp(BASE)


@pytest.mark.parametrize("variant", [
    BASE.replace('"""Sum the rows."""', '"""Add up every row (reworded)."""'),
    BASE.replace("    return sum(", "    # a comment\n\n    return sum("),
    "\n\n\n" + BASE,  # moved down the file
    BASE.replace("return r * scale", "return (r  *  scale)"),
], ids=["docstring", "comment-and-blank-line", "line-numbers", "spacing"])
def test_edits_that_change_no_behaviour_keep_the_fingerprint(variant: str) -> None:
    """Docstrings, comments, blank lines, line numbers and spacing are not part of it."""
    assert fp(variant) == fp(BASE)


@pytest.mark.parametrize("variant", [
    BASE.replace("sum(", "max("),
    BASE.replace("scale=2", "scale=3"),
    BASE.replace("return r * scale", "return r * scale + 1"),  # inside the nested function
    BASE.replace("for r in rows", "for r in rows if r"),  # inside the generator expression
    BASE.replace("def total(rows, scale=2)", "def total(rows, factor=2)").replace(
        "r * scale", "r * factor"),
], ids=["called-function", "default", "nested-function", "comprehension", "renamed-argument"])
def test_edits_that_change_behaviour_change_the_fingerprint(variant: str) -> None:
    """Calls, constants, defaults, nested functions and comprehensions are all part of it."""
    assert fp(variant) != fp(BASE)


def test_listed_helpers_count_and_unlisted_ones_do_not() -> None:
    """code=[helper] folds the helper's code in; without it a helper's edit goes unseen."""
    src = "def helper(x):\n    return x + 1\n\ndef main(x):\n    return helper(x)\n"
    edited = src.replace("x + 1", "x + 2")
    main, helper = define(src, "main"), define(src, "helper")
    main2, helper2 = define(edited, "main"), define(edited, "helper")
    assert fingerprint(main) == fingerprint(main2)
    assert fingerprint(main, [helper]) != fingerprint(main2, [helper2])


def test_code_true_puts_the_fingerprint_in_the_key_and_recomputes_after_an_edit() -> None:
    """With code=True a stored result of the old code is not replayed after the code changes:
    the edited step computes again under a new key."""
    storage = InMemoryStorage()
    old = step(code=True, name="total")(define(BASE))
    new = step(code=True, name="total")(define(BASE.replace("sum(", "max(")))
    assert run_sync(old([1, 2]), storage=storage).value == 6
    assert run_sync(new([1, 2]), storage=storage).value == 4
    old_key, new_key = parse_key(old.key([1, 2])), parse_key(new.key([1, 2]))
    assert old_key is not None and new_key is not None
    assert old_key.code and new_key.code and old_key.code != new_key.code
    assert old_key.digest == new_key.digest  # same arguments
    assert len(storage.keys()) == 2


def test_without_code_true_an_edit_replays_the_old_result() -> None:
    """Without code=True (the default) the key ignores the code: bump version= instead."""
    storage = InMemoryStorage()
    old = step(name="total")(define(BASE))
    new = step(name="total")(define(BASE.replace("sum(", "max(")))
    assert run_sync(old([1, 2]), storage=storage).value == 6
    assert run_sync(new([1, 2]), storage=storage).value == 6


def test_only_functions_can_be_fingerprinted() -> None:
    """code=[...] with something that is not a Python function is refused by name."""
    with pytest.raises(InvalidOptionError, match="not a Python function"):
        fingerprint(define(BASE), [len])
    with pytest.raises(InvalidOptionError, match="code="):
        step(code="yes")(define(BASE))  # type: ignore[arg-type]
