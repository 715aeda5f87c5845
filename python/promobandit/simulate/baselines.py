"""A fixed-offer baseline as a policy, so that fixed promotions run through the real Engine.

``FixedOffer`` always chooses one arm; when the engine masks it for a request (margin
floor, per-user caps, budget) it chooses ``fallback`` (no discount), or the lowest
eligible arm if that is masked too. It learns nothing: updates only count. It lives in
the simulator because it is a yardstick, not a product policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..policies.base import (
    CTR_DECISIONS,
    CTR_UPDATES,
    Policy,
    PolicyConfig,
    check_int,
    new_counters,
)


@dataclasses.dataclass(frozen=True)
class FixedOfferConfig(PolicyConfig):
    """offer: the arm always chosen; fallback: the arm chosen when `offer` is masked."""

    offer: int = 0
    fallback: int = 0

    def validate(self) -> None:
        super().validate()
        check_int("offer", self.offer, 0)
        check_int("fallback", self.fallback, 0)


class _FixedKernel:
    """The select/update surface the Policy base binds, in plain Python."""

    def __init__(self, offer: int, fallback: int, arrays: dict[str, np.ndarray]) -> None:
        self.offer, self.fallback = offer, fallback
        self.arrays = arrays

    def rebind(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def lock(self) -> None:
        """Nothing to lock: the state is a counter."""

    def unlock(self) -> None:
        """Nothing to unlock."""

    def _choose(self, mask: Any) -> int:
        if mask is None:
            return self.offer
        m = np.asarray(mask, dtype=bool)
        if m[self.offer]:
            return self.offer
        if m[self.fallback]:
            return self.fallback
        ok = np.flatnonzero(m)
        if ok.size == 0:
            raise ValueError("mask: no eligible arm")
        return int(ok[0])

    def select(self, context: Any = None, mask: Any = None, bias: Any = None) -> tuple[int, float]:
        self.arrays["counters"][CTR_DECISIONS] += 1
        return self._choose(mask), 1.0

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None,
                     out_arms: Any = None, out_props: Any = None, n_threads: int = 1,
                     biases: Any = None) -> tuple[np.ndarray, np.ndarray]:
        rows = len(masks) if masks is not None else (len(contexts) if contexts is not None
                                                     else int(n or 0))
        arms = out_arms if out_arms is not None else np.empty(rows, dtype=np.int64)
        props = out_props if out_props is not None else np.empty(rows)
        for i in range(rows):
            arms[i] = self._choose(None if masks is None else masks[i])
        props[:rows] = 1.0
        self.arrays["counters"][CTR_DECISIONS] += rows
        return arms, props

    def update(self, arm: int, reward: float, context: Any = None, weight: float = 1.0) -> None:
        self.arrays["counters"][CTR_UPDATES] += 1

    def update_batch(self, arms: Any, rewards: Any, contexts: Any = None,
                     weights: Any = None) -> None:
        self.arrays["counters"][CTR_UPDATES] += len(arms)

    def action_probabilities(self, masks: Any, n: int | None, draws: int,
                             biases: Any) -> np.ndarray:
        k = self.arrays["active"].shape[0]
        rows = len(masks) if masks is not None else int(n or 0)
        out = np.zeros((rows, k))
        for i in range(rows):
            out[i, self._choose(None if masks is None else masks[i])] = 1.0
        return out

    def expectations(self) -> np.ndarray:
        return np.zeros(self.arrays["active"].shape[0])


class FixedOffer(Policy):
    """Always the same offer (see the module); propensity 1."""

    name = "FixedOffer"
    config_class = FixedOfferConfig
    config: FixedOfferConfig

    def __init__(self, n_arms: int, config: FixedOfferConfig | None = None, *, seed: int = 0,
                 backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(n_arms, config, seed=seed, backend=backend, **kwargs)
        for name in ("offer", "fallback"):
            if getattr(self.config, name) >= n_arms:
                raise ValueError(f"{name}: expected an arm index below {n_arms}, got "
                                 f"{getattr(self.config, name)}")

    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        return {"active": np.ones(n_arms, dtype=np.bool_), "counters": new_counters(self._seed)}

    def _new_arm_rows(self) -> dict[str, np.ndarray]:
        return {"active": np.array(True)}

    def _make_kernel(self, module: Any) -> Any:
        return _FixedKernel(self.config.offer, self.config.fallback, self._arrays)

    def _bind(self) -> None:
        # No native kernel: the Python object above stands in for it.
        self._kernel = self._make_kernel(None)
        self.select = self._kernel.select  # type: ignore[method-assign]
        self.select_batch = self._kernel.select_batch  # type: ignore[method-assign]
        self.update = self._kernel.update  # type: ignore[method-assign]
        self.update_batch = self._kernel.update_batch  # type: ignore[method-assign]

    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        """Nothing learnt to merge."""

    def action_probabilities(self, contexts: Any = None, masks: Any = None,
                             n: int | None = None, *, draws: int | None = None,
                             n_threads: int = 1, biases: Any = None) -> np.ndarray:
        return self._kernel.action_probabilities(masks, n, 0, biases)

    def expectations(self, context: Any = None) -> np.ndarray:
        return self._kernel.expectations()
