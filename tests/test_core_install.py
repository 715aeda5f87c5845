"""A core-only install (``pip install promobandit``: NumPy and Numba, no extra) imports the
package, runs the policies and the engine, and every command that needs an extra exits 2
with one line naming it.

Each test runs a fresh interpreter in which a meta-path finder hides every optional
dependency (pandas, scipy, scikit-learn, matplotlib, pyarrow, torch, tqdm, FastAPI,
uvicorn, orjson, prometheus-client), as if they had never been installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import promobandit
from promobandit._extras import EXTRAS
from promobandit._toml import load_toml

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = sorted({m for mods in EXTRAS.values() for m in mods})

DRIVER = textwrap.dedent('''
    import importlib.abc
    import runpy
    import sys

    HIDDEN = frozenset({hidden!r})


    class HideOptional(importlib.abc.MetaPathFinder):
        """Every optional dependency is missing, as after `pip install promobandit`."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None


    for loaded in [m for m in sys.modules if m.split(".")[0] in HIDDEN]:
        del sys.modules[loaded]
    sys.meta_path.insert(0, HideOptional())
    mode, arg = sys.argv[1], sys.argv[2]
    sys.argv = [arg, *sys.argv[3:]]
    if mode == "-m":
        runpy.run_module(arg, run_name="__main__", alter_sys=True)
    else:
        exec(compile(arg, "<core-install>", "exec"), {{"__name__": "__main__"}})
''')


def run_core(tmp_path: Path, mode: str, arg: str, *args: str,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    driver = tmp_path / "core_only.py"
    driver.write_text(DRIVER.format(hidden=HIDDEN))
    package_parent = str(Path(promobandit.__file__).resolve().parents[1])
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_parent, environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, str(driver), mode, arg, *args], cwd=tmp_path,
                          env=environ, capture_output=True, text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess[str], extra: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f'pip install "promobandit[{extra}]"' in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


CORE_RUN = '''
import sys
import numpy as np
import promobandit
from promobandit import (BetaTS, Basket, BudgetConfig, Engine, EngineConfig, FairnessConfig,
                         FeatureStore, LinTS, UserCapsConfig, default_catalogue, make_policy,
                         topk_softmax)

policy = BetaTS(n_arms=3, seed=1)
arm, prop = policy.select()
policy.update(arm, reward=1.0)
linear = LinTS(n_arms=3, n_features=4, seed=1)
x = np.linspace(0.0, 1.0, 4)
arm, prop = linear.select(x)
linear.update(arm, reward=2.0, context=x)
top = topk_softmax(np.eye(5, 3, dtype=np.float32), np.ones(3, dtype=np.float32), 2)

catalogue = default_catalogue()
store = FeatureStore()
engine = Engine(catalogue, make_policy("LinTS", len(catalogue), store.config.dim, seed=1),
                EngineConfig(budget=BudgetConfig(amount=1000.0),
                             fairness=FairnessConfig(max_gap=0.1), caps=UserCapsConfig()),
                privacy_key=b"core-install-key-0123456789", features=store)
d = engine.decide("user-1", basket=Basket.from_lines([(42, 3, 60.0, 30.0, 1)]), group="new",
                  now=1_700_000_000.0)
engine.feedback(d.id, "event-1", purchased=True, now=1_700_000_100.0)
loaded = sorted({m.split(".")[0] for m in sys.modules} & HIDDEN_NAMES)
print("ok", promobandit.__version__, int(d.offer), len(top.ids), loaded)
'''


def test_core_runs_policies_scoring_and_the_engine(tmp_path: Path) -> None:
    code = f"HIDDEN_NAMES = {set(HIDDEN)!r}\n" + CORE_RUN
    proc = run_core(tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["ok", promobandit.__version__]
    assert proc.stdout.strip().endswith("2 []"), proc.stdout  # no optional module loaded


def test_import_loads_no_heavy_module(tmp_path: Path) -> None:
    proc = run_core(tmp_path, "-c", "import sys, promobandit\n"
                    "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                    "('numba', 'llvmlite', 'pandas', 'pyarrow', 'scipy', 'matplotlib', "
                    "'torch', 'sklearn')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_simulate_without_the_extra_names_it(tmp_path: Path) -> None:
    proc = run_core(tmp_path, "-m", "promobandit", "simulate", "--quick", "--out",
                    str(tmp_path / "report"))
    line = one_error_line(proc, "simulate")
    assert line.startswith("promobandit: error: promobandit simulate needs ")
    assert not (tmp_path / "report").exists()  # it failed before writing anything


def test_evaluate_and_abtest_without_the_extra_name_it(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"policy": "uniform"}')
    one_error_line(run_core(tmp_path, "-m", "promobandit", "evaluate", "--log", "log",
                            "--policy", "p.json"), "evaluate")
    one_error_line(run_core(tmp_path, "-m", "promobandit", "abtest", "--log", "x.csv"),
                   "evaluate")


def test_serve_checks_its_config_without_the_extra_and_names_it_to_serve(
        tmp_path: Path) -> None:
    env = {"PROMOBANDIT_PRIVACY_KEY": "core-install-key-0123456789"}
    check = run_core(tmp_path, "-m", "promobandit", "serve", "--memory", "--check", env=env)
    assert check.returncode == 0, check.stderr
    one_error_line(run_core(tmp_path, "-m", "promobandit", "serve", "--memory", env=env),
                   "service")


def test_version_and_help_without_extras(tmp_path: Path) -> None:
    version = run_core(tmp_path, "-m", "promobandit", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"promobandit {promobandit.__version__}"
    assert run_core(tmp_path, "-m", "promobandit", "simulate", "--help").returncode == 0


def test_the_recommender_names_the_torch_extra(tmp_path: Path) -> None:
    proc = run_core(tmp_path, "-c", textwrap.dedent('''
        import promobandit.recommender as rec
        rec.PopularityRecommender  # NumPy only: there without torch
        try:
            rec.TwoTowerModel
        except ImportError as exc:
            print(type(exc).__name__, exc)
    '''))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MissingExtraError the two-tower recommender needs torch")
    assert 'pip install "promobandit[torch]"' in proc.stdout


# Distribution names in pyproject.toml -> the module each brings.
MODULE_OF = {"scikit-learn": "sklearn", "prometheus-client": "prometheus_client"}


def _extra_modules(extras: dict[str, list[str]], name: str) -> set[str]:
    out: set[str] = set()
    for req in extras[name]:
        m = re.match(r"([A-Za-z0-9_.-]+)(\[([^\]]+)\])?", req)
        assert m is not None, req
        dist, inner = m.group(1), m.group(3)
        if dist == "promobandit":
            for sub in (inner or "").split(","):
                out |= _extra_modules(extras, sub.strip())
        else:
            out.add(MODULE_OF.get(dist, dist))
    return out


def test_the_extras_match_pyproject() -> None:
    project = load_toml(ROOT / "pyproject.toml", "pyproject.toml")["project"]
    extras = project["optional-dependencies"]
    for name, modules in EXTRAS.items():
        assert _extra_modules(extras, name) == set(modules), name
    assert _extra_modules(extras, "all") == set(HIDDEN)
    core = {re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in project["dependencies"]}
    assert core == {"numpy", "numba", "tomli"}


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_require_extra_passes_where_installed(extra: str) -> None:
    from promobandit._extras import require_extra

    require_extra(extra, "this test")  # the test environment installs every extra


def test_simulate_names_a_bad_config_before_the_missing_extra(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("seed = \n")
    proc = run_core(tmp_path, "-m", "promobandit", "simulate", "--config", "bad.toml")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("promobandit simulate: --config: bad.toml is not "
                                          "valid TOML"), proc.stderr
