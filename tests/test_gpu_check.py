"""bench/gpu_check.sh fails loudly where the CUDA check cannot run.

The script's purpose is to verify the CUDA scorer on a GPU machine; a run that
could not build, import or test the CUDA module must not look like a pass. Here
(no GPU, or no nvcc) it must stop before the build with a non-zero status and a
line naming what is missing. On a machine with a GPU these tests are skipped:
there the script itself is the check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from promobandit import _backends

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"

pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"),
    pytest.mark.skipif(_backends.has_cuda(), reason="a GPU is present: run the script itself"),
]


def run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("bash") or "bash", str(SCRIPT), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_fails_without_a_device(tmp_path: Path) -> None:
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc here: the nvcc case below covers this machine")
    env = {**os.environ, "PYTHON": sys.executable}
    r = run(tmp_path, env)
    assert r.returncode == 2, r.stderr
    assert "gpu_check FAILED" in r.stderr and "no CUDA device" in r.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "FAILED" in summary and "build rc=" not in summary  # stopped before building


def test_fails_without_nvcc(tmp_path: Path) -> None:
    # A PATH with bash's basic tools but no nvcc.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("date", "mkdir", "dirname", "tee", "cat", "grep", "tail", "timeout"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PYTHON": sys.executable, "PATH": str(bin_dir)}
    r = run(tmp_path, env)
    assert r.returncode == 2, r.stderr
    assert "nvcc not found" in r.stderr
