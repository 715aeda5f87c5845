"""The recommender: interaction logs, a PyTorch two-tower model, baselines and metrics.

It produces what the top-k softmax scorer consumes: an item matrix E (N x d,
float32) and user vectors u (d,) from a user's recent history.

torch is imported only when a two-tower name is first used (PEP 562 lazy attributes),
so ``promobandit.recommender.data``, ``.metrics`` and ``.baselines`` (NumPy only) serve the simulator
and the business layer without torch installed. Nothing outside this package imports
it at ``import promobandit`` time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._extras import require
from .baselines import ALSConfig, ImplicitALS, PopularityRecommender
from .compare import compare_recommenders
from .data import (
    CART,
    CLICK,
    EVENT_NAMES,
    POSITIVE_EVENTS,
    PURCHASE,
    VIEW,
    InteractionLog,
    SyntheticConfig,
    SyntheticWorld,
    synthetic_log,
    synthetic_world,
)
from .metrics import comparison_table, dense_topk, evaluate

if TYPE_CHECKING:
    from .two_tower import TwoTowerConfig, TwoTowerModel

_LAZY = {"TwoTowerConfig", "TwoTowerModel"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        require("torch", "torch", "the two-tower recommender")
        from . import two_tower

        return getattr(two_tower, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CART",
    "CLICK",
    "EVENT_NAMES",
    "POSITIVE_EVENTS",
    "PURCHASE",
    "VIEW",
    "ALSConfig",
    "ImplicitALS",
    "InteractionLog",
    "PopularityRecommender",
    "SyntheticConfig",
    "SyntheticWorld",
    "TwoTowerConfig",
    "TwoTowerModel",
    "compare_recommenders",
    "comparison_table",
    "dense_topk",
    "evaluate",
    "synthetic_log",
    "synthetic_world",
]
