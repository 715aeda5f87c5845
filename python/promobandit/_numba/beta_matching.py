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


@nb.njit(**_JIT)
def beta_moved(mean0, sd0, a, b, tolerance):
    """Mirrors beta_moved: Beta(a, b) is no longer within `tolerance` of (mean0, sd0)."""
    if not (sd0 > 0.0):
        return True
    m, sd = beta_mean_sd(a, b)
    return abs(m - mean0) > tolerance * sd0 or abs(sd - sd0) > tolerance * sd0


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
