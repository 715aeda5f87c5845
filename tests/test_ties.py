"""Exact ties of every argmax are broken at random from the policy's own stream.

A cold start ties every arm (LinUCB's bounds, UCB's unplayed arms, epsilon-greedy's
initial values, LinTS without exploration); the choice among tied arms is uniform,
drawn from the stream (seed, decision number, tie), so it is deterministic per seed,
the same on both backends, and select_batch of n equals n selects.
"""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit.policies import UCB1, EpsilonGreedy, LinTS, LinUCB, UCBTuned

K, D, N = 8, 4, 4000


def cold(name: str, backend: str, seed: int = 3):
    return {
        "LinUCB": lambda: LinUCB(K, D, seed=seed, backend=backend),
        "LinTS": lambda: LinTS(K, D, seed=seed, backend=backend, v=0.0, propensity_draws=0),
        "UCB1": lambda: UCB1(K, seed=seed, backend=backend),
        "UCBTuned": lambda: UCBTuned(K, seed=seed, backend=backend),
        "EpsilonGreedy": lambda: EpsilonGreedy(K, seed=seed, backend=backend, epsilon=0.0),
    }[name]()


NAMES = ["LinUCB", "LinTS", "UCB1", "UCBTuned", "EpsilonGreedy"]


def contexts(n: int = N) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, D))


def batch(p, n: int = N):
    return p.select_batch(contexts(n) if p.contextual else None, None, n)


@pytest.mark.parametrize("name", NAMES)
def test_a_cold_start_batch_spreads_across_arms(name: str, backend: str) -> None:
    arms, props = batch(cold(name, backend))
    counts = np.bincount(arms, minlength=K)
    # Uniform over K arms: each count ~ Binomial(N, 1/K), sd ~ 21; 6 sd is a bound a
    # fair tie-break fails with probability < 1e-8, the lowest-id rule by 3,500.
    assert np.abs(counts - N / K).max() < 6 * np.sqrt(N / K * (1 - 1 / K))
    if name != "LinTS":  # closed-form policies: the tie share is the propensity
        np.testing.assert_array_equal(props, np.full(N, 1.0 / K))


@pytest.mark.parametrize("name", NAMES)
def test_ties_are_deterministic_per_seed_and_batch_equals_selects(name: str,
                                                                   backend: str) -> None:
    a1, p1 = batch(cold(name, backend))
    a2, p2 = batch(cold(name, backend))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(a1, batch(cold(name, backend, seed=4))[0])
    single = cold(name, backend)
    xs = contexts(200)
    got = [single.select(xs[i] if single.contextual else None) for i in range(200)]
    assert [g[0] for g in got] == a1[:200].tolist()
    np.testing.assert_array_equal([g[1] for g in got], p1[:200])


@pytest.mark.skipif(not {"cpp", "numba"} <= set(_backends.available()),
                    reason="needs both backends")
@pytest.mark.parametrize("name", NAMES)
def test_both_backends_break_ties_alike(name: str) -> None:
    a_cpp, p_cpp = batch(cold(name, "cpp"))
    a_nb, p_nb = batch(cold(name, "numba"))
    np.testing.assert_array_equal(a_cpp, a_nb)
    np.testing.assert_array_equal(p_cpp, p_nb)


@pytest.mark.parametrize("name", ["LinUCB", "UCB1", "EpsilonGreedy"])
def test_tied_arms_share_the_action_probability(name: str, backend: str) -> None:
    p = cold(name, backend)
    rows = 3
    xs = contexts(rows) if p.contextual else None
    probs = p.action_probabilities(xs, None, None if xs is not None else rows)
    np.testing.assert_allclose(probs, np.full((rows, K), 1.0 / K), rtol=0, atol=0)


def test_epsilon_greedy_propensity_counts_the_tied_greedy_arms(backend: str) -> None:
    p = EpsilonGreedy(4, seed=1, backend=backend, epsilon=0.2)
    p.update(0, 1.0)
    p.update(2, 1.0)  # arms 0 and 2 tie at mean 1; arms 1 and 3 at the initial 0
    arms, props = p.select_batch(n=4000)
    for a in range(4):
        want = 0.2 / 4 + (0.8 / 2 if a in (0, 2) else 0.0)
        assert np.allclose(props[arms == a], want)
        assert abs(np.mean(arms == a) - want) < 0.03


@pytest.mark.parametrize("name", NAMES)
def test_ties_first_keeps_the_lowest_id_without_a_draw(name: str, backend: str) -> None:
    kw = {"LinTS": {"v": 0.0, "propensity_draws": 0}, "EpsilonGreedy": {"epsilon": 0.0}}
    cls = {"LinUCB": LinUCB, "LinTS": LinTS, "UCB1": UCB1, "UCBTuned": UCBTuned,
           "EpsilonGreedy": EpsilonGreedy}[name]
    args = (K, D) if cls.contextual else (K,)
    p = cls(*args, seed=3, backend=backend, ties="first", **kw.get(name, {}))
    arms, props = batch(p, 50)
    assert (arms == 0).all()
    if name != "LinTS":
        assert (props == 1.0).all()
        xs = contexts(2) if p.contextual else None
        probs = p.action_probabilities(xs, None, None if xs is not None else 2)
        np.testing.assert_array_equal(probs, np.eye(K)[[0, 0]])
    with pytest.raises(ValueError, match=r"^ties"):
        cls(*args, ties="lowest")


def _trained_linucb(backend: str, ties: str = "random") -> LinUCB:
    p = LinUCB(K, D, seed=5, backend=backend, ties=ties)
    rs = np.random.default_rng(1)
    xs = rs.normal(size=(300, D))
    p.update_batch(np.arange(300) % K, rs.normal(size=300), xs)
    return p


def _mixed_rows(n: int = 203) -> np.ndarray:
    """Contexts where every third row is zero: a zero context ties every arm even on a
    trained model (mean 0, width 0), the others have one highest arm, so 8-row blocks
    mix tied and untied rows (and n leaves a tail shorter than a block)."""
    xs = np.random.default_rng(2).normal(size=(n, D))
    xs[::3] = 0.0
    return xs


@pytest.mark.parametrize("ties", ["random", "first"])
@pytest.mark.parametrize("variant", ["all arms", "mask", "bias", "removed arm"])
def test_linucb_blocks_mixing_tied_and_untied_rows_equal_single_selects(
        backend: str, ties: str, variant: str) -> None:
    """LinUCB chooses the untied rows of a block in vector lanes and sends the tied ones
    (and any batch with masks, biases or a removed arm) down the row-by-row path: a batch
    still equals its rows one at a time, bit for bit, ties included."""
    xs = _mixed_rows()
    n = len(xs)
    masks = biases = None
    if variant == "mask":
        masks = np.random.default_rng(3).random((n, K)) < 0.7
        masks[:, 0] = True
    elif variant == "bias":
        biases = np.zeros((n, K))
        biases[1::3, 2] = 0.25
    p, q = _trained_linucb(backend, ties), _trained_linucb(backend, ties)
    if variant == "removed arm":
        p.remove_arm(3)
        q.remove_arm(3)
    arms, props = p.select_batch(xs, masks, biases=biases)
    one = [q.select(xs[i], None if masks is None else masks[i],
                    bias=None if biases is None else biases[i]) for i in range(n)]
    assert arms.tolist() == [a for a, _ in one]
    np.testing.assert_array_equal(props, [pr for _, pr in one])
    zero = np.arange(0, n, 3)
    if ties == "random" and variant == "all arms":
        assert len(set(arms[zero].tolist())) > 3  # the zero rows' ties were drawn
        np.testing.assert_array_equal(props[zero], np.full(len(zero), 1.0 / K))
    untied = np.setdiff1d(np.arange(n), zero)
    if variant == "all arms":
        assert (props[untied] == 1.0).all()
