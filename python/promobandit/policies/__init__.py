"""Bandit policies: arrays in, arrays out, on the C++ or Numba backend."""

from __future__ import annotations

from .base import Policy, PolicyConfig, ThompsonConfig
from .greedy import EpsilonGreedy, EpsilonGreedyConfig, Softmax, SoftmaxConfig
from .linear import LinearConfig, LinearPolicy, LinTS, LinTSConfig, LinUCB, LinUCBConfig
from .thompson import BetaTS, BetaTSConfig, GaussianTS, GaussianTSConfig
from .ucb import UCB1, UCBConfig, UCBTuned

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (BetaTS, GaussianTS, UCB1, UCBTuned, EpsilonGreedy, Softmax, LinUCB, LinTS)
}

__all__ = [
    "POLICIES",
    "UCB1",
    "BetaTS",
    "BetaTSConfig",
    "EpsilonGreedy",
    "EpsilonGreedyConfig",
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
    "Softmax",
    "SoftmaxConfig",
    "ThompsonConfig",
    "UCBConfig",
    "UCBTuned",
]
