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

if _backends.has_cpp():
    POLICY_KINDS: dict[str, int] = dict(_backends.core().POLICY_KINDS)
    COUNTER_SLOTS: dict[str, int] = dict(_backends.core().COUNTER_SLOTS)
else:
    from .._numba.codes import COUNTER_SLOTS, POLICY_KINDS

BETA_TS = POLICY_KINDS["BETA_TS"]
GAUSSIAN_TS = POLICY_KINDS["GAUSSIAN_TS"]
UCB1 = POLICY_KINDS["UCB1"]
UCB_TUNED = POLICY_KINDS["UCB_TUNED"]
EPSILON_GREEDY = POLICY_KINDS["EPSILON_GREEDY"]
SOFTMAX = POLICY_KINDS["SOFTMAX"]
LIN_UCB = POLICY_KINDS["LIN_UCB"]
LIN_TS = POLICY_KINDS["LIN_TS"]

CTR_DECISIONS = COUNTER_SLOTS["DECISIONS"]
CTR_UPDATES = COUNTER_SLOTS["UPDATES"]
CTR_PROPENSITY_AT = COUNTER_SLOTS["PROPENSITY_AT"]
CTR_SEED = COUNTER_SLOTS["SEED"]
N_COUNTERS = len(COUNTER_SLOTS)
