"""The built wheel, as a user gets it: installs without a compiler and runs.

CI builds the sdist, a wheel from that sdist (in a fresh temporary folder), repairs it with
auditwheel and points ``PROMOBANDIT_WHEEL`` (and ``PROMOBANDIT_SDIST``) at them (.ci/run).
Where the variables are unset these tests skip, except under CI (``CI`` set), where a
missing wheel is a failure.

- the wheel carries LICENSE, py.typed and the stubs, the C++ core and no CUDA module
  (published wheels are CPU-only: PROMOBANDIT_DISABLE_CUDA=ON), under a manylinux tag;
- the sdist carries what a build needs and no build output, and builds in a fresh folder;
- a fresh virtual environment installs the wheel (core only: NumPy and Numba from PyPI or
  pip's cache) with CC/CXX pointing at a missing program and no compiler or CMake on the
  PATH, pip builds nothing (every installed distribution came as a wheel), and a policy,
  the engine and the scorer run there from the installed package;
- one wheel runs on any x86-64: the compiled core, run under QEMU as a CPU without AVX2
  (the portable paths) and as one without AVX-512 (the AVX2 paths), gives bit-identical
  results to the native run (AVX-512 where the machine has it).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from promobandit._toml import load_toml

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = ("gcc", "g++", "cc", "c++", "clang", "clang++", "cmake", "nvcc", "ninja")


def _artifact(var: str, what: str) -> Path:
    value = os.environ.get(var)
    if not value:
        if os.environ.get("CI"):
            pytest.fail(f"{var} is not set: CI must build the {what} and point {var} at it")
        pytest.skip(f"{var} is not set (build the {what} as .ci/run does to run this test)")
    path = Path(value)
    assert path.is_file(), f"{var}={value} is not a file"
    return path


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _artifact("PROMOBANDIT_WHEEL", "wheel")


@pytest.fixture(scope="module")
def sdist() -> Path:
    return _artifact("PROMOBANDIT_SDIST", "sdist")


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    license_text = zipfile.ZipFile(wheel).read(f"{dist_info}/licenses/LICENSE").decode()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    for stub in ("py.typed", "_core.pyi", "_cuda.pyi"):
        assert f"promobandit/{stub}" in names, stub
    assert [n for n in names if re.fullmatch(r"promobandit/_core\..*(\.so|\.pyd)", n)]
    assert not [n for n in names if n.startswith("promobandit/_cuda.") and
                not n.endswith(".pyi")], "published wheels are CPU-only"
    if sys.platform.startswith("linux"):
        assert re.search(r"-manylinux_\d+_\d+_\w+\.whl$", wheel.name), wheel.name


def test_sdist_has_what_a_build_needs_and_no_build_output(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        rel = {n.split("/", 1)[1] for n in names if "/" in n}
        member = tar.extractfile(f"{top}/pyproject.toml")
        assert member is not None
        (tmp_path / "pyproject.toml").write_bytes(member.read())
    pyproject = load_toml(tmp_path / "pyproject.toml", "sdist pyproject.toml")
    for needed in ("pyproject.toml", "CMakeLists.txt", "LICENSE", "README.md",
                   "cpp/include/promobandit/topk.hpp", "cpp/bindings/module.cpp",
                   "cpp/cuda/CMakeLists.txt", "python/promobandit/__init__.py",
                   "python/promobandit/_core.pyi", "python/promobandit/py.typed"):
        assert needed in rel, needed
    stray = [n for n in rel if n.startswith(("build/", "dist/", ".venv", "bench/", ".ci/"))
             or n.endswith((".so", ".pyd", "CMakeCache.txt")) or "__pycache__" in n]
    assert stray == []
    # A release build configures CMake in a fresh folder: only the editable install has a
    # fixed build folder (where a stale cache could otherwise leak into a release).
    skb = pyproject["tool"]["scikit-build"]
    assert "build-dir" not in skb
    for override in skb.get("overrides", []):
        if "build-dir" in override:
            assert override["if"] == {"state": "editable"}, override


def _no_compiler_env(bin_dir: Path, home: Path) -> dict[str, str]:
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
            "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "XDG_CACHE_HOME", "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE", "NUMBA_CACHE_DIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("HOME", str(home))
    missing = str(home / "no-such-compiler")
    env.update(PATH=str(bin_dir), CC=missing, CXX=missing, CUDACXX=missing, CMAKE=missing,
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A fresh venv with the wheel installed, no compiler reachable; (python, env)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if f"-{tag}-" not in wheel.name:
        pytest.fail(f"{wheel.name} is not for this interpreter ({tag})")
    root = tmp_path_factory.mktemp("wheel-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    env = _no_compiler_env(bin_dir, root)
    reachable = {c: shutil.which(c, path=env["PATH"]) for c in COMPILERS}
    assert not any(reachable.values()), reachable
    report = root / "pip-report.json"
    proc = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--report", str(report), str(wheel)],
        env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # pip built nothing: no wheel was built, and every distribution came as a wheel.
    assert "Building wheel" not in proc.stdout + proc.stderr, proc.stdout
    items = json.loads(report.read_text())["install"]
    urls = {i["metadata"]["name"]: i["download_info"]["url"] for i in items}
    assert {"promobandit", "numpy", "numba"} <= set(urls), urls
    assert all(u.endswith(".whl") for u in urls.values()), urls
    assert urls["promobandit"].endswith(wheel.name), urls
    # Core only: no optional dependency came with it.
    assert not {"pandas", "pyarrow", "torch", "fastapi", "scipy"} & set(urls), urls
    return bin_dir / "python", env


RUN_IN_VENV = textwrap.dedent("""
    import sys
    from pathlib import Path

    import numpy as np
    import promobandit
    from promobandit import (Basket, BetaTS, Engine, EngineConfig, available_backends,
                             default_catalogue, make_policy, topk_softmax)

    where = Path(promobandit.__file__).resolve()
    assert "site-packages" in where.parts, where
    assert "cpp" in available_backends(), available_backends()

    # A policy: Thompson sampling finds the paying arm.
    p = BetaTS(n_arms=3, seed=5)
    rng = np.random.default_rng(5)
    for _ in range(300):
        arm, prop = p.select()
        assert 0.0 < prop <= 1.0
        p.update(arm, float(rng.random() < (0.05, 0.6, 0.1)[arm]))
    assert int(np.argmax(p.expectations())) == 1, p.expectations()

    # The engine: a decision, then the purchase that finalises it.
    cat = default_catalogue()
    eng = Engine(cat, make_policy("BetaTS", len(cat), seed=1), EngineConfig(),
                 privacy_key=b"wheel install check key")
    d = eng.decide("u1", basket=Basket.from_lines([(1, 2, 60.0, 30.0, 1)]))
    assert 0 <= d.offer < len(cat) and 0.0 < d.propensity <= 1.0
    r = eng.feedback(d.id, "e1", purchased=True)
    assert r.status == "finalised" and r.reward is not None, r

    # The scorer (C++): the top 4 of every row are the 4 largest scores, best first.
    items = rng.standard_normal((300, 16)).astype(np.float32)
    users = rng.standard_normal((5, 16)).astype(np.float32)
    top = topk_softmax(items, users, 4, backend="cpp")
    full = users @ items.T
    assert np.array_equal(top.ids, np.argsort(-full, axis=1, kind="stable")[:, :4])
    assert np.allclose(top.probs_topk.sum(axis=1), 1.0)
    print("ok", promobandit.__version__, where.parent)
""")


def test_installs_without_a_compiler_and_runs(installed: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    python, env = installed
    proc = subprocess.run([str(python), "-c", RUN_IN_VENV], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok "), proc.stdout


def test_typed_example_runs_from_the_wheel(installed: tuple[Path, dict],
                                           tmp_path: Path) -> None:
    python, env = installed
    example = tmp_path / "typed_usage.py"
    shutil.copy(ROOT / "examples" / "typed_usage.py", example)
    proc = subprocess.run([str(python), str(example)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "-> finalised" in proc.stdout, proc.stdout


ISA_CHECK = textwrap.dedent("""
    import hashlib, importlib.util, sys
    import numpy as np

    spec = importlib.util.spec_from_file_location("_core", sys.argv[1])
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    h = hashlib.sha256()
    rng = np.random.default_rng(7)
    items = rng.standard_normal((700, 24)).astype(np.float32)
    users = rng.standard_normal((9, 24)).astype(np.float32)
    for item_type, arr in (("float32", items), ("float16", items.astype(np.float16))):
        auto = core.topk_softmax(arr, users, 5, temperature=0.7, item_type=item_type,
                                 n_threads=1)
        scalar = core.topk_softmax(arr, users, 5, temperature=0.7, item_type=item_type,
                                   n_threads=1, isa="scalar")
        for a, b in zip(auto, scalar):
            assert np.array_equal(a, b), item_type
            h.update(np.ascontiguousarray(a).tobytes())
    # The linear policies' loops are target_clones (avx2 / default).
    K, d = 4, 6
    for kind in ("LIN_UCB", "LIN_TS"):
        counters = np.zeros(len(core.COUNTER_SLOTS), np.int64)
        counters[core.COUNTER_SLOTS["PROPENSITY_AT"]] = -1
        counters[core.COUNTER_SLOTS["SEED"]] = 11
        eye = np.eye(d)
        arrays = {"A": np.repeat(eye[None], K, 0), "A_inv": np.repeat(eye[None], K, 0),
                  "b": np.zeros((K, d)), "theta": np.zeros((K, d)), "n": np.zeros(K),
                  "since_refresh": np.zeros(K, np.int64), "active": np.ones(K, bool),
                  "counters": counters}
        k = core.LinKernel(core.POLICY_KINDS[kind], 1.0, 0.5, 1.0, 50, 200, arrays)
        x = rng.standard_normal((300, d))
        for i in range(300):
            arm, p = k.select(x[i])
            k.update(arm, float(x[i, 0] * (arm + 1) > 0), x[i])
            h.update(np.int64(arm).tobytes() + np.float64(p).tobytes())
        arms, props = k.select_batch(x, n_threads=1)
        h.update(arms.tobytes() + props.tobytes() + arrays["theta"].tobytes())
    print(core.topk_isa(), h.hexdigest())
""")


def test_one_wheel_runs_on_any_x86_64(wheel: Path, tmp_path: Path) -> None:
    if platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"):
        pytest.skip("the CPU-dispatch check runs on linux x86_64")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-x86_64 is missing (Debian's qemu-user); CI runs this check")
        pytest.skip("qemu-x86_64 (Debian's qemu-user) is not installed")
    with zipfile.ZipFile(wheel) as zf:
        so = next(n for n in zf.namelist() if re.fullmatch(r"promobandit/_core\..*\.so", n))
        core = Path(zf.extract(so, tmp_path))
    script = tmp_path / "isa_check.py"
    script.write_text(ISA_CHECK)
    import numpy
    env = {"PATH": os.environ.get("PATH", ""),
           "PYTHONPATH": str(Path(numpy.__file__).resolve().parents[1])}

    def run(*prefix: str) -> tuple[str, str]:
        proc = subprocess.run([*prefix, sys.executable, str(script), str(core)], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (prefix, proc.stdout, proc.stderr[-2000:])
        isa, digest = proc.stdout.split()
        return isa, digest

    native = run()
    # SandyBridge: AVX but no AVX2/FMA/F16C, so the portable top-k and the default clones;
    # an AVX2 or AVX-512 instruction outside the dispatched code would be SIGILL here.
    portable = run(qemu, "-cpu", "SandyBridge")
    avx2 = run(qemu, "-cpu", "Haswell-noTSX")
    assert portable[0] == "scalar" and avx2[0] == "avx2", (portable, avx2)
    assert portable[1] == avx2[1] == native[1], (native, avx2, portable)
