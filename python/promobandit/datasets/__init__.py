"""Public datasets for checking the evaluation layer on real logged bandit feedback.

- ``fetch_obd`` / ``load_obd``: the Open Bandit Dataset sample (ZOZOTOWN), fetched once
  from obp's source package on PyPI into a cache folder, then read offline.
  ``promobandit datasets fetch obd`` (or ``python -m promobandit datasets fetch obd``)
  runs the fetch from the shell.
"""

from __future__ import annotations

from .obd import (
    BEHAVIOR_POLICIES,
    CAMPAIGNS,
    DatasetNotFoundError,
    OBDComparison,
    OBDData,
    bts_action_dist,
    compare_obd_policies,
    fetch_obd,
    is_fetched,
    load_obd,
    obd_data_dir,
    production_bts_prior,
)

__all__ = [
    "BEHAVIOR_POLICIES",
    "CAMPAIGNS",
    "DatasetNotFoundError",
    "OBDComparison",
    "OBDData",
    "bts_action_dist",
    "compare_obd_policies",
    "fetch",
    "fetch_obd",
    "is_fetched",
    "load_obd",
    "obd_data_dir",
    "production_bts_prior",
]

DATASETS = ("obd",)


def fetch(name: str, cache_dir: str | None = None, *, force: bool = False) -> str:
    """Fetches a dataset by name (the `promobandit datasets fetch NAME` command); returns
    its folder. Raises ValueError for an unknown name, RuntimeError when the download fails."""
    if name != "obd":
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {DATASETS}")
    return str(fetch_obd(cache_dir, force=force))
