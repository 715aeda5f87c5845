"""Numba kernels of the evaluation layer: the Poisson bootstrap.

The bootstrap gives row i of replicate b the weight c_bi ~ Poisson(1), drawn
as raw 32-bit word i of the Philox stream (seed, b, PURPOSE_EVALUATION) of
``promobandit.rng`` and turned into a count by an inverse-CDF table. A seed
thus gives the same replicates on any thread count, and the plain NumPy
reference (``poisson_counts_reference``) reproduces them exactly. The draws are
keyed by the row's global index, not by the block that reads it: Philox is a
counter-based generator (word i is word i % 4 of the block at counter i // 4), so
a chunk starting at row ``row_offset`` jumps straight to its words, and summing
the chunks' sums gives the whole log's replicates (the out-of-core and Dask paths
of ``promobandit.evaluate.stream``).

Why Numba: B replicates over n rows are B * n draws and weighted sums; NumPy
would materialise a (B, n) count matrix (80 GB for B = 1000, n = 10M), while
this kernel streams over blocks of rows that stay in cache and keeps only
(B, m) sums.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._numba.rng import PURPOSE_EVALUATION, next_u32, stream_new

# Counts above this are cut off; P(Poisson(1) > 12) is about 1e-10, i.e. below
# the 2**-32 resolution of the 32-bit uniform that draws it.
POISSON_MAX = 12


def poisson1_thresholds() -> np.ndarray:
    """T_k = floor(P(Poisson(1) <= k) * 2**32), k = 0 .. POISSON_MAX - 1, as uint64.

    A 32-bit word u maps to the count #{k : u >= T_k}.
    """
    cdf = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(POISSON_MAX)])
    return np.floor(cdf * 2.0**32).astype(np.uint64)


@nb.njit(nogil=True, cache=True, error_model="numpy", parallel=True)
def poisson_bootstrap_sums(values, seed, n_boot, group, block, thresholds,
                           stream_offset, row_offset):  # pragma: no cover
    """Weighted column sums of `values` (n, m) under n_boot Poisson(1) resamplings.

    Replicate b draws from the stream (seed, stream_offset + b); give samples that
    must resample independently (two arms of an A/B test) different offsets. Row i of
    `values` is row row_offset + i of the whole log: it gets that row's draw.

    Returns (n_boot, m + 1): column j < m is sum_i c_bi * values[i, j], column m
    is sum_i c_bi. Replicates run in groups of `group` (one group per task; rows
    in blocks of `block`, reused by every replicate of the group while in cache).
    """
    n, m = values.shape
    kmax = thresholds.shape[0]
    out = np.zeros((n_boot, m + 1))
    n_groups = (n_boot + group - 1) // group
    for g in nb.prange(n_groups):
        b0 = g * group
        b1 = min(n_boot, b0 + group)
        nb_ = b1 - b0
        states = np.empty((nb_, 11), dtype=np.uint64)
        for j in range(nb_):
            states[j, :] = stream_new(seed, np.uint64(stream_offset + b0 + j),
                                      PURPOSE_EVALUATION)
            # Skip to the block of word row_offset, then past its first words.
            states[j, 2] = np.uint64(row_offset // 4) & np.uint64(0xFFFFFFFF)
            for _ in range(row_offset % 4):
                next_u32(states[j])
        acc = np.zeros((nb_, m + 1))
        for start in range(0, n, block):
            stop = min(n, start + block)
            for j in range(nb_):
                st = states[j]
                for i in range(start, stop):
                    u = next_u32(st)
                    c = 0
                    while c < kmax and u >= thresholds[c]:
                        c += 1
                    if c > 0:
                        cf = float(c)
                        acc[j, m] += cf
                        for q in range(m):
                            acc[j, q] += cf * values[i, q]
        for j in range(nb_):
            for q in range(m + 1):
                out[b0 + j, q] = acc[j, q]
    return out


def poisson_counts_reference(seed: int, replicate: int, n: int,
                             stream_offset: int = 0) -> np.ndarray:
    """The (n,) Poisson(1) counts of rows 0..n-1 in one replicate, in plain NumPy (the
    test oracle)."""
    from ..rng import u32

    words = u32(seed, stream_offset + replicate, n, purpose=PURPOSE_EVALUATION)
    words = words.astype(np.uint64)
    return np.searchsorted(poisson1_thresholds(), words, side="right").astype(np.int64)


# 8 replicates per task share each block of 4096 rows (256 KB of 8 float64 columns)
# while it sits in L2; both numbers only trade cache reuse against load balance.
REPLICATE_GROUP = 8
ROW_BLOCK = 4096


def bootstrap_sums(values: np.ndarray, n_boot: int, seed: int, stream_offset: int = 0,
                   row_offset: int = 0) -> np.ndarray:
    """(n_boot, m + 1) Poisson-bootstrap sums of the (n, m) float64 `values`; the last
    column is the sum of the counts (the replicate's sample size). The rows are rows
    row_offset .. row_offset + n - 1 of a larger log: the sums of consecutive chunks add
    up to the sums of the whole (up to float rounding)."""
    if row_offset < 0 or row_offset + len(values) > 4 * 2**32:
        raise ValueError(f"row_offset: expected rows within [0, 2**34), got {row_offset}")
    v = np.ascontiguousarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    return poisson_bootstrap_sums(v, np.uint64(seed), n_boot, REPLICATE_GROUP, ROW_BLOCK,
                                  poisson1_thresholds(), np.uint64(stream_offset),
                                  np.int64(row_offset))
