"""Kernel objects of the Numba backend, with the interface of ``_core.MabKernel``
and ``_core.LinKernel``: views of the policy's NumPy state, checked arguments,
then a Numba call that runs without the GIL, serialised by the kernel's
(re-entrant) lock; lock()/unlock() let the policy hold it across structural changes."""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .. import _validation as v
from . import linear as lin
from . import multiarmed as mab
from .beta_matching import POST_COLS
from .codes import (
    BETA_TS,
    CTR_SEED,
    GAUSSIAN_TS,
    LIN_TS,
    METHOD_DRAWS,
    METHOD_QUADRATURE,
    N_COUNTERS,
)


def _check_method(method: int) -> int:
    """0: count wins over posterior draws; 1: exact by quadrature (see _core)."""
    if method not in (METHOD_DRAWS, METHOD_QUADRATURE):
        raise ValueError(f"propensity_method: expected 0 (draws) or 1 (quadrature), got {method!r}")
    return int(method)


class _Guarded(ABC):
    """The lock and the array rebinding both kernels share (see _core's Guarded)."""

    _lock: threading.RLock

    @abstractmethod
    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Checks and binds the kernel's state arrays."""

    def rebind(self, arrays: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._set_arrays(arrays)

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()


class MabKernel(_Guarded):
    def __init__(self, kind: int, decay: float, hyper: list[float], propensity_draws: int,
                 propensity_refresh: int, arrays: dict[str, np.ndarray],
                 propensity_method: int = 0, first_on_ties: bool = False,
                 matching: bool = False, propensity_tolerance: float = 0.0) -> None:
        self.kind = int(kind)
        self.decay = float(decay)
        self.method = _check_method(propensity_method)
        if matching and not (self.kind == BETA_TS and self.method == METHOD_QUADRATURE):
            raise ValueError('matching: probability matching is Beta TS with '
                             'propensity_method="quadrature" only')
        tol = float(propensity_tolerance)
        if not (tol >= 0.0 and math.isfinite(tol)):
            raise ValueError("propensity_tolerance: expected a finite number >= 0")
        # the kind's hyperparameters, then 1.0 for first_on_ties, 1.0 for matching, and
        # the propensity tolerance
        h = np.zeros(7)
        h[: len(hyper)] = hyper
        h[4] = 1.0 if first_on_ties else 0.0
        h[5] = 1.0 if matching else 0.0
        h[6] = tol
        self.hyper = h
        self.draws = int(propensity_draws)
        self.refresh = max(1, int(propensity_refresh))
        self._lock = threading.RLock()
        self._set_arrays(arrays)

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        stats = v.checked_array(arrays["stats"], "stats", "float64", 2, (-1, 3))
        k = stats.shape[0]
        active = v.checked_array(arrays["active"], "active", "bool", 1, (k,))
        counters = v.checked_array(arrays["counters"], "counters", "int64", 1, (N_COUNTERS,))
        cache = v.checked_array(arrays["prop_cache"], "prop_cache", "float64", 1, (k,))
        pmask = v.checked_array(arrays["prop_mask"], "prop_mask", "bool", 1, (k,))
        # optional, as in _core: the posteriors the cache was filled with (a private one
        # when absent, so the cache is refilled as without a tolerance snapshot)
        post = (v.checked_array(arrays["prop_post"], "prop_post", "float64", 2, (k, POST_COLS))
                if "prop_post" in arrays else np.zeros((k, POST_COLS)))
        # optional, as in _core: the node grid's snapshot (beta_grid.hpp); (0, 2): none
        grid = (v.checked_array(arrays["quad_grid"], "quad_grid", "float64", 2, (k, 2))
                if "quad_grid" in arrays else np.zeros((0, 2)))
        self.stats, self.active, self.counters, self.cache, self.pmask, self.post = (
            stats, active, counters, cache, pmask, post)
        self.grid = grid
        self.seed = counters[CTR_SEED:CTR_SEED + 1].view(np.uint64)[0]  # the seed's bits
        self._all = np.ones(k, dtype=np.bool_)
        self._zeros = np.zeros(k)

    @property
    def n_arms(self) -> int:
        return self.stats.shape[0]

    def select(self, context: Any = None, mask: Any = None,
               bias: Any = None) -> tuple[int, float]:
        with self._lock:
            return self._select(mask, bias)

    def _select(self, mask: Any, bias: Any) -> tuple[int, float]:
        m = v.check_mask(mask, self.active)
        b = v.check_bias(bias, self.n_arms)
        arm, prop = mab.select(self.kind, self.hyper, self.draws, self.method, self.refresh, self.seed,
                               self.stats, self.active, self.counters, self.cache, self.pmask,
                               self.post, self.grid, self._all if m is None else m,
                               self._zeros if b is None else b, b is not None)
        return int(arm), float(prop)

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None,
                     out_arms: Any = None, out_props: Any = None, n_threads: int = 1,
                     biases: Any = None) -> tuple[np.ndarray, np.ndarray]:
        v.check_threads(n_threads)  # the Numba backend runs batches on one thread
        with self._lock:
            return self._select_batch(masks, n, out_arms, out_props, biases)

    def _select_batch(self, masks: Any, n: int | None, out_arms: Any, out_props: Any,
                      biases: Any) -> tuple[np.ndarray, np.ndarray]:
        if n is None:
            if masks is None:
                raise ValueError("n: give the number of decisions or masks of shape (n, K)")
            n = v.checked_array(masks, "masks", "bool", 2, (-1, self.n_arms)).shape[0]
        m = v.check_masks(masks, n, self.active)
        if m is None:
            m = np.broadcast_to(self._all, (n, self.n_arms))
        b = v.check_biases(biases, n, self.n_arms)
        arms = v.check_out(out_arms, n, "out_arms", "int64")
        props = v.check_out(out_props, n, "out_props", "float64")
        mab.select_batch(self.kind, self.hyper, self.draws, self.method, self.refresh, self.seed, self.stats,
                         self.active, self.counters, self.cache, self.pmask, self.post, self.grid, m,
                         np.broadcast_to(self._zeros, (n, self.n_arms)) if b is None else b,
                         b is not None, arms, props)
        return arms, props

    def update(self, arm: int, reward: float, context: Any = None, weight: float = 1.0) -> None:
        with self._lock:
            a = v.check_arm(arm, self.n_arms)
            r = v.check_finite_scalar(reward, "reward")
            if self.kind == BETA_TS:
                v.check_unit_reward(r, "reward")
            w = v.check_weight(weight)
            mab.update(self.decay, self.stats, self.counters, a, r, w)

    def update_batch(self, arms: Any, rewards: Any, contexts: Any = None,
                     weights: Any = None) -> None:
        with self._lock:
            a, r, w = v.check_batch_updates(arms, rewards, weights, self.n_arms,
                                            self.kind == BETA_TS)
            if w is None:
                w = np.ones(a.shape[0])
            mab.update_batch(self.decay, self.stats, self.counters, a, r, w)

    def expectations(self) -> np.ndarray:
        with self._lock:
            return mab.expectations(self.kind, self.hyper, self.stats)

    def action_probabilities(self, masks: Any = None, n: int | None = None,
                             draws: int = 1000, biases: Any = None) -> np.ndarray:
        with self._lock:
            if n is None:
                if masks is None:
                    raise ValueError("n: give the number of rows or masks of shape (n, K)")
                n = v.checked_array(masks, "masks", "bool", 2, (-1, self.n_arms)).shape[0]
            m = v.check_masks(masks, n, self.active)
            b = v.check_biases(biases, n, self.n_arms)
            # draws >= 1 counts wins over draws; 0 asks for the exact (quadrature) distribution.
            exact = self.kind == BETA_TS and self.method == METHOD_QUADRATURE
            draws = v.check_draws(draws, self.kind in (BETA_TS, GAUSSIAN_TS) and not exact)
            method = self.method if draws < 1 else METHOD_DRAWS
            k = self.n_arms
            out = np.empty((n, k))
            mab.action_probabilities_rows(
                self.kind, self.hyper, draws, method, self.seed, self.stats, self.active, self.counters,
                self.grid, np.broadcast_to(self._all, (n, k)) if m is None else m,
                np.broadcast_to(self._zeros, (n, k)) if b is None else b, b is not None, out)
            return out


class LinKernel(_Guarded):
    def __init__(self, kind: int, decay: float, exploration: float, ridge: float,
                 refresh_every: int, propensity_draws: int,
                 arrays: dict[str, np.ndarray], propensity_method: int = 0,
                 first_on_ties: bool = False, batch_accumulate: bool = False) -> None:
        self.kind = int(kind)
        self.decay = float(decay)
        self.exploration = float(exploration)
        self.ridge = float(ridge)
        self.refresh_every = max(1, int(refresh_every))
        self.draws = int(propensity_draws)
        self.method = _check_method(propensity_method)
        self.first = bool(first_on_ties)
        self.accumulate = bool(batch_accumulate)
        self._lock = threading.RLock()
        self._set_arrays(arrays)

    _NAMES = ("A", "A_inv", "b", "theta", "n", "since_refresh", "active", "counters")

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        A = v.checked_array(arrays["A"], "A", "float64", 3, (-1, -1, -1))
        k, d = A.shape[0], A.shape[1]
        self.A = v.checked_array(A, "A", "float64", 3, (k, d, d))
        self.A_inv = v.checked_array(arrays["A_inv"], "A_inv", "float64", 3, (k, d, d))
        self.b = v.checked_array(arrays["b"], "b", "float64", 2, (k, d))
        self.theta = v.checked_array(arrays["theta"], "theta", "float64", 2, (k, d))
        self.n = v.checked_array(arrays["n"], "n", "float64", 1, (k,))
        self.since = v.checked_array(arrays["since_refresh"], "since_refresh", "int64", 1, (k,))
        self.active = v.checked_array(arrays["active"], "active", "bool", 1, (k,))
        self.counters = v.checked_array(arrays["counters"], "counters", "int64", 1,
                                        (N_COUNTERS,))
        self.seed = self.counters[CTR_SEED:CTR_SEED + 1].view(np.uint64)[0]
        self._all = np.ones(k, dtype=np.bool_)
        self._zeros = np.zeros(k)
        self._mean = np.zeros(k)
        self._var = np.zeros(k)
        self._u = np.zeros(d)
        self._work = np.zeros(2 * d * d)

    @property
    def n_arms(self) -> int:
        return self.A.shape[0]

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    def select(self, context: Any = None, mask: Any = None,
               bias: Any = None) -> tuple[int, float]:
        with self._lock:
            return self._select(context, mask, bias)

    def _select(self, context: Any, mask: Any, bias: Any) -> tuple[int, float]:
        x = v.check_context(context, self.dim)
        m = v.check_mask(mask, self.active)
        b = v.check_bias(bias, self.n_arms)
        arm, prop = lin.select(self.kind, self.exploration, self.first, self.draws, self.method, self.seed, self.A_inv,
                               self.theta, self.active, self.counters,
                               self._all if m is None else m, self._zeros if b is None else b,
                               x, self._mean, self._var, self._u)
        return int(arm), float(prop)

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None,
                     out_arms: Any = None, out_props: Any = None, n_threads: int = 1,
                     biases: Any = None) -> tuple[np.ndarray, np.ndarray]:
        v.check_threads(n_threads)  # the Numba backend runs batches on one thread
        with self._lock:
            return self._select_batch(contexts, masks, n, out_arms, out_props, biases)

    def _select_batch(self, contexts: Any, masks: Any, n: int | None, out_arms: Any,
                      out_props: Any, biases: Any) -> tuple[np.ndarray, np.ndarray]:
        xs = v.check_contexts(contexts, self.dim)
        if n is not None and n != xs.shape[0]:
            raise ValueError("n: disagrees with the number of contexts")
        n = xs.shape[0]
        m = v.check_masks(masks, n, self.active)
        if m is None:
            m = np.broadcast_to(self._all, (n, self.n_arms))
        b = v.check_biases(biases, n, self.n_arms)
        if b is None:
            b = np.broadcast_to(self._zeros, (n, self.n_arms))
        arms = v.check_out(out_arms, n, "out_arms", "int64")
        props = v.check_out(out_props, n, "out_props", "float64")
        lin.select_batch(self.kind, self.exploration, self.first, self.draws, self.method, self.seed, self.A_inv,
                         self.theta, self.active, self.counters, m, b, xs, self._mean, self._var,
                         self._u, arms, props)
        return arms, props

    def update(self, arm: int, reward: float, context: Any = None, weight: float = 1.0) -> None:
        with self._lock:
            self._update(arm, reward, context, weight)

    def _update(self, arm: int, reward: float, context: Any, weight: float) -> None:
        a = v.check_arm(arm, self.n_arms)
        r = v.check_finite_scalar(reward, "reward")
        w = v.check_weight(weight)
        x = v.check_context(context, self.dim)
        lin.update(self.decay, self.ridge, self.refresh_every, self.A, self.A_inv, self.b,
                   self.theta, self.n, self.since, self.counters, a, r, x, w, self._u, self._work)

    def update_batch(self, arms: Any, rewards: Any, contexts: Any = None,
                     weights: Any = None) -> None:
        with self._lock:
            self._update_batch(arms, rewards, contexts, weights)

    def _update_batch(self, arms: Any, rewards: Any, contexts: Any, weights: Any) -> None:
        a, r, w = v.check_batch_updates(arms, rewards, weights, self.n_arms, False)
        xs = v.check_contexts(contexts, self.dim, a.shape[0])
        if w is None:
            w = np.ones(a.shape[0])
        if self.accumulate:  # the batch's sums, one exact refresh per arm (see _core)
            bad = lin.accumulate_rows(self.decay, self.ridge, self.A, self.A_inv, self.b,
                                      self.theta, self.n, self.since, self.counters, a, r, xs,
                                      w, self._work)
            if bad >= 0:
                raise ValueError(
                    f"update_batch: arm {bad}'s statistics would not be finite, or its "
                    "precision matrix not positive definite, after this batch (a reward, "
                    "weight or context too large in magnitude); the batch was refused whole, "
                    "the policy is unchanged")
            return
        lin.update_batch(self.decay, self.ridge, self.refresh_every, self.A, self.A_inv, self.b,
                         self.theta, self.n, self.since, self.counters, a, r, xs, w, self._u,
                         self._work)

    def expectations(self, contexts: Any) -> np.ndarray:
        if contexts is None:
            raise ValueError("contexts: required for a contextual policy")
        c = np.asarray(contexts) if not isinstance(contexts, np.ndarray) else contexts
        with self._lock:
            if c.ndim == 1:
                x = v.check_context(c, self.dim, "contexts")[None, :]
                return lin.expectations(self.theta, x)[0]
            return lin.expectations(self.theta, v.check_contexts(c, self.dim))

    def action_probabilities(self, contexts: Any, masks: Any = None, draws: int = 1000,
                             n_threads: int = 1, biases: Any = None) -> np.ndarray:
        v.check_threads(n_threads)
        with self._lock:
            xs = v.check_contexts(contexts, self.dim)
            n = xs.shape[0]
            m = v.check_masks(masks, n, self.active)
            if m is None:
                m = np.broadcast_to(self._all, (n, self.n_arms))
            b = v.check_biases(biases, n, self.n_arms)
            if b is None:
                b = np.broadcast_to(self._zeros, (n, self.n_arms))
            exact = self.method == METHOD_QUADRATURE
            draws = v.check_draws(draws, self.kind == LIN_TS and not exact)
            method = self.method if draws < 1 else METHOD_DRAWS
            out = np.empty((n, self.n_arms))
            lin.action_probabilities(self.kind, self.exploration, self.first, draws, method, self.seed, self.A_inv,
                                     self.theta, self.active, m, b, xs, self._mean, self._var,
                                     self._u, out)
            return out

    def refresh_all(self) -> None:
        with self._lock:
            lin.refresh_all(self.A, self.A_inv, self.b, self.theta, self.since, self._work)
