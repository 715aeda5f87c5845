"""Default Thompson-sampling propensities are exact by quadrature: within 0.01 absolute
(the issue's bound; the method gives ~0.003) of a 10^6-draw Monte Carlo estimate made
independently with NumPy's samplers, on both backends, with the same bits on both."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit.policies import BetaTS, LinTS

MC = 1_000_000
TOL = 0.01


def mc_beta(a: np.ndarray, b: np.ndarray, bias: np.ndarray, seed: int) -> np.ndarray:
    rs = np.random.default_rng(seed)
    wins = np.zeros(len(a))
    for _ in range(10):  # 10 chunks of 10^5 draws of every arm
        d = rs.beta(a[None], b[None], size=(MC // 10, len(a))) + bias[None]
        wins += np.bincount(d.argmax(axis=1), minlength=len(a))
    return wins / MC


BETA_STATES = [  # (successes, failures) per arm, prior (1, 1) unless stated
    (np.zeros(10), np.zeros(10)),
    (np.array([1.0, 0, 2, 0]), np.array([0.0, 1, 0, 0])),
    (np.array([30.0, 300, 3000, 2]), np.array([70.0, 700, 7000, 8])),
    (np.array([3200.0, 2900, 104, 9, 0]), np.array([6800.0, 7100, 296, 41, 3])),
]


@pytest.mark.parametrize("state", range(len(BETA_STATES)))
def test_beta_ts_default_propensities_match_monte_carlo(state: int, backend: str) -> None:
    succ, fail = BETA_STATES[state]
    k = len(succ)
    p = BetaTS(k, seed=1, backend=backend)
    assert p.config.propensity_method == "quadrature"
    arms = np.repeat(np.arange(k), (succ + fail).astype(int))
    rewards = np.concatenate([np.r_[np.ones(int(s)), np.zeros(int(f))]
                              for s, f in zip(succ, fail, strict=True)])
    p.update_batch(arms, rewards)
    want = mc_beta(1 + succ, 1 + fail, np.zeros(k), seed=state)
    probs = p.action_probabilities(n=1)[0]
    np.testing.assert_allclose(probs, want, rtol=0, atol=TOL)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    arms_b, props = p.select_batch(n=200)
    np.testing.assert_array_equal(props, probs[arms_b])  # the logged propensities


def test_beta_ts_quadrature_with_bias_and_mask(backend: str) -> None:
    p = BetaTS(4, seed=2, backend=backend)
    p.update_batch(np.array([0, 1, 1, 2, 3, 3, 3]), np.array([1.0, 0, 1, 0, 1, 1, 0]))
    bias = np.array([0.0, 0.05, -0.02, 0.01])
    mask = np.array([True, True, False, True])
    st = p.state_dict()["arrays"]["stats"]
    a, b = 1.0 + st[:, 1], 1.0 + st[:, 0] - st[:, 1]
    want = np.zeros(4)
    elig = np.flatnonzero(mask)
    want[elig] = mc_beta(a[elig], b[elig], bias[elig], seed=7)
    probs = p.action_probabilities(None, mask[None], biases=bias[None])[0]
    np.testing.assert_allclose(probs, want, rtol=0, atol=TOL)
    assert probs[2] == 0.0
    arm, prop = p.select(None, mask, bias)
    assert prop == probs[arm]


def test_lints_default_propensities_match_monte_carlo(backend: str) -> None:
    k, d = 6, 5
    rs = np.random.default_rng(3)
    p = LinTS(k, d, seed=4, backend=backend, v=0.7)
    xs = rs.normal(size=(300, d))
    arms = rs.integers(0, k, 300)
    p.update_batch(arms, xs[np.arange(300), arms % d] + 0.1 * rs.normal(size=300), xs)
    a_inv = p.state_dict()["arrays"]["A_inv"]
    for j in range(3):
        x = rs.normal(size=d)
        mean = p.expectations(x)
        sd = 0.7 * np.sqrt(np.einsum("d,kde,e->k", x, a_inv, x))
        draws = mean[None] + sd[None] * np.random.default_rng(j).normal(size=(MC, k))
        want = np.bincount(draws.argmax(axis=1), minlength=k) / MC
        probs = p.action_probabilities(x[None])[0]
        np.testing.assert_allclose(probs, want, rtol=0, atol=TOL)
        arm, prop = p.select(x)
        assert prop == probs[arm]


def test_lints_without_exploration_shares_ties_exactly(backend: str) -> None:
    p = LinTS(3, 2, v=0.0, backend=backend)
    _, prop = p.select(np.array([1.0, 0.5]))
    assert prop == 1.0 / 3


@pytest.mark.skipif(not {"cpp", "numba"} <= set(_backends.available()),
                    reason="needs both backends")
def test_both_backends_give_the_same_quadrature_bits() -> None:
    out = {}
    for b in ("cpp", "numba"):
        beta, lin = BetaTS(8, seed=1, backend=b), LinTS(8, 4, seed=1, backend=b, v=0.3)
        r = np.random.default_rng(6)
        props = []
        for _ in range(300):
            _, pr = beta.select(None, None, r.normal(scale=0.02, size=8) if r.random() < 0.3
                                else None)
            props.append(pr)
            beta.update(int(r.integers(8)), float(r.random() < 0.3))
            x = r.normal(size=4)
            arm, pr = lin.select(x)
            props.append(pr)
            lin.update(arm, float(x[0] + r.normal()), x)
        out[b] = np.array(props)
    np.testing.assert_array_equal(out["cpp"], out["numba"])


def test_propensity_method_is_checked_and_draws_still_switch_off() -> None:
    with pytest.raises(ValueError, match=r"^propensity_method"):
        BetaTS(3, propensity_method="exact")
    with pytest.raises(ValueError, match=r"^propensity_method"):
        LinTS(3, 2, propensity_method=1)
    assert np.isnan(BetaTS(3, propensity_draws=0).select()[1])
    assert np.isnan(LinTS(3, 2, propensity_draws=0).select(np.ones(2))[1])
    # The draws method is still there, and an explicit draw count asks for it.
    p = BetaTS(3, propensity_method="draws", propensity_draws=50)
    assert p.select()[1] in {(w + 1) / 53 for w in range(51)}
    q = BetaTS(3)
    q.update(0, 1.0)
    est = q.action_probabilities(n=1, draws=50)[0]
    assert {round(v * 53) for v in est} <= set(range(1, 52))  # (wins + 1) / 53


def test_propensity_method_codes_have_one_definition() -> None:
    from promobandit._numba import codes
    from promobandit.policies import _codes
    from promobandit.policies.base import PROPENSITY_METHODS

    assert codes.PROPENSITY_METHODS == {"DRAWS": 0, "QUADRATURE": 1}
    if _backends.has_cpp():
        assert dict(_backends.core().PROPENSITY_METHODS) == codes.PROPENSITY_METHODS
    assert _codes.PROPENSITY_METHODS == codes.PROPENSITY_METHODS
    assert PROPENSITY_METHODS == {"draws": codes.METHOD_DRAWS,
                                  "quadrature": codes.METHOD_QUADRATURE}


def test_exact_beta_propensity_of_a_small_state(backend: str) -> None:
    # Beta(2, 1) against two Beta(1, 1): P = integral of 2x * x^2 dx = 1/2, the others 1/4.
    p = BetaTS(3, backend=backend)
    p.update(0, 1.0)
    np.testing.assert_allclose(p.action_probabilities(n=1)[0], [0.5, 0.25, 0.25], atol=1e-9)


# Normal scores N(m, sd^2) that the one-arm integral (quad_normal_propensity) meets: similar
# sds, one score 30x narrower than the others (more than 64 panels: the generic method
# decides), scores that cannot win, and ten arms with spread sds.
NORMAL_STATES = [
    (np.array([0.1, 0.0, -0.1, 0.05]), np.array([0.3, 0.25, 0.35, 0.3])),
    (np.array([0.0, 0.02, -0.3, 0.1]), np.array([0.6, 0.02, 0.5, 0.7])),
    (np.array([1.0, 0.9, -2.0, -5.0]), np.array([0.1, 0.2, 0.1, 0.3])),
    (np.linspace(-0.2, 0.25, 10), np.exp(np.linspace(-2.0, 0.5, 10)) * 0.3),
]


def _lints_with_scores(m: np.ndarray, sd: np.ndarray, backend: str, v: float = 0.5) -> LinTS:
    """LinTS with d = 1 whose scores at x = 1 are N(m, sd^2): theta = m, v^2 A^-1 = sd^2."""
    p = LinTS(len(m), 1, seed=1, backend=backend, v=v)
    st = p.state_dict()
    arr = st["arrays"]
    arr["theta"][:, 0] = m
    arr["b"][:, 0] = m / (sd / v) ** 2
    arr["A_inv"][:, 0, 0] = (sd / v) ** 2
    arr["A"][:, 0, 0] = (v / sd) ** 2
    p.load_state_dict(st)
    return p


@pytest.mark.parametrize("state", range(len(NORMAL_STATES)))
def test_lints_default_propensities_of_normal_scores_match_monte_carlo(state: int,
                                                                       backend: str) -> None:
    """With d = 1 and x = 1 the scores are N(theta_a, v^2 A_inv_a): set them, and the
    default (exact) propensities meet a 10^6-draw Monte Carlo within 0.01."""
    m, sd = NORMAL_STATES[state]
    k = len(m)
    p = _lints_with_scores(m, sd, backend)
    assert p.config.propensity_method == "quadrature"
    x = np.ones((1, 1))
    draws = m[None] + sd[None] * np.random.default_rng(state).normal(size=(MC, k))
    want = np.bincount(draws.argmax(axis=1), minlength=k) / MC
    probs = p.action_probabilities(x)[0]
    np.testing.assert_allclose(probs, want, rtol=0, atol=TOL)
    assert abs(probs.sum() - 1.0) < 1e-6  # what a logged action distribution is held to
    arms, props = p.select_batch(np.ones((50, 1)))
    np.testing.assert_array_equal(props, probs[arms])  # the logged propensities


@pytest.mark.skipif(not {"cpp", "numba"} <= set(_backends.available()),
                    reason="needs both backends")
@pytest.mark.parametrize("k", [3, 5, 8, 9, 12, 17])
def test_normal_propensities_are_the_same_bits_on_both_backends(k: int) -> None:
    """The C++ integral takes the live scores' factors 8 lanes at a time (AVX-512) where it
    can, Numba one at a time: the same operations per score, so the same bits, for any
    number of live scores (one block, a padded second block, several)."""
    rs = np.random.default_rng(k)
    for _ in range(20):
        m = 0.3 * rs.normal(size=k)
        sd = 0.2 * np.exp(rs.uniform(-1.5, 1.5, size=k))
        got = {b: _lints_with_scores(m, sd, b).action_probabilities(np.ones((1, 1)))[0]
               for b in ("cpp", "numba")}
        np.testing.assert_array_equal(got["cpp"], got["numba"])
        assert abs(got["cpp"].sum() - 1.0) < 1e-6
