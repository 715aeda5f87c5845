"""Checks at the edge: shapes, dtypes, contiguity, finiteness and ranges.

Every check raises ``ValueError`` (``IndexError`` for an arm out of range) that
names the field and the expected form, before any state is touched. The C++
bindings (``cpp/bindings/checks.hpp``) apply the same checks with the same
messages to what crosses into the native kernels; this module serves the Numba
backend and everything that is not a kernel argument.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=1024)  # built on every check, read only in errors
def _want(kind: str, ndim: int, shape: tuple[int, ...]) -> str:
    dims = ", ".join("n" if s < 0 else str(s) for s in shape)
    if len(shape) == 1:
        dims += ","
    return f"a {ndim}-D {kind} array of shape ({dims})"


# dtype name -> (kind, itemsize): compared instead of dtype.name, which costs a microsecond.
_DTYPES = {"float64": ("f", 8), "float32": ("f", 4), "float16": ("f", 2), "int64": ("i", 8),
           "uint16": ("u", 2), "bool": ("b", 1)}


def _fits(have: tuple[int, ...], shape: Sequence[int]) -> bool:
    """Whether shape ``have`` is ``shape`` (entries below zero are free)."""
    if len(have) != len(shape):
        return False
    for h, s in zip(have, shape, strict=True):
        if s >= 0 and h != s:
            return False
    return True


def array_of_form(obj: Any, field: str, want: str, dtypes: Sequence[str],
                  shapes: Sequence[Sequence[int]], *, native: bool = True) -> np.ndarray:
    """``obj`` as an ndarray, never cast: its dtype one of ``dtypes`` (names of
    ``_DTYPES``; native byte order unless ``native`` is False), its shape one of
    ``shapes`` (one per allowed ndim; entries below zero are free), C-contiguous.

    ``want`` words the expected form in the errors. Sequences are turned into arrays
    with their natural dtype; arrays of another dtype are rejected, not cast.
    """
    if isinstance(obj, np.ndarray):
        a = obj
    else:
        try:
            a = np.asarray(obj)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field}: expected {want}") from exc
    dt = a.dtype
    code = (dt.kind, dt.itemsize)
    if code not in [_DTYPES[name] for name in dtypes] or (native and not dt.isnative):
        raise ValueError(f"{field}: expected {want}, got dtype {dt}"
                         f"{' (non-native byte order)' if native and not dt.isnative else ''}")
    have = a.shape
    for shape in shapes:
        if have == shape or _fits(have, shape):
            break
    else:
        raise ValueError(f"{field}: expected {want}, got shape {have}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{field}: expected a C-contiguous array (use numpy.ascontiguousarray)")
    return a


def checked_array(obj: Any, field: str, kind: str, ndim: int, shape: Sequence[int]) -> np.ndarray:
    """``obj`` as an ndarray of dtype ``kind`` (float64, int64 or bool; no casting),
    C-contiguous, of the given ``ndim``-D shape (entries below zero are free), in native
    byte order (a byte-swapped array would be misread by a kernel; the policies' edge
    converts it before the call).
    """
    shape = tuple(shape)
    return array_of_form(obj, field, _want(kind, ndim, shape), (kind,), (shape,))


def nonfinite_error(field: str, is_nan: bool, index: int) -> ValueError:
    """The error for a non-finite entry at a flat ``index`` (for checks made elsewhere,
    such as on a GPU, to word it alike)."""
    what = "nan" if is_nan else "inf"
    return ValueError(f"{field}: expected finite values, found {what} at flat index {index}")


def check_finite_array(a: np.ndarray, field: str) -> None:
    if not np.isfinite(a).all():
        flat = a.reshape(-1)
        i = int(np.flatnonzero(~np.isfinite(flat))[0])
        raise nonfinite_error(field, math.isnan(flat[i]), i)


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



# --- the top-k scorer's arrays -------------------------------------------------------------
# The arguments of scoring.topk_softmax on a CPU backend, with the messages of
# cpp/bindings/topk_bindings.cpp (which checks again what crosses into C++). Arrays are
# read in place: never cast, and in native byte order. uint16 items are bfloat16 bits.

# 5e-39 is the smallest temperature whose log2(e) / T is still a finite float32.
MIN_TEMPERATURE = 1.4426950408889634 / float(np.finfo(np.float32).max)


def check_topk_items(items: Any) -> np.ndarray:
    """(N, d) float32, float16 or bfloat16 bits (uint16), with N >= 1 and d >= 1."""
    e = array_of_form(items, "items", "a 2-D float32, float16 or bfloat16 (uint16 bits, see "
                      "to_bfloat16) array of shape (n, d)", ("float32", "float16", "uint16"),
                      ((-1, -1),))
    if e.shape[0] < 1 or e.shape[1] < 1:
        raise ValueError(f"items: expected at least one item and one dimension, got shape "
                         f"{e.shape}")
    return e


def check_topk_users(users: Any, d: int) -> np.ndarray:
    """(d,) float32 for one user or (B, d) with B >= 1 (returned as given)."""
    u = array_of_form(users, "users", f"a float32 array of shape ({d},) or (B, {d}) (d = the "
                      "item dimension)", ("float32",), ((d,), (-1, d)))
    if u.shape[0] < 1:
        raise ValueError(f"users: expected at least one user, got shape {u.shape}")
    return u


def check_topk_k(k: Any, n_items: int) -> int:
    """An integer 1 <= k <= n_items."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k: expected an integer with 1 <= k <= {n_items} (the number of "
                         f"items), got {k!r}")
    if k < 1 or k > n_items:
        raise ValueError(f"k: expected 1 <= k <= {n_items} (the number of items), got {int(k)}")
    return int(k)


def check_temperature(temperature: Any) -> float:
    """A finite temperature T > MIN_TEMPERATURE (so that log2(e) / T is a finite float32)."""
    try:
        t = float(temperature)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"temperature: expected a finite number > 0 (at least 5e-39), got "
                         f"{temperature!r}") from exc
    if not (math.isfinite(t) and t > MIN_TEMPERATURE):
        raise ValueError(f"temperature: expected a finite number > 0 (at least 5e-39), got {t}")
    return t


def check_topk_threads(n_threads: Any) -> int:
    """An integer >= 0 (0: all cores). Unlike the policies' check_threads, no upper
    bound: the top-k binding takes any count and its parallel-for caps it."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 0:
        raise ValueError(f"n_threads: expected an integer >= 0 (0: all cores), got {n_threads!r}")
    return int(n_threads)


def check_topk_mask(mask: Any, n_items: int, n_users: int, single: bool) -> np.ndarray:
    """(N,) bool for every user, or (B, N) bool per user (not for a single user)."""
    if single:
        return checked_array(mask, "mask", "bool", 1, (n_items,))
    return array_of_form(mask, "mask", f"a bool array of shape ({n_items},) or ({n_users}, "
                         f"{n_items})", ("bool",), ((n_items,), (n_users, n_items)))


def check_topk_exclude(exclude: Any, n_users: int, single: bool) -> np.ndarray:
    """(m,) int64 item ids for every user, or (B, m) per user (not for a single user);
    an empty list is an empty exclusion. The ids are checked by check_exclude_ids."""
    if isinstance(exclude, (list, tuple)) and len(exclude) == 0:
        return np.zeros(0, dtype=np.int64)
    if single:
        return array_of_form(exclude, "exclude", "a 1-D int64 array of item ids", ("int64",),
                             ((-1,),))
    return array_of_form(exclude, "exclude", f"a 1-D int64 array of item ids, or a 2-D one of "
                         f"shape ({n_users}, m) (-1 pads short rows)", ("int64",),
                         ((-1,), (n_users, -1)))


def check_exclude_ids(exclude: np.ndarray, n_items: int) -> None:
    """Item ids in [0, n_items); a 2-D exclusion also takes -1 (padding)."""
    two_d = exclude.ndim == 2
    flat = exclude.reshape(-1)
    bad = (flat < 0) | (flat >= n_items)
    if two_d:
        bad &= flat != -1
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        pad = " or -1 (padding)" if two_d else ""
        raise ValueError(f"exclude: expected item ids in [0, {n_items}){pad}, got {int(flat[i])} "
                         f"at flat index {i}")


def check_topk_bias(bias: Any, n_items: int) -> np.ndarray:
    """(N,) float32, added to every score."""
    return array_of_form(bias, "bias", _want("float32", 1, (n_items,)), ("float32",),
                         ((n_items,),))


def check_topk_out(out: Any, field: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A preallocated result array: writeable, of exactly ``dtype`` and ``shape``."""
    a = array_of_form(out, field, f"a {dtype} array of shape {shape}", (dtype,), (shape,))
    if not a.flags.writeable:
        raise ValueError(f"{field}: expected a writeable array")
    return a


def check_finite_topk(a: np.ndarray, field: str) -> None:
    """check_finite_array, reading a uint16 array as bfloat16 bits (an all-ones exponent
    is inf or NaN)."""
    if a.dtype != np.uint16:
        check_finite_array(a, field)
        return
    flat = a.reshape(-1)
    bad = (flat & 0x7F80) == 0x7F80
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise nonfinite_error(field, bool(flat[i] & 0x007F), i)


def check_eligible_counts(n_mask: np.ndarray, n_excluded: np.ndarray, k: int,
                          has_exclude: bool) -> None:
    """Every row keeps at least k eligible items: n_mask[r] pass the mask, n_excluded[r]
    of those are excluded. The mask is blamed when it alone leaves fewer than k."""
    left = n_mask - n_excluded
    short = np.flatnonzero(left < k)
    if short.size:
        r = int(short[0])
        field = "mask" if not has_exclude or n_mask[r] < k else "exclude"
        where = f"row {r} leaves " if n_mask.shape[0] > 1 else "leaves "
        raise ValueError(f"{field}: {where}{int(left[r])} eligible items, fewer than k = {k}")


def check_eligible(mask: np.ndarray | None, ex_ids: np.ndarray | None,
                   ex_off: np.ndarray | None, ex_per_user: bool, n_users: int, n_items: int,
                   k: int) -> None:
    """check_eligible_counts for a mask ((N,) or (B, N)) and exclusions as CSR rows of
    sorted unique ids (ids, offsets; one row for every user unless ex_per_user)."""
    mask_rows = 0 if mask is None else (n_users if mask.ndim == 2 else 1)
    ex_rows = 0 if ex_ids is None else (n_users if ex_per_user else 1)
    rows = max(1, mask_rows, ex_rows)
    m2 = None if mask is None else mask.reshape(-1, n_items)
    n_mask = np.full(rows, n_items) if m2 is None else np.broadcast_to(
        m2.sum(axis=1), (rows,))
    n_ex = np.zeros(rows, dtype=np.int64)
    if ex_ids is not None and ex_off is not None:
        for r in range(rows):
            er = r if ex_per_user else 0
            e = ex_ids[ex_off[er]:ex_off[er + 1]]
            n_ex[r] = e.size if m2 is None else int(m2[r if m2.shape[0] > 1 else 0, e].sum())
    check_eligible_counts(n_mask, n_ex, k, ex_ids is not None)


def score_overflow(user: int, item: int) -> ValueError:
    """The error for a kernel's non-finite score once bias and items are known finite:
    the dot product overflowed float32."""
    return ValueError(f"items: the score of item {item} for user row {user} overflows "
                      "float32; expected embeddings whose dot products fit in float32")


def short_row(row: int, k: int) -> ValueError:
    """The error for a row that the kernel found short of k eligible items."""
    return ValueError(f"mask: row {row} leaves fewer than k = {k} eligible items")

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


# --- friendly inputs: data frames, other dtypes, converted once at the edge ---------------
# The policies' kernels take C-contiguous float64 / int64 / bool arrays and nothing else.
# These turn what a caller naturally has (a pandas DataFrame or Series, a list of ints,
# float32 features, 0/1 or bool rewards, int32 arm ids, a strided view) into that form,
# once, before the kernel is called. An array already in the kernel's form is returned as
# it is (no copy); what cannot be converted losslessly (strings, objects, float arm ids)
# is returned unchanged for the kernel's own check to reject with its message, except
# data-frame columns, which are named here.

_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)
_BOOL = np.dtype(np.bool_)


def _frame_to_numpy(obj: Any, field: str, *, to_float: bool) -> np.ndarray:
    """A pandas DataFrame or Series as a NumPy array, its columns
    checked to be numeric or bool; missing values become NaN for a float field and are
    rejected for an integer or bool field."""
    dtypes = getattr(obj, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "items"):  # a DataFrame: a Series of dtypes
        columns = list(dtypes.items())
    else:
        columns = [(getattr(obj, "name", None), obj.dtype)]
    numpy_dtypes = []
    for name, dt in columns:
        if getattr(dt, "kind", "O") not in "fiub":
            col = f"column {name!r} has" if name is not None else "got"
            raise ValueError(f"{field}: {col} dtype {dt}; expected numeric or bool values")
        numpy_dtypes.append(np.dtype(getattr(dt, "numpy_dtype", dt)))
    if to_float:
        return np.asarray(obj.to_numpy(dtype=np.float64, na_value=np.nan))
    missing = np.asarray(obj.isna())
    if missing.any():
        i = int(np.flatnonzero(missing.reshape(-1))[0])
        raise ValueError(f"{field}: expected no missing values, found one at flat index {i}")
    return np.asarray(obj.to_numpy(dtype=np.result_type(*numpy_dtypes)))


def _as_array(obj: Any, field: str, *, to_float: bool) -> np.ndarray | None:
    """``obj`` as an ndarray without casting, or None where it is not array-like (a
    scalar, a string): those go to the kernel unchanged."""
    if isinstance(obj, np.ndarray):
        return obj
    module = type(obj).__module__
    if (module == "pandas" or module.startswith("pandas.")) and hasattr(obj, "to_numpy"):
        return _frame_to_numpy(obj, field, to_float=to_float)
    if isinstance(obj, (list, tuple)) or hasattr(obj, "__array__"):
        try:
            return np.asarray(obj)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field}: expected a rectangular numeric array ({exc})") from exc
    return None


def edge_float(obj: Any, field: str) -> Any:
    """A float field (contexts, rewards, weights, biases) in the kernel's form: any
    float, integer or bool dtype, lists and data frames become a C-contiguous float64
    array (float16 and float32 exactly; integers exactly below 2**53). A C-contiguous
    float64 array is returned itself; NaN and shapes are left to the kernel's checks."""
    if obj is None or (type(obj) is np.ndarray and obj.dtype == _F64
                       and obj.flags.c_contiguous):
        return obj
    a = _as_array(obj, field, to_float=True)
    if a is None or a.dtype.kind not in "fiub":
        return obj
    return np.ascontiguousarray(a, dtype=_F64)


def edge_int(obj: Any, field: str) -> Any:
    """An integer field (arm ids) in the kernel's form: any signed or unsigned integer
    dtype, lists and data frames become a C-contiguous int64 array. Floats and bools are
    left for the kernel to reject rather than truncated."""
    if obj is None or (type(obj) is np.ndarray and obj.dtype == _I64
                       and obj.flags.c_contiguous):
        return obj
    a = _as_array(obj, field, to_float=False)
    if a is None or a.dtype.kind not in "iu":
        return obj
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        i = int(np.argmax(a.reshape(-1) > np.iinfo(np.int64).max))
        raise ValueError(f"{field}: expected values in the int64 range, got "
                         f"{int(a.reshape(-1)[i])} at flat index {i}")
    return np.ascontiguousarray(a, dtype=_I64)


def edge_bool(obj: Any, field: str) -> Any:
    """A bool field (masks) in the kernel's form: lists, data frames and strided views of
    bools become a C-contiguous bool array. Other dtypes (0/1 integers) are left for the
    kernel to reject: a mask is never guessed from numbers."""
    if obj is None or (type(obj) is np.ndarray and obj.dtype == _BOOL
                       and obj.flags.c_contiguous):
        return obj
    a = _as_array(obj, field, to_float=False)
    if a is None or a.dtype.kind != "b":
        return obj
    return np.ascontiguousarray(a, dtype=_BOOL)
