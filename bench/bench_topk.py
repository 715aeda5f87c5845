"""Benchmark of the fused top-k softmax scorer (promobandit.scoring.topk_softmax).

Sweeps N (items), d (dimension) and B (users per call) at k = 100 over the
backends cpp / numba (promobandit) and the baselines NumPy (matmul +
argpartition), torch (matmul + topk) and faiss IndexFlatIP (exact inner-product
search). The baselines only select the top k; promobandit also computes the
softmax normaliser over all N items, so the comparison favours them.

Every figure is the median of repeated calls with its spread (min, max); the
calls of one configuration are interleaved round-robin (backends, baselines and
floors alike), so a change in machine load affects them together. The same run
measures this machine's floors, so ratios are what is read:
- memory read bandwidth (2-thread NumPy sum of a 512 MiB array, timed within
  each B = 1 configuration): B = 1 is streaming-bound, reported as the fraction
  of that bandwidth reached (bytes of the item matrix / time);
- the SGEMM floor (torch matmul of B x d by d x N, no top-k, best of one call
  into a preallocated output and of item chunks whose output stays in cache):
  B = 256 is compute-bound, reported as time / floor.

Usage:
  python bench/bench_topk.py                 # full CPU sweep (~10 min on 2 cores)
  python bench/bench_topk.py --quick         # d = 64 only (~1 min)
  python bench/bench_topk.py --readme        # also rewrite the section in bench/README.md
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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from promobandit import _backends
from promobandit.scoring import to_bfloat16, topk_softmax

HERE = Path(__file__).resolve().parent
K = 100
SEED = 0
# Repetitions per configuration (after one warm-up call): more for fast calls.
REPS_FAST, REPS_SLOW = 7, 3
# A configuration whose single call exceeds this many seconds is not repeated.
SLOW_CALL_S = 5.0
# Items per chunk of the cache-resident SGEMM floor: a (256 x chunk) float32 output is 16 MiB.
GEMM_CHUNK = 16384
BANDWIDTH_BYTES = 512 * 2**20
README_HEADING = "## Top-k softmax scoring"
# How to read the table; written under it by --readme (the numbers above it change per run).
README_NOTES = [
    "How to read it:",
    "",
    "- B = 1 streams the item matrix once, so its bound is memory bandwidth: the note gives "
    "bytes of E / time as a fraction of the 2-thread NumPy read bandwidth. At N = 100k the "
    "matrix (at most 51 MB) sits largely in the 32 MiB L3, so fractions above 100% there are "
    "cache effects; the targets are judged at N = 1M (128-512 MB).",
    "- B = 256 is compute bound: time / SGEMM floor, where the floor is torch's own matmul "
    "of the same shapes with no top-k (best of one call into a preallocated output and of "
    "cache-sized item chunks). With d <= 128 that GEMM is short and wide and itself below the "
    "FMA peak, so the fused kernel (no N-wide score matrix, nothing written back to memory) "
    "can come in under 1x.",
    "- The 2-core machine is shared with other jobs (see the load average): single runs vary "
    "by up to 2x, and on a busy machine two threads can be slower than one. Calls of one "
    "configuration are interleaved, so read ratios within a row group, which share the "
    "same conditions, rather than absolute milliseconds. The bandwidth probe needs both "
    "cores at once and suffers more from other jobs than the kernel does: on a loaded "
    "machine it under-reads, and fractions above 100% mean a starved probe, not a kernel "
    "faster than memory.",
    "- numba is the portable fallback (scalar loops, no SIMD across the d products); its "
    "B = 256 runs are skipped at N = 1M (minutes per call).",
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


def bandwidth() -> dict[str, float]:
    """Read bandwidth in GB/s: NumPy sum over 512 MiB, on 1 and on 2 threads (halves)."""
    a = np.ones(BANDWIDTH_BYTES // 4, dtype=np.float32)
    one = timed(lambda: a.sum(), REPS_FAST)["min_s"]
    halves = np.array_split(a, 2)

    def two() -> None:
        ts = [threading.Thread(target=h.sum) for h in halves]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    both = timed(two, REPS_FAST)["min_s"]
    return {"read_1thread_GBps": a.nbytes / one / 1e9, "read_2threads_GBps": a.nbytes / both / 1e9}


def sgemm_fns(torch: Any, e: np.ndarray, u: np.ndarray) -> dict[str, Callable[[], Any]]:
    """B x d by d x N float32 matmul with no top-k, two layouts (the floor is the faster):
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
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [{"backend": name, "dtype": dtype, "median_s": statistics.median(times[i]),
             "min_s": min(times[i]), "max_s": max(times[i]), "reps": len(times[i])}
            for i, (name, dtype, _) in enumerate(entries)]


def cpu_sweep(quick: bool) -> dict[str, Any]:
    torch = _import("torch")
    faiss = _import("faiss")
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    floors: dict[str, Any] = {}
    probe = np.ones(BANDWIDTH_BYTES // 4, dtype=np.float32)
    halves_of_probe = np.array_split(probe, 2)

    def read_probe() -> None:  # the 2-thread read bandwidth probe, timed alongside B = 1
        ts = [threading.Thread(target=h.sum) for h in halves_of_probe]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

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
                                        backend=backend: topk_softmax(items, users, K,
                                                                      backend=backend)))
                entries += [(name, "float32", fn)
                            for name, fn in baselines(torch, faiss, e, u).items()]
                if b == 1:
                    entries.append(("read-bandwidth", "float32", read_probe))
                elif torch is not None:
                    entries += [(f"sgemm-{layout}", "float32", fn)
                                for layout, fn in sgemm_fns(torch, e, u).items()]
                res = interleaved(entries, REPS_FAST if b == 1 else REPS_SLOW)
                for r in res:
                    r.update({"N": n, "d": d, "B": b, "k": K})
                    if r["backend"] == "read-bandwidth":
                        r["GBps"] = probe.nbytes / r["median_s"] / 1e9
                    _show(r)
                gemm = [r for r in res if r["backend"].startswith("sgemm-")]
                if gemm:
                    best = min(gemm, key=lambda r: r["median_s"])
                    floors[f"{n}x{d}x{b}"] = {**best, "gflops": 2.0 * n * d * b /
                                              best["median_s"] / 1e9}
                rows += [r for r in res if not r["backend"].startswith("sgemm-")]
    return {"rows": rows, "sgemm_floor": floors}


def cuda_sweep(quick: bool) -> dict[str, Any]:
    torch = _import("torch")
    if torch is None or not torch.cuda.is_available():
        raise SystemExit("--device cuda needs torch with a CUDA device")

    def sync_timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
        def run() -> None:
            fn()
            torch.cuda.synchronize()

        return timed(run, reps)

    rows: list[dict[str, Any]] = []
    floors: dict[str, Any] = {}
    gen = torch.Generator(device="cuda").manual_seed(SEED)
    # B = 4096 only at N = 1M: the candidate workspace is B * ceil(N / 1024) * min(k, 1024)
    # * 12 bytes, and torch's dense (B, N) score matrix is B * N * 4 bytes.
    configs = [(1_000_000, 64, b) for b in (1, 256, 4096)]
    if not quick:
        configs += [(1_000_000, 128, b) for b in (1, 256, 4096)]
        configs += [(10_000_000, d, b) for d in (64, 128) for b in (1, 256)]
    for n, d, b in configs:
        e = torch.randn(n, d, device="cuda", generator=gen) / d**0.5
        u = torch.randn(b, d, device="cuda", generator=gen)
        users = u[0] if b == 1 else u
        cfg = {"N": n, "d": d, "B": b, "k": K}
        for dtype, t in (("float32", torch.float32), ("float16", torch.float16),
                         ("bfloat16", torch.bfloat16)):
            items = e.to(t)
            r = sync_timed(lambda items=items, users=users:
                           topk_softmax(items, users, K, backend="cuda"), REPS_FAST)
            rows.append({**cfg, "backend": "cuda", "dtype": dtype, **r})
            _show(rows[-1])
            ut = u.to(t)
            r = sync_timed(lambda items=items, ut=ut: torch.topk(ut @ items.T, K, dim=1),
                           REPS_FAST)
            rows.append({**cfg, "backend": "torch-cuda", "dtype": dtype, **r})
            _show(rows[-1])
            del items, ut
        full = torch.empty((b, n), device="cuda")
        floors[f"{n}x{d}x{b}"] = sync_timed(lambda u=u, full=full, e=e:
                                            torch.matmul(u, e.T, out=full), REPS_FAST)
        del e, u, users, full
        torch.cuda.empty_cache()
    return {"rows": rows, "sgemm_floor": floors,
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _show(r: dict[str, Any]) -> None:
    print(f"  {r['backend']:>10} {r['dtype']:>8} N={r['N']:>8} d={r['d']:>3} B={r['B']:>4}: "
          f"{r['median_s'] * 1e3:9.2f} ms  [{r['min_s'] * 1e3:.2f}, {r['max_s'] * 1e3:.2f}] "
          f"x{r['reps']}", flush=True)


def summarise(res: dict[str, Any]) -> list[str]:
    """The results as a markdown table: ratios to cpp float32 (CPU) or to torch on the
    same dtype (GPU), bandwidth reached at B = 1, and time / SGEMM floor at B > 1."""
    bw = res.get("bandwidth", {}).get("read_2threads_GBps")
    rows = res["rows"]
    gpu = "gpu" in res

    def find(backend: str, dtype: str, n: int, d: int, b: int) -> dict[str, Any] | None:
        for r in rows:
            if (r["backend"], r["dtype"], r["N"], r["d"], r["B"]) == (backend, dtype, n, d, b):
                return r
        return None

    vs = "vs torch-cuda, same dtype" if gpu else "vs cpp float32"
    lines = [f"| N | d | B | backend | dtype | median ms [min, max] | {vs} | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if gpu:
            ref = find("torch-cuda", r["dtype"], r["N"], r["d"], r["B"])
        else:
            ref = find("cpp", "float32", r["N"], r["d"], r["B"])
        ratio = f"{r['median_s'] / ref['median_s']:.2f}x" if ref else ""
        note = ""
        probe = find("read-bandwidth", "float32", r["N"], r["d"], r["B"])
        row_bw = probe["GBps"] if probe else bw
        if r["backend"] == "read-bandwidth":
            note = f"{r['GBps']:.1f} GB/s (2-thread NumPy sum of 512 MiB)"
        elif r["backend"] in ("cpp", "numba", "cuda") and r["B"] == 1:
            itemsize = 4 if r["dtype"] == "float32" else 2
            gbps = r["N"] * r["d"] * itemsize / r["median_s"] / 1e9
            note = f"{gbps:.1f} GB/s" + (f" = {gbps / row_bw:.0%} of bandwidth" if row_bw else "")
        floor = res["sgemm_floor"].get(f"{r['N']}x{r['d']}x{r['B']}")
        if floor and r["B"] > 1:
            note = (f"{r['median_s'] / floor['median_s']:.2f}x SGEMM floor "
                    f"({floor['median_s'] * 1e3:.1f} ms, {floor['backend'][6:]})")
        lines.append(f"| {r['N']:,} | {r['d']} | {r['B']} | {r['backend']} | {r['dtype']} | "
                     f"{r['median_s'] * 1e3:.2f} [{r['min_s'] * 1e3:.2f}, "
                     f"{r['max_s'] * 1e3:.2f}] | {ratio} | {note} |")
    return lines


def targets(res: dict[str, Any]) -> list[str]:
    """The targets of issue 3 checked against this run (cpp backend); bandwidth from the
    probe timed alongside each B = 1 configuration."""
    bw = res.get("bandwidth", {}).get("read_2threads_GBps")
    out = []
    rows = res["rows"]

    def med(backend: str, dtype: str, n: int, d: int, b: int) -> float | None:
        for r in rows:
            if (r["backend"], r["dtype"], r["N"], r["d"], r["B"]) == (backend, dtype, n, d, b):
                return float(r["median_s"])
        return None

    n_big = max(r["N"] for r in rows)
    for d in sorted({r["d"] for r in rows}):
        t32 = med("cpp", "float32", n_big, d, 1)
        t_probe = med("read-bandwidth", "float32", n_big, d, 1)
        row_bw = BANDWIDTH_BYTES / t_probe / 1e9 if t_probe else bw
        if t32 and row_bw:
            frac = n_big * d * 4 / t32 / 1e9 / row_bw
            out.append(f"- B=1 float32, N={n_big:,} d={d}: {frac:.0%} of the 2-thread read "
                       f"bandwidth (target >= 75%): {'met' if frac >= 0.75 else 'MISSED'}")
        for h in ("float16", "bfloat16"):
            th = med("cpp", h, n_big, d, 1)
            if t32 and th:
                out.append(f"- B=1 {h} vs float32, N={n_big:,} d={d}: {t32 / th:.2f}x faster "
                           f"(target about 2x)")
        tb = med("cpp", "float32", n_big, d, 256)
        floor = res["sgemm_floor"].get(f"{n_big}x{d}x256")
        if tb and floor:
            ratio = tb / floor["median_s"]
            out.append(f"- B=256 float32, N={n_big:,} d={d}: {ratio:.2f}x the SGEMM floor "
                       f"(target <= 2x): {'met' if ratio <= 2 else 'MISSED'}")
        for base, want in (("torch", 3.0), ("faiss", 3.0), ("numpy", 10.0)):
            tb_base = med(base, "float32", n_big, d, 256)
            if tb and tb_base:
                sp = tb_base / tb
                op = ">=" if want == 3.0 else ">"
                ok = sp >= want if want == 3.0 else sp > want
                out.append(f"- B=256 N={n_big:,} d={d}: {sp:.2f}x faster than {base} "
                           f"(target {op} {want:g}x): {'met' if ok else 'MISSED'}")
    return out


def write_readme(res: dict[str, Any], path: Path) -> None:
    """Replaces (or appends) this benchmark's section of bench/README.md, leaving the rest."""
    m = res["machine"]
    bw = res.get("bandwidth", {})
    body = [README_HEADING, "",
            "`python bench/bench_topk.py` (k = 100; JSON in `bench/results/topk.json`). "
            f"Machine: {m.get('Model name', '?')}, {m.get('cpus', '?')} cores "
            f"({m.get('Core(s) per socket', '?')} per socket, L2 {m.get('L2 cache', '?')}, "
            f"L3 {m.get('L3 cache', '?')}), C++ kernels on {m.get('cpp_isa', '?')}. "
            f"Read bandwidth (NumPy sum): {bw.get('read_1thread_GBps', 0):.1f} GB/s on one "
            f"thread, {bw.get('read_2threads_GBps', 0):.1f} GB/s on two. Load average (1 min) "
            f"{res.get('load_before', [0])[0]:.2f} before the run, "
            f"{res.get('load_after', [0])[0]:.2f} after: the machine is shared, so medians "
            "carry that noise. Baselines select the top k only; promobandit also computes the "
            "softmax normaliser over all N items.", "",
            *summarise(res), "", "Targets (cpp backend):", "", *targets(res), ""]
    body += [*README_NOTES, ""]
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == README_HEADING), None)
    if start is None:
        new = [*lines, "", *body]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = [*lines[:start], *body, *lines[end:]]
    path.write_text("\n".join(new).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="d=64 only (about a minute on 2 cores); on cuda: N=1M, d=64")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="folder for the JSON results (default bench/results)")
    p.add_argument("--readme", action="store_true",
                   help="rewrite the '## Top-k softmax scoring' section of bench/README.md")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        res = cuda_sweep(args.quick)
        res["machine"] = machine()
        (args.out / "topk_cuda.json").write_text(json.dumps(res, indent=1))
        print("\n".join(summarise(res)))
        return 0
    res: dict[str, Any] = {"machine": machine(), "k": K, "quick": args.quick}
    print(f"machine: {res['machine']}")
    res["load_before"] = os.getloadavg()  # a shared machine skews timings: record its load
    res["bandwidth"] = bandwidth()
    print(f"bandwidth: {res['bandwidth']}")
    res.update(cpu_sweep(args.quick))
    res["bandwidth_after"] = bandwidth()
    res["load_after"] = os.getloadavg()
    (args.out / "topk.json").write_text(json.dumps(res, indent=1))
    print("\n".join(summarise(res)))
    print("\n".join(targets(res)))
    if args.readme:
        write_readme(res, HERE / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
