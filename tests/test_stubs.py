"""The type stubs of the compiled modules match the bindings.

``python/promobandit/_core.pyi`` against the built ``promobandit._core``: the same public
names (functions, classes, module constants), the same methods and properties on each
class, and the same parameter names, order and defaults as the signatures pybind11 writes
into each docstring. ``_cuda.pyi`` against ``cpp/cuda/cuda_module.cpp`` (the module is
built only where a CUDA toolkit is found, so the check reads its ``m.def`` calls).
The last tests plant a drift and show the comparison catches it.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest

from promobandit import _backends

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "promobandit"

Params = list[tuple[str, object]]  # (name, default or NO_DEFAULT)
NO_DEFAULT = "<no default>"


def _core_module():
    core = _backends.core()
    if core is None:
        if os.environ.get("CI"):
            pytest.fail("promobandit._core is not built; CI checks its stub against it")
        pytest.skip("promobandit._core is not built here")
    return core


def _default(node: ast.expr | None) -> object:
    return NO_DEFAULT if node is None else ast.literal_eval(node)


def _stub_params(fn: ast.FunctionDef, method: bool) -> Params:
    args = fn.args.args[1:] if method else fn.args.args
    defaults: list[ast.expr | None] = [None] * (len(args) - len(fn.args.defaults))
    defaults += fn.args.defaults
    return [(a.arg, _default(d)) for a, d in zip(args, defaults, strict=True)]


def read_stub(path: Path) -> dict[str, object]:
    """name -> Params (function), dict of members (class: name -> Params or 'property'),
    or 'constant'."""
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = _stub_params(node, method=False)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = "constant"
        elif isinstance(node, ast.ClassDef):
            members: dict[str, object] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    is_prop = any(isinstance(d, ast.Name) and d.id == "property"
                                  for d in item.decorator_list)
                    members[item.name] = "property" if is_prop else _stub_params(item, True)
            out[node.name] = members
    return out


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def pybind_params(doc: str, name: str, method: bool) -> Params:
    """The parameters of pybind11's signature line ``name(a: T, b: T = 1) -> R``."""
    first = doc.strip().splitlines()[0]
    assert first.startswith(name + "("), first
    inner = first[len(name) + 1:first.rindex(") ->")]
    params: Params = []
    for part in _split_top(inner):
        head, _, default = part.partition(" = ")
        params.append((head.split(":")[0].strip(),
                       NO_DEFAULT if not default else ast.literal_eval(default.strip())))
    return params[1:] if method else params


def built_api(core) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in dir(core):
        if name.startswith("_") and name != "__version__":
            continue
        obj = getattr(core, name)
        if inspect.isclass(obj):
            members: dict[str, object] = {}
            for m in ["__init__", *(a for a in dir(obj) if not a.startswith("_"))]:
                attr = inspect.getattr_static(obj, m)
                members[m] = ("property" if isinstance(attr, property)
                              else pybind_params(getattr(obj, m).__doc__, m, method=True))
            out[name] = members
        elif callable(obj):
            out[name] = pybind_params(obj.__doc__, name, method=False)
        else:
            out[name] = "constant"
    return out


def compare(stub: dict[str, object], built: dict[str, object]) -> list[str]:
    problems = [f"{n}: in the module, not in the stub" for n in sorted(set(built) - set(stub))]
    problems += [f"{n}: in the stub, not in the module" for n in sorted(set(stub) - set(built))]
    for name in sorted(set(stub) & set(built)):
        s, b = stub[name], built[name]
        if isinstance(b, dict) and isinstance(s, dict):
            for m in sorted(set(s) | set(b)):
                if s.get(m) != b.get(m):
                    problems.append(f"{name}.{m}: stub {s.get(m)!r} != module {b.get(m)!r}")
        elif s != b:
            problems.append(f"{name}: stub {s!r} != module {b!r}")
    return problems


def test_core_stub_matches_the_built_module() -> None:
    core = _core_module()
    stub = read_stub(PACKAGE / "_core.pyi")
    built = built_api(core)
    assert compare(stub, built) == []
    # What the package itself uses is there (not only what happens to be in both).
    assert {"MabKernel", "LinKernel", "topk_softmax", "POLICY_KINDS", "COUNTER_SLOTS",
            "topk_isa", "rng_beta"} <= set(stub)


def cuda_bindings(source: str) -> dict[str, object]:
    """name -> Params of each ``m.def`` and 'constant' for each ``m.attr`` in the source."""
    body = source[source.index("PYBIND11_MODULE(_cuda"):]
    out: dict[str, object] = {}
    for call in re.split(r"\bm\.", body)[1:]:
        found = re.match(r'(def|attr)\("(\w+)"', call)
        if found is None:  # m.doc()
            continue
        kind, name = found.groups()
        if kind == "attr":
            out[name] = "constant"
            continue
        params: Params = []
        for arg, default in re.findall(r'py::arg\("(\w+)"\)(\s*=\s*[^,)]+)?', call):
            params.append((arg, NO_DEFAULT if not default
                           else ast.literal_eval(default.split("=", 1)[1].strip())))
        out[name] = params
    return out


def test_cuda_stub_matches_the_bindings() -> None:
    built = cuda_bindings((ROOT / "cpp" / "cuda" / "cuda_module.cpp").read_text())
    assert {"device_count", "workspace_bytes", "topk_softmax", "max_k"} <= set(built)
    assert compare(read_stub(PACKAGE / "_cuda.pyi"), built) == []


def test_cuda_stub_matches_the_built_module_where_built() -> None:
    try:
        import promobandit._cuda as cuda
    except ImportError:
        pytest.skip("promobandit._cuda is not built here (no CUDA toolkit, or a CPU wheel)")
    assert compare(read_stub(PACKAGE / "_cuda.pyi"), built_api(cuda)) == []


def test_a_drift_is_caught(tmp_path: Path) -> None:
    core = _core_module()
    text = (PACKAGE / "_core.pyi").read_text()
    drifted = text.replace("def topk_isa() -> str: ...\n", "")
    drifted = drifted.replace("temperature: float = 1.0,", "temperature: float = 2.0,")
    drifted = drifted.replace("def refresh_all(self) -> None: ...",
                              "def refresh_all(self, now: int) -> None: ...")
    drifted += "\nNOT_BOUND: int\n"
    (tmp_path / "drift.pyi").write_text(drifted)
    problems = compare(read_stub(tmp_path / "drift.pyi"), built_api(core))
    assert any(p.startswith("topk_isa: in the module") for p in problems), problems
    assert any(p.startswith("NOT_BOUND: in the stub") for p in problems), problems
    assert any(p.startswith("topk_softmax: stub") and "2.0" in p for p in problems), problems
    assert any(p.startswith("LinKernel.refresh_all") for p in problems), problems


def test_the_stubs_ship_with_the_package() -> None:
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "_core.pyi").exists() and (PACKAGE / "_cuda.pyi").exists()
