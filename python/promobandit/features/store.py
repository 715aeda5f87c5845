"""Behaviour features: the context vector x_u of a user at a time ``now``, for the offer bandit.

From a log of behaviour events (view, click, cart, purchase; the event-type codes of
:mod:`promobandit.recommender.data`) this module builds, for a user at a time ``now``
(seconds), a float64 vector of dimension ``FeatureConfig.dim`` in this order:

=====================  =====================================================  ===========
name                   what                                                   scaling
=====================  =====================================================  ===========
days_since_event       days since the user's last event                       log1p(min(days, cap)) / log1p(cap), in [0, 1]; 1 without history
days_since_purchase    days since the user's last purchase                    same
events_{W}d            events in the trailing W days, per frequency window    log1p(count)
purchases_{W}d         purchases in the trailing W days, per frequency window log1p(count)
spend_{W}d             money spent in the trailing W days, per monetary       log1p(currency)
                       window (sum of ``price`` over purchases)
affinity_{c}           share of the user's weighted events (``event_weights``) a share in [0, 1];
                       in category c over the affinity window, c < C          all 0 without events
discount_share         share of the user's purchases (all time) made with a   in [0, 1]; 0 without
                       discount > 0                                           purchases
discount_depth         mean discount fraction of the user's purchases         in [0, 1]; 0 without
                       (all time; 0 for full-price ones)                      purchases
session_events         events in the current session                          log1p(count)
session_minutes        minutes since the current session started              log1p(minutes)
session_cart_open      1 if the current session has a cart event after its    0 or 1
                       last purchase (something waits in the cart)
bias                   the constant 1                                         1
=====================  =====================================================  ===========

A window of W days holds the events with ``t > now - W * 86400`` (and ``t <= now``).
Sessions split where two consecutive events of a user are more than
``session_gap_seconds`` apart; the *current* session is the one of the user's last event,
if that event is at most ``session_gap_seconds`` before now (else the session features
are 0); sessions are looked for among the events of the longest window. Events after
``now`` are ignored everywhere. A user with no events at or before ``now`` gets the
cold-start vector (:func:`cold_start_vector`): recencies 1, everything else 0, bias 1.

Two ways to compute, which agree bitwise on the same events:

* :func:`features_batch` from a pandas DataFrame, a pyarrow Table or a dict of arrays
  (vectorised, for millions of events);
* :class:`FeatureStore`, fed one event at a time with :meth:`FeatureStore.add`, answers
  :meth:`FeatureStore.vector` for serving.

Why they agree exactly: both reduce the events to the same *integer* statistics
(counts, money in whole ``money_unit``, discounts in whole ``discount_unit``; integer
sums do not depend on order) and the same extreme times (copied, never computed). The
batch path gets them with bincounts over all users, the store with binary searches over
one user's time-sorted rows; windows are decided by the same float expression
``t > now - W`` in both. The few floats made from them (affinity weights, then every
feature) come from shared functions that work elementwise, with all log1p terms in one
NumPy call, so a row does not depend on how many rows are computed with it.

Memory bound of the store: per user at most ``max_events_per_user`` live events, in
buffers of at most 2 x (max_events_per_user + 1) rows of 29 bytes (five NumPy columns;
the slack makes compaction amortised O(1)), so at most 60 kB at the default 1024, plus
about 1 kB of fixed state (Python objects, array headers); events older than every
window are folded into five all-time aggregates. The store holds one entry per user
seen (``drop_user`` forgets one). The batch path applies the same cap: the windowed and
session statistics of a user come from at most their latest ``max_events_per_user``
events at or before ``now``; older events still count in the recencies and the
all-time discount statistics.

User ids may be any hashable (ints or strings). Nothing here logs or persists them; the
store keeps them only as keys of its in-memory table.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..events import CART, EVENT_NAMES, N_EVENT_TYPES, PURCHASE, SECONDS_PER_DAY

SECONDS_PER_MINUTE = 60.0

# Integer statistics are summed through float64 bincounts, exact below 2**53 units.
_MAX_UNITS = float(2**53)

# Integer user ids up to this many times the number of rows use a lookup table
# (memory of the same order as the input) instead of a binary search.
_DENSE_IDS_FACTOR = 4

COLUMNS: tuple[str, ...] = ("user", "event", "category", "price", "discount", "timestamp")

_EVENT_CODES: dict[Any, int] = {name: code for code, name in enumerate(EVENT_NAMES)}


class LateEventError(ValueError):
    """An event older than the store's reorder tolerance allows (see FeatureStore.add)."""


# --- configuration -----------------------------------------------------------------------

def _windows(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name}: expected a list of window lengths in days, got {value!r}")
    out = tuple(check_range(f"{name}[{i}]", v, 0.0, lo_open=True) for i, v in enumerate(value))
    if not out:
        raise ValueError(f"{name}: expected at least one window")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"{name}: expected strictly increasing windows, got {list(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Every knob of the behaviour features (see the module for the feature list).

    n_categories: C, the number of categories (ids 0..C-1); an event of another
        category is rejected. Each gets an affinity feature.
    frequency_windows_days: trailing windows (days, increasing) for the event and
        purchase counts.
    monetary_windows_days: trailing windows (days, increasing) for the spend.
    affinity_window_days: trailing window (days) of the category affinity.
    recency_cap_days: recencies are capped at this many days (no history reads as the cap).
    session_gap_seconds: a gap longer than this between two events starts a new session.
    event_weights: weight of a (view, click, cart, purchase) in the category affinity,
        each >= 0, not all 0.
    money_unit: prices are rounded to this unit (currency) before summing, so sums are
        exact integers (0.01: cents).
    discount_unit: discount fractions are rounded to this unit before summing (1e-4: a
        basis point); a discount below half of it counts as no discount.
    max_events_per_user: the store keeps at most this many events per user; the batch
        path applies the same cap (see the module).
    reorder_tolerance_seconds: the store accepts an event up to this much older than the
        user's latest event (inserted in time order), and answers ``vector`` for times
        down to this much before it; older events raise LateEventError.
    """

    n_categories: int = 20
    frequency_windows_days: tuple[float, ...] = (7.0, 30.0)
    monetary_windows_days: tuple[float, ...] = (30.0, 90.0)
    affinity_window_days: float = 90.0
    recency_cap_days: float = 365.0
    session_gap_seconds: float = 1800.0
    event_weights: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    money_unit: float = 0.01
    discount_unit: float = 1e-4
    max_events_per_user: int = 1024
    reorder_tolerance_seconds: float = 300.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_int("n_categories", self.n_categories, 1)
        set_(self, "frequency_windows_days",
             _windows("frequency_windows_days", self.frequency_windows_days))
        set_(self, "monetary_windows_days",
             _windows("monetary_windows_days", self.monetary_windows_days))
        for name in ("affinity_window_days", "recency_cap_days", "session_gap_seconds",
                     "money_unit"):
            set_(self, name, check_range(name, getattr(self, name), 0.0, lo_open=True))
        set_(self, "discount_unit",
             check_range("discount_unit", self.discount_unit, 0.0, 1.0, lo_open=True))
        w = self.event_weights
        if isinstance(w, (str, bytes)) or not isinstance(w, (Sequence, np.ndarray)) or len(
                w) != N_EVENT_TYPES:
            raise ValueError(f"event_weights: expected {N_EVENT_TYPES} weights for "
                             f"{list(EVENT_NAMES)}, got {w!r}")
        weights = tuple(check_range(f"event_weights[{i}]", v, 0.0) for i, v in enumerate(w))
        if not any(weights):
            raise ValueError("event_weights: expected at least one weight > 0, got all 0")
        set_(self, "event_weights", weights)
        check_int("max_events_per_user", self.max_events_per_user, 1)
        set_(self, "reorder_tolerance_seconds",
             check_range("reorder_tolerance_seconds", self.reorder_tolerance_seconds, 0.0))

    # --- derived ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """d = 2 recencies + 2 per frequency window + 1 per monetary window + C + 2 + 3 + 1."""
        return (2 + 2 * len(self.frequency_windows_days) + len(self.monetary_windows_days)
                + self.n_categories + 2 + 3 + 1)

    @property
    def history_seconds(self) -> float:
        """The longest window, in seconds: older events are outside every window."""
        return max(*self.frequency_windows_days, *self.monetary_windows_days,
                   self.affinity_window_days) * SECONDS_PER_DAY

    def feature_names(self) -> list[str]:
        """Names of the d features, in vector order."""
        names = ["days_since_event", "days_since_purchase"]
        names += [f"events_{w:g}d" for w in self.frequency_windows_days]
        names += [f"purchases_{w:g}d" for w in self.frequency_windows_days]
        names += [f"spend_{w:g}d" for w in self.monetary_windows_days]
        names += [f"affinity_{c}" for c in range(self.n_categories)]
        names += ["discount_share", "discount_depth", "session_events", "session_minutes",
                  "session_cart_open", "bias"]
        return names


def feature_names(config: FeatureConfig | None = None) -> list[str]:
    """Names of the features of ``config`` (default FeatureConfig()), in vector order."""
    return (config or FeatureConfig()).feature_names()


def _config(config: FeatureConfig | None) -> FeatureConfig:
    if config is None:
        return FeatureConfig()
    if not isinstance(config, FeatureConfig):
        raise ValueError(f"config: expected a FeatureConfig, got {type(config).__name__}")
    return config


# --- the shared kernel: events -> integer statistics -> features -------------------------

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


def cold_start_vector(config: FeatureConfig | None = None) -> np.ndarray:
    """(d,) the vector of a user without events at or before now: recencies at their cap
    (1.0), counts, money, affinity, discount and session features 0, bias 1."""
    cfg = _config(config)
    none_i, none_f = np.zeros(0, np.int64), np.zeros(0)
    stats = _statistics(cfg, 0.0, 1, none_i, none_f, np.zeros(0, np.int8), none_i, none_i,
                        none_i, _empty_prior(1))
    return _finish(cfg, 0.0, stats)[0]


# --- input columns -----------------------------------------------------------------------

def _to_numpy(obj: Any) -> np.ndarray:
    if type(obj).__module__.startswith("pyarrow"):  # (chunked) arrow arrays; strings copy
        return np.asarray(obj.to_numpy(zero_copy_only=False))
    if hasattr(obj, "to_numpy"):  # pandas Series
        return np.asarray(obj.to_numpy())
    return np.asarray(obj)


def _columns(events: Any) -> dict[str, np.ndarray]:
    """The event columns of a pandas DataFrame, a pyarrow Table or a mapping of arrays."""
    if hasattr(events, "column_names") and hasattr(events, "column"):  # pyarrow.Table
        names = set(events.column_names)
        get = events.column
    elif hasattr(events, "columns") and hasattr(events, "__getitem__") and not isinstance(
            events, Mapping):  # pandas.DataFrame
        names = {str(c) for c in events.columns}
        get = events.__getitem__
    elif isinstance(events, Mapping):
        names = set(events)
        get = events.__getitem__
    else:
        raise ValueError(f"events: expected a pandas DataFrame, a pyarrow Table or a dict of "
                         f"arrays, got {type(events).__name__}")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ValueError(f"events: missing column {missing[0]!r}; expected columns "
                         f"{list(COLUMNS)} (others are ignored)")
    cols = {c: _to_numpy(get(c)) for c in COLUMNS}
    n = cols["user"].shape[0]
    for c, a in cols.items():
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"{c}: expected a 1-D column of {n} rows (like user), "
                             f"got shape {a.shape}")
    return cols


def _event_codes(a: np.ndarray) -> np.ndarray:
    """Event types as int8 codes from integer codes or names; ValueError naming the row."""
    if a.dtype.kind in "iu":
        bad = (a < 0) | (a >= N_EVENT_TYPES)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"event: unknown event type {a[i]!r} at row {i}; expected a code "
                             f"in {dict(enumerate(EVENT_NAMES))} or a name")
        return a.astype(np.int8)
    if a.dtype.kind in "OUS":
        values = a.tolist()
        out = np.empty(len(values), dtype=np.int8)
        for i, v in enumerate(values):
            code = _event_code(v)
            if code < 0:
                raise ValueError(f"event: unknown event type {v!r} at row {i}; expected one of "
                                 f"{list(EVENT_NAMES)} or a code in 0..{N_EVENT_TYPES - 1}")
            out[i] = code
        return out
    raise ValueError(f"event: expected integer codes or names {list(EVENT_NAMES)}, "
                     f"got dtype {a.dtype}")


def _event_code(v: Any) -> int:
    """The code of one event type (a name or an integer code), -1 if unknown."""
    if isinstance(v, str):
        return _EVENT_CODES.get(v, -1)
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v) if 0 <= v < N_EVENT_TYPES else -1
    return -1


def _numeric(name: str, a: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric column, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if lo is not None:
        bad |= a < lo
    if hi is not None:
        bad |= a > hi
    if bad.any():
        i = int(np.argmax(bad))
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name}: expected finite values in [{lo_s}, {hi_s}], got {a[i]!r} "
                         f"at row {i}")
    return a


def _validated(cols: dict[str, np.ndarray], cfg: FeatureConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(event codes, categories, timestamps, price units, discount units), all checked."""
    typ = _event_codes(cols["event"])
    cat = cols["category"]
    if cat.dtype.kind not in "iu":
        raise ValueError(f"category: expected integer category ids, got dtype {cat.dtype}")
    bad = (cat < 0) | (cat >= cfg.n_categories)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"category: expected ids in [0, {cfg.n_categories}) (n_categories), "
                         f"got {cat[i]!r} at row {i}")
    t = _numeric("timestamp", cols["timestamp"], None, None)
    price = _numeric("price", cols["price"], 0.0, _MAX_UNITS * cfg.money_unit)
    disc = _numeric("discount", cols["discount"], 0.0, 1.0)
    return (typ, cat.astype(np.int64), t, np.rint(price / cfg.money_unit).astype(np.int64),
            np.rint(disc / cfg.discount_unit).astype(np.int64))


def _check_now(now: Any) -> float:
    return check_range("now", now)


# --- user ids ----------------------------------------------------------------------------

def _user_codes(requested: Any, event_users: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(row -> unique requested user, number of unique users, event -> unique user or -1)."""
    req = list(requested) if not isinstance(requested, np.ndarray) else requested
    req_np = np.asarray(req) if isinstance(req, np.ndarray) or all(
        isinstance(u, (int, np.integer)) and not isinstance(u, bool) for u in req) else None
    if req_np is not None and req_np.dtype.kind in "iu" and event_users.dtype.kind in "iu":
        # Integer ids on both sides: a lookup table when the ids are dense enough,
        # else sorted uniques and a binary search; no hashing either way.
        uniques, inverse = np.unique(req_np, return_inverse=True)
        if len(uniques) and event_users.size and int(uniques[0]) >= 0 and int(
                uniques[-1]) < _DENSE_IDS_FACTOR * (event_users.size + len(uniques)):
            lookup = np.full(int(uniques[-1]) + 1, -1, dtype=np.int64)
            lookup[uniques] = np.arange(len(uniques))
            inside = (event_users >= 0) & (event_users <= uniques[-1])
            codes = np.full(event_users.shape[0], -1, dtype=np.int64)
            codes[inside] = lookup[event_users[inside]]
            return inverse.astype(np.int64), len(uniques), codes
        pos = np.minimum(np.searchsorted(uniques, event_users), max(len(uniques) - 1, 0))
        found = (uniques[pos] == event_users) if len(uniques) else np.zeros(0, bool)
        return inverse.astype(np.int64), len(uniques), np.where(found, pos, -1).astype(np.int64)
    try:
        import pandas as pd  # optional: hash-based lookups for any hashable ids
    except ImportError:  # pragma: no cover - exercised where pandas is absent
        pd = None
    if pd is not None:
        req_arr = np.empty(len(req), dtype=object)
        req_arr[:] = list(req)
        inverse, uniques = pd.factorize(req_arr)
        index = pd.Index(uniques)
        codes = index.get_indexer(pd.Index(event_users))
        return inverse.astype(np.int64), len(uniques), codes.astype(np.int64)
    req_np = np.asarray(req)
    if req_np.dtype.kind == "U" and event_users.dtype.kind == "U":
        uniques, inverse = np.unique(req_np, return_inverse=True)
        pos = np.minimum(np.searchsorted(uniques, event_users), max(len(uniques) - 1, 0))
        found = (uniques[pos] == event_users) if len(uniques) else np.zeros(0, bool)
        return inverse.astype(np.int64), len(uniques), np.where(found, pos, -1).astype(np.int64)
    table: dict[Hashable, int] = {}
    inverse = np.array([table.setdefault(u, len(table)) for u in req], dtype=np.int64)
    codes = np.array([table.get(u, -1) for u in event_users.tolist()], dtype=np.int64)
    return inverse, len(table), codes


def columns_from_log(log: Any, discounts: Any = None) -> dict[str, np.ndarray]:
    """The event columns of a recommender ``InteractionLog`` (which must have prices).

    category comes from the log's item catalogue; discounts: optional (n,) fractions in
    [0, 1] of the purchases (0 elsewhere); without them every purchase is at full price.
    (Read by attribute, so the business layer needs no import of the recommender.)
    """
    needed = ("user_ids", "events", "item_ids", "item_category", "prices", "timestamps")
    if not all(hasattr(log, a) for a in needed):
        raise ValueError(f"log: expected an InteractionLog, got {type(log).__name__}")
    if log.prices is None:
        raise ValueError("log: the interaction log has no prices; spend features need them")
    n = len(log)
    disc = np.zeros(n) if discounts is None else np.asarray(discounts, dtype=np.float64)
    if disc.shape != (n,):
        raise ValueError(f"discounts: expected shape ({n},) like the log, got {disc.shape}")
    return {"user": log.user_ids, "event": log.events.astype(np.int64),
            "category": log.item_category[log.item_ids], "price": log.prices,
            "discount": disc, "timestamp": log.timestamps}


# --- batch -------------------------------------------------------------------------------

def features_batch(events: Any, users: Any, now: float,
                   config: FeatureConfig | None = None) -> np.ndarray:
    """(len(users), d) float64: the feature vector of each user at ``now`` (seconds).

    events: a pandas DataFrame, a pyarrow Table or a mapping of 1-D arrays with columns
        user (any hashable ids), event (codes 0..3 or names view/click/cart/purchase),
        category (int in [0, C)), price (currency, >= 0: the amount paid for a purchase),
        discount (fraction in [0, 1] of a purchase, 0 at full price), timestamp (seconds).
        Other columns are ignored; row order breaks timestamp ties (as arrival order does
        in the store).
    users: the ids to compute (duplicates allowed); users without events at or before
        now get the cold-start vector.

    Vectorised: one stable sort of the selected events and bincounts, no per-event Python.
    Bad rows raise ValueError naming the column and the row.
    """
    cfg = _config(config)
    now = _check_now(now)
    cols = _columns(events)
    typ, cat, t, price_u, disc_u = _validated(cols, cfg)
    inverse, n_users, code = _user_codes(users, cols["user"])
    keep = (code >= 0) & (t <= now)
    code, t, typ, cat, price_u, disc_u = (a[keep] for a in (code, t, typ, cat, price_u, disc_u))
    # Stable sorts by (user, time), ties by row. Logs usually come time-ordered, which
    # saves the first sort; int32 codes make the second one faster.
    key = code.astype(np.int32) if n_users < 2**31 else code
    if t.size < 2 or bool((t[1:] >= t[:-1]).all()):
        order = np.argsort(key, kind="stable")
    else:
        order = np.argsort(t, kind="stable")
        order = order[np.argsort(key[order], kind="stable")]
    code, t, typ, cat, price_u, disc_u = (a[order] for a in (code, t, typ, cat, price_u, disc_u))

    # The cap: a user's rows beyond their latest max_events_per_user fold into the prior.
    prior = _empty_prior(n_users)
    counts = np.bincount(code, minlength=n_users)
    from_end = np.cumsum(counts)[code] - 1 - np.arange(code.shape[0])
    old = from_end >= cfg.max_events_per_user
    if old.any():
        og, ot, otyp, odisc = code[old], t[old], typ[old], disc_u[old]
        np.maximum.at(prior["last_ts"], og, ot)
        buy = otyp == PURCHASE
        np.maximum.at(prior["last_purchase_ts"], og[buy], ot[buy])
        prior["n_purchases"] += np.bincount(og[buy], minlength=n_users)
        prior["n_discounted"] += np.bincount(og[buy & (odisc > 0)], minlength=n_users)
        prior["depth_units"] += _isum(og[buy], odisc[buy], n_users)
        hist = ~old
        code, t, typ, cat, price_u, disc_u = (a[hist]
                                              for a in (code, t, typ, cat, price_u, disc_u))
    stats = _statistics(cfg, now, n_users, code, t, typ, cat, price_u, disc_u, prior)
    return _finish(cfg, now, stats)[inverse]


# --- incremental -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One behaviour event (see features_batch for the fields and their units)."""

    user: Hashable
    event: int | str
    category: int
    price: float
    discount: float
    timestamp: float


class _History:
    """One user's events in time order (ties in arrival order) plus folded aggregates."""

    __slots__ = ("cat", "depth_units", "disc_u", "hi", "last_purchase_ts", "last_ts", "lo",
                 "max_ts", "n_discounted", "n_purchases", "price_u", "t", "typ")

    def __init__(self, capacity: int) -> None:
        self.t = np.empty(capacity)
        self.typ = np.empty(capacity, np.int8)
        self.cat = np.empty(capacity, np.int32)
        self.price_u = np.empty(capacity, np.int64)
        self.disc_u = np.empty(capacity, np.int64)
        self.lo = 0  # live rows are [lo, hi)
        self.hi = 0
        self.max_ts = -math.inf
        # aggregates of the events folded away (all older than every live row)
        self.last_ts = -math.inf
        self.last_purchase_ts = -math.inf
        self.n_purchases = 0
        self.n_discounted = 0
        self.depth_units = 0

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.t, self.typ, self.cat, self.price_u, self.disc_u)

    def make_room(self, limit: int) -> None:
        """Frees a slot at hi: compacts the live rows to the front when at least half of
        the buffer is dead (or it cannot grow), else doubles it, up to ``limit`` rows."""
        live = self.hi - self.lo
        cap = self.t.shape[0]
        if self.lo > 0 and (cap >= limit or live <= cap // 2):
            for a in self.columns():
                a[:live] = a[self.lo:self.hi]
            self.lo, self.hi = 0, live
            return
        new_cap = min(2 * cap, limit)
        for name in ("t", "typ", "cat", "price_u", "disc_u"):
            old = getattr(self, name)
            new = np.empty(new_cap, old.dtype)
            new[:live] = old[self.lo:self.hi]
            setattr(self, name, new)
        self.lo, self.hi = 0, live

    def fold(self, k: int) -> None:
        """Folds the k oldest live rows into the aggregates and drops them."""
        lo, hi = self.lo, self.lo + k
        self.last_ts = max(self.last_ts, float(self.t[hi - 1]))
        buy = self.typ[lo:hi] == PURCHASE
        if buy.any():
            tb = self.t[lo:hi][buy]
            db = self.disc_u[lo:hi][buy]
            self.last_purchase_ts = max(self.last_purchase_ts, float(tb[-1]))
            self.n_purchases += int(buy.sum())
            self.n_discounted += int((db > 0).sum())
            self.depth_units += int(db.sum())
        self.lo = hi

    def prior(self) -> dict[str, float]:
        return {"last_ts": self.last_ts, "last_purchase_ts": self.last_purchase_ts,
                "n_purchases": self.n_purchases, "n_discounted": self.n_discounted,
                "depth_units": self.depth_units}

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns())


class FeatureStore:
    """Incremental behaviour features for serving: add events one at a time, read vectors.

    ``add`` is O(1) amortised for an event in time order (an append and, now and then,
    folding the oldest rows into aggregates); an out-of-order event shifts the rows after
    it (at most the ones of the last ``reorder_tolerance_seconds``). ``vector`` costs about
    forty small NumPy calls over the user's rows (at most ``max_events_per_user``): tens
    of microseconds, see bench/bench_features.py.

    Out-of-order events: an event up to ``reorder_tolerance_seconds`` older than the user's
    latest one is inserted in time order and counts exactly as in the batch path; an older
    one raises LateEventError (a ValueError) and changes nothing, so a caller can count
    and drop late data explicitly.

    Exactness: ``vector(user, now)`` equals ``features_batch`` over the same events at the
    same now (bitwise) for any now >= the user's latest event, and for now down to
    ``reorder_tolerance_seconds`` before it unless the user hit the ``max_events_per_user``
    cap (then the store no longer holds the oldest events the batch path would count).
    Earlier times raise ValueError: the store does not keep the past.
    Memory: see the module docstring (bounded per user; one entry per user seen).
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = _config(config)
        self._users: dict[Hashable, _History] = {}
        self._cold = cold_start_vector(self.config)
        self._cold.setflags(write=False)
        # Buffers grow to twice the cap, so that compacting the live rows to the front
        # happens once per ~cap inserts (amortised O(1)) once a user reaches the cap.
        self._capacity = 2 * (self.config.max_events_per_user + 1)
        self._max_price = _MAX_UNITS * self.config.money_unit
        self._history_seconds = self.config.history_seconds

    def __len__(self) -> int:
        """Number of users held."""
        return len(self._users)

    def __contains__(self, user: Any) -> bool:
        try:
            return user in self._users
        except TypeError:
            return False

    def n_events(self, user: Hashable) -> int:
        """Events of ``user`` held in memory (0 for an unknown user)."""
        h = self._users.get(user)
        return 0 if h is None else h.hi - h.lo

    def memory_bytes(self) -> int:
        """Bytes held by the event rows of all users (excluding per-object overhead)."""
        return sum(h.nbytes() for h in self._users.values())

    def drop_user(self, user: Hashable) -> bool:
        """Forgets a user (e.g. an erasure request); True if the user was held."""
        return self._users.pop(user, None) is not None

    def cold_start_vector(self) -> np.ndarray:
        """(d,) the vector of an unknown user (a copy)."""
        return self._cold.copy()

    def add(self, event: Event | Mapping[str, Any]) -> None:
        """Adds one event (an Event, or a mapping with the Event fields; extra keys ignored).

        Every field is checked before anything changes: an unknown event type, a category
        outside [0, C), a negative or non-finite price, a discount outside [0, 1], a
        non-finite timestamp or an unhashable user raises ValueError naming the field; an
        event older than the reorder tolerance raises LateEventError.
        """
        if isinstance(event, Event):
            user, etype, cat, price, disc, ts = (event.user, event.event, event.category,
                                                 event.price, event.discount, event.timestamp)
        elif isinstance(event, Mapping):
            missing = [c for c in COLUMNS if c not in event]
            if missing:
                raise ValueError(f"{missing[0]}: missing from the event; expected "
                                 f"{list(COLUMNS)}")
            user, etype, cat, price, disc, ts = (event[c] for c in COLUMNS)
        else:
            raise ValueError(f"event: expected an Event or a mapping, got {type(event).__name__}")
        cfg = self.config
        try:
            h = self._users.get(user)
        except TypeError:
            raise ValueError(f"user: expected a hashable id, got {type(user).__name__}") from None
        # Fast paths for plain Python values (the serving case); anything else goes through
        # the full checks, which also write the error messages.
        code = etype if type(etype) is int and 0 <= etype < N_EVENT_TYPES else _event_code(etype)
        if code < 0:
            raise ValueError(f"event: unknown event type {etype!r}; expected one of "
                             f"{list(EVENT_NAMES)} or a code in 0..{N_EVENT_TYPES - 1}")
        if not (type(cat) is int and 0 <= cat < cfg.n_categories) and (
                isinstance(cat, (bool, np.bool_)) or not isinstance(cat, (int, np.integer))
                or not 0 <= cat < cfg.n_categories):
            raise ValueError(f"category: expected an integer in [0, {cfg.n_categories}) "
                             f"(n_categories), got {cat!r}")
        # NaN fails every comparison, so a float passing these is finite and in range.
        price_f = price if type(price) is float and 0.0 <= price <= self._max_price else \
            check_range("price", price, 0.0, self._max_price)
        disc_f = disc if type(disc) is float and 0.0 <= disc <= 1.0 else \
            check_range("discount", disc, 0.0, 1.0)
        t = ts if type(ts) is float and math.isfinite(ts) else check_range("timestamp", ts)
        if h is not None and t < h.max_ts - cfg.reorder_tolerance_seconds:
            raise LateEventError(
                f"timestamp: event at {t!r} is {h.max_ts - t:g} s older than this user's latest "
                f"event, beyond reorder_tolerance_seconds={cfg.reorder_tolerance_seconds:g}")
        # Python's round and np.rint both round half to even: the batch path's units.
        self._insert(h, user, code, int(cat), t, round(price_f / cfg.money_unit),
                     round(disc_f / cfg.discount_unit))

    def _insert(self, h: _History | None, user: Hashable, code: int, cat: int, t: float,
                price_u: int, disc_u: int) -> None:
        """Inserts a checked event in time order, then folds what no answer needs."""
        cfg = self.config
        if h is None:
            h = self._users[user] = _History(min(8, self._capacity))
        if h.hi == h.t.shape[0]:
            h.make_room(self._capacity)
        lo, hi = h.lo, h.hi
        if hi == lo or t >= h.t[hi - 1]:
            pos = hi
        else:  # out of order: after every row with t' <= t (ties keep arrival order)
            pos = lo + int(np.searchsorted(h.t[lo:hi], t, side="right"))
            for a in h.columns():
                a[pos + 1:hi + 1] = a[pos:hi]
        h.t[pos], h.typ[pos], h.cat[pos], h.price_u[pos], h.disc_u[pos] = (
            t, code, cat, price_u, disc_u)
        h.hi = hi + 1
        if t > h.max_ts:
            h.max_ts = t

        # Fold rows older than every window of any time the store still answers for
        # (now >= max_ts - tolerance), then rows beyond the cap.
        horizon = (h.max_ts - cfg.reorder_tolerance_seconds) - self._history_seconds
        k = 0
        if h.t[h.lo] <= horizon:
            k = int(np.searchsorted(h.t[h.lo:h.hi], horizon, side="right"))
        k = max(k, h.hi - h.lo - cfg.max_events_per_user)
        if k > 0:
            h.fold(k)

    def add_events(self, events: Any) -> None:
        """Adds the rows of a DataFrame, Table or dict of arrays (as features_batch takes)
        in row order. Every row is checked first (late rows too): a rejected batch changes
        nothing."""
        cfg = self.config
        cols = _columns(events)
        typ, cat, t, price_u, disc_u = _validated(cols, cfg)
        users = cols["user"].tolist()
        latest: dict[Hashable, float] = {}
        for i, (u, ti) in enumerate(zip(users, t.tolist(), strict=True)):
            try:
                m = latest.get(u)
            except TypeError:
                raise ValueError(f"user: expected hashable ids, got {type(u).__name__} "
                                 f"at row {i}") from None
            if m is None:
                h = self._users.get(u)
                m = -math.inf if h is None else h.max_ts
            if ti < m - cfg.reorder_tolerance_seconds:
                raise LateEventError(f"timestamp: row {i} is {m - ti:g} s older than its user's "
                                     f"latest event, beyond reorder_tolerance_seconds="
                                     f"{cfg.reorder_tolerance_seconds:g}")
            latest[u] = max(m, ti)
        for u, code, c, ti, pu, du in zip(users, typ.tolist(), cat.tolist(), t.tolist(),
                                          price_u.tolist(), disc_u.tolist(), strict=True):
            self._insert(self._users.get(u), u, code, c, ti, pu, du)

    def vector(self, user: Hashable, now: float) -> np.ndarray:
        """(d,) float64 features of ``user`` at ``now`` (seconds); the cold-start vector for
        an unknown user. ValueError if now is more than the reorder tolerance before the
        user's latest event."""
        now = _check_now(now)
        try:
            h = self._users.get(user)
        except TypeError:
            raise ValueError(f"user: expected a hashable id, got {type(user).__name__}") from None
        if h is None:
            return self._cold.copy()
        if now < h.max_ts - self.config.reorder_tolerance_seconds:
            raise ValueError(f"now: the store answers from {h.max_ts:g} - "
                             f"reorder_tolerance_seconds on for this user, got {now!r}")
        lo, hi = h.lo, h.hi
        stats = _statistics_one(self.config, now, h.t[lo:hi], h.typ[lo:hi], h.cat[lo:hi],
                                h.price_u[lo:hi], h.disc_u[lo:hi], h.prior())
        return _finish(self.config, now, stats)[0]

    def vectors(self, users: Sequence[Hashable], now: float) -> np.ndarray:
        """(len(users), d): ``vector`` of each user at ``now``."""
        out = np.empty((len(users), self.config.dim))
        for i, u in enumerate(users):
            out[i] = self.vector(u, now)
        return out


__all__ = [
    "COLUMNS",
    "Event",
    "FeatureConfig",
    "FeatureStore",
    "LateEventError",
    "cold_start_vector",
    "columns_from_log",
    "feature_names",
    "features_batch",
]
