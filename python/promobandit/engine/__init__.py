"""The discount engine: the request path (``engine``), the decisions waiting for
feedback and their codec (``_pending``), the budget and coupon bookkeeping
(``accounting``), the decision log's one schema and its writer (``decision_log``) and
the item recommendation step (``items``)."""

from __future__ import annotations

from .accounting import DiscountLedger
from .decision_log import DecisionLogWriter, DecisionRow
from .engine import Decision, Engine, EngineConfig, FeedbackResult
from .items import EmbeddingExplorer, ExplorationConfig, ItemRecommender

__all__ = [
    "Decision",
    "DecisionLogWriter",
    "DecisionRow",
    "DiscountLedger",
    "EmbeddingExplorer",
    "Engine",
    "EngineConfig",
    "ExplorationConfig",
    "FeedbackResult",
    "ItemRecommender",
]
