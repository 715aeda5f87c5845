"""Policy kind codes and counter slots, read from their one definition.

The codes are defined once, in ``cpp/include/promobandit/state.hpp``;
``promobandit._core`` exports them as ``POLICY_KINDS`` (name -> code; the
multi-armed and the linear family each count from 0, as each has its own
kernel) and ``COUNTER_SLOTS`` (name -> index into a policy's int64 ``counters``
array). This module reads them from there. Where ``_core`` was not built (a
Numba-only install) the Numba backend's copy in ``_numba/codes.py`` serves;
``tests/test_codes.py`` holds the two equal.

Counter slots: ``CTR_DECISIONS`` decisions made so far (the stream id of the
next decision), ``CTR_UPDATES`` updates applied so far (the policy version),
``CTR_PROPENSITY_AT`` the version the Thompson propensity cache was filled at
(-1: empty), ``CTR_SEED`` the seed's uint64 bits (state, so a load restores it).
"""

from __future__ import annotations

from .. import _backends
from .._numba import codes as _numba_copy

# The names, bound from the Numba copy; the check below makes them _core's values too.
from .._numba.codes import (  # noqa: F401  (re-exported)
    BETA_TS,
    CTR_DECISIONS,
    CTR_PROPENSITY_AT,
    CTR_SEED,
    CTR_UPDATES,
    EPSILON_GREEDY,
    GAUSSIAN_TS,
    LIN_TS,
    LIN_UCB,
    METHOD_DRAWS,
    METHOD_QUADRATURE,
    N_COUNTERS,
    SOFTMAX,
    UCB1,
    UCB_TUNED,
)

if _backends.has_cpp():
    POLICY_KINDS: dict[str, int] = dict(_backends.core().POLICY_KINDS)
    COUNTER_SLOTS: dict[str, int] = dict(_backends.core().COUNTER_SLOTS)
    PROPENSITY_METHODS: dict[str, int] = dict(
        getattr(_backends.core(), "PROPENSITY_METHODS", _numba_copy.PROPENSITY_METHODS))
    if (POLICY_KINDS != _numba_copy.POLICY_KINDS or COUNTER_SLOTS != _numba_copy.COUNTER_SLOTS
            or PROPENSITY_METHODS != _numba_copy.PROPENSITY_METHODS):
        raise ImportError(
            "promobandit._core was built from another state.hpp than this package's Numba "
            f"copy ({POLICY_KINDS}, {COUNTER_SLOTS}): rebuild the package (pip install .)")
else:
    POLICY_KINDS = _numba_copy.POLICY_KINDS
    COUNTER_SLOTS = _numba_copy.COUNTER_SLOTS
    PROPENSITY_METHODS = _numba_copy.PROPENSITY_METHODS
