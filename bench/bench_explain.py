"""What explanations cost: Engine.decide + feedback with explanations off, on per request,
and kept for every decision, beside the engine before explanations existed.

Workload: 10 offers, LinTS over a 16-feature context, budget pacing and the fairness
bound on, no recommender (the basket is given: the offer path is what explanations
touch). Each request: decide, then a purchase for every other one (finalised at once);
the rest expire after the wait. Four engines run the same requests:

- baseline: ``engine/engine.py`` as it was at BASE_COMMIT (before issue 16), loaded from
  git into the current package (its helpers are unchanged), so the ratio of "off" to it
  is the cost of the new code on the plain path;
- off: today's engine, ``decide(...)``;
- on: ``decide(..., explain=True)``;
- keep: ``EngineConfig(keep_explanations=True)`` (every decision explained and kept).

Rounds are interleaved (baseline, off, on, keep, baseline, ...) so a change of machine
load hits all four alike; each figure is the median over rounds of the per-request time
of a round, with the spread (min-max over rounds). Ratios are against the baseline.

Run: python bench/bench_explain.py [--requests N] [--rounds R] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine
from promobandit.constraints import BudgetConfig, FairnessConfig
from promobandit.engine import Engine
from promobandit.offers import Basket, Catalogue, NoDiscount, PercentOff, SpendThreshold
from promobandit.policies import make_policy

BASE_COMMIT = "43c714b"  # main when issue 16 started
D_CTX = 16
T0 = 1_700_000_000.0
KEY = b"bench-key-0123456789"


def catalogue() -> Catalogue:
    return Catalogue(offers=(
        NoDiscount(id="none"),
        *(PercentOff(id=f"pct{p}", fraction=p / 100) for p in (5, 10, 15, 20, 25, 30, 35, 40)),
        SpendThreshold(id="spend100_save15", spend=100.0, save=15.0),
    ), currency="EUR", minor_unit=0.01, margin_floor=0.0)


def baseline_engine_class() -> type | None:
    """Engine as of BASE_COMMIT, or None where git or the commit is not at hand."""
    root = Path(__file__).resolve().parents[1]
    try:
        src = subprocess.run(["git", "show", f"{BASE_COMMIT}:python/promobandit/engine/engine.py"],
                             cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = "promobandit.engine._engine_before_issue16"
    mod = types.ModuleType(name)
    mod.__package__ = "promobandit.engine"
    sys.modules[name] = mod
    exec(compile(src, f"{BASE_COMMIT}:engine.py", "exec"), mod.__dict__)
    return mod.Engine  # type: ignore[no-any-return]


def build(cls: type, variant: str, seed: int = 0) -> Any:
    cat = catalogue()
    pol = make_policy("LinTS", len(cat), D_CTX, seed=seed, v=0.2, propensity_draws=100)
    mod = sys.modules[cls.__module__]
    cfg_cls = mod.EngineConfig
    kw: dict[str, Any] = {"budget": BudgetConfig(amount=1e5, start=T0),
                          "fairness": FairnessConfig(), "caps": None,
                          "feedback_wait_seconds": 600.0}
    if variant == "keep":
        kw["keep_explanations"] = True
    return cls(cat, pol, cfg_cls(**kw), privacy_key=KEY)


def workload(n: int, seed: int = 1) -> list[tuple[str, np.ndarray, Basket, str]]:
    rs = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rs.normal(size=D_CTX)
        x[0] = 1.0
        v = float(rs.uniform(20.0, 200.0))
        b = Basket.from_lines([(i % 50, 0, v * 0.6, v * 0.3, 1), (1000 + i % 7, 1, v * 0.2, v * 0.1, 2)])
        out.append((f"u{i % 500}", x, b, "a" if i % 3 else "b"))
    return out


def run(eng: Any, reqs: list[tuple[str, np.ndarray, Basket, str]], explain: bool) -> float:
    """Seconds per request (decide + feedback)."""
    t0 = time.perf_counter()
    for i, (u, x, b, g) in enumerate(reqs):
        now = T0 + i
        if explain:
            d = eng.decide(u, context=x, basket=b, group=g, now=now, explain=True)
        else:
            d = eng.decide(u, context=x, basket=b, group=g, now=now)
        if i % 2 == 0:
            eng.feedback(d.id, f"e{i}", purchased=True, now=now + 0.5)
    return (time.perf_counter() - t0) / len(reqs)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", type=Path,
                    default=Path(__file__).parent / "results" / "explain.json")
    args = ap.parse_args(argv)
    reqs = workload(args.requests)
    base = baseline_engine_class()
    variants = ["off", "on", "keep"]
    if base is not None:
        variants.insert(0, "baseline")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            eng = build(base if v == "baseline" else Engine, v)
            run(eng, reqs[:50], v == "on")  # warm-up (Numba dispatch, caches) on its own engine
            eng = build(base if v == "baseline" else Engine, v)
            times[v].append(run(eng, reqs, v == "on"))
    ref = statistics.median(times["baseline" if base is not None else "off"])
    rows = []
    for v in variants:
        med = statistics.median(times[v])
        rows.append({"variant": v, "median_us": med * 1e6, "min_us": min(times[v]) * 1e6,
                     "max_us": max(times[v]) * 1e6, "ratio": med / ref})
    print(f"machine: {machine()}")
    print(f"decide + feedback, LinTS d={D_CTX}, 10 offers, budget + fairness, "
          f"{args.requests} requests x {args.rounds} rounds (interleaved); baseline: engine.py at "
          f"{BASE_COMMIT}" + ("" if base is not None else " (not available: ratios vs off)"))
    print(f"{'variant':<10}{'median us/req':>15}{'min-max':>20}{'x baseline':>12}")
    for r in rows:
        print(f"{r['variant']:<10}{r['median_us']:>15.1f}"
              f"{r['min_us']:>10.1f}-{r['max_us']:<9.1f}{r['ratio']:>12.2f}")
    out = {"machine": machine(), "requests": args.requests, "rounds": args.rounds,
           "base_commit": BASE_COMMIT if base is not None else None, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
