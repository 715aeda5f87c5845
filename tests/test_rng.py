"""The counter-based RNG: known answers, identical streams on every backend, and
the right distributions (Kolmogorov-Smirnov at significance 0.001 on fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from promobandit import _backends, _reference, rng
from promobandit._numba import rng as nrng

from .conftest import CPU_BACKENDS

ALPHA = 1e-3  # significance level of every distribution test below

KAT = [  # Random123 kat_vectors for philox4x32_10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def test_cpp_backend_is_built() -> None:
    # The suite must exercise the native kernels, not silently fall back to Numba.
    assert _backends.has_cpp(), _backends._why_missing("cpp")
    assert _backends.has_numba(), _backends._why_missing("numba")


@pytest.mark.parametrize(("ctr", "key", "want"), KAT)
def test_philox_known_answers(ctr, key, want) -> None:
    assert tuple(_reference.philox4x32_10(ctr, key)) == want
    assert tuple(_backends.core().philox4x32_10(list(ctr), list(key))) == want
    c = [np.uint64(x) for x in ctr]
    k = [np.uint64(x) for x in key]
    assert tuple(int(x) for x in nrng.philox_block(*c, *k)) == want


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 12345, 2**64 - 1])
@pytest.mark.parametrize("stream", [0, 7, 2**40 + 3])
def test_streams_identical_on_every_backend(seed: int, stream: int) -> None:
    ref = _reference.Stream(seed, stream, rng.PURPOSE_USER)
    want_u32 = np.array([ref.u32() for _ in range(64)], dtype=np.uint32)
    for b in CPU_BACKENDS:
        np.testing.assert_array_equal(rng.u32(seed, stream, 64, backend=b), want_u32)
    draws = {
        "uniform": lambda b: rng.uniform(seed, stream, 500, backend=b),
        "normal": lambda b: rng.normal(seed, stream, 500, backend=b),
        "gamma0.3": lambda b: rng.gamma(seed, stream, 0.3, 500, backend=b),
        "gamma1": lambda b: rng.gamma(seed, stream, 1.0, 500, backend=b),
        "gamma7.5": lambda b: rng.gamma(seed, stream, 7.5, 500, backend=b),
        "beta": lambda b: rng.beta(seed, stream, 2.0, 0.5, 500, backend=b),
    }
    for name, f in draws.items():
        cpp, nb = f("cpp"), f("numba")
        assert np.array_equal(cpp, nb), name  # bit for bit, not approximately
    # The pure-Python reference draws the same numbers too.
    r = _reference.Stream(seed, stream, rng.PURPOSE_USER)
    np.testing.assert_array_equal(
        rng.gamma(seed, stream, 7.5, 50, backend="cpp"), [r.gamma(7.5) for _ in range(50)]
    )


def test_streams_are_distinct() -> None:
    a = rng.u32(1, 0, 256)
    assert not np.array_equal(a, rng.u32(1, 1, 256))  # another stream
    assert not np.array_equal(a, rng.u32(2, 0, 256))  # another seed
    assert not np.array_equal(a, rng.u32(1, 0, 256, purpose=0))  # another purpose
    np.testing.assert_array_equal(a, rng.u32(1, 0, 256))  # and reproducible


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_uniform_distribution(backend: str) -> None:
    u = rng.uniform(2024, 1, 200_000, backend=backend)
    assert u.min() > 0.0 and u.max() < 1.0  # open interval: safe for log(u)
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    # Pairs of consecutive draws are uncorrelated.
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_normal_distribution(backend: str) -> None:
    z = rng.normal(2024, 2, 200_000, backend=backend)
    assert stats.kstest(z, "norm").pvalue > ALPHA


@pytest.mark.parametrize("shape", [0.2, 0.9, 1.0, 3.3, 50.0])
def test_gamma_distribution(shape: float) -> None:
    g = rng.gamma(2024, 3, shape, 100_000)
    assert stats.kstest(g, "gamma", args=(shape,)).pvalue > ALPHA


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.5, 0.5), (2.0, 8.0), (30.0, 4.0)])
def test_beta_distribution(a: float, b: float) -> None:
    x = rng.beta(2024, 4, a, b, 100_000)
    assert stats.kstest(x, "beta", args=(a, b)).pvalue > ALPHA


def test_chi_square_on_u32_buckets() -> None:
    words = rng.u32(99, 5, 160_000)
    counts = np.bincount(words >> np.uint32(28), minlength=16)  # top 4 bits
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: rng.uniform(-1, 0, 3), "seed"),
        (lambda: rng.uniform(0, -1, 3), "stream"),
        (lambda: rng.uniform(0, 0, -3), "n"),
        (lambda: rng.gamma(0, 0, 0.0, 3), "shape"),
        (lambda: rng.beta(0, 0, 1.0, float("nan"), 3), "b"),
        (lambda: rng.uniform(0, 0, 3, backend="gpu"), "backend"),
    ],
)
def test_bad_rng_arguments(call, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        call()
