"""The linear policies' batch-update mode "accumulate" (LinearConfig.batch_update): a
batch's sums added at once, A^-1 and theta refreshed exactly once per touched arm.

Checked here: it equals the sequential update up to float rounding (1e-9 relative) and a
NumPy ridge solve of the same data, the two backends give the same bits, single updates
are unchanged, the setting is state, and a rejected batch changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit.policies import LinTS, LinUCB

K, D = 6, 5
RTOL = 1e-9


def _data(n: int, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)) * scale
    arms = rng.integers(0, K, n)
    rewards = rng.normal(size=n)
    weights = rng.random(n) * 2.0
    return arms, rewards, x, weights


def _arrays(policy) -> dict[str, np.ndarray]:
    return policy.state_dict()["arrays"]


def _close(a: np.ndarray, b: np.ndarray, rtol: float = RTOL) -> None:
    # relative to the array's own scale (entries near 0 are judged against it)
    scale = max(float(np.abs(b).max()), 1e-300)
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
@pytest.mark.parametrize("decay", [1.0, 0.97])
def test_accumulate_equals_sequential_up_to_rounding(cls, decay: float, backend: str) -> None:
    seq = cls(K, D, backend=backend, seed=3, decay=decay, refresh_every=10**6)
    acc = cls(K, D, backend=backend, seed=3, decay=decay, batch_update="accumulate")
    for s in range(4):
        arms, r, x, w = _data(300, s)
        seq.update_batch(arms, r, x, w)
        acc.update_batch(arms, r, x, w)
        xs = np.random.default_rng(50 + s).normal(size=(40, D))
        seq.select_batch(xs)
        acc.select_batch(xs)
    a, b = _arrays(acc), _arrays(seq)
    for name in ("A", "A_inv", "b", "theta", "n"):
        _close(a[name], b[name])
    # the accumulated precision matrices are exactly symmetric
    assert np.array_equal(a["A"], a["A"].transpose(0, 2, 1))
    assert np.array_equal(a["counters"], b["counters"])
    assert acc.version == seq.version == 1200


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_accumulate_matches_a_numpy_ridge_solve(cls, backend: str) -> None:
    ridge = 0.5
    p = cls(K, D, backend=backend, ridge=ridge, batch_update="accumulate")
    A = np.repeat((ridge * np.eye(D))[None], K, axis=0)
    b = np.zeros((K, D))
    for s in range(3):
        arms, r, x, w = _data(500, 10 + s)
        p.update_batch(arms, r, x, w)
        for i in range(arms.shape[0]):
            A[arms[i]] += w[i] * np.outer(x[i], x[i])
            b[arms[i]] += w[i] * r[i] * x[i]
    theta = np.linalg.solve(A, b[..., None])[..., 0]
    got = _arrays(p)
    _close(got["theta"], theta)
    _close(got["A_inv"], np.linalg.inv(A))
    _close(got["A"], A)
    _close(got["b"], b)


@pytest.mark.skipif(not {"cpp", "numba"} <= set(_backends.available()),
                    reason="needs both CPU backends")
@pytest.mark.parametrize("cls", [LinUCB, LinTS])
@pytest.mark.parametrize("decay", [1.0, 0.9])
@pytest.mark.parametrize("dim", [1, 5, 20, 23])
def test_cpp_and_numba_agree_bit_for_bit(cls, decay: float, dim: int) -> None:
    # d = 20 and 23 reach every lane width of the C++ AVX2 loop (16, 8, 4, scalar tail)
    pols = {b: cls(K, dim, backend=b, seed=9, decay=decay, batch_update="accumulate",
                   propensity_draws=0) if cls is LinTS else
            cls(K, dim, backend=b, seed=9, decay=decay, batch_update="accumulate")
            for b in ("cpp", "numba")}
    rng = np.random.default_rng(dim)
    decided = {}
    for s in range(3):
        n = (1, 37, 400)[s]
        x = rng.normal(size=(n, dim))
        arms = rng.integers(0, K, n)
        r = rng.normal(size=n)
        w = None if s == 1 else rng.random(n)
        for b, p in pols.items():
            p.update_batch(arms, r, x, w)
            decided[b] = p.select_batch(x[:16])
        assert np.array_equal(decided["cpp"][0], decided["numba"][0])
    a, b = _arrays(pols["cpp"]), _arrays(pols["numba"])
    for name in a:
        assert np.array_equal(a[name], b[name]), name


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_single_updates_are_unchanged(cls, backend: str) -> None:
    seq = cls(K, D, backend=backend, seed=1)
    acc = cls(K, D, backend=backend, seed=1, batch_update="accumulate")
    arms, r, x, w = _data(200, 4)
    for i in range(arms.shape[0]):
        seq.update(int(arms[i]), float(r[i]), x[i], float(w[i]))
        acc.update(int(arms[i]), float(r[i]), x[i], float(w[i]))
    a, b = _arrays(acc), _arrays(seq)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_default_is_sequential_and_the_setting_is_state(backend: str) -> None:
    assert LinUCB(K, D).config.batch_update == "sequential"
    p = LinTS(K, D, backend=backend, batch_update="accumulate")
    arms, r, x, w = _data(100, 5)
    p.update_batch(arms, r, x, w)
    state = p.state_dict()
    assert state["config"]["batch_update"] == "accumulate"
    q = LinTS.from_state_dict(state, backend=backend)
    assert q.config.batch_update == "accumulate"
    arms, r, x, w = _data(100, 6)
    p.update_batch(arms, r, x, w)
    q.update_batch(arms, r, x, w)
    for name, v in _arrays(p).items():
        assert np.array_equal(v, _arrays(q)[name]), name
    with pytest.raises(ValueError, match="batch_update"):
        LinTS(K, D, backend=backend).load_state_dict(state)


@pytest.mark.parametrize("bad", ["accumulated", "", None, 1])
def test_an_unknown_mode_is_refused_naming_the_field(bad) -> None:
    with pytest.raises(ValueError, match=r"batch_update: expected one of \['sequential', "
                                         r"'accumulate'\]"):
        LinUCB(K, D, batch_update=bad)


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_a_rejected_batch_changes_nothing(cls, backend: str) -> None:
    p = cls(K, D, backend=backend, batch_update="accumulate")
    arms, r, x, w = _data(50, 7)
    p.update_batch(arms, r, x, w)
    before = _arrays(p)
    bad_arms = arms.copy()
    bad_arms[-1] = K
    nan_r = r.copy()
    nan_r[-1] = np.nan
    neg_w = w.copy()
    neg_w[-1] = -1.0
    nan_x = x.copy()
    nan_x[-1, 0] = np.inf
    huge_x = x.copy()
    huge_x[-1] = 1e200  # finite input whose outer product overflows: refused by the kernel
    huge_r = r.copy()
    huge_r[-1] = 1e308  # b overflows, A does not
    cases = [
        ((bad_arms, r, x, w), (IndexError, ValueError), "arm"),
        ((arms, nan_r, x, w), ValueError, "reward"),
        ((arms, r, x, neg_w), ValueError, "weight"),
        ((arms, r, nan_x, w), ValueError, "context"),
        ((arms, r, x[:-1], w), ValueError, "context"),
        ((arms, r, huge_x, w), ValueError, "refused whole"),
        ((arms, r * 0 + 1e308, x * 10, w + 1), ValueError, "refused whole"),
        ((arms, huge_r, x * 1e5, w + 1), ValueError, "refused whole"),
    ]
    for args, exc, words in cases:
        with pytest.raises(exc, match=words):
            p.update_batch(*args)
        after = _arrays(p)
        for name in before:
            assert np.array_equal(before[name], after[name]), (words, name)


def test_an_empty_batch_changes_nothing(backend: str) -> None:
    p = LinUCB(K, D, backend=backend, batch_update="accumulate", decay=0.9)
    arms, r, x, w = _data(20, 8)
    p.update_batch(arms, r, x, w)
    before = _arrays(p)
    p.update_batch(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, D)))
    for name, v in _arrays(p).items():
        assert np.array_equal(v, before[name]), name


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_single_updates_after_a_batch_are_still_checked(cls, backend: str) -> None:
    # accumulate batches go to the kernel without the checked batch's copy (the kernel
    # writes nothing unless every arm's new statistics are finite); the single-update
    # check's magnitude bound must then be measured again, not carried over
    p = cls(K, D, backend=backend, batch_update="accumulate")
    p.update(0, 1.0, np.ones(D))
    arms, r, x, w = _data(300, 9)
    p.update_batch(arms, r, x * 1e50, w)  # large but finite statistics: accepted
    assert p._bound[0] is None
    assert np.isfinite(_arrays(p)["theta"]).all()
    before = _arrays(p)
    with pytest.raises(ValueError, match="unchanged"):
        p.update(1, 1.0, np.full(D, 1e160))
    for name, v in _arrays(p).items():
        assert np.array_equal(v, before[name]), name
    p.update(1, 1.0, np.ones(D))  # an ordinary update still lands
    assert _arrays(p)["counters"].tolist() != before["counters"].tolist()
