"""The house rules on imports (LAYOUT.md, DESIGN.md), read from the source with ast:

- an import never runs up the layers (LAYERS below, lowest first), and two packages of one
  layer do not import each other;
- no two modules import each other (module-level or inside a function: a lazy import is
  still a dependency), and the packages form no cycle at all;
- torch is imported only in recommender/ (and by scoring's interop with tensors the caller
  already made);
- an optional dependency (promobandit._extras.EXTRAS) is imported through
  ``_extras.require``, so that its absence names the extra, except where noted in
  ``OPTIONAL_IMPORTS_ALLOWED``.

Imports under ``if TYPE_CHECKING:`` are not dependencies and are skipped. The last tests
plant an upward import, a cycle and a raw optional import, to show the checks can fail.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from promobandit._extras import EXTRAS

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "promobandit"

# The layers, lowest first: a module may import its own unit (its top-level module or
# package) and the units of lower layers. The package's own __init__ is the face: the
# product in one import, so it sits on top and may import anything.
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(names) for names in (
    ("_backends", "_validation", "_reference", "_toml", "_extras", "_version", "_core",
     "_cuda", "_ziggurat_tables", "_phi_table", "_intcodes", "rng", "events", "_numba"),
    ("policies", "scoring"),
    ("constraints",),
    ("offers",),
    ("features",),
    ("engine",),
    ("recommender",),
    ("evaluate",),
    ("datasets", "simulate"),
    ("service", "cli", "compat", "__main__"),
    ("__init__",),
))

# Layers whose units may import one another (still without a cycle): the base is a set
# of small modules that build on each other (rng on _validation and _numba), and the
# surface's entry points call one another (__main__ runs cli). In every other layer the
# units are independent: policies and scoring, datasets and simulate.
OPEN_LAYERS = frozenset({0, len(LAYERS) - 2})

# Modules that import torch: the recommender, and scoring's interop (torch is already
# imported by whoever made the tensor it is given).
TORCH_ALLOWED = ("recommender", "scoring")

# Raw imports of optional modules that are allowed, with why. Everything else goes
# through _extras.require (or sits in a try/except ImportError as an optional speed-up).
OPTIONAL_IMPORTS_ALLOWED: dict[str, str] = {
    "recommender.two_tower": "loaded only through recommender.__getattr__, which requires "
                             "the torch extra first",
    "scoring": "torch interop: the caller's tensor means torch is imported already",
    "service.app": "loaded only by promobandit serve after require_extra('service')",
    "service.metrics": "loaded only by promobandit serve after require_extra('service')",
    "service.runtime": "loaded only by promobandit serve after require_extra('service')",
    "service.schemas": "loaded only by promobandit serve after require_extra('service')",
    "service.loadgen": "the load generator of the service's benchmark (service extra)",
    "service.cluster": "loaded only in cluster mode, after require_extra('cluster')",
    "service.redis_state": "loaded only by service.cluster (cluster extra)",
}

OPTIONAL_MODULES = frozenset(m for mods in EXTRAS.values() for m in mods)


@dataclasses.dataclass(frozen=True)
class Import:
    """One dependency: ``source`` (a module, dotted under promobandit, '' for the package
    __init__) imports ``target`` at ``line``; ``lazy`` when inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool, bool]]:
    """(node, inside a function, inside a try that catches ImportError), skipping
    ``if TYPE_CHECKING:`` bodies."""

    def catches_import_error(t: ast.Try) -> bool:
        for h in t.handlers:
            names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
            if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
                   for n in names):
                return True
        return False

    def visit(node: ast.AST, lazy: bool, guarded: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for c in child.orelse:
                    yield from visit_one(c, lazy, guarded)
                continue
            yield from visit_one(child, lazy, guarded)

    def visit_one(child: ast.AST, lazy: bool, guarded: bool
                  ) -> Iterator[tuple[ast.AST, bool, bool]]:
        yield child, lazy, guarded
        inner_lazy = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda))
        if isinstance(child, ast.Try) and catches_import_error(child):
            for c in child.body:
                yield from visit_one(c, inner_lazy, True)
            for part in (child.handlers, child.orelse, child.finalbody):
                for c in part:
                    yield from visit_one(c, inner_lazy, guarded)
            return
        yield from visit(child, inner_lazy, guarded)

    yield from visit(tree, False, False)


class Source:
    """The package's modules and their imports, read from a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
        self.packages = {name for name, p in self.files.items() if p.name == "__init__.py"}
        # Compiled modules have no .py but are modules all the same.
        self.modules = set(self.files) | {"_core", "_cuda"}
        self.imports: list[Import] = []
        self.optional: list[tuple[str, str, int]] = []  # raw imports of optional modules
        for name, path in self.files.items():
            self._read(name, path)

    def _package_of(self, name: str) -> str:
        if name in self.packages:
            return name
        return name.rpartition(".")[0]

    def _resolve(self, source: str, module: str | None, level: int) -> str:
        if level == 0:
            assert module is not None
            return module[len("promobandit."):] if module != "promobandit" else ""
        base = self._package_of(source).split(".") if self._package_of(source) else []
        if level > 1:
            base = base[:len(base) - (level - 1)]
        return ".".join([*base, *(module.split(".") if module else [])])

    def _owned(self, target: str) -> str:
        """The module a dotted name refers to: itself, or its nearest parent module."""
        while target and target not in self.modules:
            target = target.rpartition(".")[0]
        return target

    def _read(self, name: str, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy, guarded in _walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top == "promobandit":
                        targets.append(self._resolve(name, alias.name, 0))
                    elif top in OPTIONAL_MODULES and not guarded:
                        self.optional.append((name, alias.name, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 0 and mod.split(".")[0] != "promobandit":
                    if mod.split(".")[0] in OPTIONAL_MODULES and not guarded:
                        self.optional.append((name, mod, node.lineno))
                    continue
                base = self._resolve(name, node.module, node.level)
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    targets.append(sub if sub in self.modules else base)
            for t in targets:
                target = self._owned(t)
                if target != name:
                    self.imports.append(Import(name, target, node.lineno, lazy))


def unit(module: str) -> str:
    """The top-level module or package a module belongs to ('__init__' for the face)."""
    return module.split(".")[0] if module else "__init__"


def layer(module: str) -> int:
    u = unit(module)
    for i, names in enumerate(LAYERS):
        if u in names:
            return i
    raise AssertionError(f"{u!r} is in no layer: add it to LAYERS in tests/test_layers.py "
                         "(and to LAYOUT.md)")


def upward_imports(imports: Iterable[Import]) -> list[str]:
    bad: dict[str, None] = {}
    for imp in imports:
        su, tu = unit(imp.source), unit(imp.target)
        if su == tu:
            continue
        ls, lt = layer(imp.source), layer(imp.target)
        if lt > ls or (lt == ls and ls not in OPEN_LAYERS):
            bad[f"{imp.source or '__init__'}:{imp.line} imports {imp.target} "
                f"({su}, layer {ls} -> {tu}, layer {lt})"] = None
    return list(bad)


def mutual_imports(imports: Iterable[Import]) -> list[str]:
    edges: dict[tuple[str, str], Import] = {}
    for imp in imports:
        edges.setdefault((imp.source, imp.target), imp)
    bad = []
    for (a, b), imp in sorted(edges.items()):
        if a < b and (b, a) in edges:
            back = edges[(b, a)]
            bad.append(f"{a or '__init__'}:{imp.line} and {b or '__init__'}:{back.line} "
                       "import each other")
    return bad


def package_cycles(imports: Iterable[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        su, tu = unit(imp.source), unit(imp.target)
        if su != tu and su != "__init__":
            graph.setdefault(su, set()).add(tu)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                cycles.append([*path[path.index(v):], v])
            elif v not in state:
                visit(v)
        path.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)
    return cycles


def raw_optional_imports(src: Source) -> list[str]:
    return [f"{mod}:{line} imports {what} directly: use _extras.require (or add it to "
            "OPTIONAL_IMPORTS_ALLOWED with why)" for mod, what, line in src.optional
            if mod not in OPTIONAL_IMPORTS_ALLOWED]


def torch_imports(src: Source) -> list[str]:
    out = []
    for name, path in src.files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, _, _ in _walk(tree):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "require" and node.args
                  and isinstance(node.args[0], ast.Constant)):
                mods = [str(node.args[0].value)]
            if any(m.split(".")[0] == "torch" for m in mods) and unit(name) not in TORCH_ALLOWED:
                out.append(f"{name}:{node.lineno} imports torch")
    return out


@pytest.fixture(scope="module")
def source() -> Source:
    return Source(PACKAGE)


def test_every_module_is_in_a_layer(source: Source) -> None:
    for name in source.files:
        layer(name)


def test_no_import_runs_up_the_layers(source: Source) -> None:
    assert upward_imports(source.imports) == []


def test_no_two_modules_import_each_other(source: Source) -> None:
    assert mutual_imports(source.imports) == []


def test_the_packages_form_no_cycle(source: Source) -> None:
    assert package_cycles(source.imports) == []


def test_torch_only_in_the_recommender(source: Source) -> None:
    assert torch_imports(source) == []


def test_optional_dependencies_go_through_require(source: Source) -> None:
    assert raw_optional_imports(source) == []
    stale = set(OPTIONAL_IMPORTS_ALLOWED) - {m for m, _, _ in source.optional}
    assert not stale, f"OPTIONAL_IMPORTS_ALLOWED names modules with no raw import: {stale}"


def test_the_reader_sees_lazy_relative_and_type_checking_imports(source: Source) -> None:
    edges = {(i.source, i.target): i for i in source.imports}
    # A relative import inside a function is a (lazy) dependency.
    assert edges[("simulate.pipeline", "recommender")].lazy
    # `from . import x` names the submodule x.
    assert ("simulate.run", "simulate._kernels") in edges
    # Under `if TYPE_CHECKING:` an import is no dependency.
    assert ("simulate.report", "simulate.pipeline") not in edges


# The checks must be able to fail: a planted package with each fault.

def _plant(tmp_path: Path, files: dict[str, str]) -> Source:
    root = tmp_path / "promobandit"
    for rel, text in {"__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return Source(root)


def test_an_upward_import_fails(tmp_path: Path) -> None:
    src = _plant(tmp_path, {
        "policies/__init__.py": "",
        "policies/base.py": "def f():\n    from ..engine import Engine\n",
        "engine/__init__.py": "from .engine import Engine\n",
        "engine/engine.py": "from ..policies.base import f\nclass Engine: ...\n",
        "evaluate/__init__.py": "from ..simulate import run\n",
        "simulate/__init__.py": "", "simulate/run.py": "",
    })
    bad = upward_imports(src.imports)
    assert any(b.startswith("policies.base:2 imports engine") for b in bad), bad
    assert any(b.startswith("evaluate:1 imports simulate.run") for b in bad), bad
    assert not any(b.startswith("engine.engine") for b in bad), bad  # downward: fine


def test_a_same_layer_import_fails(tmp_path: Path) -> None:
    src = _plant(tmp_path, {"simulate/__init__.py": "from ..datasets import load\n",
                            "datasets/__init__.py": "def load(): ...\n"})
    assert upward_imports(src.imports) == [
        "simulate:1 imports datasets (simulate, layer 8 -> datasets, layer 8)"]


def test_a_cycle_fails(tmp_path: Path) -> None:
    src = _plant(tmp_path, {
        "recommender/__init__.py": "",
        "recommender/two_tower.py": "from .metrics import recall\n",
        "recommender/metrics.py": "def recall():\n    from . import two_tower\n",
        "offers/__init__.py": "from ..features import x\n",
        "features/__init__.py": "def g():\n    from ..offers import y\n",
    })
    assert mutual_imports(src.imports) == [
        "features:2 and offers:1 import each other",
        "recommender.metrics:2 and recommender.two_tower:1 import each other"]
    assert package_cycles(src.imports) == [["features", "offers", "features"]]


def test_a_raw_optional_import_fails(tmp_path: Path) -> None:
    src = _plant(tmp_path, {
        "evaluate/__init__.py": "def f():\n    import pandas as pd\n",
        "features/__init__.py": "try:\n    import pandas\nexcept ImportError:\n    pandas = None\n",
        "engine/__init__.py": "import torch\n",
    })
    how = "directly: use _extras.require (or add it to OPTIONAL_IMPORTS_ALLOWED with why)"
    assert sorted(raw_optional_imports(src)) == [f"engine:1 imports torch {how}",
                                                 f"evaluate:2 imports pandas {how}"]
    assert torch_imports(src) == ["engine:1 imports torch"]
