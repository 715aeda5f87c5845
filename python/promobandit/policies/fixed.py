"""A fixed promotion as a policy: the yardstick learners are compared with.

``FixedOffer`` always chooses ``offer``. Where a request does not allow it (the engine's
mask: margin floor, per-user caps, budget; a removed arm) it chooses ``fallback`` (by
default arm 0; the simulator passes the no-discount offer), and where that is not allowed
either, or there is no fallback (None), it draws uniformly among the eligible arms.
Propensities and action probabilities are exact: 1 for the offer and the fallback,
1 / K_eligible for the uniform draw. It learns nothing: updates only count.

The same class serves the simulator (through the real ``Engine``) and off-policy
evaluation (its ``action_probabilities`` is the target distribution), so a fixed
promotion means one thing everywhere.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from .. import _validation as v
from .. import rng
from .._validation import check_int
from ._codes import CTR_DECISIONS, CTR_SEED, CTR_UPDATES
from .base import Policy, PolicyConfig, new_counters
from .traits import PolicyTraits


@dataclasses.dataclass(frozen=True)
class FixedOfferConfig(PolicyConfig):
    """offer: the arm always chosen where it is eligible. fallback: the arm chosen where
    `offer` is not; None (or a fallback that is not eligible either) draws uniformly
    among the eligible arms."""

    offer: int = 0
    fallback: int | None = 0

    def validate(self) -> None:
        super().validate()
        check_int("offer", self.offer, 0)
        if self.fallback is not None:
            check_int("fallback", self.fallback, 0)


class _FixedKernel:
    """The kernel surface the Policy base binds (select, select_batch, update, ...), in
    NumPy: there is nothing to compute per request worth a native kernel."""

    def __init__(self, offer: int, fallback: int | None, backend: str,
                 arrays: dict[str, np.ndarray]) -> None:
        self.offer, self.fallback, self.backend = offer, fallback, backend
        self._lock = threading.RLock()
        self.rebind(arrays)

    def rebind(self, arrays: dict[str, np.ndarray]) -> None:
        self.active = v.checked_array(arrays["active"], "active", "bool", 1, (-1,))
        self.counters = v.checked_array(arrays["counters"], "counters", "int64", 1, (4,))

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    @property
    def n_arms(self) -> int:
        return int(self.active.shape[0])

    def _rows(self, masks: Any, n: int | None) -> tuple[int, np.ndarray]:
        """(n, eligible (n, K) bool): the checked masks and the active arms."""
        if n is None:
            if masks is None:
                raise ValueError("n: give the number of rows or masks of shape (n, K)")
            n = v.checked_array(masks, "masks", "bool", 2, (-1, self.n_arms)).shape[0]
        m = v.check_masks(masks, v.check_int("n", n, 0), self.active)
        eligible = np.broadcast_to(self.active, (n, self.n_arms)) if m is None \
            else m & self.active[None, :]
        return n, eligible

    def _fixed(self, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(arm (n,) int64, -1 where the uniform draw decides; that mask (n,) bool)."""
        arms = np.full(eligible.shape[0], -1, dtype=np.int64)
        ok = eligible[:, self.offer]
        arms[ok] = self.offer
        rest = ~ok
        if self.fallback is not None:
            to_fallback = rest & eligible[:, self.fallback]
            arms[to_fallback] = self.fallback
            rest &= ~to_fallback
        return arms, rest

    def _choose(self, eligible: np.ndarray, out_arms: np.ndarray, out_props: np.ndarray) -> None:
        """Chooses for every row of `eligible`; row i is decision counters[DECISIONS] + i."""
        arms, rest = self._fixed(eligible)
        out_arms[:] = arms
        out_props[:] = 1.0
        first = int(self.counters[CTR_DECISIONS])
        seed = int(self.counters[CTR_SEED:].view(np.uint64)[0])
        for i in np.flatnonzero(rest):
            ok = np.flatnonzero(eligible[i])
            u = rng.uniform(seed, first + int(i), 1, purpose=rng.PURPOSE_DECISION,
                            backend=self.backend)[0]
            out_arms[i] = ok[min(int(u * ok.size), ok.size - 1)]
            out_props[i] = 1.0 / ok.size
        self.counters[CTR_DECISIONS] += eligible.shape[0]

    def select(self, context: Any = None, mask: Any = None,
               bias: Any = None) -> tuple[int, float]:
        with self._lock:
            m = v.check_mask(mask, self.active)
            v.check_bias(bias, self.n_arms)  # a fixed offer ignores scores; checked anyway
            eligible = (self.active if m is None else m & self.active)[None, :]
            arm, prop = np.empty(1, dtype=np.int64), np.empty(1)
            self._choose(eligible, arm, prop)
            return int(arm[0]), float(prop[0])

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None,
                     out_arms: Any = None, out_props: Any = None, n_threads: int = 1,
                     biases: Any = None) -> tuple[np.ndarray, np.ndarray]:
        v.check_threads(n_threads)
        with self._lock:
            n, eligible = self._rows(masks, n)
            v.check_biases(biases, n, self.n_arms)
            arms = v.check_out(out_arms, n, "out_arms", "int64")
            props = v.check_out(out_props, n, "out_props", "float64")
            self._choose(eligible, arms, props)
            return arms, props

    def update(self, arm: int, reward: float, context: Any = None, weight: float = 1.0) -> None:
        with self._lock:
            v.check_arm(arm, self.n_arms)
            v.check_finite_scalar(reward, "reward")
            v.check_weight(weight)
            self.counters[CTR_UPDATES] += 1

    def update_batch(self, arms: Any, rewards: Any, contexts: Any = None,
                     weights: Any = None) -> None:
        with self._lock:
            a, _, _ = v.check_batch_updates(arms, rewards, weights, self.n_arms, False)
            self.counters[CTR_UPDATES] += a.shape[0]

    def action_probabilities(self, masks: Any = None, n: int | None = None, draws: int = 0,
                             biases: Any = None) -> np.ndarray:
        with self._lock:
            n, eligible = self._rows(masks, n)
            v.check_biases(biases, n, self.n_arms)
            arms, rest = self._fixed(eligible)
            out = np.zeros((n, self.n_arms))
            fixed = np.flatnonzero(~rest)
            out[fixed, arms[fixed]] = 1.0
            if rest.any():
                el = eligible[rest]
                out[rest] = el / el.sum(axis=1, keepdims=True)
            return out

    def expectations(self) -> np.ndarray:
        return np.zeros(self.n_arms)


class FixedOffer(Policy):
    """Always the same offer (see the module doc). Settings: FixedOfferConfig.

    FixedOffer(n_arms, offer=2) offers arm 2 to everyone, arm 0 where arm 2 is not
    eligible; FixedOffer(n_arms, offer=2, fallback=None) spreads those requests
    uniformly over their eligible arms.
    """

    traits = PolicyTraits(deterministic=False, propensity="closed_form")
    name = "FixedOffer"
    config_class = FixedOfferConfig
    config: FixedOfferConfig

    def __init__(self, n_arms: int, config: FixedOfferConfig | None = None, *, seed: int = 0,
                 backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(n_arms, config, seed=seed, backend=backend, **kwargs)
        for name in ("offer", "fallback"):
            arm = getattr(self.config, name)
            if arm is not None and arm >= self.n_arms:
                raise ValueError(f"{name}: expected an arm index in [0, {self.n_arms}), "
                                 f"got {arm}")

    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        return {"active": np.ones(n_arms, dtype=np.bool_), "counters": new_counters(self._seed)}

    def _new_arm_rows(self) -> dict[str, np.ndarray]:
        return {"active": np.array(True)}

    def _make_kernel(self, module: Any) -> Any:
        return _FixedKernel(self.config.offer, self.config.fallback, self.backend, self._arrays)

    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        """Nothing learnt to merge (the base adds the update counts)."""

    def expectations(self, context: Any = None) -> np.ndarray:
        """Zeros (K,): a fixed offer estimates nothing."""
        return self._kernel.expectations()


__all__ = ["FixedOffer", "FixedOfferConfig"]
