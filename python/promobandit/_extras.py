"""Optional dependencies behind extras: one place that imports them and, when one is
missing, raises an error naming the extra to install instead of a raw traceback.

The extras (``pyproject.toml``): ``evaluate`` (pandas, scipy, scikit-learn, pyarrow),
``simulate`` (the evaluate extra plus matplotlib), ``report`` (matplotlib), ``log``
(pyarrow, for the engine's Parquet decision log), ``torch``, ``service``, and ``all``.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or MissingExtraError saying that ``what`` needs
    ``pip install "promobandit[extra]"``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module is there but one of its own imports is broken: show that
        raise MissingExtraError(
            f"{what} needs {top}, which is not installed: "
            f'pip install "promobandit[{extra}]"') from exc
