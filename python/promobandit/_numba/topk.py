"""Fused top-k softmax scoring in Numba; same semantics as ``topk.hpp``.

Every argument arrives checked and normalised by ``promobandit.scoring`` (items
(N, d) float32, or uint16 holding float16/bfloat16 bits; users (B, d) float32;
exclusions as sorted unique CSR rows). Scores are float32 sums over the d
products in index order (no fused multiply-add, so they may differ from the C++
backend in the last bit); the normaliser is merged from per-block partials in
block order, so results do not depend on the thread count. Items are scored in
blocks of ``BLOCK``; ineligible items are left out of the top-k and of the
normaliser.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numba as nb
import numpy as np

F32, F16, BF16 = 0, 1, 2
# Items per block: the block's scores (and decoded half rows) stay in cache.
BLOCK = 2048
# Users scored together against one item block (the product loop runs over them).
USER_TILE = 16

_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}
_PJIT: dict[str, Any] = {**_JIT, "parallel": True}

# Numba's workqueue threading layer aborts on concurrent parallel calls; one at a time.
_PARALLEL_LOCK = threading.Lock()


@nb.njit(**_JIT)
def _decode_rows(bits, kind, i0, cnt, out):
    """Rows [i0, i0+cnt) of float16 / bfloat16 bit patterns as float32 bit patterns."""
    d = bits.shape[1]
    for r in range(cnt):
        for j in range(d):
            h = np.int64(bits[i0 + r, j])
            if kind == BF16:
                v = h << 16
            else:
                sign = (h & 0x8000) << 16
                e = (h >> 10) & 0x1F
                m = h & 0x3FF
                if e == 0:
                    if m == 0:
                        v = sign
                    else:  # subnormal half: normalise into a float exponent
                        f = 113
                        while (m & 0x400) == 0:
                            m <<= 1
                            f -= 1
                        v = sign | (f << 23) | ((m & 0x3FF) << 13)
                elif e == 31:
                    v = sign | 0x7F800000 | (m << 13)
                else:
                    v = sign | ((e + 112) << 23) | (m << 13)
            out[r * d + j] = np.uint32(v)


@nb.njit(**_JIT)
def _better(s1, i1, s2, i2):
    return s1 > s2 or (s1 == s2 and i1 < i2)


@nb.njit(**_JIT)
def _sift_down(hs, hi, n, pos):
    while True:
        c = 2 * pos + 1
        if c >= n:
            return
        # The worse child goes up (the heap keeps the worst entry on top).
        if c + 1 < n and _better(hs[c], hi[c], hs[c + 1], hi[c + 1]):
            c += 1
        if _better(hs[c], hi[c], hs[pos], hi[pos]):
            return
        hs[pos], hs[c] = hs[c], hs[pos]
        hi[pos], hi[c] = hi[c], hi[pos]
        pos = c


@nb.njit(**_JIT)
def _offer(hs, hi, hn, k, s, i):
    """Keep (s, i) if it is among the k best seen; hs/hi is a heap, worst on top."""
    n = hn[0]
    if n < k:
        pos = n
        hs[pos] = s
        hi[pos] = i
        hn[0] = n + 1
        while pos > 0:
            parent = (pos - 1) // 2
            if _better(hs[parent], hi[parent], hs[pos], hi[pos]):
                hs[pos], hs[parent] = hs[parent], hs[pos]
                hi[pos], hi[parent] = hi[parent], hi[pos]
                pos = parent
            else:
                break
    elif _better(s, i, hs[0], hi[0]):
        hs[0] = s
        hi[0] = i
        _sift_down(hs, hi, n, 0)


@nb.njit(**_JIT)
def _epilogue(sc, i0, cnt, mask, mask_row, has_mask, ex_ids, ex_lo, ex_hi, inv_t, hs, hi, hn, k):
    """Eligibility, candidates and the block's (max, sum exp((s - max) / T)); first bad id."""
    p = ex_lo + np.searchsorted(ex_ids[ex_lo:ex_hi], i0)
    m = -np.inf
    bad = -1
    for r in range(cnt):
        i = i0 + r
        x = sc[r]
        if not math.isfinite(x):
            if bad < 0:
                bad = i
            sc[r] = -np.inf
            continue
        ok = True
        if has_mask and not mask[mask_row, i]:
            ok = False
        while p < ex_hi and ex_ids[p] < i:
            p += 1
        if p < ex_hi and ex_ids[p] == i:
            ok = False
        if not ok:
            sc[r] = -np.inf
            continue
        if x > m:
            m = x
        _offer(hs, hi, hn, k, x, i)
    s = 0.0
    if m > -np.inf:
        for r in range(cnt):
            x = sc[r]
            if x > -np.inf:
                s += math.exp((np.float64(x) - np.float64(m)) * inv_t)
    return np.float64(m), s, bad


@nb.njit(**_JIT)
def _lse_merge(big_m, big_s, m, s, inv_t):
    """Running (max, sum) merged with a block's partial; blocks come in a fixed order."""
    if not s > 0.0:
        return big_m, big_s
    if not big_s > 0.0:
        return m, s
    if m > big_m:
        return m, big_s * math.exp((big_m - m) * inv_t) + s
    return big_m, big_s + s * math.exp((m - big_m) * inv_t)


@nb.njit(**_JIT)
def _finalize(hs, hi, n, big_m, big_s, inv_t, ids, scores, pt, pf):
    """Writes the heap's n entries best first (heap sort), with their probabilities."""
    for pos in range(n - 1, -1, -1):  # pop the worst into the last free slot
        ids[pos] = hi[0]
        scores[pos] = hs[0]
        hs[0] = hs[pos]
        hi[0] = hi[pos]
        _sift_down(hs, hi, pos, 0)
    log_s = math.log(big_s)
    top = np.float64(scores[0])
    total = 0.0
    for j in range(n):
        s = np.float64(scores[j])
        pt[j] = math.exp((s - top) * inv_t)
        total += pt[j]
        pf[j] = math.exp((s - big_m) * inv_t - log_s)
    for j in range(n):
        pt[j] /= total
    return big_m * inv_t + log_s


@nb.njit(**_JIT)
def _score_rows(items, kind, i0, cnt, u, bias, has_bias, scratch, out):
    """out[r] = E[i0 + r] . u (+ bias), a float32 sum in index order."""
    d = u.shape[0]
    if kind == F32:
        for r in range(cnt):
            acc = np.float32(0.0)
            for j in range(d):
                acc += np.float32(items[i0 + r, j]) * u[j]
            out[r] = acc
    else:
        _decode_rows(items, kind, i0, cnt, scratch)
        vals = scratch.view(np.float32)
        for r in range(cnt):
            acc = np.float32(0.0)
            for j in range(d):
                acc += vals[r * d + j] * u[j]
            out[r] = acc
    if has_bias:
        for r in range(cnt):
            out[r] = out[r] + bias[i0 + r]


@nb.njit(**_PJIT)
def _single_blocks(items, kind, u, bias, has_bias, mask, has_mask, ex_ids, ex_lo, ex_hi, inv_t,
                   cand_s, cand_i, cand_n, part_m, part_s, bad):
    """Per item block: candidates (up to cand_s.shape[1]), normaliser partial, first bad id."""
    n_items, d = items.shape
    nblocks = cand_s.shape[0]
    kc = cand_s.shape[1]
    for b in nb.prange(nblocks):
        i0 = b * BLOCK
        cnt = min(BLOCK, n_items - i0)
        sc = np.empty(BLOCK, dtype=np.float32)
        scratch = np.empty(BLOCK * d if kind != F32 else 1, dtype=np.uint32)
        _score_rows(items, kind, i0, cnt, u, bias, has_bias, scratch, sc)
        hn = np.zeros(1, dtype=np.int64)
        m, s, bb = _epilogue(sc, i0, cnt, mask, 0, has_mask, ex_ids, ex_lo, ex_hi, inv_t,
                             cand_s[b], cand_i[b], hn, kc)
        cand_n[b] = hn[0]
        part_m[b] = m
        part_s[b] = s
        bad[b] = bb


@nb.njit(**_JIT)
def _single_merge(cand_s, cand_i, cand_n, part_m, part_s, inv_t, k, ids, scores, pt, pf):
    """Merges block results in block order; returns (log normaliser, number kept)."""
    hs = np.empty(k, dtype=np.float32)
    hi = np.empty(k, dtype=np.int64)
    hn = np.zeros(1, dtype=np.int64)
    big_m = -np.inf
    big_s = 0.0
    for b in range(cand_s.shape[0]):
        big_m, big_s = _lse_merge(big_m, big_s, part_m[b], part_s[b], inv_t)
        for j in range(cand_n[b]):
            _offer(hs, hi, hn, k, cand_s[b, j], cand_i[b, j])
    n = hn[0]
    if n < k or not big_s > 0.0:
        return np.nan, n
    return _finalize(hs, hi, n, big_m, big_s, inv_t, ids, scores, pt, pf), n


@nb.njit(**_PJIT)
def _batch(items, kind, ut, bias, has_bias, mask, mask_per_user, has_mask, ex_ids, ex_off,
           ex_per_user, inv_t, k, ids, scores, pt, pf, log_norm, bad, kept):
    """Users in tiles of USER_TILE (ut is U transposed, (d, B)); items block by block."""
    n_items, d = items.shape
    n_users = ut.shape[1]
    ntiles = (n_users + USER_TILE - 1) // USER_TILE
    nblocks = (n_items + BLOCK - 1) // BLOCK
    for tile in nb.prange(ntiles):
        t0 = tile * USER_TILE
        nt = min(USER_TILE, n_users - t0)
        sc = np.empty((BLOCK, USER_TILE), dtype=np.float32)
        col = np.empty(BLOCK, dtype=np.float32)
        scratch = np.empty(BLOCK * d if kind != F32 else 1, dtype=np.uint32)
        hs = np.empty((USER_TILE, k), dtype=np.float32)
        hi = np.empty((USER_TILE, k), dtype=np.int64)
        hn = np.zeros((USER_TILE, 1), dtype=np.int64)
        big_m = np.full(USER_TILE, -np.inf)
        big_s = np.zeros(USER_TILE)
        first_bad = np.full(USER_TILE, -1, dtype=np.int64)
        vals = scratch.view(np.float32)
        for blk in range(nblocks):
            i0 = blk * BLOCK
            cnt = min(BLOCK, n_items - i0)
            if kind != F32:
                _decode_rows(items, kind, i0, cnt, scratch)
            for r in range(cnt):
                for t in range(nt):
                    sc[r, t] = np.float32(0.0)
                for j in range(d):
                    if kind == F32:
                        e = np.float32(items[i0 + r, j])
                    else:
                        e = vals[r * d + j]
                    for t in range(nt):
                        sc[r, t] += e * ut[j, t0 + t]
                if has_bias:
                    for t in range(nt):
                        sc[r, t] = sc[r, t] + bias[i0 + r]
            for t in range(nt):
                user = t0 + t
                for r in range(cnt):
                    col[r] = sc[r, t]
                er = user if ex_per_user else 0
                m, s, bb = _epilogue(col, i0, cnt, mask, user if mask_per_user else 0, has_mask,
                                     ex_ids, ex_off[er], ex_off[er + 1], inv_t, hs[t], hi[t],
                                     hn[t], k)
                if bb >= 0 and first_bad[t] < 0:
                    first_bad[t] = bb
                big_m[t], big_s[t] = _lse_merge(big_m[t], big_s[t], m, s, inv_t)
        for t in range(nt):
            user = t0 + t
            bad[user] = first_bad[t]
            kept[user] = hn[t, 0]
            if first_bad[t] < 0 and hn[t, 0] == k and big_s[t] > 0.0:
                log_norm[user] = _finalize(hs[t], hi[t], k, big_m[t], big_s[t], inv_t,
                                           ids[user], scores[user], pt[user], pf[user])


def run(items: np.ndarray, kind: int, users: np.ndarray, k: int, temperature: float,
        mask: np.ndarray | None, mask_per_user: bool, ex_ids: np.ndarray | None,
        ex_off: np.ndarray | None, ex_per_user: bool, bias: np.ndarray | None, n_threads: int,
        ids: np.ndarray, scores: np.ndarray, pt: np.ndarray, pf: np.ndarray,
        log_norm: np.ndarray) -> tuple[int, int, int]:
    """Fills the (B, k) / (B,) outputs; returns (bad user, bad item, short user), -1 if none.

    ``n_threads`` <= 0 uses Numba's default thread count; larger values are capped at it.
    """
    n_items = items.shape[0]
    n_users = users.shape[0]
    inv_t = 1.0 / temperature
    has_mask = mask is not None
    m = mask if mask is not None else np.ones((1, 1), dtype=np.bool_)
    if m.ndim == 1:
        m = m.reshape(1, -1)
    has_bias = bias is not None
    b = bias if bias is not None else np.zeros(1, dtype=np.float32)
    if ex_ids is None or ex_off is None:
        ex_ids = np.zeros(0, dtype=np.int64)
        ex_off = np.zeros(2, dtype=np.int64)
        ex_per_user = False
    most = int(nb.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    threads = most if n_threads <= 0 else min(n_threads, most)
    with _PARALLEL_LOCK:
        previous = nb.get_num_threads()
        nb.set_num_threads(threads)
        try:
            if n_users == 1:
                nblocks = (n_items + BLOCK - 1) // BLOCK
                kc = min(k, BLOCK)
                cand_s = np.empty((nblocks, kc), dtype=np.float32)
                cand_i = np.empty((nblocks, kc), dtype=np.int64)
                cand_n = np.zeros(nblocks, dtype=np.int64)
                part_m = np.empty(nblocks)
                part_s = np.empty(nblocks)
                bad = np.empty(nblocks, dtype=np.int64)
                _single_blocks(items, kind, users[0], b, has_bias, m, has_mask, ex_ids,
                               int(ex_off[0]), int(ex_off[1]), inv_t, cand_s, cand_i, cand_n,
                               part_m, part_s, bad)
                if (bad >= 0).any():
                    return 0, int(bad[bad >= 0].min()), -1
                ln, kept = _single_merge(cand_s, cand_i, cand_n, part_m, part_s, inv_t, k,
                                         ids[0], scores[0], pt[0], pf[0])
                if kept < k:
                    return -1, -1, 0
                log_norm[0] = ln
                return -1, -1, -1
            ut = np.ascontiguousarray(users.T)
            bad_u = np.empty(n_users, dtype=np.int64)
            kept_u = np.empty(n_users, dtype=np.int64)
            _batch(items, kind, ut, b, has_bias, m, mask_per_user, has_mask, ex_ids, ex_off,
                   ex_per_user, inv_t, k, ids, scores, pt, pf, log_norm, bad_u, kept_u)
        finally:
            nb.set_num_threads(previous)
    flagged = np.flatnonzero(bad_u >= 0)
    if flagged.size:
        return int(flagged[0]), int(bad_u[flagged[0]]), -1
    short = np.flatnonzero(kept_u < k)
    if short.size:
        return -1, -1, int(short[0])
    return -1, -1, -1
