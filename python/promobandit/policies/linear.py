"""Disjoint linear bandits: LinUCB and linear Thompson sampling (one ridge model per arm)."""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, ClassVar

import numpy as np

from .._validation import check_int, check_range, edge_float
from . import _codes
from .base import (
    FAST_DIRECT,
    FAST_GUARDED,
    ContextualIdentity,
    Policy,
    PolicyConfig,
    _edge_update_batch,
    check_method,
    new_counters,
)
from .traits import PolicyTraits

# LinearConfig.batch_update's settings.
BATCH_UPDATES = ("sequential", "accumulate")


@dataclasses.dataclass(frozen=True)
class LinearConfig(PolicyConfig):
    """Settings of the linear policies.

    ridge (> 0): lambda, the prior precision of every weight (A starts at lambda*I).
    refresh_every (>= 1): after this many rank-one (Sherman-Morrison) updates of an
        arm, its inverse is recomputed exactly from A (Cholesky) so rounding cannot
        drift. With decay < 1 every update refreshes every arm exactly (O(K d^3)).
    batch_update: how update_batch learns a batch of n rows. "sequential" (the default):
        as n calls of update, in row order (Sherman-Morrison per row, bit for bit the
        single updates' state). "accumulate": the batch's sums are added at once, every
        touched arm's A += sum_i w_i x_i x_i' and b += sum_i w_i r_i x_i (each row's terms
        added in row order, on the upper triangle, mirrored), then its A^-1 (Cholesky) and
        theta = A^-1 b are recomputed exactly, once per batch: O(n d^2 / 2 + K d^3)
        instead of O(3 n d^2), and no Sherman-Morrison drift. The state after a batch is
        a function of the batch's sums; it equals the sequential update's up to float
        rounding (A and b carry the same sums; A^-1 and theta are exact instead of
        carried). With decay gamma < 1, row i of n weighs gamma^(n-1-i) and the prior
        part of every arm becomes gamma^n A + (1 - gamma^n) lambda I, as n sequential
        decays give, and every arm is refreshed. A batch whose new statistics would not
        be finite (or A not positive definite) is refused whole. Single updates are the
        same in both modes; C++ and Numba give the same bits in both.
    """

    ridge: float = 1.0
    refresh_every: int = 64
    batch_update: str = "sequential"

    def validate(self) -> None:
        super().validate()
        check_range("ridge", self.ridge, 0.0, lo_open=True)
        check_int("refresh_every", self.refresh_every, 1)
        if self.batch_update not in BATCH_UPDATES:
            raise ValueError(f"batch_update: expected one of {list(BATCH_UPDATES)}, got "
                             f"{self.batch_update!r}")


@dataclasses.dataclass(frozen=True)
class LinUCBConfig(LinearConfig):
    """alpha (>= 0): width of the upper bound, score = theta.x + alpha * sqrt(x' A^-1 x).
    The choice is deterministic except between exactly tied scores (a cold start ties
    every arm), broken uniformly at random from the policy's stream (seed, decision,
    tie): the propensity is 1, or 1/m when m arms tie."""

    alpha: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_range("alpha", self.alpha, 0.0)


@dataclasses.dataclass(frozen=True)
class LinTSConfig(LinearConfig):
    """v (>= 0): posterior scale (the noise level of rewards, in reward units);
    weights are drawn from N(theta, v^2 A^-1).

    propensity_method: "quadrature" (the default): the chosen arm's propensity is
    exact, the probability that its normal score N(theta.x + bias, v^2 x'A^-1 x) is
    the largest: one integral of its density times the other scores' normal CDFs
    (composite 6-point Gauss-Legendre over panels of at most 1.5 sds of the narrowest
    score that can win, ranges cut at +- 6 sds; see quad_normal_propensity in
    cpp/include/promobandit/quadrature.hpp): the K probabilities sum to 1 within 1e-7
    and are within 0.01 of a 10^6-draw Monte Carlo estimate in the tests; with v = 0
    the tied maxima share the choice. "draws":
    estimated from propensity_draws score draws per decision, (wins + 1) / (draws +
    K_eligible), about draws * K normal draws per decision.
    propensity_draws: the draws of that estimate; 0 returns NaN under either method.
    """

    v: float = 1.0
    propensity_draws: int = 1000
    propensity_method: str = "quadrature"

    def validate(self) -> None:
        super().validate()
        check_range("v", self.v, 0.0)
        check_int("propensity_draws", self.propensity_draws, 0)
        check_method(self.propensity_method)


# The magnitude bound of the linear policies' fast checked update (see
# LinearPolicy._fast_update): far below float64's 1.8e308, since theta and the
# Sherman-Morrison terms are products of up to four such magnitudes.
LINEAR_FAST_BOUND = 1e60
_F64_MAX = float(np.finfo(np.float64).max)


class LinearPolicy(ContextualIdentity, Policy):
    """Base of the disjoint linear policies. Extra argument: n_features (d)."""

    _kind: ClassVar[int]
    config: LinearConfig

    def __init__(self, n_arms: int, n_features: int, config: LinearConfig | None = None, *,
                 seed: int = 0, backend: str = "auto", **kwargs: Any) -> None:
        self.n_features = check_int("n_features", n_features, 1)
        super().__init__(n_arms, config, seed=seed, backend=backend, **kwargs)

    _exploration_field: ClassVar[str]

    # Checked updates (promobandit.policies.base): an update of arm a writes its rows of
    # these (decay < 1: every arm's, always on the exact slow path).
    _update_rows: ClassVar[tuple[str, ...]] = ("A", "A_inv", "b", "theta", "n",
                                               "since_refresh")
    _bound_arrays: ClassVar[tuple[str, ...]] = ("A", "b", "n")

    def _measure_bound(self) -> float:
        arrays = self._arrays
        return max(float(np.abs(arrays["A"]).max(initial=0.0)),
                   float(np.abs(arrays["b"]).max(initial=0.0)),
                   float(np.abs(arrays["n"]).max(initial=0.0)))

    def _native_fast_update(self) -> tuple[Any, float] | None:
        # The C++ kernel's update_fast runs the check below natively (policy_bindings.cpp);
        # the Numba kernel has none and keeps the Python check.
        c = self.config
        kernel_fast = getattr(self._kernel, "update_fast", None)
        if kernel_fast is None or c.decay < 1.0 or c.ridge * LINEAR_FAST_BOUND < 1.0:
            return None
        return kernel_fast, LINEAR_FAST_BOUND

    def _make_fast_update(self) -> Any:
        # The fast path: decay 1, a float64 context, and every magnitude at most
        # LINEAR_FAST_BOUND: |x|^2, |w|, r^2, 1/ridge and the bound on the entries of A,
        # b and n after the update (+ |w| (|x|^2 + r^2 + 1)). Then A^-1 <= I / ridge
        # keeps u = A^-1 x, x.u, the Sherman-Morrison term and theta = A^-1 b below
        # d^2 1e240: finite for any d the kernels take. When the arm's exact refresh is
        # due it is applied under the light guard (FAST_GUARDED): a Cholesky
        # factorisation that fails (a precision matrix too ill-conditioned) raises after
        # A was written, and the copy puts it back.
        c = self.config
        lim = LINEAR_FAST_BOUND
        if c.decay < 1.0 or c.ridge * lim < 1.0:
            return None
        box, policy, refresh_every, ndarray = self._bound, self, c.refresh_every, np.ndarray
        hypot, index = math.hypot, operator.index

        def fast(arm: Any, reward: Any, context: Any, weight: Any) -> int:
            if type(context) is not ndarray:
                return False
            try:
                a = index(arm)
                arrays = policy._arrays
                since = arrays["since_refresh"]
                if not 0 <= a < since.shape[0]:
                    return False
                refresh = since.item(a) + 1 >= refresh_every
                norm = hypot(*context.tolist())  # faster than a NumPy call for small d
                r, w = abs(float(reward)), abs(float(weight))
            except (TypeError, ValueError, IndexError):
                return False  # not the kernel's form: the slow path (and the kernel) decide
            xx = norm * norm
            b = box[0]
            if b is None:
                b = policy._measure_bound()
            nb = b + w * (xx + r * r + 1.0)
            if nb <= lim and xx <= lim and w <= lim and r * r <= lim:
                box[0] = nb
                return FAST_GUARDED if refresh else FAST_DIRECT
            return False
        return fast

    # The exact refresh of an arm (a Cholesky factorisation of A, at every update with
    # decay < 1, else every refresh_every updates) sums up to d + 1 products of the size
    # of A's entries: beyond F64_MAX / (2 (d + 1)) it overflows and fails inside the
    # kernel, after A was written. Such an update is refused before the kernel runs.
    def _a_limit(self) -> float:
        return _F64_MAX / (2.0 * (self.n_features + 1))

    def _grown(self, a_row: np.ndarray, x: np.ndarray, w: float) -> np.ndarray:
        c = self.config
        with np.errstate(over="ignore", invalid="ignore"):
            grown = a_row * c.decay if c.decay < 1.0 else a_row.copy()
            if c.decay < 1.0:
                grown[np.diag_indices(self.n_features)] += (1.0 - c.decay) * c.ridge
            grown += w * np.outer(x, x)
        return grown

    def _precheck_update(self, arm: Any, reward: Any, context: Any, weight: Any) -> str | None:
        try:
            a = operator.index(arm)
            x = np.asarray(context, dtype=np.float64).reshape(-1)
            w = float(weight)
        except (TypeError, ValueError):
            return None  # the kernel's own checks name what is wrong
        if not (0 <= a < self.n_arms and x.shape[0] == self.n_features
                and np.isfinite(x).all() and math.isfinite(w) and w >= 0.0):
            return None
        grown = self._grown(self._arrays["A"][a], x, w)
        if not np.abs(grown).max() <= self._a_limit():
            return (f"the context's magnitude would grow arm {a}'s precision matrix A past "
                    f"{self._a_limit():.3g}, where its exact refresh (a Cholesky "
                    "factorisation) overflows")
        return None

    def _precheck_batch(self, arms: Any, rewards: Any, contexts: Any,
                        weights: Any) -> tuple[int, str] | None:
        try:
            a = np.asarray(arms).astype(np.int64, casting="safe").reshape(-1)
            xs = np.asarray(contexts, dtype=np.float64).reshape(a.shape[0], self.n_features)
            w = (np.ones(a.shape[0]) if weights is None
                 else np.asarray(weights, dtype=np.float64).reshape(a.shape[0]))
        except (TypeError, ValueError):
            return None
        if not (np.isfinite(xs).all() and np.isfinite(w).all() and (w >= 0).all()
                and ((a >= 0) & (a < self.n_arms)).all()):
            return None
        A = self._arrays["A"]
        limit = self._a_limit()
        with np.errstate(over="ignore", invalid="ignore"):
            grows = float(np.abs(A).max()) + float((w * np.einsum("ij,ij->i", xs, xs)).sum())
        if grows <= limit:
            return None  # the common case: no row can reach the limit
        sim = A.copy()
        for i in range(a.shape[0]):
            if self.config.decay < 1.0:
                for k in range(self.n_arms):
                    if k != a[i]:
                        sim[k] = self._grown(sim[k], np.zeros(self.n_features), 0.0)
            sim[a[i]] = self._grown(sim[a[i]], xs[i], float(w[i]))
            if not np.abs(sim[a[i]]).max() <= limit:
                return i, (f"its context's magnitude would grow arm {int(a[i])}'s precision "
                           f"matrix A past {limit:.3g}, where its exact refresh (a Cholesky "
                           "factorisation) overflows")
        return None

    def _exploration(self) -> float:
        return float(getattr(self.config, self._exploration_field))

    def _draws(self) -> int:
        return 0

    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        d = self.n_features
        lam = self.config.ridge
        eye = np.eye(d)
        return {
            "A": np.repeat((lam * eye)[None], n_arms, axis=0),
            "A_inv": np.repeat((eye / lam)[None], n_arms, axis=0),
            "b": np.zeros((n_arms, d)),
            "theta": np.zeros((n_arms, d)),
            "n": np.zeros(n_arms),
            "since_refresh": np.zeros(n_arms, dtype=np.int64),
            "active": np.ones(n_arms, dtype=np.bool_),
            "counters": new_counters(self._seed),
        }

    def _new_arm_rows(self) -> dict[str, np.ndarray]:
        fresh = self._new_arrays(1)
        return {k: v[0] for k, v in fresh.items() if k != "counters"}

    def _make_kernel(self, module: Any) -> Any:
        c = self.config
        return module.LinKernel(
            self._kind, c.decay, self._exploration(), c.ridge, c.refresh_every, self._draws(),
            self._arrays, check_method(getattr(c, "propensity_method", "draws")),
            c.ties == "first", c.batch_update == "accumulate",
        )

    def _bind(self) -> None:
        super()._bind()
        if self.config.batch_update != "accumulate":
            return
        # batch_update="accumulate": the kernel itself builds a batch's new statistics
        # beside the state and writes them only when every arm's are finite and its A
        # positive definite (a failed Cholesky factorisation included), so the checked
        # batch's copy of every array and its pre-check (policies.base, "checked
        # updates") would guard nothing more; they cost about half the accumulation.
        # The fast single-update check's magnitude bound is measured again afterwards,
        # as after a checked batch.
        kernel_batch = _edge_update_batch(self._kernel.update_batch)
        box = self._bound

        def update_batch(arms: Any, rewards: Any, contexts: Any = None,
                         weights: Any = None) -> None:
            try:
                kernel_batch(arms, rewards, contexts, weights)
            finally:
                box[0] = None

        self.update_batch = update_batch  # type: ignore[method-assign]

    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        # A holds the prior lambda*I once per replica: add the other's data part only.
        lam_eye = self.config.ridge * np.eye(self.n_features)
        self._arrays["A"] += other["A"] - lam_eye[None]
        self._arrays["b"] += other["b"]
        self._arrays["n"] += other["n"]

    def _after_merge(self) -> None:
        # A sum of precisions has no rank-one path to its inverse: recompute exactly.
        self._kernel.refresh_all()

    def expectations(self, context: Any = None) -> np.ndarray:
        """theta_a . x for every arm: (K,) for a (d,) context, (n, K) for (n, d) contexts."""
        return self._kernel.expectations(edge_float(context, "contexts"))

    @property
    def theta(self) -> np.ndarray:
        """Ridge-regression weights per arm, shape (K, d)."""
        with self._exclusive():
            return self._arrays["theta"].copy()

    @property
    def counts(self) -> np.ndarray:
        """Sum of update weights per arm (decayed when decay < 1), shape (K,)."""
        with self._exclusive():
            return self._arrays["n"].copy()


class LinUCB(LinearPolicy):
    """LinUCB with disjoint models (Li et al., 2010). Settings: LinUCBConfig."""

    traits = PolicyTraits(deterministic=True, propensity="closed_form", contextual=True)
    name = "LinUCB"
    config_class = LinUCBConfig
    _kind = _codes.LIN_UCB
    config: LinUCBConfig
    _exploration_field = "alpha"


class LinTS(LinearPolicy):
    """Linear Thompson sampling with disjoint models (Agrawal & Goyal, 2013).

    The sampled score theta~.x with theta~ ~ N(theta, v^2 A^-1) is drawn directly as
    N(theta.x, v^2 x'A^-1 x): the same decision distribution at O(K) instead of
    O(K d) normal draws. Settings: LinTSConfig.
    """

    traits = PolicyTraits(deterministic=False, propensity="estimated", contextual=True)
    name = "LinTS"
    config_class = LinTSConfig
    _kind = _codes.LIN_TS
    config: LinTSConfig
    _exploration_field = "v"

    def _draws(self) -> int:
        return self.config.propensity_draws
