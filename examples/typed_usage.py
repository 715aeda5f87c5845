"""A small typed tour of the public API, checked by ``mypy --strict`` in CI and run by
tests/test_wheel.py in a fresh install of the wheel.

A policy learns which of three arms pays, the engine decides a discount for a basket and
learns from the purchase, and the scorer ranks items for two users.

    python examples/typed_usage.py
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from promobandit import (
    Basket,
    BetaTS,
    Decision,
    Engine,
    EngineConfig,
    FeedbackResult,
    LinUCB,
    TopK,
    available_backends,
    default_catalogue,
    make_policy,
    topk_softmax,
)


def learn_the_best_arm(rounds: int = 400) -> int:
    """Thompson sampling on three Bernoulli arms; returns the arm it pulls most."""
    policy = BetaTS(n_arms=3, seed=7)
    rates = (0.05, 0.5, 0.2)
    rng = np.random.default_rng(7)
    pulls: NDArray[np.int64] = np.zeros(3, dtype=np.int64)
    for _ in range(rounds):
        arm, propensity = policy.select()
        assert 0.0 < propensity <= 1.0
        policy.update(arm, float(rng.random() < rates[arm]))
        pulls[arm] += 1
    return int(np.argmax(pulls))


def contextual_choice() -> tuple[int, float]:
    """LinUCB on two features: one decision for one context."""
    policy = LinUCB(n_arms=4, n_features=2, seed=1)
    x: NDArray[np.float64] = np.array([1.0, 0.5])
    policy.update(2, 1.0, x)
    return policy.select(x)


def decide_and_learn() -> tuple[Decision, FeedbackResult]:
    """The engine: one decision on a basket, then the purchase that finalises it."""
    catalogue = default_catalogue()
    engine = Engine(catalogue, make_policy("BetaTS", len(catalogue), seed=1), EngineConfig(),
                    privacy_key=b"typed usage example key")
    basket = Basket.from_lines([(1, 2, 60.0, 30.0, 1), (2, 0, 15.0, 9.0, 2)])
    decision = engine.decide("user-1", basket=basket)
    result = engine.feedback(decision.id, "event-1", purchased=True)
    return decision, result


def rank_items() -> TopK:
    """Top-3 items of 50 for two users, with their softmax probabilities."""
    rng = np.random.default_rng(3)
    items = rng.standard_normal((50, 8)).astype(np.float32)
    users = rng.standard_normal((2, 8)).astype(np.float32)
    return topk_softmax(items, users, 3, temperature=0.5)


def scorer_isa() -> str | None:
    """The instruction set the compiled scorer dispatched to on this CPU (None without
    the C++ core): one wheel carries every variant and picks at run time."""
    if "cpp" not in available_backends():
        return None
    from promobandit import _core

    isa: str = _core.topk_isa()
    assert _core.topk_isa_supported(isa)
    return isa


def main() -> None:
    best = learn_the_best_arm()
    arm, propensity = contextual_choice()
    decision, result = decide_and_learn()
    top = rank_items()
    assert best == 1, best
    assert 0 <= arm < 4 and 0.0 < propensity <= 1.0
    assert result.status == "finalised" and result.decision_id == decision.id
    assert top.ids.shape == (2, 3) and np.allclose(top.probs_topk.sum(axis=1), 1.0)
    print(f"best arm {best}; contextual arm {arm}; offer {decision.offer_id} "
          f"(p={decision.propensity:.3f}) -> {result.status}; "
          f"top-3 {top.ids.tolist()}; scorer isa {scorer_isa()}")


if __name__ == "__main__":
    main()
