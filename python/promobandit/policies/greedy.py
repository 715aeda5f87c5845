"""Epsilon-greedy and softmax (Boltzmann) exploration over empirical mean rewards."""

from __future__ import annotations

import dataclasses

from .._validation import check_range
from . import _codes
from ._multiarmed import MultiArmedPolicy
from .base import PolicyConfig
from .traits import PolicyTraits


@dataclasses.dataclass(frozen=True)
class EpsilonGreedyConfig(PolicyConfig):
    """epsilon in [0, 1]: probability of a uniformly random eligible arm; otherwise
    the arm with the highest mean reward (exact ties broken uniformly at random from
    the policy's stream; the greedy share 1 - epsilon is split among the tied arms).
    initial_value: mean assumed for an arm before its first update (set it high
    for optimistic initial exploration)."""

    epsilon: float = 0.1
    initial_value: float = 0.0

    def validate(self) -> None:
        super().validate()
        check_range("epsilon", self.epsilon, 0.0, 1.0)
        check_range("initial_value", self.initial_value)


@dataclasses.dataclass(frozen=True)
class SoftmaxConfig(PolicyConfig):
    """temperature (> 0, in reward units): arms are drawn with probability
    proportional to exp(mean_a / temperature); small values act greedily, large
    ones uniformly. initial_value: mean assumed before an arm's first update."""

    temperature: float = 0.1
    initial_value: float = 0.0

    def validate(self) -> None:
        super().validate()
        check_range("temperature", self.temperature, 0.0, lo_open=True)
        check_range("initial_value", self.initial_value)


class EpsilonGreedy(MultiArmedPolicy):
    """Epsilon-greedy; propensity eps / K_eligible (+ 1 - eps for the greedy arm)."""

    traits = PolicyTraits(deterministic=False, propensity="closed_form")
    name = "EpsilonGreedy"
    config_class = EpsilonGreedyConfig
    _kind = _codes.EPSILON_GREEDY
    config: EpsilonGreedyConfig

    def _hyper(self) -> list[float]:
        return [self.config.epsilon, self.config.initial_value]


class Softmax(MultiArmedPolicy):
    """Boltzmann exploration: the weights are the arms' mean rewards learnt from
    updates, and the arm is drawn from their softmax; the propensity is exact."""

    traits = PolicyTraits(deterministic=False, propensity="closed_form")
    name = "Softmax"
    config_class = SoftmaxConfig
    _kind = _codes.SOFTMAX
    config: SoftmaxConfig

    def _hyper(self) -> list[float]:
        return [self.config.temperature, self.config.initial_value]
