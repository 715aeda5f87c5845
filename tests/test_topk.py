"""Top-k softmax scoring (promobandit.scoring) on every CPU backend against the oracle.

Tolerances. With "exact" data (multiples of 1/4 in [-1, 1], small d) every score
is exactly representable, so every backend and the reference compute the same
float32 scores: ids (with the lowest-id tie-break) and scores must be identical,
and probabilities agree to rtol 1e-5 (the kernels use a float32 exp on the
per-item terms). With random float32 data the backends and the reference sum in
different orders: scores agree to 1e-5 of their scale, ids agree except where
two scores are within that tolerance. float16/bfloat16 items are compared with
the reference run on the same rounded values (so the rounding itself is not an
error); their products are still summed in float32, so the same tolerances hold
and are asserted. The C++ backend is also checked bit for bit across thread
counts and instruction sets.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promobandit import _backends
from promobandit._reference import topk_softmax_reference
from promobandit.scoring import TopK, from_bfloat16, to_bfloat16, topk_softmax

RTOL = 1e-5
FIELDS = ("ids", "scores", "probs_topk", "probs_full", "log_normalizer")


def quarter_grid(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Multiples of 1/4 in [-1, 1]: products and sums of up to 64 terms are exact."""
    return (rng.integers(-4, 5, size=shape) / 4).astype(np.float32)


def as_items(e: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return e.astype(np.float16)
    if dtype == "bfloat16":
        return to_bfloat16(e)
    return e


def assert_exact(got: TopK, want: tuple[np.ndarray, ...]) -> None:
    ids, scores, pt, pf, ln = want
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_array_equal(got.scores, scores)
    np.testing.assert_allclose(got.probs_topk, pt, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got.probs_full, pf, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got.log_normalizer, ln, rtol=RTOL, atol=RTOL)


def dense_scores(items: np.ndarray, users: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    e = from_bfloat16(items) if items.dtype == np.uint16 else items
    s = np.atleast_2d(users).astype(np.float64) @ e.astype(np.float64).T
    return s if bias is None else s + bias.astype(np.float64)


def assert_close(got: TopK, want: tuple[np.ndarray, ...], s64: np.ndarray) -> None:
    """Random data: scores to 1e-5 of their scale; ids equal up to near-ties."""
    ids, scores, pt, pf, ln = (np.atleast_1d(np.asarray(x)) for x in want)
    g_ids = np.atleast_2d(got.ids)
    tol = RTOL * max(1.0, float(np.abs(s64).max()))
    np.testing.assert_allclose(np.atleast_2d(got.scores), np.atleast_2d(scores), atol=tol, rtol=0)
    w_ids = np.atleast_2d(ids)
    for r in range(g_ids.shape[0]):
        differ = g_ids[r] != w_ids[r]
        # Where the order differs, the two items' exact scores must be a near-tie.
        gap = np.abs(s64[r, g_ids[r][differ]] - s64[r, w_ids[r][differ]])
        assert (gap <= 2 * tol).all(), (r, g_ids[r][differ], w_ids[r][differ], gap)
    if (g_ids == w_ids).all():
        np.testing.assert_allclose(np.atleast_2d(got.probs_topk), np.atleast_2d(pt), rtol=1e-4)
        np.testing.assert_allclose(np.atleast_2d(got.probs_full), np.atleast_2d(pf), rtol=1e-4)
    np.testing.assert_allclose(np.atleast_1d(got.log_normalizer), ln, rtol=1e-5, atol=1e-5)


@st.composite
def problems(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 300))
    d = draw(st.integers(1, 40))
    single = draw(st.booleans())
    b = 1 if single else draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    e = quarter_grid(rng, (n, d))
    u = quarter_grid(rng, (b, d))
    mask = None
    if draw(st.booleans()):
        mask = rng.random((b, n) if draw(st.booleans()) and not single else n) < 0.7
    exclude = None
    if draw(st.booleans()):
        m = draw(st.integers(0, 8))
        if single or draw(st.booleans()):
            exclude = rng.integers(0, n, size=m).astype(np.int64)
        else:
            exclude = rng.integers(-1, n, size=(b, m)).astype(np.int64)
    bias = quarter_grid(rng, (n,)) if draw(st.booleans()) else None
    eligible = np.ones((b, n), dtype=bool)
    if mask is not None:
        eligible &= np.broadcast_to(mask, (b, n))
    if exclude is not None:
        rows = np.broadcast_to(exclude, (b, exclude.shape[-1])) if exclude.ndim == 1 else exclude
        for r in range(b):
            eligible[r, rows[r][rows[r] >= 0]] = False
    n_ok = int(eligible.sum(axis=1).min())
    k = draw(st.sampled_from(["one", "all", "some", "too_many"]))
    if k == "too_many":  # one more than the eligible items: a ValueError naming the culprit
        kk = n_ok + 1
    else:
        kk = 1 if k == "one" else (n_ok if k == "all" else draw(st.integers(1, max(1, n_ok))))
    return {"items": e, "users": u[0] if single else u, "k": max(1, kk), "mask": mask,
            "exclude": exclude, "bias": bias, "n_ok": n_ok,
            "temperature": draw(st.sampled_from([0.25, 0.5, 1.0, 3.0])),
            "dtype": draw(st.sampled_from(["float32", "float16", "bfloat16"]))}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(p=problems())
def test_matches_reference_exactly_on_exact_data(backend: str, p: dict) -> None:
    items = as_items(p["items"], p["dtype"])
    kw = {"temperature": p["temperature"], "mask": p["mask"], "exclude": p["exclude"],
          "bias": p["bias"]}
    n = p["items"].shape[0]
    if p["k"] > p["n_ok"]:
        # Too few eligible items: blame k when it exceeds N, else the mask or the exclusions.
        field = "k" if p["k"] > n else "(mask|exclude)"
        with pytest.raises(ValueError, match=rf"^{field}: "):
            topk_softmax(items, p["users"], p["k"], backend=backend, **kw)
        return
    got = topk_softmax(items, p["users"], p["k"], backend=backend, **kw)
    want = topk_softmax_reference(items, p["users"], p["k"], **kw)
    assert got.ids.shape == want[0].shape and got.log_normalizer.shape == want[4].shape
    assert got.ids.dtype == np.int64 and got.scores.dtype == np.float32
    assert got.probs_topk.dtype == np.float64 and got.probs_full.dtype == np.float64
    assert_exact(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("n_users", [1, 7])
def test_random_data_close_to_reference(backend: str, dtype: str, n_users: int) -> None:
    rng = np.random.default_rng(11)
    n, d, k = 5000, 70, 50
    e = as_items(rng.normal(0.0, 0.3, (n, d)).astype(np.float32), dtype)
    u = rng.normal(0.0, 0.3, (n_users, d)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, n).astype(np.float32)
    mask = rng.random(n) < 0.9
    got = topk_softmax(e, u, k, temperature=0.7, bias=bias, mask=mask, backend=backend)
    want = topk_softmax_reference(e, u, k, temperature=0.7, bias=bias, mask=mask)
    assert_close(got, want, dense_scores(e, u, bias))


@pytest.mark.parametrize("n_users", [1, 3])
def test_probs_full_is_the_dense_softmax(backend: str, n_users: int) -> None:
    """probs_full equals softmax(E @ u / T) over all items, computed densely."""
    rng = np.random.default_rng(5)
    n, d, k, temp = 20000, 32, 25, 0.5
    e = rng.normal(0.0, 0.25, (n, d)).astype(np.float32)
    u = rng.normal(0.0, 0.25, (n_users, d)).astype(np.float32)
    got = topk_softmax(e, u, k, temperature=temp, backend=backend)
    z = (u.astype(np.float64) @ e.astype(np.float64).T) / temp
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got.probs_full, np.take_along_axis(p, got.ids, axis=1),
                               rtol=RTOL)
    lse = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
    np.testing.assert_allclose(got.log_normalizer, lse, rtol=RTOL)
    np.testing.assert_allclose(got.probs_topk.sum(axis=1), 1.0, rtol=1e-12)
    assert (got.probs_full <= got.probs_topk).all()
    np.testing.assert_allclose(got.probs_full,
                               np.exp(got.scores / temp - got.log_normalizer[:, None]), rtol=RTOL)


def test_masked_items_leave_the_normaliser(backend: str) -> None:
    rng = np.random.default_rng(2)
    e = quarter_grid(rng, (3000, 16))
    u = quarter_grid(rng, (16,))
    mask = rng.random(3000) < 0.5
    exclude = np.flatnonzero(mask)[:100]
    got = topk_softmax(e, u, 10, mask=mask, exclude=exclude, backend=backend)
    keep = mask.copy()
    keep[exclude] = False
    z = e[keep].astype(np.float64) @ u.astype(np.float64)
    assert got.log_normalizer == pytest.approx(np.log(np.exp(z - z.max()).sum()) + z.max(),
                                               rel=RTOL)
    assert keep[got.ids].all()


def test_ties_go_to_the_lowest_id(backend: str) -> None:
    e = np.zeros((100, 4), dtype=np.float32)
    e[[7, 3, 50, 99], 0] = 1.0
    got = topk_softmax(e, np.array([1, 0, 0, 0], dtype=np.float32), 6, backend=backend)
    np.testing.assert_array_equal(got.ids, [3, 7, 50, 99, 0, 1])
    np.testing.assert_allclose(got.probs_topk[:4], got.probs_topk[0])


@pytest.mark.parametrize("n_users", [1, 3, 8])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_thread_count_does_not_change_a_bit(backend: str, n_users: int, dtype: str) -> None:
    rng = np.random.default_rng(3)
    e = as_items(rng.normal(size=(40000, 24)).astype(np.float32), dtype)
    u = rng.normal(size=(n_users, 24)).astype(np.float32)
    mask = rng.random(40000) < 0.8
    one = topk_softmax(e, u, 64, mask=mask, backend=backend, n_threads=1)
    two = topk_softmax(e, u, 64, mask=mask, backend=backend, n_threads=2)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(one, f), getattr(two, f), err_msg=f)


@pytest.mark.skipif(not _backends.has_cpp(), reason="C++ backend not built")
@pytest.mark.parametrize("n_users", [1, 3, 5])
def test_cpp_instruction_sets_agree_bit_for_bit(n_users: int) -> None:
    core = _backends.core()
    rng = np.random.default_rng(4)
    e = rng.normal(size=(9000, 37)).astype(np.float32)
    u = rng.normal(size=(n_users, 37)).astype(np.float32)
    bias = rng.normal(size=9000).astype(np.float32)
    isas = [i for i in ("scalar", "avx2", "avx512") if core.topk_isa_supported(i)]
    runs = [core.topk_softmax(e, u, 33, 0.8, None, np.array([5, 17]), bias, 0, "float32",
                              isa=i) for i in isas]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_single_user_shapes_and_k_equal_n(backend: str) -> None:
    rng = np.random.default_rng(6)
    e = quarter_grid(rng, (40, 8))
    got = topk_softmax(e, quarter_grid(rng, (8,)), 40, backend=backend)
    assert got.ids.shape == (40,) and got.log_normalizer.shape == ()
    np.testing.assert_array_equal(np.sort(got.ids), np.arange(40))
    np.testing.assert_allclose(got.probs_full, got.probs_topk, rtol=RTOL)  # k = N


def test_backends_agree_on_ids(backend: str) -> None:
    rng = np.random.default_rng(8)
    e, u = quarter_grid(rng, (6000, 12)), quarter_grid(rng, (4, 12))
    got = topk_softmax(e, u, 30, backend=backend)
    other = topk_softmax(e, u, 30, backend="numba" if backend == "cpp" else "cpp") \
        if {"cpp", "numba"} <= set(_backends.available()) else got
    np.testing.assert_array_equal(got.ids, other.ids)
    np.testing.assert_array_equal(got.scores, other.scores)


def test_out_buffers_are_filled_in_place(backend: str) -> None:
    rng = np.random.default_rng(9)
    e, u = quarter_grid(rng, (500, 8)), quarter_grid(rng, (3, 8))
    out = TopK(np.empty((3, 5), np.int64), np.empty((3, 5), np.float32), np.empty((3, 5)),
               np.empty((3, 5)), np.empty(3))
    got = topk_softmax(e, u, 5, backend=backend, out=out)
    assert got is out
    fresh = topk_softmax(e, u, 5, backend=backend)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(out, f), getattr(fresh, f))
    single = TopK(np.empty(5, np.int64), np.empty(5, np.float32), np.empty(5), np.empty(5),
                  np.empty(()))
    topk_softmax(e, u[1], 5, backend=backend, out=single)
    np.testing.assert_array_equal(single.ids, fresh.ids[1])
    assert single.log_normalizer == fresh.log_normalizer[1]


N, D, K = 50, 4, 3
_e = np.ones((N, D), dtype=np.float32)
_u = np.ones(D, dtype=np.float32)
_nan_e = _e.copy()
_nan_e[7, 2] = np.nan
_huge = np.full((N, D), 1e30, dtype=np.float32)
_out_bad = TopK(np.empty(K, np.int32), np.empty(K, np.float32), np.empty(K), np.empty(K),
                np.empty(()))

BAD = [
    ({"items": _e.astype(np.float64)}, "items", "dtype float64"),
    ({"items": np.ones((N, 2 * D), np.float32)[:, ::2]}, "items", "C-contiguous"),
    ({"items": np.ones(N, np.float32)}, "items", "shape"),
    ({"items": _e.astype(">f4")}, "items", "non-native byte order"),
    ({"items": _nan_e}, "items", "found nan at flat index 30"),
    ({"items": _huge, "users": np.full(D, 1e30, np.float32)}, "items", "overflows float32"),
    ({"users": np.ones(D + 1, np.float32)}, "users", "shape"),
    ({"users": np.ones(D, np.float64)}, "users", "dtype float64"),
    ({"users": np.array([1, np.inf, 1, 1], np.float32)}, "users", "found inf at flat index 1"),
    ({"k": 0}, "k", "1 <= k <= 50"),
    ({"k": N + 1}, "k", "got 51"),
    ({"k": 2.5}, "k", "integer"),
    ({"temperature": 0.0}, "temperature", "> 0"),
    ({"temperature": float("nan")}, "temperature", "nan"),
    ({"mask": np.ones(N, np.int64)}, "mask", "dtype int64"),
    ({"mask": np.ones(N + 1, bool)}, "mask", "shape"),
    ({"mask": np.arange(N) < 2}, "mask", "leaves 2 eligible items, fewer than k = 3"),
    ({"exclude": np.array([3, N])}, "exclude", "got 50 at flat index 1"),
    ({"exclude": np.array([1.0, 2.0])}, "exclude", "dtype float64"),
    ({"exclude": np.arange(N - 2)}, "exclude", "leaves 2 eligible items"),
    ({"bias": np.ones(N)}, "bias", "dtype float64"),
    ({"bias": np.where(np.arange(N) == 4, np.nan, 1.0).astype(np.float32)}, "bias",
     "found nan at flat index 4"),
    ({"n_threads": -1}, "n_threads", ">= 0"),
    ({"out": _out_bad}, "out.ids", "dtype int32"),
    ({"backend": "gpu!"}, "backend", "expected one of"),
]


@pytest.mark.parametrize(("change", "field", "detail"), BAD,
                         ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD)])
def test_bad_input_names_the_field(backend: str, change: dict, field: str, detail: str) -> None:
    kw = {"items": _e, "users": _u, "k": K, "backend": backend, **change}
    with pytest.raises(ValueError, match=rf"^{field}: ") as err:
        topk_softmax(kw.pop("items"), kw.pop("users"), kw.pop("k"), **kw)
    assert detail in str(err.value)


def test_a_missing_backend_is_a_runtime_error() -> None:
    if _backends.has_cuda():
        pytest.skip("a CUDA backend is present")
    with pytest.raises(RuntimeError, match="cuda"):
        topk_softmax(_e, _u, K, backend="cuda")


def test_bfloat16_helpers_round_to_nearest_even() -> None:
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38, np.inf, np.nan], np.float32)
    bits = to_bfloat16(x)
    assert bits.dtype == np.uint16
    back = from_bfloat16(bits)
    # 1 + 2^-8 is a tie: to even (1.0); 1 + 3*2^-8 is a tie: to even (1 + 2^-6).
    np.testing.assert_array_equal(back[:4], [1.0, 1.0, 1.015625, -2.5])
    assert np.isinf(back[5]) and np.isnan(back[6])
    assert back[4] == pytest.approx(3.0e38, rel=2**-8)


def test_torch_cpu_tensors_are_read_in_place(backend: str) -> None:
    torch = pytest.importorskip("torch")
    from promobandit.scoring import _host

    rng = np.random.default_rng(10)
    e, u = quarter_grid(rng, (700, 16)), quarter_grid(rng, (2, 16))
    et, ut = torch.from_numpy(e), torch.from_numpy(u).requires_grad_(True)
    assert np.shares_memory(_host(et, "items"), e)  # the kernel reads the tensor's memory
    got = topk_softmax(et, ut, 9, backend=backend)
    want = topk_softmax(e, u, 9, backend=backend)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
    bf = et.to(torch.bfloat16)
    assert np.shares_memory(_host(bf, "items"), bf.view(torch.int16).numpy())
    np.testing.assert_array_equal(_host(bf, "items"), to_bfloat16(e))
    np.testing.assert_array_equal(topk_softmax(bf, ut, 9, backend=backend).ids, want.ids)
    with pytest.raises(ValueError, match=r"^items: .*dtype float64"):
        topk_softmax(et.double(), ut, 9, backend=backend)  # never converted silently
    with pytest.raises(ValueError, match=r"^items: .*C-contiguous"):
        topk_softmax(et.t(), ut[:, :700], 9, backend=backend)
