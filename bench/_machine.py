"""The machine a benchmark ran on, and its real limits.

`machine()` is the line every benchmark prints. `limits()` measures what this
machine can do at most, so that a kernel's speed is read as a fraction of a
limit rather than as a ratio to another program that may itself be slow:

- memory bandwidth: a C++ streaming read (`_core.probe_stream("read")`: every
  thread sums its own slice of an array 16x the last-level cache, AVX-512 or AVX2
  loads, eight accumulators), next to STREAM's triad with non-temporal stores and
  to NumPy's one-thread `sum` (the yardstick used before, which under-reads);
- compute: the float32 FMA peak, measured (`_core.probe_fma`: 24 independent
  FMA chains in registers per thread) and explained as
  cores x clock x SIMD lanes x 2 flops x FMA units per cycle, with the clock
  measured under load (`_core.probe_clock`: dependent one-cycle integer adds).

A limit is the best repetition (a limit is what the machine reaches when nothing
is in the way; on a shared machine the median is other jobs' noise); the median
is kept beside it. Kernels are reported by their median, so a fraction of a limit
is conservative.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Any

import numpy as np

# Bytes each bandwidth array holds: 16x this machine's 32 MiB L3, so the reads
# come from memory, not cache.
STREAM_BYTES = 512 * 2**20
# Repetitions of each probe; the best one is the limit.
STREAM_REPS = 7
FMA_REPS = 60
# FMA iterations per repetition: 24 chains x 16 lanes x 2 flops x 3e5 = 0.23 GFLOP per
# thread, about 1 ms, and 2.4 M cycles of the clock probe: short, so that on a shared
# machine some repetitions run with the core to themselves.
FMA_ITERS = 300_000
CLOCK_ITERS = 300_000


def blas_threads(n: int) -> Any:
    """A context that holds NumPy's BLAS (and any OpenMP pool) to n threads: a peer timed
    as "one thread" must not run its matrix products on every core while promobandit's
    kernels run on one (OpenBLAS starts one thread per core by default). Uses
    threadpoolctl (installed with scikit-learn); without it, a context that does nothing
    and says so."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib
        print("note: threadpoolctl is not installed; BLAS threads are not limited")
        return contextlib.nullcontext()
    return threadpool_limits(limits=n)


def machine() -> str:
    """CPU model, cores, Python version and the load average when the run started
    (these machines are shared: the load says how much to trust a timing)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, load average {load:.1f} at start")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def nominal_mhz() -> float | None:
    """The clock the kernel reports (on a VM, usually the nominal / TSC clock)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def _best_and_median(r: dict[str, Any], work: str) -> tuple[float, float]:
    secs = r["seconds"]
    return r[work] / min(secs), r[work] / statistics.median(secs)


def numpy_sum_gbps(n_bytes: int = STREAM_BYTES, reps: int = STREAM_REPS) -> float:
    """NumPy's one-thread float32 sum over n_bytes, best repetition, GB/s."""
    a = np.ones(n_bytes // 4, dtype=np.float32)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def limits(threads: int | None = None) -> dict[str, Any]:
    """This machine's bandwidth and FMA limits on `threads` threads (default: all
    cores), measured now. Keys ending in _GBps are 1e9 bytes/s, _GFLOPs 1e9 flop/s."""
    from promobandit import _backends

    core = _backends.core()
    t = threads or os.cpu_count() or 1
    out: dict[str, Any] = {"threads": t, "cpu": cpu_model(), "cores": os.cpu_count(),
                           "load_before": os.getloadavg()[0]}
    read = core.probe_stream("read", STREAM_BYTES, t, STREAM_REPS)
    triad = core.probe_stream("triad", STREAM_BYTES, t, STREAM_REPS)
    out["read_all_GBps"], out["read_median_GBps"] = (x / 1e9 for x in
                                                     _best_and_median(read, "bytes"))
    out["triad_GBps"], out["triad_median_GBps"] = (x / 1e9 for x in
                                                   _best_and_median(triad, "bytes"))
    one = core.probe_stream("read", STREAM_BYTES, 1, STREAM_REPS)
    out["read_1thread_GBps"] = _best_and_median(one, "bytes")[0] / 1e9
    out["numpy_sum_1thread_GBps"] = numpy_sum_gbps()
    out["stream_isa"] = read["isa"]
    # More threads never have less bandwidth: on a shared machine the all-thread probe
    # can be starved, so the limit is the larger of the two (the stricter yardstick).
    out["read_GBps"] = max(out["read_all_GBps"], out["read_1thread_GBps"])
    out["stream_bytes"] = STREAM_BYTES

    fma = core.probe_fma(FMA_ITERS, t, FMA_REPS)
    fma1 = core.probe_fma(FMA_ITERS, 1, FMA_REPS)
    clock = core.probe_clock(CLOCK_ITERS, 1, FMA_REPS)
    out["fma_all_GFLOPs"], out["fma_median_GFLOPs"] = (x / 1e9 for x in
                                                       _best_and_median(fma, "flops"))
    # One core's peak: its own probe, or the all-thread probe's share, whichever is larger.
    out["fma_peak_1core_GFLOPs"] = max(_best_and_median(fma1, "flops")[0] / 1e9,
                                       out["fma_all_GFLOPs"] / t)
    # FMA units are per core: t cores reach t x one core's peak when nothing else runs,
    # which a shared machine rarely lets the concurrent probe see. The limit is the
    # larger of the two.
    out["fma_peak_GFLOPs"] = max(out["fma_all_GFLOPs"], t * out["fma_peak_1core_GFLOPs"])
    out["fma_isa"], out["lanes"] = fma["isa"], fma["lanes"]
    out["clock_GHz"] = (clock["cycles"] / min(clock["seconds"]) / 1e9
                        if clock["cycles"] else None)
    out["nominal_GHz"] = (nominal_mhz() or 0) / 1e3 or None
    if out["clock_GHz"]:
        # peak per core = clock x lanes x 2 flops x FMA units: solve for the units.
        out["fma_units_per_cycle"] = (out["fma_peak_1core_GFLOPs"]
                                      / (out["clock_GHz"] * out["lanes"] * 2))
    out["load_after"] = os.getloadavg()[0]
    return out


def describe(lim: dict[str, Any]) -> list[str]:
    """The limits as lines of text, each saying how it was measured."""
    t = lim["threads"]
    lines = [
        f"memory read bandwidth limit, {t} thread(s): {lim['read_GBps']:.1f} GB/s = the larger "
        f"of the C++ streaming read of {lim['stream_bytes'] >> 20} MiB ({lim['stream_isa']} "
        f"loads) on {t} thread(s) at once, {lim['read_all_GBps']:.1f} GB/s best (median "
        f"{lim['read_median_GBps']:.1f}), and on one thread, {lim['read_1thread_GBps']:.1f} "
        f"GB/s; NumPy's one-thread sum reads {lim['numpy_sum_1thread_GBps']:.1f} GB/s",
        f"STREAM triad (non-temporal stores, 3 arrays counted), {t} thread(s): "
        f"{lim['triad_GBps']:.1f} GB/s",
        f"float32 FMA peak limit, {t} thread(s): {lim['fma_peak_GFLOPs']:.0f} GFLOP/s = the "
        f"larger of {t} x one core's {lim['fma_peak_1core_GFLOPs']:.0f} and {t} thread(s) at "
        f"once, {lim['fma_all_GFLOPs']:.0f} best (median {lim['fma_median_GFLOPs']:.0f}); "
        f"{lim['fma_isa']}, {lim['lanes']} lanes",
    ]
    if lim.get("clock_GHz"):
        lines.append(
            f"  = cores x clock x lanes x 2 x FMA units: clock {lim['clock_GHz']:.2f} GHz "
            f"measured (nominal {lim['nominal_GHz'] or 0:.2f}), so "
            f"{lim['fma_units_per_cycle']:.2f} FMA units per core per cycle")
    lines.append(f"load average {lim['load_before']:.1f} before the probes, "
                 f"{lim['load_after']:.1f} after")
    return lines


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Print this machine's measured limits.")
    p.add_argument("--threads", type=int, default=0, help="threads (0: all cores)")
    a = p.parse_args()
    print(machine())
    print("\n".join(describe(limits(a.threads or None))))
