"""File-in, report-out entry points for the command line (wired by the CLI, which imports
this module; this module never imports the CLI).

A target policy is described by a small JSON file:

- ``{"policy": "fixed", "offer": 2, "fallback": 0}``: a fixed promotion (offer 2 for
  everyone; where it is not eligible, offer `fallback`, or uniform if null);
- ``{"policy": "uniform"}``: uniformly random over the eligible offers;
- ``{"policy": "stationary", "probabilities": [0.5, 0.25, 0.25]}``: one distribution;
- ``{"policy": "<a name in promobandit.POLICIES>", "n_arms": K, "n_features": d,
  "config": {...}, "seed": 0, "state": "state.npz"}``: a promobandit bandit policy
  (``n_features`` for contextual ones), optionally restored from an .npz holding the
  arrays of its ``state_dict()`` (path relative to the JSON file). Its
  ``action_probabilities`` gives the target distribution.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..policies import POLICIES, FixedOffer
from .abtest import analyse_experiment
from .log import read_decision_log
from .ope import DEFAULT_ESTIMATORS, EvaluationReport, evaluate
from .targets import StationaryPolicy, TargetPolicy, uniform_policy

__all__ = ["analyse_experiment", "evaluate_log_file", "load_target_policy"]


def load_target_policy(spec: str | Path | Mapping[str, Any], n_actions: int) -> TargetPolicy:
    """A target policy from a JSON file path or an already parsed mapping (see module doc).

    n_actions: K of the log the policy will be evaluated on (checked against the spec).
    Raises ValueError naming the bad field.
    """
    base = Path(".")
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.exists():
            raise ValueError(f"policy_config_path: no such file {str(path)!r}")
        try:
            spec = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"policy_config_path: not valid JSON ({exc})") from exc
        base = path.parent
    if not isinstance(spec, Mapping) or "policy" not in spec:
        raise ValueError("policy: the policy config must be a JSON object with a 'policy' key")
    kind = spec["policy"]
    if kind == "fixed":
        if "offer" not in spec:
            raise ValueError("offer: a fixed policy needs the offer index")
        fallback = spec.get("fallback", 0)
        return FixedOffer(n_actions, offer=int(spec["offer"]),
                          fallback=None if fallback is None else int(fallback))
    if kind == "uniform":
        return uniform_policy(n_actions)
    if kind == "stationary":
        probs = tuple(float(p) for p in spec.get("probabilities", ()))
        if len(probs) != n_actions:
            raise ValueError(f"probabilities: expected {n_actions} (one per offer), got "
                             f"{len(probs)}")
        return StationaryPolicy(probs)
    if kind not in POLICIES:
        raise ValueError(f"policy: unknown policy {kind!r}; expected 'fixed', 'uniform', "
                         f"'stationary' or one of {sorted(POLICIES)}")
    cls = POLICIES[kind]
    n_arms = int(spec.get("n_arms", n_actions))
    if n_arms != n_actions:
        raise ValueError(f"n_arms: the policy has {n_arms} arms, the log {n_actions} offers")
    config = spec.get("config", {})
    if not isinstance(config, Mapping):
        raise ValueError("config: expected a JSON object of settings")
    args: list[Any] = [n_arms]
    if cls.contextual:
        if "n_features" not in spec:
            raise ValueError(f"n_features: {kind} is contextual and needs n_features")
        args.append(int(spec["n_features"]))
    try:
        policy = cls(*args, seed=int(spec.get("seed", 0)), **dict(config))
    except TypeError as exc:
        raise ValueError(f"config: {exc}") from exc
    if "state" in spec:
        state_path = base / str(spec["state"])
        if not state_path.exists():
            raise ValueError(f"state: no such file {str(state_path)!r}")
        state = policy.state_dict()
        with np.load(state_path, allow_pickle=False) as npz:
            state["arrays"] = {name: npz[name] for name in npz.files}
        policy.load_state_dict(state)
    return policy


def evaluate_log_file(log_path: str | Path, policy_config_path: str | Path | Mapping[str, Any],
                      *, estimators: Any = DEFAULT_ESTIMATORS, n_actions: int | None = None,
                      missing_reward: str | float = "error", **kwargs: Any) -> EvaluationReport:
    """Evaluates the policy described by `policy_config_path` on the decision log at `log_path`.

    estimators, and any further keyword (level, n_bootstrap, seed, reward_model,
    clip_weight, switch_threshold, thresholds, chunk_rows): as in ``evaluate``.
    n_actions, missing_reward: as in ``read_decision_log``.
    """
    log = read_decision_log(log_path, n_actions=n_actions, missing_reward=missing_reward)
    policy = load_target_policy(policy_config_path, log.n_actions)
    return evaluate(log, policy, estimators, **kwargs)

