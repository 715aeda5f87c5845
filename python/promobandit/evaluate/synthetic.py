"""Simulated decision logs with known ground truth, for testing estimators.

Built on ``evaluate.offer_problem.OfferProblem``: shoppers with features, offers with known
expected profit E[profit | x, a] in closed form. A logging policy with exact
propensities draws offers, the problem draws purchases, and the true value of
any target policy is the mean over shoppers of sum_a pi(a|x) E[profit | x, a].
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._validation import check_int, check_range, check_seed
from .log import DecisionLog
from .offer_problem import OfferProblem
from .targets import TargetPolicy, check_target_chunk, target_function


@dataclasses.dataclass(frozen=True)
class SoftmaxOfferPolicy:
    """Softmax over an offer problem's true expected profits, mixed with uniform exploration.

    pi(a|x) = (1 - epsilon) * softmax_a(E[profit | x, a] / temperature) + epsilon / K_eligible.
    temperature: in currency units (> 0); small is greedy, large is uniform.
    epsilon: uniform exploration share in [0, 1]; > 0 keeps every offer in the support.
    """

    problem: OfferProblem
    temperature: float = 1.0
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        check_range("temperature", self.temperature, 0.0, lo_open=True)
        check_range("epsilon", self.epsilon, 0.0, 1.0)

    def action_probabilities(self, contexts: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        score = self.problem.expected_profit(contexts) / self.temperature
        el = np.ones_like(score, dtype=bool) if masks is None else np.asarray(masks, dtype=bool)
        score = np.where(el, score, -np.inf)
        score -= score.max(axis=1, keepdims=True)
        e = np.exp(score)
        soft = e / e.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * soft + self.epsilon * el / el.sum(axis=1, keepdims=True)


def simulate_log(problem: OfferProblem, logging_policy: TargetPolicy, n: int, *, seed: int = 0,
                 eligible_rate: float = 1.0, with_action_probs: bool = True) -> DecisionLog:
    """n decisions of `logging_policy` on fresh shoppers of `problem` (stream `seed`).

    Rewards are realised profit (currency units): margin of the offer on a purchase,
    0 otherwise. eligible_rate: each non-zero offer is eligible with this probability
    (offer 0, no discount, always is). with_action_probs: log the full distribution.
    """
    n = check_int("n", n, 1)
    seed = check_seed(seed)
    eligible_rate = check_range("eligible_rate", eligible_rate, 0.0, 1.0)
    k = problem.n_offers
    x = problem.contexts(n, stream=seed)
    rs = np.random.default_rng([problem.seed, 17, seed])
    masks = None
    if eligible_rate < 1.0:
        masks = rs.random((n, k)) < eligible_rate
        masks[:, 0] = True
    probs = check_target_chunk(target_function(logging_policy, n, k)(x, masks, slice(0, n)),
                               n, k, masks, 0)
    cum = np.cumsum(probs, axis=1)
    u = rs.random(n) * cum[:, -1]
    actions = np.minimum((cum < u[:, None]).sum(axis=1), k - 1).astype(np.int64)
    rows = np.arange(n)
    # Guard against float ties landing on a zero-probability offer.
    zero = probs[rows, actions] <= 0.0
    if zero.any():
        actions[zero] = probs[zero].argmax(axis=1)
    bought = rs.random(n) < problem.purchase_probability(x)[rows, actions]
    rewards = np.where(bought, problem.margins()[actions], 0.0)
    return DecisionLog.from_arrays(actions, probs[rows, actions], rewards, n_actions=k,
                                   contexts=x, action_probs=probs if with_action_probs else None,
                                   eligible=masks)


def true_value(problem: OfferProblem, policy: TargetPolicy, n_shoppers: int = 200_000, *,
               stream: int = 2**40) -> float:
    """The value of `policy` (expected profit per decision, currency units) by exact
    expectation over offers and purchases, averaged over `n_shoppers` fresh shoppers
    (Monte Carlo over shoppers only; standard error about sd / sqrt(n_shoppers))."""
    n_shoppers = check_int("n_shoppers", n_shoppers, 1)
    x = problem.contexts(n_shoppers, stream=stream)
    k = problem.n_offers
    probs = check_target_chunk(target_function(policy, n_shoppers, k)(x, None,
                                                                      slice(0, n_shoppers)),
                               n_shoppers, k, None, 0)
    return float(np.einsum("ij,ij->i", probs, problem.expected_profit(x)).mean())
