"""Exact Thompson-sampling propensities by quadrature, in Numba; mirrors ``quadrature.hpp``.

P(arm a wins) = integral of f_a(x) * prod_{b != a} F_b(x) dx over the score x, for
independent scores (Beta posteriors shifted by a bias, or normal scores). See
quadrature.hpp for the method, its knobs and its error; every formula here is the
same operation in the same order, so both backends give the same bits.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._phi_table import CDF as PHI_CDF
from .._phi_table import PDF as PHI_PDF
from .._phi_table import POINTS as PHI_POINTS
from .._phi_table import SCALE as PHI_SCALE
from .._phi_table import Z0 as PHI_Z0

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}

FAMILY_BETA = 0
FAMILY_NORMAL = 1

SPAN_SD = 12.0  # each score's range: mean +- SPAN_SD standard deviations (clipped to support)
PANEL_SD = 2.0  # panel width: at most this many sds of the narrowest score covering it
MAX_PANELS = 4096  # cap on panels per call (wider panels beyond it)
FLOOR = 1e-12  # smallest propensity returned for an eligible arm

# 6-point Gauss-Legendre on [0, 1]: nodes, weights, and S[i][j] = integral from 0 to
# node i of the j-th Lagrange basis polynomial (cumulative integrals at the nodes).
GL_T = np.array([0.03376524289842403, 0.16939530676686776, 0.38069040695840156,
                 0.6193095930415985, 0.8306046932331322, 0.9662347571015759])
GL_W = np.array([0.08566224618958514, 0.18038078652406936, 0.23395696728634552,
                 0.23395696728634552, 0.18038078652406936, 0.08566224618958514])
GL_S = np.array([
    [0.04283112309479248, -0.01476372599719705, 0.00932505070647724,
     -0.00566885804948314, 0.00285443331509915, -0.00081278017126471],
    [0.09267349143037971, 0.09019039326203344, -0.0203001022932373,
     0.01036315624024471, -0.00488719292803692, 0.00135556105548489],
    [0.08224792261284486, 0.1960321623332472, 0.11697848364317483,
     -0.02048252774565842, 0.00798999189966241, -0.00207562578486614],
    [0.08773787197445339, 0.17239079462441312, 0.2544394950319984,
     0.11697848364317057, -0.01565137580917854, 0.00341432357674248],
    [0.08430668513410124, 0.18526797945212342, 0.22359381104608458,
     0.25425706957958205, 0.0901903932620232, -0.00701124524078999],
    [0.0864750263608505, 0.1775263532089931, 0.23962582533580185,
     0.22463191657987058, 0.19514451252124712, 0.04283112309479839],
])
N_NODES = 6


@nb.njit(**_JIT)
def _log_density(family, p0, p1, shift, off, x):
    """Unnormalised log density of one score at x (see quad_log_density)."""
    if family == FAMILY_BETA:
        y = x - shift
        return (p0 - 1.0) * math.log(y) + (p1 - 1.0) * math.log(1.0 - y) - off
    z = (x - p0) / p1
    return -0.5 * (z * z)


@nb.njit(**_JIT)
def beta_range(a, b, span):
    """Mirrors quad_beta_range: (mean, sd, lo, hi, log density at the mean) of Beta(a, b),
    its range mean +- span sds clipped to [0, 1]."""
    m = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) * (a + b) * (a + b + 1.0)))
    lo = m - span * sd
    hi = m + span * sd
    if lo < 0.0:
        lo = 0.0
    if hi > 1.0:
        hi = 1.0
    off = (a - 1.0) * math.log(m) + (b - 1.0) * math.log(1.0 - m)
    return m, sd, lo, hi, off


@nb.njit(**_JIT)
def panel_layout(lo, hi, sd, idx, n, panel_sd, max_panels):
    """Mirrors quad_panel_layout: (ends (2 n), seg_np (2 n - 1), total) for the n ranges
    [lo, hi] with widths sd at entries idx[j] (idx of length 0: entry j)."""
    ends = np.zeros(2 * n)
    for j in range(n):
        i = idx[j] if idx.shape[0] > 0 else j
        ends[2 * j] = lo[i]
        ends[2 * j + 1] = hi[i]
    for j in range(1, 2 * n):
        v = ends[j]
        k = j - 1
        while k >= 0 and ends[k] > v:
            ends[k + 1] = ends[k]
            k -= 1
        ends[k + 1] = v
    n_seg = max(2 * n - 1, 0)
    seg_np = np.zeros(n_seg, dtype=np.int64)
    total = 0
    for g in range(n_seg):
        e0 = ends[g]
        e1 = ends[g + 1]
        if not (e1 > e0):
            continue
        width = e1 - e0
        for j in range(n):
            i = idx[j] if idx.shape[0] > 0 else j
            if lo[i] <= e0 and hi[i] >= e1 and panel_sd * sd[i] < width:
                width = panel_sd * sd[i]
        q = math.ceil((e1 - e0) / width)
        if not (q <= float(max_panels)):
            q = float(max_panels)
        np_g = np.int64(q)
        if np_g < 1:
            np_g = 1
        seg_np[g] = np_g
        total += np_g
    if total > max_panels:  # wider panels everywhere, in proportion
        old = total
        total = 0
        for g in range(n_seg):
            if seg_np[g] > 0:
                np_g = (seg_np[g] * max_panels) // old
                seg_np[g] = np_g if np_g > 0 else 1
                total += seg_np[g]
    return ends, seg_np, total


@nb.njit(**_JIT)
def max_propensities(family, p0, p1, shift, arms, n, out):
    """Mirrors quad_max_propensities: out[arms[i]] = P(score i is the largest) for the n
    scores described by (p0, p1, shift)[i] (Beta(p0, p1) + shift, or N(p0, p1^2))."""
    cen = np.empty(n)
    sd = np.empty(n)
    lo = np.empty(n)
    hi = np.empty(n)
    off = np.zeros(n)
    for i in range(n):
        if family == FAMILY_BETA:
            m, s, lo_y, hi_y, off[i] = beta_range(p0[i], p1[i], SPAN_SD)
            cen[i] = m + shift[i]
            sd[i] = s
            lo[i] = lo_y + shift[i]
            hi[i] = hi_y + shift[i]
        else:
            cen[i] = p0[i]
            sd[i] = p1[i]
            lo[i] = p0[i] - SPAN_SD * p1[i]
            hi[i] = p0[i] + SPAN_SD * p1[i]
    # Below the largest lower end some score is surely above x: no score wins there.
    top_lo = lo[0]
    for i in range(1, n):
        if lo[i] > top_lo:
            top_lo = lo[i]
    live = np.empty(n, dtype=np.int64)
    n_live = 0
    for i in range(n):
        out[arms[i]] = 0.0
        if hi[i] > top_lo:
            live[n_live] = i
            n_live += 1
    if n_live == 1:
        out[arms[live[0]]] = 1.0
        return
    # Segment ends and panels per segment: at most PANEL_SD sds of the narrowest live
    # score covering it.
    n_seg = 2 * n_live - 1
    ev, seg_panels, total = panel_layout(lo, hi, sd, live[:n_live], n_live, PANEL_SD,
                                         MAX_PANELS)
    n_nodes = total * N_NODES
    wt = np.empty(n_nodes)
    f = np.empty((n_nodes, n_live))
    F = np.empty((n_nodes, n_live))
    cum = np.zeros(n_live)
    fp = np.empty(N_NODES)
    node = 0
    lx = np.empty(N_NODES)
    l1x = np.empty(N_NODES)
    for g in range(n_seg):
        np_g = seg_panels[g]
        if np_g == 0:
            continue
        e0 = ev[g]
        e1 = ev[g + 1]
        h = (e1 - e0) / float(np_g)
        for q in range(np_g):
            left = e0 + float(q) * h
            if family == FAMILY_BETA:  # shared by every unshifted score (x - 0.0 == x)
                for t in range(N_NODES):
                    x = left + h * GL_T[t]
                    if x > 0.0 and x < 1.0:
                        lx[t] = math.log(x)
                        l1x[t] = math.log(1.0 - x)
            for j in range(n_live):
                i = live[j]
                if not (lo[i] < e1 and hi[i] > e0):  # the segment is outside this score's range
                    for t in range(N_NODES):
                        F[node + t, j] = cum[j]
                        f[node + t, j] = 0.0
                    continue
                for t in range(N_NODES):
                    x = left + h * GL_T[t]
                    if x > lo[i] and x < hi[i]:
                        if family == FAMILY_BETA and shift[i] == 0.0:
                            ld = (p0[i] - 1.0) * lx[t] + (p1[i] - 1.0) * l1x[t] - off[i]
                        else:
                            ld = _log_density(family, p0[i], p1[i], shift[i], off[i], x)
                        fp[t] = math.exp(ld)
                    else:
                        fp[t] = 0.0
                for t in range(N_NODES):
                    acc = 0.0
                    for u in range(N_NODES):
                        acc += GL_S[t, u] * fp[u]
                    c = cum[j] + h * acc
                    F[node + t, j] = c if c > 0.0 else 0.0
                    f[node + t, j] = fp[t]
                acc = 0.0
                for t in range(N_NODES):
                    acc += GL_W[t] * fp[t]
                cum[j] += h * acc
            for t in range(N_NODES):
                wt[node + t] = h * GL_W[t]
            node += N_NODES
    # P_a = sum over nodes of wt * f_a / Z_a * prod_{b != a} F_b / Z_b (prefix/suffix products).
    prob = np.zeros(n_live)
    pre = np.empty(n_live + 1)
    for r in range(n_nodes):
        pre[0] = 1.0
        for j in range(n_live):
            pre[j + 1] = pre[j] * (F[r, j] / cum[j])
        suf = 1.0
        for j in range(n_live - 1, -1, -1):
            if f[r, j] > 0.0:
                prob[j] += wt[r] * (f[r, j] / cum[j]) * (pre[j] * suf)
            suf = suf * (F[r, j] / cum[j])
    s = 0.0
    for j in range(n_live):
        s += prob[j]
    for j in range(n_live):
        v = prob[j] / s
        out[arms[live[j]]] = v
    for i in range(n):
        if out[arms[i]] < FLOOR:
            out[arms[i]] = FLOOR


# ---- normal scores, one arm at a time (LinTS): mirrors quad_normal_propensity ----------
NORMAL_SPAN_SD = 6.0  # the target's range, and each other score's: mean +- this many sds
NORMAL_PANEL_SD = 1.5  # panel width: at most this many sds of the narrowest live score
# (1.5: a state's K integrals sum to 1 within 1e-7, inside the 1e-6 a logged action
# distribution is checked against; see quadrature.hpp)
NORMAL_MAX_PANELS = 64  # beyond this many panels, max_propensities decides instead
NORMAL_PHI_ONE_Z = 8.3  # Phi(z) is 1.0 above this (1 - Phi(8.3) < half an ulp of 1)
NORMAL_NEGLIGIBLE = 1e-13  # a node whose running product falls below this adds 0
INV_6 = 1.0 / 6.0
INV_24 = 1.0 / 24.0
INV_120 = 1.0 / 120.0
INV_720 = 1.0 / 720.0
INV_SQRT_2PI = 0.3989422804014327


@nb.njit(**_JIT)
def phi(z):
    """Mirrors quad_phi: the standard normal CDF for z < NORMAL_PHI_ONE_Z from the table
    (_phi_table) by its Taylor series of order 6 around the nearest table point."""
    t = (z - PHI_Z0) * PHI_SCALE + 0.5
    if not (t >= 0.0):
        return 0.0
    i = np.int64(t)
    if i >= PHI_POINTS:
        i = PHI_POINTS - 1
    z0 = PHI_Z0 + float(i) / PHI_SCALE
    e = z - z0
    h2 = z0 * z0 - 1.0
    h3 = z0 * h2 - 2.0 * z0
    h4 = z0 * h3 - 3.0 * h2
    h5 = z0 * h4 - 4.0 * h3
    p = h4 * INV_120 - e * (h5 * INV_720)
    p = e * p - h3 * INV_24
    p = e * p + h2 * INV_6
    p = e * p - 0.5 * z0
    p = e * p + 1.0
    return PHI_CDF[i] + PHI_PDF[i] * (e * p)


@nb.njit(**_JIT)
def normal_propensity(m, sd, n, target):
    """Mirrors quad_normal_propensity: P(score `target` is the largest) for the n
    independent scores N(m_i, sd_i^2), every sd_i > 0."""
    mt = m[target]
    st = sd[target]
    lo = mt - NORMAL_SPAN_SD * st
    hi = mt + NORMAL_SPAN_SD * st
    for i in range(n):
        if i != target:
            lo_i = m[i] - NORMAL_SPAN_SD * sd[i]
            if lo_i > lo:
                lo = lo_i
    if not (hi > lo):
        return FLOOR
    live = np.empty(n, dtype=np.int64)
    n_live = 0
    h_sd = st
    for i in range(n):
        if i != target and m[i] + NORMAL_SPAN_SD * sd[i] > lo:
            j = n_live  # insertion by mean, highest first (ties: lower index first)
            n_live += 1
            while j > 0 and m[live[j - 1]] < m[i]:
                live[j] = live[j - 1]
                j -= 1
            live[j] = i
            if sd[i] < h_sd:
                h_sd = sd[i]
    n_panels = np.int64(math.ceil((hi - lo) / (NORMAL_PANEL_SD * h_sd)))
    if n_panels < 1:
        n_panels = 1
    if n_panels > NORMAL_MAX_PANELS:
        arms = np.arange(n)
        out = np.empty(n)
        max_propensities(FAMILY_NORMAL, m, sd, np.zeros(n), arms, n, out)
        return out[target]
    h = (hi - lo) / float(n_panels)
    dens = INV_SQRT_2PI / st
    total = 0.0
    for q in range(n_panels):
        left = lo + float(q) * h
        for t in range(N_NODES):
            x = left + h * GL_T[t]
            z = (x - mt) / st
            prod = (h * GL_W[t]) * (dens * math.exp(-0.5 * (z * z)))
            for j in range(n_live):
                i = live[j]
                zi = (x - m[i]) / sd[i]
                if zi < NORMAL_PHI_ONE_Z:
                    prod *= phi(zi)
                if prod < NORMAL_NEGLIGIBLE:
                    prod = 0.0
                    break
            total += prod
    if total < FLOOR:
        return FLOOR
    return total if total < 1.0 else 1.0
