"""Interaction logs: columnar behaviour events, time splits, .npz files and a synthetic world.

An :class:`InteractionLog` holds one row per behaviour event (a user viewed, clicked,
carted or purchased an item at a time) in parallel NumPy columns, plus the item side
data of the whole catalogue (category and price band of every item, including items
nobody touched). It is NumPy only: no torch, so the simulator and the business layer
can use it without the recommender's heavy dependency.

Units: timestamps are seconds (float64, any origin); prices are in the catalogue's
currency per unit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from .._validation import check_int, check_range, check_seed, float_array, frozen, int_array

# Event types (stored as int8 in the log) are shared with the feature store; they are
# re-exported here for this module's callers.
from ..events import CART as CART
from ..events import CLICK as CLICK
from ..events import EVENT_NAMES, N_EVENT_TYPES, SECONDS_PER_DAY
from ..events import POSITIVE_EVENTS as POSITIVE_EVENTS
from ..events import PURCHASE as PURCHASE
from ..events import VIEW as VIEW

LOG_FORMAT = "promobandit.interaction_log"
LOG_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class InteractionLog:
    """A columnar, validated, immutable log of behaviour events over a fixed catalogue.

    Columns (all 1-D, one entry per event, same length n):
        user_ids: int64 user ids in [0, n_users).
        item_ids: int64 item ids in [0, n_items).
        events: int8 event types: VIEW, CLICK, CART or PURCHASE (0..3).
        timestamps: float64 seconds, finite.
        prices: optional float64 price of the item at the event (currency units, >= 0).
    Catalogue (one entry per item, length n_items):
        item_category: int64 category ids >= 0.
        item_price_band: int64 price band ids >= 0 (0 = cheapest band).
    n_users: size of the user id space (users without events are allowed).

    Any integer dtype is accepted for the id columns and widened to int64; the arrays
    are copied and made read-only, so a log never changes after validation. Rows need
    not be sorted. Bad input raises ValueError naming the field.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    events: np.ndarray
    timestamps: np.ndarray
    item_category: np.ndarray
    item_price_band: np.ndarray
    n_users: int
    prices: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_users = check_int("n_users", self.n_users, 1)
        category = int_array("item_category", self.item_category, lo=0)
        band = int_array("item_price_band", self.item_price_band, lo=0)
        if category.shape[0] == 0:
            raise ValueError("item_category: the catalogue needs at least one item")
        if band.shape != category.shape:
            raise ValueError(f"item_price_band: expected length {category.shape[0]} "
                             f"(one per item, like item_category), got {band.shape[0]}")
        n_items = category.shape[0]
        users = int_array("user_ids", self.user_ids, lo=0, hi=n_users)
        n = users.shape[0]
        items = int_array("item_ids", self.item_ids, lo=0, hi=n_items)
        if items.shape[0] != n:
            raise ValueError(f"item_ids: expected length {n} (like user_ids), got {items.shape[0]}")
        ev = np.asarray(self.events)
        if ev.dtype.kind not in "iu":
            raise ValueError(f"events: expected integer event types {dict(enumerate(EVENT_NAMES))}"
                             f", got dtype {ev.dtype}")
        ev = int_array("events", ev, lo=None)
        if ev.shape[0] != n:
            raise ValueError(f"events: expected length {n} (like user_ids), got {ev.shape[0]}")
        bad = np.flatnonzero((ev < 0) | (ev >= N_EVENT_TYPES))
        if bad.size:
            raise ValueError(f"events: unknown event type {int(ev[bad[0]])} at row {int(bad[0])}; "
                             f"expected one of {dict(enumerate(EVENT_NAMES))}")
        ts = float_array("timestamps", self.timestamps)
        if ts.shape[0] != n:
            raise ValueError(f"timestamps: expected length {n} (like user_ids), got {ts.shape[0]}")
        prices = None
        if self.prices is not None:
            prices = float_array("prices", self.prices, lo=0.0)
            if prices.shape[0] != n:
                raise ValueError(f"prices: expected length {n} (like user_ids), "
                                 f"got {prices.shape[0]}")
        set_ = object.__setattr__
        set_(self, "n_users", n_users)
        set_(self, "user_ids", frozen(users))
        set_(self, "item_ids", frozen(items))
        set_(self, "events", frozen(ev.astype(np.int8)))
        set_(self, "timestamps", frozen(ts))
        set_(self, "item_category", frozen(category))
        set_(self, "item_price_band", frozen(band))
        set_(self, "prices", None if prices is None else frozen(prices))

    # --- sizes ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue."""
        return int(self.item_category.shape[0])

    @property
    def n_categories(self) -> int:
        """1 + the largest category id in the catalogue."""
        return int(self.item_category.max()) + 1

    @property
    def n_price_bands(self) -> int:
        """1 + the largest price band id in the catalogue."""
        return int(self.item_price_band.max()) + 1

    def event_counts(self) -> dict[str, int]:
        """Number of events of each type, by name."""
        counts = np.bincount(self.events, minlength=N_EVENT_TYPES)
        return {name: int(c) for name, c in zip(EVENT_NAMES, counts, strict=True)}

    def __repr__(self) -> str:
        return (f"InteractionLog(n_events={len(self)}, n_users={self.n_users}, "
                f"n_items={self.n_items}, events={self.event_counts()})")

    # --- selections -------------------------------------------------------------------------
    def same_catalogue(self, other: InteractionLog) -> bool:
        """True when ``other`` has the same user id space and item side data."""
        return (self.n_users == other.n_users
                and np.array_equal(self.item_category, other.item_category)
                and np.array_equal(self.item_price_band, other.item_price_band))

    def select(self, rows: Any) -> InteractionLog:
        """The log restricted to ``rows`` (a bool mask of length n or integer row indices)."""
        r = np.asarray(rows)
        if r.dtype == np.bool_ and r.shape != (len(self),):
            raise ValueError(f"rows: expected a bool mask of length {len(self)}, got {r.shape}")
        return dataclasses.replace(
            self,
            user_ids=self.user_ids[r], item_ids=self.item_ids[r], events=self.events[r],
            timestamps=self.timestamps[r],
            prices=None if self.prices is None else self.prices[r],
        )

    def sorted_by_time(self) -> InteractionLog:
        """The same events ordered by timestamp (ties keep their row order)."""
        return self.select(np.argsort(self.timestamps, kind="stable"))

    @classmethod
    def concatenate(cls, logs: Sequence[InteractionLog]) -> InteractionLog:
        """One log with the rows of ``logs`` in order (they must share the catalogue)."""
        if not logs:
            raise ValueError("logs: expected at least one log")
        first = logs[0]
        for i, other in enumerate(logs[1:], start=1):
            if not first.same_catalogue(other):
                raise ValueError(f"logs: log {i} has another catalogue or user space than log 0")
        has_prices = [lg.prices is not None for lg in logs]
        if any(has_prices) and not all(has_prices):
            raise ValueError("logs: either every log has prices or none does")
        return dataclasses.replace(
            first,
            user_ids=np.concatenate([lg.user_ids for lg in logs]),
            item_ids=np.concatenate([lg.item_ids for lg in logs]),
            events=np.concatenate([lg.events for lg in logs]),
            timestamps=np.concatenate([lg.timestamps for lg in logs]),
            prices=np.concatenate([lg.prices for lg in logs]) if all(has_prices) else None,
        )

    # --- time splits ------------------------------------------------------------------------
    def split_at_times(self, cuts: Sequence[float]) -> tuple[InteractionLog, ...]:
        """Splits at increasing cut times (seconds): part j holds cuts[j-1] <= t < cuts[j].

        Returns len(cuts) + 1 logs. Every timestamp of a later part is >= the cut before
        it and every timestamp of an earlier part is < that cut, so no event of a later
        part precedes an event of an earlier one.
        """
        c = [check_range(f"cuts[{i}]", x) for i, x in enumerate(cuts)]
        if any(b <= a for a, b in itertools.pairwise(c)):
            raise ValueError(f"cuts: expected strictly increasing times, got {c}")
        part = np.searchsorted(np.asarray(c, dtype=np.float64), self.timestamps, side="right")
        return tuple(self.select(part == j) for j in range(len(c) + 1))

    def split_by_time(self, validation_fraction: float = 0.1,
                      test_fraction: float = 0.1) -> tuple[InteractionLog, InteractionLog,
                                                           InteractionLog]:
        """(train, validation, test) cut at timestamp quantiles.

        validation_fraction and test_fraction are fractions of the events (in [0, 1),
        summing below 1) that go to the last two time windows; the cut times are the
        empirical quantiles 1 - v - t and 1 - t of the timestamps. Events tied at a cut
        time all go to the later part, so fractions are approximate under ties.
        Returns (train, validation, test); see split_at_times for the ordering guarantee.
        """
        v = check_range("validation_fraction", validation_fraction, 0.0, 1.0, hi_open=True)
        t = check_range("test_fraction", test_fraction, 0.0, 1.0, hi_open=True)
        if v + t >= 1.0:
            raise ValueError(f"validation_fraction + test_fraction: expected < 1, got {v + t}")
        if len(self) == 0:
            raise ValueError("log: cannot split an empty log by time")
        q1, q2 = np.quantile(self.timestamps, [1.0 - v - t, 1.0 - t], method="lower")
        # A zero fraction means an empty window: its cut moves to the next window's.
        c_test = float(q2) if t > 0 else math.inf
        c_val = float(q1) if v > 0 else c_test
        ts = self.timestamps
        return (self.select(ts < c_val), self.select((ts >= c_val) & (ts < c_test)),
                self.select(ts >= c_test))

    def time_cut(self, t: float) -> tuple[InteractionLog, InteractionLog]:
        """(events before t, events at or after t), t in seconds."""
        before, after = self.split_at_times([t])
        return before, after

    # --- histories --------------------------------------------------------------------------
    def recent_history(self, user_ids: Any, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``length`` events of each user in ``user_ids``, oldest first.

        Returns (items, events), both (B, length) int64, right-aligned (the newest event
        in the last column) and padded on the left with -1 where a user has fewer
        events. Ties in time keep their row order.
        """
        length = check_int("length", length, 1)
        users = int_array("user_ids", user_ids, lo=0, hi=self.n_users)
        order = np.lexsort((np.arange(len(self)), self.timestamps, self.user_ids))
        su = self.user_ids[order]
        starts = np.searchsorted(su, users, side="left")
        ends = np.searchsorted(su, users, side="right")
        pos = ends[:, None] - np.arange(length, 0, -1)[None, :]
        valid = pos >= starts[:, None]
        safe = order[np.where(valid, pos, 0)] if len(self) else np.zeros_like(pos)
        items = np.where(valid, self.item_ids[safe] if len(self) else -1, -1).astype(np.int64)
        events = np.where(valid, self.events[safe] if len(self) else -1, -1).astype(np.int64)
        return items, events

    # --- files ------------------------------------------------------------------------------
    def save(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        """Writes the log to an uncompressed .npz (NumPy arrays only, no pickles)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(LOG_FORMAT),
            "format_version": np.array(LOG_FORMAT_VERSION, dtype=np.int64),
            "n_users": np.array(self.n_users, dtype=np.int64),
            "user_ids": self.user_ids, "item_ids": self.item_ids, "events": self.events,
            "timestamps": self.timestamps, "item_category": self.item_category,
            "item_price_band": self.item_price_band,
        }
        if self.prices is not None:
            arrays["prices"] = self.prices
        np.savez(file, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, file: str | os.PathLike[str] | IO[bytes]) -> InteractionLog:
        """Reads a log written by save; a foreign or corrupt file raises ValueError."""
        try:
            with np.load(file, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"file: not a readable .npz interaction log ({exc})") from exc
        if str(data.get("format", "")) != LOG_FORMAT:
            raise ValueError(f"file: not a promobandit interaction log (format "
                             f"{str(data.get('format'))!r}, expected {LOG_FORMAT!r})")
        version = int(data["format_version"]) if "format_version" in data else -1
        if version != LOG_FORMAT_VERSION:
            raise ValueError(f"file: interaction log format version {version}, this build "
                             f"reads version {LOG_FORMAT_VERSION}")
        missing = {"n_users", "user_ids", "item_ids", "events", "timestamps", "item_category",
                   "item_price_band"} - set(data)
        if missing:
            raise ValueError(f"file: interaction log lacks {sorted(missing)}")
        return cls(user_ids=data["user_ids"], item_ids=data["item_ids"], events=data["events"],
                   timestamps=data["timestamps"], item_category=data["item_category"],
                   item_price_band=data["item_price_band"], n_users=int(data["n_users"]),
                   prices=data.get("prices"))


# --- the synthetic world ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic marketplace behind :func:`synthetic_world`.

    Users belong to taste clusters; a cluster likes a few categories and, inside a
    category, some items more than others; every user also has a preferred price band.
    A user's sessions each pick one category from the user's category preference and
    view a few items of it, chosen by popularity x cluster taste x price fit; views
    then convert along the funnel view -> click -> cart -> purchase.

    n_users, n_items, n_categories, n_price_bands, n_clusters: sizes (>= 1).
    sessions_per_user: mean number of sessions per user (1 + Poisson(mean - 1)).
    views_per_session: mean number of item views per session (1 + Poisson(mean - 1)).
    horizon_days: sessions start uniformly in [0, horizon_days) days (timestamps in s).
    mean_gap_seconds: mean of the exponential gap between consecutive events of a session.
    cluster_concentration: Dirichlet concentration of a cluster's category preference;
        small values (< 1) make clusters focus on few categories.
    user_concentration: a user's category preference is Dirichlet(user_concentration *
        cluster preference); large values keep users close to their cluster.
    popularity_exponent: Zipf exponent s of the global item popularity (rank^-s).
    taste_sigma: standard deviation of the log-normal cluster-by-item taste multiplier
        (0: clusters differ only by category).
    price_fit_decay: a view of an item b bands away from the user's preferred band is
        exp(-price_fit_decay * b) times as likely (0: users ignore price).
    p_click, p_cart, p_purchase: funnel conversion rates (fractions in [0, 1]): click
        given view at a perfect price fit, cart given click, purchase given cart.
    base_price: price of band 0 (currency); band b costs base_price * price_band_ratio**b,
        times a log-normal item factor of standard deviation price_sigma.
    """

    n_users: int = 2000
    n_items: int = 500
    n_categories: int = 20
    n_price_bands: int = 5
    n_clusters: int = 8
    sessions_per_user: float = 6.0
    views_per_session: float = 5.0
    horizon_days: float = 60.0
    mean_gap_seconds: float = 30.0
    cluster_concentration: float = 0.3
    user_concentration: float = 20.0
    popularity_exponent: float = 0.8
    taste_sigma: float = 1.0
    price_fit_decay: float = 1.0
    p_click: float = 0.4
    p_cart: float = 0.4
    p_purchase: float = 0.5
    base_price: float = 10.0
    price_band_ratio: float = 2.0
    price_sigma: float = 0.2

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_categories", "n_price_bands", "n_clusters"):
            check_int(name, getattr(self, name), 1)
        if self.n_categories > self.n_items:
            raise ValueError(f"n_categories: expected at most n_items={self.n_items}, "
                             f"got {self.n_categories}")
        check_range("sessions_per_user", self.sessions_per_user, 1.0)
        check_range("views_per_session", self.views_per_session, 1.0)
        for name in ("horizon_days", "mean_gap_seconds", "cluster_concentration",
                     "user_concentration", "base_price", "price_band_ratio"):
            check_range(name, getattr(self, name), 0.0, lo_open=True)
        for name in ("popularity_exponent", "taste_sigma", "price_fit_decay", "price_sigma"):
            check_range(name, getattr(self, name), 0.0)
        for name in ("p_click", "p_cart", "p_purchase"):
            check_range(name, getattr(self, name), 0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """A sampled synthetic marketplace: the ground truth and the log it produced.

    user_cluster: (n_users,) taste cluster of each user.
    user_category_pref: (n_users, n_categories) category preference, rows sum to 1.
    user_price_band: (n_users,) preferred price band.
    item_popularity: (n_items,) global popularity weight (max 1).
    cluster_item_taste: (n_clusters, n_items) multiplicative taste of each cluster.
    item_price: (n_items,) list price (currency).
    log: the sampled InteractionLog (sorted by time, with prices).
    """

    config: SyntheticConfig
    seed: int
    user_cluster: np.ndarray
    user_category_pref: np.ndarray
    user_price_band: np.ndarray
    item_popularity: np.ndarray
    cluster_item_taste: np.ndarray
    item_price: np.ndarray
    log: InteractionLog

    @property
    def item_category(self) -> np.ndarray:
        return self.log.item_category

    @property
    def item_price_band(self) -> np.ndarray:
        return self.log.item_price_band

    def view_weights(self, user_ids: Any) -> np.ndarray:
        """(B, n_items) probability that a view by each user lands on each item.

        P(item | user) = sum over the item's category c of pref[u, c] * w(u, item) /
        sum of w over the items of c, where w = popularity x cluster taste x price fit.
        The rows sum to 1 (it is the exact view distribution of the generator).
        """
        users = int_array("user_ids", user_ids, lo=0, hi=self.config.n_users)
        return _view_distribution(self, users)

    def click_probabilities(self, user_ids: Any) -> np.ndarray:
        """(B, n_items) probability that a view of the item by the user becomes a click."""
        users = int_array("user_ids", user_ids, lo=0, hi=self.config.n_users)
        return self.config.p_click * _price_fit(self, users)


def _price_fit(world: SyntheticWorld, users: np.ndarray) -> np.ndarray:
    dist = np.abs(world.user_price_band[users][:, None] - world.item_price_band[None, :])
    return np.exp(-world.config.price_fit_decay * dist)


def _view_distribution(world: SyntheticWorld, users: np.ndarray) -> np.ndarray:
    cat = world.item_category
    w = (world.item_popularity[None, :] * world.cluster_item_taste[world.user_cluster[users]]
         * _price_fit(world, users))
    n_cat = world.config.n_categories
    totals = np.zeros((users.shape[0], n_cat))
    for c in range(n_cat):
        totals[:, c] = w[:, cat == c].sum(axis=1)
    return world.user_category_pref[users][:, cat] * w / totals[:, cat]


def synthetic_world(config: SyntheticConfig | None = None, *, seed: int = 0) -> SyntheticWorld:
    """Samples a synthetic marketplace with planted structure and its interaction log.

    Deterministic: the same config and seed give identical arrays (NumPy PCG64 stream).
    See SyntheticConfig for the generative story and every knob.
    """
    cfg = SyntheticConfig() if config is None else config
    if not isinstance(cfg, SyntheticConfig):
        raise ValueError(f"config: expected a SyntheticConfig, got {type(cfg).__name__}")
    seed = check_seed(seed, bits=63)
    rng = np.random.default_rng(seed)
    U, N, C, B, K = cfg.n_users, cfg.n_items, cfg.n_categories, cfg.n_price_bands, cfg.n_clusters

    # Catalogue: every category gets at least one item, the rest are spread at random.
    item_category = np.concatenate([np.arange(C), rng.integers(0, C, N - C)])
    rng.shuffle(item_category)
    item_price_band = rng.integers(0, B, N)
    rank = rng.permutation(N) + 1
    item_popularity = rank.astype(np.float64) ** -cfg.popularity_exponent
    item_popularity /= item_popularity.max()
    item_price = (cfg.base_price * cfg.price_band_ratio ** item_price_band
                  * np.exp(cfg.price_sigma * rng.standard_normal(N)))

    # Users: cluster -> category preference around the cluster's, own price band.
    cluster_pref = rng.dirichlet(np.full(C, cfg.cluster_concentration), K)
    user_cluster = rng.integers(0, K, U)
    # A floor keeps every Dirichlet parameter positive even where a cluster's weight underflows.
    alpha = cfg.user_concentration * cluster_pref[user_cluster] + 1e-3
    user_pref = rng.gamma(alpha)
    user_pref /= user_pref.sum(axis=1, keepdims=True)
    user_band = rng.integers(0, B, U)
    taste = np.exp(cfg.taste_sigma * rng.standard_normal((K, N)))

    world_partial = SyntheticWorld(
        config=cfg, seed=seed, user_cluster=user_cluster, user_category_pref=user_pref,
        user_price_band=user_band, item_popularity=item_popularity, cluster_item_taste=taste,
        item_price=item_price,
        log=InteractionLog(user_ids=np.zeros(0, np.int64), item_ids=np.zeros(0, np.int64),
                           events=np.zeros(0, np.int8), timestamps=np.zeros(0),
                           item_category=item_category, item_price_band=item_price_band,
                           n_users=U),
    )

    # Sessions: user, start time, category.
    n_sessions = 1 + rng.poisson(cfg.sessions_per_user - 1.0, U)
    s_user = np.repeat(np.arange(U), n_sessions)
    S = s_user.shape[0]
    s_start = rng.uniform(0.0, cfg.horizon_days * SECONDS_PER_DAY, S)
    cdf = np.cumsum(user_pref[s_user], axis=1)
    s_cat = np.minimum((cdf < rng.uniform(0.0, 1.0, S)[:, None] * cdf[:, -1:]).sum(axis=1), C - 1)

    # Views: items drawn within the session's category by popularity x taste x price fit.
    n_views = 1 + rng.poisson(cfg.views_per_session - 1.0, S)
    v_session = np.repeat(np.arange(S), n_views)
    v_user, v_cat = s_user[v_session], s_cat[v_session]
    v_item = np.empty(v_session.shape[0], dtype=np.int64)
    u_draw = rng.uniform(0.0, 1.0, v_session.shape[0])
    group = (user_cluster[v_user] * B + user_band[v_user]) * C + v_cat
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for idx in np.split(order, bounds):
        g = int(group[idx[0]])
        k, rest = divmod(g, B * C)
        b, c = divmod(rest, C)
        items_c = np.flatnonzero(item_category == c)
        w = (item_popularity[items_c] * taste[k, items_c]
             * np.exp(-cfg.price_fit_decay * np.abs(item_price_band[items_c] - b)))
        cw = np.cumsum(w)
        pick = np.minimum(np.searchsorted(cw, u_draw[idx] * cw[-1], side="right"),
                          items_c.shape[0] - 1)
        v_item[idx] = items_c[pick]

    # Funnel: each stage converts with its rate; the click rate also depends on price fit.
    fit = np.exp(-cfg.price_fit_decay * np.abs(item_price_band[v_item] - user_band[v_user]))
    clicked = rng.uniform(size=v_item.shape[0]) < cfg.p_click * fit
    carted = clicked & (rng.uniform(size=v_item.shape[0]) < cfg.p_cart)
    bought = carted & (rng.uniform(size=v_item.shape[0]) < cfg.p_purchase)

    # Time: each view and each further funnel step is an exponential gap after the last one
    # of its session; funnel steps follow their view directly.
    steps = 1 + clicked.astype(np.int64) + carted + bought
    gaps = rng.exponential(cfg.mean_gap_seconds, int(steps.sum()))
    e_view = np.repeat(np.arange(v_item.shape[0]), steps)
    e_stage = np.arange(e_view.shape[0]) - np.repeat(np.cumsum(steps) - steps, steps)
    e_session = v_session[e_view]
    cum = np.cumsum(gaps)
    first_of_session = np.r_[True, e_session[1:] != e_session[:-1]]
    session_base = np.maximum.accumulate(np.where(first_of_session, cum - gaps, 0.0))
    e_time = s_start[e_session] + (cum - session_base)

    log = InteractionLog(
        user_ids=v_user[e_view], item_ids=v_item[e_view], events=e_stage.astype(np.int8),
        timestamps=e_time, item_category=item_category, item_price_band=item_price_band,
        n_users=U, prices=item_price[v_item[e_view]],
    ).sorted_by_time()
    return dataclasses.replace(world_partial, log=log)


def synthetic_log(config: SyntheticConfig | None = None, *, seed: int = 0) -> InteractionLog:
    """The interaction log of ``synthetic_world(config, seed=seed)``."""
    return synthetic_world(config, seed=seed).log
