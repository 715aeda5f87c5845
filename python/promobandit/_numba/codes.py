"""The Numba backend's copy of the policy kind codes and counter slots.

The one definition is ``cpp/include/promobandit/state.hpp``, which
``promobandit._core`` exports as ``POLICY_KINDS`` and ``COUNTER_SLOTS``. The Numba
kernels need the codes as module constants (Numba freezes globals at compile
time) and must work where ``_core`` was not built, so they keep this copy;
``tests/test_codes.py`` holds it equal to ``_core``'s wherever both exist. This
module imports nothing, so ``policies/_codes.py`` can fall back to it.
"""

from __future__ import annotations

POLICY_KINDS = {
    "BETA_TS": 0, "GAUSSIAN_TS": 1, "UCB1": 2, "UCB_TUNED": 3, "EPSILON_GREEDY": 4,
    "SOFTMAX": 5,
    "LIN_UCB": 0, "LIN_TS": 1,
}
COUNTER_SLOTS = {"DECISIONS": 0, "UPDATES": 1, "PROPENSITY_AT": 2, "SEED": 3}
PROPENSITY_METHODS = {"DRAWS": 0, "QUADRATURE": 1}

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

METHOD_DRAWS = PROPENSITY_METHODS["DRAWS"]
METHOD_QUADRATURE = PROPENSITY_METHODS["QUADRATURE"]
