"""The one counter-based random number generator (Philox4x32-10), on every backend.

A stream is addressed by (seed, stream, purpose): seed and stream are 64-bit
integers, purpose a 32-bit tag (0 decisions, 1 propensity estimates, 2 for
users). Draw i of a stream is the same on the C++ and Numba backends and does
not depend on any other stream, so work split across threads or batches draws
the same numbers.

Draws: ``u32`` (raw 32-bit words), ``uniform`` on (0, 1) with 53 bits,
``normal`` (Box-Muller), ``gamma`` (Marsaglia-Tsang, shape > 0, scale 1) and
``beta`` (ratio of gammas).
"""

from __future__ import annotations

import numpy as np

from . import _backends
from ._validation import check_int, check_range, check_seed

PURPOSE_DECISION = 0
PURPOSE_PROPENSITY = 1
PURPOSE_USER = 2

_WHAT = {"u32": 0, "uniform": 1, "normal": 2, "gamma": 3, "beta": 4}


def _draw(what: str, seed: int, stream: int, n: int, purpose: int, backend: str,
          p0: float = 0.0, p1: float = 0.0) -> np.ndarray:
    seed = check_seed(seed)
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or not (
        0 <= int(stream) < 2**64
    ):
        raise ValueError(f"stream: expected an integer in [0, 2**64), got {stream!r}")
    n = check_int("n", n, 0)
    purpose = check_int("purpose", purpose, 0)
    if purpose >= 2**32:
        raise ValueError(f"purpose: expected an integer in [0, 2**32), got {purpose}")
    b = _backends.resolve(backend)
    if b == "cpp":
        core = _backends.core()
        if what == "u32":
            return core.rng_u32(seed, int(stream), purpose, n)
        if what == "gamma":
            return core.rng_gamma(seed, int(stream), purpose, p0, n)
        if what == "beta":
            return core.rng_beta(seed, int(stream), purpose, p0, p1, n)
        return getattr(core, f"rng_{what}")(seed, int(stream), purpose, n)
    from ._numba import rng as nrng

    out = nrng.draw_array(np.uint64(seed), np.uint64(stream), purpose, _WHAT[what], p0, p1, n)
    return out.astype(np.uint32) if what == "u32" else out


def u32(seed: int, stream: int, n: int, *, purpose: int = PURPOSE_USER,
        backend: str = "auto") -> np.ndarray:
    """n raw 32-bit words of the stream, as uint32."""
    return _draw("u32", seed, stream, n, purpose, backend)


def uniform(seed: int, stream: int, n: int, *, purpose: int = PURPOSE_USER,
            backend: str = "auto") -> np.ndarray:
    """n uniforms on the open interval (0, 1), float64."""
    return _draw("uniform", seed, stream, n, purpose, backend)


def normal(seed: int, stream: int, n: int, *, purpose: int = PURPOSE_USER,
           backend: str = "auto") -> np.ndarray:
    """n standard normals, float64."""
    return _draw("normal", seed, stream, n, purpose, backend)


def gamma(seed: int, stream: int, shape: float, n: int, *, purpose: int = PURPOSE_USER,
          backend: str = "auto") -> np.ndarray:
    """n draws of Gamma(shape, scale=1), shape > 0."""
    shape = check_range("shape", shape, 0.0, lo_open=True)
    return _draw("gamma", seed, stream, n, purpose, backend, shape)


def beta(seed: int, stream: int, a: float, b: float, n: int, *, purpose: int = PURPOSE_USER,
         backend: str = "auto") -> np.ndarray:
    """n draws of Beta(a, b), a, b > 0."""
    a = check_range("a", a, 0.0, lo_open=True)
    b = check_range("b", b, 0.0, lo_open=True)
    return _draw("beta", seed, stream, n, purpose, backend, a, b)
