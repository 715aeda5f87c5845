"""Simulators with known ground truth, for regret and for benchmarks."""

from __future__ import annotations

from .offer_problem import OfferProblem, PolicyRun, run_policy

__all__ = ["OfferProblem", "PolicyRun", "run_policy"]
