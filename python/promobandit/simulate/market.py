"""A marketplace with known ground truth: items, shoppers, sessions, offers and purchases.

The world (drawn once from ``MarketConfig.seed``):

* **Items**: a category, a list price (on the currency's minor grid), a unit cost (gross
  margin between ``margin_min`` and ``margin_max``), a *reference price* (what shoppers
  think the item is worth: list price times a log-normal factor), a latent vector near
  its category's centre, and a quality term (popularity).
* **Shoppers**: latent preferences (a Dirichlet mix of category centres), a category
  taste, a price sensitivity beta (a mix of deal-seekers and full-price buyers whose
  share differs by region), a visit rate (sessions per day), and two group labels:
  ``region`` and ``tenure`` ("new": no behaviour before the run, else "returning").
* **Sessions** arrive per shopper as a Poisson process over days, scaled by the weekly
  profile and spread over the day by the hourly profile. A session browses one category
  (drawn from the shopper's taste).

A session, step by step:

1. The recommender shows ``items_shown`` items of the category. The shopper clicks one of
   them, or none, by a logit over ``click_affinity * affinity - click_position_decay *
   rank`` against ``click_outside``.
2. On the clicked item's page the engine decides the offer, priced on the clicked item
   and the suggested add-on (the best-ranked other shown item): the basket the shopper
   can end up with.
3. The shopper buys nothing, the item alone, or the item and the add-on, by a logit
   over ``buy_intercept + buy_affinity * affinity + beta * log(reference / price paid)``
   (+ ``addon_intercept + addon_affinity * affinity(add-on)`` for the pair) plus the
   day's demand shift. The price paid uses the best promotion available: the session's
   offer, a coupon held from an earlier decision (remembered with probability
   ``coupon_recall``), or a time-limited offer still running. One promotion per order.

Offer kinds behave as their names say: a percent offer lowers the price; *spend X save
Y* makes the pair cheaper once it crosses X, so shoppers whose item is near the
threshold add the add-on; a *time-limited* offer adds ``urgency`` to this session's
utilities and, if not used now, stays valid in later sessions until it expires; a
*coupon* costs nothing now and is redeemed (or not) on a later visit within its
validity, if the order reaches its minimum spend.

Ground truth: for every decision the simulator computes the expected profit (paid - cost
of goods, the engine's default objective, currency) of every offer given the shopper's
state, so the regret against the best eligible offer of that context is exact. This is
the decision's own session: a coupon's later redemption and a running time-limited
offer show up in the profit of the later session they change, not in this regret.

Randomness: the world, the session stream and every uniform behind clicks, purchases,
coupon recall and delays come from NumPy generators keyed by (seed, purpose), drawn
once per session. Every policy run over the same sessions uses the same numbers
(common random numbers), so differences between policies are the policies'.
Money is in the catalogue's currency; rates are fractions; times are unix seconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..events import SECONDS_PER_DAY, SECONDS_PER_HOUR
from ..offers import Catalogue, NoDiscount, PercentOff
from ..offers.pricing import KIND_NONE, PricingTable, line_minor
from . import _kernels as K

# The run starts on a Monday at midnight UTC (2026-01-05), so day-of-week profiles and
# the engine's UTC day boundaries line up with simulated days.
RUN_START = 1_767_571_200.0

# Streams of the NumPy generators: (seed, purpose[, part]).
_WORLD, _SESSIONS, _LISTS, _HISTORY = 1, 2, 3, 4

DEFAULT_HOURLY = (0.4, 0.25, 0.15, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.1,
                  1.2, 1.1, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.7, 1.5, 1.1, 0.7)


def _tuple(name: str, value: Any, n: int | None = None, lo: float | None = None,
           hi: float | None = None) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name}: expected a list of numbers, got {value!r}")
    out = tuple(check_range(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(value))
    if n is not None and len(out) != n:
        raise ValueError(f"{name}: expected {n} values, got {len(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class MarketConfig:
    """Every knob of the simulated marketplace (money in currency, rates as fractions).

    World size: n_users shoppers, n_items items in n_categories categories (each
    category holds at least items_shown items), latent_dim dimensions of the latent
    taste space.
    regions: region names (a group label); region_shares: share of shoppers per region;
        deal_seeker_share: share of deal-seekers in each region.
    new_user_share: share of shoppers with no behaviour before the run ("new" tenure).
    price_sensitivity_deal, price_sensitivity_full: median beta of deal-seekers and of
        full-price buyers (utility per unit of log(reference / price paid));
        price_sensitivity_spread: log-normal sigma of beta around those medians.
    deal_reference_discount: deal-seekers expect this fraction off: their reference
        price is the item's times (1 - this), so list price looks dear to them.
    deal_channel_rate: (deal-seekers, full-price buyers) probability that a session
        arrives through the shop's deal pages: an observable behaviour signal (the shop
        sees the landing page), not a cause of anything.
    visits_per_day: mean sessions per shopper per day; visit_rate_spread: log-normal
        sigma of the shopper's rate.
    price_median, price_spread, price_min, price_max: log-normal list prices (currency),
        clipped; margin_min, margin_max: gross margin (1 - cost / price), uniform per item.
    reference_spread: log-normal sigma of reference price / list price.
    taste_concentration: Dirichlet concentration of a shopper's category taste (small:
        a few favourite categories). affinity_scale: standard deviation of the
        shopper-item affinity from latent vectors; quality_spread: standard deviation
        of the item quality term added to every shopper's affinity.
    items_shown: items the recommender shows per session (k).
    click_affinity, click_position_decay, click_outside: the click logit (see module).
    buy_intercept, buy_affinity, addon_intercept, addon_affinity: the purchase logit.
    urgency: utility added to both purchase options by a time-limited offer.
    coupon_recall: probability that a shopper holding a valid coupon uses it.
    weekly_visits: 7 multipliers of the visit rate, Monday first; weekly_demand: 7
        additive shifts of the purchase utility. hourly_visits: 24 relative weights of
        session start times (UTC hours).
    shock_day: day of the run (from 0) when a demand shock starts, or None for none;
        shock_days: its length (days); shock_demand: additive purchase-utility shift
        during it; shock_price_sensitivity: multiplier of every beta during it.
    click_delay_median_seconds: median seconds from a session's start to its click
        (log-normal, sigma delay_spread); purchase_delay_median_seconds: median seconds
        from the offer to the purchase event (log-normal, sigma delay_spread).
    history_days: days of behaviour before the run (returning shoppers only), used to
        train the recommender and build features; history_promo_rate: share of historic
        decisions with a random percent discount; history_promo_fractions: the
        discounts drawn from (fractions).
    seed: the world, the sessions and every random number of the market.
    """

    n_users: int = 20_000
    n_items: int = 400
    n_categories: int = 12
    latent_dim: int = 8
    regions: tuple[str, ...] = ("north", "south", "west")
    region_shares: tuple[float, ...] = (0.45, 0.35, 0.20)
    deal_seeker_share: tuple[float, ...] = (0.20, 0.55, 0.35)
    new_user_share: float = 0.25
    price_sensitivity_deal: float = 9.0
    price_sensitivity_full: float = 2.0
    price_sensitivity_spread: float = 0.3
    deal_reference_discount: float = 0.12
    deal_channel_rate: tuple[float, ...] = (0.55, 0.08)
    visits_per_day: float = 0.35
    visit_rate_spread: float = 0.6
    price_median: float = 35.0
    price_spread: float = 0.55
    price_min: float = 3.0
    price_max: float = 400.0
    margin_min: float = 0.18
    margin_max: float = 0.55
    reference_spread: float = 0.08
    taste_concentration: float = 0.4
    affinity_scale: float = 1.0
    quality_spread: float = 0.5
    items_shown: int = 6
    click_affinity: float = 1.0
    click_position_decay: float = 0.2
    click_outside: float = 3.0
    buy_intercept: float = -2.8
    buy_affinity: float = 0.6
    addon_intercept: float = -2.4
    addon_affinity: float = 0.5
    urgency: float = 0.15
    coupon_recall: float = 0.6
    weekly_visits: tuple[float, ...] = (0.95, 0.9, 0.9, 0.95, 1.05, 1.15, 1.1)
    weekly_demand: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.05, 0.15, 0.1)
    hourly_visits: tuple[float, ...] = DEFAULT_HOURLY
    shock_day: float | None = None
    shock_days: float = 3.0
    shock_demand: float = -0.6
    shock_price_sensitivity: float = 1.5
    click_delay_median_seconds: float = 30.0
    purchase_delay_median_seconds: float = 240.0
    delay_spread: float = 1.0
    history_days: float = 28.0
    history_promo_rate: float = 0.4
    history_promo_fractions: tuple[float, ...] = (0.1, 0.2)
    seed: int = 0

    def __post_init__(self) -> None:
        for name, lo in (("n_users", 1), ("n_items", 2), ("n_categories", 1), ("latent_dim", 1),
                         ("items_shown", 2), ("seed", 0)):
            check_int(name, getattr(self, name), lo)
        if not isinstance(self.regions, (tuple, list)) or not self.regions or not all(
                isinstance(r, str) and r for r in self.regions):
            raise ValueError(f"regions: expected a list of non-empty names, got {self.regions!r}")
        if len(set(self.regions)) != len(self.regions):
            raise ValueError(f"regions: expected distinct names, got {list(self.regions)}")
        nr = len(self.regions)
        set_ = object.__setattr__
        set_(self, "regions", tuple(self.regions))
        shares = _tuple("region_shares", self.region_shares, nr, 0.0)
        if sum(shares) <= 0:
            raise ValueError("region_shares: expected a positive sum")
        set_(self, "region_shares", shares)
        set_(self, "deal_seeker_share", _tuple("deal_seeker_share", self.deal_seeker_share, nr,
                                               0.0, 1.0))
        check_range("new_user_share", self.new_user_share, 0.0, 1.0)
        for name in ("price_sensitivity_deal", "price_sensitivity_full",
                     "price_sensitivity_spread", "visit_rate_spread", "price_spread",
                     "reference_spread", "affinity_scale", "quality_spread", "click_affinity",
                     "click_position_decay", "buy_affinity", "addon_affinity", "urgency",
                     "delay_spread", "history_days"):
            check_range(name, getattr(self, name), 0.0)
        for name in ("visits_per_day", "price_median", "price_min", "taste_concentration",
                     "click_delay_median_seconds", "purchase_delay_median_seconds",
                     "shock_days", "shock_price_sensitivity"):
            check_range(name, getattr(self, name), 0.0, lo_open=True)
        check_range("price_max", self.price_max, self.price_min, lo_open=True)
        check_range("margin_min", self.margin_min, 0.0, 1.0, hi_open=True)
        check_range("margin_max", self.margin_max, self.margin_min, 1.0, hi_open=True)
        for name in ("click_outside", "buy_intercept", "addon_intercept", "shock_demand"):
            check_range(name, getattr(self, name))
        check_range("coupon_recall", self.coupon_recall, 0.0, 1.0)
        check_range("deal_reference_discount", self.deal_reference_discount, 0.0, 1.0,
                    hi_open=True)
        set_(self, "deal_channel_rate", _tuple("deal_channel_rate", self.deal_channel_rate, 2,
                                               0.0, 1.0))
        set_(self, "weekly_visits", _tuple("weekly_visits", self.weekly_visits, 7, 0.0))
        set_(self, "weekly_demand", _tuple("weekly_demand", self.weekly_demand, 7))
        hourly = _tuple("hourly_visits", self.hourly_visits, 24, 0.0)
        if sum(hourly) <= 0:
            raise ValueError("hourly_visits: expected a positive sum")
        set_(self, "hourly_visits", hourly)
        if self.shock_day is not None:
            check_range("shock_day", self.shock_day, 0.0)
        check_range("history_promo_rate", self.history_promo_rate, 0.0, 1.0)
        fr = _tuple("history_promo_fractions", self.history_promo_fractions, None, 0.0, 1.0)
        if not fr or any(f <= 0.0 or f >= 1.0 for f in fr):
            raise ValueError("history_promo_fractions: expected fractions in (0, 1), got "
                             f"{list(fr)}")
        set_(self, "history_promo_fractions", fr)
        if self.n_items < self.n_categories * self.items_shown:
            raise ValueError(f"n_items: expected at least n_categories x items_shown = "
                             f"{self.n_categories * self.items_shown} (every category must fill "
                             f"a list), got {self.n_items}")


@dataclasses.dataclass(frozen=True, eq=False)
class Sessions:
    """A time-ordered stream of sessions with their common random numbers.

    user: shopper index; time: session start (unix seconds); day: day index from the
    stream's origin; category: the browsed category; via_deals: the session arrived
    through the deal pages (observable). u_click, u_buy, u_recall: the
    uniforms behind the click, the purchase and the coupon recall. click_delay,
    purchase_delay: seconds (start to click, offer to purchase event).
    """

    user: np.ndarray
    time: np.ndarray
    day: np.ndarray
    category: np.ndarray
    via_deals: np.ndarray
    u_click: np.ndarray
    u_buy: np.ndarray
    u_recall: np.ndarray
    click_delay: np.ndarray
    purchase_delay: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def select(self, rows: np.ndarray) -> Sessions:
        return Sessions(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})


@dataclasses.dataclass
class Holdings:
    """Promotions each shopper holds (one coupon, one running time-limited offer).

    coupon_until / timed_until: expiry time (unix seconds, -inf for none);
    coupon_offer / timed_offer: the catalogue index of the offer that issued it.
    """

    coupon_until: np.ndarray
    coupon_offer: np.ndarray
    timed_until: np.ndarray
    timed_offer: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class StepResult:
    """What the market computed for a batch of decisions (arrays of length n).

    expected (n, K): expected profit of every offer (currency); eligible (n, K): the
    margin floor allows the offer on the quoted basket; depth (n, K): the offer's
    quoted cost over the basket's list total. outcome: OUTCOME_NONE / ITEM / BUNDLE;
    paid, cogs, saving: currency of the purchase (0 without one); source: which
    promotion priced it (SOURCE_*).
    """

    expected: np.ndarray
    eligible: np.ndarray
    depth: np.ndarray
    outcome: np.ndarray
    paid: np.ndarray
    cogs: np.ndarray
    saving: np.ndarray
    source: np.ndarray

    @property
    def profit(self) -> np.ndarray:
        return self.paid - self.cogs


def _none_offer(table: PricingTable) -> int:
    """The first no-discount offer of a table (the market needs one)."""
    nones = np.flatnonzero(table.kind == KIND_NONE)
    if nones.size == 0:
        raise ValueError("catalogue: the market needs a no-discount offer (the engine "
                         "falls back to it when nothing else is eligible)")
    return int(nones[0])


class Market:
    """The ground truth of a simulated marketplace (see the module docstring).

    Attributes (arrays): item_category, item_price, item_cost, item_ref, item_vec,
    item_quality, item_price_band; user_vec, user_taste (U, C) category probabilities,
    user_beta, user_ref (reference-price multiplier), user_deal (ground-truth segment),
    user_region, user_new, user_rate. Pricing: offers, the catalogue's PricingTable (the
    engine's); excluded (K, N), the items each offer excludes; item_list_minor and
    item_headroom_minor, each item's list amount and headroom above its margin floor in
    minor units (``pricing.line_minor``, a one-unit line).
    """

    def __init__(self, config: MarketConfig, catalogue: Catalogue) -> None:
        if not isinstance(config, MarketConfig):
            raise ValueError(f"config: expected a MarketConfig, got {type(config).__name__}")
        if not isinstance(catalogue, Catalogue):
            raise ValueError(f"catalogue: expected a Catalogue, got {type(catalogue).__name__}")
        self.config = config
        self._set_catalogue(catalogue)
        self._build_world()
        self.excluded = self.excluded_items(self.offers)

    def _set_catalogue(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.offers = catalogue.pricing
        self.per_unit = self.offers.per_unit
        self._none_offer = _none_offer(self.offers)

    # --- the world ------------------------------------------------------------------------
    def _build_world(self) -> None:
        c = self.config
        rs = np.random.default_rng([c.seed, _WORLD])
        n, u, cats, d = c.n_items, c.n_users, c.n_categories, c.latent_dim
        centres = rs.normal(size=(cats, d))
        # Every category gets at least items_shown items; the rest are spread at random.
        cat = np.concatenate([np.repeat(np.arange(cats), c.items_shown),
                              rs.integers(0, cats, n - cats * c.items_shown)])
        self.item_category = rs.permutation(cat).astype(np.int64)
        item_vec = centres[self.item_category] + 0.6 * rs.normal(size=(n, d))
        price = np.exp(np.log(c.price_median) + c.price_spread * rs.normal(size=n))
        price = np.clip(price, c.price_min, c.price_max)
        # Prices end in .99 or .49 of the currency unit where the minor unit allows.
        price = np.round(np.round(price * 2.0) / 2.0 - 0.01, 2)
        price = np.maximum(price, c.price_min)
        self.item_price = np.round(price * self.per_unit) / self.per_unit
        margin = rs.uniform(c.margin_min, c.margin_max, n)
        self.item_cost = np.round(self.item_price * (1.0 - margin), 2)
        self.item_ref = self.item_price * np.exp(c.reference_spread * rs.normal(size=n))
        self.item_quality = c.quality_spread * rs.normal(size=n)
        bands = np.quantile(self.item_price, [0.2, 0.4, 0.6, 0.8])
        self.item_price_band = np.searchsorted(bands, self.item_price).astype(np.int64)

        taste = rs.dirichlet(np.full(cats, c.taste_concentration), size=u)
        self.user_taste = taste
        user_vec = taste @ centres + 0.5 * rs.normal(size=(u, d))
        # Scale so that affinity = user_vec . item_vec has standard deviation affinity_scale.
        raw = np.einsum("ud,ud->u", user_vec[:2000], item_vec[rs.integers(0, n, min(u, 2000))])
        scale = c.affinity_scale / max(float(np.std(raw)), 1e-9)
        self.item_vec = np.ascontiguousarray(item_vec * math.sqrt(scale))
        self.user_vec = np.ascontiguousarray(user_vec * math.sqrt(scale))
        shares = np.asarray(c.region_shares) / sum(c.region_shares)
        self.user_region = rs.choice(len(c.regions), size=u, p=shares).astype(np.int64)
        self.user_deal = rs.random(u) < np.asarray(c.deal_seeker_share)[self.user_region]
        median = np.where(self.user_deal, c.price_sensitivity_deal, c.price_sensitivity_full)
        self.user_beta = median * np.exp(c.price_sensitivity_spread * rs.normal(size=u))
        self.user_ref = np.where(self.user_deal, 1.0 - c.deal_reference_discount, 1.0)
        self.user_new = rs.random(u) < c.new_user_share
        self.user_rate = c.visits_per_day * np.exp(
            c.visit_rate_spread * rs.normal(size=u) - 0.5 * c.visit_rate_spread ** 2)
        self._derive()

    def _derive(self) -> None:
        """Each item's list amount and headroom in minor units: a one-unit line, priced
        by the engine's rule (``pricing.line_minor``)."""
        amount, headroom = line_minor(self.item_price, self.item_cost, 1, self.per_unit,
                                      self.offers.margin_mult)
        self.item_list_minor = amount.astype(np.int64)
        self.item_headroom_minor = headroom.astype(np.int64)

    def excluded_items(self, table: PricingTable) -> np.ndarray:
        """(K, N) bool: item i is excluded from offer k of ``table`` (by id or category)."""
        return table.excluded_lines(np.arange(self.item_category.shape[0]), self.item_category)

    # Arrays a hand-made world must give (see from_world), with their dtypes.
    WORLD_ARRAYS: tuple[tuple[str, Any], ...] = (
        ("item_category", np.int64), ("item_price", np.float64), ("item_cost", np.float64),
        ("item_ref", np.float64), ("item_vec", np.float64), ("item_quality", np.float64),
        ("item_price_band", np.int64), ("user_vec", np.float64), ("user_taste", np.float64),
        ("user_beta", np.float64), ("user_ref", np.float64), ("user_deal", np.bool_),
        ("user_region", np.int64), ("user_new", np.bool_), ("user_rate", np.float64))

    @classmethod
    def from_world(cls, config: MarketConfig, catalogue: Catalogue, **arrays: Any) -> Market:
        """A market whose world is given, not drawn: every name of WORLD_ARRAYS as a
        keyword (sizes as in the config: n_items items, n_users shoppers, latent_dim).
        For worlds small enough to check by hand; the sessions still come from the seed."""
        missing = [name for name, _ in cls.WORLD_ARRAYS if name not in arrays]
        extra = sorted(set(arrays) - {name for name, _ in cls.WORLD_ARRAYS})
        if missing or extra:
            raise ValueError(f"arrays: missing {missing}, unknown {extra}")
        m = cls.__new__(cls)
        m.config = config
        m._set_catalogue(catalogue)
        c = config
        shapes = {"item_vec": (c.n_items, c.latent_dim), "user_vec": (c.n_users, c.latent_dim),
                  "user_taste": (c.n_users, c.n_categories)}
        for name, dtype in cls.WORLD_ARRAYS:
            a = np.ascontiguousarray(arrays[name], dtype=dtype)
            want = shapes.get(name, (c.n_items,) if name.startswith("item_") else (c.n_users,))
            if a.shape != want:
                raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
            setattr(m, name, a)
        if (m.item_cost < 0).any() or (m.item_cost > m.item_price).any():
            raise ValueError("item_cost: expected costs in [0, item_price]")
        m._derive()
        m.excluded = m.excluded_items(m.offers)
        return m

    @property
    def n_offers(self) -> int:
        return len(self.catalogue)

    @property
    def none_offer(self) -> int:
        """Index of the catalogue's no-discount offer."""
        return self._none_offer

    def kernel_params(self) -> np.ndarray:
        """The float parameter vector of the kernels (layout in _kernels.P_*)."""
        c = self.config
        p = np.zeros(K.N_PARAMS)
        p[K.P_BUY_INTERCEPT], p[K.P_BUY_AFFINITY] = c.buy_intercept, c.buy_affinity
        p[K.P_ADDON_INTERCEPT], p[K.P_ADDON_AFFINITY] = c.addon_intercept, c.addon_affinity
        p[K.P_URGENCY], p[K.P_COUPON_RECALL] = c.urgency, c.coupon_recall
        p[K.P_PER_UNIT] = float(self.per_unit)
        return p

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ground-truth affinity of shopper users[n] for items[n, ...] (broadcast)."""
        uv = self.user_vec[users]
        iv = self.item_vec[items]
        if iv.ndim == uv.ndim + 1:
            return np.einsum("nd,nkd->nk", uv, iv) + self.item_quality[items]
        return np.einsum("nd,nd->n", uv, iv) + self.item_quality[items]

    # --- time -----------------------------------------------------------------------------
    def demand(self, times: np.ndarray, origin: float = RUN_START
               ) -> tuple[np.ndarray, np.ndarray]:
        """(additive purchase-utility shift, price-sensitivity multiplier) at each time."""
        c = self.config
        day = np.floor((times - origin) / SECONDS_PER_DAY)
        dow = np.mod(np.floor((times - RUN_START) / SECONDS_PER_DAY), 7).astype(np.int64)
        shift = np.asarray(c.weekly_demand)[dow]
        mult = np.ones_like(times)
        if c.shock_day is not None:
            on = (day >= c.shock_day) & (day < c.shock_day + c.shock_days)
            shift = shift + np.where(on, c.shock_demand, 0.0)
            mult = np.where(on, c.shock_price_sensitivity, 1.0)
        return np.ascontiguousarray(shift, dtype=np.float64), np.ascontiguousarray(mult)

    # --- sessions -------------------------------------------------------------------------
    def sessions(self, days: float, *, origin: float = RUN_START, stream: int = 0,
                 users: np.ndarray | None = None) -> Sessions:
        """Sessions of `users` (default all) over `days` days from `origin` (seconds).

        Vectorised: per day one Poisson count per shopper, then start times from the
        hourly profile. stream separates independent streams of one market (e.g. the
        behaviour history and the run)."""
        c = self.config
        check_range("days", days, 0.0, lo_open=True)
        rs = np.random.default_rng([c.seed, _SESSIONS, stream])
        who = np.arange(c.n_users) if users is None else np.asarray(users, dtype=np.int64)
        n_days = math.ceil(days)
        hourly = np.asarray(c.hourly_visits) / sum(c.hourly_visits)
        weekly = np.asarray(c.weekly_visits)
        start_dow = int(np.floor((origin - RUN_START) / SECONDS_PER_DAY)) % 7
        parts_u, parts_t = [], []
        rate = self.user_rate[who]
        for d in range(n_days):
            frac = min(1.0, days - d)
            counts = rs.poisson(rate * weekly[(start_dow + d) % 7] * frac)
            us = np.repeat(who, counts)
            hours = rs.choice(24, size=us.shape[0], p=hourly)
            secs = (hours + rs.random(us.shape[0])) * SECONDS_PER_HOUR
            keep = secs < frac * SECONDS_PER_DAY
            parts_u.append(us[keep])
            parts_t.append(origin + d * SECONDS_PER_DAY + secs[keep])
        user = np.concatenate(parts_u) if parts_u else np.zeros(0, np.int64)
        time = np.concatenate(parts_t) if parts_t else np.zeros(0)
        order = np.argsort(time, kind="stable")
        user, time = user[order].astype(np.int64), time[order]
        m: int = int(user.shape[0])
        cum = np.cumsum(self.user_taste[user], axis=1)
        category = (rs.random((m, 1)) > cum[:, :-1]).sum(axis=1).astype(np.int64)
        sigma = c.delay_spread
        return Sessions(
            user=user, time=time,
            day=np.floor((time - origin) / SECONDS_PER_DAY).astype(np.int64),
            category=category,
            via_deals=rs.random((m,)) < np.asarray(c.deal_channel_rate)[
                np.where(self.user_deal[user], 0, 1)],
            u_click=rs.random((m,)), u_buy=rs.random((m,)), u_recall=rs.random((m,)),
            click_delay=c.click_delay_median_seconds * np.exp(sigma * rs.normal(size=m)),
            purchase_delay=c.purchase_delay_median_seconds * np.exp(sigma * rs.normal(size=m)),
        )

    # --- lists ----------------------------------------------------------------------------
    def category_items(self) -> list[np.ndarray]:
        """Item ids of each category, ascending."""
        return [np.flatnonzero(self.item_category == c) for c in range(self.config.n_categories)]

    def top_lists(self, score_fn: Any, categories: np.ndarray) -> np.ndarray:
        """(n, k) the k best items of each row's category, best first (ties to the lower
        item id). score_fn(rows, items) gives the (len(rows), len(items)) scores of the
        rows' candidates; it is called once per category, on that category's items."""
        k = self.config.items_shown
        out = np.empty((categories.shape[0], k), dtype=np.int64)
        for c, items in enumerate(self.category_items()):
            rows = np.flatnonzero(categories == c)
            if rows.size == 0:
                continue
            order = np.argsort(-score_fn(rows, items), axis=1, kind="stable")[:, :k]
            out[rows] = items[order]
        return out

    def oracle_lists(self, sessions: Sessions) -> np.ndarray:
        """Lists ranked by the true click utility (affinity): the best a recommender can do."""
        users = sessions.user
        return self.top_lists(
            lambda rows, items: (self.user_vec[users[rows]] @ self.item_vec[items].T
                                 + self.item_quality[items][None, :]), sessions.category)

    def popularity_lists(self, sessions: Sessions, popularity: np.ndarray) -> np.ndarray:
        """The same list per category: the items with the highest `popularity` (N,)."""
        cats = np.arange(self.config.n_categories)
        table = self.top_lists(lambda rows, items: np.broadcast_to(
            popularity[items], (rows.shape[0], items.shape[0])), cats)
        return table[sessions.category]

    def random_lists(self, sessions: Sessions, stream: int = 0) -> np.ndarray:
        """Uniformly random items of the session's category (the history's recommender)."""
        rs = np.random.default_rng([self.config.seed, _LISTS, stream])
        return self.top_lists(lambda rows, items: rs.random((rows.shape[0], items.shape[0])),
                              sessions.category)

    def clicks(self, sessions: Sessions, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(clicked position per session, -1 for none; click probability per session)."""
        c = self.config
        prob = np.empty(len(sessions))
        pos = K.click_positions(sessions.user, np.ascontiguousarray(shown, dtype=np.int64),
                                sessions.u_click, self.item_vec, self.item_quality,
                                self.user_vec, c.click_affinity, c.click_position_decay,
                                c.click_outside, prob)
        return pos, prob

    @staticmethod
    def addons(shown: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """The suggested add-on of each click: the best-ranked other shown item."""
        first = shown[:, 0]
        second = shown[:, 1]
        return np.where(pos == 0, second, first)

    # --- decisions ------------------------------------------------------------------------
    def new_holdings(self) -> Holdings:
        u = self.config.n_users
        return Holdings(np.full(u, -np.inf), np.zeros(u, np.int64), np.full(u, -np.inf),
                        np.zeros(u, np.int64))

    def _table(self, table: PricingTable | None) -> tuple[PricingTable, np.ndarray]:
        """(table, its (K, N) excluded-item mask); None: this market's catalogue."""
        if table is None:
            return self.offers, self.excluded
        if not isinstance(table, PricingTable):
            raise ValueError(f"table: expected a PricingTable, got {type(table).__name__}")
        if (table.per_unit, table.margin_floor) != (self.per_unit, self.offers.margin_floor):
            raise ValueError(f"table: expected the market's minor unit 1/{self.per_unit} and "
                             f"margin floor {self.offers.margin_floor:g} (item amounts and "
                             f"floors are priced with them), got 1/{table.per_unit} and "
                             f"{table.margin_floor:g}")
        return table, self.excluded_items(table)

    def price_orders(self, items: np.ndarray, addons: np.ndarray, *, redeem: bool = False,
                     table: PricingTable | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every offer on every order, as the market's kernels price it: (saving (n, K)
        int64 minor units, usable (n, K) bool: no line below its margin floor).

        Order n is one unit of items[n] and, unless addons[n] < 0, one of addons[n]. A
        coupon is priced as issued (no saving), or as redeemed on the order when
        ``redeem``. table: the offers (default this market's catalogue)."""
        t, excluded = self._table(table)
        a = np.ascontiguousarray(items, dtype=np.int64)
        b = np.ascontiguousarray(addons, dtype=np.int64)
        if a.ndim != 1 or b.shape != a.shape:
            raise ValueError(f"addons: expected the shape of items {a.shape}, got {b.shape}")
        n_items = self.item_category.shape[0]
        for name, x, lo in (("items", a, 0), ("addons", b, -1)):
            if x.size and (x.min() < lo or x.max() >= n_items):
                raise ValueError(f"{name}: expected item ids in [{lo}, {n_items}), got "
                                 f"[{x.min()}, {x.max()}]")
        saving = np.empty((a.shape[0], len(t)), np.int64)
        usable = np.empty((a.shape[0], len(t)), np.bool_)
        K.price_orders(a, b, bool(redeem), t.kind, t.ppm, t.threshold, t.amount, excluded,
                       self.item_list_minor, self.item_headroom_minor, saving, usable)
        return saving, usable

    def step(self, users: np.ndarray, items: np.ndarray, addons: np.ndarray,
             times: np.ndarray, offers: np.ndarray, u_buy: np.ndarray, u_recall: np.ndarray,
             holdings: Holdings, *, table: PricingTable | None = None,
             params: np.ndarray | None = None) -> StepResult:
        """Expected profit of every offer and the outcome of the chosen ones (see
        _kernels.step); offers[n] = -1 computes the expectations only. Updates holdings.

        table: the offers (default this market's catalogue: ``offers``); params:
        kernel_params()."""
        t, excluded = self._table(table)
        n, k = users.shape[0], len(t)
        shift, mult = self.demand(times)
        out = StepResult(expected=np.empty((n, k)), eligible=np.empty((n, k), dtype=np.bool_),
                         depth=np.empty((n, k)), outcome=np.zeros(n, np.int64),
                         paid=np.zeros(n), cogs=np.zeros(n), saving=np.zeros(n),
                         source=np.zeros(n, np.int64))
        K.step(users, items, addons, times, shift, mult, offers, u_buy, u_recall,
               self.item_list_minor, self.item_headroom_minor, self.item_cost, self.item_ref,
               self.item_vec, self.item_quality, self.user_vec, self.user_beta, self.user_ref,
               t.kind, t.ppm, t.threshold, t.amount, t.duration, excluded,
               holdings.coupon_until,
               holdings.coupon_offer, holdings.timed_until, holdings.timed_offer,
               self.kernel_params() if params is None else params,
               out.expected, out.eligible, out.depth, out.outcome, out.paid, out.cogs,
               out.saving, out.source)
        return out

    def promo_catalogue(self, fractions: Sequence[float]) -> Catalogue:
        """A catalogue of no discount and a percent offer per fraction, with this
        market's currency rules (used for the behaviour history's random promotions)."""
        offers = [NoDiscount(id="none")] + [PercentOff(id=f"hist_pct{round(f * 100):d}_{i}",
                                                       fraction=f)
                                            for i, f in enumerate(fractions)]
        return Catalogue(tuple(offers), currency=self.catalogue.currency,
                         minor_unit=self.catalogue.minor_unit,
                         margin_floor=self.catalogue.margin_floor)
