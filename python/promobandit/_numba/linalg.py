"""Small dense linear algebra in Numba; mirrors ``cpp/include/promobandit/linalg.hpp``."""

from __future__ import annotations

import math

import numba as nb

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@nb.njit(**_JIT)
def cholesky_lower(a, d):
    """In-place lower Cholesky factor of a (d*d,) row-major SPD matrix; False if not SPD."""
    for j in range(d):
        s = a[j * d + j]
        for k in range(j):
            s -= a[j * d + k] * a[j * d + k]
        if not (s > 0.0):
            return False
        ljj = math.sqrt(s)
        a[j * d + j] = ljj
        for i in range(j + 1, d):
            t = a[i * d + j]
            for k in range(j):
                t -= a[i * d + k] * a[j * d + k]
            a[i * d + j] = t / ljj
        for i in range(j):
            a[i * d + j] = 0.0
    return True


@nb.njit(**_JIT)
def spd_inverse(a, inv, d, work):
    """inv = a^{-1} for SPD a, all flat row-major; work has 2*d*d entries."""
    for i in range(d * d):
        work[i] = a[i]
    if not cholesky_lower(work, d):
        return False
    o = d * d
    for i in range(d * d):
        work[o + i] = 0.0
    for c in range(d):
        work[o + c * d + c] = 1.0 / work[c * d + c]
        for i in range(c + 1, d):
            s = 0.0
            for k in range(c, i):
                s -= work[i * d + k] * work[o + k * d + c]
            work[o + i * d + c] = s / work[i * d + i]
    for i in range(d):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, d):
                s += work[o + k * d + i] * work[o + k * d + j]
            inv[i * d + j] = s
            inv[j * d + i] = s
    return True


@nb.njit(**_JIT)
def matvec(m, x, y, d):
    for i in range(d):
        s = 0.0
        for k in range(d):
            s += m[i * d + k] * x[k]
        y[i] = s


@nb.njit(**_JIT)
def dot(a, b, d):
    s = 0.0
    for k in range(d):
        s += a[k] * b[k]
    return s
