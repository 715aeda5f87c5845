"""The linear policies' batched kernels (issue 14): blocks of rows, the upper-triangle
moments, theta recomputed once per update batch, on both backends, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit._numba import linear as nlin
from promobandit.policies import LinTS, LinUCB

K, D = 7, 11  # d not a multiple of the 4 vector lanes: the scalar tails run too

both = pytest.mark.skipif(not (_backends.has_cpp() and _backends.has_numba()),
                          reason="needs the cpp and numba backends")


def make(cls, backend: str, **kw):
    extra = {"v": 0.4} if cls is LinTS else {"alpha": 0.7}
    return cls(K, D, seed=3, backend=backend, refresh_every=13, **{**extra, **kw})


def drive(policy, seed: int = 0):
    """Batches of every size around the 8-row block (1, 7, 8, 9, 23, 64), single calls,
    masks, biases, weights; returns every decision and propensity."""
    rs = np.random.default_rng(seed)
    w_true = rs.normal(size=(K, D))
    arms_out, props_out = [], []
    for n in (1, 7, 8, 9, 23, 64, 3, 17):
        xs = rs.normal(size=(n, D))
        masks = rs.random((n, K)) < 0.7
        masks[:, n % K] = True
        biases = 0.05 * rs.normal(size=(n, K))
        arms, props = policy.select_batch(xs, masks, biases=biases)
        arms_out += arms.tolist()
        props_out += props.tolist()
        r = (xs @ w_true.T)[np.arange(n), arms] + 0.1 * rs.normal(size=n)
        policy.update_batch(arms, r, xs, weights=0.5 + rs.random(n))
        x = rs.normal(size=D)
        arm, prop = policy.select(x)
        arms_out.append(arm)
        props_out.append(prop)
        policy.update(arm, float(x @ w_true[arm]), x)
    return arms_out, props_out


@both
@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_cpp_and_numba_agree_bit_for_bit(cls) -> None:
    a, b = make(cls, "cpp"), make(cls, "numba")
    ra, rb = drive(a), drive(b)
    assert ra[0] == rb[0]
    np.testing.assert_array_equal(ra[1], rb[1])
    sa, sb = a.state_dict(), b.state_dict()
    for key in ("A", "A_inv", "b", "theta", "n"):
        np.testing.assert_array_equal(sa["arrays"][key], sb["arrays"][key], err_msg=key)


@pytest.mark.parametrize("cls", [LinUCB, LinTS])
def test_a_batch_is_its_rows_one_at_a_time(cls, backend: str) -> None:
    """select_batch of n = n selects (the 8-row blocks and the single path agree), and
    update_batch = n updates (theta recomputed once per arm = after every row)."""
    rs = np.random.default_rng(4)
    a, b = make(cls, backend), make(cls, backend)
    xs = rs.normal(size=(45, D))
    arms = rs.integers(0, K, 45)
    r = rs.normal(size=45)
    a.update_batch(arms, r, xs)
    for i in range(45):
        b.update(int(arms[i]), float(r[i]), xs[i])
    for key in ("A", "A_inv", "b", "theta", "n", "since_refresh"):
        np.testing.assert_array_equal(a.state_dict()["arrays"][key],
                                      b.state_dict()["arrays"][key], err_msg=key)
    xs = rs.normal(size=(29, D))
    got = a.select_batch(xs)
    singles = [b.select(x) for x in xs]
    assert got[0].tolist() == [s[0] for s in singles]
    np.testing.assert_array_equal(got[1], [s[1] for s in singles])


def test_moments_are_the_quadratic_form() -> None:
    """The upper-triangle moments equal theta.x and x'A^-1 x to rounding."""
    rs = np.random.default_rng(5)
    m = rs.normal(size=(K, D, D))
    a_inv = np.einsum("kij,klj->kil", m, m) + np.eye(D)[None]
    theta = rs.normal(size=(K, D))
    x = rs.normal(size=D)
    mean, var = np.zeros(K), np.zeros(K)
    ones = np.ones(K, dtype=np.bool_)
    nlin.moments(a_inv, theta, ones, ones, x, mean, var, np.zeros(D))
    np.testing.assert_allclose(mean, theta @ x, rtol=1e-12)
    np.testing.assert_allclose(var, np.einsum("i,kij,j->k", x, a_inv, x), rtol=1e-12)
