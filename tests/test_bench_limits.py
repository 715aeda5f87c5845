"""The arithmetic of bench/bench_topk.py's limits and verdicts (no timing is run here).

A row's limit is memory bandwidth for B = 1 and the FMA peak for B > 1; its fraction is
the time floor (bytes / bandwidth, or 2 N d B flops / peak) over the median time, and the
target verdicts follow from those fractions. These are the numbers bench/README.md
reports, so a slip here would misreport every row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
bench_topk = pytest.importorskip("bench_topk")


def limits(read: float, peak: float) -> dict[str, float]:
    return {"read_GBps": read, "fma_peak_GFLOPs": peak}


def row(backend: str, b: int, median: float, cpu: float | None = None, n: int = 1_000_000,
        d: int = 64, dtype: str = "float32") -> dict:
    r = {"backend": backend, "dtype": dtype, "N": n, "d": d, "B": b, "k": 100,
         "median_s": median, "min_s": median, "max_s": median, "reps": 3}
    if cpu is not None:
        r["cpu_median_s"] = cpu
    return r


def test_bandwidth_row_fraction() -> None:
    # 1M x 64 float32 = 256 MB; at 40 GB/s the floor is 6.4 ms; 8 ms median -> 80%.
    w = bench_topk.with_limits(row("cpp", 1, 0.008, cpu=0.0128), limits(40.0, 500.0), 2)
    assert w["limit"] == "bandwidth"
    assert w["floor_s"] == pytest.approx(256e6 / 40e9)
    assert w["fraction"] == pytest.approx(0.8)
    assert w["fraction_cpu"] is None  # memory-bound: CPU time is no measure of bandwidth
    # float16 items are half the bytes: the same time is half the fraction.
    w16 = bench_topk.with_limits(row("cpp", 1, 0.008, dtype="float16"), limits(40.0, 500.0))
    assert w16["fraction"] == pytest.approx(0.4)


def test_fma_row_fraction_and_no_cpu_figure_for_baselines() -> None:
    # 2 * 1M * 64 * 256 = 32.8 GFLOP; at 500 GFLOP/s the floor is 65.5 ms.
    flops = 2.0 * 1_000_000 * 64 * 256
    w = bench_topk.with_limits(row("torch", 256, 0.131, cpu=0.5), limits(40.0, 500.0), 2)
    assert w["limit"] == "FMA peak"
    assert w["floor_s"] == pytest.approx(flops / 500e9)
    assert w["fraction"] == pytest.approx(flops / 500e9 / 0.131)
    assert w["fraction_cpu"] is None  # a baseline's CPU time is not its cost


def result(b1_median: float, b256_median: float, b1_cpu: float, b256_cpu: float) -> dict:
    lim = {"read_GBps": 40.0, "fma_peak_GFLOPs": 500.0}
    return {"threads": 2, "probe_seconds": [], "limits_before": lim, "limits_after": lim,
            "rows": [row("cpp", 1, b1_median, b1_cpu), row("cpp", 256, b256_median, b256_cpu)]}


def test_targets_met_missed_and_met_by_cpu_time() -> None:
    floor1 = 256e6 / 40e9
    floor256 = 2.0 * 1_000_000 * 64 * 256 / 500e9
    met = bench_topk.targets(result(floor1 / 0.9, floor256 * 1.4, 2 * floor1 / 0.9,
                                    2 * floor256 * 1.4))
    assert met[0].endswith(": met") and "90% of the read bandwidth" in met[0]
    assert met[1].endswith(": met") and "1.40x the FMA-peak floor" in met[1]
    loaded = bench_topk.targets(result(floor1 / 0.5, floor256 * 3.0, 2 * floor1 / 0.85,
                                       2 * floor256 * 1.45))
    assert loaded[0].endswith(": MISSED")  # B = 1 is judged by wall time only
    assert loaded[1].endswith("met by CPU time, MISSED by wall time")
    missed = bench_topk.targets(result(floor1 / 0.5, floor256 * 3.0, 2 * floor1 / 0.5,
                                       2 * floor256 * 3.0))
    assert missed[0].endswith(": MISSED") and missed[1].endswith(": MISSED")


def test_run_limits_take_the_best_probe() -> None:
    res = {"probe_seconds": [512 * 2**20 / 50e9], "limits_before": limits(40.0, 400.0),
           "limits_after": limits(45.0, 500.0)}
    lim = bench_topk.run_limits(res)
    assert lim["read_GBps"] == pytest.approx(50.0)  # an interleaved probe read fastest
    assert lim["fma_peak_GFLOPs"] == 500.0
