"""The line every benchmark prints about the machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess


def machine() -> str:
    """CPU model, cores, Python version and the load average when the run started
    (these machines are shared: the load says how much to trust a timing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine() or "unknown CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, load average {load:.1f} at start")
