"""Contexts for the contextual offer policies: behaviour features plus the request's basket.

Each context row joins what a shop knows about the shopper (from the behaviour history
before the run, and the group labels) with what it knows about the request (the clicked
item, the add-on, the promotions the shopper holds, the day). Nothing here reads the
simulator's hidden truth (latent tastes, price sensitivity, segment).

Behaviour features (fixed over the run): every feature of ``promobandit.features`` but its
constant (recency, frequency, spend, category affinity, discount share and depth,
session), computed with ``features_batch`` over the history's events at the run's start
and passed in as ``behaviour``. Further shopper columns (from ``ShopperSummary``):

=====================  ======================================================
bias                   1
new                    1 for a shopper without history ("new" tenure)
region_<name>          one-hot of the region (the first region is the baseline)
log_purchases          log1p(purchases in the history)
log_clicks             log1p(clicks in the history)
promo_lift             smoothed conversion with a discount minus without one:
                       (promo purchases + 1) / (promo clicks + 4) - (other purchases
                       + 1) / (other clicks + 4); 0 for new shoppers
deal_share             smoothed share of sessions that came through the deal pages:
                       (deal sessions + 0.5) / (sessions + 2)
recency                days since the last event / history days, capped at 1
=====================  ======================================================

Request part (per decision):

=====================  ======================================================
price                  list price of the clicked item / ``price_unit``
margin                 gross margin of the clicked item (1 - cost / price)
pair_over_threshold    1 if item + add-on reach the first spend-X-save-Y offer's X
holds_coupon           1 if the shopper holds a valid coupon
holds_timed            1 if a time-limited offer of the shopper is still running
weekend                1 on Saturday and Sunday
via_deals              1 if this session came through the deal pages
price_x_margin         price x margin (the profit at stake)
deal_x_price           deal_share x price (a discount's value scales with the basket)
deal_x_price_x_margin  deal_share x price x margin
via_x_price            via_deals x price
via_x_price_x_margin   via_deals x price x margin
=====================  ======================================================

Products of the deal signals (per decision; a model linear in its features cannot
otherwise tell a shopper with every signal from one with a single strong one):

=====================  ======================================================
deal_x_via             deal_share x via_deals
deal_x_discount        deal_share x discount_share
discount_x_via         discount_share x via_deals
deal_sq                deal_share squared
=====================  ======================================================
"""

from __future__ import annotations

import copy

import numpy as np

from ..events import SECONDS_PER_DAY
from ..offers.pricing import KIND_SPEND
from .history import ShopperSummary
from .market import RUN_START, Holdings, Market

# Add-one smoothing of the two conversion rates behind promo_lift (a Beta(1, 3) prior:
# about the click-to-purchase rate of the shop).
_PRIOR_BUYS, _PRIOR_CLICKS = 1.0, 4.0
# Smoothing of deal_share: a Beta(0.5, 1.5) prior, a quarter of sessions through deals.
_PRIOR_DEAL, _PRIOR_SESSIONS = 0.5, 2.0
# Products of the deal signals, in the order build() computes them (see the module).
_SIGNAL_PRODUCTS = ("deal_x_via", "deal_x_discount", "discount_x_via", "deal_sq")


class ContextBuilder:
    """Builds the (n, d) float64 contexts of decisions (see the module for the columns).

    market: the market (item prices, costs and group labels are the shop's own data).
    summary: the shoppers' history counts. history_days: the history's length (days).
    behaviour: optional (n_users, F) behaviour features with their F names
        (behaviour_names); a name "bias" among them is dropped (the builder has one).
    features: the columns to use, by name (default: all, in the module's order).
    price_unit: currency unit of the price feature (default the median list price).
    """

    def __init__(self, market: Market, summary: ShopperSummary, history_days: float,
                 features: tuple[str, ...] | None = None, *,
                 behaviour: np.ndarray | None = None,
                 behaviour_names: list[str] | None = None,
                 price_unit: float | None = None) -> None:
        self.market = market
        regions = market.config.regions
        n = market.config.n_users
        s = summary
        other_buys = s.purchases - s.promo_purchases
        other_clicks = s.clicks - s.promo_clicks
        lift = ((s.promo_purchases + _PRIOR_BUYS) / (s.promo_clicks + _PRIOR_CLICKS)
                - (other_buys + _PRIOR_BUYS) / (other_clicks + _PRIOR_CLICKS))
        lift = np.where(s.clicks > 0, lift, 0.0)
        days = max(history_days, 1e-9)
        recency = np.where(np.isfinite(s.last_time),
                           np.minimum((RUN_START - s.last_time) / SECONDS_PER_DAY / days, 1.0),
                           1.0)
        cols = [np.ones(n), market.user_new.astype(float)]
        cols += [(market.user_region == r).astype(float) for r in range(1, len(regions))]
        deal = (s.deal_sessions + _PRIOR_DEAL) / (s.sessions + _PRIOR_SESSIONS)
        cols += [np.log1p(s.purchases), np.log1p(s.clicks), lift, deal, recency]
        extra: list[str] = []
        if behaviour is not None:
            names = list(behaviour_names or [])
            if behaviour.shape != (n, len(names)):
                raise ValueError(f"behaviour: expected shape ({n}, {len(names)}) (users x "
                                 f"behaviour_names), got {behaviour.shape}")
            keep = [i for i, name in enumerate(names) if name != "bias"]
            extra = [names[i] for i in keep]
            cols += [behaviour[:, i] for i in keep]
        self.shopper = np.ascontiguousarray(np.stack(cols, axis=1))
        self.deal_share = deal
        self.price_unit = float(np.median(market.item_price)) if price_unit is None else price_unit
        spend = np.flatnonzero(market.offers.kind == KIND_SPEND)
        self._threshold = (market.offers.threshold[spend[0]] / market.per_unit
                           if spend.size else np.inf)
        self.all_names = (["bias", "new"] + [f"region_{r}" for r in regions[1:]]
                          + ["log_purchases", "log_clicks", "promo_lift", "deal_share",
                             "recency"] + extra
                          + ["price", "margin", "pair_over_threshold", "holds_coupon",
                             "holds_timed", "weekend", "via_deals", "price_x_margin",
                             "deal_x_price", "deal_x_price_x_margin", "via_x_price",
                             "via_x_price_x_margin"]
                          + list(_SIGNAL_PRODUCTS))
        # The deal signals' columns among the shopper's (discount_share is a behaviour
        # feature; absent without behaviour, when its products are 0).
        self._discount_col = (self.all_names.index("discount_share")
                              if "discount_share" in extra else -1)
        if features is None:
            features = tuple(self.all_names)
        for f in features:
            if f not in self.all_names:
                raise ValueError(f"features: unknown feature {f!r}; expected names from "
                                 f"{self.all_names}")
        if len(set(features)) != len(features) or not features:
            raise ValueError(f"features: expected distinct names, got {list(features)}")
        self.names = list(features)
        self._columns = np.asarray([self.all_names.index(f) for f in features])

    @property
    def dim(self) -> int:
        return len(self.names)

    def with_features(self, features: tuple[str, ...]) -> ContextBuilder:
        """A builder of the same shoppers and requests with other columns (by name; a
        policy that needs its own features, see PolicySpec.features)."""
        bad = [f for f in features if f not in self.all_names]
        if bad or not features or len(set(features)) != len(features):
            raise ValueError(f"features: expected distinct names from {self.all_names}, got "
                             f"{list(features)}")
        other = copy.copy(self)
        other.names = list(features)
        other._columns = np.asarray([self.all_names.index(f) for f in features])
        return other

    def build(self, users: np.ndarray, items: np.ndarray, addons: np.ndarray,
              via_deals: np.ndarray, now: float, holdings: Holdings) -> np.ndarray:
        """(n, dim) contexts of decisions at time `now` (unix seconds)."""
        m = self.market
        price = m.item_price[items]
        pair = price + m.item_price[addons]
        rel = price / self.price_unit
        dow = int(np.floor((now - RUN_START) / SECONDS_PER_DAY)) % 7
        n = users.shape[0]
        margin = 1.0 - m.item_cost[items] / price
        deal = self.deal_share[users]
        req = np.empty((n, 12))
        req[:, 0] = rel
        req[:, 1] = margin
        req[:, 2] = pair >= self._threshold
        req[:, 3] = holdings.coupon_until[users] > now
        req[:, 4] = holdings.timed_until[users] > now
        req[:, 5] = 1.0 if dow >= 5 else 0.0
        req[:, 6] = via_deals
        req[:, 7] = rel * margin
        req[:, 8] = deal * rel
        req[:, 9] = deal * rel * margin
        req[:, 10] = via_deals * rel
        req[:, 11] = via_deals * rel * margin
        disc = (self.shopper[users, self._discount_col] if self._discount_col >= 0
                else np.zeros(n))
        prod = np.empty((n, len(_SIGNAL_PRODUCTS)))
        prod[:, 0] = deal * via_deals
        prod[:, 1] = deal * disc
        prod[:, 2] = disc * via_deals
        prod[:, 3] = deal * deal
        x = np.concatenate([self.shopper[users], req, prod], axis=1)
        return np.ascontiguousarray(x[:, self._columns])
