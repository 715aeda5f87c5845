"""Why a decision chose its offer: the numbers the choice was made from, per offer.

An explanation is computed only when asked for (``Engine.decide(..., explain=True)``, or
every decision with ``EngineConfig(keep_explanations=True)``); otherwise nothing here
runs. It is computed under the engine's lock from the very state the decision used,
*before* the policy chooses: the policy's statistics, the decision's random stream
(decision t of a policy draws from the stream (seed, t, decisions), see
promobandit.rng), the quote of the basket, the budget's shadow price and the fairness
multiplier of the shopper's group. So its numbers reproduce the choice exactly:

- deterministic policies (UCB1, UCB-tuned, LinUCB): ``score`` = upper bound + levers,
  the chosen offer is the first eligible offer of highest score;
- Thompson sampling (BetaTS, GaussianTS, LinTS): ``sample`` is the posterior draw the
  policy made (the same stream, the same draw order: eligible offers in id order), and
  the chosen offer is the first eligible offer of highest sample + levers;
- Beta TS with sampler="matching": the uniform ``u`` and each offer's ``probability``
  (the win probabilities the decision drew from: the policy's cache, possibly computed
  some updates earlier, or fresh ones when levers are given); the chosen offer is the
  first eligible offer whose cumulative probability exceeds u x their total;
- epsilon-greedy: the decision's two uniforms ``u_explore``, ``u_arm``: explore when
  u_explore < epsilon (the u_arm-th eligible offer), else the highest mean + levers;
- softmax: the uniform ``u``; the chosen offer is the first eligible offer whose
  cumulative weight exp((mean + levers - max) / temperature) exceeds u x the total;
- a fixed offer: the offer, else the fallback, else the uniform ``u`` among the eligible.

``Explanation.recompute()`` applies that rule to the explanation's own numbers. Values of
the policy (``mean``, ``sd``, ``width``, ``sample``, levers, ``score``) are in policy
reward units (the objective divided by ``reward_scale``); ``mean_value`` and ``sd_value``
are the same in the objective's units (currency for profit and revenue). Prices and
discount costs are in the catalogue's currency.

Knobs: ``TOP_FEATURES`` (feature contributions listed, largest magnitude first).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .._numba import codes as _ncodes
from .._numba import linear as _nlin
from .._numba import multiarmed as _nmab
from .._numba import rng as _nrng
from ..policies import (
    UCB1,
    BetaTS,
    EpsilonGreedy,
    FixedOffer,
    GaussianTS,
    LinearPolicy,
    LinTS,
    LinUCB,
    Policy,
    Softmax,
    UCBTuned,
)
from ..policies._multiarmed import MultiArmedPolicy

if TYPE_CHECKING:
    from ..offers import Basket, Quote
    from .engine import Engine

TOP_FEATURES = 5  # feature contributions listed per explanation, largest |contribution| first

RULES = ("argmax", "epsilon_greedy", "softmax", "matching", "fixed", "opaque")


@dataclasses.dataclass(frozen=True)
class OfferExplanation:
    """One offer of the catalogue under this decision.

    price: what the shopper pays for the basket under the offer; discount_cost: the
    discount if bought (worst case; a coupon's face value); expected_cost: discount_cost x
    the offer's purchase rate (what the budget prices); currency, all three.
    eligible: the policy could choose it (the mask it chose under). reasons: the rules
    that excluded it or that make it give nothing on this basket, each a dict with
    "rule" (margin_floor, per_user_offers, per_user_discount, budget, exclusion,
    not_applicable) and the numbers that decided it.
    mean / sd: the policy's expected reward and its uncertainty (posterior sd; NaN where
    the policy has none); width: the upper-confidence width (UCB policies, else NaN);
    sample: the posterior draw (Thompson sampling, else NaN); probability: the action
    probability where the policy has it in closed form (else NaN; the chosen offer's
    propensity is on the Explanation). budget_lever = -lambda x expected cost /
    reward_scale; fairness_lever = -multiplier x the offer's fairness metric;
    conversion_lever = +mu x purchase rate (the conversion-floor multiplier, 0 when off).
    score: the number the policy compared (bound, sample or mean, plus the levers);
    -inf where not eligible.
    """

    offer: int
    offer_id: str
    kind: str
    price: float
    discount_cost: float
    expected_cost: float
    eligible: bool
    reasons: tuple[dict[str, Any], ...]
    mean: float
    sd: float
    width: float
    sample: float
    probability: float
    budget_lever: float
    fairness_lever: float
    conversion_lever: float
    score: float
    mean_value: float
    sd_value: float

    @property
    def levers(self) -> float:
        """The sum of the score adjustments (reward units)."""
        return self.budget_lever + self.fairness_lever + self.conversion_lever


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why one decision chose its offer (see the module doc for the rule of each policy).

    decision_id, offer, offer_id: the decision; policy: its name; rule: how the policy
    chose ("argmax", "epsilon_greedy", "softmax", "fixed", or "opaque" for a policy this
    module cannot read); propensity: the logged propensity; policy_version, stream: the
    policy's updates and the decision's random stream number. draws: the uniforms a
    randomised rule used (u_explore, u_arm, u). objective, reward_scale: how policy
    rewards map to the objective. lam: the budget's shadow price; fairness_multiplier:
    the shopper group's; conversion_multiplier: the conversion floor's (0 when off).
    features: for linear policies, the chosen offer's largest contributions
    (name, value, coefficient, coefficient x value), names from ``Engine.context_names``
    or the feature store's documented context vector (else x0, x1, ...); the constant
    feature named "bias" (the intercept) is not ranked. offers: every offer (OfferExplanation). sentence: the reason in one sentence.
    """

    decision_id: str
    offer: int
    offer_id: str
    policy: str
    rule: str
    propensity: float
    policy_version: int
    stream: int
    draws: dict[str, float]
    objective: str
    reward_scale: float
    lam: float
    fairness_multiplier: float
    conversion_multiplier: float
    group: str
    features: tuple[dict[str, Any], ...]
    offers: tuple[OfferExplanation, ...]
    sentence: str

    def recompute(self) -> int:
        """The offer the policy's rule gives from this explanation's numbers alone (-1 for
        the "opaque" rule). Equal to ``offer`` for every policy this module reads."""
        return _apply_rule(self.rule, self.offers, self.draws, self._params)

    # the rule's parameters (epsilon, temperature, fixed offer, fallback), kept private
    # to the recomputation; to_dict shows them under "params".
    _params: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (non-finite numbers become None)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (np.floating, np.integer, np.bool_)):
                return clean(v.item())
            return v
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("offers", "_params")}
        out["params"] = dict(self._params)
        out["offers"] = [{**{f.name: getattr(o, f.name) for f in dataclasses.fields(o)},
                          "levers": o.levers} for o in self.offers]
        return clean(out)


# --- the choice rules, from the explanation's numbers ----------------------------------

def _apply_rule(rule: str, offers: tuple[OfferExplanation, ...], draws: dict[str, float],
                params: dict[str, Any]) -> int:
    elig = [o.offer for o in offers if o.eligible]
    if not elig:
        return -1
    if rule == "argmax":
        return _tie_max([(o.offer, o.score) for o in offers if o.eligible], params)
    if rule == "epsilon_greedy":
        if draws["u_explore"] < params["epsilon"]:
            j = min(int(draws["u_arm"] * len(elig)), len(elig) - 1)
            return elig[j]
        return _tie_max([(o.offer, o.score) for o in offers if o.eligible], params)
    if rule == "softmax":
        tau = params["temperature"]
        vals = [(o.offer, o.score) for o in offers if o.eligible]
        vmax = max(v for _, v in vals)
        w = [math.exp((v - vmax) / tau) for _, v in vals]
        z = sum(w)
        u = draws["u"] * z
        cum = 0.0
        for (a, _), wi in zip(vals, w, strict=True):
            cum += wi
            if u < cum:
                return a
        return vals[-1][0]
    if rule == "matching":  # the kernel's inverse CDF (beta_matching.hpp's MatchCdf)
        vals = [(o.offer, o.probability) for o in offers if o.eligible and o.probability > 0.0]
        total = 0.0
        for _, p in vals:
            total += p
        target = draws["u"] * total
        cum = 0.0
        for a, p in vals:
            cum += p
            if target < cum:
                return a
        return vals[-1][0]
    if rule == "fixed":
        if params["offer"] in elig:
            return int(params["offer"])
        fb = params["fallback"]
        if fb is not None and fb in elig:
            return int(fb)
        return elig[min(int(draws["u"] * len(elig)), len(elig) - 1)]
    return -1


def _tie_max(pairs: list[tuple[int, float]], params: dict[str, Any]) -> int:
    """The offer of highest value, exact ties broken by the policy's rule (the kernels'
    TieArgmax): ``ties="first"`` keeps the lowest id; ``"random"`` lets the m-th tied offer
    (in id order) replace the best with probability 1/m, drawn from the decision's tie
    stream (params ``tie_seed``, ``tie_stream``), opened at the first tie."""
    best, best_v, count = -1, -math.inf, 0
    st = None
    for a, v in pairs:
        if best < 0 or v > best_v:
            best, best_v, count = a, v, 1
        elif v == best_v:
            count += 1
            if params.get("ties", "first") != "random":
                continue
            if st is None:
                st = _nrng.stream_new(np.uint64(params["tie_seed"]),
                                      np.uint64(params["tie_stream"]), _nrng.PURPOSE_TIE)
            if _nrng.tie_replaces(st, count):
                best = a
    return best


# --- reading the policy -----------------------------------------------------------------

@dataclasses.dataclass
class PolicyNumbers:
    """Per-offer numbers of the policy at one decision (reward units)."""

    rule: str
    mean: np.ndarray
    sd: np.ndarray
    width: np.ndarray
    sample: np.ndarray
    base: np.ndarray  # what the levers are added to: bound, sample or mean
    probability: np.ndarray
    draws: dict[str, float]
    params: dict[str, Any]
    theta: np.ndarray | None = None  # linear policies: the weights of every offer (K, d)


def policy_numbers(policy: Policy, x: np.ndarray | None, eligible: np.ndarray,
                   bias: np.ndarray | None, t: int) -> PolicyNumbers:
    """The policy's numbers (see _policy_numbers), with its tie rule and the decision's
    tie stream among the rule's parameters, so that an exact tie is recomputed too."""
    nb = _policy_numbers(policy, x, eligible, bias, t)
    ties = getattr(getattr(policy, "config", None), "ties", None)
    if ties is not None and "ties" not in nb.params:
        nb.params.update({"ties": ties, "tie_seed": int(policy.seed), "tie_stream": int(t)})
    return nb


def _matching_probabilities(policy: BetaTS, arrays: dict[str, np.ndarray], elig: np.ndarray,
                            bias: np.ndarray | None) -> np.ndarray:
    """The win probabilities a matching decision draws from, by the kernel's own rule on
    copies of its cache (refilled on the copy where the kernel would refill it)."""
    c = policy.config
    k = policy.n_arms
    hyper = np.zeros(7)  # the Numba kernel's layout (promobandit._numba.multiarmed)
    hyper[:2] = (c.alpha0, c.beta0)
    hyper[5] = 1.0
    hyper[6] = c.propensity_tolerance
    stats = np.ascontiguousarray(arrays["stats"])
    active = np.ascontiguousarray(arrays["active"])
    mask = np.ascontiguousarray(elig, dtype=np.bool_)
    if bias is not None:
        out = np.zeros(k)
        _nmab.beta_quadrature(hyper, stats, active, mask, np.ascontiguousarray(bias, np.float64),
                              out)
        return out
    cache = _nmab.ts_cached(
        int(policy._kind), hyper, int(c.propensity_draws), _ncodes.METHOD_QUADRATURE,
        max(1, int(c.propensity_refresh)), np.uint64(policy.seed), stats, active,
        arrays["counters"].copy(), arrays["prop_cache"].copy(), arrays["prop_mask"].copy(),
        arrays["prop_post"].copy(), arrays.get("quad_grid", np.zeros((0, 2))).copy(), mask,
        np.zeros(k))
    return np.array(cache, dtype=np.float64)


def _policy_numbers(policy: Policy, x: np.ndarray | None, eligible: np.ndarray,
                    bias: np.ndarray | None, t: int) -> PolicyNumbers:
    """The policy's numbers for decision number t (its stream) under `eligible` (the
    engine's mask) and `bias` (the levers, reward units). Reads a copy of the state;
    changes nothing and draws from no stream the policy will use otherwise.

    A policy class this module does not know (e.g. a conversion model) can explain itself
    by a method ``explanation_numbers(x, eligible, bias, t) -> PolicyNumbers`` with the
    same contract; without one its rule is "opaque" (its expectations only)."""
    hook = getattr(policy, "explanation_numbers", None)
    if callable(hook):
        own = hook(x, np.asarray(eligible, dtype=bool), bias, t)
        if not isinstance(own, PolicyNumbers) or own.rule not in RULES:
            raise TypeError(f"{type(policy).__name__}.explanation_numbers: expected "
                            f"PolicyNumbers with a rule among {RULES}")
        return own
    k = policy.n_arms
    with policy._exclusive():  # a consistent copy of the arrays (what state_dict copies)
        arrays = {name: a.copy() for name, a in policy._arrays.items()}
    active = arrays["active"]
    elig = np.asarray(eligible, dtype=bool) & active
    b = np.zeros(k) if bias is None else np.asarray(bias, dtype=np.float64)
    nan = np.full(k, np.nan)
    seed = policy.seed
    if isinstance(policy, MultiArmedPolicy):
        kind = int(policy._kind)
        hyper = np.zeros(4)
        h = policy._hyper()
        hyper[:len(h)] = h
        stats = np.ascontiguousarray(arrays["stats"])
        mean = np.array([_nmab.expectation(kind, hyper, stats, a) for a in range(k)])
        n, s1, s2 = stats[:, 0], stats[:, 1], stats[:, 2]
        st = _nrng.stream_new(np.uint64(seed), np.uint64(t), _nrng.PURPOSE_DECISION)
        if isinstance(policy, BetaTS) and policy.config.sampler == "matching":
            prob = _matching_probabilities(policy, arrays, elig, bias)
            sd = _beta_sd(hyper, n, s1)
            return PolicyNumbers("matching", mean, sd, nan.copy(), nan.copy(), mean, prob,
                                 {"u": float(_nrng.uniform(st))}, {})
        if isinstance(policy, (BetaTS, GaussianTS)):
            sample = nan.copy()
            for a in np.flatnonzero(elig):
                sample[a] = _nmab.posterior_draw(kind, hyper, stats, int(a), st)
            sd = _beta_sd(hyper, n, s1) if isinstance(policy, BetaTS) else _nig_sd(hyper, n, s1, s2)
            return PolicyNumbers("argmax", mean, sd, nan.copy(), sample, sample, nan.copy(),
                                 {}, {})
        if isinstance(policy, (UCB1, UCBTuned)):
            total = float(n[active].sum())
            log_total = math.log(total if total > 1.0 else 1.0)
            width = np.full(k, np.inf)
            for a in range(k):
                if n[a] > 0.0:
                    m = s1[a] / n[a]
                    if isinstance(policy, UCB1):
                        width[a] = hyper[0] * math.sqrt(2.0 * log_total / n[a])
                    else:
                        v = min(max(s2[a] / n[a] - m * m, 0.0) + math.sqrt(2.0 * log_total / n[a]),
                                0.25)
                        width[a] = hyper[0] * math.sqrt(log_total / n[a] * v)
            bound = mean + width  # inf for an offer never tried: it is played first
            prob = np.zeros(k)
            return PolicyNumbers("argmax", mean, nan.copy(), width, nan.copy(), bound, prob,
                                 {}, {})
        if isinstance(policy, EpsilonGreedy):
            u_explore = float(_nrng.uniform(st))
            u_arm = float(_nrng.uniform(st))
            eps = float(hyper[0])
            prob = np.zeros(k)
            idx = np.flatnonzero(elig)
            if idx.size:
                prob[idx] = eps / idx.size
                v = mean[idx] + b[idx]
                if getattr(policy.config, "ties", "first") == "random":
                    tied = idx[v == v.max()]  # the greedy share split over exact ties
                else:
                    tied = idx[[int(np.argmax(v))]]
                prob[tied] += (1.0 - eps) / tied.size
            return PolicyNumbers("epsilon_greedy", mean, nan.copy(), nan.copy(), nan.copy(),
                                 mean, prob, {"u_explore": u_explore, "u_arm": u_arm},
                                 {"epsilon": eps})
        if isinstance(policy, Softmax):
            u = float(_nrng.uniform(st))
            tau = float(hyper[0])
            prob = np.zeros(k)
            idx = np.flatnonzero(elig)
            if idx.size:
                vals = mean[idx] + b[idx]
                w = np.exp((vals - vals.max()) / tau)
                prob[idx] = w / w.sum()
            return PolicyNumbers("softmax", mean, nan.copy(), nan.copy(), nan.copy(), mean, prob,
                                 {"u": u}, {"temperature": tau})
    if isinstance(policy, LinearPolicy) and x is not None:
        xv = np.ascontiguousarray(x, dtype=np.float64)
        theta = np.ascontiguousarray(arrays["theta"])
        a_inv = np.ascontiguousarray(arrays["A_inv"])
        mean = np.zeros(k)
        var = np.zeros(k)
        _nlin.moments(a_inv, theta, np.ones(k, dtype=np.bool_), np.ones(k, dtype=np.bool_), xv,
                      mean, var, np.zeros(xv.shape[0]))
        scale = float(policy._exploration())
        sd = np.sqrt(var)
        if isinstance(policy, LinUCB):
            width = np.array([scale * math.sqrt(v) for v in var])
            return PolicyNumbers("argmax", mean, sd, width, nan.copy(), mean + width,
                                 np.zeros(k), {}, {}, theta)
        if isinstance(policy, LinTS):
            st = _nrng.stream_new(np.uint64(seed), np.uint64(t), _nrng.PURPOSE_DECISION)
            sample = nan.copy()
            for a in np.flatnonzero(elig):
                # the kernel's expression, in its order of operations
                sample[a] = mean[a] + scale * math.sqrt(var[a]) * float(_nrng.normal(st))
            return PolicyNumbers("argmax", mean, scale * sd, nan.copy(), sample, sample,
                                 nan.copy(), {}, {}, theta)
    if isinstance(policy, FixedOffer):
        u = float(_nrng_uniform(seed, t))
        c = policy.config
        zero = np.zeros(k)
        return PolicyNumbers("fixed", nan.copy(), nan.copy(), nan.copy(), nan.copy(), zero,
                             nan.copy(), {"u": u}, {"offer": c.offer, "fallback": c.fallback})
    # A policy this module does not read (e.g. one added later): its expectations only.
    try:
        mean = np.asarray(policy.expectations(x), dtype=np.float64).reshape(-1)
    except (ValueError, TypeError):
        mean = nan.copy()
    return PolicyNumbers("opaque", mean, nan.copy(), nan.copy(), nan.copy(), mean, nan.copy(),
                         {}, {})


def _nrng_uniform(seed: int, t: int) -> float:
    st = _nrng.stream_new(np.uint64(seed), np.uint64(t), _nrng.PURPOSE_DECISION)
    return float(_nrng.uniform(st))


def _beta_sd(hyper: np.ndarray, n: np.ndarray, s1: np.ndarray) -> np.ndarray:
    a = hyper[0] + s1
    b = hyper[1] + (n - s1)
    return np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))


def _nig_sd(hyper: np.ndarray, n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Posterior sd of the mean under Normal-Inverse-Gamma (Student t; inf while a_n <= 1)."""
    mu0, k0, a0, b0 = hyper
    kn = k0 + n
    an = a0 + 0.5 * n
    mean = np.divide(s1, n, out=np.zeros_like(s1), where=n > 0)
    ss = np.maximum(s2 - s1 * mean, 0.0)
    bn = np.where(n > 0, b0 + 0.5 * ss + 0.5 * (k0 * n / kn) * (mean - mu0) ** 2, b0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(an > 1.0, np.sqrt(bn / (kn * (an - 1.0))), np.inf)


# --- the business side: quotes, limits, levers -----------------------------------------

@dataclasses.dataclass
class Pending:
    """What an explanation needs that the decision has not made yet (kept between the
    policy numbers, read before the choice, and the choice)."""

    numbers: PolicyNumbers
    offers: list[dict[str, Any]]
    stream: int
    lam: float
    fairness_multiplier: float
    conversion_multiplier: float
    group: str
    x: np.ndarray | None
    feature_names: list[str] | None
    bias: np.ndarray | None  # the score adjustments the policy was given (reward units)


def begin(engine: Engine, uh: str, group: str, x: np.ndarray | None, basket: Basket,
          quote: Quote, mask: np.ndarray, bias: np.ndarray | None, expected: np.ndarray,
          lever_parts: dict[str, np.ndarray], now: float, t: int | None = None) -> Pending:
    """Everything the explanation of the coming decision needs, read before the policy
    chooses (call under the engine's lock; changes nothing). t: the decision's number
    (default the policy's next; row i of a batch is the batch's first + i)."""
    policy = engine.policy
    k = len(engine.catalogue)
    t = policy.n_decisions if t is None else int(t)
    numbers = policy_numbers(policy, x, mask, bias, t)
    reasons = ineligibility(engine, uh, basket, quote, now)
    rows = []
    for a in range(k):
        o = engine.catalogue.offers[a]
        rows.append({"offer": a, "offer_id": o.id, "kind": o.kind,
                     "price": float(quote.paid_total[a]),
                     "discount_cost": float(quote.discount_cost[a]),
                     "expected_cost": float(expected[a]), "eligible": bool(mask[a]),
                     "reasons": tuple(reasons[a]),
                     "budget_lever": float(lever_parts["budget"][a]),
                     "fairness_lever": float(lever_parts["fairness"][a]),
                     "conversion_lever": float(lever_parts["conversion"][a])})
    fm = 0.0
    if engine.fairness is not None:
        row = engine.fairness.groups.get(group)
        fm = 0.0 if row is None else float(row[2])
    names = None
    given = getattr(engine, "context_names", None)
    if x is not None and given is not None and len(given) == len(x):
        names = list(given)
    elif x is not None and engine.features is not None:
        cfg = getattr(engine.features, "config", None)
        if cfg is not None and hasattr(cfg, "feature_names"):
            cand = list(cfg.feature_names())
            names = cand if len(cand) == len(x) else None
    return Pending(numbers, rows, t, engine.budget.lam if engine.budget is not None else 0.0,
                   fm, engine.conversion_multiplier, group,
                   None if x is None else np.array(x, dtype=np.float64), names,
                   None if bias is None else np.array(bias, dtype=np.float64))


def again(engine: Engine, pend: Pending, mask: np.ndarray, costs: np.ndarray,
          now: float) -> Pending:
    """The explanation of a batch row decided again after earlier rows used the budget
    or the user's caps up: the policy's numbers for its new decision number and mask, and
    the rule on the offers that no longer fit (everything else as the batch saw it)."""
    remaining = float(engine.budget.remaining) if engine.budget is not None else math.inf
    rows = []
    for r in pend.offers:
        a = r["offer"]
        r = dict(r)
        if r["eligible"] and not mask[a]:
            bp = engine.budget
            if bp is not None and bp.spent + bp.expected > bp.planned(now) + \
                    bp.config.ahead_band * bp.config.amount:
                why = {"rule": "ahead_of_plan", "committed": float(bp.spent + bp.expected),
                       "planned": float(bp.planned(now)),
                       "ahead_band": float(bp.config.ahead_band * bp.config.amount)}
            elif float(costs[a]) > remaining + 1e-9:
                why = {"rule": "budget", "worst_case_cost": float(costs[a]),
                       "remaining": remaining}
            else:  # the budget still fits it: the user's earlier rows used the caps
                why = {"rule": "per_user_caps", "earlier_rows_of_batch": True}
            r["reasons"] = (*r["reasons"], why)
        r["eligible"] = bool(mask[a])
        rows.append(r)
    t = engine.policy.n_decisions
    numbers = policy_numbers(engine.policy, pend.x, mask, pend.bias, t)
    return dataclasses.replace(pend, numbers=numbers, offers=rows, stream=t)


def ineligibility(engine: Engine, uh: str, basket: Basket, quote: Quote,
                  now: float) -> list[list[dict[str, Any]]]:
    """Per offer, the rules that exclude it from this request or make it give nothing on
    this basket, with the numbers that decided (reads the limits; changes nothing)."""
    cat = engine.catalogue
    k = len(cat)
    out: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    table = cat.pricing
    per_unit = table.per_unit
    n_lines = basket.item_ids.shape[0]
    all_excluded = table.excluded_lines(basket.item_ids, basket.categories).all(axis=1) \
        if n_lines else np.zeros(k, dtype=bool)
    costs = quote.discount_cost
    for a, o in enumerate(cat.offers):
        if not quote.eligible[a]:
            line_list, paid, headroom, _ = table.price_lines(
                basket.item_ids, basket.categories, basket.unit_prices, basket.unit_costs,
                basket.quantities, a, now, None, False)
            floor = line_list - headroom
            bad = np.flatnonzero(paid < floor)
            i = int(bad[0]) if bad.size else -1
            out[a].append({"rule": "margin_floor", "margin_floor": float(cat.margin_floor),
                           "line": i,
                           "line_price": float(paid[i] / per_unit) if i >= 0 else math.nan,
                           "line_floor": float(floor[i] / per_unit) if i >= 0 else math.nan})
        if o.kind == "none":
            continue
        if all_excluded[a]:
            out[a].append({"rule": "exclusion", "excluded_lines": int(n_lines)})
        elif quote.eligible[a] and costs[a] <= 0.0:
            rule: dict[str, Any] = {"rule": "not_applicable"}
            threshold = getattr(o, "spend", getattr(o, "min_spend", None))
            if threshold is not None:
                rule.update({"threshold": float(threshold),
                             "basket_total": float(quote.list_total)})
            out[a].append(rule)
    if engine.caps is not None:
        c = engine.caps.config
        _, offers_today, _, spent = engine.caps._row(uh, now)
        disc = engine.ledger.discounted
        for a in range(k):
            if (c.max_offers_per_day is not None and offers_today >= c.max_offers_per_day
                    and disc[a]):
                out[a].append({"rule": "per_user_offers", "offers_today": int(offers_today),
                               "max_offers_per_day": int(c.max_offers_per_day)})
            if (c.max_discount_per_period is not None
                    and spent + costs[a] > c.max_discount_per_period + 1e-9):
                out[a].append({"rule": "per_user_discount", "spent": float(spent),
                               "worst_case_cost": float(costs[a]),
                               "max_discount_per_period": float(c.max_discount_per_period)})
    if engine.budget is not None:
        bp = engine.budget
        remaining = float(bp.remaining)
        committed = float(bp.spent + bp.expected)
        planned = float(bp.planned(now))
        band = float(bp.config.ahead_band * bp.config.amount)
        for a in range(k):
            if costs[a] <= 0.0:
                continue
            if committed > planned + band:
                out[a].append({"rule": "ahead_of_plan", "committed": committed,
                               "planned": planned, "ahead_band": band})
            elif costs[a] > remaining + 1e-9:
                out[a].append({"rule": "budget", "worst_case_cost": float(costs[a]),
                               "remaining": remaining})
    return out


def finish(engine: Engine, pend: Pending, decision_id: str, arm: int, propensity: float,
           policy_version: int) -> Explanation:
    """The explanation of the decision `arm` made from what `begin` read."""
    nb = pend.numbers
    scale = engine.config.reward_scale
    money = engine.objective_is_money
    unit = scale if money else 1.0
    offers = []
    for r in pend.offers:
        a = r["offer"]
        # the kernels add the bias they were given to the base value: so does the score
        base = float(nb.base[a])
        b = 0.0 if pend.bias is None else float(pend.bias[a])
        score = (base + b) if r["eligible"] else -math.inf
        offers.append(OfferExplanation(
            **r, mean=float(nb.mean[a]), sd=float(nb.sd[a]), width=float(nb.width[a]),
            sample=float(nb.sample[a]), probability=float(nb.probability[a]), score=score,
            mean_value=float(nb.mean[a]) * unit, sd_value=float(nb.sd[a]) * unit))
    features: tuple[dict[str, Any], ...] = ()
    if nb.theta is not None and pend.x is not None:
        coef = nb.theta[arm]
        contrib = coef * pend.x
        names = pend.feature_names or [f"x{i}" for i in range(len(pend.x))]
        # the constant "bias" feature is the intercept, not a reason: left out of the ranking
        order = [int(i) for i in np.argsort(-np.abs(contrib), kind="stable")
                 if names[i] != "bias"][:TOP_FEATURES]
        features = tuple({"name": names[i], "value": float(pend.x[i]), "coefficient": float(coef[i]),
                          "contribution": float(contrib[i])} for i in order)
    expl = Explanation(
        decision_id=decision_id, offer=int(arm), offer_id=engine.catalogue.offers[arm].id,
        policy=engine.policy.name, rule=nb.rule, propensity=float(propensity),
        policy_version=int(policy_version), stream=int(pend.stream), draws=dict(nb.draws),
        objective=engine.objective_name, reward_scale=float(scale), lam=float(pend.lam),
        fairness_multiplier=float(pend.fairness_multiplier),
        conversion_multiplier=float(pend.conversion_multiplier), group=pend.group,
        features=features, offers=tuple(offers), sentence="", _params=dict(nb.params))
    return dataclasses.replace(expl, sentence=sentence(expl, money))


# --- the sentence -----------------------------------------------------------------------

_RULE_TEXT = {
    "margin_floor": "would sell a line below the margin floor",
    "per_user_offers": "the shopper reached today's offer cap",
    "per_user_discount": "it would pass the shopper's discount cap",
    "budget": "its worst-case cost does not fit in what is left of the budget",
    "ahead_of_plan": "discount spend is ahead of today's plan",
    "per_user_caps": "the shopper's earlier rows of this batch used up their caps",
    "exclusion": "it excludes every item in the basket",
    "not_applicable": "it gives nothing on this basket",
}


_NOTHING_RULES = ("exclusion", "not_applicable")  # the offer is allowed but gives nothing


def _num(v: float, money: bool) -> str:
    return f"{v:+.2f}" if money else f"{v:+.3f}"


def sentence(e: Explanation, money: bool = True) -> str:
    """One sentence a merchant can read: the chosen offer, its leading reason, and the
    strongest offer the levers or the limits set aside."""
    chosen = e.offers[e.offer]
    # a weighted objective is "value" in the sentence (its terms are on the explanation)
    what = e.objective if e.objective in ("profit", "revenue", "conversion") else "value"
    est = _num(chosen.mean_value, money)
    unc = "" if not math.isfinite(chosen.sd_value) else f" ± {abs(chosen.sd_value):.2f}"
    if e.rule == "epsilon_greedy" and e.draws.get("u_explore", 1.0) < e._params.get("epsilon", 0):
        lead = f"chosen at random to explore (probability {e.propensity:.2f})"
    elif e.rule == "matching":
        lead = (f"drawn with probability {chosen.probability:.2f}, the chance that it is the "
                f"best offer (expected {what} {est}{unc})")
    elif e.rule == "softmax":
        lead = (f"drawn with probability {chosen.probability:.2f}, the most for its expected "
                f"{what} ({est}{unc})" if chosen.probability >= max(
                    o.probability for o in e.offers if o.eligible) else
                f"drawn with probability {chosen.probability:.2f} to keep learning "
                f"(expected {what} {est}{unc})")
    elif e.rule == "fixed":
        lead = "the fixed promotion" if e.offer == e._params.get("offer") else \
            "the fallback of the fixed promotion, which was not allowed here"
    elif e.rule == "opaque":
        lead = f"chosen by {e.policy}"
    elif math.isfinite(chosen.sample):
        lead = (f"highest sampled {what} for shoppers like this (expected {est}{unc}, "
                f"drawn {_num(chosen.sample * (e.reward_scale if money else 1.0), money)})")
    elif math.isfinite(chosen.width) and math.isinf(chosen.width):
        lead = "not tried yet, so it is tried first"
    elif math.isfinite(chosen.width):
        lead = (f"highest optimistic {what} for shoppers like this ({est}, "
                f"+{chosen.width * (e.reward_scale if money else 1.0):.2f} for uncertainty)")
    else:
        lead = f"highest expected {what} for shoppers like this ({est}{unc})"
    if chosen.budget_lever != 0.0 or e.lam > 0.0:
        lead += ", within budget"
    parts = [f"{chosen.offer_id}: {lead}"]
    # the best offer set aside: by the levers (scored higher before them), else by a limit
    raw = [(o.score - o.levers, o) for o in e.offers if o.eligible and o.offer != e.offer]
    beaten = [(v, o) for v, o in raw if v > chosen.score - chosen.levers and e.rule == "argmax"]
    if beaten:
        _, o = max(beaten, key=lambda p: p[0])
        why = []
        if o.budget_lever < chosen.budget_lever:
            why.append("above today's budget price")
        if o.fairness_lever < chosen.fairness_lever:
            why.append("held back by the fairness bound for this group")
        if o.conversion_lever < chosen.conversion_lever:
            why.append("converts less than the conversion floor needs")
        if why:
            parts.append(f"{o.offer_id} scored higher but is {' and '.join(why)}")
    else:
        excluded = [o for o in e.offers if not o.eligible and o.reasons]
        if excluded:
            o = max(excluded, key=lambda o: (o.mean if math.isfinite(o.mean) else -math.inf))
            rules = [r["rule"] for r in o.reasons]
            # the rule that took it out of the mask, before one that only says it gives nothing
            rule = next((r for r in rules if r not in _NOTHING_RULES), rules[0])
            parts.append(f"{o.offer_id} was not allowed: {_RULE_TEXT[rule]}")
    return "; ".join(parts)
