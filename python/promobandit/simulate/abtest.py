"""An A/B test inside the simulation: two engines, each serving its own shoppers.

Assignment: every shopper of the market is put in "control" or "treatment" by
``promobandit.evaluate.abtest.Assigner``, a keyed BLAKE2b hash of the experiment's salt
and the shopper's id, in the proportions of the weights. It is sticky: a shopper's every
session, on every day, goes to their variant's engine and only to it.

The run: one ``Engine`` per variant, each with its own policy, in one clock over the
scenario's decisions with its common random numbers (``run.run_split``): the same market,
days, sessions, clicks and uniforms as every full-traffic run of the simulation. A
variant with pacing gets its weight's share of the daily budget, as it serves that share
of the traffic. A shopper's outcomes depend only on the offers of their own engine.

Who is in the experiment: the shoppers with at least one offer decision in the run
(triggered at exposure). Clicks come before the offer and come from the common random
numbers, so who is triggered does not depend on the split, and the SRM check applies to
them; a shopper who never reaches an item page has the same outcome (nothing) in both
variants and would only dilute the test.

Per shopper: converted (1 if any of their sessions with a decision ended in a purchase),
revenue (paid, currency), profit (paid - cost of goods, currency) summed over the run,
and pre_metric: their spend in the behaviour history before the run (currency; 0 for new
shoppers), the CUPED covariate. Rows are in order of first decision (arrival order: the
looks of the always-valid p-values). ``analyse_experiment`` then gives the two-proportion
test, Welch and bootstrap on revenue and profit, lifts with intervals, CUPED, the SRM
check and mSPRT always-valid p-values.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._extras import require
from ..evaluate.abtest import Assigner, ExperimentReport, analyse_experiment
from .run import PolicySpec, Scenario, SplitRun, run_split

VARIANTS: tuple[str, str] = ("control", "treatment")
# Key of the keyed assignment hash inside simulations (the shoppers are synthetic; a
# shop keeps its own key secret so that assignments cannot be predicted).
SIMULATION_ASSIGNMENT_KEY = b"promobandit-simulation-abtest-key-01"
# Folders of the variants' decision logs under the run's log folder.
LOG_FOLDERS: tuple[str, str] = ("abtest_control", "abtest_treatment")


@dataclasses.dataclass
class ABTestRun:
    """An A/B test of the simulation (see the module).

    control, treatment: the variants' policies; weights: their shares of shoppers
    (fractions); salt: the assignment's salt. assignment: (n_users,) 0 (control) or 1
    (treatment) for every shopper of the market. split: the run, per decision (its
    ``variant`` is the decision's shopper's). users: one row per shopper in the
    experiment (columns user, variant, converted, revenue, profit[, pre_metric]).
    report: analyse_experiment's result. seconds: the run's loop; analysis_seconds: the
    analysis (wall time).
    """

    control: PolicySpec
    treatment: PolicySpec
    weights: tuple[float, float]
    salt: str
    assignment: np.ndarray
    split: SplitRun
    users: Any
    report: ExperimentReport
    seconds: float
    analysis_seconds: float

    def decisions_per_variant(self) -> tuple[int, int]:
        """Offer decisions made by each variant's engine (control, treatment)."""
        counts = np.bincount(self.split.variant, minlength=2)
        return int(counts[0]), int(counts[1])


def assign_shoppers(n_users: int, salt: str, weights: Sequence[float]) -> np.ndarray:
    """(n_users,) variant of every shopper, 0 control and 1 treatment, by the keyed hash
    of (salt, shopper id) in the proportions of weights (control, treatment)."""
    assigner = Assigner(SIMULATION_ASSIGNMENT_KEY, salt, VARIANTS, tuple(weights))
    names = assigner.assign([str(u) for u in range(n_users)])
    return (names == VARIANTS[1]).astype(np.int64)


def per_user_outcomes(split: SplitRun, scenario: Scenario, assignment: np.ndarray) -> Any:
    """One row per shopper with an offer decision, in order of their first decision:
    user, variant, converted (0/1), revenue, profit (currency, summed over the run) and,
    when the scenario has a history, pre_metric (spend before the run, currency)."""
    pd = require("pandas", "simulate", "the simulated A/B test")

    dec = scenario.decisions
    n_users = scenario.market.config.n_users
    users, first = np.unique(dec.user, return_index=True)  # decisions are in time order
    users = users[np.argsort(first, kind="stable")]

    def per_user(values: np.ndarray) -> np.ndarray:
        return np.bincount(dec.user, weights=values, minlength=n_users)[users]

    frame = {"user": users,
             "variant": np.asarray(VARIANTS, dtype=object)[assignment[users]],
             "converted": (per_user((split.outcome > 0).astype(np.float64)) > 0).astype(
                 np.int64),
             "revenue": per_user(split.revenue), "profit": per_user(split.profit)}
    if scenario.pre_spend is not None:
        frame["pre_metric"] = np.asarray(scenario.pre_spend, dtype=np.float64)[users]
    return pd.DataFrame(frame)


def run_abtest(control: PolicySpec, treatment: PolicySpec, scenario: Scenario, *,
               weights: Sequence[float] = (0.5, 0.5), salt: str = "simulate-abtest",
               level: float = 0.95, bootstrap: int = 2000, srm_alpha: float = 0.001,
               seed: int = 0, log_root: str | None = None) -> ABTestRun:
    """Runs the A/B test over the scenario and analyses it (see the module).

    weights: shares of shoppers (control, treatment), fractions summing to 1.
    salt: the assignment's salt. level: confidence level of intervals and tests (a
    fraction). bootstrap: resamples of the bootstrap intervals (0: none). srm_alpha:
    level of the sample-ratio-mismatch check. seed: the bootstrap's seed.
    log_root: a folder that gets the variants' decision logs (LOG_FOLDERS).
    """
    w = (float(weights[0]), float(weights[1])) if len(weights) == 2 else None
    if w is None:
        raise ValueError(f"weights: expected two shares (control, treatment), got "
                         f"{list(weights)}")
    assignment = assign_shoppers(scenario.market.config.n_users, salt, w)
    dirs = [None, None] if log_root is None else [os.path.join(log_root, f)
                                                  for f in LOG_FOLDERS]
    split = run_split([control, treatment], scenario, user_variant=assignment,
                      budget_shares=w, log_dirs=dirs)
    t0 = time.perf_counter()
    users = per_user_outcomes(split, scenario, assignment)
    counts = users["variant"].value_counts()
    short = [v for v in VARIANTS if counts.get(v, 0) < 2]
    if short:
        raise ValueError(f"abtest: variant {short[0]!r} has {int(counts.get(short[0], 0))} "
                         "shoppers with an offer decision; the test needs at least two per "
                         "variant (more shoppers or days, or --no-abtest)")
    report = analyse_experiment(
        users, control=VARIANTS[0], pre_metric="pre_metric",
        weights=dict(zip(VARIANTS, w, strict=True)), level=level, n_bootstrap=bootstrap,
        seed=seed, srm_alpha=srm_alpha)
    return ABTestRun(control=control, treatment=treatment, weights=w, salt=salt,
                     assignment=assignment, split=split, users=users, report=report,
                     seconds=split.seconds, analysis_seconds=time.perf_counter() - t0)


__all__ = ["LOG_FOLDERS", "SIMULATION_ASSIGNMENT_KEY", "VARIANTS", "ABTestRun",
           "assign_shoppers", "per_user_outcomes", "run_abtest"]
