"""Behaviour before the run: the event log the recommender trains on and features come from.

Returning shoppers browse for ``MarketConfig.history_days`` before the run starts. The
shop of that time showed uniformly random items of the browsed category (so the log
covers the catalogue) and gave a random percent discount (``history_promo_fractions``)
to a ``history_promo_rate`` share of the shoppers who clicked. The events (a click, a
purchase per bought item; the impressions of the random lists are not logged: they say
nothing about a shopper's taste) form an ``InteractionLog`` for the
recommender and an event table with the columns of ``promobandit.features``; per-shopper
counts summarise it for the simulator's own behaviour features.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..events import SECONDS_PER_DAY
from ..recommender.data import CLICK, PURCHASE, InteractionLog
from . import _kernels as K
from .market import RUN_START, Market

# Stream ids of the history within the market's seed.
_HISTORY_STREAM = 1


@dataclasses.dataclass(frozen=True, eq=False)
class ShopperSummary:
    """Per-shopper counts of the history (arrays of length n_users).

    sessions, clicks, purchases: counts. deal_sessions: sessions that arrived through
    the deal pages. promo_clicks: clicks that got a discount;
    promo_purchases: purchases made with one. spend: money paid (currency).
    last_time: time of the last event (unix seconds; -inf without events).
    """

    sessions: np.ndarray
    deal_sessions: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray
    promo_clicks: np.ndarray
    promo_purchases: np.ndarray
    spend: np.ndarray
    last_time: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class BehaviourHistory:
    """log: the InteractionLog (clicks, purchases with prices paid).
    events: columns user, event, category, price, discount, timestamp (the event table
    of promobandit.features: discount is the purchase's discount fraction).
    summary: ShopperSummary. start, end: the history's window (unix seconds)."""

    log: InteractionLog
    events: dict[str, np.ndarray]
    summary: ShopperSummary
    start: float
    end: float


def behaviour_history(market: Market, *, end: float = RUN_START) -> BehaviourHistory:
    """The behaviour of returning shoppers in the history_days before `end`."""
    c = market.config
    days = c.history_days
    start = end - days * SECONDS_PER_DAY
    n_users = c.n_users
    returning = np.flatnonzero(~market.user_new)
    if days <= 0 or returning.size == 0:
        s = None
    else:
        s = market.sessions(days, origin=start, stream=_HISTORY_STREAM, users=returning)
    if s is None or len(s) == 0:
        return _empty(market, start, end)
    shown = market.random_lists(s, stream=_HISTORY_STREAM)
    pos, _ = market.clicks(s, shown)
    clicked = np.flatnonzero(pos >= 0)
    items = shown[clicked, pos[clicked]]
    addons = Market.addons(shown[clicked], pos[clicked])
    t_click = s.time[clicked] + s.click_delay[clicked]
    # Random promotions of the old shop: offer 0 is no discount, 1.. the fractions.
    promo_cat = market.promo_catalogue(c.history_promo_fractions)
    rs = np.random.default_rng([c.seed, 4, _HISTORY_STREAM])
    m = clicked.shape[0]
    promo = rs.random(m) < c.history_promo_rate
    offers = np.where(promo, rs.integers(1, len(promo_cat), m), 0).astype(np.int64)
    res = market.step(s.user[clicked], items, addons, t_click, offers, s.u_buy[clicked],
                      s.u_recall[clicked], market.new_holdings(), table=promo_cat.pricing)
    bought = res.outcome > K.OUTCOME_NONE
    bundle = res.outcome == K.OUTCOME_BUNDLE
    t_buy = t_click + s.purchase_delay[clicked]
    depth = np.where(bought, res.saving / np.maximum(res.paid + res.saving, 1e-12), 0.0)

    # Events: the click and one purchase row per bought item.
    b_rows = np.flatnonzero(bought)
    x_rows = np.flatnonzero(bundle)
    list_a = market.item_price[items]
    list_b = market.item_price[addons]
    # The paid amount of a pair is split over its two items by list price.
    share_a = np.where(bundle, list_a / (list_a + list_b), 1.0)
    users = np.concatenate([s.user[clicked], s.user[clicked][b_rows], s.user[clicked][x_rows]])
    item_ids = np.concatenate([items, items[b_rows], addons[x_rows]])
    kinds = np.concatenate([np.full(m, CLICK), np.full(b_rows.shape[0] + x_rows.shape[0],
                                                       PURCHASE)])
    times = np.concatenate([t_click, t_buy[b_rows], t_buy[x_rows]])
    prices = np.concatenate([market.item_price[items], (res.paid * share_a)[b_rows],
                             (res.paid * (1.0 - share_a))[x_rows]])
    discount = np.concatenate([np.zeros(m), depth[b_rows], depth[x_rows]])
    order = np.argsort(times, kind="stable")
    users, item_ids, kinds, times, prices, discount = (
        a[order] for a in (users, item_ids, kinds, times, prices, discount))
    log = InteractionLog(user_ids=users, item_ids=item_ids, events=kinds.astype(np.int8),
                         timestamps=times, item_category=market.item_category,
                         item_price_band=market.item_price_band, n_users=n_users,
                         prices=np.round(prices, 2))
    events = {"user": users, "event": kinds.astype(np.int64),
              "category": market.item_category[item_ids], "price": np.round(prices, 2),
              "discount": np.round(discount, 4), "timestamp": times}

    cu = s.user[clicked]
    last = np.full(n_users, -np.inf)
    np.maximum.at(last, s.user, s.time)
    summary = ShopperSummary(
        sessions=np.bincount(s.user, minlength=n_users),
        deal_sessions=np.bincount(s.user[s.via_deals], minlength=n_users),
        clicks=np.bincount(cu, minlength=n_users),
        purchases=np.bincount(cu[bought], minlength=n_users),
        promo_clicks=np.bincount(cu[promo], minlength=n_users),
        promo_purchases=np.bincount(cu[promo & bought], minlength=n_users),
        spend=np.bincount(cu, weights=res.paid, minlength=n_users),
        last_time=last,
    )
    return BehaviourHistory(log=log, events=events, summary=summary, start=start, end=end)


def _empty(market: Market, start: float, end: float) -> BehaviourHistory:
    n = market.config.n_users
    z = np.zeros(0, np.int64)
    log = InteractionLog(user_ids=z, item_ids=z, events=z.astype(np.int8),
                         timestamps=np.zeros(0), item_category=market.item_category,
                         item_price_band=market.item_price_band, n_users=n, prices=np.zeros(0))
    events = {"user": z, "event": z, "category": z, "price": np.zeros(0),
              "discount": np.zeros(0), "timestamp": np.zeros(0)}
    zeros = np.zeros(n, np.int64)
    summary = ShopperSummary(zeros, zeros, zeros, zeros, zeros, zeros, np.zeros(n),
                             np.full(n, -np.inf))
    return BehaviourHistory(log=log, events=events, summary=summary, start=start, end=end)
