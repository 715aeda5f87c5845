"""Simulators with known ground truth, for regret, reports and benchmarks.

``market``: the marketplace simulator (items, shoppers, sessions, offers, purchases);
``history``: behaviour before the run; ``context``: the contextual policies' features;
``run``: policies through the real Engine; ``abtest``: an A/B test of two engines on
split shoppers; ``pipeline``: the whole simulation;
``config``: its configuration; ``offer_problem``: a small contextual offer problem.
``promobandit simulate`` (``cli``) runs the whole flow and writes the report.
"""

from __future__ import annotations

from .market import Market, MarketConfig, Sessions
from .offer_problem import OfferProblem, PolicyRun, run_policy

__all__ = ["Market", "MarketConfig", "OfferProblem", "PolicyRun", "Sessions", "run_policy"]
