"""Optional dependencies behind extras: one place that imports them and, when one is
missing, raises an error naming the extra to install instead of a raw traceback.

The core (``pip install promobandit``) needs only NumPy and Numba: the policies, top-k
scoring, offers, constraints, features and the engine without a decision log. The extras
(``pyproject.toml`` lists their distributions; ``EXTRAS`` below the modules they bring):

- ``log``: pyarrow, for the engine's Parquet decision log (``EngineConfig.log_dir``);
- ``evaluate``: pandas, scipy, scikit-learn and pyarrow, for off-policy evaluation, A/B
  analysis and the Open Bandit Dataset (``promobandit evaluate``, ``abtest``);
- ``report``: matplotlib, for the simulation report's plots;
- ``torch``: the two-tower recommender;
- ``simulate``: ``evaluate``, ``report`` and ``torch`` (``promobandit simulate`` trains the
  two-tower on the simulated history);
- ``service``: FastAPI, uvicorn, orjson, prometheus-client, pydantic and the ``log`` extra
  (``promobandit serve``);
- ``granian``: the ``service`` extra with Granian, the Rust HTTP server that
  ``promobandit serve --server granian`` runs the app on;
- ``distributed``: ``evaluate`` with dask and distributed, for off-policy evaluation of a
  Parquet log on a Dask cluster (``evaluate_stream(..., client=...)``);
- ``cluster``: ``service`` with redis and hiredis (``[storage] kind = "redis"``: many
  service workers sharing one state in Redis);
- ``all``: every one of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# The modules (import names) each extra brings; tests/test_core_install.py checks them
# against the distributions pyproject.toml lists.
EXTRAS: dict[str, tuple[str, ...]] = {
    "log": ("pyarrow",),
    "evaluate": ("pandas", "scipy", "sklearn", "pyarrow"),
    "report": ("matplotlib",),
    "torch": ("torch", "tqdm"),
    "simulate": ("pandas", "scipy", "sklearn", "pyarrow", "matplotlib", "torch", "tqdm"),
    "service": ("fastapi", "uvicorn", "orjson", "prometheus_client", "pydantic", "pyarrow"),
    "distributed": ("pandas", "scipy", "sklearn", "pyarrow", "dask", "distributed"),
    "cluster": ("fastapi", "uvicorn", "orjson", "prometheus_client", "pydantic", "pyarrow",
                "redis", "hiredis"),
    "granian": ("fastapi", "uvicorn", "orjson", "prometheus_client", "pydantic", "pyarrow",
                "granian"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def _message(what: str, missing: list[str], extra: str) -> str:
    names = " and ".join(missing) if len(missing) < 3 else ", ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    return f'{what} needs {names}, which {verb} not installed: pip install "promobandit[{extra}]"'


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or MissingExtraError saying that ``what`` needs
    ``pip install "promobandit[extra]"``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module is there but one of its own imports is broken: show that
        raise MissingExtraError(_message(what, [top], extra)) from exc


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a stub left in sys.modules
        return False


def require_extra(extra: str, what: str) -> None:
    """MissingExtraError naming ``extra`` when any module it brings cannot be found; called
    before a command starts work, so that it fails before writing anything. Finds the
    modules without importing them (the command imports each where it is used)."""
    if extra not in EXTRAS:
        raise ValueError(f"extra: expected one of {sorted(EXTRAS)}, got {extra!r}")
    missing = [m for m in EXTRAS[extra] if not _found(m)]
    if missing:
        raise MissingExtraError(_message(what, missing, extra))
