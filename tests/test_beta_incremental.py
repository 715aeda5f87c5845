"""Beta TS win probabilities on a node grid kept between updates
(cpp/include/promobandit/beta_grid.hpp): the grid is cut for a snapshot saved in the
state (quad_grid) and kept while it resolves every live arm; the C++ kernel recomputes
only the changed arm's column, the Numba kernel everything, with the same bits; a
restored policy decides exactly as the original; the probabilities stay within 0.01 of a
10^6-draw Monte Carlo estimate along long learning runs; the cut follows its stated rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit._numba.beta_grid import (
    beta_range,
    build,
    grid_propensities,
    resolves,
)
from promobandit._numba.quadrature import FAMILY_BETA, max_propensities
from promobandit.policies import BetaTS
from tests.test_propensity_quadrature import mc_beta

K = 10
P_TRUE = 0.05 + 0.03 * np.arange(K)  # arms 8 and 9 contend (0.29, 0.32)

both = pytest.mark.skipif(len({"cpp", "numba"} & set(_backends.available())) < 2,
                          reason="needs both CPU backends")


def run(policy: BetaTS, n: int, seed: int, masks: bool = False) -> list[tuple[int, float]]:
    """n select + update steps on the Bernoulli problem P_TRUE (every 7th row masked)."""
    rs = np.random.default_rng(seed)
    table = rs.random((n, K)) < P_TRUE
    mask = np.ones(K, dtype=bool)
    mask[[0, 9]] = False
    got = []
    for i in range(n):
        a, q = policy.select(mask=mask if masks and i % 7 == 3 else None)
        got.append((a, q))
        policy.update(a, float(table[i, a]))
    return got


def same_state(p: BetaTS, q: BetaTS) -> None:
    s1, s2 = p.state_dict()["arrays"], q.state_dict()["arrays"]
    assert s1.keys() == s2.keys()
    for key in s1:
        assert s1[key].tobytes() == s2[key].tobytes(), key


@both
@pytest.mark.parametrize("sampler", ["posterior", "matching"])
def test_backends_agree_bit_for_bit_on_a_long_run(sampler: str) -> None:
    out = {}
    for backend in ("cpp", "numba"):
        p = BetaTS(K, seed=17, backend=backend, sampler=sampler)
        got = run(p, 6000, seed=2, masks=True)
        arms, props = p.select_batch(n=300)
        out[backend] = (np.array(got), arms, props, p)
    c, n = out["cpp"], out["numba"]
    assert c[0].tobytes() == n[0].tobytes()
    np.testing.assert_array_equal(c[1], n[1])
    assert c[2].tobytes() == n[2].tobytes()
    same_state(c[3], n[3])
    assert c[3].state_dict()["arrays"]["quad_grid"].any()  # the grid path was taken


@pytest.mark.parametrize("sampler", ["posterior", "matching"])
def test_restored_policy_decides_exactly_as_the_original(backend: str, sampler: str) -> None:
    """The grid is rebuilt from the saved snapshot: same decisions, propensities and state
    (on the same backend, and across backends when both are built)."""
    p = BetaTS(K, seed=5, backend=backend, sampler=sampler)
    run(p, 3000, seed=4)
    saved = p.state_dict()
    assert saved["arrays"]["quad_grid"].any()
    others = [b for b in ("cpp", "numba") if b in _backends.available()]
    restored = [BetaTS.from_state_dict(saved, backend=b) for b in others]
    want = run(p, 2000, seed=6, masks=True)
    for q in restored:
        assert run(q, 2000, seed=6, masks=True) == want
        same_state(p, q)


def test_batch_is_single_selects_on_the_grid(backend: str) -> None:
    base = BetaTS(K, seed=8, backend=backend, sampler="matching")
    run(base, 2000, seed=3)
    state = base.state_dict()
    one = BetaTS.from_state_dict(state, backend=backend)
    singles = [one.select() for _ in range(500)]
    for threads in ([1, 2] if backend == "cpp" else [1]):
        other = BetaTS.from_state_dict(state, backend=backend)
        arms, props = other.select_batch(n=500, n_threads=threads)
        assert arms.tolist() == [a for a, _ in singles]
        assert props.tobytes() == np.array([q for _, q in singles]).tobytes()
        same_state(one, other)


@pytest.mark.parametrize("tolerance", [0.0, 0.005])
def test_within_001_of_monte_carlo_on_a_long_learning_run(backend: str, tolerance: float) -> None:
    """The logged probabilities (grid kept across updates, reused under the tolerance)
    against 10^6 draws on the current posterior, along 40,000 decisions."""
    p = BetaTS(K, seed=1, backend=backend, propensity_tolerance=tolerance)
    rs = np.random.default_rng(0)
    n = 40_000
    table = rs.random((n, K)) < P_TRUE
    checks = {30, 400, 3000, 15_000, n - 1}
    snaps = set()
    worst = 0.0
    for i in range(n):
        a, q = p.select()
        if i % 100 == 0 or i in checks:
            snaps.add(p._arrays["quad_grid"].tobytes())
        if i in checks:
            st = p.state_dict()["arrays"]
            stats = st["stats"]
            want = mc_beta(1 + stats[:, 1], 1 + stats[:, 0] - stats[:, 1], np.zeros(K), seed=i)
            err = float(np.abs(st["prop_cache"] - want).max())
            worst = max(worst, err)
            assert err <= 0.01, (i, err)
            assert q == st["prop_cache"][a]
        p.update(a, float(table[i, a]))
    assert len(snaps) < 60  # the grid was kept across most of the 400 sampled points
    assert worst > 0.0


def test_logged_probabilities_match_action_probabilities(backend: str) -> None:
    """With tolerance 0 the logged propensity is the grid's win probability of the current
    posterior, which action_probabilities reads on the same grid (without changing it)."""
    p = BetaTS(K, seed=2, backend=backend, propensity_tolerance=0.0)
    run(p, 1500, seed=9)
    for _ in range(30):
        before = p.state_dict()["arrays"]["quad_grid"].copy()
        want = p.action_probabilities(n=1)[0]
        assert p.state_dict()["arrays"]["quad_grid"].tobytes() == before.tobytes()
        a, q = p.select()
        assert q == want[a]
        p.update(a, 1.0)


def test_grid_probabilities_close_to_the_full_quadrature() -> None:
    """A grid cut for the current state, and one kept from a state with up to 2.5x fewer
    counts, against quad_max_propensities (its own panels): within 1e-3."""
    rs = np.random.default_rng(0)
    for _ in range(200):
        k = int(rs.integers(2, 12))
        n = rs.integers(1, 5000, k) * rs.random(k) ** 2 * 3
        p = rs.uniform(0.05, 0.6, k)
        s = np.round(n * p)
        ab = np.stack([1 + s, 1 + n - s], 1)
        snap = np.zeros((k, 2))
        out, ref = np.zeros(k), np.zeros(k)
        grid_propensities(ab, np.ones(k, dtype=bool), snap, out)
        max_propensities(FAMILY_BETA, ab[:, 0].copy(), ab[:, 1].copy(), np.zeros(k), np.arange(k), k, ref)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)
        n2 = n * rs.uniform(1.0, 2.5, k)
        s2 = np.round(n2 * np.clip(p + rs.normal(0, 0.02, k), 0.01, 0.99))
        ab2 = np.stack([1 + s2, 1 + n2 - s2], 1)
        grid_propensities(ab2, np.ones(k, dtype=bool), snap, out)
        max_propensities(FAMILY_BETA, ab2[:, 0].copy(), ab2[:, 1].copy(), np.zeros(k), np.arange(k), k,
                         ref)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)


def test_the_rebuild_rule() -> None:
    """A grid cut for Beta(a, b) resolves it, and that arm once its sd shrank to 0.75 of
    the sd the panels were cut for, but not below kGridPanelSd / kGridMaxPanelSd (2/3)
    of it, nor once its range left the grid; the snapshot is replaced exactly then."""
    snap = np.array([[301.0, 701.0], [30.0, 70.0]])
    ends, seg_h, seg_np, *_ = build(snap)
    m, sd, lo, hi, _ = beta_range(301.0, 701.0)
    assert resolves(ends, seg_h, seg_np, m, sd, lo, hi)
    # the same mean, counts grown so that the sd falls to 0.75 and to 0.5 of sd0
    for factor, ok in ((0.75, True), (0.5, False)):
        c = 1002.0 / factor**2
        m2, sd2, lo2, hi2, _ = beta_range(m * c, (1 - m) * c)
        assert resolves(ends, seg_h, seg_np, m2, sd2, lo2, hi2) is ok
    # the range moved out of the grid
    m3, sd3, lo3, hi3, _ = beta_range(900.0, 100.0)
    assert not resolves(ends, seg_h, seg_np, m3, sd3, lo3, hi3)
    # grid_propensities keeps a resolving snapshot and replaces one that is not
    out = np.zeros(2)
    kept = snap.copy()
    grid_propensities(np.array([[320.0, 720.0], [30.0, 70.0]]), np.ones(2, dtype=bool), kept, out)
    assert kept.tobytes() == snap.tobytes()
    grown = np.array([[301.0 * 4, 701.0 * 4], [30.0, 70.0]])
    replaced = snap.copy()
    grid_propensities(grown, np.ones(2, dtype=bool), replaced, out)
    np.testing.assert_array_equal(replaced, grown)


def test_state_saved_without_quad_grid_loads(backend: str) -> None:
    p = BetaTS(K, seed=3, backend=backend)
    run(p, 500, seed=1)
    state = p.state_dict()
    old = {**state, "arrays": {k: v for k, v in state["arrays"].items() if k != "quad_grid"}}
    q = BetaTS.from_state_dict(old, backend=backend)
    assert not q.state_dict()["arrays"]["quad_grid"].any()
    q.update(0, 1.0)
    q.select()  # the first refill cuts a grid
    assert q.state_dict()["arrays"]["quad_grid"].any()


def test_bad_quad_grid_is_rejected_and_changes_nothing(backend: str) -> None:
    p = BetaTS(K, seed=3, backend=backend)
    run(p, 300, seed=1)
    before = p.state_dict()
    bad = {**before, "arrays": {**before["arrays"], "quad_grid": np.zeros((K, 3))}}
    with pytest.raises(ValueError, match="quad_grid"):
        p.load_state_dict(bad)
    same_state(p, BetaTS.from_state_dict(before, backend=backend))
