"""Checks at the edge: shapes, dtypes, contiguity, finiteness and ranges.

Every check raises ``ValueError`` (``IndexError`` for an arm out of range) that
names the field and the expected form, before any state is touched. The C++
bindings (``cpp/bindings/checks.hpp``) apply the same checks with the same
messages to what crosses into the native kernels; this module serves the Numba
backend and everything that is not a kernel argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_KIND = {"float64": ("f", 8), "int64": ("i", 8), "bool": ("b", 1)}


def _want(kind: str, ndim: int, shape: Sequence[int]) -> str:
    dims = ", ".join("n" if s < 0 else str(s) for s in shape)
    if len(shape) == 1:
        dims += ","
    return f"a {ndim}-D {kind} array of shape ({dims})"


def checked_array(obj: Any, field: str, kind: str, ndim: int, shape: Sequence[int]) -> np.ndarray:
    """``obj`` as an ndarray of dtype ``kind`` (no casting), C-contiguous, of the given shape.

    Entries of ``shape`` below zero are free. Sequences are turned into arrays with
    their natural dtype; arrays of another dtype are rejected, not cast.
    """
    if isinstance(obj, np.ndarray):
        a = obj
    else:
        try:
            a = np.asarray(obj)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field}: expected {_want(kind, ndim, shape)}") from exc
    want = _want(kind, ndim, shape)
    code, size = _KIND[kind]
    if a.dtype.kind != code or a.dtype.itemsize != size:
        raise ValueError(f"{field}: expected {want}, got dtype {a.dtype}")
    if a.ndim != ndim or any(s >= 0 and a.shape[i] != s for i, s in enumerate(shape)):
        raise ValueError(f"{field}: expected {want}, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{field}: expected a C-contiguous array (use numpy.ascontiguousarray)")
    return a


def check_finite_array(a: np.ndarray, field: str) -> None:
    if not np.isfinite(a).all():
        flat = a.reshape(-1)
        i = int(np.flatnonzero(~np.isfinite(flat))[0])
        what = "nan" if math.isnan(flat[i]) else "inf"
        raise ValueError(f"{field}: expected finite values, found {what} at flat index {i}")


def check_finite_scalar(v: Any, field: str) -> float:
    if isinstance(v, (str, bytes)):
        raise ValueError(f"{field}: expected a finite number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: expected a finite number, got {v!r}") from exc
    if not math.isfinite(f):
        raise ValueError(f"{field}: expected a finite number, got {f}")
    return f


def check_arm(arm: Any, n_arms: int, field: str = "arm") -> int:
    if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)):
        raise ValueError(f"{field}: expected an integer arm index, got {arm!r}")
    a = int(arm)
    if a < 0 or a >= n_arms:
        raise IndexError(f"{field}: {a} is out of range for a policy with {n_arms} arms")
    return a


def check_bias(bias: Any, n_arms: int) -> np.ndarray | None:
    """Optional (K,) finite float64 per-arm score adjustment."""
    if bias is None:
        return None
    b = checked_array(bias, "bias", "float64", 1, (n_arms,))
    check_finite_array(b, "bias")
    return b


def check_biases(biases: Any, n: int, n_arms: int) -> np.ndarray | None:
    """Optional (n, K) finite float64 per-arm score adjustments."""
    if biases is None:
        return None
    b = checked_array(biases, "biases", "float64", 2, (n, n_arms))
    check_finite_array(b, "biases")
    return b


def check_threads(n_threads: Any) -> int:
    """0 (all cores) to 1024 threads."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)):
        raise ValueError(f"n_threads: expected an integer, got {n_threads!r}")
    t = int(n_threads)
    if t < 0 or t > 1024:
        raise ValueError(f"n_threads: expected 0 (all cores) to 1024, got {t}")
    return t


def check_draws(draws: Any, needed: bool) -> int:
    """Posterior draws for an estimated action distribution (>= 1 when needed)."""
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)):
        raise ValueError(f"draws: expected an integer, got {draws!r}")
    if needed and int(draws) < 1:
        raise ValueError("draws: Thompson sampling estimates its action distribution "
                         "from posterior draws; expected draws >= 1")
    return int(draws)


def check_weight(w: Any, field: str = "weight") -> float:
    f = check_finite_scalar(w, field)
    if f < 0.0:
        raise ValueError(f"{field}: expected a weight >= 0, got {f}")
    return f


def check_unit_reward(r: float, field: str) -> None:
    if r < 0.0 or r > 1.0:
        raise ValueError(
            f"{field}: Beta-Bernoulli Thompson sampling takes rewards in [0, 1], got {r}"
        )


def check_mask(mask: Any, active: np.ndarray) -> np.ndarray | None:
    """A (K,) bool mask (or None) leaving at least one active arm eligible."""
    k = active.shape[0]
    m = None if mask is None else checked_array(mask, "mask", "bool", 1, (k,))
    eligible = active if m is None else (active & m)
    if not eligible.any():
        raise ValueError(
            "mask: no eligible arm (every arm is masked out or removed); "
            "expected at least one True among active arms"
        )
    return m


def check_masks(masks: Any, n: int, active: np.ndarray) -> np.ndarray | None:
    """(n, K) bool masks (or None); every row leaves an eligible arm."""
    k = active.shape[0]
    if masks is None:
        check_mask(None, active)
        return None
    m = checked_array(masks, "masks", "bool", 2, (n, k))
    ok = (m & active[None, :]).any(axis=1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"masks: row {i} leaves no eligible arm (every arm masked out or removed)"
        )
    return m


def check_context(x: Any, dim: int, field: str = "context") -> np.ndarray:
    if x is None:
        raise ValueError(f"{field}: required for a contextual policy")
    a = checked_array(x, field, "float64", 1, (dim,))
    check_finite_array(a, field)
    return a


def check_contexts(x: Any, dim: int, n: int = -1, field: str = "contexts") -> np.ndarray:
    if x is None:
        raise ValueError(f"{field}: required for a contextual policy")
    a = checked_array(x, field, "float64", 2, (n, dim))
    check_finite_array(a, field)
    return a


def check_out(out: Any, n: int, field: str, kind: str) -> np.ndarray:
    if out is None:
        return np.empty(n, dtype=np.int64 if kind == "int64" else np.float64)
    return checked_array(out, field, kind, 1, (n,))


def check_batch_updates(
    arms: Any, rewards: Any, weights: Any, n_arms: int, unit_rewards: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Arms (n,) int64 in range, rewards (n,) finite float64, weights (n,) >= 0 or None."""
    a = checked_array(arms, "arms", "int64", 1, (-1,))
    n = a.shape[0]
    r = checked_array(rewards, "rewards", "float64", 1, (n,))
    w = None if weights is None else checked_array(weights, "weights", "float64", 1, (n,))
    bad = np.flatnonzero((a < 0) | (a >= n_arms))
    if bad.size:
        raise IndexError(
            f"arms: {int(a[bad[0]])} is out of range for a policy with {n_arms} arms"
        )
    if not np.isfinite(r).all():
        check_finite_scalar(r[np.flatnonzero(~np.isfinite(r))[0]], "rewards")
    if unit_rewards and ((r < 0.0) | (r > 1.0)).any():
        check_unit_reward(float(r[np.flatnonzero((r < 0.0) | (r > 1.0))[0]]), "rewards")
    if w is not None:
        if not np.isfinite(w).all():
            check_finite_scalar(w[np.flatnonzero(~np.isfinite(w))[0]], "weights")
        if (w < 0).any():
            check_weight(float(w[np.flatnonzero(w < 0)[0]]), "weights")
    return a, r, w


# --- settings: numbers in a range, counts, seeds -----------------------------------------

def _number(name: str, value: Any) -> float:
    """A finite real number (bools and strings rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"{name}: expected a finite number, got {f}")
    return f


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in the stated interval, or ValueError naming ``name``."""
    f = _number(name, value)
    bad = (lo is not None and (f <= lo if lo_open else f < lo)) or (
        hi is not None and (f >= hi if hi_open else f > hi))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name}: expected a value in {left}{lo_s}, {hi_s}{right}, got {value!r}")
    return f


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi] (hi None: unbounded; bools rejected), or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {lo}, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: expected an integer {bound}, got {v}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """A bool (Python or NumPy), or ValueError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


def check_seed(seed: Any, name: str = "seed", *, bits: int = 64) -> int:
    """A seed: an integer in [0, 2**bits). The kernels' Philox streams take 64 bits; torch's
    generator takes a signed int64, so the recommender asks for ``bits=63``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
        0 <= int(seed) < 2**bits
    ):
        raise ValueError(f"{name}: expected an integer in [0, 2**{bits}), got {seed!r}")
    return int(seed)


# --- columns: integer and float arrays of any length, frozen copies -----------------------

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


# --- offers: basket columns ----------------------------------------------------------------
# The lines of a basket: 1-D columns, always new arrays, errors naming the line. Stricter
# than int_array / float_array: uint64 (which may not fit int64) and empty float columns
# are rejected, and a non-finite value is reported with its line.

def int_column(name: str, obj: Any) -> np.ndarray:
    """``obj`` as a new 1-D int64 array (any signed or unsigned dtype below 64 bits, or
    int64); floats, bools and objects are rejected rather than truncated."""
    a = np.asarray(obj)
    if a.dtype.kind not in "iu" or a.dtype == np.uint64:
        raise ValueError(f"{name}: expected a 1-D integer array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a.astype(np.int64)


def float_column(name: str, obj: Any) -> np.ndarray:
    """``obj`` as a new finite 1-D float64 array (any numeric dtype)."""
    a = np.asarray(obj)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a 1-D numeric array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{name}: expected finite values, got {a[i]} at line {i}")
    return a
