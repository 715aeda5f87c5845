"""Speed of the business layer's per-request inputs, beside baselines in the same run.

Behaviour features (promobandit.features):
  batch        features_batch over a synthetic log (sessions of a funnel walk, 120 days,
               20 categories), against a plain pandas groupby implementation of the same
               features (checked to agree to 1e-9 before timing);
  add          FeatureStore.add per event, against appending the event to a Python list
               (the floor any incremental store pays);
  vector       FeatureStore.vector per request, against features_batch over the user's
               own rows (the naive way to serve from a raw event list).
Offer pricing (promobandit.offers), on the default catalogue plus an offer with
excluded categories and a coupon with excluded items (10 offers):
  eligible     Catalogue.eligible for baskets of 1, 5 and 20 lines, against a plain
               Python loop over offers and lines with the same rule (checked to give the
               same mask).
  quote        Catalogue.quote (the compiled kernel, backend "auto") for baskets of 1, 5
               and 20 lines, against the NumPy path of the same call (backend="numpy"),
               checked equal on every array.
  quote_batch  Catalogue.quote_batch over 1,000 baskets of 1-20 lines, per basket,
               against calling quote once per basket (checked equal row by row).
  basket       Basket.trusted for a 20-line basket, against the checked constructor.

Each figure is the median of --repeats runs, with the min and max beside it.
Run as a script: python bench/bench_features.py [--quick] [--only features|offers]
[--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from promobandit.features import Event, FeatureConfig, FeatureStore, features_batch
from promobandit.offers import (
    Basket,
    Catalogue,
    Coupon,
    PercentOff,
    Quote,
    SpendThreshold,
    TimeLimitedPercentOff,
    default_catalogue,
)
from promobandit.recommender.data import CART, PURCHASE

DAY = 86400.0
T0 = 1_700_000_000.0
N_CATEGORIES = 20


# --- workloads -----------------------------------------------------------------------------
def event_log(n_events: int, n_users: int, seed: int = 0) -> dict[str, np.ndarray]:
    """About n_events events in sessions (mean 8 events, 40 s apart) over 120 days,
    time-ordered; types along the funnel, purchases at 0-25% discount."""
    rs = np.random.default_rng(seed)
    n_sessions = max(n_events // 8, 1)
    per = 1 + rs.poisson(7, n_sessions)
    session = np.repeat(np.arange(n_sessions), per)
    n = session.shape[0]
    start = rs.uniform(0, 120 * DAY, n_sessions)
    gaps = rs.exponential(40.0, n)
    first = np.r_[0, np.cumsum(per)[:-1]]
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], per)
    t = T0 + start[session] + offset
    typ = rs.choice(4, n, p=[0.62, 0.22, 0.1, 0.06])
    disc = np.where((typ == PURCHASE) & (rs.random(n) < 0.4),
                    rs.choice([0.05, 0.1, 0.15, 0.25], n), 0.0)
    order = np.argsort(t, kind="stable")
    return {
        "user": rs.integers(0, n_users, n_sessions)[session][order],
        "event": typ[order],
        "category": rs.integers(0, N_CATEGORIES, n)[order],
        "price": np.round(rs.uniform(1, 150, n), 2)[order],
        "discount": disc[order],
        "timestamp": t[order],
    }


# --- the pandas baseline -------------------------------------------------------------------
def pandas_features(events: dict[str, np.ndarray], users: np.ndarray, now: float,
                    cfg: FeatureConfig) -> np.ndarray:
    """The same features, written the way one would in plain pandas (no history cap)."""
    import pandas as pd

    df = pd.DataFrame(events)
    df = df[df.timestamp <= now]
    buy = df.event == PURCHASE
    idx = pd.Index(users)
    cols: dict[str, Any] = {}
    cap = cfg.recency_cap_days

    def recency(s: pd.Series) -> pd.Series:
        days = ((now - s.reindex(idx)) / DAY).fillna(np.inf).clip(upper=cap)
        return np.log1p(days) / math.log1p(cap)

    cols["days_since_event"] = recency(df.groupby("user").timestamp.max())
    cols["days_since_purchase"] = recency(df[buy].groupby("user").timestamp.max())
    for w in cfg.frequency_windows_days:
        m = df.timestamp > now - w * DAY
        cols[f"events_{w:g}d"] = np.log1p(df[m].groupby("user").size().reindex(idx, fill_value=0))
    for w in cfg.frequency_windows_days:
        m = (df.timestamp > now - w * DAY) & buy
        cols[f"purchases_{w:g}d"] = np.log1p(
            df[m].groupby("user").size().reindex(idx, fill_value=0))
    for w in cfg.monetary_windows_days:
        m = (df.timestamp > now - w * DAY) & buy
        cols[f"spend_{w:g}d"] = np.log1p(df[m].groupby("user").price.sum().reindex(idx,
                                                                                 fill_value=0))
    aff = df[df.timestamp > now - cfg.affinity_window_days * DAY]
    weight = np.asarray(cfg.event_weights)[aff.event.to_numpy()]
    table = (aff.assign(w=weight).groupby(["user", "category"]).w.sum().unstack(fill_value=0.0)
             .reindex(index=idx, columns=range(cfg.n_categories), fill_value=0.0))
    share = table.div(table.sum(axis=1).replace(0.0, np.nan), axis=0).fillna(0.0)
    for c in range(cfg.n_categories):
        cols[f"affinity_{c}"] = share[c]
    bought = df[buy].assign(on_discount=df.discount > 0).groupby("user")
    cols["discount_share"] = bought.on_discount.mean().reindex(idx, fill_value=0.0)
    cols["discount_depth"] = bought.discount.mean().reindex(idx, fill_value=0.0)
    recent = df[df.timestamp > now - cfg.history_seconds].sort_values(["user", "timestamp"],
                                                                      kind="stable")
    new = (recent.user != recent.user.shift()) | (recent.timestamp.diff()
                                                  > cfg.session_gap_seconds)
    recent = recent.assign(sid=new.cumsum(),
                           cart_t=recent.timestamp.where(recent.event == CART),
                           buy_t=recent.timestamp.where(recent.event == PURCHASE))
    sessions = recent.groupby("sid").agg(
        user=("user", "first"), start=("timestamp", "min"), end=("timestamp", "max"),
        n=("timestamp", "size"), cart=("cart_t", "max"), buy=("buy_t", "max"))
    last = sessions.groupby("user").tail(1).set_index("user").reindex(idx)
    alive = (now - last.end) <= cfg.session_gap_seconds
    cols["session_events"] = np.log1p(last.n.where(alive, 0).fillna(0))
    cols["session_minutes"] = np.log1p(((now - last.start) / 60).where(alive, 0).fillna(0))
    open_ = alive & (last.cart.fillna(-np.inf) > last.buy.fillna(-np.inf))
    cols["session_cart_open"] = open_.astype(float)
    cols["bias"] = pd.Series(1.0, index=idx)
    return pd.DataFrame(cols)[cfg.feature_names()].to_numpy()


# --- a plain-Python eligibility baseline ---------------------------------------------------
def python_eligible(cat: Catalogue, basket: Basket) -> np.ndarray:
    """The margin-floor rule by loops over offers and lines (same rounding as promobandit.offers)."""
    per_unit = round(1 / cat.minor_unit)
    lines = list(zip(basket.item_ids.tolist(), basket.categories.tolist(),
                     basket.unit_prices.tolist(), basket.unit_costs.tolist(),
                     basket.quantities.tolist(), strict=True))
    out = []
    for offer in cat.offers:
        lst = [round(p * per_unit) * q for (_, _, p, _, q) in lines]
        floor = [min(math.ceil(c * (1 + cat.margin_floor) * q * per_unit - 1e-6), m)
                 for (_, _, _, c, q), m in zip(lines, lst, strict=True)]
        ok = [it not in offer.exclude_items and ct not in offer.exclude_categories
              for (it, ct, _, _, _) in lines]
        total = sum(m for m, e in zip(lst, ok, strict=True) if e)
        if isinstance(offer, (PercentOff, TimeLimitedPercentOff)):
            ppm = round(offer.fraction * 1_000_000)
            s = (2 * ppm * total + 1_000_000) // 2_000_000
        elif isinstance(offer, SpendThreshold):
            s = round(offer.save * per_unit) if total >= round(offer.spend * per_unit) else 0
        else:
            s = 0
        share = [s * m if e else 0 for m, e in zip(lst, ok, strict=True)]
        save = [x // max(total, 1) for x in share]
        rem = sorted(range(len(lines)), key=lambda i: (-(share[i] % max(total, 1)), i))
        for i in rem[:s - sum(save)]:
            save[i] += 1
        out.append(all(m - sv >= f for m, sv, f in zip(lst, save, floor, strict=True)))
    return np.array(out)


def baskets(n_lines: int, count: int, seed: int = 0) -> list[Basket]:
    rs = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        price = np.round(rs.uniform(2, 80, n_lines), 2)
        out.append(Basket(rs.integers(0, 10_000, n_lines), rs.integers(0, N_CATEGORIES, n_lines),
                          price, np.round(price * rs.uniform(0.5, 0.9, n_lines), 2),
                          rs.integers(1, 4, n_lines)))
    return out


# --- timing --------------------------------------------------------------------------------
def measure(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def per_call(fn: Callable[[], Any], calls: int, repeats: int) -> dict[str, float]:
    """Seconds per call: the median (min, max) over repeats of `calls` calls each."""
    def run() -> None:
        for _ in range(calls):
            fn()
    m = measure(run, repeats)
    return {k: v / calls for k, v in m.items()}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "cpus": os.cpu_count(), "processor": platform.processor()}


def fmt(m: dict[str, float], unit: str) -> str:
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    return f"{m['median'] * scale:9.2f} {unit} ({m['min'] * scale:.2f}-{m['max'] * scale:.2f})"


# --- the benchmark -------------------------------------------------------------------------
def run(quick: bool, repeats: int, only: str | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    if only != "offers":
        rows += feature_rows(quick, repeats)
    if only != "features":
        rows += offer_rows(quick, repeats)
    return {"machine": machine(), "repeats": repeats, "rows": rows}


def feature_rows(quick: bool, repeats: int) -> list[dict[str, Any]]:
    cfg = FeatureConfig(n_categories=N_CATEGORIES)
    rows: list[dict[str, Any]] = []

    sizes = [(100_000, 10_000)] if quick else [(100_000, 10_000), (1_000_000, 50_000)]
    for n_events, n_users in sizes:
        log = event_log(n_events, n_users)
        users = np.arange(n_users)
        now = float(log["timestamp"].max()) + 60.0
        ours = features_batch(log, users, now, cfg)
        base = pandas_features(log, users, now, cfg)
        agree = bool(np.allclose(ours, base, rtol=1e-9, atol=1e-9))
        m_ours = measure(lambda log=log, users=users, now=now: features_batch(log, users, now,
                                                                             cfg), repeats)
        m_base = measure(lambda log=log, users=users, now=now: pandas_features(log, users, now,
                                                                              cfg), repeats)
        rows.append({"what": "batch", "size": f"{len(log['user']):,} events / {n_users:,} users",
                     "ours": m_ours, "baseline": m_base, "baseline_name": "pandas groupby",
                     "unit": "s", "agree": agree})

    # Incremental: replay a log event by event, then serve vectors.
    n_add = 30_000 if quick else 200_000
    log = event_log(n_add, 2_000, seed=1)
    events = [Event(*r) for r in zip(log["user"].tolist(), log["event"].tolist(),
                                     log["category"].tolist(), log["price"].tolist(),
                                     log["discount"].tolist(), log["timestamp"].tolist(),
                                     strict=True)]

    def replay() -> FeatureStore:
        store = FeatureStore(cfg)
        add = store.add
        for e in events:
            add(e)
        return store

    def append_only() -> None:
        held: list[Event] = []
        for e in events:
            held.append(e)

    m_add = measure(replay, repeats)
    m_list = measure(append_only, repeats)
    n = len(events)
    rows.append({"what": "add", "size": f"{n:,} events / 2,000 users",
                 "ours": {k: v / n for k, v in m_add.items()},
                 "baseline": {k: v / n for k, v in m_list.items()},
                 "baseline_name": "list.append", "unit": "us", "agree": None})

    store = replay()
    now = float(log["timestamp"].max()) + 60.0
    heavy = int(np.bincount(log["user"]).argmax())
    mine = log["user"] == heavy
    own = {k: v[mine] for k, v in log.items()}
    agree = bool(np.array_equal(store.vector(heavy, now), features_batch(own, [heavy], now,
                                                                         cfg)[0]))
    calls = 500 if quick else 2_000
    m_vec = per_call(lambda: store.vector(heavy, now), calls, repeats)
    m_naive = per_call(lambda: features_batch(own, [heavy], now, cfg), calls // 4, repeats)
    rows.append({"what": "vector", "size": f"user with {int(mine.sum())} events",
                 "ours": m_vec, "baseline": m_naive,
                 "baseline_name": "features_batch(own rows)", "unit": "us", "agree": agree})

    return rows


def same_quote(a: Quote, b: Quote) -> bool:
    return (a.offer_ids == b.offer_ids and a.list_total == b.list_total
            and all(np.array_equal(getattr(a, f), getattr(b, f))
                    for f in ("eligible", "discount_cost", "paid_total")))


def offer_rows(quick: bool, repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # The default catalogue, plus exclusions and a coupon.
    cat = default_catalogue()
    extra = (PercentOff(id="pct30_ex", fraction=0.3, exclude_categories=[3, 4]),
             Coupon(id="c5", amount=5, min_spend=25, days=7, exclude_items=[1, 2, 3]))
    cat = Catalogue((*cat.offers, *extra), currency=cat.currency, minor_unit=cat.minor_unit,
                    margin_floor=cat.margin_floor)
    calls = 500 if quick else 2_000
    for n_lines in (1, 5, 20):
        bs = baskets(n_lines, 200)
        agree = all(np.array_equal(cat.eligible(b), python_eligible(cat, b)) for b in bs)
        it = iter(range(10**9))

        def ours_call(bs: list[Basket] = bs, it: Any = it) -> None:
            cat.eligible(bs[next(it) % len(bs)])

        def base_call(bs: list[Basket] = bs, it: Any = it) -> None:
            python_eligible(cat, bs[next(it) % len(bs)])

        rows.append({"what": "eligible", "size": f"{len(cat)} offers x {n_lines} lines",
                     "ours": per_call(ours_call, calls, repeats),
                     "baseline": per_call(base_call, calls, repeats),
                     "baseline_name": "Python loops", "unit": "us", "agree": agree})
    for n_lines in (1, 5, 20):
        bs = baskets(n_lines, 200)
        agree = all(same_quote(cat.quote(b, T0), cat.quote(b, T0, backend="numpy")) for b in bs)
        it = iter(range(10**9))

        def quote_call(bs: list[Basket] = bs, it: Any = it) -> None:
            cat.quote(bs[next(it) % len(bs)], T0)

        def numpy_call(bs: list[Basket] = bs, it: Any = it) -> None:
            cat.quote(bs[next(it) % len(bs)], T0, backend="numpy")

        rows.append({"what": "quote", "size": f"{len(cat)} offers x {n_lines} lines",
                     "ours": per_call(quote_call, calls, repeats),
                     "baseline": per_call(numpy_call, calls, repeats),
                     "baseline_name": "quote, NumPy path", "unit": "us", "agree": agree})
    rs = np.random.default_rng(7)
    mixed = [b for n in rs.integers(1, 21, 1_000) for b in baskets(int(n), 1, seed=int(n))]
    batch = cat.quote_batch(mixed, T0)
    agree = all(same_quote(batch.row(i), cat.quote(b, T0)) for i, b in enumerate(mixed))
    m_batch = measure(lambda: cat.quote_batch(mixed, T0), repeats)
    m_loop = measure(lambda: [cat.quote(b, T0) for b in mixed], repeats)
    rows.append({"what": "quote_batch", "size": f"{len(mixed):,} baskets of 1-20 lines",
                 "ours": {k: v / len(mixed) for k, v in m_batch.items()},
                 "baseline": {k: v / len(mixed) for k, v in m_loop.items()},
                 "baseline_name": "quote per basket", "unit": "us", "agree": agree})
    b = baskets(20, 1)[0]
    cols = (b.item_ids.copy(), b.categories.copy(), b.unit_prices.copy(), b.unit_costs.copy(),
            b.quantities.copy())
    agree = same_quote(cat.quote(Basket.trusted(*cols), T0), cat.quote(Basket(*cols), T0))
    rows.append({"what": "basket", "size": "20 lines",
                 "ours": per_call(lambda: Basket.trusted(*cols), calls, repeats),
                 "baseline": per_call(lambda: Basket(*cols), calls, repeats),
                 "baseline_name": "Basket(...) with checks", "unit": "us", "agree": agree})
    return rows


def table(res: dict[str, Any]) -> str:
    lines = [f"machine: {res['machine']['processor'] or res['machine']['platform']}, "
             f"{res['machine']['cpus']} cpus, numpy {res['machine']['numpy']}; "
             f"median (min-max) of {res['repeats']} runs",
             f"{'what':<11} {'size':<34} {'promobandit':>31} {'baseline':>31}  ratio  "
             f"{'baseline is':<26} agree"]
    for r in res["rows"]:
        unit = r["unit"]
        ratio = r["baseline"]["median"] / r["ours"]["median"]  # > 1: promobandit is faster
        agree = "-" if r["agree"] is None else ("yes" if r["agree"] else "NO")
        lines.append(f"{r['what']:<11} {r['size']:<34} {fmt(r['ours'], unit):>31} "
                     f"{fmt(r['baseline'], unit):>31} {ratio:6.3g}x  {r['baseline_name']:<26} "
                     f"{agree}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure (default 5, "
                    "3 with --quick)")
    ap.add_argument("--only", choices=("features", "offers"), default=None,
                    help="run only the feature rows or only the offer rows (default both)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    res = run(args.quick, repeats, args.only)
    print(table(res))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
