"""The three-way comparison of recommenders on a time split: the two-tower model against
popularity and implicit ALS, each evaluated with ``metrics.evaluate``. torch is imported
only when ``compare_recommenders`` runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .baselines import ALSConfig, ImplicitALS, PopularityRecommender
from .data import InteractionLog
from .metrics import EmbeddingRecommender, comparison_table

if TYPE_CHECKING:
    from .two_tower import TwoTowerConfig


def compare_recommenders(train: InteractionLog, validation: InteractionLog,
                         test: InteractionLog, k: int = 10, *,
                         two_tower_config: TwoTowerConfig | None = None,
                         als_config: ALSConfig | None = None, exclude_seen: bool = True,
                         progress: bool | None = False) -> dict[str, dict[str, float]]:
    """Fits the two-tower model, popularity and implicit ALS on ``train`` and compares them.

    The two-tower model early-stops on ``validation``; every model is then evaluated on
    ``test`` with train + validation as the users' history (see ``evaluate``). Returns
    {"two_tower" | "popularity" | "als": {"recall@k", "ndcg@k", "users", "fit_seconds"}}
    (fit_seconds: wall-clock seconds of the fit on this machine).
    """
    from .two_tower import TwoTowerModel  # torch only when the two-tower is asked for

    history = InteractionLog.concatenate([train, validation])
    fitted: dict[str, EmbeddingRecommender] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    fitted["two_tower"] = TwoTowerModel.fit(train, validation, two_tower_config,
                                            progress=progress)
    seconds["two_tower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitted["popularity"] = PopularityRecommender().fit(train)
    seconds["popularity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitted["als"] = ImplicitALS(als_config).fit(train)
    seconds["als"] = time.perf_counter() - t0
    table = comparison_table(fitted, history, test, k, exclude_seen=exclude_seen)
    for name, row in table.items():
        row["fit_seconds"] = seconds[name]
    return table


__all__ = ["compare_recommenders"]
