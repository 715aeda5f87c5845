"""Benchmark of the fused top-k softmax scorer (promobandit.scoring.topk_softmax),
every row read against a limit of this machine.

Sweeps N (items), d (dimension) and B (users per call) at k = 100 over the
backends cpp / numba (promobandit) and the baselines NumPy (matmul +
argpartition), torch (matmul + topk) and faiss IndexFlatIP (exact inner-product
search). The baselines only select the top k; promobandit also computes the
softmax normaliser over all N items, so the comparison favours them.

Limits (bench/_machine.py, measured in the same run, on the same threads):
- B = 1 streams the item matrix once: its limit is the memory read bandwidth of
  a C++ streaming read on all the run's threads (`_core.probe_stream`, 512 MiB),
  probed before and after the sweep and again inside every B = 1 configuration,
  interleaved with the kernels; the limit is the best of those probes. A row's
  time floor is bytes of E / bandwidth, its fraction floor / median time.
- B > 1 is compute bound: its limit is the float32 FMA peak (`_core.probe_fma`,
  the larger of threads x one core's peak and all threads at once); the time
  floor is 2 N d B flops / peak. torch's GEMM of the same shapes (no top-k) is a
  peer with its own fraction of the peak, not the floor.

Every figure is the median of repeated calls with its spread (min, max); the
calls of one configuration are interleaved round-robin (backends, baselines and
probes alike), so a change in machine load affects them together.

Usage:
  python bench/bench_topk.py                 # full CPU sweep (~10 min on 2 cores)
  python bench/bench_topk.py --quick         # d = 64 only (~2 min)
  python bench/bench_topk.py --threads 1     # kernels, baselines and limits on 1 thread
  python bench/bench_topk.py --readme        # also rewrite its sections of bench/README.md
  python bench/bench_topk.py --device cuda --out DIR   # the CUDA backend vs torch on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _machine import STREAM_BYTES, describe, limits
from promobandit import _backends
from promobandit.scoring import to_bfloat16, topk_softmax

HERE = Path(__file__).resolve().parent
K = 100
SEED = 0
# Repetitions per configuration (after one warm-up call): more for fast calls.
REPS_FAST, REPS_SLOW = 7, 3
# A configuration whose single call exceeds this many seconds is not repeated.
SLOW_CALL_S = 5.0
# Items per chunk of the cache-resident SGEMM peer: a (256 x chunk) float32 output is 16 MiB.
GEMM_CHUNK = 16384
# On the GPU, torch's dense (B, N) score matrix is split into item chunks of at most
# this many scores (16 GiB of float32), so the baseline fits where ours does.
TORCH_CUDA_MAX_SCORES = 2**32
README_HEADING = "## Top-k softmax scoring"
LIMITS_HEADING = "## Limits"
# Targets of issue 14, judged at N = 1M on the cpp backend (median times).
TARGET_BW_FRACTION = 0.80   # B = 1 float32 d = 64: >= this fraction of the read bandwidth
TARGET_FMA_RATIO = 1.5      # B = 256 float32: time <= this many times the FMA-peak floor
# How to read the table; written under it by --readme (the numbers above it change per run).
README_NOTES = [
    "How to read it:",
    "",
    "- limit: `bandwidth` rows (B = 1) have the time floor bytes of E / the read bandwidth "
    "limit; `FMA peak` rows (B > 1) have 2 N d B flops / the FMA peak. fraction = floor / "
    "median time (100% = at the limit). Both limits are measured in the same run on the same "
    "threads (see Limits below). At N = 100k the matrix (at most 51 MB) sits largely in the "
    "32 MiB L3, so fractions above 100% there are cache effects; the targets are judged at "
    "N = 1M (128-512 MB).",
    "- torch's GEMM (`torch-sgemm`, the same shapes with no top-k, best of one call into a "
    "preallocated output and of cache-sized item chunks) is a peer: it is itself far below "
    "the FMA peak for these short, wide shapes.",
    "- The 2-core machine is shared with other jobs (see the load average): single runs vary "
    "by up to 2x. Calls of one configuration are interleaved, so read ratios within a row "
    "group. A limit is the best probe of the run, a kernel its median, so on a loaded machine "
    "fractions are conservative. For promobandit's compute-bound rows (B > 1) the note also "
    "gives the fraction by CPU time (the call's CPU seconds over all its threads / threads), "
    "which leaves out the time other jobs held the cores; B = 1 rows have none (a "
    "memory-bound call whose threads ran in turn read at one thread's bandwidth each), nor "
    "do the baselines (OpenMP threads spin while they wait, so their CPU time is not their "
    "cost).",
    "- numba is the portable fallback (scalar loops, no SIMD across the d products); its "
    "B = 256 runs are skipped at N = 1M (minutes per call).",
    "- CUDA: `bench/gpu_check.sh OUT_DIR` builds the CUDA module for the GPU it finds, runs "
    "the cuda-marked parity tests and records the GPU rows (B = 1, 256 and 4096; N = 1M and "
    "10M; d = 64 and 128; float32 / float16 / bfloat16; torch's matmul + topk on the same "
    "GPU) in under 8 minutes, and exits non-zero when the module was not built, does not "
    "import, sees no device or a cuda test was skipped. No GPU machine was lent while this "
    "table was made, so there are no CUDA rows here; where no GPU is present the cuda tests "
    "skip, and the CUDA kernels are compiled by nvcc in the C++ test build.",
]


def timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
    """Median and spread of `reps` calls after one warm-up (which also sizes the run)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    n = 1 if first > SLOW_CALL_S else reps
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "reps": n}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__,
                            "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("Model name", "Core(s) per socket", "Socket(s)", "L2 cache",
                               "L3 cache", "Thread(s) per core"):
                info[key.strip()] = val.strip()
    except OSError:
        pass
    if _backends.has_cpp():
        info["cpp_isa"] = _backends.core().topk_isa()
    return info


def sgemm_fns(torch: Any, e: np.ndarray, u: np.ndarray) -> dict[str, Callable[[], Any]]:
    """B x d by d x N float32 matmul with no top-k, two layouts (the peer is the faster):
    one call into a preallocated output, and item chunks whose output stays in cache."""
    et, ut = torch.from_numpy(e), torch.from_numpy(u)
    full = torch.empty((u.shape[0], e.shape[0]))
    chunk = torch.empty((u.shape[0], GEMM_CHUNK))

    def chunked() -> None:
        for i in range(0, e.shape[0], GEMM_CHUNK):
            j = min(e.shape[0], i + GEMM_CHUNK)
            torch.matmul(ut, et[i:j].T, out=chunk[:, : j - i])

    return {"whole": lambda: torch.matmul(ut, et.T, out=full), "chunked": chunked}


def baselines(torch: Any, faiss: Any, e: np.ndarray, u: np.ndarray) -> dict[str, Callable]:
    out: dict[str, Callable] = {}

    def numpy_topk() -> None:
        s = u @ e.T
        idx = np.argpartition(-s, K - 1, axis=1)[:, :K]
        np.take_along_axis(s, idx, axis=1).argsort(axis=1)

    out["numpy"] = numpy_topk
    if torch is not None:
        et, ut = torch.from_numpy(e), torch.from_numpy(u)
        out["torch"] = lambda: torch.topk(ut @ et.T, K, dim=1)
    if faiss is not None:
        index = faiss.IndexFlatIP(e.shape[1])
        index.add(e)
        out["faiss"] = lambda: index.search(u, K)
    return out


def interleaved(entries: list[tuple[str, str, Callable[[], Any]]],
                reps: int) -> list[dict[str, Any]]:
    """Round-robin timing: one warm-up each, then `reps` rounds calling every entry once,
    so a change in machine load hits all entries of a configuration alike. Entries
    slower than SLOW_CALL_S run once."""
    times: dict[int, list[float]] = {i: [] for i in range(len(entries))}
    cpus: dict[int, list[float]] = {i: [] for i in range(len(entries))}
    slow = set()
    for i, (_, _, fn) in enumerate(entries):
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 > SLOW_CALL_S:
            slow.add(i)
    for rnd in range(reps):
        for i, (_, _, fn) in enumerate(entries):
            if i in slow and rnd > 0:
                continue
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
            cpus[i].append(time.process_time() - c0)
    return [{"backend": name, "dtype": dtype, "median_s": statistics.median(times[i]),
             "min_s": min(times[i]), "max_s": max(times[i]), "reps": len(times[i]),
             "cpu_median_s": statistics.median(cpus[i])}
            for i, (name, dtype, _) in enumerate(entries)]


def cpu_sweep(quick: bool, threads: int) -> dict[str, Any]:
    torch = _import("torch")
    faiss = _import("faiss")
    if torch is not None:
        torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
    core = _backends.core()
    rows: list[dict[str, Any]] = []
    probes: list[float] = []  # seconds of each interleaved bandwidth probe

    def read_probe() -> None:  # the C++ streaming read, timed by itself between barriers
        r = core.probe_stream("read", STREAM_BYTES, threads, 1)
        probes.append(r["seconds"][0])

    ns = [100_000, 1_000_000]
    ds = [64] if quick else [32, 64, 128]
    rng = np.random.default_rng(SEED)
    for n in ns:
        for d in ds:
            e = (rng.standard_normal((n, d), dtype=np.float32) / np.float32(np.sqrt(d)))
            halves = {"float16": e.astype(np.float16), "bfloat16": to_bfloat16(e)}
            for b in (1, 256):
                u = rng.standard_normal((b, d), dtype=np.float32)
                users = u[0] if b == 1 else u
                entries: list[tuple[str, str, Callable[[], Any]]] = []
                for backend in ("cpp", "numba"):
                    if backend not in _backends.available():
                        continue
                    if backend == "numba" and b > 1 and n * d * b > 2e9:
                        continue  # scalar loops, several seconds per call: N = 100k only
                    for dtype in ("float32", "float16", "bfloat16"):
                        if backend == "numba" and dtype != "float32":
                            continue
                        items = e if dtype == "float32" else halves[dtype]
                        entries.append((backend, dtype, lambda items=items, users=users,
                                        backend=backend: topk_softmax(
                                            items, users, K, backend=backend,
                                            n_threads=threads)))
                entries += [(name, "float32", fn)
                            for name, fn in baselines(torch, faiss, e, u).items()]
                if b == 1:
                    entries.append(("read-probe", "float32", read_probe))
                elif torch is not None:
                    entries += [(f"torch-sgemm-{layout}", "float32", fn)
                                for layout, fn in sgemm_fns(torch, e, u).items()]
                first_probe = len(probes)
                res = interleaved(entries, REPS_FAST if b == 1 else REPS_SLOW)
                for r in res:
                    r.update({"N": n, "d": d, "B": b, "k": K})
                    if r["backend"] == "read-probe":  # the probe's own timing, not the call's
                        secs = probes[first_probe:]
                        r.update({"median_s": statistics.median(secs), "min_s": min(secs),
                                  "max_s": max(secs), "bytes": STREAM_BYTES})
                gemm = [r for r in res if r["backend"].startswith("torch-sgemm-")]
                if gemm:  # the faster layout is torch's GEMM row
                    best = min(gemm, key=lambda r: r["median_s"])
                    res = [r for r in res if not r["backend"].startswith("torch-sgemm-")]
                    best["layout"] = best["backend"].rsplit("-", 1)[1]
                    best["backend"] = "torch-sgemm"
                    res.append(best)
                for r in res:
                    _show(r)
                rows += res
    return {"rows": rows, "probe_seconds": probes}


def cuda_sweep(quick: bool) -> dict[str, Any]:
    """The issue's GPU rows: B = 256 and 4096, N = 1M and 10M, d = 64 and 128, float32 /
    float16 / bfloat16, the cuda backend beside torch (matmul + topk, in item chunks where
    the dense score matrix would not fit) on the same GPU. A row that fails (memory) is
    recorded with its error and the sweep goes on."""
    torch = _import("torch")
    if torch is None or not torch.cuda.is_available():
        raise SystemExit("--device cuda needs torch with a CUDA device")

    def sync_timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
        def run() -> None:
            fn()
            torch.cuda.synchronize()

        return timed(run, reps)

    def torch_topk(items: Any, ut: Any) -> Any:
        n = items.shape[0]
        step = max(1, min(n, TORCH_CUDA_MAX_SCORES // ut.shape[0]))
        if step >= n:
            return torch.topk(ut @ items.T, K, dim=1)
        vals, ids = [], []
        for i in range(0, n, step):
            v, j = torch.topk(ut @ items[i:i + step].T, min(K, min(n, i + step) - i), dim=1)
            vals.append(v)
            ids.append(j + i)
        v, j = torch.topk(torch.cat(vals, 1), K, dim=1)
        return v, torch.gather(torch.cat(ids, 1), 1, j)

    rows: list[dict[str, Any]] = []
    gen = torch.Generator(device="cuda").manual_seed(SEED)
    configs = [(1_000_000, 64, b) for b in (1, 256, 4096)]
    if not quick:
        configs += [(1_000_000, 128, b) for b in (1, 256, 4096)]
        configs += [(10_000_000, d, b) for d in (64, 128) for b in (1, 256, 4096)]
    reps = 5
    # Streaming read on the GPU through torch (a sum over 4 GiB): a probe, not a limit.
    big = torch.ones(2**30, device="cuda")
    r = sync_timed(big.sum, reps)
    gpu_bw = big.numel() * 4 / r["min_s"] / 1e9
    big = None
    torch.cuda.empty_cache()
    for n, d, b in configs:
        cfg = {"N": n, "d": d, "B": b, "k": K}
        e = torch.randn(n, d, device="cuda", generator=gen) / d**0.5
        u = torch.randn(b, d, device="cuda", generator=gen)
        users = u[0] if b == 1 else u
        for dtype, t in (("float32", torch.float32), ("float16", torch.float16),
                         ("bfloat16", torch.bfloat16)):
            items = e.to(t)
            ut = u.to(t)
            for name, fn in (("cuda", lambda items=items, users=users:
                              topk_softmax(items, users, K, backend="cuda")),
                             ("torch-cuda", lambda items=items, ut=ut: torch_topk(items, ut))):
                try:
                    r = sync_timed(fn, reps)
                    rows.append({**cfg, "backend": name, "dtype": dtype, **r})
                    _show(rows[-1])
                except (RuntimeError, MemoryError, ValueError) as exc:
                    rows.append({**cfg, "backend": name, "dtype": dtype,
                                 "error": f"{type(exc).__name__}: {exc}"[:200]})
                    print(f"  {name} {dtype} N={n} d={d} B={b}: {rows[-1]['error']}", flush=True)
                    torch.cuda.empty_cache()
            del items, ut
        try:  # torch's GEMM of the same shapes, float32, no top-k: a peer
            ue = u if b > 1 else u[:1]
            step = max(1, min(n, TORCH_CUDA_MAX_SCORES // ue.shape[0]))
            out = torch.empty((ue.shape[0], min(n, step)), device="cuda")

            def gemm(ue: Any = ue, e: Any = e, out: Any = out, step: int = step,
                     n: int = n) -> None:
                for i in range(0, n, step):
                    j = min(n, i + step)
                    torch.matmul(ue, e[i:j].T, out=out[:, : j - i])

            r = sync_timed(gemm, reps)
            rows.append({**cfg, "backend": "torch-sgemm", "dtype": "float32", **r})
            _show(rows[-1])
            del out
        except (RuntimeError, MemoryError) as exc:
            print(f"  torch-sgemm N={n} d={d} B={b}: {exc}"[:200], flush=True)
        del e, u, users
        torch.cuda.empty_cache()
    return {"rows": rows, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "gpu_torch_sum_GBps": gpu_bw}


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _show(r: dict[str, Any]) -> None:
    print(f"  {r['backend']:>12} {r['dtype']:>8} N={r['N']:>8} d={r['d']:>3} B={r['B']:>4}: "
          f"{r['median_s'] * 1e3:9.2f} ms  [{r['min_s'] * 1e3:.2f}, {r['max_s'] * 1e3:.2f}] "
          f"x{r['reps']}", flush=True)


def run_limits(res: dict[str, Any]) -> dict[str, float]:
    """The run's limits: the best read bandwidth of every probe (before, after, and inside
    each B = 1 configuration) and the best FMA peak (before, after)."""
    probes = [STREAM_BYTES / s / 1e9 for s in res.get("probe_seconds", [])]
    bw = max([res["limits_before"]["read_GBps"], res["limits_after"]["read_GBps"], *probes])
    peak = max(res["limits_before"]["fma_peak_GFLOPs"], res["limits_after"]["fma_peak_GFLOPs"])
    return {"read_GBps": bw, "fma_peak_GFLOPs": peak}


def cpu_fraction(r: dict[str, Any], floor: float, threads: int) -> float | None:
    """The fraction of the limit by CPU time: the call's CPU seconds (all its threads) /
    threads, which leaves out the time other jobs held the cores. Only for promobandit's
    kernels: their threads never spin, while OpenMP baselines (torch, faiss) burn CPU
    waiting, so their CPU time is not their cost. Only for compute-bound rows (B > 1): a
    memory-bound call whose threads were descheduled in turn read at one thread's
    bandwidth each, so its CPU time says nothing about the all-thread bandwidth limit."""
    if r["backend"] not in ("cpp", "numba") or not r.get("cpu_median_s") or r["B"] == 1:
        return None
    return floor / (r["cpu_median_s"] / threads)


def with_limits(r: dict[str, Any], lim: dict[str, float], threads: int = 1) -> dict[str, Any]:
    """The row's limit, its time floor and the fraction of the limit reached (by the
    median wall time, and for promobandit's kernels also by CPU time)."""
    if r["backend"] == "read-probe":
        gbps = r["bytes"] / r["median_s"] / 1e9
        return {"limit": "bandwidth", "note": f"{gbps:.1f} GB/s median",
                "fraction": gbps / lim["read_GBps"]}
    if r["B"] == 1:
        itemsize = 4 if r["dtype"] == "float32" else 2
        floor = r["N"] * r["d"] * itemsize / (lim["read_GBps"] * 1e9)
        gbps = r["N"] * r["d"] * itemsize / r["median_s"] / 1e9
        fc = cpu_fraction(r, floor, threads)
        return {"limit": "bandwidth", "floor_s": floor, "fraction": floor / r["median_s"],
                "fraction_cpu": fc,
                "note": f"{gbps:.1f} GB/s" + (f"; by CPU time {fc:.0%}" if fc else "")}
    flops = 2.0 * r["N"] * r["d"] * r["B"]
    floor = flops / (lim["fma_peak_GFLOPs"] * 1e9)
    fc = cpu_fraction(r, floor, threads)
    return {"limit": "FMA peak", "floor_s": floor, "fraction": floor / r["median_s"],
            "fraction_cpu": fc,
            "note": f"{flops / r['median_s'] / 1e9:.0f} GFLOP/s = {r['median_s'] / floor:.2f}x "
                    "the floor" + (f"; by CPU time {1 / fc:.2f}x" if fc else "")}


def summarise(res: dict[str, Any]) -> list[str]:
    """The CPU results as a markdown table: ratio to cpp float32, the limit of each row and
    the fraction of it reached."""
    lim = run_limits(res)
    rows = res["rows"]

    def find(backend: str, dtype: str, n: int, d: int, b: int) -> dict[str, Any] | None:
        for r in rows:
            if (r["backend"], r["dtype"], r["N"], r["d"], r["B"]) == (backend, dtype, n, d, b):
                return r
        return None

    lines = ["| N | d | B | backend | dtype | median ms [min, max] | vs cpp float32 | limit | "
             "fraction of limit | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = find("cpp", "float32", r["N"], r["d"], r["B"])
        ratio = f"{r['median_s'] / ref['median_s']:.2f}x" if ref else ""
        w = with_limits(r, lim, res["threads"])
        name = r["backend"] + (f" ({r['layout']})" if "layout" in r else "")
        lines.append(f"| {r['N']:,} | {r['d']} | {r['B']} | {name} | {r['dtype']} | "
                     f"{r['median_s'] * 1e3:.2f} [{r['min_s'] * 1e3:.2f}, "
                     f"{r['max_s'] * 1e3:.2f}] | {ratio} | {w['limit']} | "
                     f"{w['fraction']:.0%} | {w['note']} |")
    return lines


def summarise_cuda(res: dict[str, Any]) -> list[str]:
    rows = res["rows"]

    def find(backend: str, dtype: str, n: int, d: int, b: int) -> dict[str, Any] | None:
        for r in rows:
            if ((r["backend"], r["dtype"], r["N"], r["d"], r["B"]) == (backend, dtype, n, d, b)
                    and "error" not in r):
                return r
        return None

    lines = [f"GPU: {res['gpu']}, torch {res['torch']}; torch's sum over 4 GiB reads "
             f"{res['gpu_torch_sum_GBps']:.0f} GB/s.", "",
             "| N | d | B | backend | dtype | median ms [min, max] | vs torch-cuda, same dtype |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['N']:,} | {r['d']} | {r['B']} | {r['backend']} | {r['dtype']} "
                         f"| failed: {r['error']} | |")
            continue
        ref = find("torch-cuda", r["dtype"], r["N"], r["d"], r["B"])
        ratio = f"{r['median_s'] / ref['median_s']:.2f}x" if ref else ""
        lines.append(f"| {r['N']:,} | {r['d']} | {r['B']} | {r['backend']} | {r['dtype']} | "
                     f"{r['median_s'] * 1e3:.3f} [{r['min_s'] * 1e3:.3f}, "
                     f"{r['max_s'] * 1e3:.3f}] | {ratio} |")
    return lines


def targets(res: dict[str, Any]) -> list[str]:
    """Issue 14's top-k targets, and issue 3's speed-ups over the peers, checked against
    this run (cpp backend, median times)."""
    lim = run_limits(res)
    out = []
    rows = res["rows"]

    def row(backend: str, dtype: str, n: int, d: int, b: int) -> dict[str, Any] | None:
        for r in rows:
            if (r["backend"], r["dtype"], r["N"], r["d"], r["B"]) == (backend, dtype, n, d, b):
                return r
        return None

    n_big = max(r["N"] for r in rows)
    for d in sorted({r["d"] for r in rows}):
        t = res["threads"]
        r1 = row("cpp", "float32", n_big, d, 1)
        if r1:
            w = with_limits(r1, lim, t)
            f = w["fraction"]
            fb = (with_limits({**r1, "median_s": r1["min_s"]}, lim, t)["fraction"])
            judged = " (target >= 80% at d = 64)" if d == 64 else ""
            verdict = ""
            if d == 64:
                verdict = ": " + ("met" if f >= TARGET_BW_FRACTION else "MISSED")
            out.append(f"- B=1 float32, N={n_big:,} d={d}: {f:.0%} of the read bandwidth limit "
                       f"({lim['read_GBps']:.1f} GB/s) by the median, {fb:.0%} by the best "
                       f"call{judged}{verdict}")
        rb = row("cpp", "float32", n_big, d, 256)
        if rb:
            w = with_limits(rb, lim, t)
            ratio = rb["median_s"] / w["floor_s"]
            rc = 1 / w["fraction_cpu"] if w["fraction_cpu"] else float("inf")
            verdict = ("met" if ratio <= TARGET_FMA_RATIO else "met by CPU time, MISSED by "
                       "wall time" if rc <= TARGET_FMA_RATIO else "MISSED")
            out.append(f"- B=256 float32, N={n_big:,} d={d}: {ratio:.2f}x the FMA-peak floor "
                       f"by the median, {rc:.2f}x by CPU time ({lim['fma_peak_GFLOPs']:.0f} "
                       f"GFLOP/s; target <= {TARGET_FMA_RATIO}x): {verdict}")
            g = row("torch-sgemm", "float32", n_big, d, 256)
            if g:
                out.append(f"  (torch's GEMM alone, no top-k: "
                           f"{g['median_s'] / with_limits(g, lim)['floor_s']:.2f}x the floor)")
            for base in ("torch", "faiss", "numpy"):
                rbase = row(base, "float32", n_big, d, 256)
                if rbase:
                    out.append(f"  - {rbase['median_s'] / rb['median_s']:.2f}x faster than "
                               f"{base} (matmul + top-k)")
    return out


def limits_table(res: dict[str, Any]) -> list[str]:
    """The README's Limits table: each limit, how it was measured, and the fraction of it
    reached by every cpp float32 row of the run."""
    lim = run_limits(res)
    # The probe record that gave the FMA peak explains it (its own one-core peak and clock).
    before = max(res["limits_before"], res["limits_after"], key=lambda x: x["fma_peak_GFLOPs"])
    rows = [r for r in res["rows"] if r["backend"] == "cpp" and r["dtype"] == "float32"]
    t = res["threads"]

    def reached(r: dict[str, Any]) -> str:
        w = with_limits(r, lim, t)
        cpu = f" (CPU time {w['fraction_cpu']:.0%})" if w["fraction_cpu"] else ""
        return f"N={r['N']:,} d={r['d']}: {w['fraction']:.0%}{cpu}"

    reached_bw = ", ".join(reached(r) for r in rows if r["B"] == 1)
    reached_fma = ", ".join(reached(r) for r in rows if r["B"] > 1)
    return [
        "| limit | value | how measured | fraction reached (cpp float32: median wall time; for "
        "B > 1 also CPU time / threads) |",
        "|---|---|---|---|",
        f"| memory read bandwidth ({t} thread(s)) | {lim['read_GBps']:.1f} GB/s | C++ streaming "
        f"read (`_core.probe_stream('read')`, {STREAM_BYTES >> 20} MiB, {before['stream_isa']}, "
        f"every thread its own slice, timed between barriers), best of the probes before and "
        f"after the sweep and inside each B = 1 configuration; NumPy's one-thread sum read "
        f"{before['numpy_sum_1thread_GBps']:.1f} GB/s in the same run | B = 1: {reached_bw} |",
        f"| STREAM triad ({t} thread(s)) | {before['triad_GBps']:.1f} GB/s | `probe_stream"
        "('triad')`, a = b + 3c with non-temporal stores, 3 arrays counted | (reference) |",
        f"| float32 FMA peak ({t} thread(s)) | {lim['fma_peak_GFLOPs']:.0f} GFLOP/s | "
        f"`_core.probe_fma`: 24 independent FMA chains in registers; the larger of {t} x one "
        f"core ({before['fma_peak_1core_GFLOPs']:.0f}) and {t} thread(s) at once; = cores x "
        f"{before['clock_GHz']:.2f} GHz (measured, `probe_clock`) x {before['lanes']} lanes x "
        f"2 flops x {before['fma_units_per_cycle']:.2f} FMA units | B = 256: {reached_fma} |",
    ]


def write_section(path: Path, heading: str, body: list[str]) -> None:
    """Replaces (or appends) one section of bench/README.md, leaving the rest."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        new = [*lines, "", *body]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = [*lines[:start], *body, *lines[end:]]
    path.write_text("\n".join(new).rstrip() + "\n")


def write_readme(res: dict[str, Any], path: Path) -> None:
    m = res["machine"]
    lim = run_limits(res)
    t = res["threads"]
    body = [README_HEADING, "",
            f"`python bench/bench_topk.py{'' if t == os.cpu_count() else f' --threads {t}'}` "
            "(k = 100; JSON in `bench/results/topk.json`). "
            f"Machine: {m.get('Model name', '?')}, {m.get('cpus', '?')} cores "
            f"({m.get('Core(s) per socket', '?')} per socket, L2 {m.get('L2 cache', '?')}, "
            f"L3 {m.get('L3 cache', '?')}), C++ kernels on {m.get('cpp_isa', '?')}, {t} "
            f"thread(s) for kernels, baselines and limits. Limits of this run: read bandwidth "
            f"{lim['read_GBps']:.1f} GB/s, FMA peak {lim['fma_peak_GFLOPs']:.0f} GFLOP/s (see "
            f"Limits). Load average (1 min) {res.get('load_before', [0])[0]:.2f} before the "
            f"run, {res.get('load_after', [0])[0]:.2f} after: the machine is shared, so "
            "medians carry that noise. Baselines select the top k only; promobandit also "
            "computes the softmax normaliser over all N items.", "",
            *summarise(res), "", "Targets (issue 14; cpp backend, median times):", "",
            *targets(res), "", *README_NOTES, ""]
    write_section(path, README_HEADING, body)
    lim_body = [LIMITS_HEADING, "",
                "Printed by `python bench/bench_topk.py --readme` (the limits alone: "
                "`python bench/_machine.py [--threads N]`), measured in the same run as the "
                "top-k table above:", "", *limits_table(res), "",
                "The probes before the sweep and after it:", "",
                *(f"- {line.strip()}" for rec in ("limits_before", "limits_after")
                  for line in describe(res[rec])), ""]
    write_section(path, LIMITS_HEADING, lim_body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="d=64 only (about two minutes on 2 cores); on cuda: N=1M, d=64")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for the kernels, the baselines and the limits (0: all cores)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="folder for the JSON results (default bench/results)")
    p.add_argument("--readme", action="store_true",
                   help="rewrite the Top-k and Limits sections of bench/README.md")
    args = p.parse_args(argv)
    if args.threads < 0:
        p.error("--threads: expected 0 (all cores) or a positive count")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        res = cuda_sweep(args.quick)
        res["machine"] = machine()
        (args.out / "topk_cuda.json").write_text(json.dumps(res, indent=1))
        print("\n".join(summarise_cuda(res)))
        return 0
    threads = args.threads or os.cpu_count() or 1
    res: dict[str, Any] = {"machine": machine(), "k": K, "quick": args.quick,
                           "threads": threads}
    print(f"machine: {res['machine']}")
    res["load_before"] = os.getloadavg()  # a shared machine skews timings: record its load
    res["limits_before"] = limits(threads)
    print("\n".join(describe(res["limits_before"])))
    res.update(cpu_sweep(args.quick, threads))
    res["limits_after"] = limits(threads)
    res["load_after"] = os.getloadavg()
    (args.out / "topk.json").write_text(json.dumps(res, indent=1))
    print("\n".join(summarise(res)))
    print("\n".join(targets(res)))
    if args.readme:
        write_readme(res, HERE / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
