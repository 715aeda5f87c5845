"""The small offer problem's ground truth (the marketplace simulator has its own tests)."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit.evaluate.offer_problem import OfferProblem, run_problem
from promobandit.policies import BetaTS, LinUCB


def test_expected_profit_is_probability_times_margin() -> None:
    prob = OfferProblem(seed=3)
    x = prob.contexts(50)
    p = prob.purchase_probability(x)
    assert ((p > 0) & (p < 1)).all()
    margins = prob.price * (1 - np.asarray(prob.discounts)) - prob.cost
    np.testing.assert_allclose(prob.expected_profit(x), p * margins)
    # Deeper discounts make a purchase more likely for a shopper with average sensitivity.
    avg = np.zeros((1, prob.context_dim))
    avg[0, -1] = 1.0
    assert np.all(np.diff(prob.purchase_probability(avg)[0]) > 0)


def test_regret_is_exact_and_common_random_numbers() -> None:
    prob = OfferProblem(seed=1)
    a = run_problem(prob, None, 2000, fixed_offer=2)
    b = run_problem(prob, None, 2000, fixed_offer=2)
    np.testing.assert_array_equal(a.profit, b.profit)  # same shoppers, same draws
    best = prob.expected_profit(prob.contexts(2000)).max(axis=1)
    np.testing.assert_allclose(a.regret, best - a.expected)
    assert (a.regret >= 0).all()
    same1 = run_problem(prob, BetaTS(prob.n_offers, seed=4), 2000)
    same2 = run_problem(prob, BetaTS(prob.n_offers, seed=4), 2000)
    np.testing.assert_array_equal(same1.offers, same2.offers)


def test_contextual_policy_beats_best_fixed_offer() -> None:
    prob = OfferProblem(seed=0)
    steps = 40_000
    fixed = [run_problem(prob, None, steps, fixed_offer=j) for j in range(prob.n_offers)]
    best_fixed = max(r.expected.sum() for r in fixed)
    lin = run_problem(prob, LinUCB(prob.n_offers, prob.context_dim, alpha=0.5), steps)
    # Expected (not realised) profit, so the margin is not luck of the draws.
    assert lin.expected.sum() > 1.01 * best_fixed


def test_offer_problem_rejects_selling_below_cost() -> None:
    with pytest.raises(ValueError, match="below cost"):
        OfferProblem(discounts=(0.0, 0.5), price=50.0, cost=30.0)
