"""Behaviour features: the documented context vector of a user at a time, in batch
(``features_batch``) and incrementally (``FeatureStore``), bitwise equal on the same events."""

from __future__ import annotations

from .store import (
    COLUMNS,
    Event,
    FeatureConfig,
    FeatureStore,
    LateEventError,
    cold_start_vector,
    columns_from_log,
    feature_names,
    features_batch,
)

__all__ = [
    "COLUMNS",
    "Event",
    "FeatureConfig",
    "FeatureStore",
    "LateEventError",
    "cold_start_vector",
    "columns_from_log",
    "feature_names",
    "features_batch",
]
