"""What a policy declares about itself, so that callers read traits instead of testing
classes or names.

Every concrete policy class sets ``traits = PolicyTraits(...)``. The engine reads them
to decide whether a decision's full action distribution is cheap enough to log and
whether rewards must be clipped to the range the policy accepts; off-policy evaluation
and the simulator read ``contextual``.
"""

from __future__ import annotations

import dataclasses
import math

PROPENSITY_KINDS = ("closed_form", "estimated")


@dataclasses.dataclass(frozen=True)
class PolicyTraits:
    """The traits a policy class declares.

    deterministic: the choice is a function of the state, the context and the eligible
        arms, with a random draw only to break exact ties (uniformly, from the policy's
        own stream), so every propensity is 1, or 1/m among m tied arms (UCB, LinUCB).
    propensity: "closed_form" when action probabilities are exact and cheap (UCB,
        epsilon-greedy, softmax, LinUCB, a fixed offer); "estimated" when they are
        estimated from posterior draws (Thompson sampling: draws x K per row).
    reward_range: (low, high), the rewards the policy accepts (Beta-Bernoulli Thompson
        sampling: (0, 1)); None when any finite reward is accepted.
    contextual: the policy needs a context vector per request.
    needs_quotes: the policy's select takes the exact money of every offer on this
        request's basket (``quotes``, see promobandit.policies.conversion) and its update
        takes the purchase outcome instead of a reward (ConversionTS); the engine reads
        this to price the lead line and the basket under every offer.
    """

    deterministic: bool
    propensity: str
    reward_range: tuple[float, float] | None = None
    contextual: bool = False
    needs_quotes: bool = False

    def __post_init__(self) -> None:
        for name in ("deterministic", "contextual", "needs_quotes"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if self.propensity not in PROPENSITY_KINDS:
            raise ValueError(f"propensity: expected one of {PROPENSITY_KINDS}, "
                             f"got {self.propensity!r}")
        if self.deterministic and self.propensity != "closed_form":
            raise ValueError("propensity: a deterministic policy's propensities are 1, so "
                             "closed_form is expected")
        if self.reward_range is not None:
            r = self.reward_range
            if (len(r) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                       for v in r) or not r[0] < r[1]):
                raise ValueError(f"reward_range: expected (low, high) with finite "
                                 f"low < high, or None; got {r!r}")

    @property
    def closed_form(self) -> bool:
        """Whether action probabilities are exact and cheap to compute."""
        return self.propensity == "closed_form"

    def clip_reward(self, reward: float) -> float:
        """`reward` clipped to reward_range (unchanged when there is none)."""
        if self.reward_range is None:
            return reward
        lo, hi = self.reward_range
        return min(max(reward, lo), hi)


__all__ = ["PROPENSITY_KINDS", "PolicyTraits"]
