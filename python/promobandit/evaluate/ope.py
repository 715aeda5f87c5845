"""Off-policy evaluation: what a target policy would have earned on a logged stream.

Notation: row i of the log has context x_i, logged offer a_i chosen with
propensity p_i = pi0(a_i | x_i), reward r_i (currency units); the target policy
gives pi(a | x_i). The importance weight is w_i = pi(a_i | x_i) / p_i and
q(x, a) is a cross-fitted reward model (``RewardModel``). Estimators of the
target's value V = E[sum_a pi(a|x) E[r | x, a]] (reward per decision):

==============  ============================================================
``ips``          mean(w r)  (unbiased when pi0 > 0 wherever pi > 0)
``snips``        sum(w r) / sum(w)  (self-normalised; small bias, less variance)
``dm``           mean(sum_a pi(a|x) q(x, a))  (direct method; biased if q is)
``dr``           dm + mean(w (r - q(x, a)))  (doubly robust; Dudik et al. 2011)
``switch-dr``    dr with the correction only where w <= switch_threshold
                 (Wang et al. 2017; obp's SwitchDoublyRobust)
``clipped-ips``  mean(min(w, clip_weight) r)  (biased down, bounded variance)
``clipped-dr``   dm + mean(min(w, clip_weight) (r - q))
==============  ============================================================

Every estimate comes with an analytic interval (CLT on the per-row terms; the
delta method for SNIPS; DM and the DR family are conditional on the fitted
model, which cross-fitting makes asymptotically negligible for DR) and,
optionally, a Poisson-bootstrap percentile interval (seeded, Numba). Every
estimate is also compared with the logging policy's own mean reward on the
same rows (paired, so the difference has a tighter interval than either).

Everything is vectorised over rows; the target and the reward model are
evaluated in chunks so a 10-million-row log needs O(n) extra memory.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._extras import require
from .._validation import check_int, check_range, check_seed
from .log import PROB_ATOL, DecisionLog, as_decision_log
from .reward_model import OPEWarning, RewardModel
from .targets import TargetPolicy, check_target_chunk, target_function

ESTIMATORS = ("ips", "snips", "dm", "dr", "switch-dr", "clipped-ips", "clipped-dr")
DEFAULT_ESTIMATORS = ("ips", "snips", "dm", "dr")
MODEL_ESTIMATORS = frozenset({"dm", "dr", "switch-dr", "clipped-dr"})
LOGGED = "logged"  # the row name of the logging policy's own value in reports

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "DiagnosticThresholds",
    "Diagnostics",
    "Estimate",
    "EvaluationReport",
    "OPEWarning",
    "effective_sample_size",
    "evaluate",
    "evaluate_policies",
]


@dataclasses.dataclass(frozen=True)
class DiagnosticThresholds:
    """When ``evaluate`` warns (OPEWarning) that an estimate may be unreliable.

    min_propensity: logged propensities below this are "tiny": one such row can
        carry a weight of 1 / p and dominate IPS.
    max_weight: importance weights above this are "huge".
    min_ess_fraction: warn when the effective sample size (sum w)^2 / sum w^2 is
        below this fraction of the rows (the estimate rests on few rows).
    unsupported_mass: warn when the target puts more than this share of its
        decisions on offers the log never shows (or, where the logging
        distribution is known, where it had probability zero): IPS and DR
        cannot see those rewards and are biased.
    weight_mean_z: the mean importance weight must be 1 when the target stays in
        the logging support and the propensities are right; warn when it is more
        than this many standard errors away (4: a false alarm every ~16,000 runs).
    min_informative_rows: warn when fewer rows than this have both a positive weight
        and a non-zero reward: the weighted estimators then rest on a handful of
        events and their normal intervals are unreliable (zero events: zero width).
    max_modified_share: warn when clip_weight / switch_threshold change the weight of
        more than this share of the rows with a positive weight (clipped and switch
        estimators requested): their estimates and intervals are then mostly the
        clipping's or the model's, not the data's.
    """

    min_propensity: float = 1e-3
    max_weight: float = 100.0
    min_ess_fraction: float = 0.01
    unsupported_mass: float = 1e-3
    weight_mean_z: float = 4.0
    min_informative_rows: int = 10
    max_modified_share: float = 0.5

    def __post_init__(self) -> None:
        check_range("min_propensity", self.min_propensity, 0.0, 1.0)
        check_range("max_weight", self.max_weight, 0.0, lo_open=True)
        check_range("min_ess_fraction", self.min_ess_fraction, 0.0, 1.0)
        check_range("unsupported_mass", self.unsupported_mass, 0.0, 1.0)
        check_range("weight_mean_z", self.weight_mean_z, 0.0, lo_open=True)
        check_int("min_informative_rows", self.min_informative_rows, 0)
        check_range("max_modified_share", self.max_modified_share, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One estimate of a policy's value (reward per decision, in the log's reward units).

    value: the point estimate. stderr: its analytic standard error.
    ci_low, ci_high: analytic interval at `level` (normal approximation).
    boot_low, boot_high, boot_stderr: Poisson-bootstrap percentile interval and
        standard error (NaN when no bootstrap ran).
    vs_logged, vs_logged_low, vs_logged_high: value minus the logging policy's mean
        reward on the same rows, with its paired analytic interval.
    ess: effective sample size of the weights the estimate uses (n for DM).
    """

    estimator: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float
    level: float
    n_rows: int
    ess: float
    boot_low: float = math.nan
    boot_high: float = math.nan
    boot_stderr: float = math.nan
    vs_logged: float = math.nan
    vs_logged_low: float = math.nan
    vs_logged_high: float = math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)

    @property
    def boot_ci(self) -> tuple[float, float]:
        return (self.boot_low, self.boot_high)


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Facts about the importance weights and the overlap of target and logging policies.

    ess: Kish effective sample size (sum w)^2 / sum w^2 of the raw weights; ess_fraction = ess / n.
    weight_mean, weight_mean_stderr: mean importance weight (1 in expectation under support).
    weight_max, weight_q99: largest weight and its 99th percentile.
    min_propensity: smallest logged propensity; n_tiny_propensity: rows below the threshold.
    unlogged_offers: offers never logged that the target uses; unlogged_mass: the share of
        the target's decisions on them.
    unsupported_mass: share of the target's decisions where the known logging
        distribution had probability 0 (NaN when action_probs are not logged).
    n_informative: rows with a positive weight and a non-zero reward.
    clipped_share, switched_share: share of the rows with a positive weight whose
        weight clip_weight caps / switch_threshold drops (NaN when not requested).
    messages: the warnings raised, in words.
    """

    n_rows: int
    ess: float
    ess_fraction: float
    weight_mean: float
    weight_mean_stderr: float
    weight_max: float
    weight_q99: float
    min_propensity: float
    n_tiny_propensity: int
    unlogged_offers: tuple[int, ...]
    unlogged_mass: float
    unsupported_mass: float
    n_informative: int
    clipped_share: float
    switched_share: float
    messages: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """The result of ``evaluate``: estimates of one target policy on one log.

    estimates: estimator name -> Estimate, in the order requested.
    logged: the logging policy's own mean reward on these rows (on-policy value).
    settings: the knobs used (level, bootstrap replicates, thresholds, ...).
    """

    n_rows: int
    n_actions: int
    level: float
    estimates: dict[str, Estimate]
    logged: Estimate
    diagnostics: Diagnostics
    settings: dict[str, Any]

    def __getitem__(self, estimator: str) -> Estimate:
        return self.estimates[estimator]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per estimator plus a final 'logged' row."""
        pd = require("pandas", "evaluate", "off-policy evaluation")

        rows = [dataclasses.asdict(e) for e in [*self.estimates.values(), self.logged]]
        return pd.DataFrame(rows).set_index("estimator")

    def __str__(self) -> str:
        lines = [f"off-policy evaluation on {self.n_rows:,} decisions, {self.n_actions} offers "
                 f"(ESS {self.diagnostics.ess:,.0f}); {self.level:.0%} intervals"]
        for e in [*self.estimates.values(), self.logged]:
            boot = "" if math.isnan(e.boot_low) else f"  boot [{e.boot_low:.5g}, {e.boot_high:.5g}]"
            lines.append(f"  {e.estimator:<12} {e.value:>12.5g}  [{e.ci_low:.5g}, {e.ci_high:.5g}]"
                         f"{boot}")
        lines += [f"  warning: {m}" for m in self.diagnostics.messages]
        return "\n".join(lines)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (n for equal weights, 0 for none)."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.dot(w, w))
    return 0.0 if s2 == 0.0 else float(w.sum()) ** 2 / s2


def _z(level: float) -> float:
    ndtri = require("scipy.special", "evaluate", "off-policy evaluation").ndtri

    return float(ndtri(0.5 + level / 2.0))


# One-pass variance (sum and dot) loses about eps * mean^2 / var of relative precision;
# below this var / mean^2 ratio (a 1e-10 relative error) the two-pass formula is used.
_ONE_PASS_MIN_CV2 = 1e-6


def _mean_se(t: np.ndarray) -> tuple[float, float]:
    """Mean of the terms and its CLT standard error sqrt(var / n)."""
    n = t.shape[0]
    s = float(t.sum())
    mean = s / n
    if n < 2:
        return mean, math.nan
    # sum and BLAS dot read the terms once each and allocate nothing (4x np.var's speed).
    var = (float(np.dot(t, t)) - s * mean) / (n - 1)
    if var < _ONE_PASS_MIN_CV2 * mean * mean:
        var = float(t.var(ddof=1))
    return mean, math.sqrt(max(var, 0.0) / n)


@dataclasses.dataclass
class _Rows:
    """Per-row quantities every estimator is built from."""

    w: np.ndarray  # importance weight of the logged offer
    dm: np.ndarray | None  # sum_a pi(a|x) q(x, a)
    qf: np.ndarray | None  # q(x, a_i)
    target_mass: np.ndarray  # (K,) sum over rows of pi(a | x_i), for offers never logged only
    unsupported: float  # sum over rows of the target mass where pi0 = 0 (action_probs known)
    n_known: int  # rows with a known logging distribution
    tp: np.ndarray | None  # (n, K) target probabilities, kept only when asked for


def _row_quantities(log: DecisionLog, policy: TargetPolicy, q: np.ndarray | None,
                    chunk_rows: int, keep_tp: bool = False) -> _Rows:
    n, k = len(log), log.n_actions
    fn = target_function(policy, n, k)
    contexts = log.contexts if log.contexts is not None else np.empty((n, 0))
    w = np.empty(n)
    dm = None if q is None else np.empty(n)
    qf = None if q is None else np.empty(n)
    mass = np.zeros(k)
    # Only offers the log never shows need the target's mass (for the support warning).
    unlogged = np.flatnonzero(np.bincount(log.actions, minlength=k) == 0)
    unsupported = 0.0
    n_known = 0
    tp_all = np.empty((n, k)) if keep_tp else None
    for lo in range(0, n, chunk_rows):
        rows = slice(lo, min(n, lo + chunk_rows))
        masks = None if log.eligible is None else log.eligible[rows]
        m = rows.stop - rows.start
        tp = check_target_chunk(fn(contexts[rows], masks, rows), m, k, masks, lo)
        a = log.actions[rows]
        idx = np.arange(m)
        w[rows] = tp[idx, a] / log.propensities[rows]
        if tp_all is not None:
            tp_all[rows] = tp
        if unlogged.size:
            mass[unlogged] += tp[:, unlogged].sum(axis=0)
        if q is not None and dm is not None and qf is not None:
            qc = q[rows]
            dm[rows] = np.einsum("ij,ij->i", tp, qc)
            qf[rows] = qc[idx, a]
        if log.action_probs is not None:
            ap = log.action_probs[rows]
            known = ~np.isnan(ap[:, 0])
            n_known += int(known.sum())
            unsupported += float(np.where(ap[known] > 0.0, 0.0, tp[known]).sum())
    return _Rows(w, dm, qf, mass, unsupported, n_known, tp_all)


def _terms(name: str, rows: _Rows, r: np.ndarray, clip_weight: float,
           switch_threshold: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(numerator terms, denominator terms or None for a plain mean, the weights used)."""
    w = rows.w
    if name == "ips":
        return w * r, None, w
    if name == "snips":
        return w * r, w, w
    if name == "clipped-ips":
        wc = np.minimum(w, clip_weight)
        return wc * r, None, wc
    dm, qf = rows.dm, rows.qf
    assert dm is not None and qf is not None  # MODEL_ESTIMATORS always have a model
    if name == "dm":
        return dm, None, np.ones_like(w)
    if name == "dr":
        return dm + w * (r - qf), None, w
    if name == "switch-dr":
        ws = np.where(w <= switch_threshold, w, 0.0)
        return dm + ws * (r - qf), None, ws
    if name == "clipped-dr":
        wc = np.minimum(w, clip_weight)
        return dm + wc * (r - qf), None, wc
    raise AssertionError(name)


def _dm_bootstrap(log: DecisionLog, tps: list[np.ndarray], model: RewardModel, n_boot: int,
                  seed: int) -> np.ndarray:
    """(n_boot, len(tps)) DM replicates: each refits the cross-fitted model once on a Poisson
    resample (the same counts as the Numba bootstrap's replicate) and averages
    sum_a pi q over the resample, for every target in `tps`."""
    from ._kernels import poisson_counts_reference

    reps = np.empty((n_boot, len(tps)))
    for b in range(n_boot):
        c = poisson_counts_reference(seed, b, len(log)).astype(np.float64)
        qb = model.cross_fit_predict(log.contexts, log.actions, log.rewards, log.n_actions,
                                     sample_weight=c)
        for j, tp in enumerate(tps):
            reps[b, j] = float(np.dot(c, np.einsum("ij,ij->i", tp, qb)) / c.sum())
    return reps


def _names(estimators: Sequence[str] | str) -> list[str]:
    names = list(ESTIMATORS) if estimators == "all" else (
        [estimators] if isinstance(estimators, str) else list(estimators))
    if not names:
        raise ValueError("estimators: expected at least one estimator")
    for name in names:
        if name not in ESTIMATORS:
            raise ValueError(f"estimators: unknown estimator {name!r}; expected some of "
                             f"{ESTIMATORS} or 'all'")
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: duplicates in {names}")
    return names


def bootstrap_interval(reps: np.ndarray, level: float) -> tuple[float, float, float]:
    """The percentile interval at `level` and the standard error of bootstrap replicates
    (non-finite replicates left out; NaNs when fewer than two remain)."""
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return math.nan, math.nan, math.nan
    lo, hi = np.quantile(reps, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi), float(reps.std(ddof=1))


def evaluate(log: Any, policy: TargetPolicy, estimators: Sequence[str] | str = DEFAULT_ESTIMATORS,
             *, level: float = 0.95, n_bootstrap: int = 0, seed: int = 0,
             reward_model: RewardModel | None = None, reward_predictions: Any = None,
             clip_weight: float = 10.0, switch_threshold: float = 10.0,
             n_bootstrap_dm: int | None = None, thresholds: DiagnosticThresholds | None = None,
             chunk_rows: int = 1_000_000) -> EvaluationReport:
    """Estimates the value of `policy` (reward per decision) from a decision log.

    log: a DecisionLog, a decision-log Parquet path / Table / DataFrame, or a mapping of
        arrays (see log.as_decision_log).
    policy: the target (see promobandit.evaluate.targets): an object with
        action_probabilities(contexts, masks), a function, or an (n, K) array.
    estimators: names from ESTIMATORS, or "all".
    level: confidence level of every interval, in (0, 1).
    n_bootstrap: Poisson-bootstrap replicates B (0: analytic intervals only). Rows are
        resampled with the reward model held fixed, except for DM (below).
    seed: seeds the bootstrap draws (and the reward model's folds when it is built here).
    reward_model: a RewardModel for dm / dr / switch-dr / clipped-dr (default:
        RewardModel() with Ridge, 5 folds, per-offer linear effects).
    reward_predictions: instead of a model, precomputed (n, K) predictions q(x_i, a)
        (should be cross-fitted, e.g. RewardModel.cross_fit_predict). DM then has no
        interval at all (its error is the model's, which only refitting shows).
    clip_weight: importance weights above this are clipped in clipped-ips / clipped-dr.
    switch_threshold: switch-dr uses the DR correction only where w <= this and the
        model alone elsewhere.
    n_bootstrap_dm: DM's bootstrap replicates, each refitting the reward model
        (n_folds fits): DM's only valid interval, and the costly part (default:
        n_bootstrap).
    thresholds: when to warn; see DiagnosticThresholds.
    chunk_rows: rows whose target probabilities are held in memory at once.

    Intervals: IPS, SNIPS (delta method) and DR are asymptotically valid. Clipped and
    switch estimators' intervals are for their own estimand, which is biased by the
    clipping or by the model where it replaces the weights. DM has no analytic
    interval (the spread of its terms ignores the model's error, which dominates).
    Returns an EvaluationReport. Warns (OPEWarning) on tiny propensities, huge weights,
    a small effective sample size, a mean weight far from one, or a target that uses
    offers outside the logging support. Raises ValueError naming the bad argument.
    """
    return _evaluate_policies(log, {"target": policy}, estimators, level, n_bootstrap, seed,
                              reward_model, reward_predictions, clip_weight, switch_threshold,
                              n_bootstrap_dm, thresholds, chunk_rows)["target"]


def evaluate_policies(log: Any, policies: Mapping[str, TargetPolicy],
                      estimators: Sequence[str] | str = DEFAULT_ESTIMATORS, *,
                      level: float = 0.95, n_bootstrap: int = 0, seed: int = 0,
                      reward_model: RewardModel | None = None, reward_predictions: Any = None,
                      clip_weight: float = 10.0, switch_threshold: float = 10.0,
                      n_bootstrap_dm: int | None = None,
                      thresholds: DiagnosticThresholds | None = None,
                      chunk_rows: int = 1_000_000) -> dict[str, EvaluationReport]:
    """``evaluate`` for several named target policies on one log: one reward-model fit,
    one set of DM refits and the same bootstrap resamples for all (so the replicates of
    two policies are paired). Arguments as in ``evaluate``; returns name -> report.
    Warnings name the policy they concern."""
    return _evaluate_policies(log, policies, estimators, level, n_bootstrap, seed,
                              reward_model, reward_predictions, clip_weight, switch_threshold,
                              n_bootstrap_dm, thresholds, chunk_rows)


def _evaluate_policies(log: Any, policies: Mapping[str, TargetPolicy],
                       estimators: Sequence[str] | str, level: float, n_bootstrap: int,
                       seed: int, reward_model: RewardModel | None, reward_predictions: Any,
                       clip_weight: float, switch_threshold: float,
                       n_bootstrap_dm: int | None, thresholds: DiagnosticThresholds | None,
                       chunk_rows: int) -> dict[str, EvaluationReport]:
    log = as_decision_log(log)
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError("policies: expected a non-empty mapping of name -> target policy")
    names = _names(estimators)
    level = check_range("level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, 0)
    n_boot_dm = n_bootstrap if n_bootstrap_dm is None else check_int("n_bootstrap_dm",
                                                                     n_bootstrap_dm, 0)
    seed = check_seed(seed)
    clip_weight = check_range("clip_weight", clip_weight, 0.0, lo_open=True)
    switch_threshold = check_range("switch_threshold", switch_threshold, 0.0)
    chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    th = thresholds or DiagnosticThresholds()
    n, k = len(log), log.n_actions

    q = None
    model: RewardModel | None = None
    if MODEL_ESTIMATORS.intersection(names):
        if reward_predictions is not None:
            q = np.asarray(reward_predictions)
            if q.shape != (n, k) or q.dtype.kind not in "fiu":
                raise ValueError(f"reward_predictions: expected a numeric array of shape "
                                 f"({n}, {k}), got {q.dtype} {q.shape}")
            q = q.astype(np.float64, copy=False)
            if not np.isfinite(q).all():
                raise ValueError("reward_predictions: contain NaN or inf")
        else:
            model = reward_model if reward_model is not None else RewardModel(seed=seed)
            q = model.cross_fit_predict(log.contexts, log.actions, log.rewards, k)
    refit_dm = "dm" in names and n_boot_dm > 0 and model is not None
    r = log.rewards
    z = _z(level)
    logged_mean, logged_se = _mean_se(r)
    logged = Estimate(estimator=LOGGED, value=logged_mean, stderr=logged_se,
                      ci_low=logged_mean - z * logged_se, ci_high=logged_mean + z * logged_se,
                      level=level, n_rows=n, ess=float(n), vs_logged=0.0, vs_logged_low=0.0,
                      vs_logged_high=0.0)

    all_rows: dict[str, _Rows] = {}
    all_estimates: dict[str, dict[str, Estimate]] = {}
    boot_cols: list[np.ndarray] = [r]  # column 0: the logged reward
    boot_spec: list[tuple[str, str, int, int | None]] = []  # policy, estimator, num, den
    for pname, policy in policies.items():
        rows = _row_quantities(log, policy, q, chunk_rows, keep_tp=refit_dm)
        all_rows[pname] = rows
        estimates: dict[str, Estimate] = {}
        for name in names:
            num, den, used_w = _terms(name, rows, r, clip_weight, switch_threshold)
            if den is None:
                value, se = _mean_se(num)
                infl = num  # the influence terms of a mean are its terms
            else:
                den_mean = float(den.mean())
                value = float(num.sum() / den.sum()) if den_mean > 0 else math.nan
                # Delta method: row i's influence on sum(w r) / sum(w) is w_i (r_i - V) / mean(w).
                infl = (num - value * den) / den_mean if den_mean > 0 else num * math.nan
                se = _mean_se(infl)[1]
                infl = infl + value  # centred on the value, like the terms of a mean
            d_se = _mean_se(infl - r)[1]
            if name == "dm":
                # The spread of sum_a pi q over rows ignores the error of the fitted model,
                # which dominates DM's error: no valid analytic interval.
                se = d_se = math.nan
            estimates[name] = Estimate(
                estimator=name, value=value, stderr=se, ci_low=value - z * se,
                ci_high=value + z * se, level=level, n_rows=n,
                ess=float(n) if name == "dm" else effective_sample_size(used_w),
                vs_logged=value - logged_mean, vs_logged_low=value - logged_mean - z * d_se,
                vs_logged_high=value - logged_mean + z * d_se)
            if name == "dm" or n_bootstrap == 0:
                continue  # DM is bootstrapped with refits, below
            boot_cols.append(num)
            i_num = len(boot_cols) - 1
            i_den = None
            if den is not None:
                boot_cols.append(den)
                i_den = len(boot_cols) - 1
            boot_spec.append((pname, name, i_num, i_den))
        all_estimates[pname] = estimates

    if n_bootstrap > 0:
        from ._kernels import bootstrap_sums

        sums = bootstrap_sums(np.column_stack(boot_cols), n_bootstrap, seed)
        counts = sums[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            for pname, name, i_num, i_den in boot_spec:
                reps = sums[:, i_num] / (counts if i_den is None else sums[:, i_den])
                lo, hi, bse = bootstrap_interval(reps, level)
                all_estimates[pname][name] = dataclasses.replace(
                    all_estimates[pname][name], boot_low=lo, boot_high=hi, boot_stderr=bse)
            lo, hi, bse = bootstrap_interval(sums[:, 0] / counts, level)
        logged = dataclasses.replace(logged, boot_low=lo, boot_high=hi, boot_stderr=bse)
    if refit_dm:
        assert model is not None
        tps = [all_rows[p].tp for p in policies]
        reps_dm = _dm_bootstrap(log, [t for t in tps if t is not None], model, n_boot_dm, seed)
        for j, pname in enumerate(policies):
            lo, hi, bse = bootstrap_interval(reps_dm[:, j], level)
            all_estimates[pname]["dm"] = dataclasses.replace(
                all_estimates[pname]["dm"], boot_low=lo, boot_high=hi, boot_stderr=bse)

    settings = {"estimators": tuple(names), "n_bootstrap": n_bootstrap,
                "n_bootstrap_dm": n_boot_dm if "dm" in names else 0, "seed": seed,
                "clip_weight": clip_weight, "switch_threshold": switch_threshold,
                "thresholds": dataclasses.asdict(th),
                "reward_model": (("predictions given" if reward_predictions is not None
                                  else repr(model)) if q is not None else None)}
    reports = {}
    for pname in policies:
        diagnostics = _diagnose(log, all_rows[pname], th, names, clip_weight, switch_threshold)
        prefix = "" if len(policies) == 1 else f"{pname}: "
        for message in diagnostics.messages:
            # 3: past this function and its public wrapper, at the caller's line.
            warnings.warn(prefix + message, OPEWarning, stacklevel=3)
        reports[pname] = EvaluationReport(n, k, level, all_estimates[pname], logged,
                                          diagnostics, dict(settings))
    return reports


def _diagnose(log: DecisionLog, rows: _Rows, th: DiagnosticThresholds, names: Sequence[str],
              clip_weight: float, switch_threshold: float) -> Diagnostics:
    n, k = len(log), log.n_actions
    w = rows.w
    positive = w > 0.0
    n_positive = int(positive.sum())
    n_informative = int((positive & (log.rewards != 0.0)).sum())
    clipped = switched = math.nan
    if n_positive and ("clipped-ips" in names or "clipped-dr" in names):
        clipped = float((w > clip_weight).sum()) / n_positive
    if n_positive and "switch-dr" in names:
        switched = float((w > switch_threshold).sum()) / n_positive
    ess = effective_sample_size(w)
    w_mean, w_se = _mean_se(w)
    return _make_diagnostics(
        n, ess, w_mean, w_se, float(w.max()), float(np.quantile(w, 0.99)),
        float(log.propensities.min()), int((log.propensities < th.min_propensity).sum()),
        np.bincount(log.actions, minlength=k), rows.target_mass, rows.unsupported,
        rows.n_known, n_informative, clipped, switched, clip_weight, switch_threshold, th)


def _make_diagnostics(n: int, ess: float, w_mean: float, w_se: float, w_max: float,
                      w_q99: float, p_min: float, n_tiny: int, logged_counts: np.ndarray,
                      target_mass: np.ndarray, unsupported_sum: float, n_known: int,
                      n_informative: int, clipped: float, switched: float,
                      clip_weight: float, switch_threshold: float,
                      th: DiagnosticThresholds) -> Diagnostics:
    """Diagnostics and their warnings from totals over the log (shared by the in-memory
    and the streaming paths; the streaming one has no exact weight quantile: NaN)."""
    mass = target_mass / n
    unlogged = tuple(int(a) for a in np.flatnonzero((logged_counts == 0) & (mass > 0.0)))
    unlogged_mass = float(mass[list(unlogged)].sum()) if unlogged else 0.0
    unsupported = unsupported_sum / n_known if n_known else math.nan

    msgs = []
    if n_tiny:
        msgs.append(f"{n_tiny} of {n} rows have a logged propensity below "
                    f"{th.min_propensity:g} (smallest {p_min:.3g}): each can weigh up to "
                    f"{1.0 / p_min:.3g} rows in IPS/DR")
    if w_max > th.max_weight:
        q99 = "" if math.isnan(w_q99) else f"; 99th percentile {w_q99:.3g}"
        msgs.append(f"importance weights reach {w_max:.4g} (> {th.max_weight:g}{q99}): "
                    "IPS/DR variance is dominated by a few rows; consider "
                    "clipped or switch estimators")
    if ess < th.min_ess_fraction * n:
        msgs.append(f"effective sample size {ess:.1f} is {ess / n:.2%} of {n} rows "
                    f"(< {th.min_ess_fraction:.2%}): the target is far from the logging policy")
    if unlogged_mass > th.unsupported_mass:
        msgs.append(f"the target chooses offers {list(unlogged)} that the log never shows, for "
                    f"{unlogged_mass:.2%} of its decisions: IPS/DR cannot see their rewards "
                    "(biased towards zero for those decisions); only DM extrapolates")
    if not math.isnan(unsupported) and unsupported > th.unsupported_mass:
        msgs.append(f"support mismatch: {unsupported:.2%} of the target's decisions are offers "
                    "the logging policy could not choose (probability 0); IPS/DR are biased")
    off = abs(w_mean - 1.0)
    # Constant weights have no standard error; then only float rounding may separate them from 1.
    if (w_se > 0 and off > th.weight_mean_z * w_se) or (w_se == 0 and off > PROB_ATOL):
        msgs.append(f"mean importance weight is {w_mean:.4g} (standard error {w_se:.2g}), "
                    "expected 1: the logged propensities may be wrong, or the target leaves "
                    "the logging support")
    if n_informative < th.min_informative_rows:
        msgs.append(f"only {n_informative} rows have a positive weight and a non-zero reward "
                    f"(< {th.min_informative_rows}): the weighted estimates rest on a handful "
                    "of events and their normal intervals are unreliable")
    for what, share, knob in (("clip_weight", clipped, clip_weight),
                              ("switch_threshold", switched, switch_threshold)):
        if share > th.max_modified_share:
            msgs.append(f"{what}={knob:g} changes the weights of {share:.0%} of the rows the "
                        "target agrees with: those estimates and their intervals are mostly "
                        f"the {'clipping' if what == 'clip_weight' else 'reward model'}'s")
    return Diagnostics(n_rows=n, ess=ess, ess_fraction=ess / n, weight_mean=w_mean,
                       weight_mean_stderr=w_se, weight_max=w_max, weight_q99=w_q99,
                       min_propensity=p_min, n_tiny_propensity=n_tiny, unlogged_offers=unlogged,
                       unlogged_mass=unlogged_mass, unsupported_mass=unsupported,
                       n_informative=n_informative, clipped_share=clipped,
                       switched_share=switched, messages=tuple(msgs))
