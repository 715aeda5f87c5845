"""The CUDA top-k softmax scorer against the NumPy oracle and the C++ backend.

Skipped (by the ``cuda`` marker, see conftest.py) where ``promobandit._backends.has_cuda()``
is False. Tolerances as in test_topk.py: exact data gives identical ids and scores;
the CUDA kernels multiply-add in the same order as the C++ batched kernel, so for
B > 1 their float32 scores are asserted bit-identical to it.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from promobandit import _backends
from promobandit._reference import topk_softmax_reference
from promobandit.scoring import TopK, to_bfloat16, topk_softmax

pytestmark = pytest.mark.cuda
torch = pytest.importorskip("torch")

RTOL = 1e-5


def quarter_grid(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.integers(-4, 5, size=shape) / 4).astype(np.float32)


def on_gpu(a: np.ndarray, dtype: str = "float32") -> torch.Tensor:
    t = torch.from_numpy(a).cuda()
    return t.to({"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16}[dtype]) if a.dtype == np.float32 else t


def host_items(a: np.ndarray, dtype: str) -> np.ndarray:
    return {"float32": a, "float16": a.astype(np.float16), "bfloat16": to_bfloat16(a)}[dtype]


def to_np(r: TopK) -> tuple[np.ndarray, ...]:
    return tuple(x.cpu().numpy() for x in (r.ids, r.scores, r.probs_topk, r.probs_full,
                                           r.log_normalizer))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("n_users", [1, 5])
@pytest.mark.parametrize("options", ["plain", "mask", "mask2d", "exclude", "exclude2d", "bias"])
@pytest.mark.parametrize("k", [1, 37, "all"])
def test_exact_data_matches_reference(dtype: str, n_users: int, options: str, k: object) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{dtype}{n_users}{options}{k}".encode()))
    n, d = 900, 24
    e = quarter_grid(rng, (n, d))
    u = quarter_grid(rng, (n_users, d))
    kw: dict = {"temperature": 0.6}
    if options == "mask":
        kw["mask"] = rng.random(n) < 0.6
    if options == "mask2d" and n_users > 1:
        kw["mask"] = rng.random((n_users, n)) < 0.6
    if options == "exclude":
        kw["exclude"] = rng.integers(0, n, 40)
    if options == "exclude2d" and n_users > 1:
        kw["exclude"] = rng.integers(-1, n, (n_users, 40))
    if options == "bias":
        kw["bias"] = quarter_grid(rng, (n,))
    ok = np.ones((n_users, n), dtype=bool)
    if "mask" in kw:
        ok &= np.broadcast_to(kw["mask"], (n_users, n))
    if "exclude" in kw:
        ex = kw["exclude"]
        for r in range(n_users):
            row = ex if ex.ndim == 1 else ex[r]
            ok[r, row[row >= 0]] = False
    kk = int(ok.sum(axis=1).min()) if k == "all" else int(k)  # type: ignore[call-overload]
    users = u[0] if n_users == 1 else u
    got = topk_softmax(on_gpu(e, dtype), on_gpu(users), kk, backend="cuda", **kw)
    assert got.ids.is_cuda and got.ids.dtype == torch.int64
    want = topk_softmax_reference(host_items(e, dtype), users, kk, **kw)
    ids, scores, pt, pf, ln = to_np(got)
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(scores, want[1])
    np.testing.assert_allclose(pt, want[2], rtol=RTOL)
    np.testing.assert_allclose(pf, want[3], rtol=RTOL)
    np.testing.assert_allclose(ln, want[4], rtol=RTOL)


@pytest.mark.skipif(not _backends.has_cpp(), reason="needs the C++ backend to compare")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_scores_bit_identical_to_cpp_batched_kernel(dtype: str) -> None:
    rng = np.random.default_rng(1)
    n, d, b, k = 100_000, 64, 16, 100
    e = rng.normal(size=(n, d)).astype(np.float32)
    u = rng.normal(size=(b, d)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    g = topk_softmax(on_gpu(e, dtype), on_gpu(u), k, bias=on_gpu(bias), backend="cuda")
    c = topk_softmax(host_items(e, dtype), u, k, bias=bias, backend="cpp")
    ids, scores, pt, pf, ln = to_np(g)
    np.testing.assert_array_equal(ids, c.ids)
    np.testing.assert_array_equal(scores, c.scores)
    np.testing.assert_allclose(pf, c.probs_full, rtol=RTOL)
    np.testing.assert_allclose(pt, c.probs_topk, rtol=RTOL)
    np.testing.assert_allclose(ln, c.log_normalizer, rtol=RTOL)


def test_probs_full_is_the_dense_softmax() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    e = torch.randn(200_000, 32, device="cuda", generator=gen) * 0.25
    u = torch.randn(8, 32, device="cuda", generator=gen) * 0.25
    got = topk_softmax(e, u, 50, temperature=0.5)  # auto picks cuda for CUDA tensors
    z = (u.double() @ e.double().T) / 0.5
    p = torch.softmax(z, dim=1)
    torch.testing.assert_close(got.probs_full, torch.gather(p, 1, got.ids), rtol=RTOL, atol=0)
    torch.testing.assert_close(got.log_normalizer, torch.logsumexp(z, dim=1), rtol=RTOL, atol=0)


def test_runs_on_the_current_stream_and_is_reproducible() -> None:
    rng = np.random.default_rng(2)
    e, u = on_gpu(rng.normal(size=(50_000, 48)).astype(np.float32)), on_gpu(
        rng.normal(size=(33, 48)).astype(np.float32))
    first = topk_softmax(e, u, 64, backend="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        second = topk_softmax(e, u, 64, backend="cuda")
    torch.cuda.synchronize()
    for a, b in zip(to_np(first), to_np(second), strict=True):
        np.testing.assert_array_equal(a, b)


def test_out_tensors_filled_in_place() -> None:
    rng = np.random.default_rng(3)
    e, u = on_gpu(quarter_grid(rng, (700, 8))), on_gpu(quarter_grid(rng, (3, 8)))
    out = TopK(torch.empty((3, 5), dtype=torch.int64, device="cuda"),
               torch.empty((3, 5), device="cuda"),
               torch.empty((3, 5), dtype=torch.float64, device="cuda"),
               torch.empty((3, 5), dtype=torch.float64, device="cuda"),
               torch.empty(3, dtype=torch.float64, device="cuda"))
    assert topk_softmax(e, u, 5, backend="cuda", out=out) is out
    fresh = topk_softmax(e, u, 5, backend="cuda")
    torch.testing.assert_close(out.ids, fresh.ids, rtol=0, atol=0)


def test_bad_input_names_the_field() -> None:
    rng = np.random.default_rng(4)
    e = quarter_grid(rng, (300, 8))
    eg, ug = on_gpu(e), on_gpu(quarter_grid(rng, (8,)))
    with pytest.raises(ValueError, match=r"^items: the cuda backend takes"):
        topk_softmax(e, ug, 3, backend="cuda")
    with pytest.raises(ValueError, match=r"^items: .*CPU backend"):
        topk_softmax(eg, ug, 3, backend="cpp")
    with pytest.raises(ValueError, match=r"^items: expected a contiguous tensor"):
        topk_softmax(on_gpu(np.ones((300, 16), np.float32))[:, ::2], ug, 3, backend="cuda")
    bad = e.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"^items: expected finite values, found nan at flat "
                                         r"index 41"):
        topk_softmax(on_gpu(bad), ug, 3, backend="cuda")
    with pytest.raises(ValueError, match=r"^users: expected finite"):
        topk_softmax(eg, on_gpu(np.full(8, np.inf, np.float32)), 3, backend="cuda")
    with pytest.raises(ValueError, match=r"^k: the cuda backend selects at most"):
        topk_softmax(on_gpu(quarter_grid(rng, (3000, 8))), ug, 2000, backend="cuda")
    with pytest.raises(ValueError, match=r"^mask: leaves 2 eligible items, fewer than k = 3"):
        topk_softmax(eg, ug, 3, mask=np.arange(300) < 2, backend="cuda")
    with pytest.raises(ValueError, match=r"^exclude: expected item ids in \[0, 300\)"):
        topk_softmax(eg, ug, 3, exclude=np.array([300]), backend="cuda")
    with pytest.raises(ValueError, match=r"^users: the cuda backend takes"):
        topk_softmax(eg, torch.ones(8), 3, backend="cuda")
