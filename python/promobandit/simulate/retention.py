"""A shop where shoppers come back, or do not: retention with known ground truth, run
through the real Engine.

The world (drawn from ``RetentionConfig.seed``): ``n_shoppers`` shoppers, a share
``at_risk_share`` of them *at risk* (they rarely come back unprompted). Each visit is one
decision on a one-line basket (list price uniform in [price_min, price_max], unit cost
``cost_share`` of it) over the catalogue: no discount, 10%, 20%, 30% off.

A visit, step by step (depth d = the offer's discount as a fraction of the list price):

1. buy with probability sigmoid(buy_intercept + buy_slope x d);
2. come back within ``window_days`` with probability
   sigmoid(logit(return_base[segment]) + return_lift[segment] x d + return_after_purchase x
   bought): offers and purchases raise the chance of a return, offers far more for
   shoppers at risk than for loyal ones; the next visit is uniform in
   [0.5 day, window_days] later and its arrival is joined to the decision as
   ``feedback(returned=True)``. A shopper who does not come back is gone for the run.

The engine sees a context vector per visit (``FEATURES``): bias, a noisy risk score (the
segment plus normal noise of sd ``risk_noise``), days since the previous visit / 7,
purchases so far / 5 and visits so far / 10. The policy (LinTS by default) learns the
objective it is given: profit alone, or profit plus a retention weight (currency per
returning shopper). Randomness: every visit's uniforms come from a generator keyed by
(seed, shopper, visit number), so runs with different objectives see the same numbers
(common random numbers) and differ only by their decisions.

Money is in EUR; rates are fractions; times are unix seconds.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..engine import Engine, EngineConfig
from ..engine.objective import Objective
from ..events import SECONDS_PER_DAY
from ..offers import Basket, Catalogue, NoDiscount, PercentOff
from ..policies import make_policy

FEATURES = ("bias", "risk_score", "recency_weeks", "purchases_5", "visits_10")
DEPTHS = (0.0, 0.10, 0.20, 0.30)
START = 1_767_571_200.0  # the market's RUN_START (a Monday, midnight UTC)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclasses.dataclass(frozen=True)
class RetentionConfig:
    """The retention world (see the module doc). Money in EUR, rates fractions.

    n_shoppers, days: shoppers and the run's length. at_risk_share: the share at risk.
    return_base: (loyal, at risk) probability of a return after a visit with no discount
    and no purchase. return_lift: (loyal, at risk) logit lift per unit of discount depth.
    return_after_purchase: logit lift of a purchase. buy_intercept, buy_slope: the
    purchase logit and its lift per unit of depth. price_min, price_max: list prices;
    cost_share: unit cost as a share of the price. window_days: the retention window.
    risk_noise: sd of the noise on the observed risk score. arrival_share: first visits
    are uniform over this share of the run (new shoppers keep arriving). policy, policy_settings:
    the learner (a promobandit policy name and its config keywords). reward_scale: EUR
    per unit of policy reward. seed: the world and every visit's numbers.
    """

    n_shoppers: int = 600
    days: float = 42.0
    at_risk_share: float = 0.4
    return_base: tuple[float, float] = (0.85, 0.30)
    return_lift: tuple[float, float] = (1.0, 9.0)
    return_after_purchase: float = 0.3
    buy_intercept: float = -0.6
    buy_slope: float = 4.0
    price_min: float = 40.0
    price_max: float = 120.0
    cost_share: float = 0.55
    window_days: float = 7.0
    risk_noise: float = 0.3
    arrival_share: float = 0.7
    policy: str = "LinTS"
    policy_settings: tuple[tuple[str, Any], ...] = (("v", 0.3), ("propensity_draws", 0))
    reward_scale: float = 40.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_shoppers", self.n_shoppers, 1)
        check_range("days", self.days, 0.0, lo_open=True)
        check_range("at_risk_share", self.at_risk_share, 0.0, 1.0)
        for i, p in enumerate(self.return_base):
            check_range(f"return_base[{i}]", p, 0.0, 1.0, lo_open=True, hi_open=True)
        for i, v in enumerate(self.return_lift):
            check_range(f"return_lift[{i}]", v)
        check_range("return_after_purchase", self.return_after_purchase)
        check_range("buy_intercept", self.buy_intercept)
        check_range("buy_slope", self.buy_slope)
        check_range("price_min", self.price_min, 0.0, lo_open=True)
        check_range("price_max", self.price_max, self.price_min)
        check_range("cost_share", self.cost_share, 0.0, 1.0)
        check_range("window_days", self.window_days, 0.5, lo_open=True)
        check_range("risk_noise", self.risk_noise, 0.0)
        check_range("arrival_share", self.arrival_share, 0.0, 1.0)
        check_range("reward_scale", self.reward_scale, 0.0, lo_open=True)
        check_int("seed", self.seed, 0)


def catalogue() -> Catalogue:
    """No discount, 10%, 20% and 30% off (EUR)."""
    return Catalogue(offers=(NoDiscount(id="none"),
                             *(PercentOff(id=f"pct{round(d * 100)}", fraction=d)
                               for d in DEPTHS[1:])),
                     currency="EUR", minor_unit=0.01, margin_floor=0.0)


def retention_objective(weight: float, window_days: float,
                        conversion: float = 0.0) -> Objective | str:
    """Profit plus `weight` EUR per returning shopper (and `conversion` EUR per purchase);
    plain "profit" when both are 0."""
    if weight <= 0.0 and conversion <= 0.0:
        return "profit"
    w = {"profit": 1.0}
    if conversion > 0.0:
        w["conversion"] = conversion
    if weight <= 0.0:
        return Objective(weights=w)
    w["retention"] = weight
    return Objective(weights=w, retention_window_seconds=window_days * SECONDS_PER_DAY)


@dataclasses.dataclass
class RetentionRun:
    """One run: a row per decision (arrays of equal length) and the shoppers' segments.

    shopper, at_risk (the shopper's true segment), offer, depth, bought, returned,
    profit (EUR, paid - cost when bought), x (the context), t (seconds), sentence (the
    explanation's sentence where one was asked for, else ""). top_feature: the name of
    the largest feature contribution to the chosen offer (explained decisions)."""

    objective: str
    config: RetentionConfig
    shopper: np.ndarray
    at_risk: np.ndarray
    offer: np.ndarray
    depth: np.ndarray
    bought: np.ndarray
    returned: np.ndarray
    profit: np.ndarray
    x: np.ndarray
    t: np.ndarray
    sentence: list[str]
    top_feature: list[str]

    def metrics(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """profit_per_shopper (EUR over the run), conversion and retention (rates per
        decision), retention_at_risk (the return rate of at-risk shoppers' decisions), and
        the mean discount depth offered to at-risk and loyal shoppers."""
        r = np.arange(len(self.offer)) if rows is None else rows
        n_shop = self.config.n_shoppers
        risk = self.at_risk[r]
        return {
            "profit_per_shopper": float(self.profit[r].sum() / n_shop),
            "conversion": float(self.bought[r].mean()) if r.size else math.nan,
            "retention": float(self.returned[r].mean()) if r.size else math.nan,
            "retention_at_risk": float(self.returned[r][risk].mean()) if risk.any() else math.nan,
            "depth_at_risk": float(self.depth[r][risk].mean()) if risk.any() else math.nan,
            "depth_loyal": float(self.depth[r][~risk].mean()) if (~risk).any() else math.nan,
            "decisions": float(r.size),
        }

    def intervals(self, n_boot: int = 200, level: float = 0.95,
                  seed: int = 0) -> dict[str, tuple[float, float, float]]:
        """(estimate, low, high) of every metric: a percentile bootstrap over shoppers
        (a shopper's decisions stay together), n_boot resamples at `level`."""
        rs = np.random.default_rng(seed)
        n_shop = self.config.n_shoppers
        by_shopper = [np.flatnonzero(self.shopper == s) for s in range(n_shop)]
        point = self.metrics()
        boots: dict[str, list[float]] = {k: [] for k in point}
        for _ in range(n_boot):
            pick = rs.integers(0, n_shop, n_shop)
            rows = np.concatenate([by_shopper[s] for s in pick])
            for k, v in self.metrics(rows).items():
                boots[k].append(v)
        a = (1.0 - level) / 2.0
        return {k: (point[k], float(np.nanquantile(boots[k], a)),
                    float(np.nanquantile(boots[k], 1.0 - a))) for k in point}


def run_retention(config: RetentionConfig, objective: Any = "profit", *,
                  explain_every: int = 0) -> RetentionRun:
    """One full run of the world under `objective` (an EngineConfig objective).
    explain_every: explain every n-th decision (0: none), for the report's reasons."""
    c = config
    world = np.random.default_rng([c.seed, 1])
    at_risk = world.random(c.n_shoppers) < c.at_risk_share
    risk_score = at_risk + world.normal(0.0, c.risk_noise, c.n_shoppers)
    cat = catalogue()
    pol = make_policy(c.policy, len(cat), len(FEATURES), seed=c.seed,
                      **dict(c.policy_settings))
    window = c.window_days * SECONDS_PER_DAY
    eng = Engine(cat, pol, EngineConfig(objective=objective, reward_scale=c.reward_scale,
                                        feedback_wait_seconds=3600.0, caps=None,
                                        budget=None, seed=c.seed),
                 privacy_key=b"retention-world-key-0", context_names=FEATURES)
    end = START + c.days * SECONDS_PER_DAY
    # first visits spread over the first arrival_share of the run: new shoppers keep coming
    visits = [(START + float(world.uniform(0.0, c.arrival_share * c.days)) * SECONDS_PER_DAY,
               int(s), "") for s in range(c.n_shoppers)]
    heapq.heapify(visits)
    n_visits = np.zeros(c.n_shoppers, dtype=np.int64)
    n_bought = np.zeros(c.n_shoppers, dtype=np.int64)
    last = np.full(c.n_shoppers, START)
    rows: dict[str, list[Any]] = {k: [] for k in ("shopper", "offer", "bought", "returned",
                                                  "profit", "x", "t")}
    sentences: list[str] = []
    tops: list[str] = []
    lo, hi = _logit(c.return_base[0]), _logit(c.return_base[1])
    while visits:
        now, s, came_back_for = heapq.heappop(visits)
        if now >= end:
            break
        if came_back_for and retention_weighted(eng):
            eng.feedback(came_back_for, f"back-{came_back_for}", returned=True, now=now)
        u = np.random.default_rng([c.seed, 2, s, int(n_visits[s])]).random(3)
        price = c.price_min + (c.price_max - c.price_min) * float(u[0])
        basket = Basket.from_lines([(s, 0, round(price, 2), round(price * c.cost_share, 2), 1)])
        x = np.array([1.0, risk_score[s], (now - last[s]) / (7 * SECONDS_PER_DAY),
                      n_bought[s] / 5.0, n_visits[s] / 10.0])
        explain = explain_every > 0 and len(rows["offer"]) % explain_every == 0
        d = eng.decide(f"s{s}", context=x, basket=basket, now=now, explain=explain)
        depth = DEPTHS[d.offer]
        bought = float(u[1]) < _sigmoid(c.buy_intercept + c.buy_slope * depth)
        base = hi if at_risk[s] else lo
        lift = c.return_lift[1] if at_risk[s] else c.return_lift[0]
        p_ret = _sigmoid(base + lift * depth + c.return_after_purchase * bought)
        returned = float(u[2]) < p_ret
        if bought:
            eng.feedback(d.id, f"buy-{d.id}", purchased=True, revenue=d.price, now=now + 60.0)
            n_bought[s] += 1
        else:
            eng.feedback(d.id, f"end-{d.id}", ended=True, now=now + 60.0)
        n_visits[s] += 1
        last[s] = now
        if returned:
            gap = float(np.random.default_rng([c.seed, 3, s, int(n_visits[s])]).uniform(
                0.5, c.window_days)) * SECONDS_PER_DAY
            heapq.heappush(visits, (now + min(gap, window - 1.0), s, d.id))
        rows["shopper"].append(s)
        rows["offer"].append(d.offer)
        rows["bought"].append(bought)
        rows["returned"].append(returned)
        rows["profit"].append((d.price - round(price * c.cost_share, 2)) if bought else 0.0)
        rows["x"].append(x)
        rows["t"].append(now)
        if d.explanation is not None:
            e = d.explanation
            sentences.append(e.sentence)
            tops.append(e.features[0]["name"] if e.features else "")
        else:
            sentences.append("")
            tops.append("")
    shopper = np.asarray(rows["shopper"], dtype=np.int64)
    offer = np.asarray(rows["offer"], dtype=np.int64)
    label = eng.objective_name
    return RetentionRun(
        objective=label, config=c, shopper=shopper, at_risk=at_risk[shopper], offer=offer,
        depth=np.asarray(DEPTHS)[offer], bought=np.asarray(rows["bought"], dtype=bool),
        returned=np.asarray(rows["returned"], dtype=bool),
        profit=np.asarray(rows["profit"], dtype=np.float64),
        x=np.asarray(rows["x"]).reshape(-1, len(FEATURES)), t=np.asarray(rows["t"]),
        sentence=sentences, top_feature=tops)


def retention_weighted(eng: Engine) -> bool:
    """True when the engine's objective waits for returns."""
    return eng.objective is not None and eng.objective.retention
