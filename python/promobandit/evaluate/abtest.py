"""A/B tests of offer policies: assignment, analysis, variance reduction, power, sequential tests.

- **Assignment.** ``Assigner`` maps a user id to a variant by a keyed BLAKE2b hash
  of (experiment salt, user): sticky (the same user always gets the same variant),
  deterministic for a key, independent across experiments (salts), and in the
  proportions of the weights. The key keeps assignments unpredictable to anyone
  without it.
- **Fixed-horizon analysis.** Conversion: two-proportion z-test. Revenue and profit
  per user: Welch's t-test. Differences and relative lifts (treatment / control - 1)
  with analytic intervals (Welch / Wald; the delta method for lifts) and
  Poisson-bootstrap percentile intervals.
- **CUPED** (Deng et al. 2013): y - theta (x - mean x) with a pre-period metric x and
  theta = cov(y, x) / var(x) estimated on all users pooled, so it does not depend on
  the treatment.
- **Sample-ratio mismatch**: chi-square test of the users per variant against the weights.
- **Power and sample size** for proportions and means (two-sided).
- **Always-valid p-values**: the mixture SPRT of Johari et al. (2017, 2022) for a
  difference of means with a N(0, tau^2) mixing distribution; it may be checked after
  every user without inflating the false-positive rate.

Money is in the catalogue's currency; rates (conversion, alpha, power) are fractions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import require
from .._validation import check_int, check_range, check_seed

# Tolerance on weights that must sum to one (float rounding of a handful of numbers).
WEIGHT_ATOL = 1e-9
# The treatment arm's bootstrap replicates draw from streams offset by this much, so
# they are independent of the control arm's (replicates are numbered below it).
_TREATMENT_STREAMS = 2**32


# --------------------------------------------------------------------------- assignment
def _check_weights(weights: Sequence[float], n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights: expected {n} non-negative finite numbers, got {list(weights)}")
    if abs(w.sum() - 1.0) > WEIGHT_ATOL:
        raise ValueError(f"weights: expected a sum of 1, got {w.sum():.12g}")
    return w


@dataclasses.dataclass(frozen=True)
class Assigner:
    """Sticky, weighted variant assignment by keyed hash.

    key: secret bytes (1 to 64) keying BLAKE2b; the same key always gives the same
        assignment, a different key an independent one.
    salt: the experiment's name; different salts give independent assignments of the
        same users (no carry-over between experiments).
    variants: variant names, e.g. ("control", "bandit").
    weights: share of users per variant, fractions summing to 1 (default: equal).
    """

    key: bytes
    salt: str
    variants: tuple[str, ...] = ("control", "treatment")
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, (bytes, bytearray)) or not 1 <= len(self.key) <= 64:
            raise ValueError("key: expected 1 to 64 bytes")
        if not isinstance(self.salt, str):
            raise ValueError(f"salt: expected a string, got {type(self.salt).__name__}")
        variants = tuple(self.variants)
        if len(variants) < 2 or len(set(variants)) != len(variants):
            raise ValueError(f"variants: expected at least two distinct names, got {variants}")
        object.__setattr__(self, "variants", variants)
        k = len(variants)
        w = (1.0 / k,) * k if self.weights is None else tuple(float(x) for x in self.weights)
        _check_weights(w, k)
        object.__setattr__(self, "weights", w)

    def _unit(self, user: str) -> float:
        h = hashlib.blake2b(self.salt.encode() + b"\x1f" + user.encode(), key=bytes(self.key),
                            digest_size=8).digest()
        # 53 bits: exactly representable, uniform on [0, 1).
        return (int.from_bytes(h, "big") >> 11) * 2.0**-53

    def units(self, users: Sequence[str] | np.ndarray) -> np.ndarray:
        """The uniform [0, 1) hash position of each user (float64)."""
        return np.fromiter((self._unit(str(u)) for u in users), dtype=np.float64,
                           count=len(users))

    def assign(self, users: str | Sequence[str] | np.ndarray) -> Any:
        """The variant of one user (str) or of many (an object array of names)."""
        if isinstance(users, str):
            return self.variants[self._index(np.array([self._unit(users)]))[0]]
        idx = self._index(self.units(users))
        return np.asarray(self.variants, dtype=object)[idx]

    def _index(self, u: np.ndarray) -> np.ndarray:
        edges: np.ndarray = np.cumsum(np.asarray(self.weights, dtype=np.float64))[:-1]
        return np.searchsorted(edges, u, side="right")


def assign_variants(users: Sequence[str] | np.ndarray, key: bytes, salt: str,
                    variants: Mapping[str, float]) -> np.ndarray:
    """Variant name per user; variants maps name -> share of users (summing to 1)."""
    a = Assigner(key, salt, tuple(variants), tuple(variants.values()))
    return a.assign(users)


# --------------------------------------------------------------------------- tests on summaries
def two_proportion_ztest(x_t: Any, n_t: Any, x_c: Any, n_c: Any) -> tuple[Any, Any]:
    """Two-sided z-test of equal conversion rates with the pooled standard error.

    x_*: conversions, n_* users (arrays broadcast: many experiments at once).
    Returns (z, p_value).
    """
    ndtr = require("scipy.special", "evaluate", "A/B test analysis").ndtr

    x_t, n_t, x_c, n_c = (np.asarray(v, dtype=np.float64) for v in (x_t, n_t, x_c, n_c))
    p = (x_t + x_c) / (n_t + n_c)
    se = np.sqrt(p * (1.0 - p) * (1.0 / n_t + 1.0 / n_c))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, (x_t / n_t - x_c / n_c) / se, 0.0)
    return z, 2.0 * ndtr(-np.abs(z))


def welch_ttest(mean_t: Any, var_t: Any, n_t: Any, mean_c: Any, var_c: Any, n_c: Any
                ) -> tuple[Any, Any, Any]:
    """Welch's two-sided t-test of equal means from summaries (sample variances, ddof=1).

    Arrays broadcast. Returns (t, degrees of freedom, p_value).
    """
    stdtr = require("scipy.special", "evaluate", "A/B test analysis").stdtr

    mean_t, var_t, n_t, mean_c, var_c, n_c = (np.asarray(v, dtype=np.float64) for v in
                                              (mean_t, var_t, n_t, mean_c, var_c, n_c))
    vt, vc = var_t / n_t, var_c / n_c
    se2 = vt + vc
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se2 > 0, (mean_t - mean_c) / np.sqrt(se2), 0.0)
        df = np.where(se2 > 0, se2**2 / (vt**2 / (n_t - 1.0) + vc**2 / (n_c - 1.0)), 1.0)
    return t, df, 2.0 * stdtr(df, -np.abs(t))


# --------------------------------------------------------------------------- sequential
def msprt_statistic(diff: Any, var_diff: Any, tau: float, theta0: float = 0.0) -> Any:
    """Mixture likelihood ratio Lambda of the mSPRT for a difference of means.

    diff: the estimated difference (treatment - control); var_diff: its variance
    (var_t / n_t + var_c / n_c); tau: standard deviation of the N(theta0, tau^2)
    mixing distribution over the true difference (metric units).
    Lambda = sqrt(v / (v + tau^2)) * exp(tau^2 (diff - theta0)^2 / (2 v (v + tau^2))),
    v = var_diff (Johari et al. 2017, the two-sample normal case with plug-in variances).
    Returns log(Lambda) (arrays broadcast).
    """
    d = np.asarray(diff, dtype=np.float64) - theta0
    v = np.asarray(var_diff, dtype=np.float64)
    t2 = float(tau) ** 2
    return 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2.0 * v * (v + t2))


def always_valid_pvalues(diff: Any, var_diff: Any, tau: float, theta0: float = 0.0) -> Any:
    """Always-valid p-values p_n = min(p_{n-1}, 1 / Lambda_n) over looks (last axis).

    Stopping at the first look where p < alpha keeps the false-positive rate <= alpha,
    however many looks are taken.
    """
    log_lam = msprt_statistic(diff, var_diff, tau, theta0)
    p = np.minimum(1.0, np.exp(-log_lam))
    return np.minimum.accumulate(p, axis=-1)


def confidence_sequence_halfwidth(var_diff: Any, tau: float, alpha: float) -> Any:
    """Half-width of the always-valid (1 - alpha) interval for the difference at each look:
    the differences theta0 with Lambda(theta0) < 1 / alpha."""
    v = np.asarray(var_diff, dtype=np.float64)
    t2 = float(tau) ** 2
    return np.sqrt(2.0 * v * (v + t2) / t2 * (math.log(1.0 / alpha) + 0.5 * np.log((v + t2) / v)))


@dataclasses.dataclass(frozen=True)
class SequentialResult:
    """An mSPRT run over looks (n_t, n_c users seen at each look, in arrival order).

    p_values: always-valid p-values (non-increasing); diff: difference at each look;
    ci_low / ci_high: the always-valid (1 - alpha) confidence sequence (running intersection);
    stopped_at: index of the first look with p < alpha, or None; tau: the mixing sd used.
    """

    n_treatment: np.ndarray
    n_control: np.ndarray
    diff: np.ndarray
    p_values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    alpha: float
    tau: float
    stopped_at: int | None

    @property
    def p_value(self) -> float:
        return float(self.p_values[-1])

    def to_frame(self) -> Any:
        pd = require("pandas", "evaluate", "A/B test analysis")

        return pd.DataFrame({"n_treatment": self.n_treatment, "n_control": self.n_control,
                             "diff": self.diff, "p_value": self.p_values,
                             "ci_low": self.ci_low, "ci_high": self.ci_high})


def sequential_test(y_t: Any, y_c: Any, *, tau: float, alpha: float = 0.05,
                    looks: Any = None, min_n: int = 100) -> SequentialResult:
    """mSPRT on two streams of per-user outcomes, in arrival order.

    y_t, y_c: outcomes of treatment and control users, in the order they arrived.
    tau: mixing standard deviation (metric units): the mSPRT is most powerful for
        true differences near tau.
    alpha: significance level (fraction).
    looks: fractions of the data in (0, 1] at which to look (default: after every
        `min_n` users per arm); each look uses the first fraction of both streams.
    min_n: no look before both arms have this many users: the plug-in variances
        are unreliable before.
    """
    yt = _metric_array(y_t, "y_t")
    yc = _metric_array(y_c, "y_c")
    tau = check_range("tau", tau, 0.0, lo_open=True)
    alpha = check_range("alpha", alpha, 0.0, 1.0, lo_open=True, hi_open=True)
    min_n = check_int("min_n", min_n, 2)
    if min(yt.size, yc.size) < min_n:
        raise ValueError(f"y_t: need at least min_n = {min_n} users per arm, got "
                         f"{yt.size} and {yc.size}")
    if looks is None:
        steps = max(yt.size, yc.size) // min_n
        fr = np.arange(1, steps + 1) / steps
    else:
        fr = np.asarray(looks, dtype=np.float64)
        if fr.ndim != 1 or fr.size == 0 or (fr <= 0).any() or (fr > 1).any() or \
                (np.diff(fr) <= 0).any():
            raise ValueError("looks: expected increasing fractions in (0, 1]")
    nt = np.maximum(np.floor(fr * yt.size).astype(np.int64), 1)
    nc = np.maximum(np.floor(fr * yc.size).astype(np.int64), 1)
    keep = (nt >= min_n) & (nc >= min_n)
    nt, nc = nt[keep], nc[keep]
    if nt.size == 0:
        raise ValueError("looks: no look has min_n users in both arms")
    mt, vt = _cum_mean_var(yt, nt)
    mc, vc = _cum_mean_var(yc, nc)
    diff = mt - mc
    var_diff = np.maximum(vt / nt + vc / nc, np.finfo(float).tiny)
    p = always_valid_pvalues(diff, var_diff, tau)
    hw = confidence_sequence_halfwidth(var_diff, tau, alpha)
    lo = np.maximum.accumulate(diff - hw)
    hi = np.minimum.accumulate(diff + hw)
    hit = np.flatnonzero(p < alpha)
    return SequentialResult(nt, nc, diff, p, lo, hi, alpha, tau,
                            int(hit[0]) if hit.size else None)


def _cum_mean_var(y: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample variance of the first n[j] values, for every look j."""
    # Shift by the first value so cumulative sums of squares do not cancel catastrophically.
    z = y - y[0]
    s1 = np.cumsum(z)[n - 1]
    s2 = np.cumsum(z * z)[n - 1]
    mean = s1 / n
    var = np.maximum(s2 - s1 * mean, 0.0) / np.maximum(n - 1, 1)
    return mean + y[0], var


# --------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class MetricResult:
    """Treatment vs control on one metric (per user).

    kind: "proportion" (conversion, z-test) or "mean" (revenue/profit, Welch t-test).
    diff = mean_treatment - mean_control with its analytic interval and p-value;
    lift = mean_treatment / mean_control - 1 with a delta-method interval; boot_*:
    Poisson-bootstrap percentile intervals (NaN when no bootstrap ran).
    cuped: whether the metric was CUPED-adjusted (theta: its coefficient,
    variance_reduction: 1 - var(adjusted) / var(raw), pooled over both arms).
    seq_p_value: always-valid mSPRT p-value at the end (NaN when not computed).
    """

    metric: str
    kind: str
    control: str
    treatment: str
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    diff: float
    diff_low: float
    diff_high: float
    statistic: float
    p_value: float
    lift: float
    lift_low: float
    lift_high: float
    level: float
    test: str
    cuped: bool = False
    theta: float = math.nan
    variance_reduction: float = math.nan
    boot_diff_low: float = math.nan
    boot_diff_high: float = math.nan
    boot_lift_low: float = math.nan
    boot_lift_high: float = math.nan
    seq_p_value: float = math.nan
    seq_tau: float = math.nan

    def significant(self, alpha: float | None = None) -> bool:
        """p_value < alpha (default: 1 - level)."""
        return self.p_value < (1.0 - self.level if alpha is None else alpha)

    def to_frame(self) -> Any:
        """A one-row pandas DataFrame of every field."""
        pd = require("pandas", "evaluate", "A/B test analysis")

        return pd.DataFrame([dataclasses.asdict(self)])


@dataclasses.dataclass(frozen=True)
class SRMResult:
    """Sample-ratio-mismatch check: observed users per variant against the weights.

    mismatch: p_value < alpha (the split is broken: assignment or logging lose users
    unevenly, and the experiment's results should not be trusted).
    """

    variants: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    alpha: float
    mismatch: bool

    def to_frame(self) -> Any:
        pd = require("pandas", "evaluate", "A/B test analysis")

        return pd.DataFrame({"variant": self.variants, "observed": self.observed,
                             "expected": self.expected}).assign(p_value=self.p_value,
                                                                mismatch=self.mismatch)


@dataclasses.dataclass(frozen=True)
class ExperimentReport:
    """Everything ``analyse_experiment`` found: per-metric results, the SRM check."""

    metrics: list[MetricResult]
    srm: SRMResult
    n_users: int
    settings: dict[str, Any]

    def to_frame(self) -> Any:
        """One row per (treatment, metric, raw/CUPED)."""
        pd = require("pandas", "evaluate", "A/B test analysis")

        return pd.DataFrame([dataclasses.asdict(m) for m in self.metrics])

    def __str__(self) -> str:
        lines = [f"experiment on {self.n_users:,} users; SRM p = {self.srm.p_value:.3g}"
                 + ("  ** SAMPLE RATIO MISMATCH **" if self.srm.mismatch else "")]
        for m in self.metrics:
            tag = " (CUPED)" if m.cuped else ""
            lines.append(f"  {m.treatment} vs {m.control}  {m.metric}{tag}: "
                         f"{m.mean_treatment:.5g} vs {m.mean_control:.5g}, lift {m.lift:+.2%} "
                         f"[{m.lift_low:+.2%}, {m.lift_high:+.2%}], p = {m.p_value:.3g}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- comparisons
def _metric_array(y: Any, field: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "biuf":
        raise ValueError(f"{field}: expected a non-empty 1-D numeric array")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{field}: expected finite values (found NaN or inf)")
    return a


def _boot_means(y: np.ndarray, n_boot: int, seed: int, offset: int) -> np.ndarray:
    from ._kernels import bootstrap_sums

    s = bootstrap_sums(y, n_boot, seed, offset)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s[:, 0] / s[:, 1]


def compare(y_t: Any, y_c: Any, *, kind: str = "mean", metric: str = "metric",
            treatment: str = "treatment", control: str = "control", level: float = 0.95,
            n_bootstrap: int = 0, seed: int = 0, x_t: Any = None, x_c: Any = None,
            tau: float | None = None, sequential_min_n: int = 100) -> MetricResult:
    """Compares per-user outcomes of treatment and control.

    y_t, y_c: one value per user (0/1 for kind="proportion"; currency for "mean").
    level: confidence level (fraction). n_bootstrap: bootstrap replicates (0: none).
    x_t, x_c: optional pre-period metric per user: CUPED-adjusts y (theta pooled),
        and the test becomes Welch's t on the adjusted values.
    tau: if given, also the always-valid mSPRT p-value over looks every
        `sequential_min_n` users (arrival order = array order).
    """
    yt = _metric_array(y_t, "y_t")
    yc = _metric_array(y_c, "y_c")
    if yt.size < 2 or yc.size < 2:
        raise ValueError("y_t: need at least two users per arm")
    if kind not in ("mean", "proportion"):
        raise ValueError(f"kind: expected 'mean' or 'proportion', got {kind!r}")
    if kind == "proportion" and not (np.isin(yt, (0.0, 1.0)).all() and
                                     np.isin(yc, (0.0, 1.0)).all()):
        raise ValueError(f"{metric}: a proportion needs 0/1 values per user")
    level = check_range("level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, 0)
    seed = check_seed(seed)
    cuped = x_t is not None or x_c is not None
    theta = vr = math.nan
    if cuped:
        xt = _metric_array(x_t, "x_t")
        xc = _metric_array(x_c, "x_c")
        if xt.size != yt.size or xc.size != yc.size:
            raise ValueError("x_t: the pre-period metric needs one value per user of each arm")
        y_all = np.concatenate([yt, yc])
        adj, theta = cuped_adjust(y_all, np.concatenate([xt, xc]))
        var_raw = float(y_all.var(ddof=1))
        vr = 1.0 - float(adj.var(ddof=1)) / var_raw if var_raw > 0 else 0.0
        yt, yc = adj[:yt.size], adj[yt.size:]
    _special = require("scipy.special", "evaluate", "A/B test analysis")
    ndtri, stdtrit = _special.ndtri, _special.stdtrit

    z = float(ndtri(0.5 + level / 2.0))
    nt, nc = yt.size, yc.size
    mt, mc = float(yt.mean()), float(yc.mean())
    vt, vc = float(yt.var(ddof=1)), float(yc.var(ddof=1))
    diff = mt - mc
    if kind == "proportion" and not cuped:
        stat, p = two_proportion_ztest(yt.sum(), nt, yc.sum(), nc)
        # The test pools under H0; the interval uses the unpooled (Wald) standard error.
        half = z * math.sqrt(mt * (1 - mt) / nt + mc * (1 - mc) / nc)
        test = "two-proportion z"
    else:
        stat, df, p = welch_ttest(mt, vt, nt, mc, vc, nc)
        q = float(stdtrit(float(df), 0.5 + level / 2.0)) if np.isfinite(df) else z
        half = q * math.sqrt(vt / nt + vc / nc)
        test = "Welch t" + (" (CUPED)" if cuped else "")
    # Delta method on mt / mc - 1: var = vt/(nt mc^2) + mt^2 vc/(nc mc^4).
    if mc != 0:
        lift = mt / mc - 1.0
        lift_se = math.sqrt(vt / (nt * mc**2) + mt**2 * vc / (nc * mc**4))
    else:
        lift = lift_se = math.nan
    res = MetricResult(metric=metric, kind=kind, control=control, treatment=treatment,
                       n_control=nc, n_treatment=nt, mean_control=mc, mean_treatment=mt,
                       diff=diff, diff_low=diff - half, diff_high=diff + half,
                       statistic=float(stat), p_value=float(p), lift=lift,
                       lift_low=lift - z * lift_se, lift_high=lift + z * lift_se, level=level,
                       test=test, cuped=cuped, theta=theta, variance_reduction=vr)
    if n_bootstrap:
        bt = _boot_means(yt, n_bootstrap, seed, _TREATMENT_STREAMS)
        bc = _boot_means(yc, n_bootstrap, seed, 0)
        q_lo, q_hi = (1 - level) / 2, (1 + level) / 2
        d_lo, d_hi = np.quantile(bt - bc, [q_lo, q_hi])
        with np.errstate(invalid="ignore", divide="ignore"):
            lifts = bt / bc - 1.0
        lifts = lifts[np.isfinite(lifts)]
        l_lo, l_hi = np.quantile(lifts, [q_lo, q_hi]) if lifts.size else (math.nan, math.nan)
        res = dataclasses.replace(res, boot_diff_low=float(d_lo), boot_diff_high=float(d_hi),
                                  boot_lift_low=float(l_lo), boot_lift_high=float(l_hi))
    if tau is not None and min(nt, nc) >= sequential_min_n:
        seq = sequential_test(yt, yc, tau=tau, alpha=1.0 - level, min_n=sequential_min_n)
        res = dataclasses.replace(res, seq_p_value=seq.p_value, seq_tau=float(tau))
    return res


def cuped_adjust(y: Any, x: Any) -> tuple[np.ndarray, float]:
    """CUPED: (y - theta (x - mean x), theta) with theta = cov(y, x) / var(x) on the data
    given (pass all arms pooled). A constant x gives theta = 0 (no adjustment)."""
    ya = _metric_array(y, "y")
    xa = _metric_array(x, "pre_metric")
    if xa.size != ya.size:
        raise ValueError(f"pre_metric: expected {ya.size} values, got {xa.size}")
    xc = xa - xa.mean()
    var_x = float(np.dot(xc, xc))
    theta = float(np.dot(xc, ya - ya.mean()) / var_x) if var_x > 0 else 0.0
    return ya - theta * xc, theta


def srm_test(observed: Mapping[str, int] | Sequence[int], weights: Sequence[float] | None = None,
             *, alpha: float = 0.001) -> SRMResult:
    """Chi-square goodness-of-fit test of users per variant against the intended weights.

    observed: users per variant (a mapping name -> count, or counts in variant order).
    weights: intended shares (fractions summing to 1; default equal).
    alpha: significance level; 0.001 is customary because an SRM check runs on every
        experiment and a false alarm halts one.
    """
    chi2 = require("scipy.stats", "evaluate", "A/B test analysis").chi2

    if isinstance(observed, Mapping):
        names = tuple(str(k) for k in observed)
        counts = np.asarray(list(observed.values()), dtype=np.float64)
    else:
        counts = np.asarray(observed, dtype=np.float64)
        names = tuple(str(i) for i in range(counts.size))
    if counts.ndim != 1 or counts.size < 2 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("observed: expected at least two non-negative counts")
    k = counts.size
    w = np.full(k, 1.0 / k) if weights is None else _check_weights(weights, k)
    if (w <= 0).any():
        raise ValueError("weights: every variant needs a positive share for the SRM test")
    alpha = check_range("alpha", alpha, 0.0, 1.0, lo_open=True, hi_open=True)
    expected = w * counts.sum()
    stat = float(((counts - expected) ** 2 / expected).sum())
    p = float(chi2.sf(stat, k - 1))
    return SRMResult(names, tuple(int(c) for c in counts), tuple(float(e) for e in expected),
                     stat, p, alpha, p < alpha)


# --------------------------------------------------------------------------- power
@dataclasses.dataclass(frozen=True)
class SampleSize:
    """Users needed per arm for a two-sided test (rounded up)."""

    n_control: int
    n_treatment: int

    @property
    def total(self) -> int:
        return self.n_control + self.n_treatment

    def to_frame(self) -> Any:
        pd = require("pandas", "evaluate", "A/B test analysis")

        return pd.DataFrame([{"n_control": self.n_control, "n_treatment": self.n_treatment,
                              "total": self.total}])


def _power_args(alpha: float, power: float, ratio: float) -> tuple[float, float, float]:
    ndtri = require("scipy.special", "evaluate", "A/B test analysis").ndtri

    alpha = check_range("alpha", alpha, 0.0, 1.0, lo_open=True, hi_open=True)
    power = check_range("power", power, 0.0, 1.0, lo_open=True, hi_open=True)
    ratio = check_range("ratio", ratio, 0.0, lo_open=True)
    return float(ndtri(1 - alpha / 2)), float(ndtri(power)), ratio


def _treated_rate(baseline: float, mde: float, relative: bool) -> float:
    baseline = check_range("baseline", baseline, 0.0, 1.0, lo_open=True, hi_open=True)
    mde = check_range("mde", mde)
    if mde == 0:
        raise ValueError("mde: the minimum detectable effect must be non-zero")
    p2 = baseline * (1 + mde) if relative else baseline + mde
    if not 0 < p2 < 1:
        raise ValueError(f"mde: the treated rate {p2:g} must lie in (0, 1)")
    return p2


def sample_size_proportions(baseline: float, mde: float, *, relative: bool = False,
                            alpha: float = 0.05, power: float = 0.8,
                            ratio: float = 1.0) -> SampleSize:
    """Users per arm to detect a change in a conversion rate with a two-sided z-test.

    baseline: control conversion rate (fraction). mde: minimum detectable effect, an
    absolute change in the rate (relative=True: a fraction of baseline). alpha:
    significance level; power: probability of detecting the mde; ratio: n_treatment /
    n_control. Uses the pooled variance under H0 and the unpooled one under H1.
    """
    za, zb, r = _power_args(alpha, power, ratio)
    p1 = float(baseline)
    p2 = _treated_rate(baseline, mde, relative)
    pbar = (p1 + r * p2) / (1 + r)
    num = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / r)) + zb * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2) / r)
    n_c = math.ceil((num / (p2 - p1)) ** 2)
    return SampleSize(n_c, math.ceil(r * n_c))


def power_proportions(n_control: int, baseline: float, mde: float, *, relative: bool = False,
                      alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power (fraction) of the two-sided z-test with n_control users in control and
    ratio * n_control in treatment (see sample_size_proportions)."""
    ndtr = require("scipy.special", "evaluate", "A/B test analysis").ndtr

    n_control = check_int("n_control", n_control, 1)
    za, _, r = _power_args(alpha, 0.5, ratio)
    p1 = float(baseline)
    p2 = _treated_rate(baseline, mde, relative)
    pbar = (p1 + r * p2) / (1 + r)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 + 1 / r) / n_control)
    se1 = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2) / r) / n_control)
    d = abs(p2 - p1)
    return float(ndtr((d - za * se0) / se1) + ndtr((-d - za * se0) / se1))


def sample_size_means(sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8,
                      ratio: float = 1.0) -> SampleSize:
    """Users per arm to detect a difference `mde` in a per-user mean (currency) with a
    two-sided test; sd: per-user standard deviation (the same in both arms)."""
    za, zb, r = _power_args(alpha, power, ratio)
    sd = check_range("sd", sd, 0.0, lo_open=True)
    mde = check_range("mde", mde)
    if mde == 0:
        raise ValueError("mde: the minimum detectable effect must be non-zero")
    n_c = math.ceil((za + zb) ** 2 * sd**2 * (1 + 1 / r) / mde**2)
    return SampleSize(n_c, math.ceil(r * n_c))


def power_means(n_control: int, sd: float, mde: float, *, alpha: float = 0.05,
                ratio: float = 1.0) -> float:
    """Power (fraction) of the two-sided test of means (normal approximation)."""
    ndtr = require("scipy.special", "evaluate", "A/B test analysis").ndtr

    n_control = check_int("n_control", n_control, 1)
    za, _, r = _power_args(alpha, 0.5, ratio)
    sd = check_range("sd", sd, 0.0, lo_open=True)
    se = sd * math.sqrt((1 + 1 / r) / n_control)
    d = abs(check_range("mde", mde))
    return float(ndtr(d / se - za) + ndtr(-d / se - za))


# --------------------------------------------------------------------------- experiment logs
EXPERIMENT_METRICS = {"converted": "proportion", "revenue": "mean", "profit": "mean"}


def _read_table(source: Any) -> Any:
    pd = require("pandas", "evaluate", "A/B test analysis")

    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ValueError(f"log_path: no such file {str(path)!r}")
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    if isinstance(source, Mapping):
        return pd.DataFrame(dict(source))
    raise ValueError(f"log_path_or_frame: expected a path or a DataFrame, got "
                     f"{type(source).__name__}")


def _per_user(df: Any, metrics: Sequence[str], pre: str | None) -> Any:
    """One row per user: converted = any, revenue/profit summed, pre_metric first."""
    for col in ("user", "variant"):
        if col not in df.columns:
            raise ValueError(f"{col}: missing column in the experiment log")
        if df[col].isna().any():
            raise ValueError(f"{col}: missing values")
    for col in [*metrics, *([pre] if pre else [])]:
        values = df[col]
        if values.dtype.kind not in "biuf":
            raise ValueError(f"{col}: expected numbers, got dtype {values.dtype}")
        if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            raise ValueError(f"{col}: NaN or inf values")
    n_var = df.groupby("user", sort=False)["variant"].nunique()
    if (n_var > 1).any():
        raise ValueError(f"variant: {int((n_var > 1).sum())} users appear in more than one "
                         "variant (assignment is not sticky, or ids collide)")
    agg: dict[str, Any] = {"variant": "first"}
    for m in metrics:
        agg[m] = "max" if EXPERIMENT_METRICS.get(m) == "proportion" else "sum"
    if pre:
        agg[pre] = "first"
    if not df["user"].duplicated().any():
        return df[["user", *agg]].reset_index(drop=True)
    return df.groupby("user", sort=False).agg(agg).reset_index()


def analyse_experiment(log_path_or_frame: Any, *, control: str | None = None,
                       metrics: Sequence[str] | None = None,
                       pre_metric: str | None = "pre_metric",
                       weights: Mapping[str, float] | None = None, level: float = 0.95,
                       n_bootstrap: int = 2000, seed: int = 0, tau: float | None = None,
                       tau_sd_fraction: float = 0.1, sequential_min_n: int = 100,
                       srm_alpha: float = 0.001) -> ExperimentReport:
    """Analyses an experiment log: every treatment against the control on every metric.

    log_path_or_frame: a Parquet/CSV path or a DataFrame with columns user, variant and
        metrics converted (0/1), revenue, profit (currency), optionally pre_metric;
        rows may be events (several per user): they are aggregated per user first.
    control: the control variant's name (default: "control" if present, else the
        first variant in sorted order).
    metrics: which of converted / revenue / profit to analyse (default: those present).
    pre_metric: column of a pre-period metric for CUPED (each metric is then reported
        raw and CUPED-adjusted); None or a missing column: no CUPED.
    weights: intended share of users per variant for the SRM check (default: equal).
    level: confidence level; n_bootstrap: bootstrap replicates (0: none); seed: their seed.
    tau: mSPRT mixing sd in metric units for every metric; None: tau_sd_fraction x the
        metric's pooled per-user standard deviation (the mSPRT is most powerful for
        differences near tau; a tenth of a standard deviation is a typical target effect).
    sequential_min_n: users per arm before the first sequential look (plug-in variances).
    srm_alpha: significance level of the sample-ratio-mismatch check.
    """
    df = _read_table(log_path_or_frame)
    if metrics is None:
        metrics = [m for m in EXPERIMENT_METRICS if m in df.columns]
        if not metrics:
            raise ValueError("metrics: the log has none of the columns converted, revenue, "
                             "profit")
    else:
        metrics = list(metrics)
        for m in metrics:
            if m not in EXPERIMENT_METRICS:
                raise ValueError(f"metrics: unknown metric {m!r}; expected some of "
                                 f"{tuple(EXPERIMENT_METRICS)}")
            if m not in df.columns:
                raise ValueError(f"{m}: missing column in the experiment log")
    pre = pre_metric if pre_metric and pre_metric in df.columns else None
    tau_sd_fraction = check_range("tau_sd_fraction", tau_sd_fraction, 0.0, lo_open=True)
    users = _per_user(df, metrics, pre)
    variants = sorted(str(v) for v in users["variant"].unique())
    if len(variants) < 2:
        raise ValueError(f"variant: expected at least two variants, got {variants}")
    if control is None:
        control = "control" if "control" in variants else variants[0]
    if control not in variants:
        raise ValueError(f"control: {control!r} is not one of the variants {variants}")
    labels = users["variant"].astype(str).to_numpy()
    counts = {v: int((labels == v).sum()) for v in variants}
    w = None
    if weights is not None:
        if set(weights) != set(variants):
            raise ValueError(f"weights: expected a share for each of {variants}, got "
                             f"{sorted(weights)}")
        w = [float(weights[v]) for v in variants]
    srm = srm_test(counts, w, alpha=srm_alpha)
    results: list[MetricResult] = []
    in_c = labels == control
    for treat in (v for v in variants if v != control):
        in_t = labels == treat
        for m in metrics:
            y = users[m].to_numpy(dtype=np.float64)
            t = tau if tau is not None else tau_sd_fraction * float(y[in_t | in_c].std(ddof=1))
            common: dict[str, Any] = dict(
                kind=EXPERIMENT_METRICS[m], metric=m, treatment=treat, control=control,
                level=level, n_bootstrap=n_bootstrap, seed=seed,
                tau=t if t > 0 else None,  # a constant metric has nothing to test sequentially
                sequential_min_n=sequential_min_n)
            results.append(compare(y[in_t], y[in_c], **common))
            if pre:
                x = users[pre].to_numpy(dtype=np.float64)
                results.append(compare(y[in_t], y[in_c], x_t=x[in_t], x_c=x[in_c], **common))
    settings = {"control": control, "metrics": tuple(metrics), "pre_metric": pre,
                "level": level, "n_bootstrap": n_bootstrap, "seed": seed, "tau": tau,
                "tau_sd_fraction": tau_sd_fraction, "sequential_min_n": sequential_min_n,
                "srm_alpha": srm_alpha}
    return ExperimentReport(results, srm, len(users), settings)
