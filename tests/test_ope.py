"""Off-policy evaluation: unbiasedness and coverage on logs with known truth, the bootstrap
kernel against its NumPy oracle, diagnostics, the decision-log contract and bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promobandit import EpsilonGreedy
from promobandit.evaluate import (
    DecisionLog,
    DiagnosticThresholds,
    FixedOffer,
    OPEWarning,
    RewardModel,
    StationaryPolicy,
    effective_sample_size,
    evaluate,
    evaluate_log_file,
    read_decision_log,
    uniform_policy,
)
from promobandit.evaluate._kernels import bootstrap_sums, poisson_counts_reference
from promobandit.evaluate.offer_problem import OfferProblem
from promobandit.evaluate.ope import evaluate_policies
from promobandit.evaluate.synthetic import SoftmaxOfferPolicy, simulate_log, true_value

PROBLEM = OfferProblem(seed=0)
K = PROBLEM.n_offers
# Logging: a soft policy with 10% uniform exploration (every offer has propensity
# >= 0.1 / 6). Target: a much greedier softmax, so weights are far from 1 (up to ~60).
LOGGING = SoftmaxOfferPolicy(PROBLEM, temperature=2.0, epsilon=0.1)
TARGET = SoftmaxOfferPolicy(PROBLEM, temperature=0.2)


@pytest.fixture(scope="module")
def truth() -> float:
    # 1M fresh shoppers: Monte Carlo error ~0.002, against estimator errors ~0.15.
    return true_value(PROBLEM, TARGET, 1_000_000)


@pytest.fixture(scope="module")
def seed_runs(truth: float) -> dict[str, np.ndarray]:
    """Estimates on 100 independent logs of 3,000 decisions (errors, coverage, stderr)."""
    out: dict[str, list[tuple[float, bool, float, bool]]] = {e: [] for e in
                                                             ("ips", "snips", "dm", "dr")}
    for seed in range(100):
        log = simulate_log(PROBLEM, LOGGING, 3000, seed=seed)
        rep = evaluate(log, TARGET, ("ips", "snips", "dm", "dr"), n_bootstrap=200,
                       n_bootstrap_dm=0, seed=seed, reward_model=RewardModel(seed=seed))
        for name, est in rep.estimates.items():
            out[name].append((est.value - truth, est.ci_low <= truth <= est.ci_high,
                              est.stderr, est.boot_low <= truth <= est.boot_high))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


@pytest.mark.parametrize("name", ["ips", "dr"])
def test_ips_and_dr_are_unbiased_and_their_intervals_cover(seed_runs: dict[str, np.ndarray],
                                                           name: str) -> None:
    err, covered, se, boot_covered = seed_runs[name].T
    # Unbiased: the mean error over 100 seeds is within 3 Monte Carlo standard errors of 0.
    assert abs(err.mean()) < 3 * err.std(ddof=1) / math.sqrt(err.size)
    # Nominal 95% intervals cover the truth in 90-99% of 100 seeds (binomial sd ~2.2 points).
    assert 0.90 <= covered.mean() <= 0.99
    assert 0.88 <= boot_covered.mean() <= 0.99
    # The analytic standard error matches the spread of the estimates across seeds.
    assert 0.8 < se.mean() / err.std(ddof=1) < 1.25


def test_snips_and_dm_are_sane(seed_runs: dict[str, np.ndarray], truth: float) -> None:
    err, covered, _, _ = seed_runs["snips"].T
    # SNIPS has an O(1/n) bias: allow it on top of 3 standard errors, then check coverage.
    assert abs(err.mean()) < 3 * err.std(ddof=1) / 10 + 0.01 * truth
    assert 0.88 <= covered.mean() <= 0.99
    dm_err = seed_runs["dm"][:, 0]
    # DM's linear model is misspecified (purchases are logistic): small bias, low variance.
    assert abs(dm_err.mean()) < 0.05 * truth
    assert dm_err.std() < seed_runs["ips"][:, 0].std()
    # DM has no analytic interval (its error is the model's).
    assert np.isnan(seed_runs["dm"][:, 2]).all()
    # DR does better than IPS here: the model removes most of the reward noise.
    assert seed_runs["dr"][:, 0].std() < seed_runs["ips"][:, 0].std()


def test_dm_bootstrap_refits_the_model_and_covers() -> None:
    truth = true_value(PROBLEM, TARGET, 400_000)
    hits = []
    for seed in range(10):
        log = simulate_log(PROBLEM, LOGGING, 2000, seed=1000 + seed)
        model = RewardModel(n_folds=2, seed=seed)
        rep = evaluate(log, TARGET, ["dm", "dr"], n_bootstrap=40, seed=seed, reward_model=model)
        dm = rep["dm"]
        assert dm.boot_low < dm.value < dm.boot_high
        assert rep.settings["n_bootstrap_dm"] == 40
        hits.append(dm.boot_low <= truth <= dm.boot_high)
        # Refitting shows the model's own error: several times the spread of DM's terms.
        terms_se = np.einsum("ij,ij->i", TARGET.action_probabilities(log.contexts, None),
                             model.cross_fit_predict(log.contexts, log.actions, log.rewards,
                                                     K)).std() / math.sqrt(len(log))
        assert dm.boot_stderr > 1.5 * terms_se
    assert np.mean(hits) >= 0.7  # 10 seeds only: a loose check that it is not degenerate


def test_unbiased_with_eligibility_masks_and_a_deterministic_target() -> None:
    """Random eligibility and a greedy (one-hot) target: weights up to K_eligible / epsilon.
    IPS is unbiased for the conditional truth sum_i sum_a pi(a|x_i, m_i) mu(x_i, a) / n."""
    greedy = SoftmaxOfferPolicy(PROBLEM, temperature=1e-3)
    errs = []
    for seed in range(60):
        log = simulate_log(PROBLEM, LOGGING, 2000, seed=500 + seed, eligible_rate=0.6)
        assert log.eligible is not None and not log.eligible.all()
        probs = greedy.action_probabilities(log.contexts, log.eligible)
        assert (probs[~log.eligible] == 0).all()
        cond_truth = float(np.einsum("ij,ij->i", probs, PROBLEM.expected_profit(log.contexts))
                           .mean())
        rep = evaluate(log, greedy, ["ips", "dr"], reward_model=RewardModel(seed=seed))
        errs.append([rep["ips"].value - cond_truth, rep["dr"].value - cond_truth])
    e = np.array(errs)
    assert (np.abs(e.mean(axis=0)) < 3 * e.std(axis=0, ddof=1) / math.sqrt(len(e))).all()


def test_textbook_formulas_and_special_cases() -> None:
    log = simulate_log(PROBLEM, LOGGING, 4000, seed=7)
    tp = TARGET.action_probabilities(log.contexts, None)
    rows = np.arange(len(log))
    w = tp[rows, log.actions] / log.propensities
    r = log.rewards
    q = RewardModel(seed=3).cross_fit_predict(log.contexts, log.actions, r, K)
    rep = evaluate(log, tp, "all", reward_predictions=q, clip_weight=1e12,
                   switch_threshold=1e12)
    assert rep["ips"].value == pytest.approx(np.mean(w * r), rel=1e-12)
    assert rep["snips"].value == pytest.approx(np.sum(w * r) / np.sum(w), rel=1e-12)
    dm = np.sum(tp * q, axis=1)
    assert rep["dm"].value == pytest.approx(dm.mean(), rel=1e-12)
    dr = dm + w * (r - q[rows, log.actions])
    assert rep["dr"].value == pytest.approx(dr.mean(), rel=1e-12)
    assert rep["dr"].stderr == pytest.approx(dr.std(ddof=1) / math.sqrt(len(r)), rel=1e-10)
    # Thresholds beyond every weight: clipped and switch estimators are IPS and DR.
    assert rep["clipped-ips"].value == pytest.approx(rep["ips"].value, rel=1e-12)
    assert rep["clipped-dr"].value == pytest.approx(rep["dr"].value, rel=1e-12)
    assert rep["switch-dr"].value == pytest.approx(rep["dr"].value, rel=1e-12)
    # A zero switch threshold leaves the model alone (DM); clipping at 1 bounds the weights.
    with pytest.warns(OPEWarning) as record:  # and says that switch-dr is all model now
        rep0 = evaluate(log, tp, ["dm", "switch-dr", "clipped-ips"], reward_predictions=q,
                        switch_threshold=0.0, clip_weight=1.0)
    assert any("switch_threshold=0 changes the weights of 100%" in str(w.message)
               for w in record)
    assert rep0["switch-dr"].value == pytest.approx(rep0["dm"].value, rel=1e-12)
    assert rep0["clipped-ips"].value == pytest.approx(np.mean(np.minimum(w, 1.0) * r))
    # ESS and the logged (on-policy) row.
    assert rep.diagnostics.ess == pytest.approx(w.sum() ** 2 / (w * w).sum())
    assert rep.logged.value == pytest.approx(r.mean())
    assert rep["ips"].vs_logged == pytest.approx(np.mean(w * r) - r.mean())
    d = w * r - r
    half = 1.959963984540054 * d.std(ddof=1) / math.sqrt(len(r))
    assert rep["ips"].vs_logged_high - rep["ips"].vs_logged == pytest.approx(half, rel=1e-9)
    frame = rep.to_frame()
    assert list(frame.index) == [*rep.estimates, "logged"]
    assert {"value", "ci_low", "ci_high", "boot_low", "ess", "vs_logged"} <= set(frame.columns)
    assert effective_sample_size(np.ones(10)) == pytest.approx(10.0)


def test_poisson_bootstrap_matches_numpy_oracle_and_thread_count() -> None:
    import numba

    rs = np.random.default_rng(0)
    values = rs.normal(size=(5000, 3))
    sums = bootstrap_sums(values, 20, seed=11, stream_offset=5)
    for b in (0, 7, 19):
        c = poisson_counts_reference(11, b, 5000, stream_offset=5)
        np.testing.assert_allclose(sums[b, :3], c @ values, rtol=1e-12, atol=1e-9)
        assert sums[b, 3] == c.sum()
    counts = poisson_counts_reference(11, 0, 200_000)
    freq = np.bincount(counts, minlength=4)[:4] / counts.size
    expect = np.exp(-1.0) / np.array([1, 1, 2, 6])
    np.testing.assert_allclose(freq, expect, atol=0.004)  # ~4 binomial sd at n = 200k
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = bootstrap_sums(values, 20, seed=11, stream_offset=5)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, sums)


def test_bootstrap_standard_error_agrees_with_the_analytic_one() -> None:
    log = simulate_log(PROBLEM, LOGGING, 20_000, seed=3)
    rep = evaluate(log, TARGET, ["ips", "snips"], n_bootstrap=1000, seed=1)
    for name in ("ips", "snips"):
        e = rep[name]
        # B = 1000: the bootstrap sd is itself uncertain by ~2.2%; 10% is a wide margin.
        assert e.boot_stderr == pytest.approx(e.stderr, rel=0.10)
        assert e.boot_low < e.value < e.boot_high
    again = evaluate(log, TARGET, ["ips", "snips"], n_bootstrap=1000, seed=1)
    assert again["ips"].boot_low == rep["ips"].boot_low  # seeded
    other = evaluate(log, TARGET, ["ips"], n_bootstrap=1000, seed=2)
    assert other["ips"].boot_low != rep["ips"].boot_low


def test_target_policy_forms_agree() -> None:
    log = simulate_log(PROBLEM, LOGGING, 1500, seed=2)
    tp = TARGET.action_probabilities(log.contexts, None)
    a = evaluate(log, TARGET, ["ips", "snips"])
    b = evaluate(log, lambda x, m: TARGET.action_probabilities(x, m), ["ips", "snips"])
    c = evaluate(log, tp, ["ips", "snips"], chunk_rows=100)
    for name in ("ips", "snips"):
        assert a[name].value == pytest.approx(b[name].value, rel=1e-12)
        assert a[name].value == pytest.approx(c[name].value, rel=1e-12)
    # A promobandit policy (non-contextual): epsilon-greedy's exact distribution.
    eg = EpsilonGreedy(K, seed=0, epsilon=0.3)
    eg.update_batch(np.array([2, 2, 3]), np.array([1.0, 1.0, 0.2]))
    rep = evaluate(log, eg, ["ips"])
    probs = np.full(K, 0.3 / K)
    probs[2] += 0.7
    w = probs[log.actions] / log.propensities
    assert rep["ips"].value == pytest.approx(np.mean(w * log.rewards), rel=1e-12)


def test_fixed_and_stationary_targets_respect_eligibility() -> None:
    masks = np.array([[True, True, True], [True, False, True], [False, False, True]])
    ctx = np.empty((3, 0))
    fo = FixedOffer(3, offer=1).action_probabilities(ctx, masks)
    np.testing.assert_array_equal(fo, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(FixedOffer(3, offer=1, fallback=None).action_probabilities(
        ctx, masks)[1], [0.5, 0, 0.5])
    sp = StationaryPolicy((0.5, 0.25, 0.25)).action_probabilities(ctx, masks)
    np.testing.assert_allclose(sp, [[0.5, 0.25, 0.25], [2 / 3, 0, 1 / 3], [0, 0, 1]])
    np.testing.assert_allclose(uniform_policy(4).action_probabilities(ctx, None), 0.25)
    with pytest.raises(ValueError, match="probabilities"):
        StationaryPolicy((0.5, 0.4))
    with pytest.raises(ValueError, match="offer"):
        FixedOffer(3, offer=3)


def test_evaluate_policies_shares_fits_and_ranks_fixed_promotions() -> None:
    log = simulate_log(PROBLEM, LOGGING, 6000, seed=4)
    targets = {f"fixed {j}": FixedOffer(K, offer=j) for j in range(K)}
    reports = evaluate_policies(log, targets, ["dr"], n_bootstrap=100, seed=3)
    truths = [true_value(PROBLEM, t, 100_000) for t in targets.values()]
    ests = [reports[n]["dr"].value for n in targets]
    # The estimated best fixed offer is truly among the two best (profits differ by 5-30%).
    assert int(np.argmax(ests)) in np.argsort(truths)[-2:]
    # The same resamples for every target: the logged row's bootstrap is identical.
    lows = {r.logged.boot_low for r in reports.values()}
    assert len(lows) == 1


def test_gradient_boosting_reward_model_with_the_concat_encoding(truth: float) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    log = simulate_log(PROBLEM, LOGGING, 4000, seed=21)
    model = RewardModel(HistGradientBoostingRegressor(max_iter=40, random_state=0),
                        n_folds=2, encoding="concat")
    # One OpenMP thread: on a loaded 2-core machine HGB's spinning threads run 20x slower.
    with threadpool_limits(limits=1):
        rep = evaluate(log, TARGET, ["dm", "dr"], reward_model=model, n_bootstrap=3, seed=1)
    assert abs(rep["dr"].value - truth) < 4 * rep["dr"].stderr
    assert abs(rep["dm"].value - truth) < 0.1 * truth
    assert rep["dm"].boot_low < rep["dm"].boot_high


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), k=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_estimator_invariants(n: int, k: int, seed: int) -> None:
    """On arbitrary small logs with non-negative rewards: SNIPS is a weighted mean of the
    rewards, clipping never raises IPS, huge thresholds reproduce IPS/DR, and the analytic
    interval contains its estimate."""
    rs = np.random.default_rng(seed)
    logging = rs.dirichlet(np.ones(k), n)
    logging = 0.5 * logging + 0.5 / k
    actions = np.array([rs.choice(k, p=p) for p in logging])
    rewards = rs.exponential(1.0, n) * (rs.random(n) < 0.5)
    log = DecisionLog.from_arrays(actions, logging[np.arange(n), actions], rewards,
                                  n_actions=k, action_probs=logging)
    target = rs.dirichlet(np.ones(k), n)
    q = rs.random((n, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OPEWarning)  # tiny logs trip every diagnostic
        rep = evaluate(log, target, "all", reward_predictions=q, clip_weight=1.5,
                       switch_threshold=1e9)
        big = evaluate(log, target, ["ips", "clipped-ips", "clipped-dr", "dr"],
                       reward_predictions=q, clip_weight=1e9)
    assert rewards.min() - 1e-12 <= rep["snips"].value <= rewards.max() + 1e-12
    assert rep["clipped-ips"].value <= rep["ips"].value + 1e-12
    assert big["clipped-ips"].value == pytest.approx(big["ips"].value, rel=1e-12, abs=1e-15)
    assert big["clipped-dr"].value == pytest.approx(big["dr"].value, rel=1e-12, abs=1e-15)
    assert rep["switch-dr"].value == pytest.approx(rep["dr"].value, rel=1e-12, abs=1e-15)
    for e in rep.estimates.values():
        if math.isfinite(e.stderr):
            assert e.ci_low <= e.value <= e.ci_high


# --------------------------------------------------------------------------- diagnostics
def _log(actions, props, rewards, k=3, **kw) -> DecisionLog:
    return DecisionLog.from_arrays(np.asarray(actions), np.asarray(props, dtype=float),
                                   np.asarray(rewards, dtype=float), n_actions=k, **kw)


def test_warns_on_tiny_propensities_and_huge_weights() -> None:
    n = 400
    rs = np.random.default_rng(0)
    actions = rs.integers(0, 2, n)
    props = np.full(n, 0.5)
    props[0] = 1e-4
    log = _log(actions, props, rs.random(n), k=2)
    with pytest.warns(OPEWarning) as record:
        evaluate(log, StationaryPolicy((0.5, 0.5)), ["ips"])
    text = " | ".join(str(w.message) for w in record)
    assert "propensity below" in text
    assert "importance weights reach" in text


def test_warns_when_the_target_uses_offers_never_logged() -> None:
    n = 500
    rs = np.random.default_rng(1)
    log = _log(rs.integers(0, 2, n), np.full(n, 0.5), rs.random(n), k=3)
    with pytest.warns(OPEWarning) as record:
        rep = evaluate(log, FixedOffer(3, offer=2), ["ips"])
    text = " | ".join(str(w.message) for w in record)
    assert "offers [2] that the log never shows" in text
    assert "mean importance weight" in text
    assert rep.diagnostics.unlogged_offers == (2,)
    assert rep.diagnostics.unlogged_mass == pytest.approx(1.0)


def test_warns_on_support_mismatch_with_known_logging_distribution() -> None:
    n = 600
    rs = np.random.default_rng(2)
    ap = np.tile([0.5, 0.5, 0.0], (n, 1))
    ap[::2] = [0.4, 0.3, 0.3]  # offer 2 is logged sometimes, but half the rows cannot show it
    actions = np.array([rs.choice(3, p=p) for p in ap])
    log = _log(actions, ap[np.arange(n), actions], rs.random(n), action_probs=ap)
    with pytest.warns(OPEWarning) as record:
        rep = evaluate(log, uniform_policy(3), ["ips"])
    assert any("support mismatch: 16.67%" in str(w.message) for w in record)
    assert rep.diagnostics.unsupported_mass == pytest.approx(0.5 / 3, rel=1e-9)
    assert rep.diagnostics.unlogged_offers == ()


def test_warns_on_small_effective_sample_size_and_wrong_propensities() -> None:
    log = simulate_log(PROBLEM, LOGGING, 3000, seed=9, with_action_probs=False)
    wrong = DecisionLog.from_arrays(log.actions, log.propensities * 0.5, log.rewards,
                                    n_actions=K, contexts=log.contexts)
    with pytest.warns(OPEWarning) as record:
        evaluate(wrong, LOGGING, ["ips"])
    assert [str(w.message)[:30] for w in record] == ["mean importance weight is 2 (s"]
    with pytest.warns(OPEWarning) as record:
        evaluate(log, TARGET, ["ips"], thresholds=DiagnosticThresholds(min_ess_fraction=0.9))
    assert any("effective sample size" in str(w.message) for w in record)
    # The logging policy itself: weights are exactly 1, no warning at all.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = evaluate(log, LOGGING, ["ips", "snips"])
    assert rep["ips"].value == pytest.approx(log.rewards.mean())
    assert rep.diagnostics.messages == ()


def test_warns_on_few_events_and_on_estimates_mostly_clipped_or_switched() -> None:
    rs = np.random.default_rng(3)
    n = 2000
    actions = rs.integers(0, 4, n)
    rewards = np.zeros(n)
    rewards[np.flatnonzero(actions == 1)[:5]] = 10.0  # five purchases of offer 1 only
    log = _log(actions, np.full(n, 0.25), rewards, k=4)
    with pytest.warns(OPEWarning) as record:
        rep = evaluate(log, FixedOffer(4, offer=2), ["ips"])
    assert rep["ips"].value == 0.0 and rep["ips"].ci_high == 0.0  # the degenerate interval
    assert rep.diagnostics.n_informative == 0
    assert any("only 0 rows have a positive weight" in str(w.message) for w in record)
    live = _log(actions, np.full(n, 0.25), rs.random(n), k=4)
    with pytest.warns(OPEWarning) as record:  # weights are 4: every one is clipped / switched
        rep = evaluate(live, FixedOffer(4, offer=2), ["clipped-ips", "switch-dr"],
                       reward_predictions=np.full((n, 4), 0.5), clip_weight=2.0,
                       switch_threshold=3.0)
    text = " | ".join(str(w.message) for w in record)
    assert "clip_weight=2 changes the weights of 100%" in text
    assert "switch_threshold=3 changes the weights of 100%" in text
    assert rep.diagnostics.clipped_share == 1.0 and rep.diagnostics.switched_share == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # IPS alone on the same log: nothing to report
        assert math.isnan(evaluate(live, FixedOffer(4, offer=2), ["ips"]).diagnostics.clipped_share)


def test_reward_model_convergence_trouble_is_an_ope_warning() -> None:
    from sklearn.linear_model import LogisticRegression

    log = simulate_log(PROBLEM, LOGGING, 800, seed=5)
    clicks = (log.rewards > 0).astype(float)
    click_log = DecisionLog.from_arrays(log.actions, log.propensities, clicks, n_actions=K,
                                        contexts=log.contexts)
    model = RewardModel(LogisticRegression(max_iter=1), n_folds=2)
    with pytest.warns(OPEWarning) as record:
        rep = evaluate(click_log, TARGET, ["dr"], reward_model=model)
    assert all("did not converge" in str(w.message) for w in record)
    assert 0.0 <= rep["dr"].value <= 1.5
    ok = evaluate(click_log, TARGET, ["dm"], reward_model=RewardModel(
        LogisticRegression(max_iter=1000), encoding="concat"))
    assert 0.0 < ok["dm"].value < 1.0
    with pytest.raises(ValueError, match="binary rewards"):
        evaluate(log, TARGET, ["dm"], reward_model=model)


# --------------------------------------------------------------------------- bad input
GOOD = {"actions": np.array([0, 1, 2, 1]), "propensities": np.array([0.5, 0.25, 0.25, 0.25]),
        "rewards": np.array([1.0, 0.0, 2.5, 0.0])}


@pytest.mark.parametrize(("change", "field"), [
    ({"propensities": np.array([0.5, 0.0, 0.25, 0.25])}, "propensities"),
    ({"propensities": np.array([0.5, 1.5, 0.25, 0.25])}, "propensities"),
    ({"propensities": np.array([0.5, np.nan, 0.25, 0.25])}, "propensities"),
    ({"rewards": np.array([1.0, np.nan, 2.5, 0.0])}, "rewards"),
    ({"rewards": np.array([1.0, 0.0, 2.5])}, "rewards"),
    ({"propensities": np.array([0.5, 0.25])}, "propensities"),
    ({"actions": np.array([0, 1, 5, 1])}, "actions"),
    ({"actions": np.array([0.0, 1.5, 2.0, 1.0])}, "actions"),
    ({"actions": np.array(["a", "b", "c", "d"])}, "actions"),
    ({"contexts": np.ones((3, 2))}, "contexts"),
    ({"contexts": np.array([[1.0], [np.inf], [0.0], [1.0]])}, "contexts"),
    ({"eligible": np.array([[True] * 3, [True, False, True], [True] * 3, [True] * 3])},
     "eligible"),
    ({"action_probs": np.tile([0.5, 0.25, 0.2], (4, 1))}, "action_probs"),
    ({"action_probs": np.tile([0.4, 0.3, 0.3], (4, 1))}, "propensities"),
    ({"n_actions": 0}, "n_actions"),
])
def test_bad_logs_name_the_field(change: dict, field: str) -> None:
    kw = {**GOOD, "n_actions": 3, **change}
    with pytest.raises(ValueError, match=rf"^{field}"):
        DecisionLog.from_arrays(kw.pop("actions"), kw.pop("propensities"), kw.pop("rewards"),
                                **kw)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"estimators": ["ips", "magic"]}, "estimators"),
    ({"estimators": []}, "estimators"),
    ({"level": 1.0}, "level"),
    ({"n_bootstrap": -1}, "n_bootstrap"),
    ({"clip_weight": 0.0}, "clip_weight"),
    ({"estimators": ["dr"], "reward_predictions": np.zeros((4, 2))}, "reward_predictions"),
    ({"estimators": ["dr"], "reward_predictions": np.full((4, 3), np.nan)},
     "reward_predictions"),
])
def test_bad_evaluate_arguments_name_the_field(kwargs: dict, field: str) -> None:
    log = DecisionLog.from_arrays(**{**GOOD, "n_actions": 3})
    with pytest.raises(ValueError, match=rf"^{field}"):
        evaluate(log, uniform_policy(3), **kwargs)


@pytest.mark.parametrize("bad", [
    np.full((4, 3), 0.5),  # rows sum to 1.5
    np.zeros((4, 2)),  # wrong shape
    np.array([[1.0, 0, 0]] * 3 + [[np.nan, 0, 0]]),
    "not a policy",
    lambda x, m: np.ones((len(x), 3)) / 3 + np.array([0.5, -0.5, 0.0]),  # a negative one
])
def test_bad_targets_name_the_policy(bad: object) -> None:
    log = DecisionLog.from_arrays(**{**GOOD, "n_actions": 3})
    with pytest.raises(ValueError, match=r"^policy"):
        evaluate(log, bad, ["ips"])


def test_target_mass_on_an_ineligible_offer_is_rejected() -> None:
    el = np.ones((4, 3), dtype=bool)
    el[0, 2] = False
    log = DecisionLog.from_arrays(**{**GOOD, "n_actions": 3, "eligible": el})
    with pytest.raises(ValueError, match=r"^policy: puts probability on an ineligible offer"):
        evaluate(log, np.full((4, 3), 1 / 3), ["ips"])
    with pytest.warns(OPEWarning, match="only 2 rows have a positive weight"):
        rep = evaluate(log, uniform_policy(3), ["ips"])  # renormalised over eligible offers
    assert math.isfinite(rep["ips"].value)


# --------------------------------------------------------------------------- the Parquet contract
def _contract_table(log: DecisionLog, null_probs_every: int = 0, null_rewards: int = 0
                    ) -> pa.Table:
    n = len(log)
    ap = [list(row) for row in log.action_probs]
    if null_probs_every:
        for i in range(0, n, null_probs_every):
            ap[i] = None
    rewards = [float(r) for r in log.rewards]
    for i in range(null_rewards):
        rewards[i] = None
    return pa.table({
        "decision_id": [f"d{i}" for i in range(n)],
        "ts": np.arange(n, dtype=np.float64) + 1.7e9,
        "user": [f"u{i % 97}" for i in range(n)],
        "group": ["g"] * n,
        "offer": pa.array(log.actions, pa.int64()),
        "offer_id": [f"o{a}" for a in log.actions],
        "propensity": log.propensities,
        "action_probs": pa.array(ap, pa.list_(pa.float64())),
        "policy": ["softmax"] * n,
        "policy_version": pa.array(np.zeros(n, dtype=np.int64)),
        "context": pa.array([list(x) for x in log.contexts], pa.list_(pa.float64())),
        "eligible": pa.array([[True] * K] * n, pa.list_(pa.bool_())),
        "reward": pa.array(rewards, pa.float64()),
        "clicked": [False] * n,
    })


def test_parquet_round_trip_and_missing_rewards(tmp_path) -> None:
    log = simulate_log(PROBLEM, LOGGING, 300, seed=6)
    path = tmp_path / "log.parquet"
    pq.write_table(_contract_table(log, null_probs_every=3), path)
    back = read_decision_log(path)
    np.testing.assert_array_equal(back.actions, log.actions)
    np.testing.assert_array_equal(back.propensities, log.propensities)
    np.testing.assert_array_equal(back.rewards, log.rewards)
    np.testing.assert_array_equal(back.contexts, log.contexts)
    assert back.eligible is not None and back.eligible.all()
    assert back.action_probs is not None
    assert np.isnan(back.action_probs[::3]).all()
    np.testing.assert_array_equal(back.action_probs[1::3], log.action_probs[1::3])
    assert back.extra["decision_id"][5] == "d5"
    from_frame = read_decision_log(log.to_frame())  # DataFrames with list columns work too
    np.testing.assert_array_equal(from_frame.contexts, log.contexts)
    np.testing.assert_array_equal(from_frame.action_probs, log.action_probs)
    rep_file = evaluate(path, TARGET, ["ips", "snips"])
    rep_mem = evaluate(log, TARGET, ["ips", "snips"])
    assert rep_file["ips"].value == rep_mem["ips"].value

    pq.write_table(_contract_table(log, null_rewards=10), path)
    with pytest.raises(ValueError, match=r"^reward: 10 of 300 rows have no reward"):
        read_decision_log(path)
    assert len(read_decision_log(path, missing_reward="drop")) == 290
    filled = read_decision_log(path, missing_reward=0.0)
    assert len(filled) == 300 and (filled.rewards[:10] == 0).all()
    with pytest.raises(ValueError, match=r"^missing_reward"):
        read_decision_log(path, missing_reward="zero")


def test_parquet_contract_errors_name_the_column(tmp_path) -> None:
    log = simulate_log(PROBLEM, LOGGING, 50, seed=6)
    table = _contract_table(log)
    with pytest.raises(ValueError, match=r"^propensity: missing column"):
        read_decision_log(table.drop(["propensity"]))
    ragged = table.set_column(table.schema.get_field_index("context"), "context",
                              pa.array([[1.0]] + [[1.0, 2.0]] * 49, pa.list_(pa.float64())))
    with pytest.raises(ValueError, match=r"^context: expected lists of one length"):
        read_decision_log(ragged)
    bad_p = table.set_column(table.schema.get_field_index("propensity"), "propensity",
                             pa.array(np.full(50, 2.0)))
    with pytest.raises(ValueError, match=r"^propensities"):
        read_decision_log(bad_p)
    with pytest.raises(ValueError, match=r"^log_path: no such file"):
        read_decision_log(tmp_path / "nope.parquet")


def test_reads_the_engine_log_folder(tmp_path) -> None:
    """The engine writes a folder of part-NNNNN.parquet files in promobandit.engine.decision_log's
    schema (with extra columns); the reader takes the folder."""
    from promobandit.engine.decision_log import DecisionLogWriter as EngineLogWriter

    log = simulate_log(PROBLEM, LOGGING, 250, seed=8)
    writer = EngineLogWriter(tmp_path / "log", flush_rows=100)
    for i in range(len(log)):
        writer.append({"decision_id": f"d{i}", "ts": 1.7e9 + i, "user": f"u{i}", "group": "",
                       "offer": int(log.actions[i]), "offer_id": f"o{log.actions[i]}",
                       "propensity": float(log.propensities[i]),
                       "action_probs": log.action_probs[i].tolist(), "policy": "Softmax",
                       "policy_version": 1, "context": log.contexts[i].tolist(),
                       "eligible": [True] * K, "items": None, "item_probs": None,
                       "reward": float(log.rewards[i]), "clicked": False, "purchased": False,
                       "revenue": 0.0, "discount_cost": 0.0, "defaulted": False,
                       "feedback_at": 1.7e9 + i, "shadow_price": 0.0})
    writer.close()
    (tmp_path / "log" / "part-99999.parquet.tmp").write_bytes(b"unfinished")
    back = read_decision_log(tmp_path / "log")
    assert len(back) == 250 and sorted(back.extra["decision_id"])[0] == "d0"
    np.testing.assert_array_equal(np.sort(back.rewards), np.sort(log.rewards))


def test_evaluate_log_file_with_policy_configs(tmp_path) -> None:
    log = simulate_log(PROBLEM, LOGGING, 400, seed=10)
    path = tmp_path / "log.parquet"
    pq.write_table(_contract_table(log), path)
    (tmp_path / "fixed.json").write_text(json.dumps({"policy": "fixed", "offer": 2}))
    rep = evaluate_log_file(path, tmp_path / "fixed.json", estimators=["ips"])
    hit = log.actions == 2
    assert rep["ips"].value == pytest.approx(np.mean(hit * log.rewards / log.propensities))

    eg = EpsilonGreedy(K, seed=0, epsilon=0.2)
    eg.update_batch(np.array([3, 3, 1]), np.array([1.0, 0.8, 0.1]))
    np.savez(tmp_path / "eg.npz", **eg.state_dict()["arrays"])
    spec = {"policy": "EpsilonGreedy", "config": {"epsilon": 0.2}, "state": "eg.npz"}
    (tmp_path / "eg.json").write_text(json.dumps(spec))
    rep = evaluate_log_file(path, tmp_path / "eg.json", estimators=["ips"])
    probs = np.full(K, 0.2 / K)
    probs[3] += 0.8
    w = probs[log.actions] / log.propensities
    assert rep["ips"].value == pytest.approx(np.mean(w * log.rewards), rel=1e-12)
    for spec, field in [({"policy": "nope"}, "policy"), ({"policy": "fixed"}, "offer"),
                        ({"policy": "EpsilonGreedy", "config": {"bogus": 1}}, "config"),
                        ({"policy": "LinUCB"}, "n_features")]:
        (tmp_path / "bad.json").write_text(json.dumps(spec))
        with pytest.raises(ValueError, match=rf"^{field}"):
            evaluate_log_file(path, tmp_path / "bad.json")
