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
def symv(m, x, y, d):
    """y = m x for symmetric m, as row axpys (see linalg.hpp)."""
    for j in range(d):
        y[j] = 0.0
    for k in range(d):
        xk = x[k]
        o = k * d
        for j in range(d):
            y[j] += xk * m[o + j]


@nb.njit(**_JIT)
def dot(a, b, d):
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    k = 0
    while k + 4 <= d:
        s0 += a[k] * b[k]
        s1 += a[k + 1] * b[k + 1]
        s2 += a[k + 2] * b[k + 2]
        s3 += a[k + 3] * b[k + 3]
        k += 4
    while k < d:
        s0 += a[k] * b[k]
        k += 1
    return (s0 + s1) + (s2 + s3)
