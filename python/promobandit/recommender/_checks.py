"""Small validation helpers shared by the recommender modules (NumPy only, no torch).

Every check raises ``ValueError`` whose message starts with the field name, in the
style of ``promobandit._validation``; kept local so that the learning layer does
not depend on the policy layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi] (hi None: unbounded), or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {lo}, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: expected an integer {bound}, got {v}")
    return v


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite float in the stated interval, or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"{name}: expected a finite number, got {f}")
    too_low = lo is not None and (f <= lo if lo_open else f < lo)
    too_high = hi is not None and (f >= hi if hi_open else f > hi)
    if too_low or too_high:
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name}: expected a value in {left}{lo_s}, {hi_s}{right}, got {value!r}")
    return f


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


def check_seed(value: Any, name: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
        0 <= int(value) < 2**63
    ):
        raise ValueError(f"{name}: expected an integer in [0, 2**63), got {value!r}")
    return int(value)


def int_array(name: str, obj: Any, *, ndim: int = 1, lo: int | None = 0,
              hi: int | None = None) -> np.ndarray:
    """``obj`` as an int64 array with values in [lo, hi) (lossless integer casts only).

    Any integer dtype is accepted and widened; floats, bools and objects are rejected
    rather than truncated, so a float id column is caught instead of silently floored.
    """
    try:
        a = np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a {ndim}-D integer array") from exc
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int64)  # np.asarray([]) is float64; an empty list is a valid empty column
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected an integer array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: values exceed the int64 range")
    a = a.astype(np.int64, copy=False)
    if a.size:
        if lo is not None and int(a.min()) < lo:
            i = int(np.flatnonzero(a.reshape(-1) < lo)[0])
            raise ValueError(f"{name}: expected values >= {lo}, got {int(a.reshape(-1)[i])} "
                             f"at flat index {i}")
        if hi is not None and int(a.max()) >= hi:
            i = int(np.flatnonzero(a.reshape(-1) >= hi)[0])
            raise ValueError(f"{name}: expected values < {hi}, got {int(a.reshape(-1)[i])} "
                             f"at flat index {i}")
    return a


def float_array(name: str, obj: Any, *, ndim: int = 1, lo: float | None = None) -> np.ndarray:
    """``obj`` as a finite float64 array (values >= lo when lo is given)."""
    try:
        a = np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a {ndim}-D float array") from exc
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if a.size and not np.isfinite(a).all():
        i = int(np.flatnonzero(~np.isfinite(a.reshape(-1)))[0])
        what = "NaN" if math.isnan(a.reshape(-1)[i]) else "inf"
        raise ValueError(f"{name}: expected finite values, found {what} at flat index {i}")
    if lo is not None and a.size and float(a.min()) < lo:
        i = int(np.flatnonzero(a.reshape(-1) < lo)[0])
        raise ValueError(f"{name}: expected values >= {lo:g}, got {a.reshape(-1)[i]!r} "
                         f"at flat index {i}")
    return a


def frozen(a: np.ndarray) -> np.ndarray:
    """A C-contiguous read-only copy-if-needed of ``a`` (frozen dataclasses hold these)."""
    out = np.ascontiguousarray(a)
    if out.base is not None or out.flags.writeable:
        out = out.copy()
    out.setflags(write=False)
    return out
