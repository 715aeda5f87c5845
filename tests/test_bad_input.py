"""Bad input: a clear ValueError/IndexError naming the field, and no state change."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from promobandit import _backends
from promobandit.policies import UCB1, BetaTS, EpsilonGreedy, GaussianTS, LinTS, LinUCB, Policy

K, D = 4, 3


def trained(kind: str, backend: str) -> Policy:
    rs = np.random.default_rng(0)
    if kind == "lin":
        p: Policy = LinUCB(K, D, seed=1, backend=backend)
        xs = rs.normal(size=(50, D))
        p.update_batch(rs.integers(0, K, 50), rs.normal(size=50), xs)
        p.select(xs[0])
    else:
        p = BetaTS(K, seed=1, backend=backend, propensity_draws=16)
        p.update_batch(rs.integers(0, K, 50), (rs.random(50) < 0.3).astype(float))
        p.select()
    return p


def snapshot(p: Policy) -> dict:
    s = p.state_dict()
    s["arrays"] = {k: v.copy() for k, v in s["arrays"].items()}
    return s


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "arrays":
            for name in a[key]:
                np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=name)
        else:
            assert a[key] == b[key], key


x_ok = np.zeros(D)
nan = float("nan")


def other_policy_state() -> dict:
    return UCB1(K).state_dict()


def state_with(**changes) -> dict:
    s = BetaTS(K, propensity_draws=16).state_dict()
    s.update(changes)
    return s


def bad_arrays_state(name: str, value) -> dict:
    s = BetaTS(K, propensity_draws=16).state_dict()
    s["arrays"][name] = value
    return s


# (policy kind, call, exception, text the message must contain)
CASES = [
    ("mab", lambda p: p.update(0, nan), ValueError, "reward"),
    ("mab", lambda p: p.update(0, float("inf")), ValueError, "reward"),
    ("mab", lambda p: p.update(0, 1.5), ValueError, "reward"),  # Beta TS takes [0, 1]
    ("mab", lambda p: p.update(0, "1"), ValueError, "reward"),
    ("mab", lambda p: p.update(K, 1.0), IndexError, "arm"),
    ("mab", lambda p: p.update(-1, 1.0), IndexError, "arm"),
    ("mab", lambda p: p.update(1.5, 1.0), ValueError, "arm"),
    ("mab", lambda p: p.update(0, 1.0, weight=-1.0), ValueError, "weight"),
    ("mab", lambda p: p.update(0, 1.0, weight=nan), ValueError, "weight"),
    ("mab", lambda p: p.select(mask=np.zeros(K, bool)), ValueError, "mask"),
    ("mab", lambda p: p.select(mask=np.ones(K + 1, bool)), ValueError, "mask"),
    ("mab", lambda p: p.select(mask=np.ones(K, np.int64)), ValueError, "mask"),
    ("mab", lambda p: p.select_batch(masks=np.array([[True] * K, [False] * K])), ValueError,
     "masks"),
    ("mab", lambda p: p.select_batch(), ValueError, "n"),
    ("mab", lambda p: p.update_batch(np.array([0, 1, 2]), np.array([1.0, nan, 0.0])),
     ValueError, "rewards"),
    ("mab", lambda p: p.update_batch(np.array([0, 1, 9]), np.array([1.0, 0.0, 0.0])),
     IndexError, "arms"),
    ("mab", lambda p: p.update_batch(np.array([0, 1]), np.array([1.0, 0.0, 1.0])), ValueError,
     "rewards"),
    ("mab", lambda p: p.update_batch(np.array([0.0, 1.0]), np.array([1.0, 0.0])), ValueError,
     "arms"),
    ("mab", lambda p: p.update_batch(np.array([0, 1]), np.array([1.0, 0.0]),
                                     weights=np.array([1.0, -2.0])), ValueError, "weights"),
    ("mab", lambda p: p.load_state_dict(other_policy_state()), ValueError, "policy"),
    ("mab", lambda p: p.load_state_dict(state_with(format_version=99)), ValueError,
     "format_version"),
    ("mab", lambda p: p.load_state_dict(state_with(format="pickle")), ValueError, "format"),
    ("mab", lambda p: p.load_state_dict(state_with(config={"decay": 0.5})), ValueError, "config"),
    ("mab", lambda p: p.load_state_dict(bad_arrays_state("stats", np.zeros((K, 2)))), ValueError,
     "stats"),
    ("mab", lambda p: p.load_state_dict(bad_arrays_state("stats", np.full((K, 3), nan))),
     ValueError, "stats"),
    ("mab", lambda p: p.load_state_dict("not a dict"), ValueError, "state_dict"),
    ("mab", lambda p: p.remove_arm(K + 3), IndexError, "arm"),
    ("mab", lambda p: p.merge(UCB1(K)), ValueError, "other"),
    ("mab", lambda p: p.merge(BetaTS(K, alpha0=2.0, propensity_draws=16)), ValueError, "config"),
    ("lin", lambda p: p.select(np.zeros(D + 1)), ValueError, "context"),
    ("lin", lambda p: p.select(None), ValueError, "context"),
    ("lin", lambda p: p.select(np.array([0.0, nan, 1.0])), ValueError, "context"),
    # float32 and strided contexts are converted at the edge (tests/test_inputs.py);
    # what has no float64 value is still refused.
    ("lin", lambda p: p.select(np.array(["0"] * D)), ValueError, "context"),
    ("lin", lambda p: p.select(np.zeros(D, np.complex128)), ValueError, "context"),
    ("lin", lambda p: p.update(0, 1.0, np.zeros(D + 2)), ValueError, "context"),
    ("lin", lambda p: p.update(0, nan, x_ok), ValueError, "reward"),
    ("lin", lambda p: p.update(7, 1.0, x_ok), IndexError, "arm"),
    ("lin", lambda p: p.select_batch(np.zeros((5, D - 1))), ValueError, "contexts"),
    ("lin", lambda p: p.update_batch(np.array([0, 1]), np.array([1.0, 2.0]), np.zeros((3, D))),
     ValueError, "contexts"),
    ("lin", lambda p: p.update_batch(np.array([0, 1]), np.array([1.0, 2.0]),
                                     np.array([[0.0, 1.0, 2.0], [nan, 0.0, 0.0]])),
     ValueError, "contexts"),
    ("lin", lambda p: p.expectations(np.zeros(D + 1)), ValueError, "contexts"),
    ("lin", lambda p: p.merge(LinUCB(K, D + 1)), ValueError, "n_features"),
]


@pytest.mark.parametrize(("kind", "call", "exc", "field"), CASES,
                         ids=[f"{i}-{c[0]}-{c[3]}" for i, c in enumerate(CASES)])
def test_bad_call_is_rejected_and_changes_nothing(kind, call, exc, field, backend: str) -> None:
    p = trained(kind, backend)
    before = snapshot(p)
    with pytest.raises(exc, match=field):
        call(p)
    assert_same(before, snapshot(p))
    # The policy still works afterwards.
    p.select(x_ok if kind == "lin" else None)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: BetaTS(K, decay=0.0), "decay"),
        (lambda: BetaTS(K, decay=1.5), "decay"),
        (lambda: BetaTS(K, alpha0=-1.0), "alpha0"),
        (lambda: BetaTS(K, propensity_draws=-5), "propensity_draws"),
        (lambda: BetaTS(K, propensity_refresh=0), "propensity_refresh"),
        (lambda: GaussianTS(K, kappa0=0.0), "kappa0"),
        (lambda: EpsilonGreedy(K, epsilon=1.5), "epsilon"),
        (lambda: UCB1(K, c=nan), "c"),
        (lambda: LinUCB(K, 0), "n_features"),
        (lambda: LinUCB(K, D, ridge=0.0), "ridge"),
        (lambda: LinUCB(K, D, refresh_every=0), "refresh_every"),
        (lambda: LinTS(K, D, v=-1.0), "v"),
        (lambda: BetaTS(0), "n_arms"),
        (lambda: BetaTS(K, seed=-1), "seed"),
        (lambda: BetaTS(K, seed=2**64), "seed"),
        (lambda: BetaTS(K, backend="tpu"), "backend"),
        (lambda: BetaTS(K, nonsense=1), "nonsense"),
    ],
)
def test_bad_config_is_rejected(make, field: str) -> None:
    with pytest.raises((ValueError, TypeError), match=field):
        make()


def test_missing_backend_raises_runtime_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="cuda"):
        BetaTS(K, backend="cuda")  # policies have no CUDA kernel
    monkeypatch.setattr(_backends, "_probe_numba", lambda: (False, "numba is not installed"))
    with pytest.raises(RuntimeError, match="numba is not installed"):
        BetaTS(K, backend="numba")


def test_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_backends.ENV_VAR, "numba")
    assert BetaTS(K).backend == "numba"
    assert BetaTS(K, backend="cpp").backend == "cpp"  # an explicit choice wins
    monkeypatch.setenv(_backends.ENV_VAR, "fpga")
    with pytest.raises(ValueError, match="backend"):
        BetaTS(K)


@pytest.mark.parametrize("kind", ["mab", "lin"])
def test_concurrent_select_and_update_lose_nothing(kind: str, backend: str) -> None:
    """Eight threads select and update one policy; every update lands exactly once."""
    if kind == "lin":
        p: Policy = LinTS(K, D, seed=3, backend=backend, propensity_draws=4)
    else:
        p = GaussianTS(K, seed=3, backend=backend, propensity_draws=4)
    n_threads, per_thread = 8, 1500
    errors: list[BaseException] = []
    sums = np.zeros(n_threads)
    counts = np.zeros((n_threads, K))

    def worker(w: int) -> None:
        rs = np.random.default_rng(w)
        try:
            for i in range(per_thread):
                x = rs.normal(size=D)
                arm, _ = p.select(x)
                r = float(w + i % 3)
                if i % 50 == 0:
                    p.update_batch(np.array([arm]), np.array([r]),
                                   x[None] if p.contextual else None)
                else:
                    p.update(arm, r, x)
                sums[w] += r
                counts[w, arm] += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = n_threads * per_thread
    assert p.version == total
    assert p.n_decisions == total
    np.testing.assert_allclose(p.counts, counts.sum(axis=0))
    if kind == "mab":
        np.testing.assert_allclose(p.reward_sums.sum(), sums.sum())
