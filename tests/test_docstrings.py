"""The `>>>` examples in doeff's docstrings run and print what they show.

Each module's examples run with doctest in a fresh temporary directory (examples may create
files such as wf.db), seeing the module's own names (as doctest does) and those a reader has after
`from doeff import *` and `from doeff.effects import *`.
"""

from __future__ import annotations

import doctest
import importlib
import os
from pathlib import Path
from typing import Any

import pytest

import doeff
import doeff.effects

ROOT = Path(doeff.__file__).parent
MODULES = sorted(
    ".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in ROOT.rglob("*.py")
    if ">>>" in p.read_text()
)


def preamble() -> dict[str, Any]:
    """The names every docstring example may use without importing them."""
    names: dict[str, Any] = {}
    for module in (doeff, doeff.effects):
        names.update({n: getattr(module, n) for n in module.__all__})
    return names


def test_some_modules_have_examples() -> None:
    """The collection finds the modules with examples (so the test below checks something)."""
    assert "doeff.program" in MODULES and "doeff.storage.durable" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every example in the module's docstrings prints exactly what it shows."""
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, globs={**vars(module), **preamble()}) if t.examples]
    assert tests, f"{name} has '>>>' in its source but no example was found"
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {name}"
    assert not [f for f in os.listdir(tmp_path) if f.startswith("..")]
