"""State layout shared by the non-contextual policies: one (K, 3) table of
(sum w, sum w*r, sum w*r^2) per arm (see cpp/include/promobandit/multiarmed.hpp)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .base import FAST_UPDATE_BOUND, Policy, ThompsonConfig, check_method, new_counters

# beta_matching.hpp's kBetaPostCols: columns of a prop_post row
POST_COLS = 4


class MultiArmedPolicy(Policy):
    """Base of the non-contextual policies; `context` arguments are accepted and ignored,
    so a non-contextual policy can stand wherever a contextual one does."""

    _kind: ClassVar[int]
    # Checked updates (promobandit.policies.base): an update writes its arm's row of
    # "stats" (sum w, sum w r, sum w r^2), each new entry at most the bound on every entry
    # plus |w| max(1, |r|)^2 in magnitude (decay only shrinks them).
    _update_rows: ClassVar[tuple[str, ...]] = ("stats",)
    _bound_arrays: ClassVar[tuple[str, ...]] = ("stats",)

    def _native_fast_update(self) -> tuple[Any, float] | None:
        # The C++ kernel's update_fast runs the check below natively (policy_bindings.cpp);
        # the Numba kernel has none and keeps the Python check.
        kernel_fast = getattr(self._kernel, "update_fast", None)
        return None if kernel_fast is None else (kernel_fast, FAST_UPDATE_BOUND)

    def _measure_bound(self) -> float:
        return float(np.abs(self._arrays["stats"]).max(initial=0.0))

    def _native_fast_update_batch(self) -> tuple[Any, float] | None:
        kernel_fast = getattr(self._kernel, "update_batch_fast", None)
        return None if kernel_fast is None else (kernel_fast, FAST_UPDATE_BOUND)

    def _make_fast_update(self) -> Any:
        box, arrays_of, lim = self._bound, self, FAST_UPDATE_BOUND

        def fast(arm: Any, reward: Any, context: Any, weight: Any) -> bool:
            b = box[0]
            if b is None:
                b = arrays_of._measure_bound()
            try:
                r, w = abs(float(reward)), abs(float(weight))
            except (TypeError, ValueError):  # not a number: the kernel's checks say so
                return False
            m = r if r > 1.0 else 1.0
            nb = b + w * m * m
            if nb <= lim:  # False for NaN
                box[0] = nb
                return True
            return False
        return fast

    def _hyper(self) -> list[float]:
        return []

    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        return {
            "stats": np.zeros((n_arms, 3)),
            "active": np.ones(n_arms, dtype=np.bool_),
            "counters": new_counters(self._seed),
            "prop_cache": np.zeros(n_arms),
            "prop_mask": np.zeros(n_arms, dtype=np.bool_),
            # each arm's posterior (mean, sd) and sensitivity weights when prop_cache was
            # filled (Beta TS's propensity_tolerance, beta_matching.hpp); 0 = none
            "prop_post": np.zeros((n_arms, POST_COLS)),
            # the (alpha, beta) per arm that the node grid of Beta TS's cached win
            # probabilities is cut for (beta_grid.hpp); 0 = not in it (all 0: no grid yet)
            "quad_grid": np.zeros((n_arms, 2)),
        }

    def _new_arm_rows(self) -> dict[str, np.ndarray]:
        return {
            "stats": np.zeros(3),
            "active": np.array(True),
            "prop_cache": np.array(0.0),
            "prop_mask": np.array(False),
            "prop_post": np.zeros(POST_COLS),
            "quad_grid": np.zeros(2),
        }

    def _make_kernel(self, module: Any) -> Any:
        c = self.config
        ts = isinstance(c, ThompsonConfig)
        return module.MabKernel(
            self._kind, c.decay, self._hyper(),
            c.propensity_draws if ts else 0,
            c.propensity_refresh if ts else 1,
            self._arrays,
            check_method(getattr(c, "propensity_method", "draws")),
            c.ties == "first",
            getattr(c, "sampler", "posterior") == "matching",
            float(getattr(c, "propensity_tolerance", 0.0)),
        )

    def _check_state_dict(self, state: Any) -> dict[str, np.ndarray]:
        # States saved before prop_post existed load with an empty snapshot (the cache is
        # then refilled on its first use), so older snapshots stay readable.
        arrays = state.get("arrays") if isinstance(state, dict) else None
        # Likewise quad_grid: none yet, so the first refresh cuts a grid.
        stats = arrays.get("stats") if isinstance(arrays, dict) else None
        if isinstance(arrays, dict) and isinstance(stats, np.ndarray) and stats.ndim == 2:
            missing = {}
            if "prop_post" not in arrays:
                missing["prop_post"] = np.zeros((stats.shape[0], POST_COLS))
            if "quad_grid" not in arrays:
                missing["quad_grid"] = np.zeros((stats.shape[0], 2))
            if missing:
                state = {**state, "arrays": {**arrays, **missing}}
        return super()._check_state_dict(state)

    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        self._arrays["stats"] += other["stats"]

    def expectations(self, context: Any = None) -> np.ndarray:
        """Posterior (or empirical) mean reward of every arm, shape (K,)."""
        return self._kernel.expectations()

    @property
    def counts(self) -> np.ndarray:
        """Sum of update weights per arm (decayed when decay < 1), shape (K,)."""
        with self._exclusive():
            return self._arrays["stats"][:, 0].copy()

    @property
    def reward_sums(self) -> np.ndarray:
        """Sum of weighted rewards per arm (decayed when decay < 1), shape (K,)."""
        with self._exclusive():
            return self._arrays["stats"][:, 1].copy()
