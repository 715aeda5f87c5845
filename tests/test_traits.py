"""Policy traits (what callers read instead of testing classes) and the one FixedOffer."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promobandit.engine import Engine, EngineConfig
from promobandit.engine.decision_log import DecisionLogWriter
from promobandit.evaluate import FixedOffer as EvaluateFixedOffer
from promobandit.offers import Basket, Catalogue, NoDiscount, PercentOff
from promobandit.policies import POLICIES, FixedOffer, Policy, PolicyTraits, make_policy
from promobandit.policies.base import new_counters

K, D = 4, 3
KEY = b"test-key-0123456789abcdef"
T0 = 1_700_000_000.0


def policy(name: str, backend: str = "auto", seed: int = 1) -> Policy:
    return make_policy(name, K, D, seed=seed, backend=backend)


def test_every_policy_declares_its_traits() -> None:
    for name, cls in {**POLICIES, "FixedOffer": FixedOffer}.items():
        assert isinstance(cls.traits, PolicyTraits), name
        assert cls.contextual is cls.traits.contextual
    assert POLICIES["BetaTS"].traits.reward_range == (0.0, 1.0)
    assert {n for n, c in POLICIES.items() if c.traits.contextual} == {"LinUCB", "LinTS"}
    assert {n for n, c in POLICIES.items() if c.traits.deterministic} == {
        "UCB1", "UCBTuned", "LinUCB"}
    assert {n for n, c in POLICIES.items() if not c.traits.closed_form} == {
        "BetaTS", "GaussianTS", "LinTS"}


@pytest.mark.parametrize("name", [n for n, c in POLICIES.items() if c.traits.closed_form])
def test_closed_form_action_probabilities_give_the_propensity(name: str, backend: str) -> None:
    pol = policy(name, backend)
    rs = np.random.default_rng(0)
    for _ in range(30):
        x = rs.normal(size=D)
        arm = int(rs.integers(K))
        pol.update(arm, float(rs.random()), x)
    xs = rs.normal(size=(20, D))
    masks = rs.random((20, K)) < 0.7
    masks[:, 0] = True
    for i in range(20):
        x = xs[i] if pol.contextual else None
        probs = pol.action_probabilities(None if x is None else x[None], masks[i][None], 1)[0]
        arm, prop = pol.select(x, masks[i])
        assert probs[arm] == pytest.approx(prop, rel=1e-12)
        assert probs.sum() == pytest.approx(1.0) and not probs[~masks[i]].any()
        if pol.traits.deterministic:
            assert prop == 1.0


def test_traits_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^propensity"):
        PolicyTraits(deterministic=False, propensity="exact")
    with pytest.raises(ValueError, match=r"^propensity"):
        PolicyTraits(deterministic=True, propensity="estimated")
    with pytest.raises(ValueError, match=r"^reward_range"):
        PolicyTraits(deterministic=False, propensity="closed_form", reward_range=(1.0, 0.0))
    assert PolicyTraits(False, "estimated", (0.0, 1.0)).clip_reward(2.5) == 1.0

    class Bare(Policy):  # declares no traits
        name = "Bare"

        def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
            return {"active": np.ones(n_arms, dtype=bool), "counters": new_counters(0)}

        def _new_arm_rows(self) -> dict[str, np.ndarray]:
            return {"active": np.array(True)}

        def _make_kernel(self, module: Any) -> Any:
            raise AssertionError("not reached")

        def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
            pass

        def expectations(self, context: Any = None) -> np.ndarray:
            return np.zeros(1)

    with pytest.raises(TypeError, match="traits"):
        Bare(2)


def _engine(name: str, log_dir: Path, **settings: Any) -> Engine:
    cat = Catalogue(offers=(NoDiscount(id="none"), PercentOff(id="p10", fraction=0.10)),
                    currency="EUR", minor_unit=0.01, margin_floor=0.0)
    pol = make_policy(name, len(cat), D, seed=4, **settings)
    return Engine(cat, pol, EngineConfig(caps=None, feedback_wait_seconds=10.0),
                  privacy_key=KEY, log_dir=str(log_dir))


@pytest.mark.parametrize("name", ["EpsilonGreedy", "LinUCB", "BetaTS", "LinTS"])
def test_engine_reads_the_traits(name: str, tmp_path: Path) -> None:
    """"auto" logs the full distribution exactly for closed-form policies; rewards are
    clipped to the policy's range (a profit of 47.5 is 2.4 scaled: BetaTS takes 1)."""
    eng = _engine(name, tmp_path / "log")
    b = Basket.from_lines([(1, 0, 60.0, 10.0, 1)])
    for i in range(6):
        d = eng.decide(f"u{i}", context=np.ones(D), basket=b, now=T0 + i)
        assert eng.feedback(d.id, f"e{i}", purchased=True, now=T0 + i).status == "finalised"
    eng.close(now=T0 + 100.0)
    probs = DecisionLogWriter.read(tmp_path / "log").column("action_probs").to_pylist()
    closed = eng.policy.traits.closed_form
    assert all((p is not None) == closed for p in probs)
    if eng.policy.traits.reward_range is not None:
        assert (eng.policy.expectations() <= 1.0).all()


# --- the one FixedOffer ----------------------------------------------------------------------


def test_fixed_offer_is_the_evaluation_target() -> None:
    assert EvaluateFixedOffer is FixedOffer
    masks = np.array([[True, True, True], [True, False, True], [False, False, True],
                      [False, False, True]])
    fo = FixedOffer(3, offer=1)
    np.testing.assert_array_equal(fo.action_probabilities(np.empty((4, 0)), masks),
                                  [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]])
    arms, props = fo.select_batch(None, masks, 4)
    np.testing.assert_array_equal(arms, [1, 0, 2, 2])
    np.testing.assert_array_equal(props, 1.0)
    with pytest.raises(ValueError, match=r"^fallback"):
        FixedOffer(3, offer=0, fallback=3)
    with pytest.raises(ValueError, match=r"^mask"):
        fo.select(None, np.zeros(3, dtype=bool))


def test_fixed_offer_draws_uniformly_where_offer_and_fallback_are_masked(backend: str) -> None:
    """Rows where neither the offer nor the fallback is eligible: uniform over the eligible
    arms, propensity 1 / K_eligible; the same draws on every backend and batch split."""
    n = 6000
    mask = np.array([True, False, True, True, False])
    pol = FixedOffer(5, offer=1, fallback=4, seed=9, backend=backend)
    arms, props = pol.select_batch(None, np.tile(mask, (n, 1)), n)
    np.testing.assert_array_equal(props, 1.0 / 3.0)
    freq = np.bincount(arms, minlength=5) / n
    # three-sigma bound of a proportion 1/3 over 6000 draws is 0.018
    np.testing.assert_allclose(freq[mask], 1.0 / 3.0, atol=0.02)
    assert freq[~mask].sum() == 0.0
    probs = pol.action_probabilities(None, mask[None], 1)[0]
    np.testing.assert_allclose(probs, mask / 3.0)
    one_by_one = FixedOffer(5, offer=1, fallback=4, seed=9, backend=backend)
    again = [one_by_one.select(None, mask)[0] for _ in range(50)]
    np.testing.assert_array_equal(again, arms[:50])
    assert pol.n_decisions == n


def test_fixed_offer_state_round_trips_and_counts_updates() -> None:
    pol = FixedOffer(4, offer=2, fallback=None, seed=3)
    pol.select_batch(None, None, 5)
    pol.update(2, 1.5)
    pol.update_batch(np.array([0, 2]), np.array([0.0, 2.0]))
    assert pol.version == 3 and pol.n_decisions == 5
    back = pickle.loads(pickle.dumps(pol))
    assert back.config == pol.config and back.version == 3 and back.n_decisions == 5
    with pytest.raises(ValueError, match=r"^reward"):
        pol.update(0, float("nan"))
    assert pol.version == 3
