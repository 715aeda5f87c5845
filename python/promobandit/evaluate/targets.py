"""Target policies for off-policy evaluation: what a policy would have done on a logged row.

A target policy gives, for n logged requests, an (n, K) float64 matrix of
probabilities: row i is the distribution over the K offers the policy would
have used for request i, summing to one over the eligible offers. Anything of
these forms is accepted by ``evaluate``:

- a promobandit policy (its ``action_probabilities``), e.g. the fixed promotion
  ``promobandit.policies.FixedOffer`` (also importable from promobandit.evaluate);
- an object with ``action_probabilities(contexts, masks) -> (n, K)`` (the
  stationary distributions below);
- a function ``f(contexts, masks) -> (n, K)``;
- an (n, K) array, precomputed.

``contexts`` is the log's (n, d) float64 features ((n, 0) when the log has
none, so n is always its row count) and ``masks`` the (n, K) bool eligibility,
or None when every offer was allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..policies import Policy
from .log import PROB_ATOL


@dataclasses.dataclass(frozen=True)
class StationaryPolicy:
    """The same distribution over offers for every request (renormalised over the eligible ones).

    probabilities: (K,) non-negative weights summing to one.
    """

    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        p = np.asarray(self.probabilities, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or not np.isfinite(p).all() or (p < 0).any():
            raise ValueError("probabilities: expected K non-negative finite numbers")
        if abs(p.sum() - 1.0) > PROB_ATOL:
            raise ValueError(f"probabilities: expected a sum of 1, got {p.sum():.9g}")

    @property
    def n_actions(self) -> int:
        return len(self.probabilities)

    def action_probabilities(self, contexts: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        n = contexts.shape[0]
        p = np.asarray(self.probabilities, dtype=np.float64)
        if masks is None:
            return np.broadcast_to(p, (n, p.size)).copy()
        w = p[None, :] * np.asarray(masks, dtype=bool)
        s = w.sum(axis=1, keepdims=True)
        if (s <= 0).any():
            raise ValueError("probabilities: zero mass on every eligible offer of some row")
        return w / s


def uniform_policy(n_actions: int) -> StationaryPolicy:
    """Uniformly random over the eligible offers."""
    return StationaryPolicy(tuple(np.full(n_actions, 1.0 / n_actions)))


TargetPolicy = Any  # an object with action_probabilities, a function, or an (n, K) array


def target_function(policy: TargetPolicy, n: int, k: int
                    ) -> Callable[[np.ndarray, np.ndarray | None, slice], np.ndarray]:
    """A function (contexts, masks, rows) -> (m, K) probabilities for the rows `rows`.

    Raises ValueError when `policy` is none of the accepted forms.
    """
    if isinstance(policy, np.ndarray) or (isinstance(policy, (list, tuple))
                                          and not callable(policy)):
        arr = np.asarray(policy)
        if arr.ndim != 2 or arr.shape != (n, k):
            raise ValueError(f"policy: an array target must have shape ({n}, {k}) (rows x offers), "
                             f"got {arr.shape}")
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"policy: expected a float64 array, got dtype {arr.dtype}")
        return lambda contexts, masks, rows: arr[rows]
    method = getattr(policy, "action_probabilities", None)
    if callable(method):
        if isinstance(policy, Policy):
            # promobandit policies take n for non-contextual batches and no context there.
            contextual = policy.contextual

            def call(contexts: np.ndarray, masks: np.ndarray | None, rows: slice) -> np.ndarray:
                n_rows = contexts.shape[0]
                ctx = np.ascontiguousarray(contexts) if contextual else None
                return method(ctx, masks, None if contextual else n_rows)

            return call
        return lambda contexts, masks, rows: method(contexts, masks)
    if callable(policy):
        return lambda contexts, masks, rows: policy(contexts, masks)
    raise ValueError(f"policy: expected an object with action_probabilities(contexts, masks), a "
                     f"function (contexts, masks) -> (n, K) or an (n, K) array; got "
                     f"{type(policy).__name__}")


def check_target_chunk(probs: Any, m: int, k: int, masks: np.ndarray | None,
                       offset: int) -> np.ndarray:
    """Validated (m, K) float64 target probabilities; ValueError naming `policy` otherwise."""
    try:
        tp = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("policy: action probabilities are not numeric") from exc
    if tp.shape != (m, k):
        raise ValueError(f"policy: action probabilities must have shape ({m}, {k}), "
                         f"got {tp.shape}")
    sums = tp.sum(axis=1)
    # NaN or inf anywhere in a row makes its sum non-finite: one pass checks both.
    if not np.isfinite(sums).all():
        raise ValueError("policy: action probabilities contain NaN or inf")
    if tp.min(initial=0.0) < -PROB_ATOL:
        raise ValueError("policy: action probabilities must be non-negative")
    bad = np.abs(sums - 1.0) > PROB_ATOL
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"policy: action probabilities of row {offset + i} sum to "
                         f"{sums[i]:.9g}, expected 1")
    if masks is not None:
        off = np.where(masks, 0.0, tp)
        if off.max(initial=0.0) > PROB_ATOL:
            i = int(np.flatnonzero(off.max(axis=1) > PROB_ATOL)[0])
            raise ValueError(f"policy: puts probability on an ineligible offer in row {offset + i}")
    return tp
