"""End-to-end latency of Engine.decide + feedback on the real request path, beside a
baseline path and the cost of the parts.

Workload: 10 offers, LinTS over a 16-feature context, k=20 items recommended from
10,000 (d=64 float32 embeddings), budget pacing and the fairness bound on, the Parquet
decision log on (a part written every LOG_FLUSH_ROWS rows, inside the timed requests).
The real path: requests come from N_USERS returning users, each with HISTORY clicked
items (so their user vectors are real, not the all-zero vector of a new user); time
moves STEP_S per request; each request is decided, then gets a click (P_CLICK), a
purchase that finalises it (P_BUY), or nothing, in which case it expires with the
default reward once the wait (WAIT_S) has passed, inside a later decide.
The baseline, timed in the same run interleaved with it: the path this script timed
before (a new user per request, no log, nothing expiring).
The parts are timed alone on the same inputs: scoring (top-k softmax on the returning
users' vectors), the policy (select + update), quoting the offers on the basket; the
rest is the Python layer. decide_batch throughput is measured on 1,000-request batches
with the log on.

Run: python bench/bench_engine.py [--requests N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
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
# The real path's workload (see the module doc).
N_USERS, HISTORY = 2_000, 10
STEP_S, WAIT_S = 0.5, 60.0          # seconds between requests; feedback wait
P_CLICK, P_BUY = 0.3, 0.1           # per request; the rest gets no feedback and expires
LOG_FLUSH_ROWS = 1_000              # decision-log rows per Parquet part
ROUNDS = 10                         # interleaved chunks of real and baseline requests


def catalogue() -> Catalogue:
    return Catalogue(offers=(
        NoDiscount(id="none"),
        *(PercentOff(id=f"pct{p}", fraction=p / 100) for p in (5, 10, 15, 20, 25, 30)),
        SpendThreshold(id="spend100_save15", spend=100.0, save=15.0),
        TimeLimitedPercentOff(id="flash20", fraction=0.20, hours=24.0),
        Coupon(id="coupon10", amount=10.0, min_spend=50.0, days=14.0),
    ), currency="EUR", minor_unit=0.01, margin_floor=0.0)


def build(seed: int = 0, policy: str = "LinTS",
          log_dir: str | None = None) -> tuple[Engine, ItemRecommender]:
    rs = np.random.default_rng(seed)
    items = rs.normal(size=(N_ITEMS, DIM)).astype(np.float32) / np.sqrt(DIM)
    prices = rs.uniform(5.0, 80.0, N_ITEMS)
    rec = ItemRecommender(items, rs.integers(0, 20, N_ITEMS), prices, prices * 0.5, k=K_ITEMS)
    cat = catalogue()
    settings = {"v": 0.2, "propensity_draws": 100} if policy == "LinTS" else {}
    pol = make_policy(policy, len(cat), D_CTX, seed=seed, **settings)
    cfg = EngineConfig(budget=BudgetConfig(amount=1e5, start=T0), fairness=FairnessConfig(),
                       caps=None, feedback_wait_seconds=WAIT_S)
    return Engine(cat, pol, cfg, privacy_key=b"bench-key-0123456789", recommender=rec,
                  log_dir=log_dir, log_flush_rows=LOG_FLUSH_ROWS), rec


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean())}


def give_histories(eng: Engine, rec: ItemRecommender, users: list[str], seed: int) -> None:
    """Each user gets HISTORY clicked items, as returning shoppers have: their user vector
    (the mean embedding of the history) is then not the all-zero vector of a new user."""
    rs = np.random.default_rng(seed)
    for u in users:
        uh = eng.pseudonym(u)
        for item in rs.integers(0, N_ITEMS, HISTORY):
            rec.observe(uh, None, int(item))


def real_path(eng: Engine, users: list[str], ctx: np.ndarray, groups: list[str],
              outcome: np.ndarray, t_start: float) -> tuple[list[float], list[float],
                                                            list[float], float]:
    """The request path as served: a returning user, decide, then that request's feedback
    (a click, a purchase that finalises, or nothing, so the decision expires with the
    default reward after the wait, inside a later decide). Returns per-request seconds
    (total and decide for every request, feedback for those with an event) and the time
    reached."""
    total, dec, fb = [], [], []
    now = t_start
    for i, user in enumerate(users):
        now += STEP_S
        t0 = time.perf_counter()
        d = eng.decide(user, context=ctx[i], group=groups[i], now=now)
        t1 = time.perf_counter()
        if outcome[i] == 1:
            eng.feedback(d.id, f"c{d.id}", clicked=True, item=int(d.items[0]), now=now)
        elif outcome[i] == 2:
            eng.feedback(d.id, f"p{d.id}", purchased=True, item=int(d.items[0]), now=now)
        t2 = time.perf_counter()
        total.append(t2 - t0)
        dec.append(t1 - t0)
        if outcome[i]:  # the feedback latency of requests that had an event
            fb.append(t2 - t1)
    return total, dec, fb, now


def bare_path(eng: Engine, ctx: np.ndarray, groups: list[str], buy: np.ndarray,
              first: int, t_start: float) -> tuple[list[float], float]:
    """The baseline: the path this benchmark timed before: a new user every request (an
    all-zero user vector), a click plus a purchase on 10% of requests, no log, and time
    moving too slowly for any decision to expire."""
    total = []
    now = t_start
    for i in range(len(ctx)):
        now += 0.01
        t0 = time.perf_counter()
        d = eng.decide(f"new{first + i}", context=ctx[i], group=groups[i], now=now)
        eng.feedback(d.id, f"e{first + i}", purchased=bool(buy[i]), clicked=True,
                     item=int(d.items[0]), now=now)
        total.append(time.perf_counter() - t0)
    return total, now


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "engine.json")
    args = ap.parse_args(argv)
    n = args.requests
    rs = np.random.default_rng(1)
    ctx = rs.normal(size=(n, D_CTX))
    groups = ["new" if g else "returning" for g in rs.random(n) < 0.3]
    # 0: no feedback (expires with the default reward), 1: a click, 2: a purchase.
    outcome = rs.choice(3, size=n, p=[1 - P_CLICK - P_BUY, P_CLICK, P_BUY])
    population = [f"user{j}" for j in range(N_USERS)]
    users = [population[j] for j in rs.integers(0, N_USERS, n)]
    buy = rs.random(n) < 0.1

    with tempfile.TemporaryDirectory(prefix="bench-engine-log-") as log_dir:
        eng, rec = build(log_dir=log_dir)
        give_histories(eng, rec, population, seed=2)
        base, _ = build(seed=0)
        # warm up both (Numba/JIT, caches) with requests of their own
        real_path(eng, population[:200], ctx[:200], groups[:200], outcome[:200], T0)
        bare_path(base, ctx[:200], groups[:200], buy[:200], -200, T0)
        # Interleaved in ROUNDS chunks, so the machine's load hits both paths alike.
        total, dec, fb, bare = [], [], [], []
        t_real, t_bare = T0 + 1000.0, T0 + 1000.0
        wall = 0.0
        for lo in range(0, n, n // ROUNDS or n):
            hi = min(n, lo + (n // ROUNDS or n))
            w0 = time.perf_counter()
            a, b, c, t_real = real_path(eng, users[lo:hi], ctx[lo:hi], groups[lo:hi],
                                        outcome[lo:hi], t_real)
            wall += time.perf_counter() - w0
            total += a
            dec += b
            fb += c
            d_, t_bare = bare_path(base, ctx[lo:hi], groups[lo:hi], buy[lo:hi], lo, t_bare)
            bare += d_
        w0 = time.perf_counter()
        eng.close(t_real + 10 * WAIT_S)  # what is still pending expires; the log is flushed
        close_s = time.perf_counter() - w0
        stats = dict(eng.stats)
        log_parts = len(list(Path(log_dir).glob("**/*.parquet")))
        rows_written = eng.log.rows_written if eng.log is not None else 0

    # the parts, alone, on the same inputs (returning users' vectors)
    uvecs = [rec.user_vector(eng.pseudonym(u)) for u in users]
    zero_share = float(np.mean([not np.any(v) for v in uvecs]))
    parts: dict[str, list[float]] = {"scoring": [], "policy": [], "quote": []}
    pol = make_policy("LinTS", 10, D_CTX, seed=3, v=0.2, propensity_draws=100)
    basket = rec.basket(np.arange(K_ITEMS))
    cat = eng.catalogue
    for i in range(n):
        t0 = time.perf_counter()
        topk_softmax(rec.items, uvecs[i], K_ITEMS, n_threads=1)
        t1 = time.perf_counter()
        a, _ = pol.select(ctx[i])
        pol.update(a, 0.5, ctx[i])
        t2 = time.perf_counter()
        cat.quote(basket, T0)
        t3 = time.perf_counter()
        parts["scoring"].append(t1 - t0)
        parts["policy"].append(t2 - t1)
        parts["quote"].append(t3 - t2)

    # decide_batch throughput (no recommender in the batch path: baskets are given),
    # the Parquet log on
    with tempfile.TemporaryDirectory(prefix="bench-engine-batch-") as log_dir:
        beng, _ = build(policy="LinTS", log_dir=log_dir)
        baskets = [basket] * 1000
        rates = []
        for r in range(5):
            batch_users = [population[j] for j in rs.integers(0, N_USERS, 1000)]
            t0 = time.perf_counter()
            beng.decide_batch(batch_users, contexts=ctx[:1000], baskets=baskets,
                              groups=groups[:1000], now=T0 + 2 * WAIT_S * r)
            rates.append(1000 / (time.perf_counter() - t0))
        beng.close(T0 + 20 * WAIT_S)

    res = {
        "machine": machine(),
        "requests": n,
        "workload": {"users": N_USERS, "history": HISTORY, "step_s": STEP_S, "wait_s": WAIT_S,
                     "p_click": P_CLICK, "p_buy": P_BUY, "log_flush_rows": LOG_FLUSH_ROWS,
                     "zero_user_vectors": zero_share},
        "decide_plus_feedback": percentiles(total),
        "decide": percentiles(dec),
        "feedback": percentiles(fb),
        "baseline_bare_path": percentiles(bare),
        "real_path_per_s": n / wall,
        "close_s": close_s,
        "engine_stats": stats,
        "log_rows_written": rows_written,
        "log_parts": log_parts,
        "parts": {k: percentiles(v) for k, v in parts.items()},
        "decide_batch_per_s": {"median": statistics.median(rates), "min": min(rates),
                               "max": max(rates)},
    }
    native = sum(res["parts"][k]["p50_us"] for k in ("scoring", "policy"))
    res["python_layer_p50_us"] = res["decide_plus_feedback"]["p50_us"] - native
    print(f"machine: {res['machine']}; {n} requests from {N_USERS} returning users "
          f"({zero_share:.0%} with an all-zero user vector); latency in microseconds")
    print(f"{'':<34}{'p50':>10}{'p99':>10}")
    for name in ("decide_plus_feedback", "decide", "feedback", "baseline_bare_path"):
        r = res[name]
        print(f"{name:<34}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}")
    for name, r in res["parts"].items():
        print(f"  part: {name:<26}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}")
    ratio = res["decide_plus_feedback"]["p50_us"] / res["baseline_bare_path"]["p50_us"]
    print(f"real path / bare path (p50): {ratio:.2f}x; real path {res['real_path_per_s']:,.0f} "
          f"requests/s on one thread")
    print(f"python layer (p50 total - p50 native parts): {res['python_layer_p50_us']:.1f} us")
    print(f"engine: {stats['decisions']} decisions, {stats['finalised']} finalised "
          f"({stats['purchases']} purchases, {stats['defaulted']} expired with the default "
          f"reward), {rows_written} log rows in {log_parts} Parquet parts; final close "
          f"{close_s * 1e3:.1f} ms")
    b = res["decide_batch_per_s"]
    print(f"decide_batch: {b['median']:,.0f} decisions/s [{b['min']:,.0f} - {b['max']:,.0f}]")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
