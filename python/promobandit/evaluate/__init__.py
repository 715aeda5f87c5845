"""Evaluation: off-policy estimates on decision logs, and A/B test analysis.

- ``read_decision_log`` / ``DecisionLog``: the engine's Parquet decision log, validated.
- ``evaluate``: IPS, SNIPS, DM, DR, switch-DR, clipped IPS/DR with analytic and bootstrap
  intervals and overlap diagnostics (``OPEWarning``); ``evaluate_stream`` (or
  ``evaluate(..., out_of_core=True / client=...)``) on a Parquet log too large for memory,
  one row group at a time or on a Dask cluster.
- ``abtest``: sticky assignment, z / Welch tests, CUPED, SRM, power, always-valid p-values.
- ``evaluate_log_file`` / ``analyse_experiment``: file-in, report-out entry points for the CLI.

Nothing here imports torch or the CLI; scikit-learn is imported only to fit reward models.
"""

from __future__ import annotations

from ..policies import FixedOffer
from .abtest import (
    Assigner,
    ExperimentReport,
    MetricResult,
    SampleSize,
    SequentialResult,
    SRMResult,
    analyse_experiment,
    assign_variants,
    compare,
    cuped_adjust,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
    sequential_test,
    srm_test,
)
from .api import evaluate_log_file, load_target_policy
from .log import DecisionLog, read_decision_log
from .ope import (
    DEFAULT_ESTIMATORS,
    ESTIMATORS,
    Diagnostics,
    DiagnosticThresholds,
    Estimate,
    EvaluationReport,
    OPEWarning,
    effective_sample_size,
    evaluate_policies,
)
from .reward_model import RewardModel
from .stream import STREAM_ESTIMATORS, evaluate, evaluate_stream
from .targets import StationaryPolicy, uniform_policy

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "STREAM_ESTIMATORS",
    "Assigner",
    "DecisionLog",
    "DiagnosticThresholds",
    "Diagnostics",
    "Estimate",
    "EvaluationReport",
    "ExperimentReport",
    "FixedOffer",
    "MetricResult",
    "OPEWarning",
    "RewardModel",
    "SRMResult",
    "SampleSize",
    "SequentialResult",
    "StationaryPolicy",
    "analyse_experiment",
    "assign_variants",
    "compare",
    "cuped_adjust",
    "effective_sample_size",
    "evaluate",
    "evaluate_log_file",
    "evaluate_policies",
    "evaluate_stream",
    "load_target_policy",
    "power_means",
    "power_proportions",
    "read_decision_log",
    "sample_size_means",
    "sample_size_proportions",
    "sequential_test",
    "srm_test",
    "uniform_policy",
]
