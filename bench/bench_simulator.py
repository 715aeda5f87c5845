"""Sessions per second: the marketplace simulator alone, and the whole loop per policy.

Simulator alone: everything the market does for a run of the default world, without the
engine: draw the sessions, click on the shown lists, price every offer and realise the
chosen one (expected profit of all 8 offers per decision included), with the offers of
a fixed rule. Two batchings: one call for the whole run (the floor of per-call cost) and
one call per 10-minute step, as the engine loop calls it. The lists are given (the
recommender's time is its own row).

Whole loop: `simulate.run.run_policy` per policy on the default market (the engine's
decide_batch, delayed feedback, expiry, the decision log off), sessions per second of
wall time, and the share of it spent in the simulator's own code.

Each figure is the median of --repeats runs with its min and max. Prints a table and
writes JSON (default bench/results/simulator.json).

    python bench/bench_simulator.py [--repeats 5] [--days 14] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from typing import Any

import numpy as np

from _machine import machine
from promobandit.simulate.config import SimulationConfig
from promobandit.simulate.market import RUN_START, Market
from promobandit.simulate.pipeline import prepare
from promobandit.simulate.run import run_policy


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def simulator_alone(market: Market, days: float, step_seconds: float | None,
                    shown: np.ndarray) -> tuple[int, float]:
    """(sessions, seconds) of the market's own work for a run of `days` days; `shown`:
    the lists of those sessions (the same seed draws the same sessions every call)."""
    t0 = time.perf_counter()
    s = market.sessions(days, origin=RUN_START)
    assert len(s) == shown.shape[0]
    pos, _ = market.clicks(s, shown)
    rows = np.flatnonzero(pos >= 0)
    t_click = s.time[rows] + s.click_delay[rows]
    order = np.argsort(t_click, kind="stable")
    rows, t_click = rows[order], t_click[order]
    items = shown[rows, pos[rows]]
    addons = Market.addons(shown[rows], pos[rows])
    offers = (rows % market.n_offers).astype(np.int64)  # a fixed rule: every offer in turn
    holdings = market.new_holdings()
    params = market.kernel_params()
    users, u_buy, u_recall = s.user[rows], s.u_buy[rows], s.u_recall[rows]
    if step_seconds is None:
        bounds = np.array([0, rows.shape[0]])
    else:
        edges = RUN_START + step_seconds * np.arange(1, int(days * 86_400 / step_seconds) + 2)
        bounds = np.concatenate([[0], np.searchsorted(t_click, edges, side="right")])
    for lo, hi in itertools.pairwise(bounds.tolist()):
        if hi > lo:
            market.step(users[lo:hi], items[lo:hi], addons[lo:hi], t_click[lo:hi],
                        offers[lo:hi], u_buy[lo:hi], u_recall[lo:hi], holdings, params=params)
    return len(s), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--loop-repeats", type=int, default=3)
    ap.add_argument("--json", default=os.path.join("bench", "results", "simulator.json"))
    args = ap.parse_args()
    cfg = SimulationConfig.from_dict({"days": args.days})
    out: dict[str, Any] = {"machine": machine(), "days": args.days,
                           "users": cfg.market.n_users, "rows": []}
    print(out["machine"])

    market = Market(cfg.market, cfg.catalogue)
    s = market.sessions(args.days, origin=RUN_START)
    t0 = time.perf_counter()
    shown = market.oracle_lists(s)
    list_seconds = time.perf_counter() - t0
    # Compile / load the Numba kernels first.
    simulator_alone(market, 1.0, None, market.oracle_lists(market.sessions(1.0)))
    rows = out["rows"]
    for name, step in (("simulator alone, one batch", None),
                       ("simulator alone, 10-minute steps", 600.0)):
        rates = []
        for _ in range(args.repeats):
            n, sec = simulator_alone(market, args.days, step, shown)
            rates.append(n / sec)
        rows.append({"what": name, "sessions": n, "sessions_per_s": stats(rates)})
    rows.append({"what": "lists: the k best of the category (NumPy, oracle scores)",
                 "sessions": len(s), "sessions_per_s": stats([len(s) / list_seconds])})

    sc, *_ = prepare(cfg)
    for spec in cfg.specs():
        rates, shares = [], []
        for _ in range(args.loop_repeats):
            r = run_policy(spec, sc)
            rates.append(sc.n_sessions / r.seconds)
            shares.append(r.market_seconds / r.seconds)
        rows.append({"what": f"whole loop: {spec.label}", "sessions": sc.n_sessions,
                     "decisions": len(sc.decisions), "sessions_per_s": stats(rates),
                     "simulator_share": statistics.median(shares)})

    head = f"{'what':<48}{'sessions/s (median)':>20}{'min':>11}{'max':>11}{'sim. share':>12}"
    print(head)
    print("-" * len(head))
    for row in rows:
        st = row["sessions_per_s"]
        share = f"{100 * row['simulator_share']:.0f}%" if "simulator_share" in row else "-"
        print(f"{row['what'][:47]:<48}{st['median']:>20,.0f}{st['min']:>11,.0f}"
              f"{st['max']:>11,.0f}{share:>12}")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
