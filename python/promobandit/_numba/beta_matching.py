"""Beta Thompson sampling by probability matching, and when cached win probabilities
must be recomputed; mirrors ``cpp/include/promobandit/beta_matching.hpp`` (see there)."""

from __future__ import annotations

import math

import numba as nb

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@nb.njit(**_JIT)
def beta_mean_sd(a, b):
    """Mean and sd of Beta(a, b)."""
    s = a + b
    return a / s, math.sqrt(a * b / (s * s * (s + 1.0)))


POST_COLS = 4  # kBetaPostCols: a snapshot row is mean0, sd0, wm, ws


@nb.njit(**_JIT)
def beta_snapshot(a, b, prob, row):
    """Mirrors beta_snapshot: the posterior and its two sensitivity weights."""
    m, sd = beta_mean_sd(a, b)
    row[0] = m
    row[1] = sd
    q = prob if prob < 1.0 - prob else 1.0 - prob
    if not (q > 0.0):
        row[2] = 0.0
        row[3] = 0.0
        return
    zt2 = 2.0 * math.log(1.0 / q)
    wm = q * (1.0 + math.sqrt(zt2))
    ws = q * (1.0 + zt2)
    row[2] = wm if wm < 0.4 else 0.4
    row[3] = ws if ws < 0.25 else 0.25


@nb.njit(**_JIT)
def beta_drift(row, a, b):
    """Mirrors beta_drift: one arm's term of the first-order bound E."""
    if not (row[1] > 0.0):
        return math.inf
    m, sd = beta_mean_sd(a, b)
    return row[2] * (abs(m - row[0]) / row[1]) + row[3] * (abs(sd - row[1]) / row[1])


@nb.njit(**_JIT)
def match_draw(prob, u):
    """Mirrors match_draw: (arm, prob[arm] / total) by inverse CDF with the uniform u."""
    k = prob.shape[0]
    total = 0.0
    last = -1
    for a in range(k):
        if prob[a] > 0.0:
            total += prob[a]
            last = a
    target = u * total
    cum = 0.0
    arm = last
    for a in range(k):
        if not (prob[a] > 0.0):
            continue
        cum += prob[a]
        if target < cum:
            arm = a
            break
    return arm, prob[arm] / total
