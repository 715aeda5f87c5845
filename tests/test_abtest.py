"""A/B testing: false-positive rates, sequential validity, CUPED, SRM, assignment, power."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from promobandit.evaluate import abtest as ab

SIMS = 2000  # simulated experiments per rate check: binomial sd of a 5% rate is 0.49 points


def _cum_summaries(y: np.ndarray, looks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and sample variances of the first n users (last axis) at each look."""
    s1 = np.cumsum(y, axis=-1)[..., looks - 1]
    s2 = np.cumsum(y * y, axis=-1)[..., looks - 1]
    mean = s1 / looks
    return mean, (s2 - s1 * mean) / (looks - 1)


def test_fixed_horizon_false_positive_rates_are_nominal() -> None:
    rs = np.random.default_rng(0)
    n = 5000
    x_t = rs.binomial(n, 0.05, SIMS)
    x_c = rs.binomial(n, 0.05, SIMS)
    _, p = ab.two_proportion_ztest(x_t, n, x_c, n)
    assert 0.03 <= np.mean(p < 0.05) <= 0.07
    # Skewed per-user revenue (lognormal, most users near zero): Welch at n = 1500 per arm.
    y = rs.lognormal(0.0, 1.0, size=(SIMS, 2, 1500))
    m, v = y.mean(axis=2), y.var(axis=2, ddof=1)
    _, _, p = ab.welch_ttest(m[:, 0], v[:, 0], 1500, m[:, 1], v[:, 1], 1500)
    assert 0.03 <= np.mean(p < 0.05) <= 0.07
    # The single-experiment path gives the same p-value as the vectorised one.
    r = ab.compare(y[0, 0], y[0, 1])
    assert r.p_value == pytest.approx(float(p[0]), rel=1e-12)


def test_sequential_pvalues_stay_valid_under_continuous_monitoring() -> None:
    """Under H0, looking after every 20 users per arm (96 looks up to 2,000): the mSPRT
    rejects at most alpha (+ Monte Carlo slack) while the naive repeated t-test does not."""
    rs = np.random.default_rng(1)
    y = rs.normal(size=(SIMS, 2, 2000))
    looks = np.arange(100, 2001, 20)
    m, v = _cum_summaries(y, looks)
    diff = m[:, 0] - m[:, 1]
    var_diff = v[:, 0] / looks + v[:, 1] / looks
    slack = 3 * math.sqrt(0.05 * 0.95 / SIMS)
    for tau in (0.05, 0.2, 1.0):
        p = ab.always_valid_pvalues(diff, var_diff, tau)
        assert (np.diff(p, axis=1) <= 0).all()  # always-valid p-values never increase
        assert np.mean(p.min(axis=1) < 0.05) <= 0.05 + slack
    _, _, p_naive = ab.welch_ttest(m[:, 0], v[:, 0], looks, m[:, 1], v[:, 1], looks)
    assert np.mean(p_naive.min(axis=1) < 0.05) > 0.15  # peeking inflates the fixed test


def test_sequential_test_detects_a_real_effect_and_its_confidence_sequence_covers() -> None:
    rs = np.random.default_rng(2)
    res = ab.sequential_test(rs.normal(0.15, 1.0, 4000), rs.normal(0.0, 1.0, 4000), tau=0.15)
    assert res.stopped_at is not None and res.p_value < 0.05
    assert res.ci_low[-1] <= res.diff[-1] <= res.ci_high[-1] and res.ci_low[-1] > 0
    assert (np.diff(res.ci_high - res.ci_low) <= 1e-12).all()  # intersected: never widens
    assert len(res.to_frame()) == len(res.p_values)
    covered = 0
    for s in range(200):
        r = np.random.default_rng([3, s])
        seq = ab.sequential_test(r.normal(0.1, 1.0, 800), r.normal(0.0, 1.0, 800), tau=0.1)
        covered += bool((seq.ci_low <= 0.1).all() and (seq.ci_high >= 0.1).all())
    assert covered / 200 >= 0.93  # uniformly over looks, at least 95% less slack
    with pytest.raises(ValueError, match=r"^tau"):
        ab.sequential_test(np.ones(200), np.ones(200), tau=0.0)
    with pytest.raises(ValueError, match=r"^looks"):
        ab.sequential_test(np.ones(200), np.ones(200), tau=1.0, looks=[0.5, 0.2])


def test_cuped_reduces_variance_when_the_pre_metric_correlates() -> None:
    rs = np.random.default_rng(4)
    n = 20_000
    rho = 0.7
    x = rs.normal(10.0, 2.0, 2 * n)
    y = 5.0 + rho * (x - 10.0) + math.sqrt(1 - rho**2) * 2.0 * rs.normal(size=2 * n)
    y[:n] += 0.05  # the treatment effect
    raw = ab.compare(y[:n], y[n:])
    adj = ab.compare(y[:n], y[n:], x_t=x[:n], x_c=x[n:])
    assert adj.cuped and adj.theta == pytest.approx(rho, abs=0.03)
    assert adj.variance_reduction == pytest.approx(rho**2, abs=0.03)
    assert (adj.diff_high - adj.diff_low) < 0.8 * (raw.diff_high - raw.diff_low)
    assert adj.diff_low < 0.05 < adj.diff_high
    # An unrelated pre-metric leaves the variance as it was (no harm).
    noise = ab.compare(y[:n], y[n:], x_t=rs.normal(size=n), x_c=rs.normal(size=n))
    assert abs(noise.variance_reduction) < 0.01
    # CUPED stays unbiased and keeps its false-positive rate (theta is pooled over arms).
    hits = 0
    for s in range(400):
        r = np.random.default_rng([5, s])
        xx = r.normal(size=2 * 300)
        yy = 0.8 * xx + r.normal(size=2 * 300)
        hits += ab.compare(yy[:300], yy[300:], x_t=xx[:300], x_c=xx[300:]).p_value < 0.05
    assert 0.02 <= hits / 400 <= 0.085  # 400 sims: binomial sd 1.1 points


def test_srm_fires_on_a_planted_imbalance_and_not_on_a_fair_split() -> None:
    rs = np.random.default_rng(6)
    n = 100_000
    planted = ab.srm_test({"control": int(0.52 * n), "treatment": int(0.48 * n)})
    assert planted.mismatch and planted.p_value < 1e-20
    fair_flags = [ab.srm_test([int(c), n - int(c)]).mismatch for c in rs.binomial(n, 0.5, 500)]
    assert np.mean(fair_flags) <= 0.01  # alpha = 0.001
    weighted = ab.srm_test([30_120, 69_880], [0.3, 0.7])
    assert not weighted.mismatch
    assert ab.srm_test([35_000, 65_000], [0.3, 0.7]).mismatch
    with pytest.raises(ValueError, match=r"^weights"):
        ab.srm_test([10, 10], [0.6, 0.6])


def test_assignment_is_sticky_deterministic_and_matches_weights() -> None:
    users = [f"user-{i}" for i in range(60_000)]
    a = ab.Assigner(b"secret-key-1234", "exp-spring", ("control", "bandit", "fixed10"),
                    (0.5, 0.3, 0.2))
    v1 = a.assign(users)
    v2 = ab.Assigner(b"secret-key-1234", "exp-spring", ("control", "bandit", "fixed10"),
                     (0.5, 0.3, 0.2)).assign(list(reversed(users)))[::-1]
    np.testing.assert_array_equal(v1, v2)  # same key: same variant, in any order
    assert a.assign("user-17") == v1[17]
    counts = [int((v1 == v).sum()) for v in a.variants]
    assert not ab.srm_test(counts, a.weights).mismatch
    np.testing.assert_allclose(np.array(counts) / len(users), a.weights, atol=0.01)
    other_key = ab.Assigner(b"another-key-987", "exp-spring", a.variants, a.weights).assign(users)
    other_salt = ab.Assigner(b"secret-key-1234", "exp-summer", a.variants, a.weights).assign(users)
    for other in (other_key, other_salt):
        # Independent re-assignment agrees with probability sum w^2 = 0.38.
        assert np.mean(other == v1) == pytest.approx(0.38, abs=0.015)
    u = a.units(users[:5000])
    assert 0.0 <= u.min() and u.max() < 1.0
    fn = ab.assign_variants(users[:100], b"secret-key-1234", "exp-spring",
                            {"control": 0.5, "bandit": 0.3, "fixed10": 0.2})
    np.testing.assert_array_equal(fn, v1[:100])
    with pytest.raises(ValueError, match=r"^weights"):
        ab.Assigner(b"k", "e", ("a", "b"), (0.5, 0.6))
    with pytest.raises(ValueError, match=r"^key"):
        ab.Assigner(b"", "e")
    with pytest.raises(ValueError, match=r"^variants"):
        ab.Assigner(b"k", "e", ("a", "a"))


def test_power_calculator_agrees_with_simulation() -> None:
    rs = np.random.default_rng(7)
    size = ab.sample_size_proportions(0.10, 0.02, alpha=0.05, power=0.8)
    assert size.n_control == size.n_treatment == 3841  # the textbook value for 10% -> 12%
    assert ab.power_proportions(size.n_control, 0.10, 0.02) == pytest.approx(0.8, abs=0.002)
    x_t = rs.binomial(size.n_treatment, 0.12, 4000)
    x_c = rs.binomial(size.n_control, 0.10, 4000)
    _, p = ab.two_proportion_ztest(x_t, size.n_treatment, x_c, size.n_control)
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.02)  # sd of the rate: 0.63 points
    rel = ab.sample_size_proportions(0.10, 0.2, relative=True)
    assert rel == size
    # Means, unequal allocation: 2 treatment users per control user.
    sz = ab.sample_size_means(sd=30.0, mde=2.0, power=0.9, ratio=2.0)
    assert sz.n_treatment == 2 * sz.n_control
    assert ab.power_means(sz.n_control, 30.0, 2.0, ratio=2.0) == pytest.approx(0.9, abs=0.002)
    mt = rs.normal(52.0, 30.0 / math.sqrt(sz.n_treatment), 4000)
    mc = rs.normal(50.0, 30.0 / math.sqrt(sz.n_control), 4000)
    vt = 900.0 * rs.chisquare(sz.n_treatment - 1, 4000) / (sz.n_treatment - 1)
    vc = 900.0 * rs.chisquare(sz.n_control - 1, 4000) / (sz.n_control - 1)
    _, _, p = ab.welch_ttest(mt, vt, sz.n_treatment, mc, vc, sz.n_control)
    assert np.mean(p < 0.05) == pytest.approx(0.9, abs=0.02)
    for kwargs, field in [({"alpha": 0.0}, "alpha"), ({"power": 1.0}, "power"),
                          ({"mde": 0.0}, "mde"), ({"baseline": 1.2}, "baseline"),
                          ({"mde": 0.95}, "mde")]:
        with pytest.raises(ValueError, match=rf"^{field}"):
            ab.sample_size_proportions(**{"baseline": 0.1, "mde": 0.02, **kwargs})


def test_compare_intervals_lift_and_bootstrap() -> None:
    rs = np.random.default_rng(8)
    yt = rs.lognormal(0.1, 1.0, 8000)
    yc = rs.lognormal(0.0, 1.0, 8000)
    r = ab.compare(yt, yc, n_bootstrap=2000, seed=1, metric="revenue")
    assert r.lift == pytest.approx(yt.mean() / yc.mean() - 1)
    assert r.diff_low < r.diff < r.diff_high and r.lift_low < r.lift < r.lift_high
    # Bootstrap and analytic intervals agree closely at this size.
    assert r.boot_diff_low == pytest.approx(r.diff_low, abs=0.25 * (r.diff_high - r.diff_low))
    assert r.boot_lift_high == pytest.approx(r.lift_high, abs=0.25 * (r.lift_high - r.lift_low))
    assert r.significant()
    assert r.to_frame().loc[0, "metric"] == "revenue"
    conv = ab.compare(rs.random(5000) < 0.12, rs.random(5000) < 0.10, kind="proportion")
    assert conv.test == "two-proportion z" and conv.p_value < 0.05
    # Lift coverage of the delta method over repeated experiments (true lift 0.10).
    cover = 0
    for s in range(300):
        g = np.random.default_rng([9, s])
        res = ab.compare(g.exponential(1.1, 2000), g.exponential(1.0, 2000))
        cover += res.lift_low <= 0.1 <= res.lift_high
    assert 0.91 <= cover / 300 <= 0.99
    with pytest.raises(ValueError, match=r"^y_t"):
        ab.compare([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"^converted"):
        ab.compare([0.0, 2.0], [1.0, 0.0], kind="proportion", metric="converted")


def _experiment_frame(seed: int, n: int = 6000, effect: float = 0.0,
                      split: float = 0.5) -> pd.DataFrame:
    rs = np.random.default_rng(seed)
    pre = rs.gamma(2.0, 10.0, n)
    variant = np.where(rs.random(n) < split, "bandit", "control")
    # Past spenders buy more often and more: the pre-period metric predicts revenue.
    p = np.clip(0.08 * pre / pre.mean(), 0.0, 0.5) + (variant == "bandit") * effect
    converted = rs.random(n) < p
    revenue = converted * (2.0 * pre + rs.gamma(2.0, 5.0, n))
    return pd.DataFrame({"user": [f"u{i}" for i in range(n)], "variant": variant,
                         "converted": converted.astype(int), "revenue": revenue,
                         "profit": 0.3 * revenue, "pre_metric": pre})


def test_analyse_experiment_end_to_end(tmp_path) -> None:
    df = _experiment_frame(10, effect=0.03)
    report = ab.analyse_experiment(df, n_bootstrap=300, seed=2)
    frame = report.to_frame()
    assert len(frame) == 6  # 3 metrics x (raw, CUPED), one treatment
    assert set(frame["metric"]) == {"converted", "revenue", "profit"}
    conv = next(m for m in report.metrics if m.metric == "converted" and not m.cuped)
    assert conv.treatment == "bandit" and conv.control == "control" and conv.p_value < 0.01
    assert not report.srm.mismatch
    assert np.isfinite(frame["seq_p_value"]).all()
    rev_cuped = next(m for m in report.metrics if m.metric == "revenue" and m.cuped)
    rev_raw = next(m for m in report.metrics if m.metric == "revenue" and not m.cuped)
    assert rev_cuped.variance_reduction > 0.05
    assert (rev_cuped.diff_high - rev_cuped.diff_low) < (rev_raw.diff_high - rev_raw.diff_low)
    # Event-level rows (two per user) aggregate to the same per-user analysis.
    events = pd.concat([df.assign(revenue=df.revenue / 2, profit=df.profit / 2)] * 2)
    again = ab.analyse_experiment(events, n_bootstrap=0, metrics=["revenue"])
    assert again.metrics[0].diff == pytest.approx(rev_raw.diff)
    path = tmp_path / "exp.parquet"
    df.to_parquet(path)
    from_file = ab.analyse_experiment(path, n_bootstrap=0, pre_metric=None)
    assert len(from_file.metrics) == 3
    assert "bandit vs control" in str(from_file)
    # A planted 52/48 split is flagged.
    skew = _experiment_frame(11, n=60_000, split=0.52)
    assert ab.analyse_experiment(skew, n_bootstrap=0, metrics=["converted"]).srm.mismatch


def test_analyse_experiment_bad_input_names_the_field() -> None:
    df = _experiment_frame(12, n=400)
    bad = df.copy()
    bad.loc[3, "revenue"] = np.nan
    with pytest.raises(ValueError, match=r"^revenue"):
        ab.analyse_experiment(bad)
    leak = pd.concat([df, df.iloc[:5].assign(variant="bandit" if df.variant[0] == "control"
                                              else "control")])
    with pytest.raises(ValueError, match=r"^variant: \d+ users appear in more than one"):
        ab.analyse_experiment(leak)
    with pytest.raises(ValueError, match=r"^user"):
        ab.analyse_experiment(df.drop(columns=["user"]))
    with pytest.raises(ValueError, match=r"^control"):
        ab.analyse_experiment(df, control="nobody")
    with pytest.raises(ValueError, match=r"^weights"):
        ab.analyse_experiment(df, weights={"control": 0.5, "bandit": 0.6})
    with pytest.raises(ValueError, match=r"^metrics"):
        ab.analyse_experiment(df, metrics=["clicks"])
