"""Upper confidence bounds: UCB1 (Auer et al., 2002) and UCB-tuned."""

from __future__ import annotations

import dataclasses

from .._validation import check_range
from . import _codes
from ._multiarmed import MultiArmedPolicy
from .base import PolicyConfig
from .traits import PolicyTraits


@dataclasses.dataclass(frozen=True)
class UCBConfig(PolicyConfig):
    """c (>= 0): exploration coefficient multiplying the confidence width. The
    textbook bounds assume rewards in [0, 1]; scale rewards (or c) otherwise.

    Every eligible arm is played once (in random order) before bounds are used. The
    choice is deterministic except between exactly tied bounds (arms never played, equal
    statistics), which are broken uniformly at random from the policy's stream (seed,
    decision, tie); the propensity is 1, or 1/m when m arms tie.
    """

    c: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_range("c", self.c, 0.0)


class UCB1(MultiArmedPolicy):
    """UCB1: mean + c * sqrt(2 ln N / n_a), N the total count over active arms."""

    traits = PolicyTraits(deterministic=True, propensity="closed_form")
    name = "UCB1"
    config_class = UCBConfig
    _kind = _codes.UCB1
    config: UCBConfig

    def _hyper(self) -> list[float]:
        return [self.config.c]


class UCBTuned(MultiArmedPolicy):
    """UCB-tuned: mean + c * sqrt(ln N / n_a * min(1/4, V_a)), with
    V_a = variance_a + sqrt(2 ln N / n_a)."""

    traits = PolicyTraits(deterministic=True, propensity="closed_form")
    name = "UCBTuned"
    config_class = UCBConfig
    _kind = _codes.UCB_TUNED
    config: UCBConfig

    def _hyper(self) -> list[float]:
        return [self.config.c]
