"""The discount engine: the request path (``engine``), the decision log it writes
(``decision_log``) and the item recommendation step (``items``)."""

from __future__ import annotations

from .decision_log import DecisionLogWriter
from .engine import Decision, Engine, EngineConfig, FeedbackResult
from .items import EmbeddingExplorer, ExplorationConfig, ItemRecommender

__all__ = [
    "Decision",
    "DecisionLogWriter",
    "EmbeddingExplorer",
    "Engine",
    "EngineConfig",
    "ExplorationConfig",
    "FeedbackResult",
    "ItemRecommender",
]
