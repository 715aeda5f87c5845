"""Behaviour features: the documented context vector of a user at a time, in batch
(``features_batch``) and incrementally (``FeatureStore``), bitwise equal on the same events.

config.py holds the knobs and the feature list, _stats.py the statistics kernels both
paths share, batch.py the vectorised path and the event-column checks, store.py the
per-user history that serves one vector at a time.
"""

from __future__ import annotations

from .batch import COLUMNS, cold_start_vector, columns_from_log, features_batch
from .config import FeatureConfig, feature_names
from .store import Event, FeatureStore, LateEventError

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
