"""MABWiser's API (``mabwiser.mab``, version 2.7) over promobandit's native kernels.

Swap one import line::

    # from mabwiser.mab import MAB, LearningPolicy
    from promobandit.compat.mabwiser import MAB, LearningPolicy

``MAB(arms, learning_policy, neighborhood_policy=None, seed=123456, n_jobs=1, backend=None)``
with ``fit``, ``partial_fit``, ``predict``, ``predict_expectations``, ``add_arm``,
``remove_arm``, ``arms``, ``cold_arms`` and ``is_contextual``, for the learning policies
``EpsilonGreedy``, ``Softmax``, ``ThompsonSampling``, ``UCB1``, ``LinUCB``, ``LinTS``,
``LinGreedy``, ``Random`` and ``Popularity`` with MABWiser's parameter names and defaults.
``LearningPolicy`` objects built by MABWiser itself are accepted too.

How each policy runs (MABWiser's rule is kept wherever it is deterministic):

- ``ThompsonSampling``: the native Beta-Bernoulli kernel (``BetaTS``, prior Beta(1, 1), as
  MABWiser); the ``binarizer`` is applied here before the rewards reach it. One decision
  draws a Beta per arm, as MABWiser. A batch of rows is decided by a twin kernel fed the
  same updates with ``sampler="matching"``: each row is drawn from every arm's exact
  probability of the largest posterior draw (by quadrature, once per batch), which is the
  distribution of MABWiser's argmax over one Beta draw per arm, at one uniform per row
  instead of 2 K gamma draws. (Matching one at a time would recompute the quadrature
  after each update, slower than K draws.)
- ``EpsilonGreedy``: the native kernel (uniform arm with probability ``epsilon``, else the
  highest mean, untrained arms at 0, the first arm on ties).
- ``LinUCB``: the native disjoint ridge kernel with ``ridge = l2_lambda`` (A = l2_lambda I
  + X'X per arm, as MABWiser) and ``alpha`` the bound's width. ``fit`` and ``partial_fit``
  of several rows learn in the kernel's ``batch_update="accumulate"`` mode (the rows' sums
  added, then A^-1 and theta recomputed exactly once per arm, like MABWiser's full solve;
  LinTS and LinGreedy too); one row at a time stays on the rank-one update. MABWiser scores an arm
  with no data since ``fit`` with A^-1 = l2_lambda I (not 1 / l2_lambda I); when
  l2_lambda != 1 and such an arm exists, the bound is computed here from the native
  state with that A^-1, so the choices still equal MABWiser's.
- ``LinTS``: the native ridge kernel learns (N(theta, alpha^2 A^-1) as MABWiser); the
  draw is made here, because MABWiser 2.7 draws every arm's weights from one shared
  standard-normal vector per decision (correlated arms), which the native kernel's
  independent draws would not reproduce in distribution.
- ``LinGreedy``: the native LinUCB kernel with a zero-width bound (the ridge mean), the
  ``epsilon`` draw made here.
- ``UCB1``: MABWiser's rule differs from the native one (it scores an untrained arm 0
  instead of playing it first, and N counts every decision since ``fit``, removed arms
  included), so the bound mean + alpha sqrt(2 ln N / n_a) is computed here from the
  native kernel's counts and reward sums.
- ``Softmax`` / ``Popularity``: MABWiser draws a Dirichlet over the arms' weights
  (softmax of the means, or normalised means) and plays its argmax; that rule has no
  native kernel, so it is drawn here over the native kernel's counts and sums.
- ``Random``: a uniform arm, drawn here.

``n_jobs`` sets the threads of a batch of native contextual decisions.
Random policies match MABWiser in distribution, not draw for draw. Not covered, raising
``NotImplementedError``: neighbourhood policies, ``warm_start``, ``scale=True`` and
``l2_lambda=0``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._intcodes import IntCodes
from ..policies import LinTS as _NativeLinTS
from ..policies import LinUCB as _NativeLinUCB
from ..policies.greedy import EpsilonGreedy as _NativeEpsilonGreedy
from ..policies.thompson import BetaTS as _NativeBetaTS

__all__ = ["MAB", "LearningPolicy", "NeighborhoodPolicy"]

DEFAULT_SEED = 123456  # MABWiser's Constants.default_seed
_EPS = float(np.finfo(float).eps)
# ThompsonSampling's batch twin draws from its own stream: the native seed xor this.
_TWIN_SEED = 0x5EED_7A1C
# One-row updates held for the twin before they are applied in one batch (memory bound).
_TWIN_ROWS = 4096


class LearningPolicy:
    """The learning policies, with MABWiser's parameter names and defaults."""

    class EpsilonGreedy(NamedTuple):
        epsilon: float = 0.1

    class LinGreedy(NamedTuple):
        epsilon: float = 0.1
        l2_lambda: float = 1.0
        scale: bool = False

    class LinTS(NamedTuple):
        alpha: float = 1.0
        l2_lambda: float = 1.0
        scale: bool = False

    class LinUCB(NamedTuple):
        alpha: float = 1.0
        l2_lambda: float = 1.0
        scale: bool = False

    class Popularity(NamedTuple):
        pass

    class Random(NamedTuple):
        pass

    class Softmax(NamedTuple):
        tau: float = 1

    class ThompsonSampling(NamedTuple):
        binarizer: Callable[[Any, float], Any] | None = None

    class UCB1(NamedTuple):
        alpha: float = 1


class NeighborhoodPolicy:
    """MABWiser's neighbourhood policies: they can be built, but ``MAB`` refuses them
    (``NotImplementedError``): promobandit has no neighbourhood kernels."""

    class Clusters(NamedTuple):
        n_clusters: int = 2
        is_minibatch: bool = False

    class KNearest(NamedTuple):
        k: int = 1
        metric: str = "euclidean"

    class LSHNearest(NamedTuple):
        n_dimensions: int = 5
        n_tables: int = 3
        no_nhood_prob_of_arm: list[float] | None = None

    class Radius(NamedTuple):
        radius: float = 0.05
        metric: str = "euclidean"
        no_nhood_prob_of_arm: list[float] | None = None

    class TreeBandit(NamedTuple):
        tree_parameters: dict[str, Any] | None = None


_CONTEXTUAL = frozenset({"LinUCB", "LinTS", "LinGreedy"})
_SUPPORTED = frozenset({"EpsilonGreedy", "Softmax", "ThompsonSampling", "UCB1", "LinUCB",
                        "LinTS", "LinGreedy", "Random", "Popularity"})
_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(getattr(LearningPolicy, name)()._asdict()) for name in _SUPPORTED
}


def _number(params: dict[str, Any], key: str, low: float, low_open: bool) -> None:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"learning_policy: {key} must be an integer or float, got {v!r}")
    if not math.isfinite(float(v)) or (v <= low if low_open else v < low):
        bound = "greater than" if low_open else "at least"
        raise ValueError(f"learning_policy: {key} must be finite and {bound} {low}, got {v!r}")


def _translate(lp: Any) -> tuple[str, dict[str, Any]]:
    """(policy name, parameters) of a LearningPolicy, ours or MABWiser's own."""
    name = type(lp).__name__
    if name not in _SUPPORTED or not hasattr(lp, "_asdict"):
        raise NotImplementedError(
            f"learning_policy: {name} is not implemented by promobandit.compat.mabwiser; it "
            f"implements LearningPolicy.{', LearningPolicy.'.join(sorted(_SUPPORTED))} "
            "(use mabwiser.MAB itself for any other)")
    params = dict(_DEFAULTS[name])
    params.update(lp._asdict())
    if set(params) != set(_DEFAULTS[name]):
        raise TypeError(f"learning_policy: {name} takes {sorted(_DEFAULTS[name])}, got "
                        f"{sorted(params)}")
    if "epsilon" in params:
        _number(params, "epsilon", 0.0, False)
        if params["epsilon"] > 1:
            raise ValueError(f"learning_policy: epsilon must be between 0 and 1, got "
                             f"{params['epsilon']!r}")
    if name == "UCB1":
        _number(params, "alpha", 0.0, False)
    if name == "LinUCB":
        _number(params, "alpha", 0.0, False)
    if name == "LinTS":
        _number(params, "alpha", 0.0, True)
    if name == "Softmax":
        _number(params, "tau", 0.0, True)
    if name in _CONTEXTUAL:
        _number(params, "l2_lambda", 0.0, name == "LinTS")
        if params["l2_lambda"] == 0:
            raise NotImplementedError(
                "learning_policy: l2_lambda=0 (an unregularised, possibly singular "
                "least-squares model) is not implemented by the native ridge kernels; use a "
                "small positive l2_lambda such as 1e-6")
        if not isinstance(params["scale"], bool):
            raise TypeError(f"learning_policy: scale must be True or False, got "
                            f"{params['scale']!r}")
        if params["scale"]:
            raise NotImplementedError(
                "learning_policy: scale=True (a per-arm StandardScaler fitted online) is not "
                "implemented; standardise the contexts before fit and predict instead (for "
                "example with sklearn.preprocessing.StandardScaler fitted once)")
    if name == "ThompsonSampling" and params["binarizer"] is not None \
            and not callable(params["binarizer"]):
        raise TypeError("learning_policy: binarizer must be a callable binarize(arm, reward) "
                        "-> True/False or 0/1")
    return name, params


def _check_arm_label(arm: Any, field: str) -> None:
    if arm is None:
        raise ValueError(f"{field}: an arm cannot be None")
    try:
        hash(arm)
    except TypeError:
        raise TypeError(f"{field}: an arm must be hashable (a string, an integer, ...), got "
                        f"{type(arm).__name__}") from None
    if isinstance(arm, (float, np.floating)) and not math.isfinite(float(arm)):
        raise ValueError(f"{field}: an arm cannot be NaN or infinity, got {arm!r}")


def _values(obj: Any, field: str) -> Any:
    """A list, NumPy array or pandas Series as a list or array (nothing else accepted)."""
    if isinstance(obj, (list, np.ndarray)):
        return obj
    if type(obj).__module__.startswith("pandas") and getattr(obj, "ndim", None) == 1:
        return obj.to_numpy()
    raise TypeError(f"{field}: expected a list, NumPy array or pandas Series, got "
                    f"{type(obj).__name__}")


def _rewards(obj: Any, n: int) -> np.ndarray:
    values = _values(obj, "rewards")
    if len(values) != n:
        raise ValueError(f"decisions and rewards: should be the same length, got {n} "
                         f"decisions and {len(values)} rewards")
    try:
        r = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("rewards: cannot contain None, NaN or infinity, and must be numbers "
                        "(or booleans)") from None
    if r.ndim != 1:
        raise ValueError(f"rewards: expected one reward per decision (1-D), got shape {r.shape}")
    bad = ~np.isfinite(r)
    if bad.any():
        i = int(np.argmax(bad))
        raise TypeError(f"rewards: cannot contain None, NaN or infinity (row {i}: {r[i]})")
    return r


def _matrix(obj: Any, field: str, *, fit_rows: int | None, width: int | None) -> np.ndarray:
    """Contexts (list of lists, 2-D array of any real dtype, DataFrame, or a Series as
    MABWiser reads one) as a C-contiguous float64 (n, d) array, checked finite."""
    if type(obj) is np.ndarray and obj.dtype == np.float64 and obj.ndim == 2 \
            and obj.flags.c_contiguous and (width is None or obj.shape[1] == width) \
            and math.isfinite(obj.sum()):
        return obj  # the zero-copy path (a finite sum means every entry is finite)
    if type(obj).__module__.startswith("pandas"):
        ndim = getattr(obj, "ndim", None)
        if ndim == 1:  # a Series: one column for several decisions, else one row
            flat = obj.to_numpy()
            column = (fit_rows is not None and fit_rows > 1) or (fit_rows is None and width == 1)
            arr = np.asarray(flat).reshape(-1, 1) if column else np.asarray(flat).reshape(1, -1)
        elif ndim == 2:
            arr = obj.to_numpy()
        else:
            raise TypeError(f"{field}: expected a 2-D list, NumPy array, pandas Series or "
                            f"DataFrame, got {type(obj).__name__}")
    elif isinstance(obj, (list, tuple, np.ndarray)):
        arr = obj
    else:
        raise TypeError(f"{field}: expected a 2-D list, NumPy array, pandas Series or "
                        f"DataFrame, got {type(obj).__name__}")
    if isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.flags.c_contiguous:
        x = arr
    else:
        if isinstance(arr, np.ndarray) and arr.dtype.kind not in "fiub":
            raise TypeError(f"{field}: expected real numbers, got dtype {arr.dtype}")
        try:
            x = np.ascontiguousarray(arr, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{field}: expected a 2-D table of real numbers (rows of equal "
                            "length)") from None
    if x.ndim != 2:
        raise TypeError(f"{field}: should be given as a 2-D list, NumPy array, pandas Series "
                        f"or DataFrame, got {x.ndim} dimension(s)")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{field}: expected {width} columns (the width fit was given), got "
                         f"{x.shape[1]}")
    if x.size and not np.isfinite(x).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"{field}: cannot contain NaN or infinity (row {i}, column {j}: "
                         f"{x[i, j]})")
    return x


class MAB:
    """MABWiser's ``MAB`` over the native kernels (see the module's documentation)."""

    def __init__(self, arms: list[Any], learning_policy: Any, neighborhood_policy: Any = None,
                 seed: int = DEFAULT_SEED, n_jobs: int = 1, backend: str | None = None) -> None:
        if not isinstance(arms, list):
            raise TypeError(f"arms: should be provided in a list, got {type(arms).__name__}")
        for a in arms:
            _check_arm_label(a, "arms")
        if len(set(arms)) != len(arms):
            raise ValueError("arms: the list of arms cannot contain duplicate values")
        if not arms:
            raise ValueError("arms: expected at least one arm")
        if neighborhood_policy is not None:
            raise NotImplementedError(
                f"neighborhood_policy: {type(neighborhood_policy).__name__} is not implemented "
                "by promobandit.compat.mabwiser (it has no neighbourhood kernels); use "
                "mabwiser.MAB itself for neighbourhood policies, or a contextual learning "
                "policy (LinUCB, LinTS, LinGreedy) with neighborhood_policy=None")
        name, params = _translate(learning_policy)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: must be an integer, got {seed!r}")
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)):
            raise TypeError(f"n_jobs: must be an integer, got {n_jobs!r}")
        if n_jobs == 0:
            raise ValueError("n_jobs: the number of parallel jobs cannot be zero")
        if backend is not None and not isinstance(backend, str):
            raise TypeError(f"backend: must be a string, got {backend!r}")
        self.arms: list[Any] = list(arms)
        self.learning_policy = learning_policy
        self.neighborhood_policy = None
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        # MABWiser's n_jobs: the threads a batch of contextual decisions is spread over.
        cores = os.cpu_count() or 1
        self._threads = min(int(n_jobs), cores) if n_jobs > 0 else max(cores + 1 + int(n_jobs), 1)
        self.backend = backend
        self._name = name
        self._params = params
        self._binarizer: Callable[[Any, float], Any] | None = params.get("binarizer")
        self._rng = np.random.default_rng(self.seed % 2**64)
        self._native_seed = self.seed % 2**64
        self._native: Any = None
        self._twin: Any = None
        self._twin_rows: list[tuple[int, float]] = []  # one-row updates not yet in the twin
        self._labels: list[Any] = []          # native arm id -> label
        self._label_array: np.ndarray | None = None  # the same, as an object array
        self._index: dict[Any, int] = {}      # label -> native arm id (current arms only)
        self._lookup: _IntLookup | None = None  # integer decisions -> ids, for _index
        self._ids = np.zeros(0, dtype=np.int64)  # native ids of self.arms, in order
        self._trained: set[Any] = set()
        self._n_features: int | None = None
        self._total = 0                       # UCB1: decisions since fit
        self._weights = np.zeros(0)           # Popularity: MABWiser's arm_to_expectation
        self._is_initial_fit = False

    # --- properties ----------------------------------------------------------------------
    @property
    def is_contextual(self) -> bool:
        """True for the contextual learning policies (LinUCB, LinTS, LinGreedy)."""
        return self._name in _CONTEXTUAL

    @property
    def cold_arms(self) -> list[Any]:
        """Arms that no decision since the last ``fit`` has named."""
        return [a for a in self.arms if a not in self._trained]

    # --- learning ------------------------------------------------------------------------
    def _checked(self, decisions: Any, rewards: Any, contexts: Any, index: dict[Any, int],
                 width: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(native ids, rewards, contexts), every row checked; changes nothing."""
        dec = _values(decisions, "decisions")
        n = len(dec)
        r = _rewards(rewards, n)
        if contexts is not None:
            if not self.is_contextual:
                raise TypeError("contexts: fitting contexts data requires a contextual "
                                f"learning policy; {self._name} takes none")
            x = _matrix(contexts, "contexts", fit_rows=n, width=width)
            if x.shape[0] != n:
                raise ValueError(f"decisions and contexts: should be the same length, got {n} "
                                 f"decisions and {x.shape[0]} contexts")
        else:
            if self.is_contextual:
                raise TypeError(f"contexts: required to fit the contextual policy {self._name}")
            x = None
        if self._lookup is None or not self._lookup.fits(index):
            self._lookup = _IntLookup(index)
        ids_arr = self._lookup.ids(dec)
        # The decisions as a list of labels: for the lookup by hash, the binarizer and
        # error messages only (an integer array is looked up in the table instead).
        labels = dec.tolist() if isinstance(dec, np.ndarray) and (
            ids_arr is None or self._binarizer is not None) else dec
        if ids_arr is None:
            try:
                ids = [index.get(a) for a in labels]
            except TypeError:
                ids = [None if not _hashable(a) else index.get(a) for a in labels]
            if None in ids:
                i = ids.index(None)
                raise ValueError(f"decisions: {labels[i]!r} (row {i}) is not one of the arms "
                                 f"{self.arms!r}; add it with add_arm first")
            ids_arr = np.asarray(ids, dtype=np.int64)
        elif ids_arr.size and ids_arr.min() < 0:
            i = int(np.argmax(ids_arr < 0))
            raise ValueError(f"decisions: {dec[i].item()!r} (row {i}) is not one of the arms "
                             f"{self.arms!r}; add it with add_arm first")
        if self._name == "ThompsonSampling":
            if self._binarizer is not None:
                pairs = zip(labels, r.tolist(), strict=True)
                r = np.fromiter((float(self._binarizer(a, v)) for a, v in pairs), np.float64,
                                count=n)
                bad = (r != 0) & (r != 1)
                if bad.any():
                    raise ValueError(f"rewards: the binarizer returned {r[np.argmax(bad)]!r} at "
                                     f"row {int(np.argmax(bad))}; expected True/False or 0/1")
            elif ((r != 0) & (r != 1)).any():
                raise ValueError("rewards: Thompson Sampling requires binary rewards (0 or 1) "
                                 "when no binarizer function is given")
        return ids_arr, r, x

    def _new_native(self, n_arms: int, width: int | None) -> Any:
        p, seed = self._params, self._native_seed
        name = self._name
        # MABWiser breaks exact ties at the first arm; the native default is at random.
        first = "first"
        if name == "ThompsonSampling":
            return _NativeBetaTS(n_arms, seed=seed, alpha0=1.0, beta0=1.0, propensity_draws=0,
                                 ties=first)
        if name in ("EpsilonGreedy", "UCB1", "Softmax", "Popularity", "Random"):
            eps = float(p["epsilon"]) if name == "EpsilonGreedy" else 0.0
            return _NativeEpsilonGreedy(n_arms, seed=seed, epsilon=eps, initial_value=0.0,
                                        ties=first)
        assert width is not None
        ridge = float(p["l2_lambda"])
        # A batch (fit, partial_fit of several rows) adds its sums and refreshes each arm's
        # A^-1 and theta exactly once, as MABWiser's full solve does; one row at a time
        # stays on the rank-one update (LinearConfig.batch_update).
        if name == "LinTS":
            return _NativeLinTS(n_arms, width, seed=seed, v=float(p["alpha"]), ridge=ridge,
                                propensity_draws=0, ties=first, batch_update="accumulate")
        alpha = float(p["alpha"]) if name == "LinUCB" else 0.0
        return _NativeLinUCB(n_arms, width, seed=seed, alpha=alpha, ridge=ridge, ties=first,
                             batch_update="accumulate")

    def _new_twin(self, n_arms: int) -> Any:
        """ThompsonSampling's batch twin (see the module): the same prior, learning the
        same rows, deciding by probability matching on a stream of its own."""
        if self._name != "ThompsonSampling":
            return None
        return _NativeBetaTS(n_arms, seed=self._native_seed ^ _TWIN_SEED, alpha0=1.0,
                             beta0=1.0, ties="first", sampler="matching")

    def _sync_twin(self) -> None:
        """Applies the one-row updates the twin has not seen yet, in their order (one
        update_batch: the same statistics as one update each, at a fraction of the
        calls on the one-at-a-time path)."""
        rows = self._twin_rows
        if rows:
            self._twin.update_batch(np.fromiter((i for i, _ in rows), np.int64, len(rows)),
                                    np.fromiter((v for _, v in rows), np.float64, len(rows)))
            self._twin_rows = []

    def fit(self, decisions: Any, rewards: Any, contexts: Any = None) -> None:
        """Learn from scratch: every statistic is reset, then the rows are learnt."""
        index = {a: i for i, a in enumerate(self.arms)}
        width = None
        if contexts is not None and self.is_contextual:
            n_rows = len(_values(decisions, "decisions"))
            width = _matrix(contexts, "contexts", fit_rows=n_rows, width=None).shape[1]
        ids, r, x = self._checked(decisions, rewards, contexts, index, width)
        # Everything is checked: replace the state.
        if self._native is not None:  # a fresh stream for every refit after the first
            self._native_seed = int(self._rng.integers(0, 2**63))
        self._native = self._new_native(len(self.arms), width)
        self._twin = self._new_twin(len(self.arms))
        self._twin_rows = []
        self._labels = list(self.arms)
        self._label_array = None
        self._index = index
        self._ids = np.arange(len(self.arms), dtype=np.int64)
        self._n_features = width
        self._trained = set()
        self._total = 0
        self._weights = np.zeros(len(self.arms))
        self._learn(ids, r, x)
        self._is_initial_fit = True

    def partial_fit(self, decisions: Any, rewards: Any, contexts: Any = None) -> None:
        """Learn from more rows on top of what is known (``fit`` when nothing was yet)."""
        if not self._is_initial_fit:
            self.fit(decisions, rewards, contexts)
            return
        if type(decisions) is list and type(rewards) is list and len(decisions) == 1 \
                and len(rewards) == 1 and self._one_row(decisions[0], rewards[0], contexts):
            return
        ids, r, x = self._checked(decisions, rewards, contexts, self._index, self._n_features)
        self._learn(ids, r, x)

    def _one_row(self, a: Any, v: Any, contexts: Any) -> bool:
        """One decision at a time, the common online loop: learn it on the scalar path
        when it passes the checks outright (True); False sends it down the general path,
        which checks again and names what is wrong. Changes nothing unless it learns."""
        name = self._name
        if self._binarizer is not None or (type(v) is not float and type(v) is not int):
            return False
        try:
            i = self._index.get(a)
        except TypeError:
            return False
        if i is None:
            return False
        if name == "ThompsonSampling":
            if contexts is not None or (v != 0 and v != 1):
                return False
            self._native.update(i, float(v))
            self._twin_rows.append((i, float(v)))  # applied in order before the twin is read
            if len(self._twin_rows) >= _TWIN_ROWS:
                self._sync_twin()
        elif name == "EpsilonGreedy":
            if contexts is not None or not math.isfinite(v):
                return False
            self._native.update(i, float(v))
        elif name in _CONTEXTUAL:
            x = contexts
            if type(x) is not np.ndarray or x.dtype != np.float64 or x.shape != (
                    1, self._n_features) or not x.flags.c_contiguous or not math.isfinite(v) \
                    or not math.isfinite(x.sum()):
                return False
            self._native.update(i, float(v), x[0])
        else:
            return False
        self._trained.add(a)
        return True

    def _learn(self, ids: np.ndarray, r: np.ndarray, x: np.ndarray | None) -> None:
        if ids.size:
            if x is not None:
                self._native.update_batch(ids, r, x)
            elif self._name != "Random":
                self._native.update_batch(ids, r)
                if self._twin is not None:
                    self._sync_twin()
                    self._twin.update_batch(ids, r)
        if self._name != "Random":  # MABWiser's Random never marks an arm trained
            if len(self._trained) < len(self.arms):
                seen = np.flatnonzero(np.bincount(ids, minlength=len(self._labels)))
                self._trained.update(self._labels[i] for i in seen.tolist())
        self._total += int(ids.size)
        if self._name == "Popularity":
            counts, sums = self._native.counts, self._native.reward_sums
            seen = np.unique(ids)
            self._weights[seen] = sums[seen] / counts[seen]
            self._normalise()

    def _normalise(self) -> None:
        w = self._weights[self._ids]
        total = w.sum()
        self._weights[self._ids] = 1.0 / len(self._ids) if total == 0 else w / total

    # --- decisions -----------------------------------------------------------------------
    def _predict_contexts(self, contexts: Any) -> tuple[np.ndarray | None, int | None]:
        if not self._is_initial_fit:
            raise RuntimeError("predict: call fit before prediction")
        if self.is_contextual:
            if contexts is None:
                raise ValueError(f"contexts: required to predict with the contextual policy "
                                 f"{self._name}")
            x = _matrix(contexts, "contexts", fit_rows=None, width=self._n_features)
            return x, x.shape[0]
        if contexts is None:
            return None, None
        # Non-contextual: MABWiser makes one decision per context row and ignores the rest.
        x = _matrix(contexts, "contexts", fit_rows=None, width=None)
        return None, x.shape[0]

    def _means(self) -> np.ndarray:
        counts, sums = self._native.counts, self._native.reward_sums
        return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)

    def _ucb(self) -> np.ndarray:
        counts, sums = self._native.counts, self._native.reward_sums
        out = np.zeros_like(sums)
        seen = counts > 0
        if seen.any():
            out[seen] = sums[seen] / counts[seen] + self._params["alpha"] * np.sqrt(
                2.0 * math.log(self._total) / counts[seen])
        return out

    def _dirichlet_weights(self) -> np.ndarray:
        """MABWiser's arm_to_expectation of Softmax / Popularity, over self.arms."""
        if self._name == "Popularity":
            return self._weights[self._ids]
        means = self._means()[self._ids]
        e = np.exp((means - means.max()) / self._params["tau"])
        return e / e.sum()

    def _linear_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(theta, A^-1) of the current arms as MABWiser holds them: an arm with no data
        since fit keeps MABWiser's initial A^-1 = l2_lambda I (its models start A^-1 as a
        copy of A = l2_lambda I), which differs from the native 1 / l2_lambda I unless
        l2_lambda is 1. Its theta is 0 either way."""
        state = self._native.state_dict()["arrays"]
        theta, a_inv = state["theta"][self._ids], state["A_inv"][self._ids]
        cold = state["n"][self._ids] == 0
        if cold.any():
            a_inv[cold] = float(self._params["l2_lambda"]) * np.eye(a_inv.shape[1])
        return theta, a_inv

    def _untrained_prior_differs(self) -> bool:
        return float(self._params["l2_lambda"]) != 1.0 and bool(
            (self._native.counts[self._ids] == 0).any())

    def _linear_scores(self, x: np.ndarray) -> np.ndarray:
        """(n, K) scores of LinUCB (theta.x + alpha sqrt(x' A^-1 x)) or of one LinTS draw.
        MABWiser 2.7's LinTS arm models hold copies of one random generator, so every arm's
        weights are drawn from the same standard-normal vector z per row:
        theta_a + alpha L_a z with L_a L_a' = A_a^-1. The arms' draws are correlated, which
        shapes the arm frequencies; that rule is reproduced here."""
        theta, a_inv = self._linear_state()
        mean = x @ theta.T
        alpha = float(self._params["alpha"])
        if self._name == "LinUCB":
            quad = np.einsum("nd,kde,ne->nk", x, a_inv, x)
            return mean + alpha * np.sqrt(np.maximum(quad, 0.0))
        chol = np.linalg.cholesky(a_inv)  # (K, d, d)
        z = self._rng.standard_normal((x.shape[0], x.shape[1]))
        return mean + alpha * np.einsum("nd,kde,ne->nk", x, chol, z)

    def predict(self, contexts: Any = None) -> Any:
        """The arm to play: one label, or a list of labels for several context rows."""
        if contexts is None and self._is_initial_fit and (
                self._name == "ThompsonSampling" or self._name == "EpsilonGreedy"):
            return self._labels[self._native.select()[0]]
        x, n = self._predict_contexts(contexts)
        rows = 1 if n is None else n
        name = self._name
        if name in ("ThompsonSampling", "EpsilonGreedy"):
            if rows == 1:
                return self._labels[self._native.select()[0]]
            if self._twin is not None:
                self._sync_twin()
                ids = self._twin.select_batch(n=rows)[0]
            else:
                ids = self._native.select_batch(n=rows)[0]
        elif name == "UCB1":
            ids = np.full(rows, self._ids[int(np.argmax(self._ucb()[self._ids]))])
        elif name in ("Softmax", "Popularity"):
            draws = self._rng.dirichlet(self._dirichlet_weights() + _EPS, rows)
            ids = self._ids[np.argmax(draws, axis=1)]
        elif name == "Random":
            ids = self._ids[self._rng.integers(0, len(self._ids), rows)]
        else:  # LinUCB, LinGreedy: the native kernels; LinTS: MABWiser's rule, here
            assert x is not None
            if name == "LinTS" or (name == "LinUCB" and self._untrained_prior_differs()):
                ids = self._ids[np.argmax(self._linear_scores(x), axis=1)]
            else:
                if rows == 1 and name == "LinUCB":
                    return self._labels[self._native.select(x[0])[0]]
                ids = self._native.select_batch(x, n_threads=self._threads)[0]
            if name == "LinGreedy" and self._params["epsilon"] > 0:
                explore = self._rng.random(rows) < self._params["epsilon"]
                k = int(explore.sum())
                ids = np.array(ids, copy=True)
                ids[explore] = self._ids[self._rng.integers(0, len(self._ids), k)]
        if self._label_array is None or len(self._label_array) != len(self._labels):
            self._label_array = np.empty(len(self._labels), dtype=object)
            for i, a in enumerate(self._labels):  # element by element: tuples stay labels
                self._label_array[i] = a
        out = self._label_array[ids].tolist()
        return out[0] if rows == 1 else out

    def predict_expectations(self, contexts: Any = None) -> Any:
        """Each arm's score as MABWiser defines it (a mean, a bound or a draw): a dict
        {arm: value}, or a list of dicts for several context rows."""
        x, n = self._predict_contexts(contexts)
        rows = 1 if n is None else n
        k = len(self._ids)
        name, p, rng = self._name, self._params, self._rng
        if name == "ThompsonSampling":
            counts = self._native.counts[self._ids]
            sums = self._native.reward_sums[self._ids]
            values = rng.beta(1.0 + sums, 1.0 + counts - sums, size=(rows, k))
        elif name == "EpsilonGreedy":
            values = np.repeat(self._means()[self._ids][None], rows, axis=0)
            explore = rng.random(rows) < p["epsilon"]
            values[explore] = rng.random((int(explore.sum()), k))
        elif name == "UCB1":
            values = np.repeat(self._ucb()[self._ids][None], rows, axis=0)
        elif name in ("Softmax", "Popularity"):
            values = rng.dirichlet(self._dirichlet_weights() + _EPS, rows)
        elif name == "Random":
            values = rng.random((rows, k))
        else:
            assert x is not None
            if name == "LinGreedy":
                values = x @ self._native.theta[self._ids].T
                explore = rng.random(rows) < p["epsilon"]
                values[explore] = rng.random((int(explore.sum()), k))
            else:
                values = self._linear_scores(x)
        dicts = [dict(zip(self.arms, row, strict=True)) for row in values.tolist()]
        return dicts[0] if rows == 1 else dicts

    # --- arms ----------------------------------------------------------------------------
    def add_arm(self, arm: Any, binarizer: Callable[[Any, float], Any] | None = None) -> None:
        """A new, untrained arm (with ThompsonSampling, ``binarizer`` replaces the policy's)."""
        if binarizer is not None:
            if self._name != "ThompsonSampling":
                raise ValueError("binarizer: the learning policy must be ThompsonSampling to "
                                 "use a binarizer function")
            if not callable(binarizer):
                raise TypeError("binarizer: must be a callable binarize(arm, reward) -> "
                                "True/False or 0/1")
        _check_arm_label(arm, "arm")
        if arm in self.arms:
            raise ValueError(f"arm: {arm!r} is already in the list of arms")
        if binarizer is not None:
            self._binarizer = binarizer
        self.arms.append(arm)
        if self._native is not None:
            i = self._native.add_arm()
            if self._twin is not None:
                self._sync_twin()
                self._twin.add_arm()
            self._labels.append(arm)
            self._index[arm] = i
            self._lookup = None
            self._ids = np.append(self._ids, i)
            self._weights = np.append(self._weights, 0.0)

    def remove_arm(self, arm: Any) -> None:
        """Stop playing ``arm``; it is forgotten (adding it again starts it afresh)."""
        if not _hashable(arm) or arm not in self.arms:
            raise ValueError(f"arm: {arm!r} is not in the list of arms")
        if len(self.arms) == 1:
            raise ValueError(f"arm: cannot remove {arm!r}, the last arm")
        self.arms.remove(arm)
        self._trained.discard(arm)
        if self._native is not None:
            i = self._index.pop(arm)
            self._lookup = None
            self._native.remove_arm(i)
            if self._twin is not None:
                self._sync_twin()
                self._twin.remove_arm(i)
            self._ids = self._ids[self._ids != i]
            if self._name == "Popularity":
                self._normalise()

    def warm_start(self, arm_to_features: Any, distance_quantile: float) -> None:
        """Not implemented: raises NotImplementedError."""
        raise NotImplementedError(
            "warm_start: copying a trained arm's statistics to a similar cold arm is not "
            "implemented by promobandit.compat.mabwiser; use mabwiser.MAB for warm starts, or "
            "give a new arm prior data with partial_fit")


class _IntLookup:
    """Native ids of integer decisions when every arm label is an integer (else ``ok`` is
    False), built once per set of arms: MAB keeps it until an arm is added or removed."""

    # A dense table is used while the labels' range is at most this many slots per arm
    # (plus a constant), so its size stays proportional to the number of arms.
    DENSE_SLOTS_PER_ARM = 4
    DENSE_SLOTS_EXTRA = 64

    def __init__(self, index: dict[Any, int]) -> None:
        self.index, self.size = index, len(index)
        self.ok = bool(index) and all(type(a) is int or isinstance(a, np.integer)
                                      for a in index)
        self.codes = IntCodes(
            np.fromiter(index.keys(), dtype=np.int64, count=len(index)),
            np.fromiter(index.values(), dtype=np.int64, count=len(index)),
            dense_limit=self.DENSE_SLOTS_PER_ARM * len(index) + self.DENSE_SLOTS_EXTRA,
        ) if self.ok else None

    def fits(self, index: dict[Any, int]) -> bool:
        return self.index is index and self.size == len(index)

    def ids(self, dec: Any) -> np.ndarray | None:
        """The ids of an integer array of decisions (-1 where one is not an arm); None
        when the labels or the decisions are of another kind."""
        if self.codes is None or not isinstance(dec, np.ndarray) or \
                dec.dtype.kind not in "iu" or dec.ndim != 1:
            return None
        return self.codes.codes(dec)


def _hashable(a: Any) -> bool:
    try:
        hash(a)
    except TypeError:
        return False
    return True
