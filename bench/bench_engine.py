"""End-to-end latency of Engine.decide + feedback, beside the cost of its parts.

Workload: 10 offers, LinTS over a 16-feature context, k=20 items recommended from
10,000 (d=64 float32 embeddings), budget pacing and the fairness bound on. Each
request: decide (recommend, quote, mask, bias, select) then one purchase or
click feedback. The parts are timed alone in the same run on the same inputs:
scoring (top-k softmax), the policy (select + update), quoting the offers on the
basket, feature vector (when the feature store is available); the rest is the
Python layer. decide_batch throughput is measured on 1,000-request batches.

Run: python bench/bench_engine.py [--requests N] [--json PATH]
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
from promobandit.constraints import BudgetConfig, FairnessConfig
from promobandit.engine import Engine, EngineConfig
from promobandit.engine.items import ItemRecommender
from promobandit.offers import (
    Catalogue,
    Coupon,
    NoDiscount,
    PercentOff,
    SpendThreshold,
    TimeLimitedPercentOff,
)
from promobandit.policies import make_policy
from promobandit.scoring import topk_softmax

N_ITEMS, DIM, K_ITEMS, D_CTX = 10_000, 64, 20, 16
T0 = 1_700_000_000.0


def catalogue() -> Catalogue:
    return Catalogue(offers=(
        NoDiscount(id="none"),
        *(PercentOff(id=f"pct{p}", fraction=p / 100) for p in (5, 10, 15, 20, 25, 30)),
        SpendThreshold(id="spend100_save15", spend=100.0, save=15.0),
        TimeLimitedPercentOff(id="flash20", fraction=0.20, hours=24.0),
        Coupon(id="coupon10", amount=10.0, min_spend=50.0, days=14.0),
    ), currency="EUR", minor_unit=0.01, margin_floor=0.0)


def build(seed: int = 0, policy: str = "LinTS") -> tuple[Engine, ItemRecommender]:
    rs = np.random.default_rng(seed)
    items = rs.normal(size=(N_ITEMS, DIM)).astype(np.float32) / np.sqrt(DIM)
    prices = rs.uniform(5.0, 80.0, N_ITEMS)
    rec = ItemRecommender(items, rs.integers(0, 20, N_ITEMS), prices, prices * 0.5, k=K_ITEMS)
    cat = catalogue()
    settings = {"v": 0.2, "propensity_draws": 100} if policy == "LinTS" else {}
    pol = make_policy(policy, len(cat), D_CTX, seed=seed, **settings)
    cfg = EngineConfig(budget=BudgetConfig(amount=1e5, start=T0), fairness=FairnessConfig(),
                       caps=None, feedback_wait_seconds=600.0)
    return Engine(cat, pol, cfg, privacy_key=b"bench-key-0123456789", recommender=rec), rec


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean())}




def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "engine.json")
    args = ap.parse_args(argv)
    n = args.requests
    rs = np.random.default_rng(1)
    ctx = rs.normal(size=(n, D_CTX))
    groups = ["new" if g else "returning" for g in rs.random(n) < 0.3]
    buy = rs.random(n) < 0.1

    eng, rec = build()
    # warm up (Numba/JIT, caches)
    for i in range(200):
        d = eng.decide(f"w{i}", context=ctx[i], group=groups[i], now=T0 + i * 0.01)
        eng.feedback(d.id, f"w{i}", clicked=True, now=T0 + i * 0.01)
    total, dec, fb = [], [], []
    for i in range(n):
        now = T0 + 10.0 + i * 0.01
        t0 = time.perf_counter()
        d = eng.decide(f"user{i % 5000}", context=ctx[i], group=groups[i], now=now)
        t1 = time.perf_counter()
        eng.feedback(d.id, f"e{i}", purchased=bool(buy[i]), clicked=True, item=int(d.items[0]),
                     now=now)
        t2 = time.perf_counter()
        total.append(t2 - t0)
        dec.append(t1 - t0)
        fb.append(t2 - t1)

    # the parts, alone, on the same inputs
    u = rec.user_vector("nobody")
    parts: dict[str, list[float]] = {"scoring": [], "policy": [], "quote": []}
    pol = make_policy("LinTS", 10, D_CTX, seed=3, v=0.2, propensity_draws=100)
    basket = rec.basket(np.arange(K_ITEMS))
    cat = eng.catalogue
    for i in range(n):
        t0 = time.perf_counter()
        topk_softmax(rec.items, u, K_ITEMS, n_threads=1)
        t1 = time.perf_counter()
        a, _ = pol.select(ctx[i])
        pol.update(a, 0.5, ctx[i])
        t2 = time.perf_counter()
        cat.quote(basket, T0)
        t3 = time.perf_counter()
        parts["scoring"].append(t1 - t0)
        parts["policy"].append(t2 - t1)
        parts["quote"].append(t3 - t2)

    features_part = None
    try:
        from promobandit import features as feats  # noqa: F401  (lands with issue 4)
    except ImportError:
        pass

    # decide_batch throughput (no recommender in the batch path: baskets are given)
    beng, _ = build(policy="LinTS")
    baskets = [basket] * 1000
    rates = []
    for r in range(5):
        users = [f"b{r}-{i}" for i in range(1000)]
        t0 = time.perf_counter()
        beng.decide_batch(users, contexts=ctx[:1000], baskets=baskets,
                          groups=groups[:1000], now=T0 + 100.0 * r)
        rates.append(1000 / (time.perf_counter() - t0))

    res = {
        "machine": machine(),
        "requests": n,
        "decide_plus_feedback": percentiles(total),
        "decide": percentiles(dec),
        "feedback": percentiles(fb),
        "parts": {k: percentiles(v) for k, v in parts.items()},
        "features": features_part,
        "decide_batch_per_s": {"median": statistics.median(rates), "min": min(rates),
                               "max": max(rates)},
    }
    native = sum(res["parts"][k]["p50_us"] for k in ("scoring", "policy"))
    res["python_layer_p50_us"] = res["decide_plus_feedback"]["p50_us"] - native
    print(f"machine: {res['machine']}; {n} requests; latency in microseconds")
    print(f"{'':<26}{'p50':>10}{'p99':>10}")
    for name in ("decide_plus_feedback", "decide", "feedback"):
        r = res[name]
        print(f"{name:<26}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}")
    for name, r in res["parts"].items():
        print(f"  part: {name:<18}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}")
    print(f"python layer (p50 total - p50 native parts): {res['python_layer_p50_us']:.1f} us")
    b = res["decide_batch_per_s"]
    print(f"decide_batch: {b['median']:,.0f} decisions/s [{b['min']:,.0f} - {b['max']:,.0f}]")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
