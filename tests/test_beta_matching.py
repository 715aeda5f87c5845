"""Beta Thompson sampling by probability matching (sampler="matching") and win
probabilities reused under propensity_tolerance (cpp/include/promobandit/beta_matching.hpp):
a batch is n single selects bit for bit on every thread count and both backends; the
logged propensity is the probability the arm was drawn with; the choices follow
Thompson sampling's distribution; reused probabilities stay within 0.01 of a 10^6-draw
Monte Carlo estimate on the current posterior along a learning run."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit.policies import BetaTS
from tests.test_propensity_quadrature import mc_beta

K = 6


def learnt(backend: str, seed: int = 3, n: int = 400, **kw: object) -> BetaTS:
    p = BetaTS(K, seed=seed, backend=backend, sampler="matching", **kw)
    rs = np.random.default_rng(seed)
    arms = rs.integers(0, K, n)
    p.update_batch(arms, (rs.random(n) < 0.1 + 0.1 * arms).astype(float))
    return p


def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    rs = np.random.default_rng(11)
    masks = rs.random((n, K)) < 0.7
    masks[np.arange(n) // 4 % 2 == 0] = masks[0]  # runs of one mask: the cache hits and misses
    masks[:, 1] = True
    return masks, rs.uniform(-0.05, 0.05, (n, K))


@pytest.mark.parametrize("variant", ["plain", "masks", "biases"])
def test_batch_is_single_selects_bit_for_bit(backend: str, variant: str) -> None:
    n = 300
    masks, biases = rows(n)
    m = masks if variant != "plain" else None
    b = biases if variant == "biases" else None
    one = learnt(backend)
    singles = [one.select(mask=None if m is None else m[i], bias=None if b is None else b[i])
               for i in range(n)]
    arms1 = np.array([a for a, _ in singles])
    props1 = np.array([q for _, q in singles])
    for threads in ([1, 2, 3] if backend == "cpp" else [1]):
        other = learnt(backend)
        arms, props = other.select_batch(masks=m, n=n, biases=b, n_threads=threads)
        np.testing.assert_array_equal(arms, arms1)
        assert props.tobytes() == props1.tobytes()
        state1, state2 = one.state_dict()["arrays"], other.state_dict()["arrays"]
        for key in state1:
            assert state1[key].tobytes() == state2[key].tobytes(), key
    assert len(set(arms1.tolist())) > 1


@pytest.mark.skipif(len({"cpp", "numba"} & set(_backends.available())) < 2,
                    reason="needs both CPU backends")
def test_backends_agree_bit_for_bit_while_learning() -> None:
    rs = np.random.default_rng(5)
    table = rs.random((3000, K)) < 0.1 + 0.1 * np.arange(K)
    out = {}
    for backend in ("cpp", "numba"):
        p = BetaTS(K, seed=9, backend=backend, sampler="matching")
        got = []
        for i in range(3000):
            a, q = p.select()
            got.append((a, q))
            p.update(a, float(table[i, a]))
        arms, props = p.select_batch(n=500)
        out[backend] = (np.array(got), arms, props, p.state_dict()["arrays"])
    c, n = out["cpp"], out["numba"]
    assert c[0].tobytes() == n[0].tobytes()
    np.testing.assert_array_equal(c[1], n[1])
    assert c[2].tobytes() == n[2].tobytes()
    for key in c[3]:
        assert c[3][key].tobytes() == n[3][key].tobytes(), key


def test_propensity_is_the_drawing_probability(backend: str) -> None:
    p = learnt(backend, propensity_tolerance=0.0)
    want = p.action_probabilities(n=1)[0]  # exact win probabilities of this state
    arms, props = p.select_batch(n=4000)
    np.testing.assert_allclose(props, want[arms] / want.sum(), rtol=1e-12, atol=0)
    # The choices follow those probabilities: chi-square at the 0.001 level (fixed seed).
    counts = np.bincount(arms, minlength=K)
    expected = want * len(arms)
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
    assert chi2 < 20.5  # chi-square 0.999 quantile with 5 degrees of freedom


def test_matching_follows_posterior_sampling(backend: str) -> None:
    """Matching and the K-draw sampler choose with the same distribution (within
    sampling error of 20,000 decisions each)."""
    freq = {}
    for sampler in ("matching", "posterior"):
        p = BetaTS(K, seed=4, backend=backend, sampler=sampler)
        p.update_batch(np.arange(K).repeat(20), (np.arange(120) % 20 < 3 + np.arange(120) // 20)
                       .astype(float))
        arms, _ = p.select_batch(n=20_000)
        freq[sampler] = np.bincount(arms, minlength=K) / 20_000
    np.testing.assert_allclose(freq["matching"], freq["posterior"], atol=0.02)


@pytest.mark.parametrize("sampler", ["matching", "posterior"])
def test_reused_probabilities_within_001_of_monte_carlo(backend: str, sampler: str) -> None:
    """At the default tolerance, the probabilities logged while learning (the cache,
    possibly computed some updates earlier) against 10^6 draws on the current posterior."""
    p = BetaTS(10, seed=1, backend=backend, sampler=sampler)
    assert p.config.propensity_tolerance > 0
    rs = np.random.default_rng(0)
    n = 30_000
    table = rs.random((n, 10)) < 0.05 + 0.03 * np.arange(10)
    checks = {150, 1500, 8000, n - 1}
    stale = 0  # checks of probabilities computed at least 5 updates earlier
    for i in range(n):
        a, q = p.select()
        counters = p._arrays["counters"]
        old = int(counters[1]) - int(counters[2]) >= 5
        if i in checks or (old and stale < 4 and i % 500 == 0):
            st = p.state_dict()["arrays"]
            stale += old
            stats = st["stats"]
            want = mc_beta(1 + stats[:, 1], 1 + stats[:, 0] - stats[:, 1], np.zeros(10), seed=i)
            np.testing.assert_allclose(st["prop_cache"], want, rtol=0, atol=0.01)
            assert q == pytest.approx(st["prop_cache"][a] / st["prop_cache"].sum()
                                      if sampler == "matching" else st["prop_cache"][a], rel=1e-12)
        p.update(a, float(table[i, a]))
    assert stale >= 2


def test_tolerance_zero_recomputes_after_every_update(backend: str) -> None:
    p = learnt(backend, propensity_tolerance=0.0)
    for i in range(20):
        a, _ = p.select()
        counters = p.state_dict()["arrays"]["counters"]
        assert counters[2] == counters[1]
        p.update(a, float(i % 2))


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="sampler"):
        BetaTS(3, sampler="argmax")
    with pytest.raises(ValueError, match=r"sampler.*propensity_method"):
        BetaTS(3, sampler="matching", propensity_method="draws")
    with pytest.raises(ValueError, match="propensity_tolerance"):
        BetaTS(3, propensity_tolerance=-0.1)
    with pytest.raises(ValueError, match="propensity_tolerance"):
        BetaTS(3, propensity_tolerance=float("nan"))


def test_state_saved_without_prop_post_loads(backend: str) -> None:
    p = learnt(backend)
    p.select_batch(n=10)
    state = p.state_dict()
    old = {**state, "arrays": {k: v for k, v in state["arrays"].items() if k != "prop_post"}}
    q = BetaTS.from_state_dict(old, backend=backend)
    np.testing.assert_array_equal(q.state_dict()["arrays"]["stats"], state["arrays"]["stats"])
    assert not q.state_dict()["arrays"]["prop_post"].any()
    assert q.select() == p.select()  # no update since: the saved cache is still exact
    q.update(0, 1.0)
    q.select()  # an empty snapshot refills the cache after an update
    assert q.state_dict()["arrays"]["prop_post"][:, 1].all()


def test_round_trip_continues_identically(backend: str) -> None:
    p = learnt(backend)
    p.select_batch(n=50)
    q = BetaTS.from_state_dict(p.state_dict(), backend=backend)
    for i in range(50):
        assert p.select() == q.select()
        p.update(i % K, 1.0)
        q.update(i % K, 1.0)


def test_explanations_reproduce_matching_decisions(backend: str) -> None:
    """Engine decisions of a matching Beta TS, with budget and fairness levers (fresh
    probabilities per decision) and without (the cache): each is recomputed from its
    explanation's uniform and probabilities, and its propensity is the chosen offer's
    probability over their total."""
    from promobandit import Engine, EngineConfig
    from tests import test_explain as tx

    for config in ({}, {"budget": None, "fairness": None, "caps": None}):
        pol = BetaTS(5, seed=5, backend=backend, sampler="matching")
        eng = Engine(tx.catalogue(), pol, EngineConfig(**{**{
            "budget": tx.BudgetConfig(amount=150.0, update_every=5, step_size=2.0),
            "fairness": tx.FairnessConfig(max_gap=0.02, step_size=0.5)}, **config}),
            privacy_key=tx.KEY)
        decisions = tx.run(eng, 120, explain=True)
        for d in decisions:
            e = d.explain()
            assert e.rule == "matching" and e.recompute() == d.offer
            probs = [o.probability for o in e.offers if o.eligible and o.probability > 0]
            assert e.propensity == pytest.approx(e.offers[d.offer].probability / sum(probs),
                                                 rel=1e-12)
            # the rule written out here: the first offer whose cumulative probability
            # exceeds u times the total
            cum = np.cumsum(probs)
            ids = [o.offer for o in e.offers if o.eligible and o.probability > 0]
            j = int(np.searchsorted(cum, e.draws["u"] * cum[-1], side="right"))
            assert ids[min(j, len(ids) - 1)] == d.offer
        assert len({d.offer for d in decisions}) > 1


POOL_SCRIPT = """
import os, sys
import numpy as np
from promobandit.policies import BetaTS
p = BetaTS(6, seed=1, backend="cpp", sampler="matching")
a1, _ = p.select_batch(n=2000, n_threads=2)  # starts the pool's worker
q = BetaTS(6, seed=1, backend="cpp", sampler="matching")
pid = os.fork()
if pid == 0:  # the child has no worker threads: a fresh pool, the same answer
    a2, _ = q.select_batch(n=2000, n_threads=2)
    os._exit(0 if (a2 == a1).all() else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif("cpp" not in _backends.available(), reason="the C++ backend's pool")
def test_pool_survives_fork_and_interpreter_exit() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", POOL_SCRIPT], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
