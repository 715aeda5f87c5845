"""promobandit.compat.obp: Open Bandit Pipeline's OffPolicyEvaluation on promobandit.

- On the Open Bandit Dataset sample, the values obp 0.5.7 gives (pinned below, with how
  they were obtained) are reproduced to 1e-9: point estimates and bootstrap intervals.
- On synthetic data, every estimator equals a NumPy transcription of obp's formulas
  (and obp itself, where it is installed).
- Bad input is refused with the field named as obp names it; the README snippet runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promobandit.compat import obp as pobp
from promobandit.compat.obp import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    OffPolicyEvaluation,
    SelfNormalizedInverseProbabilityWeighting,
    SwitchDoublyRobust,
)
from promobandit.datasets import obd
from promobandit.evaluate import OPEWarning

from .readme import readme_section, run_python_blocks

ROOT = Path(__file__).resolve().parents[1]


def _estimators(mod, lam: float = np.inf) -> list:
    return [mod.InverseProbabilityWeighting(), mod.SelfNormalizedInverseProbabilityWeighting(),
            mod.DirectMethod(), mod.DoublyRobust(), mod.SwitchDoublyRobust(lambda_=1.5),
            mod.InverseProbabilityWeighting(lambda_=1.5, estimator_name="ipw-1.5"),
            mod.DoublyRobust(lambda_=1.5, estimator_name="dr-1.5")]


# ---------------------------------------------------------------------------------------
# Pinned obp values on the OBD sample.
#
# How they were obtained: obp 0.5.7 (the PyPI sdist, installed with --no-deps
# --ignore-requires-python on Python 3.11, NumPy 2.4, pandas 3) ran
#   ds = OpenBanditDataset(behavior_policy="random", campaign="all")
#   bandit_feedback = ds.obtain_batch_bandit_feedback()
# (obp 0.5.7's pre_process calls DataFrame.drop(columns=..., axis=1), which pandas >= 2
# refuses, so it was overridden by the same item-context encoding without axis=; the OPE
# inputs action/position/reward/pscore are obp's own and equal load_obd's, row for row),
#   ope = OffPolicyEvaluation(bandit_feedback=bandit_feedback, ope_estimators=[
#       IPW(), SNIPW(), DM(), DR(), SwitchDR(lambda_=1.5),
#       IPW(lambda_=1.5, estimator_name="ipw-1.5"), DR(lambda_=1.5, estimator_name="dr-1.5")])
#   ope.estimate_policy_values(action_dist=_obd_action_dist(n, K, L),
#                              estimated_rewards_by_reg_model=_obd_q(n, K, L))
#   ope.estimate_intervals(..., n_bootstrap_samples=100, random_state=12345)
# with the fixed evaluation policy and reward model below (functions of action and
# position only; n = 10,000 rounds, K = 80 items, L = 3 positions; weights up to 1.85,
# 21% of them above 1.5). Values printed with repr(float(.)).
OBP_VALUES = {
    "ipw": 0.0035006553453693565,
    "snipw": 0.0035035870508256027,
    "dm": 0.006943920063805478,
    "dr": 0.0034473633467771493,
    "switch-dr": 0.004344713168222158,
    "ipw-1.5": 0.003297233002261492,
    "dr-1.5": 0.003564413168222157,
}
OBP_INTERVALS = {  # (mean, 95.0% CI (lower), 95.0% CI (upper))
    "ipw": (0.003488495736374646, 0.002344957136333856, 0.005194137115361356),
    "snipw": (0.00349141725848277, 0.0023469209753734085, 0.005198487066618836),
    "dm": (0.006943831295937581, 0.006942283101564184, 0.0069457024833283094),
    "dr": (0.0034510495412536936, 0.0023561031538254056, 0.005116952071206491),
    "switch-dr": (0.004267863458275527, 0.003646482644573773, 0.004950280868818844),
    "ipw-1.5": (0.0032764491918730676, 0.0022520718993825563, 0.004797827539124892),
    "dr-1.5": (0.0035577739582755273, 0.0025487082258625893, 0.0050860983339932175),
}
INTERVAL_KEYS = ("mean", "95.0% CI (lower)", "95.0% CI (upper)")


def _obd_action_dist(n: int, k: int, len_list: int) -> np.ndarray:
    a, pos = np.arange(k)[:, None], np.arange(len_list)[None, :]
    w = 1.0 + ((7 * a + 3 * pos) % 11)
    return np.broadcast_to(w / w.sum(axis=0, keepdims=True), (n, k, len_list)).copy()


def _obd_q(n: int, k: int, len_list: int) -> np.ndarray:
    a, pos = np.arange(k)[:, None], np.arange(len_list)[None, :]
    return np.broadcast_to(0.001 * (1 + ((5 * a + pos) % 13)), (n, k, len_list)).copy()


@pytest.mark.skipif(not obd.is_fetched(),
                    reason="the Open Bandit Dataset sample is not fetched: run "
                           "`promobandit datasets fetch obd` (CI does)")
def test_obd_sample_values_and_intervals_equal_obp_057() -> None:
    data = obd.load_obd("random", "all")
    n, k, len_list = len(data), data.n_actions, data.len_list
    assert (n, k, len_list) == (10_000, 80, 3)
    bandit_feedback = {"n_rounds": n, "n_actions": k, "action": data.actions,
                       "position": data.positions, "reward": data.rewards,
                       "pscore": data.pscore, "context": data.contexts,
                       "action_context": data.item_context.to_numpy()}
    dist, q = _obd_action_dist(n, k, len_list), _obd_q(n, k, len_list)
    ope = OffPolicyEvaluation(bandit_feedback=bandit_feedback,
                              ope_estimators=_estimators(pobp))
    values = ope.estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    assert list(values) == list(OBP_VALUES)
    for name, expected in OBP_VALUES.items():
        assert values[name] == pytest.approx(expected, rel=1e-9, abs=0), name
    intervals = ope.estimate_intervals(action_dist=dist, estimated_rewards_by_reg_model=q,
                                       n_bootstrap_samples=100, random_state=12345)
    for name, expected in OBP_INTERVALS.items():
        assert tuple(intervals[name]) == INTERVAL_KEYS
        got = tuple(intervals[name][key] for key in INTERVAL_KEYS)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0, err_msg=name)
    # The clipping and the switch do bite on this data (otherwise they test nothing).
    assert values["ipw-1.5"] < values["ipw"] and values["switch-dr"] != values["dr"]


# ---------------------------------------------------------------------------------------
# Synthetic data against obp's formulas, written out in NumPy (a test oracle that does not
# need obp installed; obp's own code is compared below where it is installed).

def _synthetic(seed: int = 0, n: int = 3000, k: int = 6, len_list: int = 3) -> tuple:
    rng = np.random.default_rng(seed)
    # A logging policy with per-round probabilities; pscore is the logged action's.
    pi_b = rng.dirichlet(np.full(k, 5.0), size=n)
    action = (pi_b.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(0, k - 1)
    fb = {"n_rounds": n, "n_actions": k, "action": action,
          "position": rng.integers(0, len_list, n), "reward": rng.binomial(1, 0.3, n),
          "pscore": pi_b[np.arange(n), action], "context": rng.normal(size=(n, 2))}
    dist = rng.dirichlet(np.ones(k), size=(n, len_list)).transpose(0, 2, 1).copy()
    q = rng.uniform(0.0, 1.0, (n, k, len_list))
    return fb, dist, q


def _obp_round_rewards(name: str, lam: float, fb: dict, dist: np.ndarray,
                       q: np.ndarray) -> np.ndarray:
    """obp 0.5.7's _estimate_round_rewards, transcribed."""
    n = fb["action"].shape[0]
    rows, a, pos = np.arange(n), fb["action"], fb["position"]
    r = fb["reward"].astype(float)
    iw = dist[rows, a, pos] / fb["pscore"]
    dm = np.average(q[rows, :, pos], weights=dist[rows, :, pos], axis=1)
    qf = q[rows, a, pos]
    return {"ipw": lambda: r * np.minimum(iw, lam),
            "snipw": lambda: r * iw / iw.mean(),
            "dm": lambda: dm,
            "dr": lambda: dm + np.minimum(iw, lam) * (r - qf),
            "switch-dr": lambda: dm + (iw <= lam).astype(int) * iw * (r - qf)}[name]()


def _obp_bootstrap(samples: np.ndarray, seed: int, b: int, alpha: float = 0.05) -> tuple:
    """obp 0.5.7's estimate_confidence_interval_by_bootstrap, transcribed (RandomState.choice)."""
    rs = np.random.RandomState(seed)
    boot = [np.mean(rs.choice(samples, size=samples.shape[0])) for _ in range(b)]
    return (np.mean(boot), np.percentile(boot, 100 * alpha / 2),
            np.percentile(boot, 100 * (1 - alpha / 2)))


@pytest.mark.parametrize("lam", [np.inf, 2.0, 0.0])
def test_every_estimator_equals_obp_formulas(lam: float) -> None:
    fb, dist, q = _synthetic()
    ests = [InverseProbabilityWeighting(lambda_=lam), SelfNormalizedInverseProbabilityWeighting(),
            DirectMethod(), DoublyRobust(lambda_=lam), SwitchDoublyRobust(lambda_=lam)]
    ope = OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=ests)
    if lam == 0.0:  # the native switch-dr says what a zero threshold does to the estimate
        with pytest.warns(OPEWarning, match="switch_threshold=0 changes the weights of 100%"):
            values = ope.estimate_policy_values(action_dist=dist,
                                                estimated_rewards_by_reg_model=q)
    else:
        values = ope.estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    intervals = ope.estimate_intervals(action_dist=dist, estimated_rewards_by_reg_model=q,
                                       alpha=0.1, n_bootstrap_samples=30, random_state=7)
    assert list(values) == ["ipw", "snipw", "dm", "dr", "switch-dr"]
    for name in values:
        terms = _obp_round_rewards(name, lam, fb, dist, q)
        assert values[name] == pytest.approx(terms.mean(), rel=1e-12, abs=1e-15), name
        want = _obp_bootstrap(terms, 7, 30, alpha=0.1)
        assert tuple(intervals[name]) == ("mean", "90.0% CI (lower)", "90.0% CI (upper)")
        np.testing.assert_allclose(tuple(intervals[name].values()), want, rtol=1e-12,
                                   err_msg=name)
    if lam == 2.0:  # the caps change the value, so the mapping onto clipped-* is exercised
        plain = InverseProbabilityWeighting().estimate_policy_value(
            reward=fb["reward"], action=fb["action"], action_dist=dist, pscore=fb["pscore"],
            position=fb["position"])
        assert values["ipw"] < plain


def test_estimators_alone_take_obp_keyword_arguments() -> None:
    fb, dist, q = _synthetic(seed=1, len_list=1)
    kw = {"reward": fb["reward"], "action": fb["action"], "pscore": fb["pscore"],
          "action_dist": dist}
    # len_list == 1: position may be omitted, as in obp.
    ipw = InverseProbabilityWeighting().estimate_policy_value(**kw)
    assert ipw == pytest.approx(
        _obp_round_rewards("ipw", np.inf, {**fb, "position": np.zeros(3000, int)}, dist,
                           q).mean(), rel=1e-12)
    dm = DirectMethod().estimate_policy_value(action_dist=dist,
                                              estimated_rewards_by_reg_model=q)
    assert dm == pytest.approx(np.einsum("ij,ij->i", dist[:, :, 0], q[:, :, 0]).mean(),
                               rel=1e-12)
    ci = DoublyRobust().estimate_interval(**kw, estimated_rewards_by_reg_model=q,
                                          n_bootstrap_samples=5, random_state=0)
    assert ci["95.0% CI (lower)"] <= ci["mean"] <= ci["95.0% CI (upper)"]


def test_summarize_returns_obp_frames_and_dict_model_inputs() -> None:
    fb, dist, q = _synthetic(seed=2)
    ope = OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=[
        InverseProbabilityWeighting(), DirectMethod(), DoublyRobust()])
    # A dict of models keyed by estimator_name, as obp accepts.
    q_dict = {"dm": q, "dr": q * 0.5}
    value_df, interval_df = ope.summarize_off_policy_estimates(
        action_dist=dist, estimated_rewards_by_reg_model=q_dict, random_state=3)
    assert list(value_df.index) == ["ipw", "dm", "dr"]
    assert list(value_df.columns) == ["estimated_policy_value",
                                      "relative_estimated_policy_value"]
    assert list(interval_df.columns) == list(INTERVAL_KEYS)
    np.testing.assert_allclose(value_df["relative_estimated_policy_value"],
                               value_df["estimated_policy_value"] / fb["reward"].mean())
    assert value_df.loc["dr", "estimated_policy_value"] == pytest.approx(
        _obp_round_rewards("dr", np.inf, fb, dist, q * 0.5).mean(), rel=1e-12)
    # obp's summary uses n_bootstrap_samples=100 and each estimator's own RandomState(3).
    want = _obp_bootstrap(_obp_round_rewards("ipw", np.inf, fb, dist, q), 3, 100)
    np.testing.assert_allclose(interval_df.loc["ipw"].to_numpy(dtype=float), want, rtol=1e-12)
    # No positive logged reward: the relative value is NaN, as in obp.
    zero = OffPolicyEvaluation(bandit_feedback={**fb, "reward": np.zeros(3000)},
                               ope_estimators=[InverseProbabilityWeighting()])
    with pytest.warns(OPEWarning, match="only 0 rows have a positive weight"):
        vdf, _ = zero.summarize_off_policy_estimates(action_dist=dist, n_bootstrap_samples=2)
    assert np.isnan(vdf.loc["ipw", "relative_estimated_policy_value"])


def test_obp_itself_agrees_where_installed() -> None:
    obp_ope = pytest.importorskip(
        "obp.ope", reason="obp is not installed (obp 0.5.7 declares Python < 3.11; it installs "
                          "with pip install --no-deps --ignore-requires-python obp==0.5.7)")
    fb, dist, q = _synthetic(seed=4)
    ours = OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=_estimators(pobp))
    theirs = obp_ope.OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=_estimators(obp_ope))
    v1 = ours.estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    v2 = theirs.estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    assert v1 == pytest.approx(v2, rel=1e-9)
    s1 = ours.summarize_off_policy_estimates(dist, q, random_state=5)
    s2 = theirs.summarize_off_policy_estimates(dist, q, random_state=5)
    for a, b in zip(s1, s2, strict=True):
        np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9)
        assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)


# ---------------------------------------------------------------------------------------
# Bad input: the error names obp's field.

def _bad(match: str, exc: type[Exception] = ValueError, **changes) -> None:
    fb, dist, q = _synthetic(seed=5, n=200)
    dist = changes.pop("action_dist", dist)
    q = changes.pop("estimated_rewards_by_reg_model", q)
    fb.update(changes)
    ope = OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=[
        InverseProbabilityWeighting(), DoublyRobust()])
    with pytest.raises(exc, match=match):
        ope.estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    with pytest.raises(exc, match=match):
        ope.estimate_intervals(action_dist=dist, estimated_rewards_by_reg_model=q,
                               n_bootstrap_samples=3)


def test_mismatched_lengths_name_the_fields() -> None:
    fb, _, _ = _synthetic(seed=5, n=200)
    _bad(r"`action.shape\[0\] == reward.shape\[0\]`", reward=fb["reward"][:-1])
    _bad(r"`action.shape\[0\] == reward.shape\[0\] == pscore.shape\[0\]`",
         pscore=fb["pscore"][:-1])
    _bad(r"`position.shape\[0\] == action_dist.shape\[0\]`", position=fb["position"][:-1])
    _bad(r"`action.shape\[0\] == action_dist.shape\[0\]`",
         action=fb["action"][:-1], reward=fb["reward"][:-1], pscore=fb["pscore"][:-1])
    _bad(r"`estimated_rewards_by_reg_model.shape == action_dist.shape`",
         estimated_rewards_by_reg_model=np.zeros((200, 6, 2)))


def test_pscore_outside_zero_one_is_refused() -> None:
    fb, _, _ = _synthetic(seed=5, n=200)
    for bad in (0.0, -0.1, 1.5, np.nan):
        p = fb["pscore"].copy()
        p[17] = bad
        _bad(r"`pscore` must be in \(0, 1\], but got .* at round 17", pscore=p)
    p = fb["pscore"].copy()
    p[0] = 1.0  # the upper end is allowed
    fb2, dist, _ = _synthetic(seed=5, n=200)
    InverseProbabilityWeighting().estimate_policy_value(
        reward=fb2["reward"], action=fb2["action"], action_dist=dist, pscore=p,
        position=fb2["position"])


def test_wrong_action_dist_and_bad_rewards_are_refused() -> None:
    fb, dist, _ = _synthetic(seed=5, n=200)
    _bad(r"`action_dist` must be 3D array, but got 2D array", action_dist=dist[:, :, 0])
    _bad(r"`action_dist` must be a probability distribution", action_dist=dist * 2)
    _bad(r"`position` elements must be smaller than `action_dist.shape\[2\]`",
         action_dist=dist[:, :, :1].copy(), estimated_rewards_by_reg_model=np.zeros((200, 6, 1)))
    _bad(r"`action` elements must be integers in the range of \[0, `action_dist.shape\[1\]`\)",
         action=np.where(np.arange(200) == 3, 6, fb["action"]))
    _bad(r"`action` elements must be integers", action=fb["action"].astype(float))
    r = fb["reward"].astype(float)
    r[9] = np.nan
    _bad(r"`reward` must be finite, but got nan at round 9", reward=r)
    q = np.zeros((200, 6, 3))
    q[1, 2, 0] = np.inf
    _bad(r"`estimated_rewards_by_reg_model` must be finite", estimated_rewards_by_reg_model=q)


def test_bandit_feedback_and_arguments_checked_like_obp() -> None:
    fb, dist, q = _synthetic(seed=6, n=100)
    for key in ("action", "position", "reward", "context"):
        broken = {k: v for k, v in fb.items() if k != key}
        # obp raises RuntimeError here; ours is that and a ValueError.
        with pytest.raises(RuntimeError, match=f"Missing key of {key} in 'bandit_feedback'"):
            OffPolicyEvaluation(bandit_feedback=broken,
                                ope_estimators=[InverseProbabilityWeighting()])
        with pytest.raises(ValueError, match=f"Missing key of {key}"):
            OffPolicyEvaluation(bandit_feedback=broken,
                                ope_estimators=[InverseProbabilityWeighting()])
    ope = OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=[DoublyRobust()])
    with pytest.raises(ValueError, match="`estimated_rewards_by_reg_model` must be given"):
        ope.estimate_policy_values(action_dist=dist)
    with pytest.raises(ValueError, match="`alpha` must be a float"):
        ope.estimate_intervals(action_dist=dist, estimated_rewards_by_reg_model=q, alpha=2.0)
    with pytest.raises(ValueError, match="`n_bootstrap_samples` must be an int"):
        ope.estimate_intervals(action_dist=dist, estimated_rewards_by_reg_model=q,
                               n_bootstrap_samples=0)
    with pytest.raises(ValueError, match="`random_state`"):
        ope.estimate_intervals(action_dist=dist, estimated_rewards_by_reg_model=q,
                               random_state="x")
    with pytest.raises(ValueError, match="`lambda_` must not be nan"):
        InverseProbabilityWeighting(lambda_=np.nan)
    with pytest.raises(ValueError, match="`lambda_` must be >= 0"):
        SwitchDoublyRobust(lambda_=-1.0)
    with pytest.raises(TypeError, match="`use_estimated_pscore` must be a bool"):
        DoublyRobust(use_estimated_pscore=1)
    no_pscore = OffPolicyEvaluation(bandit_feedback={k: v for k, v in fb.items() if k != "pscore"},
                                    ope_estimators=[InverseProbabilityWeighting()])
    with pytest.raises(ValueError, match="`pscore` must be given"):
        no_pscore.estimate_policy_values(action_dist=dist)


def test_what_is_not_covered_says_so() -> None:
    fb, dist, _ = _synthetic(seed=7, n=100)
    ope = OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=[InverseProbabilityWeighting()])
    for name in ("estimated_pscore", "estimated_importance_weights", "pi_b"):
        with pytest.raises(NotImplementedError, match=f"`{name}` is not supported"):
            ope.estimate_policy_values(action_dist=dist, **{name: np.ones(100)})
    with pytest.raises(NotImplementedError, match="use_estimated_pscore"):
        InverseProbabilityWeighting(use_estimated_pscore=True).estimate_policy_value(
            reward=fb["reward"], action=fb["action"], action_dist=dist, pscore=fb["pscore"],
            position=fb["position"])
    with pytest.raises(NotImplementedError, match="summarize_off_policy_estimates"):
        ope.visualize_off_policy_estimates(action_dist=dist)
    with pytest.raises(ValueError, match="`ope_estimators` must hold estimators"):
        OffPolicyEvaluation(bandit_feedback=fb, ope_estimators=[object()])


# ---------------------------------------------------------------------------------------
# The README's "Switching from Open Bandit Pipeline" snippet runs.

README_AFTER = '''\
import numpy as np
from promobandit.compat.obp import (
    OffPolicyEvaluation,
    InverseProbabilityWeighting as IPW,
    SelfNormalizedInverseProbabilityWeighting as SNIPW,
    DoublyRobust as DR,
)

# obp's bandit_feedback dict: 1,000 logged rounds, 4 actions shown at 2 positions
rng = np.random.default_rng(0)
n, n_actions, len_list = 1_000, 4, 2
bandit_feedback = {
    "n_rounds": n, "n_actions": n_actions,
    "action": rng.integers(0, n_actions, n), "position": rng.integers(0, len_list, n),
    "reward": rng.binomial(1, 0.2, n), "pscore": np.full(n, 1 / n_actions),
    "context": rng.normal(size=(n, 3)),
}
# the evaluation policy's action_dist, shape (n_rounds, n_actions, len_list)
action_dist = np.full((n, n_actions, len_list), 1 / n_actions)
action_dist[:, :, 0] = [0.4, 0.2, 0.2, 0.2]
q_hat = np.full((n, n_actions, len_list), 0.2)  # a reward model's predictions

ope = OffPolicyEvaluation(bandit_feedback=bandit_feedback,
                          ope_estimators=[IPW(), SNIPW(), DR()])
values = ope.estimate_policy_values(action_dist=action_dist,
                                    estimated_rewards_by_reg_model=q_hat)
policy_value_df, interval_df = ope.summarize_off_policy_estimates(
    action_dist=action_dist, estimated_rewards_by_reg_model=q_hat, random_state=12345)
print(policy_value_df)
'''


def _run(code: str) -> dict:
    ns: dict = {"__name__": "__main__"}
    exec(compile(code, "README", "exec"), ns)
    return ns


def test_readme_snippet_runs() -> None:
    ns = _run(README_AFTER)
    assert set(ns["values"]) == {"ipw", "snipw", "dr"}
    fb, dist = ns["bandit_feedback"], ns["action_dist"]
    w = dist[np.arange(1000), fb["action"], fb["position"]] / fb["pscore"]
    assert ns["values"]["ipw"] == pytest.approx(np.mean(w * fb["reward"]), rel=1e-12)
    assert list(ns["policy_value_df"].index) == ["ipw", "snipw", "dr"]


def _readme_section(text: str | None = None) -> str | None:
    return readme_section("Switching from Open Bandit Pipeline", text)


def test_readme_section_code_runs() -> None:
    section = _readme_section()
    assert section is not None, "README.md has no 'Switching from Open Bandit Pipeline' section"
    run_python_blocks(section)
    assert "promobandit.compat.obp" in section and "obp.ope" in section


def test_readme_section_is_found_past_comments_in_code() -> None:
    text = ("# Title\n## Switching from Open Bandit Pipeline\nwords\n```python\n"
            + README_AFTER + "```\nmore\n## Next\nnot this\n")
    section = _readme_section(text)
    assert section is not None and README_AFTER in section and "more" in section
    assert "not this" not in section
    assert _readme_section("# Title\nnothing\n") is None
