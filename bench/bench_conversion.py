"""Decisions per second of ConversionTS beside LinTS and LinUCB, in the same run.

Workload: K=10 offers, d=32 context features (standard normal / sqrt(d)), each request
with its (K, 4) quotes (ConversionTS's exact per-offer money and price cuts). Every
policy first learns from 2,000 updates (so the state is not the prior), then:
  single: one decision at a time through the Python API (select), no update between;
  batch:  select_batch over 1,000 requests;
  update: one update at a time (update).
Propensities: ConversionTS and LinTS with propensity_draws 0 (no estimate) and 100, as
the simulator runs them. Backends: cpp and numba. Each figure is the median of
--repeats runs (min and max beside it), in decisions (or updates) per second, and the
ratio to LinTS with the same backend and draws in the same run.

Run as a script: python bench/bench_conversion.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine

K, D, BATCH, WARM = 10, 32, 1000, 2000


def problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (n, D) and quotes (n, K, 4): values in reward units, cuts >= 0."""
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, D)) / np.sqrt(D)
    q = np.empty((n, K, 4))
    q[:, :, 0] = rs.uniform(0.5, 2.0, (n, K))
    q[:, :, 1] = q[:, :, 0] + rs.uniform(0.0, 2.0, (n, K))
    q[:, :, 2] = rs.uniform(0.0, 0.3, (n, K))
    q[:, :, 3] = q[:, :, 2] + rs.uniform(0.0, 0.1, (n, K))
    return x, q


def make(kind: str, backend: str, draws: int) -> Any:
    from promobandit.policies import ConversionTS, LinTS, LinUCB

    if kind == "ConversionTS":
        return ConversionTS(K, D, seed=1, backend=backend, propensity_draws=draws)
    if kind == "LinTS":
        return LinTS(K, D, seed=1, backend=backend, v=0.25, propensity_draws=draws)
    return LinUCB(K, D, seed=1, backend=backend, alpha=0.3)


def warm(pol: Any, kind: str, x: np.ndarray, q: np.ndarray) -> None:
    rs = np.random.default_rng(5)
    arms = rs.integers(0, K, WARM)
    if kind == "ConversionTS":
        pol.update_batch(arms, rs.integers(0, 3, WARM), x[:WARM],
                         np.ascontiguousarray(q[np.arange(WARM), arms, 2:]))
    else:
        pol.update_batch(arms, rs.normal(size=WARM), x[:WARM])


def time_single(pol: Any, kind: str, x: np.ndarray, q: np.ndarray, n: int) -> float:
    sel = pol.select
    t = time.perf_counter()
    if kind == "ConversionTS":
        for i in range(n):
            sel(x[i], None, None, q[i])
    else:
        for i in range(n):
            sel(x[i])
    return n / (time.perf_counter() - t)


def time_batch(pol: Any, kind: str, x: np.ndarray, q: np.ndarray) -> float:
    t = time.perf_counter()
    if kind == "ConversionTS":
        pol.select_batch(x[:BATCH], quotes=q[:BATCH])
    else:
        pol.select_batch(x[:BATCH])
    return BATCH / (time.perf_counter() - t)


def time_update(pol: Any, kind: str, x: np.ndarray, q: np.ndarray, n: int) -> float:
    cuts = np.ascontiguousarray(q[:, 0, 2:])
    t = time.perf_counter()
    if kind == "ConversionTS":
        for i in range(n):
            pol.update(i % K, i % 3, x[i], cuts[i])
    else:
        for i in range(n):
            pol.update(i % K, 0.5, x[i])
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args()
    n = 2000 if args.quick else 10_000
    repeats = args.repeats or (3 if args.quick else 7)
    from promobandit import _backends

    backends = [b for b in ("cpp", "numba") if b != "cpp" or _backends.has_cpp()]
    x, q = problem(max(n, WARM, BATCH))
    print(f"machine: {machine()}")
    print(f"K={K} offers, d={D} features; medians of {repeats} runs (min-max), per second")
    rows = []
    for backend in backends:
        for draws in (0, 100):
            base: dict[str, float] = {}
            for kind in ("LinTS", "LinUCB", "ConversionTS"):
                if kind == "LinUCB" and draws:
                    continue  # deterministic: no propensity draws
                got: dict[str, list[float]] = {"single": [], "batch": [], "update": []}
                for _ in range(repeats):
                    pol = make(kind, backend, draws)
                    warm(pol, kind, x, q)
                    time_single(pol, kind, x, q, 200)  # compile / warm caches
                    got["single"].append(time_single(pol, kind, x, q, n))
                    got["batch"].append(time_batch(pol, kind, x, q))
                    got["update"].append(time_update(pol, kind, x, q, n // 4))
                for mode, vals in got.items():
                    med = statistics.median(vals)
                    if kind == "LinTS":
                        base[mode] = med
                    row = {"backend": backend, "draws": draws, "policy": kind, "mode": mode,
                           "per_second": med, "min": min(vals), "max": max(vals),
                           "vs_lints": med / base[mode] if mode in base else None}
                    rows.append(row)
                    ratio = f"{row['vs_lints']:.2f}x LinTS" if row["vs_lints"] else ""
                    print(f"{backend:6s} draws={draws:<4d} {kind:13s} {mode:7s} "
                          f"{med:>12,.0f}/s  ({min(vals):,.0f}-{max(vals):,.0f})  {ratio}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
