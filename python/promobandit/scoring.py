"""Top-k softmax scoring: the k best items for a user, with softmax probabilities.

``topk_softmax(items, users, k)`` scores every item for every user,
``score_i = items[i] . u + bias[i]``, and returns the k best item ids (highest
score first, ties to the lowest id), their scores, and two probabilities at
temperature T: among the k (``probs_topk``), and under the full softmax over all
eligible items (``probs_full``), whose normaliser ``log sum_i exp(score_i / T)``
(``log_normalizer``) is computed in the same pass as the scores: no backend ever
holds N scores per user.

Eligibility. ``mask`` (bool, True = eligible; (N,) for every user or (B, N) per
user) and ``exclude`` (int64 item ids; (m,) for every user or (B, m) per user,
-1 padding short rows) remove items from the top-k **and from the normaliser**,
so ``probs_full`` is a probability over the eligible items only. A row left with
fewer than k eligible items is a ValueError naming ``mask`` or ``exclude``.

Precision. ``items`` may be float32, float16, or bfloat16 (a torch.bfloat16
tensor, or a NumPy uint16 array of bfloat16 bit patterns from ``to_bfloat16``:
NumPy has no bfloat16 dtype, so **uint16 items are read as bfloat16 bits**).
Users and bias are float32. Products are accumulated in float32 (the C++ and
CUDA backends with fused multiply-add, Numba without, so scores may differ
across backends in the last bits); probabilities and the normaliser are float64,
because they feed importance weights (1 / propensity) where float32 underflow
would give infinite weights. The C++ backend gives bit-identical results for
every thread count and CPU instruction set; its streaming kernel (B <= 4
users per call) and its GEMM-style kernel (B > 4) sum the d products in
different orders, so one user's scores can differ in the last bit between a
call with at most 4 users and one with more.

Inputs. NumPy arrays or CPU torch tensors (read in place, never copied or
cast: a wrong dtype or a non-contiguous array is a ValueError naming the field).
With ``backend="cuda"``, contiguous torch CUDA tensors; the kernel runs on
torch's current stream and the result fields are torch CUDA tensors. torch is
never imported by this module unless a tensor is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from . import _backends
from ._validation import (
    check_eligible,
    check_eligible_counts,
    check_exclude_ids,
    check_finite_array,
    check_finite_topk,
    check_temperature,
    check_topk_bias,
    check_topk_exclude,
    check_topk_items,
    check_topk_k,
    check_topk_mask,
    check_topk_out,
    check_topk_threads,
    check_topk_users,
    nonfinite_error,
    score_overflow,
    short_row,
)

ITEM_DTYPES = ("float32", "float16", "bfloat16")
_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class TopK:
    """The k best items per user.

    Shapes are (k,) / () for a 1-D ``users`` and (B, k) / (B,) for a 2-D one.
    ``ids`` int64 item indices, best first. ``scores`` float32, ``items[i] . u +
    bias[i]`` (before dividing by the temperature). ``probs_topk`` float64,
    softmax of score / T among the k (sums to 1). ``probs_full`` float64, the
    probability of each item under the softmax over all eligible items.
    ``log_normalizer`` float64, log of the sum over eligible items of
    exp(score / T), so ``probs_full = exp(scores / T - log_normalizer)``.
    For the cuda backend the fields are torch CUDA tensors.
    """

    ids: np.ndarray
    scores: np.ndarray
    probs_topk: np.ndarray
    probs_full: np.ndarray
    log_normalizer: np.ndarray


def to_bfloat16(x: Any) -> np.ndarray:
    """Values as bfloat16 bit patterns in a uint16 array (round to nearest even).

    The result is what ``topk_softmax`` takes as a bfloat16 item matrix. NaN stays
    NaN; values beyond the bfloat16 range become inf, as in any float rounding.
    """
    a = np.ascontiguousarray(x, dtype=np.float32)
    bits = a.view(np.uint32)
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    out = ((bits + np.uint32(0x7FFF) + lsb) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():  # keep NaN a (quiet) NaN: rounding could carry it into inf
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out


def from_bfloat16(bits: Any) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as float32 values (exact)."""
    b = np.ascontiguousarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


# ----------------------------------------------------------------------------------------
# Arguments: torch CPU tensors read as NumPy, then the checks of _validation (their
# messages match cpp/bindings/topk_bindings.cpp).


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "data_ptr")


def _is_cuda_tensor(x: Any) -> bool:
    return _is_tensor(x) and x.device.type == "cuda"


def _host(x: Any, field: str) -> Any:
    """A CPU torch tensor as a NumPy view of the same memory (bfloat16 as uint16 bits)."""
    if not _is_tensor(x):
        return x
    if x.device.type != "cpu":
        raise ValueError(f"{field}: expected a NumPy array or CPU tensor for a CPU backend, got "
                         f"a tensor on {x.device}; move it with .cpu() or use backend='cuda'")
    import torch  # already imported by whoever made the tensor

    t = x.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


# The kernels' item type by dtype character (dtype.name costs a microsecond a call).
_ITEM_TYPE = {"f": "float32", "e": "float16", "H": "bfloat16"}


@dataclass(frozen=True)
class _Request:
    """Checked, normalised CPU arguments: users 2-D, outputs 2-D views."""

    items: np.ndarray
    item_type: str
    users: np.ndarray
    single: bool
    k: int
    temperature: float
    mask: np.ndarray | None
    exclude: np.ndarray | None
    bias: np.ndarray | None
    n_threads: int


def _request(items: Any, users: Any, k: Any, temperature: Any, mask: Any, exclude: Any,
             bias: Any, n_threads: Any) -> _Request:
    e = check_topk_items(_host(items, "items"))
    n_items, d = e.shape
    u = check_topk_users(_host(users, "users"), d)
    single = u.ndim == 1
    u2 = u.reshape(1, d) if single else u
    n_users = u2.shape[0]
    kk = check_topk_k(k, n_items)
    t = check_temperature(temperature)
    m = None if mask is None else check_topk_mask(_host(mask, "mask"), n_items, n_users, single)
    ex = None if exclude is None else check_topk_exclude(_host(exclude, "exclude"), n_users,
                                                         single)
    b = None if bias is None else check_topk_bias(_host(bias, "bias"), n_items)
    return _Request(e, _ITEM_TYPE[e.dtype.char], u2, single, kk, t, m, ex, b,
                    check_topk_threads(n_threads))


def _out_arrays(out: TopK | None, r: _Request) -> tuple[np.ndarray, ...] | None:
    """The preallocated outputs as (B, k) / (B,) views, after checks; None if not given."""
    if out is None:
        return None
    if not isinstance(out, TopK):
        raise ValueError(f"out: expected a TopK of preallocated arrays, got {type(out).__name__}")
    n_users, k = r.users.shape[0], r.k
    shape2 = (k,) if r.single else (n_users, k)
    shape1 = () if r.single else (n_users,)
    views = []
    for name, dtype, shape in (("ids", "int64", shape2), ("scores", "float32", shape2),
                               ("probs_topk", "float64", shape2),
                               ("probs_full", "float64", shape2),
                               ("log_normalizer", "float64", shape1)):
        a = check_topk_out(getattr(out, name), f"out.{name}", dtype, shape)
        views.append(a.reshape((n_users, k) if name != "log_normalizer" else (n_users,)))
    return tuple(views)


# ----------------------------------------------------------------------------------------
# The Numba path (the C++ binding makes the same value checks in C++).


def _exclusion_rows(ex: np.ndarray, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray,
                                                                          bool]:
    """Sorted unique CSR rows (ids, offsets, per_user) after range checks."""
    check_exclude_ids(ex, n_items)
    two_d = ex.ndim == 2
    rows = ex if two_d else ex.reshape(1, -1)
    ids: list[np.ndarray] = []
    offsets = [0]
    for row in rows:
        u = np.unique(row[row >= 0])
        ids.append(u)
        offsets.append(offsets[-1] + u.size)
    return (np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, dtype=np.int64),
            np.asarray(offsets, dtype=np.int64), two_d)


def _run_numba(r: _Request, outs: tuple[np.ndarray, ...]) -> None:
    from ._numba import topk as nbk

    n_users, n_items = r.users.shape[0], r.items.shape[0]
    check_finite_array(r.users, "users")
    ex_ids = ex_off = None
    ex_per_user = False
    if r.exclude is not None:
        ex_ids, ex_off, ex_per_user = _exclusion_rows(r.exclude, n_users, n_items)
    check_eligible(r.mask, ex_ids, ex_off, ex_per_user, n_users, n_items, r.k)
    kind = {"float32": nbk.F32, "float16": nbk.F16, "bfloat16": nbk.BF16}[r.item_type]
    items = r.items.view(np.uint16) if kind != nbk.F32 else r.items
    bad_user, bad_item, short = nbk.run(items, kind, r.users, r.k, r.temperature, r.mask,
                                        r.mask is not None and r.mask.ndim == 2, ex_ids, ex_off,
                                        ex_per_user, r.bias, r.n_threads, *outs)
    if bad_user >= 0:
        if r.bias is not None:
            check_finite_array(r.bias, "bias")
        check_finite_topk(r.items, "items")
        raise score_overflow(bad_user, bad_item)
    if short >= 0:
        raise short_row(short, r.k)


# ----------------------------------------------------------------------------------------
# The CUDA path: torch CUDA tensors in and out, checks made on the device.


def _cuda_tensor(x: Any, field: str, dtypes: dict[Any, int], ndims: tuple[int, ...],
                 want: str, device: Any = None) -> Any:
    if not _is_cuda_tensor(x):
        raise ValueError(f"{field}: the cuda backend takes {want} as a contiguous torch CUDA "
                         f"tensor, got {type(x).__module__}.{type(x).__name__}")
    if x.dtype not in dtypes:
        raise ValueError(f"{field}: expected {want}, got dtype {x.dtype}")
    if x.dim() not in ndims:
        raise ValueError(f"{field}: expected {want}, got shape {tuple(x.shape)}")
    if not x.is_contiguous():
        raise ValueError(f"{field}: expected a contiguous tensor (use .contiguous())")
    if device is not None and x.device != device:
        raise ValueError(f"{field}: expected a tensor on {device}, got one on {x.device}")
    return x.detach()


def _to_device(x: Any, field: str, dtype: Any, device: Any) -> Any:
    """A small argument (mask, exclude, bias) on the device, dtype checked, never cast."""
    import torch

    if _is_tensor(x):
        t = x.detach()
    else:
        a = np.asarray(x)
        if a.dtype == np.float64 and a.size == 0:
            a = a.astype(np.int64)  # an empty list
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dtype != dtype:
        raise ValueError(f"{field}: expected dtype {str(dtype).replace('torch.', '')}, got "
                         f"{str(t.dtype).replace('torch.', '')}")
    return t.to(device).contiguous()


def _run_cuda(items: Any, users: Any, k: Any, temperature: Any, mask: Any, exclude: Any,
              bias: Any, out: TopK | None) -> TopK:
    import torch

    mod = _backends.cuda()
    type_of = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
    e = _cuda_tensor(items, "items", type_of, (2,), "a 2-D float32, float16 or bfloat16 matrix")
    n_items, d = e.shape
    dev = e.device
    u = _cuda_tensor(users, "users", {torch.float32: 0}, (1, 2),
                     f"a float32 tensor of shape ({d},) or (B, {d})", dev)
    if u.shape[-1] != d:
        raise ValueError(f"users: expected a float32 tensor of shape ({d},) or (B, {d}), got "
                         f"shape {tuple(u.shape)}")
    single = u.dim() == 1
    u2 = u.reshape(1, d) if single else u
    n_users = u2.shape[0]
    kk = check_topk_k(k, n_items)
    if kk > mod.max_k:
        raise ValueError(f"k: the cuda backend selects at most {mod.max_k} items, got {kk}")
    t = check_temperature(temperature)
    if not bool(torch.isfinite(u2).all()):
        check_finite_array(u.cpu().numpy(), "users")
    m = None
    if mask is not None:
        m = _to_device(mask, "mask", torch.bool, dev)
        if tuple(m.shape) not in ((n_items,), (n_users, n_items)) or (single and m.dim() != 1):
            raise ValueError(f"mask: expected a bool array of shape ({n_items},)"
                             f"{'' if single else f' or ({n_users}, {n_items})'}, got shape "
                             f"{tuple(m.shape)}")
    ex = None
    if exclude is not None:
        ex = _to_device(exclude, "exclude", torch.int64, dev)
        if ex.dim() not in (1, 2) or (ex.dim() == 2 and (single or ex.shape[0] != n_users)):
            raise ValueError(f"exclude: expected a 1-D int64 array of item ids, or a 2-D one of "
                             f"shape ({n_users}, m), got shape {tuple(ex.shape)}")
        two_d = ex.dim() == 2
        bad = (ex < 0) | (ex >= n_items)
        if two_d:
            bad &= ex != -1
        if bool(bad.any()):
            check_exclude_ids(ex.cpu().numpy(), n_items)
        # Sorted unique rows padded with INT64_MAX, as the kernel's binary search wants.
        rows = ex.reshape(1, -1) if not two_d else ex
        rows = torch.where(rows < 0, torch.full_like(rows, _INT64_MAX), rows)
        rows, _ = torch.sort(rows, dim=1)
        if rows.shape[1] > 1:
            dup = torch.zeros_like(rows, dtype=torch.bool)
            dup[:, 1:] = rows[:, 1:] == rows[:, :-1]
            rows = torch.sort(torch.where(dup, torch.full_like(rows, _INT64_MAX), rows), dim=1)[0]
        ex = rows.contiguous()
    b = None
    if bias is not None:
        b = _to_device(bias, "bias", torch.float32, dev)
        if tuple(b.shape) != (n_items,):
            raise ValueError(f"bias: expected a 1-D float32 array of shape ({n_items},), got "
                             f"shape {tuple(b.shape)}")
    _check_eligible_torch(m, ex, n_users, n_items, kk)
    res: tuple[Any, ...]
    if out is not None:
        shape2 = (kk,) if single else (n_users, kk)
        shape1 = () if single else (n_users,)
        for name, dtype, shape in (("ids", torch.int64, shape2), ("scores", torch.float32, shape2),
                                   ("probs_topk", torch.float64, shape2),
                                   ("probs_full", torch.float64, shape2),
                                   ("log_normalizer", torch.float64, shape1)):
            o = _cuda_tensor(getattr(out, name), f"out.{name}", {dtype: 0}, (len(shape),),
                             f"a {str(dtype).replace('torch.', '')} tensor of shape {shape}", dev)
            if tuple(o.shape) != shape:
                raise ValueError(f"out.{name}: expected shape {shape}, got {tuple(o.shape)}")
        res = (out.ids, out.scores, out.probs_topk, out.probs_full, out.log_normalizer)
    else:
        res = cast(tuple[Any, ...], (torch.empty((n_users, kk), dtype=torch.int64, device=dev),
               torch.empty((n_users, kk), dtype=torch.float32, device=dev),
               torch.empty((n_users, kk), dtype=torch.float64, device=dev),
               torch.empty((n_users, kk), dtype=torch.float64, device=dev),
               torch.empty((n_users,), dtype=torch.float64, device=dev)))
    ws_bytes = int(mod.workspace_bytes(n_items, n_users, kk))
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device=dev)
    # uint64 all-ones as int64 -1: the kernels atomicMin into it as unsigned.
    status = torch.full((2,), -1, dtype=torch.int64, device=dev)
    stream = torch.cuda.current_stream(dev).cuda_stream
    mod.topk_softmax(e.data_ptr(), type_of[e.dtype], n_items, d, u2.data_ptr(), n_users, kk, t,
                     0 if b is None else b.data_ptr(), 0 if m is None else m.data_ptr(),
                     m is not None and m.dim() == 2, 0 if ex is None else ex.data_ptr(),
                     0 if ex is None else ex.shape[1], ex is not None and ex.shape[0] > 1,
                     *(x.data_ptr() for x in res), ws.data_ptr(), ws_bytes, status.data_ptr(),
                     dev.index if dev.index is not None else torch.cuda.current_device(),
                     stream)
    st = status.cpu().numpy().view(np.uint64)  # waits for the kernels on this stream
    none = np.iinfo(np.uint64).max
    if st[0] != none:
        user, item = divmod(int(st[0]), n_items)
        if b is not None and not bool(torch.isfinite(b).all()):
            check_finite_array(b.cpu().numpy(), "bias")
        if not bool(torch.isfinite(e).all()):  # found on the device: items may not fit the host
            bad_at = int(torch.nonzero(~torch.isfinite(e.reshape(-1)))[0, 0])
            raise nonfinite_error("items", bool(torch.isnan(e.reshape(-1)[bad_at])), bad_at)
        raise score_overflow(user, item)
    if st[1] != none:
        raise short_row(int(st[1]), kk)
    if out is not None:
        return out
    ids, scores, pt, pf, ln = res
    if single:
        return TopK(ids[0], scores[0], pt[0], pf[0], ln.reshape(()))
    return TopK(ids, scores, pt, pf, ln)


def _check_eligible_torch(mask: Any, ex_rows: Any, n_users: int, n_items: int, k: int) -> None:
    """check_eligible with the counts made on the device: ex_rows are sorted unique rows
    padded with INT64_MAX."""
    import torch

    mask_rows = 0 if mask is None else (n_users if mask.dim() == 2 else 1)
    ex_n = 0 if ex_rows is None else ex_rows.shape[0]
    rows = max(1, mask_rows, ex_n)
    dev = mask.device if mask is not None else (ex_rows.device if ex_rows is not None else None)
    if dev is None:
        return
    m2 = None if mask is None else mask.reshape(-1, n_items)
    n_mask = (torch.full((rows,), n_items, device=dev) if m2 is None
              else m2.sum(dim=1).expand(rows))
    n_ex = torch.zeros(rows, dtype=torch.int64, device=dev)
    if ex_rows is not None:
        valid = ex_rows < n_items
        if m2 is None:
            n_ex = valid.sum(dim=1).expand(rows)
        else:
            idx = torch.where(valid, ex_rows, torch.zeros_like(ex_rows))
            src = m2.expand(rows, n_items) if m2.shape[0] == 1 else m2
            hit = torch.gather(src, 1, idx.expand(rows, -1)) & valid
            n_ex = hit.sum(dim=1)
    counts = torch.stack((n_mask, n_ex)).cpu().numpy()  # one copy to the host
    check_eligible_counts(counts[0], counts[1], k, ex_rows is not None)


# ----------------------------------------------------------------------------------------
# The public function.


def topk_softmax(items: Any, users: Any, k: int, *, temperature: float = 1.0,
                 mask: Any = None, exclude: Any = None, bias: Any = None,
                 backend: str = "auto", n_threads: int = 0, out: TopK | None = None) -> TopK:
    """The k best items per user with their softmax probabilities (see the module doc).

    items: (N, d) float32, float16, or bfloat16 (torch.bfloat16 or uint16 bits).
    users: (d,) for one user (results (k,) and ()) or (B, d) (results (B, k), (B,)).
    k: 1 <= k <= N. temperature: T > 0, probabilities use score / T.
    mask: bool (N,) or (B, N), True = eligible. exclude: int64 ids, (m,) or (B, m)
    with -1 padding. bias: float32 (N,), added to every score.
    backend: "auto" (cuda for CUDA tensors, else cpp, else numba), "cpp", "numba",
    "cuda". n_threads: CPU threads, 0 = all cores. out: a TopK of preallocated
    arrays of the result shapes and dtypes, written in place and returned.
    """
    cuda_in = _is_cuda_tensor(items) or _is_cuda_tensor(users)
    supported = ("cuda", "cpp", "numba") if cuda_in else ("cpp", "numba", "cuda")
    name = _backends.resolve(backend, supported=supported)
    if name == "cuda":
        return _run_cuda(items, users, k, temperature, mask, exclude, bias, out)
    r = _request(items, users, k, temperature, mask, exclude, bias, n_threads)
    outs = _out_arrays(out, r)
    if name == "cpp":
        o = outs if outs is not None else (None,) * 5
        res = _backends.core().topk_softmax(r.items, r.users, r.k, r.temperature, r.mask,
                                            r.exclude, r.bias, r.n_threads, r.item_type, *o)
    else:
        n_users = r.users.shape[0]
        res = outs if outs is not None else (
            np.empty((n_users, r.k), dtype=np.int64), np.empty((n_users, r.k), dtype=np.float32),
            np.empty((n_users, r.k)), np.empty((n_users, r.k)), np.empty(n_users))
        _run_numba(r, res)
    if out is not None:
        return out
    ids, scores, pt, pf, ln = res
    if r.single:
        return TopK(ids[0], scores[0], pt[0], pf[0], ln.reshape(()))
    return TopK(ids, scores, pt, pf, ln)
