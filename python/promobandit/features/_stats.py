"""The statistics kernels shared by the batch path and the store: events -> integer
statistics -> features.

Two ways to compute, which agree bitwise on the same events:

* :func:`~promobandit.features.batch.features_batch` from a pandas DataFrame, a pyarrow
  Table or a dict of arrays (vectorised, for millions of events);
* :class:`~promobandit.features.store.FeatureStore`, fed one event at a time with
  ``FeatureStore.add``, answers ``FeatureStore.vector`` for serving.

Why they agree exactly: both reduce the events to the same *integer* statistics
(counts, money in whole ``money_unit``, discounts in whole ``discount_unit``; integer
sums do not depend on order) and the same extreme times (copied, never computed). The
batch path gets them with bincounts over all users, the store with binary searches over
one user's time-sorted rows; windows are decided by the same float expression
``t > now - W`` in both. The few floats made from them (affinity weights, then every
feature) come from shared functions that work elementwise, with all log1p terms in one
NumPy call, so a row does not depend on how many rows are computed with it.
"""

from __future__ import annotations

import math

import numpy as np

from ..events import CART, N_EVENT_TYPES, PURCHASE, SECONDS_PER_DAY
from .config import FeatureConfig

SECONDS_PER_MINUTE = 60.0

# Integer statistics are summed through float64 bincounts, exact below 2**53 units.
_MAX_UNITS = float(2**53)


def _empty_prior(n: int) -> dict[str, np.ndarray]:
    return {
        "last_ts": np.full(n, -np.inf),
        "last_purchase_ts": np.full(n, -np.inf),
        "n_purchases": np.zeros(n, np.int64),
        "n_discounted": np.zeros(n, np.int64),
        "depth_units": np.zeros(n, np.int64),
    }


def _group_ends(g: np.ndarray) -> np.ndarray:
    """Indices of the last row of each run of equal values in a sorted group column."""
    ends = np.empty(g.shape[0], dtype=bool)
    np.not_equal(g[1:], g[:-1], out=ends[:-1])
    ends[-1:] = True
    return np.flatnonzero(ends)


def _isum(g: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-group sums of integer values, exact (float64 bincount of integers < 2**53)."""
    return np.bincount(g, weights=values, minlength=n).astype(np.int64)


def _weigh_affinity(cfg: FeatureConfig, counts: list[np.ndarray], n: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(weighted (n, C), total (n,)) from integer counts (n * C,) per event type.

    The one place where affinity floats are made, so that both paths round alike:
    weighted = sum_e w_e * count_e and total = sum_e w_e * (integer total of count_e),
    each accumulated in event-type order.
    """
    c = cfg.n_categories
    weighted = np.zeros(n * c)
    total = np.zeros(n)
    for weight, count in zip(cfg.event_weights, counts, strict=True):
        weighted = weighted + weight * count
        total = total + weight * count.reshape(n, c).sum(axis=1)
    return weighted.reshape(n, c), total


def _statistics(cfg: FeatureConfig, now: float, n_groups: int, g: np.ndarray, t: np.ndarray,
                typ: np.ndarray, cat: np.ndarray, price_u: np.ndarray, disc_u: np.ndarray,
                prior: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Integer statistics (and extreme times) of n_groups users at ``now``.

    Rows are sorted by (group, time), ties in arrival order; rows after ``now`` are
    dropped here. ``prior`` holds the aggregates of each group's events that are not in
    the rows (folded away by the store's eviction or beyond the batch's cap), all at or
    before now.
    """
    keep = t <= now
    if not keep.all():
        g, t, typ, cat, price_u, disc_u = (a[keep] for a in (g, t, typ, cat, price_u, disc_u))
    n = n_groups
    purchase = typ == PURCHASE
    s: dict[str, np.ndarray] = {}

    last_ts = prior["last_ts"].copy()
    last_purchase_ts = prior["last_purchase_ts"].copy()
    if g.size:
        ends = _group_ends(g)  # rows are time-sorted inside a group: its last row is latest
        last_ts[g[ends]] = np.maximum(last_ts[g[ends]], t[ends])
        if purchase.any():
            gp, tp = g[purchase], t[purchase]
            ends_p = _group_ends(gp)
            last_purchase_ts[gp[ends_p]] = np.maximum(last_purchase_ts[gp[ends_p]], tp[ends_p])
    s["last_ts"], s["last_purchase_ts"] = last_ts, last_purchase_ts

    events_w, purchases_w = [], []
    for w in cfg.frequency_windows_days:
        inw = t > now - w * SECONDS_PER_DAY
        events_w.append(np.bincount(g[inw], minlength=n))
        purchases_w.append(np.bincount(g[inw & purchase], minlength=n))
    s["events_w"] = np.stack(events_w, axis=1)
    s["purchases_w"] = np.stack(purchases_w, axis=1)
    spend_w = []
    for w in cfg.monetary_windows_days:
        sel = purchase & (t > now - w * SECONDS_PER_DAY)
        spend_w.append(_isum(g[sel], price_u[sel], n))
    s["spend_units_w"] = np.stack(spend_w, axis=1)

    # Affinity: integer counts per (user, category, type), weighted in a fixed type order.
    c = cfg.n_categories
    inw = t > now - cfg.affinity_window_days * SECONDS_PER_DAY
    key = g[inw] * c + cat[inw]
    typ_w = typ[inw]
    counts = [np.bincount(key[typ_w == e], minlength=n * c) for e in range(N_EVENT_TYPES)]
    s["affinity_weighted"], s["affinity_total"] = _weigh_affinity(cfg, counts, n)

    discounted = purchase & (disc_u > 0)
    s["n_purchases"] = prior["n_purchases"] + np.bincount(g[purchase], minlength=n)
    s["n_discounted"] = prior["n_discounted"] + np.bincount(g[discounted], minlength=n)
    s["depth_units"] = prior["depth_units"] + _isum(g[purchase], disc_u[purchase], n)

    # Sessions among the events of the longest window.
    session_n = np.zeros(n, np.int64)
    session_seconds = np.zeros(n)
    cart_open = np.zeros(n, dtype=bool)
    hw = t > now - cfg.history_seconds
    sg, st, styp = g[hw], t[hw], typ[hw]
    if sg.size:
        new = np.empty(sg.shape[0], dtype=bool)
        new[0] = True
        np.logical_or(sg[1:] != sg[:-1], (st[1:] - st[:-1]) > cfg.session_gap_seconds,
                      out=new[1:])
        sid = np.cumsum(new) - 1
        n_sessions = int(sid[-1]) + 1
        start = st[new]
        count = np.bincount(sid, minlength=n_sessions)
        last_cart = np.full(n_sessions, -np.inf)
        last_buy = np.full(n_sessions, -np.inf)
        carts, buys = styp == CART, styp == PURCHASE
        np.maximum.at(last_cart, sid[carts], st[carts])
        np.maximum.at(last_buy, sid[buys], st[buys])
        ends = _group_ends(sg)
        users, last_sid = sg[ends], sid[ends]
        alive = (now - st[ends]) <= cfg.session_gap_seconds
        session_n[users] = np.where(alive, count[last_sid], 0)
        session_seconds[users] = np.where(alive, now - start[last_sid], 0.0)
        cart_open[users] = alive & (last_cart[last_sid] > last_buy[last_sid])
    s["session_n"], s["session_seconds"], s["cart_open"] = session_n, session_seconds, cart_open
    return s


def _window_seconds(cfg: FeatureConfig) -> np.ndarray:
    """Frequency, monetary, affinity and longest window lengths in seconds, in that order
    (each the same float product as in the grouped path)."""
    return np.array([w * SECONDS_PER_DAY for w in cfg.frequency_windows_days]
                    + [w * SECONDS_PER_DAY for w in cfg.monetary_windows_days]
                    + [cfg.affinity_window_days * SECONDS_PER_DAY, cfg.history_seconds])


def _statistics_one(cfg: FeatureConfig, now: float, t: np.ndarray, typ: np.ndarray,
                    cat: np.ndarray, price_u: np.ndarray, disc_u: np.ndarray,
                    prior: dict[str, float]) -> dict[str, np.ndarray]:
    """The statistics of ``_statistics`` for one user, shaped (1, ...), by binary searches
    on the user's time-sorted rows: fewer NumPy calls for the store's per-request path.

    Integer results equal the grouped path's by construction; the only floats made here
    are extreme times (copied, not computed) and the affinity (``_weigh_affinity``).
    """
    k = int(np.searchsorted(t, now, side="right"))  # rows at or before now
    t, typ, cat, price_u, disc_u = t[:k], typ[:k], cat[:k], price_u[:k], disc_u[:k]
    purchase = typ == PURCHASE
    last_ts, last_purchase_ts = prior["last_ts"], prior["last_purchase_ts"]
    if k:
        last_ts = max(last_ts, float(t[-1]))
        bought = np.flatnonzero(purchase)
        if bought.size:
            last_purchase_ts = max(last_purchase_ts, float(t[bought[-1]]))

    # The first row inside each window (t > now - W), all windows in one binary search;
    # now - W is the same float subtraction as in the grouped path.
    nf, nm = len(cfg.frequency_windows_days), len(cfg.monetary_windows_days)
    starts = t.searchsorted(now - _window_seconds(cfg), side="right").tolist()
    events_w, purchases_w = [], []
    for lo in starts[:nf]:
        events_w.append(k - lo)
        purchases_w.append(int(np.count_nonzero(purchase[lo:])))
    spend_w = [int(price_u[lo:][purchase[lo:]].sum()) for lo in starts[nf:nf + nm]]
    c = cfg.n_categories
    lo = starts[nf + nm]
    by_type = np.bincount(typ[lo:].astype(np.int64) * c + cat[lo:],
                          minlength=N_EVENT_TYPES * c).reshape(N_EVENT_TYPES, c)
    weighted, total = _weigh_affinity(cfg, list(by_type), 1)
    disc_bought = disc_u[purchase]

    session_n, session_seconds, cart_open = 0, 0.0, False
    lo = starts[nf + nm + 1]
    if lo < k and now - t[-1] <= cfg.session_gap_seconds:
        st = t[lo:]
        breaks = np.flatnonzero((st[1:] - st[:-1]) > cfg.session_gap_seconds)
        first = lo + (int(breaks[-1]) + 1 if breaks.size else 0)
        session_n = k - first
        session_seconds = now - float(t[first])
        styp, stt = typ[first:], t[first:]
        carts, buys = stt[styp == CART], stt[styp == PURCHASE]
        cart_open = bool(carts.size) and (not buys.size or float(carts[-1]) > float(buys[-1]))
    return {
        "last_ts": np.array([last_ts]),
        "last_purchase_ts": np.array([last_purchase_ts]),
        "events_w": np.array([events_w], np.int64),
        "purchases_w": np.array([purchases_w], np.int64),
        "spend_units_w": np.array([spend_w], np.int64),
        "affinity_weighted": weighted,
        "affinity_total": total,
        "n_purchases": np.array([prior["n_purchases"] + int(disc_bought.size)], np.int64),
        "n_discounted": np.array([prior["n_discounted"] + int(np.count_nonzero(disc_bought))],
                                 np.int64),
        "depth_units": np.array([prior["depth_units"] + int(disc_bought.sum())], np.int64),
        "session_n": np.array([session_n], np.int64),
        "session_seconds": np.array([session_seconds]),
        "cart_open": np.array([cart_open]),
    }


def _finish(cfg: FeatureConfig, now: float, s: dict[str, np.ndarray]) -> np.ndarray:
    """Features (n, d) from statistics; elementwise, so a row does not depend on n.

    Every log1p goes through one NumPy call on one contiguous block: NumPy's vectorised
    log1p may differ from the C library's in the last bit, and one call keeps every
    element on the same code path whatever n is.
    """
    n = s["last_ts"].shape[0]
    nf, nm, c = len(cfg.frequency_windows_days), len(cfg.monetary_windows_days), cfg.n_categories
    cap = cfg.recency_cap_days
    logs = np.empty((n, 2 + 2 * nf + nm + 2))
    for j, key in enumerate(("last_ts", "last_purchase_ts")):
        days = (now - s[key]) / SECONDS_PER_DAY  # no history: -inf -> inf -> the cap
        logs[:, j] = np.minimum(days, cap)
    logs[:, 2:2 + nf] = s["events_w"]
    logs[:, 2 + nf:2 + 2 * nf] = s["purchases_w"]
    logs[:, 2 + 2 * nf:2 + 2 * nf + nm] = s["spend_units_w"] * cfg.money_unit
    logs[:, -2] = s["session_n"]
    logs[:, -1] = s["session_seconds"] / SECONDS_PER_MINUTE
    logs = np.log1p(logs)

    out = np.empty((n, cfg.dim))
    out[:, :2] = logs[:, :2] / math.log1p(cap)
    col = 2 + 2 * nf + nm
    out[:, 2:col] = logs[:, 2:col]
    total = s["affinity_total"][:, None]
    out[:, col:col + c] = 0.0  # users without weighted events: no affinity
    np.divide(s["affinity_weighted"], total, out=out[:, col:col + c], where=total > 0)
    col += c
    n_p = s["n_purchases"].astype(np.float64)
    has = n_p > 0
    out[:, col] = np.divide(s["n_discounted"], n_p, out=np.zeros(n), where=has)
    depth = np.divide(s["depth_units"] * cfg.discount_unit, n_p, out=np.zeros(n), where=has)
    out[:, col + 1] = np.minimum(depth, 1.0)
    out[:, col + 2:col + 4] = logs[:, -2:]
    out[:, col + 4] = s["cart_open"]
    out[:, col + 5] = 1.0
    return out
