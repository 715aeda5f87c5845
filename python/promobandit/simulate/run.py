"""Policies through the real Engine on one shared stream of shoppers.

A ``Scenario`` holds everything the policies share: the market, the decisions (sessions
whose shopper clicked an item, in time order, with their common random numbers) and the
engine settings. ``run_policy`` drives one policy through ``promobandit.engine.Engine``:

* the simulated clock advances in steps of ``step_seconds``; the decisions whose click
  fell in a step are decided together with ``Engine.decide_batch`` at the step's end
  (contexts from the ``ContextBuilder``, groups from the shoppers' labels, the basket
  the clicked item and its add-on);
* the market realises each chosen offer (``Market.step``) and the feedback is queued
  with its delay: the product-page view at once, the purchase after the shopper's
  purchase delay (revenue, cost of goods, the discount this offer gave), and, when an
  earlier decision's coupon or running time-limited offer priced the order, a
  ``coupon_redeemed`` event for that earlier decision;
* before each step the events that are due are delivered in time order, and the engine
  expires decisions that waited ``feedback_wait_seconds`` without a purchase.

Every policy sees the same decisions and the same uniforms, so outcomes differ only
through the offers (and what the offers leave behind: held coupons and time-limited
offers). Money is in the catalogue's currency; times are unix seconds.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..constraints import BudgetConfig, FairnessConfig, UserCapsConfig
from ..engine import Engine, EngineConfig
from ..events import SECONDS_PER_DAY
from ..offers import Basket, Catalogue
from ..offers.pricing import KIND_COUPON, KIND_TIMED
from ..policies import FixedOffer, make_policy
from . import _kernels as K
from .context import ContextBuilder
from .market import RUN_START, Holdings, Market

# Seconds between the decision and the product-page view event that joins it.
_VIEW_DELAY_SECONDS = 1.0
# Event kinds in the feedback queue.
_EV_VIEW, _EV_PURCHASE, _EV_REDEEM = 0, 1, 2
# Key of the keyed user-id hash inside simulations (the shoppers are synthetic).
SIMULATION_PRIVACY_KEY = b"promobandit-simulation-key-0001"


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """One policy of a comparison.

    key: stable id (e.g. "lints+pacing"); label: display name.
    policy: "fixed", "random", or a promobandit policy name (POLICIES, e.g. "LinTS").
    offer: the offer id of a fixed policy. settings: the policy's config keywords.
    pacing: run with the discount budget (BudgetPacer); fairness: with the fairness bound.
    offers: ids of the catalogue offers this policy's engine may choose (None: all).
    features: context columns of this policy by name (None: the scenario's).
    policy_seed: the seed of this policy's own draws (None: the scenario's seed); the
        shoppers and their random numbers stay the scenario's, so runs that differ only
        here measure how much a policy's own randomness moves its results.
    """

    key: str
    label: str
    policy: str
    offer: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    pacing: bool = False
    fairness: bool = False
    offers: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    policy_seed: int | None = None

    def __post_init__(self) -> None:
        if self.policy_seed is not None:
            check_int("policy_seed", self.policy_seed, 0)


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """Engine settings of every run (see EngineConfig, BudgetConfig, FairnessConfig).

    reward_scale: currency per unit of policy reward. feedback_wait_seconds: wait for a
    purchase before a decision is finalised without one. max_offers_per_day: per-user
    cap of discounted offers (None: no cap). budget: the daily discount budget of runs
    with pacing. fairness: the bound of runs with fairness; fairness_group: which label
    it is enforced on ("region" or "tenure").
    """

    reward_scale: float = 20.0
    feedback_wait_seconds: float = 1800.0
    max_offers_per_day: int | None = 3
    budget: BudgetConfig | None = None
    fairness: FairnessConfig | None = None
    fairness_group: str = "region"

    def __post_init__(self) -> None:
        check_range("reward_scale", self.reward_scale, 0.0, lo_open=True)
        check_range("feedback_wait_seconds", self.feedback_wait_seconds, 0.0, lo_open=True)
        if self.max_offers_per_day is not None:
            check_int("max_offers_per_day", self.max_offers_per_day, 0)
        if self.fairness_group not in ("region", "tenure"):
            raise ValueError(f"fairness_group: expected 'region' or 'tenure', got "
                             f"{self.fairness_group!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Decisions:
    """The decisions of a run, in time order (arrays of length n).

    user, item (clicked), addon, time (the decision: the end of the click's step),
    click_time, day (from the run's start), via_deals (the session came through the
    deal pages), u_buy, u_recall (common random numbers),
    purchase_delay (seconds), session (row of the session in the run's stream).
    """

    user: np.ndarray
    item: np.ndarray
    addon: np.ndarray
    time: np.ndarray
    click_time: np.ndarray
    day: np.ndarray
    via_deals: np.ndarray
    u_buy: np.ndarray
    u_recall: np.ndarray
    purchase_delay: np.ndarray
    session: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Scenario:
    """What every policy of a comparison shares (see the module).

    market, decisions, contexts (ContextBuilder), engine (EngineSettings),
    start / end (unix seconds), days, step_seconds, step_bounds (decision row where
    each step starts, plus n), step_times (decision time of each step),
    n_sessions and sessions_per_day (all sessions, clicked or not), seed.
    pre_spend: (n_users,) each shopper's spend in the behaviour history before the run
    (currency; None: no history given), the A/B test's pre-period metric for CUPED.
    """

    market: Market
    decisions: Decisions
    contexts: ContextBuilder
    engine: EngineSettings
    start: float
    end: float
    days: int
    step_seconds: float
    step_bounds: np.ndarray
    step_times: np.ndarray
    n_sessions: int
    sessions_per_day: np.ndarray
    seed: int = 0
    pre_spend: np.ndarray | None = None


def make_decisions(sessions: Any, shown: np.ndarray, clicked_pos: np.ndarray, start: float,
                   step_seconds: float) -> Decisions:
    """Decisions of the clicked sessions: decided at the end of their click's step."""
    rows = np.flatnonzero(clicked_pos >= 0)
    click_time = sessions.time[rows] + sessions.click_delay[rows]
    order = np.argsort(click_time, kind="stable")
    rows, click_time = rows[order], click_time[order]
    pos = clicked_pos[rows]
    decide = start + (np.floor((click_time - start) / step_seconds) + 1.0) * step_seconds
    return Decisions(
        user=sessions.user[rows], item=shown[rows, pos], addon=Market.addons(shown[rows], pos),
        time=decide, click_time=click_time,
        day=np.floor((decide - start) / SECONDS_PER_DAY).astype(np.int64),
        via_deals=sessions.via_deals[rows],
        u_buy=sessions.u_buy[rows], u_recall=sessions.u_recall[rows],
        purchase_delay=sessions.purchase_delay[rows], session=rows)


def step_layout(decisions: Decisions, start: float, end: float,
                step_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(row bounds of each step, decision time of each step) covering [start, end]."""
    n_steps = int(np.ceil((end - start) / step_seconds)) + 1
    times = start + step_seconds * np.arange(1, n_steps + 1)
    bounds = np.searchsorted(decisions.time, times, side="right")
    bounds = np.concatenate([[0], bounds])
    return bounds, times


@dataclasses.dataclass
class PolicyRun:
    """The outcome of one policy, per decision (arrays of length n) and per step.

    offer: chosen offer; propensity; expected: expected profit of the chosen offer;
    best: expected profit of the best eligible offer (regret = best - expected);
    profit, revenue (paid), saving (discount of the purchase, whoever gave it), outcome,
    source (which promotion priced it): realised for the decision's session; depth:
    the chosen offer's quoted discount depth. step_spent / step_lambda / step_planned:
    the budget's spend in its period, shadow price and plan after each step (NaN
    without pacing). expected_all (n, K) float32 / eligible_all (n, K): expected profit
    and margin-floor eligibility of every offer at each decision (the run's own shopper
    states). engine_stats: Engine.stats at the end; seconds: wall time of the
    loop; market_seconds: of it, in the market and context code. unbooked: cost of later
    coupon / time-limited redemptions the budget could not book without going negative
    (currency; counted in saving all the same).
    """

    spec: PolicySpec
    offer: np.ndarray
    propensity: np.ndarray
    expected: np.ndarray
    best: np.ndarray
    profit: np.ndarray
    revenue: np.ndarray
    saving: np.ndarray
    outcome: np.ndarray
    source: np.ndarray
    depth: np.ndarray
    step_spent: np.ndarray
    step_lambda: np.ndarray
    step_planned: np.ndarray
    expected_all: np.ndarray
    eligible_all: np.ndarray
    engine_stats: dict[str, int]
    seconds: float
    market_seconds: float
    unbooked: float = 0.0

    @property
    def regret(self) -> np.ndarray:
        return self.best - self.expected

    def fixed_expected(self, offer: int, fallback: int) -> np.ndarray:
        """Expected profit per decision had the fixed `offer` been made (`fallback`
        where it is not eligible), on this run's decisions and shopper states."""
        e, ok = self.expected_all, self.eligible_all
        return np.where(ok[:, offer], e[:, offer], e[:, fallback]).astype(np.float64)

    def regret_fixed(self, fallback: int) -> np.ndarray:
        """Regret per decision against the best fixed offer in hindsight (in expectation,
        on this run's decisions): the comparator of non-contextual policies."""
        k = self.expected_all.shape[1]
        totals = [self.fixed_expected(j, fallback).sum() for j in range(k)]
        return self.fixed_expected(int(np.argmax(totals)), fallback) - self.expected


def engine_catalogue(spec: PolicySpec, market: Market) -> tuple[Catalogue, np.ndarray]:
    """The catalogue of a spec's engine and the market index of each of its arms."""
    full = market.catalogue
    if spec.offers is None:
        return full, np.arange(len(full))
    unknown = [o for o in spec.offers if o not in full.ids]
    if unknown:
        raise ValueError(f"offers: unknown offer id {unknown[0]!r}; known: {list(full.ids)}")
    keep = [i for i, o in enumerate(full.ids) if o in spec.offers]
    if market.none_offer not in keep:
        raise ValueError("offers: must include the no-discount offer (the engine's fallback)")
    sub = Catalogue(tuple(full.offers[i] for i in keep), currency=full.currency,
                    minor_unit=full.minor_unit, margin_floor=full.margin_floor)
    return sub, np.asarray(keep, dtype=np.int64)


def _policy(spec: PolicySpec, catalogue: Catalogue, dim: int, seed: int) -> Any:
    k = len(catalogue)
    if spec.policy == "fixed":
        ids = catalogue.ids
        if spec.offer not in ids:
            raise ValueError(f"policies: unknown offer id {spec.offer!r}; known: {list(ids)}")
        none = next(i for i, o in enumerate(catalogue.offers) if o.kind == "none")
        return FixedOffer(k, offer=ids.index(spec.offer), fallback=none)
    settings = dict(spec.settings)
    if spec.policy == "random":
        return make_policy("EpsilonGreedy", k, seed=seed, epsilon=1.0)
    return make_policy(spec.policy, k, dim, seed=seed, **settings)


def make_engine(spec: PolicySpec, scenario: Scenario, log_dir: str | None, *,
                budget_share: float = 1.0) -> Engine:
    """The engine of one run: its policy, the shared settings and this spec's limits.

    budget_share: fraction of the daily budget this engine gets (runs with pacing), in
    (0, 1]: an A/B variant serving a share of the shoppers gets that share."""
    es = scenario.engine
    check_range("budget_share", budget_share, 0.0, 1.0, lo_open=True)
    catalogue, _ = engine_catalogue(spec, scenario.market)
    dim = scenario.contexts.dim if spec.features is None else len(spec.features)
    policy = _policy(spec, catalogue, dim,
                     scenario.seed if spec.policy_seed is None else spec.policy_seed)
    if spec.pacing and es.budget is None:
        raise ValueError(f"budget: policy {spec.key!r} uses pacing but no budget is set")
    if spec.fairness and es.fairness is None:
        raise ValueError(f"fairness: policy {spec.key!r} uses the fairness bound but none "
                         "is set")
    config = EngineConfig(
        objective="profit", reward_scale=es.reward_scale,
        feedback_wait_seconds=es.feedback_wait_seconds,
        caps=(UserCapsConfig(max_offers_per_day=es.max_offers_per_day)
              if es.max_offers_per_day is not None else None),
        budget=(dataclasses.replace(es.budget, amount=es.budget.amount * budget_share)
                if spec.pacing and es.budget is not None else None),
        fairness=es.fairness if spec.fairness else None,
        seed=scenario.seed)
    return Engine(catalogue, policy, config,
                  privacy_key=SIMULATION_PRIVACY_KEY, log_dir=log_dir)


def group_labels(market: Market, by: str) -> np.ndarray:
    """(n_users,) object array of each shopper's group name ("region" or "tenure")."""
    if by == "tenure":
        return np.where(market.user_new, "new", "returning").astype(object)
    return np.asarray(market.config.regions, dtype=object)[market.user_region]


@dataclasses.dataclass
class SplitRun:
    """Engines serving disjoint shoppers over one scenario (an A/B test's variants).

    specs: the policy of each engine. variant: (n,) index of the engine that decided
    each decision (its shopper's engine). The per-decision arrays are those of
    PolicyRun; the step arrays are (n_engines, n_steps) (NaN without pacing);
    engine_stats and unbooked are per engine; seconds, market_seconds: of the loop.
    """

    specs: tuple[PolicySpec, ...]
    variant: np.ndarray
    offer: np.ndarray
    propensity: np.ndarray
    expected: np.ndarray
    best: np.ndarray
    profit: np.ndarray
    revenue: np.ndarray
    saving: np.ndarray
    outcome: np.ndarray
    source: np.ndarray
    depth: np.ndarray
    step_spent: np.ndarray
    step_lambda: np.ndarray
    step_planned: np.ndarray
    expected_all: np.ndarray
    eligible_all: np.ndarray
    engine_stats: list[dict[str, int]]
    seconds: float
    market_seconds: float
    unbooked: list[float]


def run_policy(spec: PolicySpec, scenario: Scenario, *, log_dir: str | None = None,
               progress: Callable[[int], None] | None = None) -> PolicyRun:
    """Runs one policy through the Engine over the scenario (see the module).

    progress: called with the number of decisions made after each step.
    """
    r = run_split([spec], scenario, log_dirs=[log_dir], progress=progress)
    return PolicyRun(spec=spec, offer=r.offer, propensity=r.propensity, expected=r.expected,
                     best=r.best, profit=r.profit, revenue=r.revenue, saving=r.saving,
                     outcome=r.outcome, source=r.source, depth=r.depth,
                     step_spent=r.step_spent[0], step_lambda=r.step_lambda[0],
                     step_planned=r.step_planned[0], expected_all=r.expected_all,
                     eligible_all=r.eligible_all, engine_stats=r.engine_stats[0],
                     seconds=r.seconds, market_seconds=r.market_seconds,
                     unbooked=r.unbooked[0])


def run_split(specs: Sequence[PolicySpec], scenario: Scenario, *,
              user_variant: np.ndarray | None = None,
              budget_shares: Sequence[float] | None = None,
              log_dirs: Sequence[str | None] | None = None,
              progress: Callable[[int], None] | None = None) -> SplitRun:
    """Runs one Engine per spec over the scenario, each serving its own shoppers.

    user_variant: (n_users,) index into specs of each shopper's engine (default: every
        shopper to specs[0]); a shopper's every decision goes to that engine (sticky).
    budget_shares: fraction of the daily budget each engine with pacing gets (default 1
        each; an A/B test gives each variant its share of the traffic).
    log_dirs: a decision-log folder per engine (None: no log).
    progress: called with the number of decisions made after each step.
    Every engine meets its shoppers' sessions with the scenario's common random
    numbers, in one clock: a shopper's outcomes depend only on the offers of their
    own engine, never on how the other shoppers were split.
    """
    sc, mk, dec = scenario, scenario.market, scenario.decisions
    specs = tuple(specs)
    n_eng = len(specs)
    if n_eng == 0:
        raise ValueError("specs: expected at least one policy")
    shares = [1.0] * n_eng if budget_shares is None else [float(s) for s in budget_shares]
    dirs = [None] * n_eng if log_dirs is None else list(log_dirs)
    if len(shares) != n_eng or len(dirs) != n_eng:
        raise ValueError(f"budget_shares, log_dirs: expected {n_eng} values (one per spec)")
    n = len(dec)
    if user_variant is None:
        row_engine = np.zeros(n, np.int64)
    else:
        uv = np.asarray(user_variant, dtype=np.int64)
        if uv.shape != (mk.config.n_users,) or (uv < 0).any() or (uv >= n_eng).any():
            raise ValueError(f"user_variant: expected {mk.config.n_users} indices in "
                             f"[0, {n_eng})")
        row_engine = uv[dec.user]
    engines = [make_engine(spec, sc, d, budget_share=sh)
               for spec, d, sh in zip(specs, dirs, shares, strict=True)]
    # A policy with its own features (PolicySpec.features) gets its own context builder.
    builders = [None if spec.features is None else sc.contexts.with_features(spec.features)
                for spec in specs]
    arm_index = [engine_catalogue(spec, mk)[1] for spec in specs]
    k = mk.n_offers
    holdings: Holdings = mk.new_holdings()
    groups = group_labels(mk, sc.engine.fairness_group)
    ids: list[str] = [""] * n
    coupon_src = np.empty(mk.config.n_users, dtype=object)
    timed_src = np.empty(mk.config.n_users, dtype=object)
    out = {name: np.zeros(n) for name in ("propensity", "expected", "best", "profit", "revenue",
                                          "saving", "depth")}
    offer = np.zeros(n, np.int64)
    expected_all = np.zeros((n, k), np.float32)
    eligible_all = np.zeros((n, k), np.bool_)
    outcome = np.zeros(n, np.int64)
    source = np.zeros(n, np.int64)
    n_steps = sc.step_times.shape[0]
    step_spent = np.full((n_eng, n_steps), np.nan)
    step_lambda = np.full((n_eng, n_steps), np.nan)
    step_planned = np.full((n_eng, n_steps), np.nan)
    baskets: dict[tuple[int, int], Basket] = {}
    queue: list[tuple[float, int, int, int, str]] = []  # (time, seq, kind, row, decision id)
    seq = 0
    params = mk.kernel_params()
    unbooked = [0.0] * n_eng  # redemption cost the budget could not book (see deliver)
    market_time = 0.0
    t_start = time.perf_counter()

    # The market is the source of truth of its own outcomes (a coupon's redemption is
    # booked on the decision whose order used it): fed unchecked (Engine.feedback's
    # check=False), the checks being for callers the engine cannot trust.
    def deliver(until: float) -> None:
        while queue and queue[0][0] <= until:
            t, _, kind, row, did = heapq.heappop(queue)
            e = int(row_engine[row])
            engine = engines[e]
            if kind == _EV_VIEW:
                engine.feedback(did, f"{did}:view", clicked=True, now=t, check=False)
            elif kind == _EV_PURCHASE:
                own = out["saving"][row] if source[row] == K.SOURCE_OFFER else 0.0
                engine.feedback(did, f"{did}:buy", purchased=True,
                                revenue=float(out["revenue"][row]),
                                cost_of_goods=float(out["revenue"][row] - out["profit"][row]),
                                discount=float(own), now=t, check=False)
            else:
                amount = float(out["saving"][row])
                if engine.budget is not None:
                    # Workaround: a booking past the budget leaves a negative remainder;
                    # Engine.decide_batch then re-decides even a no-discount row with the
                    # mask cost <= remaining, which masks every offer, and select raises.
                    engine.budget.report(t)  # rolls the budget period to t
                    fit = min(amount, max(engine.budget.remaining, 0.0))
                    unbooked[e] += amount - fit
                    amount = fit
                engine.feedback(did, f"{ids[row]}:redeem", coupon_redeemed=True,
                                discount=amount, now=t, check=False)

    for s in range(n_steps):
        lo, hi = int(sc.step_bounds[s]), int(sc.step_bounds[s + 1])
        now = float(sc.step_times[s])
        deliver(now)
        if hi > lo:
            t0 = time.perf_counter()
            users = dec.user[lo:hi]
            items = dec.item[lo:hi]
            addons = dec.addon[lo:hi]
            x = sc.contexts.build(users, items, addons, dec.via_deals[lo:hi], now, holdings)
            basket_list = []
            for a, b in zip(items.tolist(), addons.tolist(), strict=True):
                bk = baskets.get((a, b))
                if bk is None:
                    bk = baskets[(a, b)] = Basket(
                        np.array([a, b]), mk.item_category[[a, b]], mk.item_price[[a, b]],
                        mk.item_cost[[a, b]], np.ones(2, np.int64))
                basket_list.append(bk)
            market_time += time.perf_counter() - t0
            decisions: list[Any] = [None] * (hi - lo)
            chosen = np.empty(hi - lo, np.int64)
            step_engine = row_engine[lo:hi]
            for e, engine in enumerate(engines):
                if n_eng == 1:  # the whole step, no copies
                    rows, xe, be = np.arange(hi - lo), x, basket_list
                else:
                    rows = np.flatnonzero(step_engine == e)
                    if rows.size == 0:
                        continue
                    xe, be = x[rows], [basket_list[i] for i in rows.tolist()]
                ue = users[rows]
                if builders[e] is not None:
                    xe = builders[e].build(ue, items[rows], addons[rows],
                                           dec.via_deals[lo:hi][rows], now, holdings)
                got = engine.decide_batch(ue.tolist(), contexts=xe, baskets=be,
                                          groups=groups[ue].tolist(), now=now)
                for i, d in zip(rows.tolist(), got, strict=True):
                    decisions[i] = d
                chosen[rows] = arm_index[e][np.fromiter((d.offer for d in got), np.int64,
                                                        len(got))]
            t0 = time.perf_counter()
            res = mk.step(users, items, addons, dec.time[lo:hi], chosen, dec.u_buy[lo:hi],
                          dec.u_recall[lo:hi], holdings, params=params)
            market_time += time.perf_counter() - t0
            offer[lo:hi] = chosen
            out["propensity"][lo:hi] = [d.propensity for d in decisions]
            rr = np.arange(hi - lo)
            out["expected"][lo:hi] = res.expected[rr, chosen]
            out["best"][lo:hi] = np.where(res.eligible, res.expected, -np.inf).max(axis=1)
            out["profit"][lo:hi] = res.profit
            out["revenue"][lo:hi] = res.paid
            out["saving"][lo:hi] = res.saving
            out["depth"][lo:hi] = res.depth[rr, chosen]
            expected_all[lo:hi] = res.expected
            eligible_all[lo:hi] = res.eligible
            outcome[lo:hi] = res.outcome
            source[lo:hi] = res.source
            kinds = mk.offers.kind[chosen]
            for j, d in enumerate(decisions):
                row = lo + j
                ids[row] = d.id
                u = int(users[j])
                seq += 1
                heapq.heappush(queue, (now + _VIEW_DELAY_SECONDS, seq, _EV_VIEW, row, d.id))
                src = res.source[j]
                if res.outcome[j] != K.OUTCOME_NONE:
                    t_buy = now + float(dec.purchase_delay[row])
                    seq += 1
                    heapq.heappush(queue, (t_buy, seq, _EV_PURCHASE, row, d.id))
                    # A shopper's promotions come from their own engine (sticky).
                    held = coupon_src[u] if src == K.SOURCE_COUPON else (
                        timed_src[u] if src == K.SOURCE_TIMED else None)
                    if held is not None:
                        seq += 1
                        heapq.heappush(queue, (t_buy, seq, _EV_REDEEM, row, held))
                if kinds[j] == KIND_COUPON:
                    coupon_src[u] = d.id
                elif kinds[j] == KIND_TIMED and src != K.SOURCE_OFFER:
                    timed_src[u] = d.id
            if progress is not None:
                progress(hi - lo)
        for e, engine in enumerate(engines):
            if engine.budget is not None:
                b = engine.budget.report(now)
                step_spent[e, s], step_lambda[e, s], step_planned[e, s] = (
                    b["spent"], b["lambda"], b["planned"])
    deliver(np.inf)
    for engine in engines:
        engine.close(now=float(sc.step_times[-1]) + sc.engine.feedback_wait_seconds + 1.0)
    seconds = time.perf_counter() - t_start
    return SplitRun(specs=specs, variant=row_engine, offer=offer, outcome=outcome,
                    source=source, step_spent=step_spent, step_lambda=step_lambda,
                    step_planned=step_planned, expected_all=expected_all,
                    eligible_all=eligible_all,
                    engine_stats=[dict(engine.stats) for engine in engines], seconds=seconds,
                    market_seconds=market_time, unbooked=unbooked, **out)


# --- several policies, in parallel processes ------------------------------------------

_SCENARIO: Scenario | None = None


def _run_in_worker(spec: PolicySpec, log_dir: str | None) -> PolicyRun:
    assert _SCENARIO is not None  # set by the pool initialiser
    return run_policy(spec, _SCENARIO, log_dir=log_dir)


def run_policies(specs: Sequence[PolicySpec], scenario: Scenario, *, workers: int = 1,
                 log_root: str | None = None,
                 on_done: Callable[[PolicyRun], None] | None = None) -> list[PolicyRun]:
    """Runs every spec over the scenario; results in spec order.

    workers: processes (1 runs here, in order). Each run is independent and seeded, so
    the results do not depend on the number of workers. log_root: a folder that gets
    one decision-log folder per policy (named by its key). on_done: called per finished run.
    """
    check_int("workers", workers, 1)
    dirs = [None if log_root is None else os.path.join(log_root, _slug(s.key)) for s in specs]
    if workers == 1 or len(specs) == 1:
        runs = []
        for spec, d in zip(specs, dirs, strict=True):
            r = run_policy(spec, scenario, log_dir=d)
            if on_done is not None:
                on_done(r)
            runs.append(r)
        return runs
    import concurrent.futures as cf
    import multiprocessing as mp

    # fork, not spawn: spawn re-imports __main__, and `python -m promobandit` runs its
    # command at import. The children never use torch or an OpenMP pool (lists and the
    # recommender are computed before), which is what makes forking a parent that
    # trained a torch model safe here. Elsewhere the runs go one after the other.
    if "fork" not in mp.get_all_start_methods() or not sys.platform.startswith("linux"):
        return run_policies(specs, scenario, workers=1, log_root=log_root, on_done=on_done)
    global _SCENARIO
    _SCENARIO = scenario  # inherited by the forked workers, never pickled
    results: dict[int, PolicyRun] = {}
    # Longest runs first keeps both workers busy to the end.
    order = sorted(range(len(specs)), key=lambda i: -_cost(specs[i]))
    try:
        with warnings.catch_warnings(), cf.ProcessPoolExecutor(
                max_workers=min(workers, len(specs)), mp_context=mp.get_context("fork")) as pool:
            # Python 3.12+ warns on forking a multi-threaded parent; the children here
            # touch none of the parent's threads (see above).
            warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks",
                                    category=DeprecationWarning)
            futures = {pool.submit(_run_in_worker, specs[i], dirs[i]): i for i in order}
            for fut in cf.as_completed(futures):
                r = fut.result()
                results[futures[fut]] = r
                if on_done is not None:
                    on_done(r)
    finally:
        _SCENARIO = None
    return [results[i] for i in range(len(specs))]


def _cost(spec: PolicySpec) -> float:
    """Relative run time of a spec (contextual Thompson sampling is the slowest)."""
    return {"LinTS": 3.0, "ConversionTS": 3.0, "GaussianTS": 2.0,
            "LinUCB": 1.5}.get(spec.policy, 1.0)


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key)


def scenario_days(start: float, end: float) -> int:
    return int(np.ceil((end - start) / SECONDS_PER_DAY))


__all__ = ["RUN_START", "Decisions", "EngineSettings", "PolicyRun", "PolicySpec", "Scenario",
           "SplitRun", "make_decisions", "make_engine", "run_policies", "run_policy",
           "run_split", "step_layout"]
