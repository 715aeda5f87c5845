"""Bandit policies: arrays in, arrays out, on the C++ or Numba backend.

Every policy class declares its ``traits`` (``PolicyTraits``: deterministic or not,
closed-form or estimated action probabilities, the rewards it accepts, contextual or
not). ``POLICIES`` and ``make_policy`` hold the learners; ``FixedOffer`` is the fixed
promotion they are compared with (in the simulator and as an off-policy target).

Inputs are taken as callers have them: pandas DataFrames and Series, lists, any float
dtype, integer or bool rewards, any integer dtype of arm ids, converted once at the edge
(C-contiguous float64 / int64 / bool arrays go to the kernel as they are). ``ArmIndex``
maps arm labels (offer ids, strings) to the policies' arm indices.
"""

from __future__ import annotations

from typing import Any

from .arms import ArmIndex
from .base import Policy, PolicyConfig, ThompsonConfig
from .conversion import ConversionTS, ConversionTSConfig
from .fixed import FixedOffer, FixedOfferConfig
from .greedy import EpsilonGreedy, EpsilonGreedyConfig, Softmax, SoftmaxConfig
from .linear import LinearConfig, LinearPolicy, LinTS, LinTSConfig, LinUCB, LinUCBConfig
from .thompson import BetaTS, BetaTSConfig, GaussianTS, GaussianTSConfig
from .traits import PolicyTraits
from .ucb import UCB1, UCBConfig, UCBTuned

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (BetaTS, GaussianTS, UCB1, UCBTuned, EpsilonGreedy, Softmax, LinUCB, LinTS)
}
# Policies that learn the shopper's response instead of a reward (traits.needs_quotes):
# select takes the request's quotes and update the outcome, so they are kept apart from
# POLICIES, whose members all share the reward interface; make_policy builds both.
QUOTED_POLICIES: dict[str, type[Policy]] = {ConversionTS.name: ConversionTS}


def make_policy(name: str, n_arms: int, n_features: int | None = None, *, seed: int = 0,
                backend: str = "auto", **settings: Any) -> Policy:
    """A policy by name ("BetaTS", "LinTS", "ConversionTS", ...) with its settings
    (config keywords)."""
    known = {**POLICIES, **QUOTED_POLICIES}
    if name not in known:
        raise ValueError(f"policy: expected one of {sorted(known)}, got {name!r}")
    cls = known[name]
    if cls.contextual:
        if n_features is None:
            raise ValueError(f"n_features: required for the contextual policy {name}")
        return cls(n_arms, n_features, seed=seed, backend=backend, **settings)
    return cls(n_arms, seed=seed, backend=backend, **settings)


__all__ = [
    "POLICIES",
    "QUOTED_POLICIES",
    "UCB1",
    "ArmIndex",
    "BetaTS",
    "BetaTSConfig",
    "ConversionTS",
    "ConversionTSConfig",
    "EpsilonGreedy",
    "EpsilonGreedyConfig",
    "FixedOffer",
    "FixedOfferConfig",
    "GaussianTS",
    "GaussianTSConfig",
    "LinTS",
    "LinTSConfig",
    "LinUCB",
    "LinUCBConfig",
    "LinearConfig",
    "LinearPolicy",
    "Policy",
    "PolicyConfig",
    "PolicyTraits",
    "Softmax",
    "SoftmaxConfig",
    "ThompsonConfig",
    "UCBConfig",
    "UCBTuned",
    "make_policy",
]
