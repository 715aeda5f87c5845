"""Open Bandit Pipeline (obp 0.5.7) front end on promobandit's off-policy estimators.

Replace ``from obp.ope import ...`` with ``from promobandit.compat.obp import ...``; the
rest of an obp program stays as it is::

    ope = OffPolicyEvaluation(bandit_feedback=bandit_feedback,
                              ope_estimators=[InverseProbabilityWeighting(),
                                              SelfNormalizedInverseProbabilityWeighting()])
    ope.estimate_policy_values(action_dist=action_dist)   # {'ipw': ..., 'snipw': ...}

Inputs are obp's: ``bandit_feedback`` is the dict obp's datasets return (``action``,
``reward``, ``pscore``, ``position``, ``context``, ``action_context``, ``n_rounds``,
``n_actions``) and ``action_dist`` / ``estimated_rewards_by_reg_model`` have shape
(n_rounds, n_actions, len_list). Row i is evaluated at its logged position: the target
distribution ``action_dist[i, :, position[i]]`` and the model ``q[i, :, position[i]]``.

What computes what:

- Point estimates (``estimate_policy_value(s)``) are promobandit's
  (``promobandit.evaluate.evaluate``): IPW is ``ips`` (``clipped-ips`` when ``lambda_`` is
  finite), SNIPW ``snips``, DM ``dm``, DR ``dr`` (``clipped-dr``) and SwitchDR
  ``switch-dr`` with ``switch_threshold=lambda_``. They equal obp's to rounding.
- Intervals (``estimate_interval(s)``) reproduce obp's nonparametric bootstrap exactly:
  the same per-round terms, resampled with the same NumPy ``RandomState`` draws, so a given
  ``random_state`` gives obp's interval. (promobandit's own ``evaluate`` gives analytic
  and Poisson-bootstrap intervals instead.)
- Inputs are checked more strictly than obp does: ``pscore`` must lie in (0, 1], rewards
  must be finite, every length must match; the error names obp's field.
- The native estimators warn (``OPEWarning``) on poor overlap: tiny propensities, huge
  importance weights, a small effective sample size. obp does not.

Not covered (``NotImplementedError``): ``estimated_pscore`` / ``use_estimated_pscore``,
``estimated_importance_weights``, ``action_embed``, ``pi_b``, ``p_e_a`` and the plotting
and tuning methods.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._extras import require
from ..evaluate import evaluate

__all__ = [
    "BaseOffPolicyEstimator",
    "DirectMethod",
    "DoublyRobust",
    "InverseProbabilityWeighting",
    "OffPolicyEvaluation",
    "SelfNormalizedInverseProbabilityWeighting",
    "SwitchDoublyRobust",
]

_UNSUPPORTED = ("estimated_pscore", "estimated_importance_weights", "action_embed", "pi_b",
                "p_e_a")


class BanditFeedbackError(ValueError, RuntimeError):
    """A missing or malformed ``bandit_feedback`` key. A ValueError like every other input
    error here, and a RuntimeError like obp's own "Missing key" error."""


def _unsupported(kwargs: Mapping[str, Any]) -> None:
    for name in _UNSUPPORTED:
        if kwargs.get(name) is not None:
            raise NotImplementedError(
                f"`{name}` is not supported by promobandit.compat.obp (only logged `pscore` "
                "is); use obp for estimated propensities, importance weights or embeddings")


def _array(value: Any, name: str, ndim: int) -> np.ndarray:
    """obp's check_array, accepting any array-like (lists, pandas Series)."""
    if value is None:
        raise ValueError(f"`{name}` must be given")
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}D array, but got {arr.ndim}D array")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` must be numeric, but got dtype {arr.dtype}")
    return arr


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


@dataclasses.dataclass
class _Inputs:
    """One evaluation's rows at their logged position, validated."""

    action: np.ndarray  # (n,) int64
    reward: np.ndarray  # (n,) float64
    pscore: np.ndarray | None  # (n,) float64
    target: np.ndarray  # (n, K): action_dist[i, :, position[i]]
    q: np.ndarray | None  # (n, K): estimated_rewards_by_reg_model[i, :, position[i]]

    @property
    def weights(self) -> np.ndarray:
        assert self.pscore is not None
        return self.target[np.arange(self.action.shape[0]), self.action] / self.pscore

    @property
    def dm_terms(self) -> np.ndarray:
        assert self.q is not None
        return np.einsum("ij,ij->i", self.target, self.q)

    @property
    def q_factual(self) -> np.ndarray:
        assert self.q is not None
        return self.q[np.arange(self.action.shape[0]), self.action]


def _inputs(action_dist: Any, position: Any, *, action: Any = None, reward: Any = None,
            pscore: Any = None, estimated_rewards_by_reg_model: Any = None,
            need_logged: bool = True) -> _Inputs:
    """obp's check_ope_inputs, stricter: every length checked, pscore in (0, 1], finite
    rewards and predictions; ValueError naming obp's field."""
    dist = _array(action_dist, "action_dist", 3).astype(np.float64, copy=False)
    n, k, len_list = dist.shape
    if n == 0:
        raise ValueError("`action_dist` has no rounds")
    # obp's check, np.allclose(sums, 1) (rtol 1e-5, atol 1e-8), written as one reduction
    # (NaN or inf make a sum fail it too), plus non-negativity.
    if not np.abs(dist.sum(axis=1) - 1.0).max() <= _SUM_TOL or dist.min() < 0.0:
        raise ValueError("`action_dist` must be a probability distribution")
    if position is None:
        if len_list > 1:
            raise ValueError("`position` elements must be given when `action_dist.shape[2] > 1`")
        pos = np.zeros(n, dtype=np.int64)
    else:
        pos = _array(position, "position", 1)
        if pos.shape[0] != n:
            raise ValueError("Expected `position.shape[0] == action_dist.shape[0]`, but found "
                             f"{pos.shape[0]} != {n}")
        if pos.dtype.kind not in "iu" or pos.min() < 0:
            raise ValueError("`position` elements must be non-negative integers")
        if pos.max() >= len_list:
            raise ValueError("`position` elements must be smaller than `action_dist.shape[2]` "
                             f"({len_list}), got {int(pos.max())}")
        pos = pos.astype(np.int64, copy=False)
    rows = np.arange(n)
    q = None
    if estimated_rewards_by_reg_model is not None:
        q3 = _array(estimated_rewards_by_reg_model, "estimated_rewards_by_reg_model", 3)
        if q3.shape != dist.shape:
            raise ValueError("Expected `estimated_rewards_by_reg_model.shape == action_dist.shape`"
                             f", but found {q3.shape} != {dist.shape}")
        q = _at_position(q3.astype(np.float64, copy=False), rows, pos)
        if not np.isfinite(q.sum()) and not np.isfinite(q).all():
            raise ValueError("`estimated_rewards_by_reg_model` must be finite (found NaN or inf)")
    target = _at_position(dist, rows, pos)
    if not need_logged:
        return _Inputs(np.empty(0, np.int64), np.empty(0), None, target, q)
    a = _array(action, "action", 1)
    r = _array(reward, "reward", 1)
    if a.shape[0] != r.shape[0]:
        raise ValueError(f"Expected `action.shape[0] == reward.shape[0]`, but found "
                         f"{a.shape[0]} != {r.shape[0]}")
    if a.shape[0] != n:
        raise ValueError(f"Expected `action.shape[0] == action_dist.shape[0]`, but found "
                         f"{a.shape[0]} != {n}")
    if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= k:
        raise ValueError("`action` elements must be integers in the range of "
                         f"[0, `action_dist.shape[1]`) = [0, {k})")
    r = r.astype(np.float64, copy=False)
    if not np.isfinite(r).all():
        i = _first(~np.isfinite(r))
        raise ValueError(f"`reward` must be finite, but got {float(r[i])!r} at round {i}")
    p = None
    if pscore is not None:
        p = _array(pscore, "pscore", 1).astype(np.float64, copy=False)
        if p.shape[0] != n:
            raise ValueError("Expected `action.shape[0] == reward.shape[0] == pscore.shape[0]`"
                             f", but found {n} != {p.shape[0]}")
        bad = ~((p > 0.0) & (p <= 1.0))  # NaN too
        if bad.any():
            i = _first(bad)
            raise ValueError(f"`pscore` must be in (0, 1], but got {float(p[i])!r} at round {i}")
    return _Inputs(a.astype(np.int64, copy=False), r, p, target, q)


# obp's np.allclose(sums, 1): |s - 1| <= atol + rtol * 1.
_SUM_TOL = 1e-8 + 1e-5


def _at_position(arr: np.ndarray, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """arr[i, :, pos[i]] for every round: a view when there is one position (len_list 1)."""
    if arr.shape[2] == 1:
        return arr[:, :, 0]
    return arr[rows, :, pos]


# What an estimator asks of promobandit's evaluate: (estimator, its keyword arguments), or
# a value that needs no estimate (a weight cap of zero).
_Spec = tuple[str, tuple[tuple[str, float], ...]] | float


def _natives(inp: _Inputs, specs: list[_Spec]) -> list[float]:
    """promobandit's estimates of these rows, one evaluate call per set of keyword
    arguments: estimators that share them share the pass over the rows (and its checks)."""
    log: dict[str, Any] = {"actions": inp.action, "rewards": inp.reward,
                           "propensities": inp.pscore, "n_actions": inp.target.shape[1]}
    groups: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for spec in specs:
        if not isinstance(spec, float):
            groups.setdefault(spec[1], []).append(spec[0])
    values: dict[tuple[str, tuple[tuple[str, float], ...]], float] = {}
    for kw, names in groups.items():
        names = list(dict.fromkeys(names))
        # evaluate's overlap diagnostics (OPEWarning) reach the caller, under its filters.
        report = evaluate(log, inp.target, names, reward_predictions=inp.q, **dict(kw))
        for name in names:
            values[(name, kw)] = float(report[name].value)
    return [spec if isinstance(spec, float) else values[spec] for spec in specs]




def _random_state(random_state: Any) -> np.random.RandomState:
    """sklearn's check_random_state, as obp uses it (None: NumPy's global RandomState)."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return np.random.RandomState(int(random_state))
    raise ValueError(f"`random_state` must be None, an int or a numpy RandomState, got "
                     f"{random_state!r}")


def _check_interval_args(alpha: Any, n_bootstrap_samples: Any, random_state: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, float) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be a float in [0, 1], got {alpha!r}")
    if isinstance(n_bootstrap_samples, bool) or not isinstance(
            n_bootstrap_samples, (int, np.integer)) or n_bootstrap_samples < 1:
        raise ValueError(f"`n_bootstrap_samples` must be an int >= 1, got {n_bootstrap_samples!r}")
    _random_state(random_state)


_BOOT_BLOCK = 4_000_000


def _bootstrap(samples: np.ndarray, alpha: float, n_bootstrap_samples: int,
               random_state: Any) -> dict[str, float]:
    """obp's estimate_confidence_interval_by_bootstrap, draw for draw: replicate b averages
    ``samples[RandomState.randint(0, n, n)]``, exactly what ``RandomState.choice`` draws."""
    _check_interval_args(alpha, n_bootstrap_samples, random_state)
    rs = _random_state(random_state)
    n = samples.shape[0]
    boot = np.empty(int(n_bootstrap_samples))
    # Replicates in blocks of ~4M draws: RandomState.randint of shape (m, n) is the same
    # stream as m calls of size n, so the blocks change the speed, not the draws.
    step = max(1, _BOOT_BLOCK // max(n, 1))
    for lo in range(0, boot.shape[0], step):
        hi = min(boot.shape[0], lo + step)
        boot[lo:hi] = samples[rs.randint(0, n, size=(hi - lo, n))].mean(axis=1)
    level = 100 * (1.0 - alpha)
    return {"mean": float(np.mean(boot)),
            f"{level}% CI (lower)": float(np.percentile(boot, 100 * (alpha / 2))),
            f"{level}% CI (upper)": float(np.percentile(boot, 100 * (1.0 - alpha / 2)))}


def _check_lambda(lambda_: Any) -> float:
    if isinstance(lambda_, bool) or not isinstance(lambda_, (int, float, np.integer,
                                                             np.floating)):
        raise TypeError(f"`lambda_` must be an int or float, got {type(lambda_).__name__}")
    if lambda_ != lambda_:
        raise ValueError("`lambda_` must not be nan")
    if lambda_ < 0:
        raise ValueError(f"`lambda_` must be >= 0, got {lambda_!r}")
    return float(lambda_)


class BaseOffPolicyEstimator:
    """What OffPolicyEvaluation needs of an estimator (obp.ope.BaseOffPolicyEstimator)."""

    estimator_name: str
    needs_model: bool = False

    def _round_rewards(self, inp: _Inputs) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _spec(self, inp: _Inputs) -> _Spec:  # pragma: no cover - abstract
        """The promobandit estimator (and keyword arguments) that gives this value, or the
        value itself where no pass over the logged rows is needed."""
        raise NotImplementedError

    def _value(self, inp: _Inputs) -> float:
        return _natives(inp, [self._spec(inp)])[0]

    def _check_own(self, pscore: Any, estimated_rewards_by_reg_model: Any,
                   kwargs: Mapping[str, Any]) -> bool:
        """This estimator's own requirements; returns whether it needs the logged data."""
        _unsupported(kwargs)
        if getattr(self, "use_estimated_pscore", False):
            raise NotImplementedError("`use_estimated_pscore=True` is not supported by "
                                      "promobandit.compat.obp; pass the logged `pscore`")
        if self.needs_model and estimated_rewards_by_reg_model is None:
            raise ValueError("`estimated_rewards_by_reg_model` must be given for "
                             f"{type(self).__name__}")
        need_logged = not isinstance(self, DirectMethod)
        if need_logged and pscore is None:
            raise ValueError("`pscore` must be given")
        return need_logged

    def _prepare(self, reward: Any, action: Any, action_dist: Any, pscore: Any, position: Any,
                 estimated_rewards_by_reg_model: Any, kwargs: Mapping[str, Any]) -> _Inputs:
        need_logged = self._check_own(pscore, estimated_rewards_by_reg_model, kwargs)
        return _inputs(action_dist, position, action=action, reward=reward, pscore=pscore,
                       estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
                       need_logged=need_logged)

    def estimate_policy_value(self, reward: Any = None, action: Any = None,
                              action_dist: Any = None, pscore: Any = None, position: Any = None,
                              estimated_rewards_by_reg_model: Any = None,
                              **kwargs: Any) -> float:
        """The estimated value of the evaluation policy (obp's estimate_policy_value)."""
        inp = self._prepare(reward, action, action_dist, pscore, position,
                            estimated_rewards_by_reg_model, kwargs)
        return self._value(inp)

    def estimate_interval(self, reward: Any = None, action: Any = None, action_dist: Any = None,
                          pscore: Any = None, position: Any = None,
                          estimated_rewards_by_reg_model: Any = None, alpha: float = 0.05,
                          n_bootstrap_samples: int = 10000, random_state: Any = None,
                          **kwargs: Any) -> dict[str, float]:
        """obp's bootstrap interval: {'mean', '95.0% CI (lower)', '95.0% CI (upper)'}."""
        _check_interval_args(alpha, n_bootstrap_samples, random_state)
        inp = self._prepare(reward, action, action_dist, pscore, position,
                            estimated_rewards_by_reg_model, kwargs)
        return _bootstrap(self._round_rewards(inp), alpha, n_bootstrap_samples, random_state)


@dataclasses.dataclass
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    """IPW: mean(w r), w = pi_e(a_i | x_i) / pscore_i, capped at ``lambda_`` (promobandit's
    ``ips`` / ``clipped-ips``)."""

    lambda_: float = np.inf
    use_estimated_pscore: bool = False
    estimator_name: str = "ipw"

    def __post_init__(self) -> None:
        self.lambda_ = _check_lambda(self.lambda_)
        if not isinstance(self.use_estimated_pscore, bool):
            raise TypeError("`use_estimated_pscore` must be a bool, but "
                            f"{type(self.use_estimated_pscore)} is given")

    def _round_rewards(self, inp: _Inputs) -> np.ndarray:
        return inp.reward * np.minimum(inp.weights, self.lambda_)

    def _spec(self, inp: _Inputs) -> _Spec:
        if math.isinf(self.lambda_):
            return ("ips", ())
        if self.lambda_ == 0.0:  # every weight capped to zero
            return 0.0
        return ("clipped-ips", (("clip_weight", self.lambda_),))


@dataclasses.dataclass
class SelfNormalizedInverseProbabilityWeighting(InverseProbabilityWeighting):
    """SNIPW: sum(w r) / sum(w) (promobandit's ``snips``). As in obp, ``lambda_`` is not
    applied."""

    estimator_name: str = "snipw"

    def _round_rewards(self, inp: _Inputs) -> np.ndarray:
        w = inp.weights
        return inp.reward * w / w.mean()

    def _spec(self, inp: _Inputs) -> _Spec:
        return ("snips", ())


@dataclasses.dataclass
class DirectMethod(BaseOffPolicyEstimator):
    """DM: mean over rounds of sum_a pi_e(a | x_i) q(x_i, a) (promobandit's ``dm``)."""

    estimator_name: str = "dm"
    needs_model = True

    def _round_rewards(self, inp: _Inputs) -> np.ndarray:
        return inp.dm_terms

    def _spec(self, inp: _Inputs) -> _Spec:
        # DM needs no logged actions; the mean of sum_a pi q is promobandit's dm term.
        return float(inp.dm_terms.mean())

    def estimate_policy_value(self, action_dist: Any = None,  # type: ignore[override]
                              estimated_rewards_by_reg_model: Any = None, position: Any = None,
                              **kwargs: Any) -> float:
        """DM's value (obp's signature: no reward, action or pscore needed)."""
        return self._value(self._dm_inputs(action_dist, estimated_rewards_by_reg_model,
                                           position, kwargs))

    def estimate_interval(self, action_dist: Any = None,  # type: ignore[override]
                          estimated_rewards_by_reg_model: Any = None, position: Any = None,
                          alpha: float = 0.05, n_bootstrap_samples: int = 10000,
                          random_state: Any = None, **kwargs: Any) -> dict[str, float]:
        """obp's bootstrap interval of DM."""
        _check_interval_args(alpha, n_bootstrap_samples, random_state)
        inp = self._dm_inputs(action_dist, estimated_rewards_by_reg_model, position, kwargs)
        return _bootstrap(self._round_rewards(inp), alpha, n_bootstrap_samples, random_state)

    def _dm_inputs(self, action_dist: Any, estimated_rewards_by_reg_model: Any, position: Any,
                   kwargs: dict[str, Any]) -> _Inputs:
        # DM reads no logged data: obp's callers may still pass it, and it is ignored.
        for logged in ("reward", "action", "pscore", "context"):
            kwargs.pop(logged, None)
        return self._prepare(None, None, action_dist, None, position,
                             estimated_rewards_by_reg_model, kwargs)


@dataclasses.dataclass
class DoublyRobust(BaseOffPolicyEstimator):
    """DR: DM + mean(w (r - q(x_i, a_i))), w capped at ``lambda_`` (promobandit's ``dr`` /
    ``clipped-dr``)."""

    lambda_: float = np.inf
    use_estimated_pscore: bool = False
    estimator_name: str = "dr"
    needs_model = True

    def __post_init__(self) -> None:
        self.lambda_ = _check_lambda(self.lambda_)
        if not isinstance(self.use_estimated_pscore, bool):
            raise TypeError("`use_estimated_pscore` must be a bool, but "
                            f"{type(self.use_estimated_pscore)} is given")

    def _round_rewards(self, inp: _Inputs) -> np.ndarray:
        w = np.minimum(inp.weights, self.lambda_)
        return inp.dm_terms + w * (inp.reward - inp.q_factual)

    def _spec(self, inp: _Inputs) -> _Spec:
        if math.isinf(self.lambda_):
            return ("dr", ())
        if self.lambda_ == 0.0:  # every correction capped away: DM
            return ("dm", ())
        return ("clipped-dr", (("clip_weight", self.lambda_),))


@dataclasses.dataclass
class SwitchDoublyRobust(DoublyRobust):
    """Switch-DR: DM + mean(1[w <= lambda_] w (r - q)) (promobandit's ``switch-dr`` with
    ``switch_threshold=lambda_``)."""

    lambda_: float = np.inf
    estimator_name: str = "switch-dr"

    def _round_rewards(self, inp: _Inputs) -> np.ndarray:
        w = inp.weights
        return inp.dm_terms + np.where(w <= self.lambda_, w, 0.0) * (inp.reward - inp.q_factual)

    def _spec(self, inp: _Inputs) -> _Spec:
        if math.isinf(self.lambda_):  # no weight is switched off: DR
            return ("dr", ())
        return ("switch-dr", (("switch_threshold", self.lambda_),))


_FEEDBACK_KEYS = ("action", "position", "reward", "context")


@dataclasses.dataclass
class OffPolicyEvaluation:
    """obp's OffPolicyEvaluation: several estimators on one ``bandit_feedback``.

    bandit_feedback: obp's dict (``action``, ``reward``, ``pscore``, ``position``,
        ``context``, ...). ope_estimators: estimator instances from this module; their
        ``estimator_name`` keys the results.
    """

    bandit_feedback: Mapping[str, Any]
    ope_estimators: list[BaseOffPolicyEstimator]

    def __post_init__(self) -> None:
        if not isinstance(self.bandit_feedback, Mapping):
            raise BanditFeedbackError("`bandit_feedback` must be a dict of arrays (obp's "
                                      f"BanditFeedback), got {type(self.bandit_feedback)}")
        for key in _FEEDBACK_KEYS:
            if key not in self.bandit_feedback:
                raise BanditFeedbackError(f"Missing key of {key} in 'bandit_feedback'.")
        self.ope_estimators_: dict[str, BaseOffPolicyEstimator] = {}
        for est in self.ope_estimators:
            if not isinstance(est, BaseOffPolicyEstimator):
                raise ValueError(
                    f"`ope_estimators` must hold estimators from promobandit.compat.obp, got "
                    f"{type(est).__module__}.{type(est).__name__}")
            self.ope_estimators_[est.estimator_name] = est
        self.is_model_dependent = any(e.needs_model for e in self.ope_estimators_.values())

    def _model_for(self, name: str, estimated_rewards_by_reg_model: Any) -> Any:
        if isinstance(estimated_rewards_by_reg_model, Mapping):
            return estimated_rewards_by_reg_model.get(name)
        return estimated_rewards_by_reg_model

    def _check(self, action_dist: Any, estimated_rewards_by_reg_model: Any,
               kwargs: Mapping[str, Any]) -> None:
        _unsupported(kwargs)
        unknown = set(kwargs) - set(_UNSUPPORTED)
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)}")
        if self.is_model_dependent and estimated_rewards_by_reg_model is None:
            raise ValueError("When model dependent estimators such as DM or DR are used, "
                             "`estimated_rewards_by_reg_model` must be given")
        _array(action_dist, "action_dist", 3)

    def _all_inputs(self, action_dist: Any, estimated_rewards_by_reg_model: Any,
                    kwargs: Mapping[str, Any]) -> dict[str, _Inputs]:
        """Each estimator's validated rows; estimators sharing a reward model share them
        (the checks and the gathers at the logged positions run once per model)."""
        fb = self.bandit_feedback
        pscore = fb.get("pscore")
        shared: dict[tuple[int, bool], _Inputs] = {}
        models = {name: self._model_for(name, estimated_rewards_by_reg_model)
                  for name in self.ope_estimators_}
        needs = {name: est._check_own(pscore, models[name], kwargs)
                 for name, est in self.ope_estimators_.items()}
        logged_models = {id(models[name]) for name in needs if needs[name]}
        out = {}
        for name in self.ope_estimators_:
            q = models[name]
            # DM reads only the target and model rows, which the logged estimators' rows hold.
            need_logged = needs[name] or id(q) in logged_models
            key = (id(q), need_logged)
            if key not in shared:
                shared[key] = _inputs(action_dist, fb["position"], action=fb["action"],
                                      reward=fb["reward"], pscore=pscore,
                                      estimated_rewards_by_reg_model=q,
                                      need_logged=need_logged)
            out[name] = shared[key]
        return out

    def estimate_policy_values(self, action_dist: Any,
                               estimated_rewards_by_reg_model: Any = None,
                               **kwargs: Any) -> dict[str, float]:
        """{estimator_name: estimated policy value}.

        action_dist: (n_rounds, n_actions, len_list) evaluation-policy probabilities.
        estimated_rewards_by_reg_model: same shape, or a dict estimator_name -> array;
            required by DM / DR / SwitchDR.
        """
        self._check(action_dist, estimated_rewards_by_reg_model, kwargs)
        inputs = self._all_inputs(action_dist, estimated_rewards_by_reg_model, kwargs)
        # Estimators on the same rows share promobandit's passes over them.
        by_rows: dict[int, list[str]] = {}
        for name in self.ope_estimators_:
            by_rows.setdefault(id(inputs[name]), []).append(name)
        values: dict[str, float] = {}
        for names in by_rows.values():
            inp = inputs[names[0]]
            specs = [self.ope_estimators_[name]._spec(inp) for name in names]
            values.update(zip(names, _natives(inp, specs), strict=True))
        return {name: values[name] for name in self.ope_estimators_}

    def estimate_intervals(self, action_dist: Any, estimated_rewards_by_reg_model: Any = None,
                           alpha: float = 0.05, n_bootstrap_samples: int = 100,
                           random_state: Any = None,
                           **kwargs: Any) -> dict[str, dict[str, float]]:
        """{estimator_name: {'mean', '95.0% CI (lower)', '95.0% CI (upper)'}}: obp's bootstrap
        (each estimator draws from its own RandomState(random_state), as in obp)."""
        self._check(action_dist, estimated_rewards_by_reg_model, kwargs)
        _check_interval_args(alpha, n_bootstrap_samples, random_state)
        inputs = self._all_inputs(action_dist, estimated_rewards_by_reg_model, kwargs)
        return {name: _bootstrap(est._round_rewards(inputs[name]), alpha, n_bootstrap_samples,
                                 random_state)
                for name, est in self.ope_estimators_.items()}

    def summarize_off_policy_estimates(self, action_dist: Any,
                                       estimated_rewards_by_reg_model: Any = None,
                                       alpha: float = 0.05, n_bootstrap_samples: int = 100,
                                       random_state: Any = None,
                                       **kwargs: Any) -> tuple[Any, Any]:
        """(policy_value_df, policy_value_interval_df), as obp: the first indexed by
        estimator with columns estimated_policy_value and relative_estimated_policy_value
        (over the logged mean reward; NaN when that is <= 0), the second with the
        interval dict's keys as columns."""
        pd = require("pandas", "evaluate", "obp-style OPE summaries")
        values = self.estimate_policy_values(action_dist, estimated_rewards_by_reg_model,
                                             **kwargs)
        intervals = self.estimate_intervals(action_dist, estimated_rewards_by_reg_model,
                                            alpha=alpha, n_bootstrap_samples=n_bootstrap_samples,
                                            random_state=random_state, **kwargs)
        value_df = pd.DataFrame(values, index=["estimated_policy_value"]).T
        logged = float(np.mean(np.asarray(self.bandit_feedback["reward"], dtype=np.float64)))
        value_df["relative_estimated_policy_value"] = (
            value_df.estimated_policy_value / logged if logged > 0 else np.nan)
        return value_df, pd.DataFrame(intervals).T

    def visualize_off_policy_estimates(self, *args: Any, **kwargs: Any) -> None:
        """Not provided: plot the summary DataFrames instead."""
        raise NotImplementedError(
            "visualize_off_policy_estimates is not provided by promobandit.compat.obp; plot "
            "summarize_off_policy_estimates()'s DataFrames (e.g. DataFrame.plot) instead")
