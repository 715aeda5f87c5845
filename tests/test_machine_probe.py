"""The machine probes behind the benchmarks' limits (promobandit._core.probe_*).

Timings are never asserted (they are what the probes report, not what they are
checked for); what is checked is that the work was really done (checksums that
only the full read / triad / FMA chains produce), that every instruction set the
CPU has gives the same checksum, and that bad arguments raise a ValueError naming
the field.
"""

from __future__ import annotations

import math

import pytest

from promobandit import _backends

pytestmark = pytest.mark.skipif(not _backends.has_cpp(), reason="C++ backend not built")

ISAS = ["scalar", "avx2", "avx512"]


def core():
    return _backends.core()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_read_sums_every_element(isa: str, threads: int) -> None:
    if not core().probe_isa_supported(isa):
        pytest.skip(f"CPU lacks {isa}")
    n_bytes = 3 * 64 * 1000 + 17  # not a multiple of the thread count or of 64 bytes
    r = core().probe_stream("read", n_bytes, threads, 2, isa)
    per_thread_floats = n_bytes // 64 // threads * 16
    assert r["checksum"] == per_thread_floats * threads  # every element is 1.0
    assert r["bytes"] == per_thread_floats * threads * 4
    assert r["threads"] == threads and r["isa"] == isa
    assert len(r["seconds"]) == 2 and all(s > 0 for s in r["seconds"])


@pytest.mark.parametrize("isa", ISAS)
def test_triad_writes_b_plus_3c(isa: str) -> None:
    if not core().probe_isa_supported(isa):
        pytest.skip(f"CPU lacks {isa}")
    r = core().probe_stream("triad", 64 * 1001, 2, 1, isa)
    # a = 1 + 3 * 2 = 7 at the first and last element of each thread's slice.
    assert r["checksum"] == 2 * (7 + 7)
    assert r["bytes"] == 3 * (64 * 1001 // 64 // 2 * 16 * 2) * 4


@pytest.mark.parametrize("isa", ISAS)
def test_fma_counts_lanes_and_chains(isa: str) -> None:
    if not core().probe_isa_supported(isa):
        pytest.skip(f"CPU lacks {isa}")
    r = core().probe_fma(1000, 2, 1, isa)
    lanes = {"scalar": 1, "avx2": 8, "avx512": 16}[isa]
    chains = {"scalar": 8, "avx2": 12, "avx512": 24}[isa]
    assert r["lanes"] == lanes
    assert r["flops"] == 1000 * chains * lanes * 2 * 2
    # Every chain x <- 0.999 x + 0.001 converges to 1 from its start in [1, 4]: the
    # checksum is a finite sum of chains * lanes values near 1 per thread.
    assert math.isfinite(r["checksum"])
    assert 2 * chains * lanes * 0.9 < r["checksum"] < 2 * chains * lanes * 4


def test_clock_counts_cycles() -> None:
    r = core().probe_clock(1000, 1, 2)
    assert r["checksum"] == 8000.0 or r["cycles"] == 0  # 8 adds of 1 per iteration
    if r["cycles"]:
        assert r["cycles"] == 8000.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.probe_stream("copy"), "kind"),
        (lambda c: c.probe_stream("read", 16, 1, 1), "n_bytes"),
        (lambda c: c.probe_stream("read", 1 << 20, 1, 0), "reps"),
        (lambda c: c.probe_stream("read", 1 << 20, -1, 1), "n_threads"),
        (lambda c: c.probe_stream("read", 1 << 20, 1, 1, "sse9"), "isa"),
        (lambda c: c.probe_fma(0), "iters"),
        (lambda c: c.probe_clock(0), "iters"),
    ],
)
def test_bad_arguments_name_the_field(call, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        call(core())
