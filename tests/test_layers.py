"""The package's import graph: imports only go down the layers, and no module takes part in a cycle.

Every import statement of every module counts: top-level, inside functions (lazy) and under
`if TYPE_CHECKING:`. A module's implicit import of its parent package is not an edge (Python
initialises the parent first whatever the child imports), so a package `__init__` that only
re-exports is judged by what it imports itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import doeff

ROOT = Path(doeff.__file__).parent

# Layer name -> the layers its modules may import (its own included). Lowest first.
ALLOWED: dict[str, frozenset[str]] = {}


def _allow(layer: str, *below: str) -> None:
    ALLOWED[layer] = frozenset({layer, *below, *(x for b in below for x in ALLOWED[b])})


_allow("errors")
_allow("protocols")
_allow("serde", "errors")
_allow("storage", "errors", "protocols", "serde")
_allow("program", "errors")
_allow("effects", "program", "protocols")
_allow("machine", "effects", "protocols")
# Durable steps build on effects; their keys reduce user types to fields with serde's adapters.
_allow("steps", "effects", "serde")
_allow("observability", "machine")
_allow("runs", "observability", "storage")
_allow("runners", "runs", "observability", "storage", "steps")
_allow("shell", "runners")
# The dashboard serves what the shell's readers read (stores, run records, values under the
# trust policy); `doeff dashboard` reaches it through the command's entry point, above both.
_allow("dashboard", "shell")
_allow("facade", "shell", "dashboard")

# Module-name prefixes per layer; the longest matching prefix decides.
PREFIXES: dict[str, str] = {
    "doeff.errors": "errors",
    "doeff.protocols": "protocols",
    "doeff.serde": "serde",
    "doeff.storage": "storage",
    "doeff.program": "program",
    "doeff.outcome": "program",
    "doeff.effects": "effects",
    "doeff.steps": "steps",
    "doeff.cesk": "machine",
    "doeff.cesk_traceback": "machine",
    "doeff.observability": "observability",
    "doeff.runs": "runs",
    "doeff.runners": "runners",
    "doeff.cli": "shell",
    "doeff.dashboard": "dashboard",
    # The `doeff` command dispatches to the shell's commands and to the dashboard.
    "doeff.__main__": "facade",
    # Public paths that re-export names from more than one layer, above them all.
    "doeff": "facade",
    "doeff.cesk_observability": "facade",
}
# A package __init__ that serves names from a layer above its own, lazily (a plain import would
# be a cycle): it sits with the facades, while its submodules stay in their layer.
FACADE_PACKAGES = {"doeff.cesk"}


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def layer_of(module: str) -> str:
    """The layer `module` belongs to."""
    if module in FACADE_PACKAGES:
        return "facade"
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        layer = PREFIXES.get(".".join(parts[:n]))
        if layer is not None:
            return layer
    raise AssertionError(f"{module} is in no layer: add it to PREFIXES in {__file__}")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Imports(ast.NodeVisitor):
    """Collects (target, line, runs_at_import) for a module; the last is False for imports in a
    function body or under `if TYPE_CHECKING:`, which do not run while the module loads."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.found: list[tuple[str, int, bool]] = []
        self.deferred = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._deferred(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._deferred(node)

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            self._deferred(node)
        else:
            self.generic_visit(node)

    def _deferred(self, node: ast.AST) -> None:
        self.deferred += 1
        self.generic_visit(node)
        self.deferred -= 1

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in MODULES:
                self.found.append((alias.name, node.lineno, not self.deferred))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _resolve(self.module, node)
        if source not in MODULES:
            return
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            self.found.append((sub if sub in MODULES else source, node.lineno, not self.deferred))


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(doeff module imported, line, whether it runs at import time) for every import statement
    in `module`, lazy and TYPE_CHECKING ones included."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    visitor = _Imports(module)
    visitor.visit(tree)
    # importlib.import_module("doeff.x") is a lazy import too.
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module" and node.args
                and isinstance(node.args[0], ast.Constant) and node.args[0].value in MODULES):
            visitor.found.append((str(node.args[0].value), node.lineno, False))
    return visitor.found


GRAPH = {m: sorted({t for t, _, _ in imports_of(m) if t != m}) for m in MODULES}


def test_every_module_belongs_to_a_layer() -> None:
    """Each module of doeff is assigned to exactly one known layer."""
    for module in MODULES:
        assert layer_of(module) in ALLOWED


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down_the_layers(module: str) -> None:
    """No module imports (even lazily or for type checking) from a layer above its own."""
    mine = layer_of(module)
    upward = [
        f"line {line}: {target} ({layer_of(target)})"
        for target, line, _ in imports_of(module)
        if layer_of(target) not in ALLOWED[mine]
    ]
    assert not upward, f"{module} ({mine}) imports from above: {upward}"


@pytest.mark.parametrize("package", sorted(FACADE_PACKAGES))
def test_facade_packages_reach_up_only_lazily(package: str) -> None:
    """A package whose submodules the upper layers import may serve their names only lazily: an
    import of them while the package loads would work or fail depending on import order."""
    below = frozenset[str]().union(
        *(ALLOWED[layer_of(m)] for m in MODULES if m.startswith(package + "."))
    )
    eager = [f"line {line}: {target}" for target, line, now in imports_of(package)
             if now and layer_of(target) not in below]
    assert not eager, f"{package} imports from above while it loads: {eager}"


def test_no_import_cycles() -> None:
    """The import graph has no cycle (Tarjan's strongly connected components, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = GRAPH[node]
            if i < len(edges):
                work.append((node, i + 1))
                nxt = edges[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_lazy_and_type_checking_imports() -> None:
    """The walk finds imports inside functions and under TYPE_CHECKING, not only top-level ones."""
    # doeff.runners imports the storage presets inside default_storage(); doeff.storage imports
    # PostgresKV under TYPE_CHECKING and inside __getattr__.
    assert "doeff.storage.presets" in GRAPH["doeff.runners"]
    assert "doeff.storage.backends.postgres" in GRAPH["doeff.storage"]


def test_kv_backends_import_no_codec() -> None:
    """A KV backend works on bytes: no module of doeff.storage.backends imports doeff.serde."""
    for module in MODULES:
        if module.startswith("doeff.storage.backends"):
            assert not [t for t in GRAPH[module] if t.startswith("doeff.serde")], module


def test_only_durable_and_presets_join_storage_and_serde() -> None:
    """Bytes meet objects in Durable; the presets only compose a Durable with a codec."""
    joining = {m for m in MODULES if m.startswith("doeff.storage.")
               and any(t.startswith("doeff.serde") for t in GRAPH[m])}
    assert joining == {"doeff.storage.durable", "doeff.storage.presets"}


def test_machine_knows_no_storage_or_observability() -> None:
    """The machine's modules import nothing from storage, serde, observability or the runners."""
    for module in MODULES:
        if module.startswith("doeff.cesk.") or module == "doeff.cesk_traceback":
            bad = [t for t in GRAPH[module] if layer_of(t) in {"storage", "serde",
                                                                "observability", "runners"}]
            assert not bad, f"{module} imports {bad}"


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Each module can be the first doeff module imported: no import-order luck hides a cycle."""
    code = (
        "import importlib, sys\n"
        f"names = {sorted(m for m in MODULES if m != 'doeff.__main__')!r}\n"
        "bad = []\n"
        "for name in names:\n"
        "    for k in [k for k in sys.modules if k == 'doeff' or k.startswith('doeff.')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


PUBLIC_PATHS = [
    # The names doeff's first API promised, at the paths it promised them.
    ("doeff.effects.cache", "CacheGet CachePut CacheDelete CacheExists cacheget cacheput "
                            "cachedelete cacheexists cached"),
    ("doeff.storage", "DurableStorage Durable SQLiteKV LMDBKV InMemoryKV KVStore PostgresKV "
                      "SQLiteStorage InMemoryStorage"),
    ("doeff.storage.sqlite", "SQLiteStorage SQLiteKV"),
    ("doeff.storage.memory", "InMemoryStorage InMemoryKV"),
    ("doeff.storage.lmdb", "LMDBKV"),
    ("doeff.storage.postgres", "PostgresKV"),
    ("doeff.storage.durable", "Durable"),
    ("doeff.storage.base", "KVStore DurableStorage"),
    ("doeff.cesk_observability", "ExecutionSnapshot ExecutionMonitor KFrameSnapshot "
                                 "ExecutionStatus WorkflowExecution run_workflow attach_on_step"),
    ("doeff.cesk_traceback", "CodeLocation CapturedTraceback"),
    ("doeff.cesk", "run_sync run_async CESKResult Machine override ReturnFrame"),
    ("doeff.cesk.result", "CESKResult"),
    ("doeff.cesk.machine", "Machine"),
    ("doeff", "do run_sync run_async run_workflow CESKResult DoeffError Effect Err Ok "
              "KleisliProgram Program override"),
    ("doeff.effects", "perform await_ gather ask local get put modify tell listen catch "
                      "finally_ safe cached cacheget cacheput cachedelete cacheexists Effect"),
    ("doeff.effects.base", "Effect"),
    ("doeff.program", "do Program KleisliProgram"),
    ("doeff.outcome", "Ok Err"),
    ("doeff.serde", "MsgpackCodec JSONCodec PickleCodec CloudpickleCodec Codec seal unseal peek "
                    "TypeRegistry get_codec register_codec"),
    ("doeff.errors", "DoeffError EncodeError DecodeError StorageError CancelledError "
                     "CancellationError"),
    ("doeff.observability", "ExecutionSnapshot ExecutionMonitor KFrameSnapshot WorkflowExecution"),
    ("doeff.runners", "run_sync run_async run_workflow"),
]


@pytest.mark.parametrize(("module", "names"), PUBLIC_PATHS)
def test_public_import_paths_keep_working(module: str, names: str) -> None:
    """Every name the README, the docs and doeff's first API import is found at its path."""
    mod = __import__(module, fromlist=["_"])
    missing = [n for n in names.split() if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def test_old_and_new_paths_are_the_same_objects() -> None:
    """A re-export is the object itself, not a copy: isinstance checks agree across paths."""
    from doeff.cesk import run_sync as old_run
    from doeff.cesk_observability import ExecutionSnapshot as OldSnap
    from doeff.errors import CancellationError, CancelledError
    from doeff.observability import ExecutionSnapshot
    from doeff.runners import run_sync
    from doeff.storage.presets import SQLiteStorage
    from doeff.storage.sqlite import SQLiteStorage as OldStorage

    assert old_run is run_sync
    assert OldSnap is ExecutionSnapshot
    assert OldStorage is SQLiteStorage
    assert CancelledError is CancellationError


def test_serde_loads_no_optional_library() -> None:
    """`import doeff` and encoding/decoding ordinary values (registered dataclasses included)
    import none of numpy, pandas, pyarrow, pydantic or attrs: each loads only when a value of
    it is encoded or a record naming one is decoded."""
    code = (
        "import dataclasses, sys\n"
        "import doeff, doeff.serde\n"
        "from doeff.serde import JSONCodec, MsgpackCodec, seal, unseal\n"
        "@dataclasses.dataclass\n"
        "class P:\n"
        "    x: int\n"
        "for codec in (MsgpackCodec(types=[P]), JSONCodec(types=[P])):\n"
        "    unseal(seal({'p': P(1), 't': (1, {2})}, codec), codec)\n"
        "    try:\n"
        "        codec.encode(object())\n"
        "    except doeff.serde.EncodeError:\n"
        "        pass\n"
        "libs = ('numpy', 'pandas', 'pyarrow', 'pydantic', 'attrs', 'attr')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in libs))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
