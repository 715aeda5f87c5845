"""Simulators with known ground truth, for regret, reports and benchmarks.

``market``: the marketplace simulator (items, shoppers, sessions, offers, purchases);
``history``: behaviour before the run; ``context``: the contextual policies' features;
``run``: policies through the real Engine; ``abtest``: an A/B test of two engines on
split shoppers; ``pipeline``: the whole simulation;
``config``: its configuration; ``report``: the summary tables, plots and HTML report.
``promobandit simulate`` (``cli``) runs the whole flow and writes the report. The small
contextual offer problem with closed-form ground truth lives in
``promobandit.evaluate.offer_problem``.
"""

from __future__ import annotations

from .market import Market, MarketConfig, Sessions

__all__ = ["Market", "MarketConfig", "Sessions"]
