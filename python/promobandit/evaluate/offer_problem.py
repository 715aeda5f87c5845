"""A contextual offer problem with known ground truth.

Each request comes from a shopper with features x (d standard normals plus a
constant 1). Offer k gives a discount of ``discounts[k]`` (a fraction of the
list price). The shopper buys one unit with probability
``sigmoid(base + x . w + discounts[k] * (elasticity + x . s))``: every shopper
has an own baseline propensity (w) and an own price sensitivity (s), so the
most profitable offer differs from shopper to shopper. A purchase earns
``price * (1 - discount) - cost`` (currency units); no purchase earns 0.
Expected profit of every offer is known in closed form, so regret is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..policies.base import Policy


@dataclasses.dataclass(frozen=True)
class OfferProblem:
    """Settings of the offer problem (money in the catalogue's currency).

    discounts: discount of each offer as a fraction of the list price, in [0, 1).
    price, cost: list price and unit cost of the product (price > cost >= 0).
    base: log-odds of buying at full price for an average shopper.
    elasticity: average change in log-odds per unit of discount fraction.
    n_features: d, the number of shopper features (a constant 1 is appended).
    heterogeneity: scale of shopper-specific effects in w and s.
    seed: draws the problem's hidden parameters and the stream of shoppers.
    """

    discounts: tuple[float, ...] = (0.0, 0.05, 0.10, 0.15, 0.20, 0.30)
    price: float = 50.0
    cost: float = 30.0
    base: float = -2.5
    elasticity: float = 6.0
    n_features: int = 8
    heterogeneity: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.discounts) < 2:
            raise ValueError("discounts: expected at least two offers")
        for i, d in enumerate(self.discounts):
            check_range(f"discounts[{i}]", d, 0.0, 1.0, hi_open=True)
        check_range("price", self.price, 0.0, lo_open=True)
        check_range("cost", self.cost, 0.0, self.price, hi_open=True)
        check_range("base", self.base)
        check_range("elasticity", self.elasticity)
        check_int("n_features", self.n_features, 1)
        check_range("heterogeneity", self.heterogeneity, 0.0)
        if self.price * (1.0 - max(self.discounts)) < self.cost:
            raise ValueError("discounts: the deepest discount would sell below cost "
                             f"({self.price} * (1 - {max(self.discounts)}) < {self.cost})")

    @property
    def n_offers(self) -> int:
        return len(self.discounts)

    @property
    def context_dim(self) -> int:
        """Length of the context vector given to contextual policies (features + 1)."""
        return self.n_features + 1

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        rs = np.random.default_rng([self.seed, 1])
        d = self.n_features
        w = rs.normal(0.0, self.heterogeneity / np.sqrt(d), d)
        s = rs.normal(0.0, 2.0 * self.heterogeneity / np.sqrt(d), d)
        return w, s

    def contexts(self, n: int, stream: int = 0) -> np.ndarray:
        """n shopper contexts (n, d + 1), the last column the constant 1."""
        rs = np.random.default_rng([self.seed, 2, stream])
        x = rs.normal(size=(n, self.n_features))
        return np.ascontiguousarray(np.hstack([x, np.ones((n, 1))]))

    def purchase_probability(self, contexts: np.ndarray) -> np.ndarray:
        """P(purchase | context, offer), shape (n, K)."""
        w, s = self._params()
        x = contexts[:, : self.n_features]
        disc = np.asarray(self.discounts)
        logit = self.base + (x @ w)[:, None] + disc[None, :] * (self.elasticity + x @ s)[:, None]
        return 1.0 / (1.0 + np.exp(-logit))

    def margins(self) -> np.ndarray:
        """Profit of one purchase under each offer, shape (K,), in currency units."""
        return self.price * (1.0 - np.asarray(self.discounts)) - self.cost

    def expected_profit(self, contexts: np.ndarray) -> np.ndarray:
        """Expected profit of every offer for every context, shape (n, K)."""
        return self.purchase_probability(contexts) * self.margins()[None, :]


@dataclasses.dataclass
class ProblemRun:
    """Outcome of a policy on an OfferProblem (money in currency units)."""

    name: str
    profit: np.ndarray  # (T,) realised profit per request
    expected: np.ndarray  # (T,) expected profit of the chosen offer
    regret: np.ndarray  # (T,) best expected profit minus the chosen one's
    offers: np.ndarray  # (T,) chosen offer ids
    propensities: np.ndarray  # (T,)

    def summary(self) -> dict[str, Any]:
        t = len(self.profit)
        half = t // 2
        return {
            "policy": self.name,
            "profit": float(self.profit.sum()),
            "profit_per_request": float(self.profit.mean()),
            "regret": float(self.regret.sum()),
            "regret_second_half_share": float(self.regret[half:].sum() / max(self.regret.sum(), 1e-12)),
            "offer_mix": np.bincount(self.offers, minlength=int(self.offers.max()) + 1) / t,
        }


def run_problem(problem: OfferProblem, policy: Policy | None, steps: int, *, batch: int = 100,
               fixed_offer: int | None = None, name: str | None = None,
               reward_scale: float | None = None) -> ProblemRun:
    """Runs a policy (or a fixed offer) for `steps` requests, learning after each batch.

    Requests and purchases use common random numbers: every policy sees the same
    shoppers and the same uniform draw behind each purchase.
    reward_scale: profits are divided by it before the policy sees them (default:
    the largest margin, so Beta TS gets rewards in [0, 1]).
    """
    steps = check_int("steps", steps, 1)
    batch = check_int("batch", batch, 1)
    xs = problem.contexts(steps)
    exp_all = problem.expected_profit(xs)
    p_all = problem.purchase_probability(xs)
    u = np.random.default_rng([problem.seed, 3]).random(steps)
    margins = problem.margins()
    scale = float(margins.max()) if reward_scale is None else reward_scale
    offers = np.empty(steps, dtype=np.int64)
    props = np.ones(steps)
    for lo in range(0, steps, batch):
        hi = min(lo + batch, steps)
        if policy is None:
            offers[lo:hi] = 0 if fixed_offer is None else fixed_offer
        else:
            ctx = xs[lo:hi] if policy.contextual else None
            a, pr = policy.select_batch(ctx, None, hi - lo)
            offers[lo:hi] = a
            props[lo:hi] = pr
            bought = u[lo:hi] < p_all[np.arange(lo, hi), a]
            rewards = np.where(bought, margins[a], 0.0) / scale
            policy.update_batch(a, np.clip(rewards, 0.0, 1.0), ctx)
    rows = np.arange(steps)
    bought = u < p_all[rows, offers]
    profit = np.where(bought, margins[offers], 0.0)
    expected = exp_all[rows, offers]
    label = name or (policy.name if policy is not None else f"fixed offer {fixed_offer}")
    return ProblemRun(label, profit, expected, exp_all.max(axis=1) - expected, offers, props)
