"""Philox4x32-10 streams in Numba; mirrors ``cpp/include/promobandit/rng.hpp``.

A stream's state is a uint64 array of 11 words: key[0:2], counter[2:6],
buffer[6:10] and the buffer position [10]; every word holds a 32-bit value.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._ziggurat_tables import FN as _FN
from .._ziggurat_tables import KN as _KN
from .._ziggurat_tables import TAIL as _TAIL
from .._ziggurat_tables import WN as _WN

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)

PURPOSE_DECISION = 0
PURPOSE_PROPENSITY = 1
PURPOSE_USER = 2
PURPOSE_EVALUATION = 3
PURPOSE_TIE = 4

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@nb.njit(**_JIT)
def philox_block(c0, c1, c2, c3, k0, k1):
    """One Philox4x32-10 block on 32-bit values held in uint64."""
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        n0 = ((p1 >> S32) ^ c1 ^ k0) & MASK32
        n1 = p1 & MASK32
        n2 = ((p0 >> S32) ^ c3 ^ k1) & MASK32
        n3 = p0 & MASK32
        c0, c1, c2, c3 = n0, n1, n2, n3
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


@nb.njit(**_JIT)
def stream_new(seed, stream, purpose):
    st = np.empty(11, dtype=np.uint64)
    seed = np.uint64(seed)
    stream = np.uint64(stream)
    st[0] = seed & MASK32
    st[1] = seed >> S32
    st[2] = 0
    st[3] = np.uint64(purpose)
    st[4] = stream & MASK32
    st[5] = stream >> S32
    st[10] = 4
    return st


@nb.njit(**_JIT)
def next_u32(st):
    pos = np.int64(st[10])
    if pos == 4:
        o0, o1, o2, o3 = philox_block(st[2], st[3], st[4], st[5], st[0], st[1])
        st[6] = o0
        st[7] = o1
        st[8] = o2
        st[9] = o3
        st[2] = (st[2] + np.uint64(1)) & MASK32
        pos = 0
    v = st[6 + pos]
    st[10] = np.uint64(pos + 1)
    return v


@nb.njit(**_JIT)
def uniform(st):
    a = next_u32(st) >> np.uint64(5)
    b = next_u32(st) >> np.uint64(6)
    return (float(a) * 67108864.0 + float(b) + 0.5) * (1.0 / 9007199254740992.0)


@nb.njit(**_JIT)
def uniform32(st):
    return (float(next_u32(st)) + 0.5) * (1.0 / 4294967296.0)


@nb.njit(**_JIT)
def normal(st):
    while True:
        w = next_u32(st)
        iz = np.int64(w & np.uint64(127))
        ws = np.int64(w)
        if ws >= 2147483648:
            ws -= 4294967296
        j = ws >> 7
        x = float(j) * _WN[iz]
        if (-j if j < 0 else j) < _KN[iz]:
            return x
        if iz == 0:
            xt = -math.log(uniform32(st)) / _TAIL
            y = -math.log(uniform32(st))
            while y + y < xt * xt:
                xt = -math.log(uniform32(st)) / _TAIL
                y = -math.log(uniform32(st))
            return _TAIL + xt if j > 0 else -_TAIL - xt
        if _FN[iz] + uniform32(st) * (_FN[iz - 1] - _FN[iz]) < math.exp(-0.5 * x * x):
            return x


@nb.njit(**_JIT)
def _gamma_ge1(st, shape):
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = normal(st)
        v = 1.0 + c * x
        while v <= 0.0:
            x = normal(st)
            v = 1.0 + c * x
        v = v * v * v
        u = uniform32(st)
        x2 = x * x
        if u < 1.0 - 0.0331 * (x2 * x2):
            return d * v
        if math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v)):
            return d * v


@nb.njit(**_JIT)
def gamma(st, shape):
    if shape < 1.0:
        g = _gamma_ge1(st, shape + 1.0)
        u = uniform(st)
        return g * u ** (1.0 / shape)
    return _gamma_ge1(st, shape)


@nb.njit(**_JIT)
def beta(st, a, b):
    x = gamma(st, a)
    y = gamma(st, b)
    s = x + y
    if not (s > 0.0):
        return a / (a + b)
    return x / s


@nb.njit(**_JIT)
def tie_replaces(st, count):
    """Mirrors TieArgmax::offer on a tie: whether the count-th tied arm replaces the best."""
    return uniform32(st) * float(count) < 1.0


@nb.njit(**_JIT)
def no_stream():
    """An empty stream placeholder, replaced by stream_new at the first tie."""
    return np.empty(0, dtype=np.uint64)


@nb.njit(**_JIT)
def draw_array(seed, stream, purpose, what, p0, p1, n):
    """n draws from one stream: what = 0 u32, 1 uniform, 2 normal, 3 gamma(p0), 4 beta(p0, p1)."""
    st = stream_new(seed, stream, purpose)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        if what == 0:
            out[i] = float(next_u32(st))
        elif what == 1:
            out[i] = uniform(st)
        elif what == 2:
            out[i] = normal(st)
        elif what == 3:
            out[i] = gamma(st, p0)
        else:
            out[i] = beta(st, p0, p1)
    return out
