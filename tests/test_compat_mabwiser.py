"""promobandit.compat.mabwiser beside MABWiser itself (the compat-test extra) on the same
inputs: deterministic policies equal to 1e-9, random ones equal in distribution (arm
frequencies within Monte Carlo error), and bad input refused by field with nothing learnt.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from promobandit.compat import mabwiser as pbm
from promobandit.compat.mabwiser import MAB, LearningPolicy, NeighborhoodPolicy

from .readme import readme_section, run_python_blocks

mw = pytest.importorskip(
    "mabwiser.mab", reason="MABWiser is not installed: pip install 'promobandit[compat-test]'")
pd = pytest.importorskip("pandas", reason="pandas is not installed (the evaluate extra)")

ARMS = ["a", "b", "c", "d"]
D = 5


def data(n: int, seed: int, arms: list = ARMS) -> tuple[list, np.ndarray, np.ndarray]:
    rs = np.random.default_rng(seed)
    dec = [arms[i] for i in rs.integers(0, len(arms), n)]
    return dec, rs.random(n), rs.normal(size=(n, D))


def both(policy: str, arms: list = ARMS, **kw) -> tuple:
    return (mw.MAB(list(arms), getattr(mw.LearningPolicy, policy)(**kw), seed=7),
            MAB(list(arms), getattr(LearningPolicy, policy)(**kw), seed=7))


def assert_same_expectations(m, c, contexts=None) -> None:
    a, b = m.predict_expectations(contexts), c.predict_expectations(contexts)
    a, b = ([a], [b]) if isinstance(a, dict) else (a, b)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)  # the same arms, in the same order
        for k in x:
            assert abs(float(x[k]) - y[k]) <= 1e-9, (k, x[k], y[k])
    assert m.predict(contexts) == c.predict(contexts)


DETERMINISTIC = [
    ("UCB1", {"alpha": 1.3}, False),
    ("UCB1", {}, False),
    ("EpsilonGreedy", {"epsilon": 0.0}, False),
    ("LinUCB", {"alpha": 0.7, "l2_lambda": 2.0}, True),
    ("LinUCB", {}, True),
    ("LinGreedy", {"epsilon": 0.0, "l2_lambda": 0.5}, True),
]


@pytest.mark.parametrize(("policy", "kw", "ctx"), DETERMINISTIC)
def test_deterministic_policies_equal_mabwiser(policy: str, kw: dict, ctx: bool) -> None:
    m, c = both(policy, **kw)
    dec, rew, x = data(600, 1)
    cx = (lambda s: x[s]) if ctx else (lambda s: None)
    test_x = np.random.default_rng(2).normal(size=(40, D)) if ctx else None
    for mab in (m, c):
        mab.fit(dec[:300], rew[:300], cx(slice(0, 300)))
    assert_same_expectations(m, c, test_x)
    assert m.cold_arms == c.cold_arms and m.arms == c.arms
    # partial_fit accumulates; in several forms of input (list, array, Series).
    m.partial_fit(dec[300:450], rew[300:450], cx(slice(300, 450)))
    c.partial_fit(np.array(dec[300:450]), pd.Series(rew[300:450]),
                  None if not ctx else pd.DataFrame(x[300:450]))
    assert_same_expectations(m, c, test_x)
    # An added arm starts cold (expectation 0 for UCB/greedy, the prior for ridge).
    for mab in (m, c):
        mab.add_arm("e")
    assert_same_expectations(m, c, test_x)
    assert m.cold_arms == c.cold_arms == ["e"]
    ext = ["e" if i % 7 == 0 else a for i, a in enumerate(dec[450:])]
    for mab in (m, c):
        mab.partial_fit(ext, rew[450:], cx(slice(450, 600)))
        mab.remove_arm("b")
    assert_same_expectations(m, c, test_x)
    assert m.arms == c.arms and m.cold_arms == c.cold_arms
    # One context as a row, and a refit that forgets everything before it.
    if ctx:
        assert_same_expectations(m, c, x[:1])
    refit = ["c" if a == "b" else a for a in dec[:50]]
    for mab in (m, c):
        mab.fit(refit, rew[:50], cx(slice(0, 50)))
    assert_same_expectations(m, c, test_x)
    assert m.cold_arms == c.cold_arms


def test_ties_and_untrained_arms_as_mabwiser() -> None:
    for policy in ("UCB1", "EpsilonGreedy"):
        m, c = both(policy, **({"epsilon": 0.0} if policy == "EpsilonGreedy" else {}))
        for mab in (m, c):
            mab.fit(["c", "c"], [0.0, 0.0])  # every arm at 0 or only the untrained: ties
        assert_same_expectations(m, c)
        # UCB1: c has a bound above 0, the untrained arms stay at 0; greedy: all at 0.
        assert c.predict() == m.predict() == ("c" if policy == "UCB1" else "a")
    m, c = both("LinUCB")
    for mab in (m, c):
        mab.fit(["b"], [0.0], [[0.0] * D])
    assert_same_expectations(m, c, np.zeros((3, D)))


@pytest.mark.parametrize("policy", ["Popularity", "Softmax"])
def test_dirichlet_weights_equal_mabwiser(policy: str) -> None:
    # Their predictions are random (an argmax of a Dirichlet draw over these weights);
    # the weights are deterministic and equal MABWiser's arm_to_expectation.
    m, c = both(policy, **({"tau": 0.3} if policy == "Softmax" else {}))
    dec, rew, _ = data(400, 3)

    def same() -> None:
        want = np.array([m._imp.arm_to_expectation[a] for a in m.arms], dtype=float)
        np.testing.assert_allclose(c._dirichlet_weights(), want, rtol=0, atol=1e-9)

    for mab in (m, c):
        mab.fit(dec[:200], rew[:200])
    same()
    for mab in (m, c):
        mab.partial_fit(dec[200:300], rew[200:300])
        mab.add_arm("e")
    same()
    for mab in (m, c):
        mab.partial_fit([*dec[300:], "e"], np.append(rew[300:], 0.9))
        mab.remove_arm("a")
    same()


def frequencies(labels: list, arms: list) -> np.ndarray:
    return np.array([labels.count(a) for a in arms], dtype=float) / len(labels)


RANDOM = [
    ("ThompsonSampling", {}, False),
    ("EpsilonGreedy", {"epsilon": 0.3}, False),
    ("Softmax", {"tau": 0.2}, False),
    ("Popularity", {}, False),
    ("Random", {}, False),
    ("LinTS", {"alpha": 0.5}, True),
    ("LinGreedy", {"epsilon": 0.4}, True),
]


@pytest.mark.parametrize(("policy", "kw", "ctx"), RANDOM)
def test_random_policies_match_mabwiser_in_distribution(policy: str, kw: dict,
                                                         ctx: bool) -> None:
    m, c = both(policy, **kw)
    rs = np.random.default_rng(4)
    n_fit = 60
    dec = [ARMS[i] for i in rs.integers(0, 4, n_fit)]
    p = {"a": 0.2, "b": 0.5, "c": 0.55, "d": 0.3}
    rew = [float(rs.random() < p[a]) for a in dec]
    x = rs.normal(size=(n_fit, D))
    for mab in (m, c):
        mab.fit(dec, rew, x if ctx else None)
    assert m.cold_arms == c.cold_arms  # Random never marks an arm trained, as MABWiser
    n = 4000
    rows = np.repeat(rs.normal(size=(1, D)), n, axis=0) if ctx else np.zeros((n, 1))
    fm = frequencies(m.predict(rows), ARMS)
    fc = frequencies(c.predict(rows), ARMS)
    pooled = (fm + fc) / 2
    se = np.sqrt(2 * pooled * (1 - pooled) / n)
    assert np.all(np.abs(fm - fc) <= 5 * se + 1e-12), (fm, fc)
    # The mean of predict_expectations (a draw per arm for these policies) agrees too.
    em = pd.DataFrame(m.predict_expectations(rows[:2000])).mean()
    ec = pd.DataFrame(c.predict_expectations(rows[:2000])).mean()
    assert list(em.index) == list(ec.index) == ARMS
    assert np.all(np.abs(em.to_numpy() - ec.to_numpy()) < 0.05), (em, ec)


def test_thompson_online_reward_matches_mabwiser() -> None:
    # The same online program (predict one, partial_fit it) on both: mean reward over
    # several seeds within Monte Carlo error.
    probs = np.array([0.1, 0.2, 0.6, 0.3])

    def run(lib, seed: int) -> float:
        rs = np.random.default_rng(seed)
        mab = lib.MAB(list(range(4)), lib.LearningPolicy.ThompsonSampling(), seed=seed)
        mab.fit([0, 1, 2, 3], [0, 0, 0, 0])
        total = 0
        for _ in range(300):
            a = mab.predict()
            r = int(rs.random() < probs[a])
            mab.partial_fit([a], [r])
            total += r
        return total / 300

    a = np.array([run(mw, s) for s in range(8)])
    b = np.array([run(pbm, s) for s in range(8)])
    se = math.hypot(a.std(ddof=1), b.std(ddof=1)) / math.sqrt(8)
    assert abs(a.mean() - b.mean()) <= 4 * se + 0.01, (a.mean(), b.mean())
    assert b.mean() > 0.45  # it learnt: uniform play earns 0.3


def test_thompson_batch_twin_learns_every_row_the_single_kernel_learns() -> None:
    # Batched predict decides on a matching twin (see the module); it must hold exactly the
    # statistics of the kernel that decides one row at a time, through every path.
    mab = pbm.MAB(["a", "b", "c"], pbm.LearningPolicy.ThompsonSampling(), seed=3)
    mab.fit(["a", "b", "a"], [1, 0, 1])
    mab.partial_fit(["c"], [1])  # the one-row path
    mab.partial_fit(np.array(["b", "c", "c"]), np.array([1, 0, 1]))  # the batch path
    mab.add_arm("d")
    mab.partial_fit(["d", "d"], [1, 1])
    mab.remove_arm("a")
    mab.partial_fit(["c"], [0])  # held for the twin until it is next read
    mab._sync_twin()
    for name in ("counts", "reward_sums"):
        assert np.array_equal(getattr(mab._twin, name), getattr(mab._native, name)), name
    # and its batch draws only the arms still played, in distribution as the win chances
    picks = mab.predict(np.zeros((3000, 1)))
    assert set(picks) <= {"b", "c", "d"}
    probs = mab._twin.action_probabilities(n=1)[0][mab._ids]
    freq = np.array([picks.count(a) for a in ("b", "c", "d")]) / 3000
    assert np.all(np.abs(freq - probs) <= 5 * np.sqrt(probs * (1 - probs) / 3000) + 1e-9)


def test_labels_and_input_forms() -> None:
    # Integer labels, array/Series decisions, integer and boolean rewards, float32
    # and DataFrame contexts all give what float64 arrays give.
    rs = np.random.default_rng(5)
    arms = [10, 20, 30]
    dec = rs.choice(arms, 200)
    rew = rs.integers(0, 2, 200)
    x32 = rs.normal(size=(200, 3)).astype(np.float32)
    ref = MAB(list(arms), LearningPolicy.LinUCB(alpha=0.5))
    ref.fit(dec.tolist(), rew.astype(float).tolist(), x32.astype(np.float64))
    other = MAB(list(arms), LearningPolicy.LinUCB(alpha=0.5))
    other.fit(pd.Series(dec), rew.astype(bool), pd.DataFrame(x32, columns=list("xyz")))
    q = rs.normal(size=(5, 3))
    assert ref.predict_expectations(q) == other.predict_expectations(pd.DataFrame(q))
    assert ref.predict(q) == other.predict(pd.DataFrame(q.astype(np.float32)).astype(float))
    assert set(ref.predict(q)) <= set(arms)
    assert ref.is_contextual and not MAB([1], LearningPolicy.UCB1()).is_contextual
    # Non-contextual: one decision per context row, one label without contexts.
    t = MAB(["x", "y"], LearningPolicy.ThompsonSampling(binarizer=lambda a, r: r > 5))
    t.partial_fit(pd.Series(["x", "y", "y"]), [10, 1, 2])  # partial_fit first: a fit
    assert t.predict() in ("x", "y")
    assert len(t.predict(np.zeros((3, 2)))) == 3
    assert t.cold_arms == []


def test_mabwisers_own_learning_policy_objects_are_accepted() -> None:
    m = mw.MAB(["a", "b"], mw.LearningPolicy.UCB1(alpha=0.5))
    c = MAB(["a", "b"], mw.LearningPolicy.UCB1(alpha=0.5))
    for mab in (m, c):
        mab.fit(["a", "b", "a"], [1.0, 0.0, 0.5])
    assert_same_expectations(m, c)


def fitted(policy: str = "LinUCB") -> MAB:
    c = MAB(list(ARMS), getattr(LearningPolicy, policy)())
    dec, rew, x = data(100, 6)
    rew = np.round(rew)  # binary, for Thompson sampling
    c.fit(dec, rew, x if policy.startswith("Lin") else None)
    return c


def snapshot(c: MAB) -> tuple:
    q = np.random.default_rng(9).normal(size=(3, D))
    return (c.predict_expectations(q if c.is_contextual else None), list(c.cold_arms),
            list(c.arms))


@pytest.mark.parametrize(("call", "exc", "field"), [
    (lambda c: c.partial_fit(["a", "zz"], [1.0, 0.0], np.zeros((2, D))), ValueError,
     "decisions: 'zz' (row 1) is not one of the arms"),
    (lambda c: c.partial_fit(["a", "b"], [1.0, 0.0], np.zeros((2, D + 1))), ValueError,
     "contexts: expected 5 columns"),
    (lambda c: c.partial_fit(["a", "b"], [1.0, float("nan")], np.zeros((2, D))), TypeError,
     "rewards: cannot contain None, NaN or infinity (row 1"),
    (lambda c: c.partial_fit(["a", "b"], [1.0, None], np.zeros((2, D))), TypeError,
     "rewards:"),
    (lambda c: c.partial_fit(["a", "b"], [1.0], np.zeros((2, D))), ValueError,
     "decisions and rewards: should be the same length"),
    (lambda c: c.partial_fit(["a", "b"], [1.0, 0.0], np.zeros((3, D))), ValueError,
     "decisions and contexts: should be the same length"),
    (lambda c: c.partial_fit(["a"], [1.0]), TypeError, "contexts: required"),
    (lambda c: c.partial_fit(["a"], [1.0], [[np.inf] * D]), ValueError,
     "contexts: cannot contain NaN or infinity (row 0, column 0"),
    (lambda c: c.partial_fit("a", [1.0], np.zeros((1, D))), TypeError, "decisions: expected"),
    (lambda c: c.fit(["a", "q"], [1.0, 0.0], np.zeros((2, D))), ValueError,
     "decisions: 'q' (row 1)"),
    (lambda c: c.predict(np.zeros((2, D - 1))), ValueError, "contexts: expected 5 columns"),
    (lambda c: c.predict(), ValueError, "contexts: required"),
    (lambda c: c.add_arm("a"), ValueError, "arm: 'a' is already in the list of arms"),
    (lambda c: c.remove_arm("zz"), ValueError, "arm: 'zz' is not in the list of arms"),
    (lambda c: c.warm_start({a: [1.0] for a in ARMS}, 0.5), NotImplementedError,
     "warm_start: "),
])
def test_bad_input_names_the_field_and_learns_nothing(call, exc, field: str) -> None:
    c = fitted()
    before = snapshot(c)
    with pytest.raises(exc) as info:
        call(c)
    assert str(info.value).startswith(field.split(" (")[0]), str(info.value)
    assert field in str(info.value), str(info.value)
    assert snapshot(c) == before


@pytest.mark.parametrize("policy", ["ThompsonSampling", "EpsilonGreedy", "UCB1"])
def test_bad_input_to_the_one_row_path_learns_nothing(policy: str) -> None:
    c = fitted(policy)
    c._rng = np.random.default_rng(0)
    before = (c._native.counts.tolist(), c._native.reward_sums.tolist())
    for dec, rew in ((["zz"], [1.0]), (["a"], [float("nan")]), (["a"], ["x"]), ([["a"]], [1]),
                     (["a"], [0.5] if policy == "ThompsonSampling" else [None])):
        with pytest.raises((ValueError, TypeError)) as info:
            c.partial_fit(dec, rew)
        assert str(info.value).split(":")[0] in ("decisions", "rewards"), str(info.value)
    assert (c._native.counts.tolist(), c._native.reward_sums.tolist()) == before


def test_unsupported_things_raise_not_implemented_naming_the_alternative() -> None:
    with pytest.raises(NotImplementedError, match=r"neighborhood_policy: KNearest .* mabwiser\.MAB"):
        MAB(["a", "b"], LearningPolicy.LinUCB(), NeighborhoodPolicy.KNearest(k=3))
    with pytest.raises(NotImplementedError, match="neighborhood_policy: Clusters"):
        MAB(["a", "b"], LearningPolicy.EpsilonGreedy(), mw.NeighborhoodPolicy.Clusters())
    with pytest.raises(NotImplementedError, match=r"scale=True .* standardise the contexts"):
        MAB(["a", "b"], LearningPolicy.LinUCB(scale=True))
    with pytest.raises(NotImplementedError, match=r"l2_lambda=0 .* small positive l2_lambda"):
        MAB(["a", "b"], LearningPolicy.LinUCB(l2_lambda=0))
    with pytest.raises(ValueError, match="learning_policy: l2_lambda must be finite and greater"):
        MAB(["a", "b"], LearningPolicy.LinTS(l2_lambda=0.0))  # as MABWiser: LinTS needs > 0

    class ThompsonWithDecay(NamedTupleLike):
        pass

    with pytest.raises(NotImplementedError, match=r"learning_policy: ThompsonWithDecay is not "
                                                  r"implemented .* LearningPolicy\.UCB1"):
        MAB(["a", "b"], ThompsonWithDecay())
    with pytest.raises(ValueError, match="learning_policy: epsilon must be between 0 and 1"):
        MAB(["a"], LearningPolicy.EpsilonGreedy(epsilon=1.5))
    with pytest.raises(ValueError, match="arms: the list of arms cannot contain duplicate"):
        MAB(["a", "a"], LearningPolicy.UCB1())
    with pytest.raises(RuntimeError, match="predict: call fit before prediction"):
        MAB(["a"], LearningPolicy.UCB1()).predict()
    with pytest.raises(ValueError, match="rewards: Thompson Sampling requires binary rewards"):
        MAB(["a"], LearningPolicy.ThompsonSampling()).fit(["a"], [0.5])
    with pytest.raises(ValueError, match="binarizer: the learning policy must be Thompson"):
        MAB(["a"], LearningPolicy.UCB1()).add_arm("b", binarizer=lambda a, r: r > 0)


class NamedTupleLike(tuple):
    def _asdict(self) -> dict:
        return {}


def test_linucb_online_program_makes_mabwisers_decisions() -> None:
    # Deterministic: the same online program (predict one, partial_fit it, an arm added
    # halfway) makes exactly MABWiser's decisions, l2_lambda != 1 included.
    rs = np.random.default_rng(11)
    xs = rs.normal(size=(240, D))
    theta = rs.normal(size=(5, D))

    def run(lib) -> list:
        mab = lib.MAB([0, 1, 2, 3], lib.LearningPolicy.LinUCB(alpha=0.8, l2_lambda=2.5))
        mab.fit([0, 1, 2, 3], [0.0, 0.1, 0.2, 0.3], xs[:4])
        chosen = []
        for t in range(4, 240):
            if t == 120:
                mab.add_arm(4)
            a = mab.predict(xs[t:t + 1])
            mab.partial_fit([a], [float(xs[t] @ theta[a])], xs[t:t + 1])
            chosen.append(a)
        return chosen

    want, got = run(mw), run(pbm)
    assert got == want
    assert 4 in got  # the added arm was explored


def test_bad_one_row_updates_of_a_linear_policy_learn_nothing() -> None:
    c = fitted("LinUCB")
    before = c._native.state_dict()["arrays"]
    ok = np.ones((1, D))
    for dec, rew, ctx, field in (
            (["zz"], [1.0], ok, "decisions"), (["a"], [float("inf")], ok, "rewards"),
            (["a"], [1.0], np.full((1, D), np.nan), "contexts"),
            (["a"], [1.0], np.ones((1, D + 2)), "contexts"),
            (["a"], [1.0], np.ones((2, D)), "decisions and contexts")):
        with pytest.raises((ValueError, TypeError)) as info:
            c.partial_fit(dec, rew, ctx)
        assert str(info.value).startswith(field + ":"), str(info.value)
    after = c._native.state_dict()["arrays"]
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_tuple_and_integer_labels() -> None:
    # Tuples are labels too (not rows); integer decisions take the sorted-search path,
    # and an integer that is not an arm is refused by row.
    c = MAB([(1, "x"), (2, "y")], LearningPolicy.EpsilonGreedy(epsilon=0.0))
    c.fit([(1, "x"), (2, "y"), (2, "y")], [0.0, 1.0, 1.0])
    assert c.predict() == (2, "y")
    assert c.predict(np.zeros((3, 1))) == [(2, "y")] * 3
    i = MAB([5, 3, 9], LearningPolicy.UCB1())
    i.fit(np.array([9, 3, 3, 5]), np.array([1, 0, 1, 0]))
    m = mw.MAB([5, 3, 9], mw.LearningPolicy.UCB1())
    m.fit(np.array([9, 3, 3, 5]), np.array([1, 0, 1, 0]))
    assert_same_expectations(m, i)
    before = i.predict_expectations()
    with pytest.raises(ValueError, match=r"decisions: 4 \(row 2\) is not one of the arms"):
        i.partial_fit(np.array([9, 3, 4]), np.array([1, 0, 1]))
    assert i.predict_expectations() == before


def test_readme_switching_section_runs() -> None:
    section = readme_section("Switching from MABWiser")
    assert section is not None, "README.md has no 'Switching from MABWiser' section"
    ns = run_python_blocks(section)
    assert ns["offer"] in ns["mab"].arms
    assert "from mabwiser.mab import MAB" in section  # the before line is shown
