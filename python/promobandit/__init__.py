"""promobandit: personalised discounts with native contextual bandits.

Hot paths (arm selection, posterior updates, top-k softmax scoring) run in C++
(``promobandit._core``) with Numba fallbacks of identical semantics.
"""

from __future__ import annotations

from . import rng
from ._backends import available as available_backends
from .policies import (
    POLICIES,
    UCB1,
    BetaTS,
    EpsilonGreedy,
    GaussianTS,
    LinTS,
    LinUCB,
    Policy,
    Softmax,
    UCBTuned,
)
from .scoring import TopK, topk_softmax

__version__ = "0.1.0"

__all__ = [
    "POLICIES",
    "UCB1",
    "BetaTS",
    "EpsilonGreedy",
    "GaussianTS",
    "LinTS",
    "LinUCB",
    "Policy",
    "Softmax",
    "TopK",
    "UCBTuned",
    "__version__",
    "available_backends",
    "rng",
    "topk_softmax",
]
