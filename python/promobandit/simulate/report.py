"""The simulation report: a summary table with intervals, plots and a verdict, as one HTML file.

``summarise(result)`` turns a ``simulate.pipeline.SimulationResult`` into per-policy
numbers with confidence intervals; ``summary_text`` prints them as a table;
``verdict`` says in plain words what they mean; ``write_report`` writes a
self-contained HTML page (plots as inline SVG, no scripts, no network) plus the table as
CSV and JSON.

Intervals: the run is cut into its simulated days and the days are resampled with
replacement (a bootstrap over days, ``ReportSettings.bootstrap`` resamples, percentile
intervals at ``ReportSettings.confidence``). Differences between two policies resample
the same days for both: every policy met the same shoppers (common random numbers), so
the paired interval is much narrower than the two separate ones.

Definitions (money in the catalogue's currency, rates as fractions):

* profit = paid - cost of goods of the purchases of the decisions' sessions; revenue =
  paid; conversion = purchases / sessions (all sessions of the run, clicked or not);
* discount spend = discount of those purchases, whoever gave it (the session's offer, or
  a coupon or time-limited offer from an earlier decision);
* return on discount spend = (profit - profit of no discount) / discount spend;
* regret = expected profit of the best eligible offer for the context minus that of the
  offer made, summed (exact: the simulator knows both);
* fairness gap = largest difference between two groups' average offered discount depth
  (the chosen offer's quoted cost over the basket's list price);
* budget use = discount spend / (daily budget x days), for runs with pacing.

The A/B test (``simulate.abtest``, when ``[abtest]`` is on) is reported per shopper in
the experiment (shoppers with an offer decision): conversion (a fraction), revenue and
profit per shopper (currency), the treatment's difference and relative lift against the
control with analytic and bootstrap intervals at the same confidence, the CUPED-adjusted
difference (pre-period metric: the shopper's spend before the run), the mSPRT
always-valid p-value, and the SRM check of the split.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._extras import require
from ..events import SECONDS_PER_DAY
from .headroom import FEATURE_GROUPS, Headroom, feature_oracle, policy_shares

if TYPE_CHECKING:
    from .pipeline import SimulationResult
    from .run import PolicyRun

NO_DISCOUNT_KEY_PREFIX = "fixed:"
HEADLINE_KEYS = ("lints+pacing", "lints+pacing+fairness", "lints")

# Colours of the plots (matplotlib's tab10, fixed so a policy keeps its colour).
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its (lo, hi) interval."""

    value: float
    lo: float
    hi: float

    def fmt(self, spec: str = ",.0f") -> str:
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


@dataclasses.dataclass
class PolicySummary:
    """The numbers of one policy (see the module for the definitions)."""

    key: str
    label: str
    fixed: bool
    decisions: int
    profit: Interval
    revenue: float
    conversion: float
    spend: float
    return_on_spend: float | None
    regret: float
    regret_first_quarter: float
    regret_last_quarter: float
    regret_vs_best_fixed: float
    regret_fixed_first_quarter: float
    regret_fixed_last_quarter: float
    vs_best_fixed: Interval | None
    budget_use: float | None
    fairness_gap_region: float
    fairness_gap_tenure: float
    depth_by_group: dict[str, float]
    offer_mix: dict[str, float]
    seconds: float
    unbooked: float
    # Share of the reachable headroom (simulate.headroom): (expected profit - the best
    # fixed offer's) / (feature oracle - the best fixed offer's); None without one.
    headroom_share: float | None = None


# Power at which the A/B table states the smallest detectable lift (a fraction).
AB_POWER = 0.8
AB_METRIC_LABELS = {"converted": "conversion", "revenue": "revenue per shopper",
                    "profit": "profit per shopper"}


@dataclasses.dataclass
class ABMetric:
    """One metric of the A/B test, per shopper in the experiment.

    metric: "converted", "revenue" or "profit"; label: its words. control, treatment:
    the variants' means (conversion a fraction, money in currency). diff: treatment -
    control with its analytic interval (Wald / Welch); lift: treatment / control - 1
    (delta method); boot_lift: the Poisson-bootstrap percentile interval of the lift
    (None without bootstrap); p_value: two-proportion z-test (conversion) or Welch t.
    cuped_diff, cuped_lift, cuped_p_value: the same after CUPED (None without a
    pre-period metric); variance_reduction: 1 - var(adjusted) / var(raw).
    seq_p_value: the mSPRT always-valid p-value (None when not computed).
    mde: the relative lift the test detects with probability AB_POWER (two-sided, at
    the confidence level), from the difference's standard error.
    """

    metric: str
    label: str
    control: float
    treatment: float
    diff: Interval
    lift: Interval
    boot_lift: Interval | None
    p_value: float
    cuped_diff: Interval | None
    cuped_lift: Interval | None
    cuped_p_value: float | None
    variance_reduction: float | None
    seq_p_value: float | None
    mde: float | None


@dataclasses.dataclass
class ABSummary:
    """The A/B test of the run (see simulate.abtest).

    control_*, treatment_*: the variants' policies (key, label). weights: intended
    shares of shoppers; salt: the assignment's salt. shoppers: shoppers in the
    experiment per variant (with an offer decision); expected: what the weights
    predict; decisions: offer decisions per variant. srm_p_value / srm_alpha /
    srm_mismatch: the sample-ratio check. confidence: level of intervals and tests.
    metrics: conversion, revenue, profit. pre_metric: the CUPED covariate (None: none).
    full_traffic_lift: profit of the treatment's policy over the control's in the
    full-traffic runs (same shoppers, same draws; None unless both ran).
    counterfactual_lift: the treatment shoppers' profit in the test over what the same
    shoppers made, with the same draws, in the control's full-traffic run: the lift a
    noise-free test of this split would find (exact for a fixed-offer control, whose
    outcomes for a shopper do not depend on the other shoppers; else None). budget_daily:
    each variant's daily budget if it paces (currency), else None. sentence: the verdict.
    """

    control_key: str
    control_label: str
    treatment_key: str
    treatment_label: str
    weights: tuple[float, float]
    salt: str
    shoppers: tuple[int, int]
    expected: tuple[float, float]
    decisions: tuple[int, int]
    srm_p_value: float
    srm_alpha: float
    srm_mismatch: bool
    confidence: float
    metrics: list[ABMetric]
    pre_metric: str | None
    full_traffic_lift: float | None
    counterfactual_lift: float | None
    budget_daily: tuple[float | None, float | None]
    sentence: str

    def metric(self, name: str) -> ABMetric | None:
        return next((m for m in self.metrics if m.metric == name), None)


@dataclasses.dataclass
class Summary:
    """Every policy's numbers and the comparisons the verdict is built from.

    best_fixed: key of the fixed offer with the most profit (in hindsight);
    best_discount: of the fixed offers that discount; none_key: no discount;
    headline: the contextual policy the verdict is about (LinTS with pacing if run).
    margin: the headline's profit over best_fixed (relative, with its paired interval);
    margin_discount: over best_discount. abtest: the A/B test (None when off).
    """

    policies: list[PolicySummary]
    best_fixed: str | None
    best_discount: str | None
    none_key: str | None
    headline: str | None
    margin: Interval | None
    margin_discount: Interval | None
    confidence: float
    days: int
    sessions: int
    decisions: int
    budget_daily: float | None
    fairness_max_gap: float | None
    fairness_group: str
    ctr: float
    expected_ctr: dict[str, float]
    timings: dict[str, float]
    learner_offers: tuple[str, ...]
    offer_ids: tuple[str, ...]
    abtest: ABSummary | None = None
    # The feature oracle and the full oracle (simulate.headroom); None without fixed runs.
    headroom: Headroom | None = None

    def get(self, key: str | None) -> PolicySummary | None:
        return next((p for p in self.policies if p.key == key), None)


# --- numbers --------------------------------------------------------------------------

def _per_day(values: np.ndarray, day: np.ndarray, days: int) -> np.ndarray:
    return np.bincount(day, weights=values, minlength=days)[:days]


def _bootstrap_idx(days: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 7]).integers(0, days, size=(n, days))


def _interval(samples: np.ndarray, value: float, confidence: float) -> Interval:
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return Interval(float(value), float(lo), float(hi))


def _quarters(x: np.ndarray) -> tuple[float, float]:
    q = max(len(x) // 4, 1)
    return float(x[:q].mean()) if len(x) else 0.0, float(x[-q:].mean()) if len(x) else 0.0


def summarise(result: SimulationResult) -> Summary:
    """Per-policy numbers with bootstrap intervals over days (see the module)."""
    cfg, sc = result.config, result.scenario
    mk, dec = sc.market, sc.decisions
    days = sc.days
    conf = cfg.report.confidence
    idx = _bootstrap_idx(days, cfg.report.bootstrap, cfg.seed)
    ids = mk.catalogue.ids
    runs = result.runs
    daily = {r.spec.key: _per_day(r.profit, dec.day, days) for r in runs}
    fixed = [r for r in runs if r.spec.policy == "fixed"]
    none_key = next((r.spec.key for r in fixed if r.spec.offer == ids[mk.none_offer]), None)
    best_fixed = max(fixed, key=lambda r: r.profit.sum()).spec.key if fixed else None
    discounts = [r for r in fixed if r.spec.key != none_key]
    best_discount = max(discounts, key=lambda r: r.profit.sum()).spec.key if discounts else None
    keys = [r.spec.key for r in runs]
    headline = next((k for k in HEADLINE_KEYS if k in keys), None)
    if headline is None:
        learners = [r for r in runs if r.spec.policy != "fixed"]
        headline = max(learners, key=lambda r: r.profit.sum()).spec.key if learners else None
    none_profit = next((r.profit.sum() for r in runs if r.spec.key == none_key), None)
    region = mk.user_region[dec.user]
    tenure = mk.user_new[dec.user]
    regions = mk.config.regions
    budget = sc.engine.budget
    headroom = shares = None
    if best_fixed is not None and any(r.spec.policy != "fixed" for r in runs):
        learn = set(cfg.learner_offer_ids())
        names = list(sc.contexts.names)
        for spec in (r.spec for r in runs):
            names += [f for f in (spec.features or ()) if f not in names]
        headroom = feature_oracle(sc, offers=[i for i, o in enumerate(ids) if o in learn],
                                  features=names, groups=FEATURE_GROUPS)
        shares = policy_shares(headroom, runs, best_fixed)
    rows = []
    for r in runs:
        p = daily[r.spec.key]
        boots = p[idx].sum(axis=1)
        vs = None
        if best_fixed is not None and r.spec.key != best_fixed:
            b = daily[best_fixed]
            rel = p[idx].sum(axis=1) / b[idx].sum(axis=1) - 1.0
            vs = _interval(rel, p.sum() / b.sum() - 1.0, conf)
        spend = float(r.saving.sum())
        ros = None
        if none_profit is not None and spend > 0:
            ros = (float(r.profit.sum()) - float(none_profit)) / spend
        q1, q4 = _quarters(r.regret)
        rf = r.regret_fixed(mk.none_offer)
        rf1, rf4 = _quarters(rf)
        depth_by_group = {name: float(r.depth[region == i].mean()) if (region == i).any()
                          else 0.0 for i, name in enumerate(regions)}
        depth_by_group["new"] = float(r.depth[tenure].mean()) if tenure.any() else 0.0
        depth_by_group["returning"] = float(r.depth[~tenure].mean()) if (~tenure).any() else 0.0
        reg_vals = [depth_by_group[n] for n in regions if (region == regions.index(n)).any()]
        rows.append(PolicySummary(
            key=r.spec.key, label=r.spec.label, fixed=r.spec.policy == "fixed",
            decisions=len(r.offer), profit=_interval(boots, float(p.sum()), conf),
            revenue=float(r.revenue.sum()),
            conversion=float((r.outcome > 0).sum() / max(sc.n_sessions, 1)),
            spend=spend, return_on_spend=ros, regret=float(r.regret.sum()),
            regret_first_quarter=q1, regret_last_quarter=q4,
            regret_vs_best_fixed=float(rf.sum()), regret_fixed_first_quarter=rf1,
            regret_fixed_last_quarter=rf4,
            vs_best_fixed=vs,
            budget_use=(spend / (budget.amount * days)) if (r.spec.pacing and budget) else None,
            fairness_gap_region=(max(reg_vals) - min(reg_vals)) if len(reg_vals) > 1 else 0.0,
            fairness_gap_tenure=abs(depth_by_group["new"] - depth_by_group["returning"])
            if tenure.any() and (~tenure).any() else 0.0,
            depth_by_group=depth_by_group,
            offer_mix={ids[k]: float(v) for k, v in enumerate(
                np.bincount(r.offer, minlength=len(ids)) / max(len(r.offer), 1))},
            seconds=r.seconds, unbooked=r.unbooked,
            headroom_share=None if shares is None else shares[r.spec.key]))
    margin = margin_discount = None
    if headline is not None:
        h = daily[headline]
        for target in ("best_fixed", "best_discount"):
            key = best_fixed if target == "best_fixed" else best_discount
            if key is None or key == headline:
                continue
            b = daily[key]
            rel = h[idx].sum(axis=1) / b[idx].sum(axis=1) - 1.0
            iv = _interval(rel, h.sum() / b.sum() - 1.0, conf)
            if target == "best_fixed":
                margin = iv
            else:
                margin_discount = iv
    return Summary(
        policies=rows, best_fixed=best_fixed, best_discount=best_discount, none_key=none_key,
        headline=headline, margin=margin, margin_discount=margin_discount, confidence=conf,
        days=days, sessions=sc.n_sessions, decisions=len(dec),
        budget_daily=budget.amount if budget else None,
        fairness_max_gap=sc.engine.fairness.max_gap if sc.engine.fairness else None,
        fairness_group=sc.engine.fairness_group, ctr=result.recommender.ctr,
        expected_ctr=dict(result.recommender.expected_ctr), timings=dict(result.timings),
        learner_offers=cfg.learner_offer_ids(), offer_ids=ids,
        abtest=summarise_abtest(result) if result.abtest is not None else None,
        headroom=headroom)


def summarise_abtest(result: SimulationResult) -> ABSummary:
    """The A/B test's numbers (see ABSummary); needs result.abtest."""
    ndtri = require("scipy.special", "simulate", "the simulation report").ndtri

    ab = result.abtest
    assert ab is not None
    rep = ab.report
    level = float(rep.settings["level"])
    z = float(ndtri(0.5 + level / 2.0))
    z_power = float(ndtri(AB_POWER))
    metrics = []
    for name in rep.settings["metrics"]:
        raw = next(m for m in rep.metrics if m.metric == name and not m.cuped)
        cup = next((m for m in rep.metrics if m.metric == name and m.cuped), None)
        boot = (Interval(raw.lift, raw.boot_lift_low, raw.boot_lift_high)
                if math.isfinite(raw.boot_lift_low) else None)
        se = (raw.diff_high - raw.diff) / z
        metrics.append(ABMetric(
            metric=name, label=AB_METRIC_LABELS.get(name, name), control=raw.mean_control,
            treatment=raw.mean_treatment, diff=Interval(raw.diff, raw.diff_low, raw.diff_high),
            lift=Interval(raw.lift, raw.lift_low, raw.lift_high), boot_lift=boot,
            p_value=raw.p_value,
            cuped_diff=Interval(cup.diff, cup.diff_low, cup.diff_high) if cup else None,
            cuped_lift=Interval(cup.lift, cup.lift_low, cup.lift_high) if cup else None,
            cuped_p_value=cup.p_value if cup else None,
            variance_reduction=cup.variance_reduction if cup else None,
            seq_p_value=raw.seq_p_value if math.isfinite(raw.seq_p_value) else None,
            mde=((z + z_power) * se / abs(raw.mean_control)
                 if raw.mean_control != 0 and math.isfinite(se) else None)))
    srm = rep.srm
    counts = dict(zip(srm.variants, srm.observed, strict=True))
    expect = dict(zip(srm.variants, srm.expected, strict=True))
    names = ("control", "treatment")
    full = None
    keys = {r.spec.key: r for r in result.runs}
    if ab.control.key in keys and ab.treatment.key in keys:
        c = float(keys[ab.control.key].profit.sum())
        full = float(keys[ab.treatment.key].profit.sum()) / c - 1.0 if c != 0 else None
    counterfactual = None
    if ab.control.policy == "fixed" and ab.control.key in keys:
        treated = ab.split.variant == 1
        base = float(keys[ab.control.key].profit[treated].sum())
        if base != 0:
            counterfactual = float(ab.split.profit[treated].sum()) / base - 1.0
    budget = result.scenario.engine.budget
    daily = tuple(budget.amount * w if (spec.pacing and budget is not None) else None
                  for spec, w in ((ab.control, ab.weights[0]), (ab.treatment, ab.weights[1])))
    out = ABSummary(
        control_key=ab.control.key, control_label=ab.control.label,
        treatment_key=ab.treatment.key, treatment_label=ab.treatment.label,
        weights=ab.weights, salt=ab.salt,
        shoppers=(counts.get(names[0], 0), counts.get(names[1], 0)),
        expected=(expect.get(names[0], 0.0), expect.get(names[1], 0.0)),
        decisions=ab.decisions_per_variant(), srm_p_value=srm.p_value, srm_alpha=srm.alpha,
        srm_mismatch=srm.mismatch, confidence=level, metrics=metrics,
        pre_metric=("spend before the run" if rep.settings["pre_metric"] else None),
        full_traffic_lift=full, counterfactual_lift=counterfactual, budget_daily=(daily[0], daily[1]), sentence="")
    out.sentence = abtest_sentence(out)
    return out


def abtest_sentence(a: ABSummary) -> str:
    """One plain sentence: the treatment's profit lift per shopper and the SRM check."""
    m = a.metric("profit") or a.metrics[-1]
    level = f"{100 * a.confidence:.0f}%"
    sig = m.p_value < 1.0 - a.confidence
    change = (f"{_pct(m.lift.value)} [{_pct(m.lift.lo)}, {_pct(m.lift.hi)}]")
    if not sig:
        did = f"changed {m.label} by {change}"
    elif m.lift.value > 0:
        did = f"raised {m.label} by {change}"
    else:
        did = f"lowered {m.label}: {change}"
    what = (f"significant at {level}, p = {m.p_value:.2g}" if sig else
            f"not distinguishable from zero at {level}, p = {m.p_value:.2g}")
    srm = (f"SRM check passed (p = {a.srm_p_value:.2f})" if not a.srm_mismatch else
           f"SRM check FAILED (p = {a.srm_p_value:.2g}): the split is broken, do not trust "
           "these numbers")
    return (f"Treatment ({a.treatment_label}) {did} against control ({a.control_label}), "
            f"{what}; {srm}.")


# --- words ----------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100.0 * x:+.1f}%"


def verdict(s: Summary) -> str:
    """A few plain sentences generated from the numbers."""
    h, bf, bd = s.get(s.headline), s.get(s.best_fixed), s.get(s.best_discount)
    if h is None or bf is None:
        return "Run a learning policy and the fixed offers to get a verdict."
    out = []
    level = f"{100 * s.confidence:.0f}%"
    if s.margin is not None:
        sig = ("a real gain" if s.margin.lo > 0 else "a real loss" if s.margin.hi < 0
               else "not distinguishable from zero")
        out.append(f"{h.label} earned {_pct(s.margin.value)} profit ({level} interval "
                   f"{_pct(s.margin.lo)} to {_pct(s.margin.hi)}, {sig}) against the best fixed "
                   f"offer in hindsight, {bf.label}.")
    if bd is not None and bd.key != bf.key and s.margin_discount is not None:
        ratio = h.spend / bd.spend if bd.spend > 0 else float("inf")
        out.append(f"Against the best fixed discount, {bd.label}, it earned "
                   f"{_pct(s.margin_discount.value)} profit at {100 * ratio:.0f}% of that "
                   f"offer's discount spend.")
    elif bd is not None and bd.key == bf.key and bf.spend > 0:
        out.append(f"It gave {100 * h.spend / bf.spend:.0f}% of the discount {bf.label} gave.")
    if h.budget_use is not None and s.budget_daily is not None:
        out.append(f"It used {100 * h.budget_use:.0f}% of its {s.budget_daily:,.0f} a day "
                   f"discount budget.")
    if h.return_on_spend is not None:
        out.append(f"Each unit of discount it gave returned {h.return_on_spend:+.2f} in profit "
                   f"over no discount.")
    if h.regret_first_quarter > 0:
        drop = 1.0 - h.regret_last_quarter / h.regret_first_quarter
        how = f"fell by {100 * drop:.0f}%" if drop >= 0 else f"rose by {-100 * drop:.0f}%"
        out.append(f"Its regret per decision {how} from the first to the last quarter of the "
                   f"run ({h.regret_first_quarter:.2f} to {h.regret_last_quarter:.2f}; the "
                   f"rest is what its features cannot tell apart).")
    learners = [p for p in s.policies if not p.fixed]
    if learners:
        best = max(learners, key=lambda p: p.profit.value)
        if best.key != h.key:
            out.append(f"The most profitable learner was {best.label} "
                       f"({_pct(best.vs_best_fixed.value) if best.vs_best_fixed else 'n/a'} "
                       f"against the best fixed offer).")
    fair = s.get("lints+pacing+fairness")
    if fair is not None and s.fairness_max_gap is not None:
        gap = fair.fairness_gap_region if s.fairness_group == "region" else fair.fairness_gap_tenure
        base = h.fairness_gap_region if s.fairness_group == "region" else h.fairness_gap_tenure
        out.append(f"With the fairness bound ({s.fairness_max_gap:.0%} across "
                   f"{s.fairness_group}s), the gap in average discount depth went from "
                   f"{base:.1%} to {gap:.1%}, at {_pct(fair.profit.value / h.profit.value - 1)} "
                   f"profit.")
    if s.expected_ctr:
        out.append(f"The two-tower recommender's lists got clicks in {s.ctr:.1%} of sessions "
                   f"(popularity: {s.expected_ctr.get('popularity', float('nan')):.1%}, "
                   f"random: {s.expected_ctr.get('random', float('nan')):.1%}, the ceiling "
                   f"with the true tastes: {s.expected_ctr.get('oracle', float('nan')):.1%}).")
    return " ".join(out)


def _share(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100.0 * x:.0f}%"


def headroom_sentence(h: Headroom) -> str:
    """The oracles in words (expected profit over the run's decisions, currency)."""
    room = h.full_oracle - h.best_fixed
    reach = h.feature_oracle - h.best_fixed
    frac = f"{100 * reach / room:.0f}%" if room > 0 else "n/a"
    return (f"headroom: expected profit of the best fixed offer {h.best_fixed:,.0f}, of the "
            f"feature oracle (the best policy of the engine's features) {h.feature_oracle:,.0f}, "
            f"of the full oracle (hidden tastes included) {h.full_oracle:,.0f}: the features "
            f"reach {frac} of the headroom; the headroom column is each policy's share of "
            f"that reachable part, (policy - best fixed) / (feature oracle - best fixed), "
            f"in expected profit." + _groups_sentence(h))


def _groups_sentence(h: Headroom) -> str:
    if not h.groups:
        return ""
    parts = ", ".join(f"{name} {_share(h.share(v))}" for name, v in h.groups.items())
    return (f" Each feature group alone (with the basket's money) reaches, of that part: "
            f"{parts}.")


def summary_text(s: Summary) -> str:
    """The summary table for a terminal (monospace)."""
    level = f"{100 * s.confidence:.0f}%"
    head = (f"{'policy':<34}{'profit [' + level + ' CI]':>36}{'vs best fixed':>15}"
            f"{'conv.':>7}{'disc. spend':>13}{'ROI':>7}{'regret':>10}{'reg/dec Q1>Q4':>16}"
            f"{'budget':>8}{'headroom':>10}")
    lines = [head, "-" * len(head)]
    for p in s.policies:
        mark = " *" if p.key == s.best_fixed else ""
        vs = _pct(p.vs_best_fixed.value) if p.vs_best_fixed else "(best)"
        roi = f"{p.return_on_spend:+.2f}" if p.return_on_spend is not None else "-"
        bud = f"{100 * p.budget_use:.0f}%" if p.budget_use is not None else "-"
        lines.append(f"{(p.label + mark)[:33]:<34}{p.profit.fmt():>36}{vs:>15}"
                     f"{100 * p.conversion:>6.1f}%{p.spend:>13,.0f}{roi:>7}{p.regret:>10,.0f}"
                     f"{p.regret_first_quarter:>8.2f}>{p.regret_last_quarter:<7.2f}{bud:>8}"
                     f"{_share(p.headroom_share):>10}")
    lines.append(f"* best fixed offer in hindsight. {s.sessions:,} sessions, {s.decisions:,} "
                 f"offer decisions, {s.days} days; intervals: bootstrap over days.")
    if s.headroom is not None:
        lines.append(headroom_sentence(s.headroom))
    if s.abtest is not None:
        a = s.abtest
        lines.append(f"A/B test ({a.shoppers[0]:,} control / {a.shoppers[1]:,} treatment "
                     f"shoppers): {a.sentence}")
    return "\n".join(lines)


# --- plots ----------------------------------------------------------------------------

def _thin(*arrays: np.ndarray, points: int = 600) -> list[np.ndarray]:
    """Every array sampled at the same `points` evenly spaced rows (curves stay small)."""
    n = arrays[0].shape[0]
    if n <= points:
        return list(arrays)
    idx = np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))
    return [a[idx] for a in arrays]


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    # No metadata block: it carries a date (the page would differ run to run) and RDF
    # namespaces nobody reads.
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    plt = require("matplotlib.pyplot", "report", "the simulation report's plots")

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 7.5, height: float = 3.6) -> tuple[Any, Any]:
    matplotlib = require("matplotlib", "report", "the simulation report's plots")

    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", "report", "the simulation report's plots")

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "promobandit",
                         "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt.subplots(figsize=(width, height))


def _shown(s: Summary, runs: Sequence[PolicyRun], top: int) -> list[PolicyRun]:
    """The runs drawn in curves: the baselines, the headline and the best learners."""
    keep = {s.none_key, s.best_fixed, s.best_discount, s.headline}
    learners = sorted((r for r in runs if r.spec.policy != "fixed"),
                      key=lambda r: -r.profit.sum())
    keep |= {r.spec.key for r in learners[:top]}
    return [r for r in runs if r.spec.key in keep]


def plots(result: SimulationResult, s: Summary) -> dict[str, str]:
    """Inline SVG of every plot, by name."""
    sc = result.scenario
    dec = sc.decisions
    t_days = (dec.time - sc.start) / SECONDS_PER_DAY
    runs = _shown(s, result.runs, result.config.report.top_policies)
    colour = {r.spec.key: _COLOURS[i % len(_COLOURS)] for i, r in enumerate(runs)}
    out: dict[str, str] = {}
    base = next((r for r in result.runs if r.spec.key == s.best_fixed), None)

    fig, ax = _figure()
    for r in runs:
        y = np.cumsum(r.profit) - (np.cumsum(base.profit) if base is not None else 0.0)
        tx, ty = _thin(t_days, y)
        ax.plot(tx, ty, label=r.spec.label, color=colour[r.spec.key],
                lw=2.6 if r.spec.key == s.headline else 1.2)
    ax.axhline(0.0, color="#444", lw=0.6)
    ax.set_xlabel("day of the run")
    ax.set_ylabel("cumulative profit minus best fixed")
    ax.set_title("Cumulative profit against the best fixed offer in hindsight")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    out["profit"] = _svg(fig)

    fig, ax = _figure()
    for r in runs:
        tx, ty = _thin(t_days, np.cumsum(r.regret))
        ax.plot(tx, ty, label=r.spec.label, color=colour[r.spec.key],
                lw=2.6 if r.spec.key == s.headline else 1.2)
    ax.set_xlabel("day of the run")
    ax.set_ylabel("cumulative regret (currency)")
    ax.set_title("Cumulative regret against the best offer for each context (exact)")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    out["regret"] = _svg(fig)

    fig, ax = _figure()
    per_day = np.maximum(np.bincount(dec.day, minlength=sc.days)[:sc.days], 1)
    for r in runs:
        daily = np.bincount(dec.day, weights=r.regret, minlength=sc.days)[:sc.days] / per_day
        ax.plot(np.arange(sc.days) + 0.5, daily, marker="o", ms=2.5, label=r.spec.label,
                color=colour[r.spec.key], lw=2.6 if r.spec.key == s.headline else 1.2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("day of the run")
    ax.set_ylabel("regret per decision (currency)")
    ax.set_title("Regret per decision, by day: learning shows as a falling curve")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    out["regret_daily"] = _svg(fig)

    paced = [r for r in result.runs if r.spec.pacing]
    if paced and sc.engine.budget is not None:
        fig, ax = _figure()
        st = (sc.step_times - sc.start) / SECONDS_PER_DAY
        for i, r in enumerate(paced):
            c = _COLOURS[(i + 3) % len(_COLOURS)]
            ax.plot(st, r.step_spent, color=c, lw=1.2, label=f"{r.spec.label}: spent")
        ax.plot(st, paced[0].step_planned, color="#444", lw=1.0, ls="--", label="plan")
        ax.axhline(sc.engine.budget.amount, color="#d62728", lw=0.8, ls=":",
                   label="daily budget")
        ax.set_xlabel("day of the run")
        ax.set_ylabel("discount spent in the day (currency)")
        ax.set_title("Budget pacing: spend within each day against the plan")
        ax.legend(fontsize=7, frameon=False)
        out["budget"] = _svg(fig)

    head = next((r for r in result.runs if r.spec.key == s.headline), None)
    if head is not None:
        fig, ax = _figure()
        days = sc.days
        ids = s.offer_ids
        mix = np.zeros((len(ids), days))
        for k in range(len(ids)):
            mix[k] = np.bincount(dec.day[head.offer == k], minlength=days)[:days]
        mix /= np.maximum(mix.sum(axis=0, keepdims=True), 1)
        ax.stackplot(np.arange(days) + 0.5, mix, labels=list(ids),
                     colors=_COLOURS[:len(ids)], alpha=0.85)
        ax.set_xlim(0, days)
        ax.set_ylim(0, 1)
        ax.set_xlabel("day of the run")
        ax.set_ylabel("share of decisions")
        ax.set_title(f"Offer mix over time: {head.spec.label}")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        out["mix"] = _svg(fig)

    fig, ax = _figure(height=3.8)
    groups = [*result.scenario.market.config.regions, "new", "returning"]
    wanted = (s.best_discount, "thompson", "linucb", "lints", "lints+pacing",
              "lints+pacing+fairness")
    shown = [p for p in s.policies if p.key in wanted]
    width = 0.8 / max(len(shown), 1)
    x = np.arange(len(groups))
    for i, p in enumerate(shown):
        ax.bar(x + i * width, [100 * p.depth_by_group[g] for g in groups], width,
               label=p.label, color=_COLOURS[i % len(_COLOURS)])
    ax.set_xticks(x + 0.4 - width / 2, groups)
    ax.set_ylabel("average offered discount depth (%)")
    ax.set_title("Discount depth by group (fairness)")
    ax.legend(fontsize=7, frameon=False, ncol=3)
    out["fairness"] = _svg(fig)

    fig, ax = _figure(width=5.5, height=3.0)
    names = ["random", "popularity", "two-tower", "oracle"]
    vals = [100 * s.expected_ctr.get(n, float("nan")) for n in names]
    ax.bar(names, vals, color=[_COLOURS[7], _COLOURS[1], _COLOURS[0], _COLOURS[2]])
    for i, v in enumerate(vals):
        ax.text(i, v + 0.5, f"{v:.1f}%", ha="center", fontsize=8)
    ax.set_ylabel("sessions with a click (%)")
    ax.set_title("Recommendation quality: clicks on the shown list")
    out["recommend"] = _svg(fig)
    return out


# --- HTML -----------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 16px}
h1{font-size:1.5em;margin-bottom:0.2em}h2{font-size:1.15em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:0.85em;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
tr.best td{background:#f3f8ff}tr.headline td{background:#f1fbf1;font-weight:600}
.verdict{background:#fafafa;border-left:4px solid #2ca02c;padding:10px 14px}
.plot svg{max-width:100%;height:auto}.note{color:#666;font-size:0.85em}
.grid{display:grid;grid-template-columns:1fr;gap:8px}.scroll{overflow-x:auto}
"""


def _row(p: PolicySummary, s: Summary) -> str:
    cls = "headline" if p.key == s.headline else "best" if p.key == s.best_fixed else ""
    vs = p.vs_best_fixed.fmt("+.1%") if p.vs_best_fixed else "best fixed"
    cells = [
        html.escape(p.label), p.profit.fmt(), vs, f"{p.revenue:,.0f}",
        f"{100 * p.conversion:.2f}%", f"{p.spend:,.0f}",
        f"{p.return_on_spend:+.2f}" if p.return_on_spend is not None else "-",
        f"{p.regret:,.0f}", f"{p.regret_first_quarter:.2f} &rarr; {p.regret_last_quarter:.2f}",
        f"{100 * p.budget_use:.0f}%" if p.budget_use is not None else "-",
        f"{100 * p.fairness_gap_region:.1f} / {100 * p.fairness_gap_tenure:.1f}",
        _share(p.headroom_share),
    ]
    return f"<tr class='{cls}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _ab_value(m: ABMetric, x: float) -> str:
    return f"{100 * x:.2f}%" if m.metric == "converted" else f"{x:,.2f}"


def _ab_diff(m: ABMetric, iv: Interval | None) -> str:
    if iv is None:
        return "-"
    if m.metric == "converted":  # percentage points
        return (f"{100 * iv.value:+.2f} [{100 * iv.lo:+.2f}, {100 * iv.hi:+.2f}] pp")
    return iv.fmt("+,.2f")


def _ab_p(p: float | None) -> str:
    return "-" if p is None or not math.isfinite(p) else f"{p:.3g}"


def abtest_html(a: ABSummary) -> str:
    """The "A/B test" section of the report (tables and notes, no plots)."""
    level = f"{100 * a.confidence:.0f}%"
    variants = (("control", a.control_label, 0), ("treatment", a.treatment_label, 1))
    assign = "".join(
        f"<tr><td>{name}</td><td>{html.escape(label)}</td><td>{100 * a.weights[i]:.0f}%</td>"
        f"<td>{a.shoppers[i]:,} ({a.expected[i]:,.0f})</td><td>{a.decisions[i]:,}</td>"
        f"<td>{'-' if a.budget_daily[i] is None else f'{a.budget_daily[i]:,.0f}'}</td></tr>"
        for name, label, i in variants)
    head = ("<tr><th>per shopper</th><th>control</th><th>treatment</th>"
            f"<th>difference [{level} CI]</th><th>lift [{level} CI]</th>"
            f"<th>lift, bootstrap [{level}]</th><th>p-value</th>"
            f"<th>CUPED difference [{level} CI]</th><th>CUPED p-value</th>"
            "<th>variance reduction</th><th>always-valid p</th>"
            f"<th>detectable lift ({100 * AB_POWER:.0f}% power)</th></tr>")
    rows = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in (
            html.escape(m.label), _ab_value(m, m.control), _ab_value(m, m.treatment),
            _ab_diff(m, m.diff), m.lift.fmt("+.1%"),
            m.boot_lift.fmt("+.1%") if m.boot_lift else "-", _ab_p(m.p_value),
            _ab_diff(m, m.cuped_diff), _ab_p(m.cuped_p_value),
            "-" if m.variance_reduction is None else f"{100 * m.variance_reduction:.1f}%",
            _ab_p(m.seq_p_value), "-" if m.mde is None else f"&plusmn;{100 * m.mde:.1f}%"))
        + "</tr>" for m in a.metrics)
    srm = ("passed" if not a.srm_mismatch else "<strong>FAILED: the split is broken; do "
           "not trust the numbers below</strong>")
    full = ""
    if a.full_traffic_lift is not None:
        full = (f" In the full-traffic runs above (every shopper, the same draws) "
                f"{html.escape(a.treatment_label)} earned {_pct(a.full_traffic_lift)} profit "
                f"against {html.escape(a.control_label)}: the effect the test estimates, "
                "give or take what a policy learns from a share of the shoppers and of the "
                "budget.")
    if a.counterfactual_lift is not None:
        full += (f" The simulator knows the answer for this very split: the treatment's "
                 f"shoppers made {_pct(a.counterfactual_lift)} profit against what the same "
                 f"shoppers made with the same draws under {html.escape(a.control_label)}; "
                 "the rest of the test's estimate is which shoppers fell in which variant.")
    cuped = ("CUPED adjusts each shopper's outcome by their "
             f"{html.escape(a.pre_metric)} (theta pooled over both variants), which narrows "
             "the interval by the variance it explains." if a.pre_metric else
             "No pre-period metric: no CUPED.")
    return f"""<h2>A/B test</h2>
<p class="verdict" id="abtest-verdict">{html.escape(a.sentence)}</p>
<div class="scroll"><table id="abtest-assignment"><tr><th>variant</th><th>policy</th>
<th>weight</th><th>shoppers (expected)</th><th>offer decisions</th><th>daily budget</th></tr>
{assign}</table></div>
<p class="note">Sample-ratio check: chi-square p = {a.srm_p_value:.3g} against the
weights, {srm} (alarm below {a.srm_alpha:g}). Shoppers were assigned by a keyed hash of
the salt <code>{html.escape(a.salt)}</code> and their id: sticky, so each saw only their
variant's engine on every visit. Both engines ran on the same market, days and random
draws as the runs above; a variant with pacing got its weight's share of the daily
budget. In the experiment: the shoppers with at least one offer decision (the click
comes before the offer, so who is in does not depend on the variant).</p>
<div class="scroll"><table id="abtest-metrics">{head}{rows}</table></div>
<p class="note">Per shopper over the run: conversion = bought at least once; revenue =
paid; profit = paid - cost of goods. Tests: two-proportion z (conversion), Welch t
(revenue, profit); lift = treatment / control - 1 with a delta-method interval and a
Poisson-bootstrap percentile interval. {cuped} The always-valid p-value (mixture SPRT)
stays valid however often the test is looked at while it runs; a fixed-horizon p-value
does not. Detectable lift: the change the test finds with {100 * AB_POWER:.0f}%
probability at {level}.{full} The per-shopper table is in <code>abtest.csv</code>
(<code>promobandit abtest --log abtest.csv</code> repeats the analysis).</p>
"""


def render_html(result: SimulationResult, s: Summary, figures: dict[str, str],
                extra_sections: Sequence[str] = ()) -> str:
    """The report page (self-contained: inline CSS and SVG, no scripts). extra_sections:
    HTML sections placed before "Run" (e.g. simulate.pareto.report_sections)."""
    cfg = result.config
    level = f"{100 * s.confidence:.0f}%"
    head = ("<tr><th>policy</th><th>profit [" + level + " CI]</th><th>vs best fixed ["
            + level + " CI]</th><th>revenue</th><th>conversion</th><th>discount spend</th>"
            "<th>return on spend</th><th>regret</th><th>regret / decision Q1 &rarr; Q4</th>"
            "<th>budget use</th><th>fairness gap region / tenure (pp)</th>"
            "<th>share of reachable headroom</th></tr>")
    rows = "".join(_row(p, s) for p in s.policies)
    mix_head = "<tr><th>policy</th>" + "".join(f"<th>{html.escape(o)}</th>"
                                               for o in s.offer_ids) + "</tr>"
    mix_rows = "".join(
        "<tr><td>" + html.escape(p.label) + "</td>" + "".join(
            f"<td>{100 * p.offer_mix.get(o, 0.0):.1f}%</td>" for o in s.offer_ids) + "</tr>"
        for p in s.policies if not p.fixed)

    def fig(name: str, caption: str) -> str:
        if name not in figures:
            return ""
        return (f"<div class='plot' id='plot-{name}'>{figures[name]}"
                f"<p class='note'>{caption}</p></div>")

    t = s.timings
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in t.items())
    left_out = [o for o in s.offer_ids if o not in s.learner_offers]
    learner_note = ""
    if left_out:
        learner_note = (
            "<p class='note'>Learning policies chose among "
            + html.escape(", ".join(s.learner_offers)) + "; left out: "
            + html.escape(", ".join(left_out)) + ". A coupon costs nothing in the session "
            "that issues it; its cost arrives with a later order and reaches only the "
            "budget, never the learner's reward, so a learner would take coupons for free "
            "discounts. The fixed coupon run shows what they cost in this market.</p>")
    m = cfg.market
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>promobandit simulation report</title><style>{_CSS}</style></head>
<body>
<h1>promobandit simulation report</h1>
<p class="note">{s.sessions:,} shopper sessions over {s.days} days, {s.decisions:,} offer
decisions per policy, {m.n_users:,} shoppers, {m.n_items:,} items, seed {cfg.seed}. Every
policy met the same shoppers with the same random draws and ran through the real
<code>promobandit.engine.Engine</code> (delayed feedback, expiry, caps, budget, fairness).
</p>
<h2>Verdict</h2>
<p class="verdict" id="verdict">{html.escape(verdict(s))}</p>
<h2>Summary</h2>
<div class="scroll"><table id="summary">{head}{rows}</table></div>
<p class="note">Intervals: {level} percentile bootstrap over the {s.days} simulated days
({cfg.report.bootstrap:,} resamples); the "vs best fixed" interval resamples the same days
for both policies (paired). Profit = paid - cost of goods; return on spend = (profit - profit
of no discount) / discount spend; regret is exact against the best eligible offer for each
context (the decision's own session). Budget: {s.budget_daily:,.0f} a day for runs with
pacing. Fairness gap: largest difference in average offered discount depth between regions /
between new and returning shoppers, in percentage points.</p>
{"" if s.headroom is None else '<p class="note">' + html.escape(headroom_sentence(s.headroom)) + "</p>"}
{learner_note}
{abtest_html(s.abtest) if s.abtest is not None else ""}
<h2>Profit and regret over time</h2>
<div class="grid">
{fig("profit", "Cumulative profit of each policy minus that of the best fixed offer in "
     "hindsight: above zero, the policy is ahead.")}
{fig("regret", "Cumulative regret: a curve that flattens has learnt what each context "
     "needs.")}
{fig("regret_daily", "Average regret per decision each day. A contextual policy keeps a "
     "floor: what its features cannot tell apart; a fixed offer stays where it starts.")}
</div>
<h2>Budget pacing</h2>
{fig("budget", "Discount spent since the start of each day (the budget period) by the runs "
     "with pacing, against the plan (the daily budget spread along the traffic profile).")}
<h2>Offer mix</h2>
{fig("mix", "Share of each offer among the decisions of each day.")}
<div class="scroll"><table id="mix">{mix_head}{mix_rows}</table></div>
<h2>Fairness</h2>
{fig("fairness", "Average offered discount depth per group. With +fairness the engine keeps "
     "the gap between groups within its bound.")}
<h2>Recommendation quality</h2>
{fig("recommend", "Expected share of sessions with a click on the shown list, for lists "
     "from random items, the history's most clicked items, the two-tower recommender "
     "(shown in the run) and the true tastes (the ceiling).")}
<p class="note">Clicks come before the offer in this market (the offer is made on the
clicked item's page), so every policy met the same clicks: {s.ctr:.1%} of sessions.</p>
{"".join(extra_sections)}
<h2>Run</h2>
<p class="note">Timings: {html.escape(timing)}. Decision logs (Parquet, one folder per
policy) are in <code>logs/</code> next to this page.</p>
</body></html>
"""


def _jsonable(s: Summary) -> dict[str, Any]:
    def conv(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {k: conv(v) for k, v in dataclasses.asdict(o).items()}
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, np.ndarray):
            return [conv(v) for v in o.tolist()]
        if isinstance(o, np.generic):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    return conv(s)


def write_report(result: SimulationResult, out_dir: str | os.PathLike[str],
                 summary: Summary | None = None, extra_sections: Sequence[str] = ()) -> str:
    """Writes index.html, summary.csv, summary.json and, with an A/B test, abtest.csv
    (one row per shopper in the experiment) into out_dir; returns the HTML path.
    extra_sections: HTML sections added to the page (see render_html)."""
    s = summarise(result) if summary is None else summary
    os.makedirs(out_dir, exist_ok=True)
    page = render_html(result, s, plots(result, s), extra_sections)
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump({**_jsonable(s), "verdict": verdict(s)}, fh, indent=2)
    ab_path = os.path.join(out_dir, "abtest.csv")
    if result.abtest is not None:
        result.abtest.users.to_csv(ab_path, index=False)
    elif os.path.exists(ab_path):
        os.remove(ab_path)  # an earlier run's test would read as this run's
    import csv

    with open(os.path.join(out_dir, "summary.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "policy", "profit", "profit_lo", "profit_hi", "vs_best_fixed",
                    "vs_lo", "vs_hi", "revenue", "conversion", "discount_spend",
                    "return_on_spend", "regret", "regret_q1", "regret_q4", "budget_use",
                    "fairness_gap_region", "fairness_gap_tenure", "headroom_share"])
        for p in s.policies:
            v = p.vs_best_fixed
            w.writerow([p.key, p.label, p.profit.value, p.profit.lo, p.profit.hi,
                        v.value if v else "", v.lo if v else "", v.hi if v else "", p.revenue,
                        p.conversion, p.spend, "" if p.return_on_spend is None
                        else p.return_on_spend, p.regret, p.regret_first_quarter,
                        p.regret_last_quarter, "" if p.budget_use is None else p.budget_use,
                        p.fairness_gap_region, p.fairness_gap_tenure,
                        "" if p.headroom_share is None else p.headroom_share])
    return path


__all__ = ["ABMetric", "ABSummary", "Interval", "PolicySummary", "Summary", "abtest_html",
           "abtest_sentence", "plots", "render_html", "summarise", "summarise_abtest",
           "summary_text", "verdict", "write_report"]
