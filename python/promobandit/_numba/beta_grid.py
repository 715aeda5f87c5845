"""Beta TS win probabilities on the node grid of a snapshot; mirrors
``cpp/include/promobandit/beta_grid.hpp`` (see there for the method and its knobs).

The C++ kernel keeps the grid and every arm's column between calls and recomputes only
the columns whose posterior changed; here ``grid_propensities`` recomputes everything
from the snapshot and the current posteriors. Both are pure functions of those, so they
give the same bits: every formula below is the same operation in the same order.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .quadrature import FLOOR, GL_S, GL_T, GL_W, N_NODES, panel_layout
from .quadrature import beta_range as _beta_range

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}

GRID_PANEL_SD = 2.0  # kGridPanelSd: panels cut at most this many sds of the narrowest arm
GRID_MAX_PANEL_SD = 3.0  # kGridMaxPanelSd: rebuild when a live arm's core panels exceed this
GRID_SPAN_SD = 8.0  # kGridSpanSd: each arm's range, mean +- this many sds
GRID_CORE_SD = 6.0  # kGridCoreSd: a live arm's core, mean +- this many sds
GRID_MAX_PANELS = 2048  # kGridMaxPanels: cap on panels per grid
GRID_LANES = 4  # kGridLanes: interleaved partial sums in the combination


@nb.njit(**_JIT)
def beta_range(a, b):
    """Mirrors beta_range: (mean, sd, lo, hi, log density at the mean) of Beta(a, b)."""
    return _beta_range(a, b, GRID_SPAN_SD)


@nb.njit(**_JIT)
def build(snap):
    """Mirrors BetaGridNodes::build: (ends, seg_h, seg_np, x, wt, lx, l1x) of the grid cut
    for snap (K, 2)."""
    k = snap.shape[0]
    lo = np.empty(k)
    hi = np.empty(k)
    sd = np.empty(k)
    n = 0
    for j in range(k):
        if not (snap[j, 0] > 0.0):
            continue
        _, s, lo_j, hi_j, _ = beta_range(snap[j, 0], snap[j, 1])
        lo[n] = lo_j
        hi[n] = hi_j
        sd[n] = s
        n += 1
    n_seg = max(2 * n - 1, 0)
    seg_h = np.zeros(n_seg)
    ends, seg_np, total = panel_layout(lo, hi, sd, np.empty(0, dtype=np.int64), n,
                                       GRID_PANEL_SD, GRID_MAX_PANELS)
    n_nodes = total * N_NODES
    x = np.zeros(n_nodes)
    wt = np.zeros(n_nodes)
    lx = np.zeros(n_nodes)
    l1x = np.zeros(n_nodes)
    node = 0
    for g in range(n_seg):
        np_g = seg_np[g]
        if np_g == 0:
            continue
        e0 = ends[g]
        e1 = ends[g + 1]
        h = (e1 - e0) / float(np_g)
        seg_h[g] = h
        for q in range(np_g):
            left = e0 + float(q) * h
            for t in range(N_NODES):
                xv = left + h * GL_T[t]
                x[node + t] = xv
                wt[node + t] = h * GL_W[t]
                lx[node + t] = math.log(xv)
                l1x[node + t] = math.log(1.0 - xv)
            node += N_NODES
    return ends, seg_h, seg_np, x, wt, lx, l1x


@nb.njit(**_JIT)
def resolves(ends, seg_h, seg_np, m, sd, lo, hi):
    """Mirrors BetaGridNodes::resolves."""
    if ends.shape[0] == 0 or lo < ends[0] or hi > ends[ends.shape[0] - 1]:
        return False
    c0 = m - GRID_CORE_SD * sd
    c1 = m + GRID_CORE_SD * sd
    if c0 < lo:
        c0 = lo
    if c1 > hi:
        c1 = hi
    h_max = GRID_MAX_PANEL_SD * sd
    for g in range(seg_np.shape[0]):
        if seg_np[g] == 0:
            continue
        if ends[g] < c1 and ends[g + 1] > c0 and seg_h[g] > h_max:
            return False
    return True


@nb.njit(**_JIT)
def column(ends, seg_h, seg_np, x, lx, l1x, a, b, lo, hi, off, fh, Fh):
    """Mirrors BetaGridNodes::column: normalised density and CDF at every node."""
    n_nodes = x.shape[0]
    fp = np.empty(N_NODES)
    cv = np.empty(N_NODES)
    cum = 0.0
    node = 0
    first = -1
    last = -1
    for g in range(seg_np.shape[0]):
        np_g = seg_np[g]
        if np_g == 0:
            continue
        if not (lo < ends[g + 1] and hi > ends[g]):
            for i in range(node, node + np_g * N_NODES):
                fh[i] = 0.0
                Fh[i] = cum
            node += np_g * N_NODES
            continue
        h = seg_h[g]
        if first < 0:
            first = node
        for _ in range(np_g):
            for t in range(N_NODES):
                xv = x[node + t]
                if xv > lo and xv < hi:
                    fp[t] = math.exp((a - 1.0) * lx[node + t] + (b - 1.0) * l1x[node + t] - off)
                else:
                    fp[t] = 0.0
            for t in range(N_NODES):
                acc = 0.0
                for u in range(N_NODES):
                    acc += GL_S[t, u] * fp[u]
                c = cum + h * acc
                cv[t] = c if c > 0.0 else 0.0
            acc = 0.0
            for t in range(N_NODES):
                acc += GL_W[t] * fp[t]
            cum += h * acc
            for t in range(N_NODES):
                fh[node + t] = fp[t]
                Fh[node + t] = cv[t]
            node += N_NODES
        last = node
    if first < 0:
        first = 0
        last = 0
    inv = 1.0 / cum
    for i in range(first, last):
        fh[i] = fh[i] * inv
        Fh[i] = Fh[i] * inv
    for i in range(last, n_nodes):
        Fh[i] = 1.0


@nb.njit(**_JIT)
def window(x, top_lo, top_hi):
    """Mirrors beta_grid_window: [first x > top_lo, first x >= top_hi)."""
    n = x.shape[0]
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if x[mid] > top_lo:
            hi = mid
        else:
            lo = mid + 1
    r0 = lo
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if x[mid] >= top_hi:
            hi = mid
        else:
            lo = mid + 1
    return r0, lo


@nb.njit(**_JIT)
def combine(wt, live, n_live, fh, Fh, r0, r1, out):
    """Mirrors beta_grid_combine: fh, Fh are (K, n_nodes) columns, rows of the live arms."""
    w = r1 - r0
    pre = np.empty((n_live, w))
    for i in range(w):
        pre[0, i] = 1.0
    for j in range(1, n_live):
        kp = live[j - 1]
        for i in range(w):
            pre[j, i] = pre[j - 1, i] * Fh[kp, r0 + i]
    suf = np.ones(w)
    prob = np.empty(n_live)
    acc = np.empty(GRID_LANES)
    for j in range(n_live - 1, -1, -1):
        kk = live[j]
        for lane in range(GRID_LANES):
            acc[lane] = 0.0
        i = 0
        while i + GRID_LANES <= w:
            for lane in range(GRID_LANES):
                r = r0 + i + lane
                acc[lane] += wt[r] * fh[kk, r] * (pre[j, i + lane] * suf[i + lane])
                suf[i + lane] = suf[i + lane] * Fh[kk, r]
            i += GRID_LANES
        lane = 0
        while i < w:
            r = r0 + i
            acc[lane] += wt[r] * fh[kk, r] * (pre[j, i] * suf[i])
            suf[i] = suf[i] * Fh[kk, r]
            i += 1
            lane += 1
        prob[j] = (acc[0] + acc[1]) + (acc[2] + acc[3])
    total = 0.0
    for j in range(n_live):
        total += prob[j]
    for j in range(n_live):
        out[live[j]] = prob[j] / total


@nb.njit(**_JIT)
def grid_propensities(ab, elig, snap, out):
    """Mirrors beta_grid_propensities (without the cache): the eligible arms' win
    probabilities from ab (K, 2) posteriors into out; snap (K, 2) is replaced when its
    grid does not resolve every live arm."""
    k = ab.shape[0]
    ms = np.zeros(k)
    sds = np.zeros(k)
    los = np.zeros(k)
    his = np.zeros(k)
    offs = np.zeros(k)
    top_lo = 0.0
    first = True
    for j in range(k):
        out[j] = 0.0
        if not elig[j]:
            continue
        ms[j], sds[j], los[j], his[j], offs[j] = beta_range(ab[j, 0], ab[j, 1])
        if first or los[j] > top_lo:
            top_lo = los[j]
        first = False
    live = np.empty(k, dtype=np.int64)
    n_live = 0
    top_hi = 0.0
    first = True
    for j in range(k):
        if elig[j] and his[j] > top_lo:
            live[n_live] = j
            n_live += 1
            if first or his[j] > top_hi:
                top_hi = his[j]
            first = False
    if n_live == 1:
        out[live[0]] = 1.0
        return
    have = False
    for j in range(k):
        if snap[j, 0] != 0.0 or snap[j, 1] != 0.0:
            have = True
    ok = have
    if have:
        ends, seg_h, seg_np, x, wt, lx, l1x = build(snap)
        for jj in range(n_live):
            j = live[jj]
            if not resolves(ends, seg_h, seg_np, ms[j], sds[j], los[j], his[j]):
                ok = False
                break
    if not ok:
        for j in range(k):
            snap[j, 0] = ab[j, 0] if elig[j] else 0.0
            snap[j, 1] = ab[j, 1] if elig[j] else 0.0
    ends, seg_h, seg_np, x, wt, lx, l1x = build(snap)
    n_nodes = x.shape[0]
    fh = np.zeros((k, n_nodes))
    Fh = np.zeros((k, n_nodes))
    for jj in range(n_live):
        j = live[jj]
        column(ends, seg_h, seg_np, x, lx, l1x, ab[j, 0], ab[j, 1], los[j], his[j], offs[j], fh[j], Fh[j])
    r0, r1 = window(x, top_lo, top_hi)
    if r1 < r0:
        r1 = r0
    combine(wt, live, n_live, fh, Fh, r0, r1, out)
    for j in range(k):
        if elig[j] and out[j] < FLOOR:
            out[j] = FLOOR
