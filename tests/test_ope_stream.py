"""Out-of-core and Dask off-policy evaluation equal the in-memory estimates.

A log written as a date-partitioned Parquet dataset with small, uneven row groups is
evaluated by ``evaluate_stream`` (one row group at a time; on a two-worker Dask
LocalCluster) and by ``evaluate`` on the same rows in memory: every value, analytic
interval, bootstrap interval and diagnostic agrees to 1e-9.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from promobandit.evaluate import DiagnosticThresholds, OPEWarning, evaluate, read_decision_log  # noqa: E402
from promobandit.evaluate._kernels import bootstrap_sums, poisson_counts_reference  # noqa: E402
from promobandit.evaluate.stream import dataset_chunks, evaluate_stream  # noqa: E402

K, D = 4, 3
THETA = np.array([[0.5, -1.0, 0.2], [-0.3, 0.8, 0.0], [1.0, 0.1, -0.5], [0.0, 0.0, 0.3]])


def target(contexts: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    s = np.exp(2.0 * contexts @ THETA.T)
    return s / s.sum(axis=1, keepdims=True)


def predictions(contexts: np.ndarray) -> np.ndarray:
    return 1.0 + contexts @ THETA.T * 0.8


def write_dataset(root: Path, n: int, seed: int = 0, sizes: tuple[int, ...] = (3, 2, 4)
                  ) -> Path:
    """n rows over len(sizes) date partitions, each with 1..3 files of uneven row groups."""
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, D))
    logging = np.exp(x @ THETA.T * 0.5)
    logging /= logging.sum(axis=1, keepdims=True)
    logging = 0.8 * logging + 0.2 / K
    a = (logging.cumsum(axis=1) < rs.random(n)[:, None]).sum(axis=1).clip(0, K - 1)
    mu = 1.0 + x @ THETA.T
    r = mu[np.arange(n), a] + rs.normal(size=n)
    q = predictions(x) + 0.1 * rs.normal(size=(n, K))  # a column unrelated to the function
    edges = np.linspace(0, n, sum(sizes) + 1).astype(int)
    f = 0
    for day, n_files in enumerate(sizes):
        folder = root / f"date=2026-01-{day + 1:02d}"
        folder.mkdir(parents=True)
        for j in range(n_files):
            lo, hi = edges[f], edges[f + 1]
            table = pa.table({
                "offer": a[lo:hi].astype(np.int64),
                "propensity": logging[np.arange(lo, hi), a[lo:hi]],
                "reward": r[lo:hi],
                "context": list(x[lo:hi]),
                "action_probs": list(logging[lo:hi]),
                "q": list(q[lo:hi]),
            })
            pq.write_table(table, folder / f"part-{j:05d}.parquet", row_group_size=97 + 13 * f)
            f += 1
    return root


def in_memory(root: Path):
    files = [Path(c.path) for c in dataset_chunks(root)]
    files = list(dict.fromkeys(files))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    log = read_decision_log(table.drop(["q"]))
    q = np.array(table.column("q").to_pylist())
    return log, q


def assert_same(a, b) -> None:
    assert a.n_rows == b.n_rows and a.n_actions == b.n_actions
    assert list(a.estimates) == list(b.estimates)
    for ea, eb in [*zip(a.estimates.values(), b.estimates.values(), strict=True),
                          (a.logged, b.logged)]:
        for field in dataclasses.fields(ea):
            va, vb = getattr(ea, field.name), getattr(eb, field.name)
            if isinstance(va, float):
                assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(
                    vb, rel=1e-9, abs=1e-12), (ea.estimator, field.name, va, vb)
            else:
                assert va == vb, (ea.estimator, field.name)
    da, db = a.diagnostics, b.diagnostics
    for field in dataclasses.fields(da):
        if field.name in ("weight_q99", "messages"):
            continue
        va, vb = getattr(da, field.name), getattr(db, field.name)
        if isinstance(va, float):
            assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(
                vb, rel=1e-9, abs=1e-12), field.name
        else:
            assert va == vb, field.name


def test_bootstrap_draws_are_keyed_by_global_row() -> None:
    rs = np.random.default_rng(3)
    values = rs.normal(size=(1001, 2))
    whole = bootstrap_sums(values, 9, seed=5)
    parts = sum(bootstrap_sums(values[lo:hi], 9, seed=5, row_offset=lo)
                for lo, hi in ((0, 1), (1, 6), (6, 403), (403, 1001)))
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    # The counts of a chunk are the reference counts of its global rows.
    c = poisson_counts_reference(5, 2, 1001)
    one = bootstrap_sums(np.ones((598, 1)), 3, seed=5, row_offset=403)
    assert one[2, 0] == one[2, 1] == c[403:].sum()
    assert c[403:].sum() != c[:598].sum()  # a chunk keyed by position would differ


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("log"), 3000)


def test_stream_equals_in_memory(dataset: Path) -> None:
    log, q = in_memory(dataset)
    assert len(dataset_chunks(dataset)) > 9  # many row groups over 9 files in 3 partitions
    kw = dict(n_bootstrap=60, seed=7, level=0.9)
    ref = evaluate(log, target, ("ips", "snips", "dm", "dr"), reward_predictions=q, **kw)
    got = evaluate_stream(dataset, target, ("ips", "snips", "dm", "dr"),
                          reward_predictions="q", **kw)
    assert_same(got, ref)
    assert got.settings["streamed"] is True
    assert not math.isnan(got["dr"].boot_low) and math.isnan(got["dm"].boot_low)
    assert math.isnan(got.diagnostics.weight_q99)
    # A prediction function (a model fitted beforehand) in place of the column.
    ref_f = evaluate(log, target, ("dr",), reward_predictions=predictions(log.contexts), **kw)
    got_f = evaluate_stream(dataset, target, ("dr",), reward_predictions=predictions, **kw)
    assert_same(got_f, ref_f)
    assert got_f["dr"].value != got["dr"].value


def test_array_target_indexed_by_global_row(dataset: Path) -> None:
    log, _ = in_memory(dataset)
    tp = target(log.contexts, None)
    ref = evaluate(log, tp, ("ips", "snips"), n_bootstrap=30, seed=1)
    got = evaluate_stream(dataset, tp, ("ips", "snips"), n_bootstrap=30, seed=1)
    assert_same(got, ref)


def test_stream_warns_as_in_memory(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "log", 400, seed=2, sizes=(1,))
    log, _ = in_memory(root)
    th = DiagnosticThresholds(min_ess_fraction=0.5, max_weight=3.0)

    def greedy(contexts: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        out = np.zeros((contexts.shape[0], K))
        out[:, 3] = 1.0
        return out

    with warnings.catch_warnings(record=True) as ref_w:
        warnings.simplefilter("always")
        evaluate(log, greedy, ("ips",), thresholds=th)
    with warnings.catch_warnings(record=True) as got_w:
        warnings.simplefilter("always")
        evaluate_stream(root, greedy, ("ips",), thresholds=th)
    ref_msgs = sorted(str(w.message) for w in ref_w if w.category is OPEWarning)
    got_msgs = sorted(str(w.message) for w in got_w if w.category is OPEWarning)
    assert len(got_msgs) == len(ref_msgs) == 2
    # The same words, but the streamed one has no weight quantile to quote.
    assert got_msgs[0] == ref_msgs[0] and got_msgs[0].startswith("effective sample size")
    assert got_msgs[1] == re.sub(r"; 99th percentile [^)]*", "", ref_msgs[1])


def test_evaluate_out_of_core_is_the_stream(dataset: Path) -> None:
    log, _ = in_memory(dataset)
    got = evaluate(dataset, target, ("ips", "snips"), out_of_core=True, n_bootstrap=20)
    assert_same(got, evaluate(log, target, ("ips", "snips"), n_bootstrap=20))
    with pytest.raises(ValueError, match="reward_model: a cross-fitted model"):
        evaluate(dataset, target, ("dr",), out_of_core=True, reward_model=object())
    with pytest.raises(ValueError, match="log: out of core expects a Parquet path"):
        evaluate(log, target, out_of_core=True)


def test_bad_input_names_the_field_and_the_row_group(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(ValueError, match="reward_predictions"):
        evaluate_stream(dataset, target, ("dr",))
    with pytest.raises(ValueError, match="estimators: 'clipped-ips' is not streamed"):
        evaluate_stream(dataset, target, ("clipped-ips",))
    with pytest.raises(ValueError, match="reward_predictions: no column 'nope'"):
        evaluate_stream(dataset, target, ("dr",), reward_predictions="nope")
    with pytest.raises(ValueError, match="source: no such file"):
        evaluate_stream(tmp_path / "missing", target)
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"offer": [0, 1], "propensity": [0.5, 0.5], "reward": [1.0, 0.0]}),
                   bad / "part-00000.parquet")
    pq.write_table(pa.table({"offer": [0, 1], "propensity": [0.5, 0.0], "reward": [1.0, 0.0]}),
                   bad / "part-00001.parquet")
    with pytest.raises(ValueError, match=r"propensities: .* at row 1 .*part-00001.parquet row "
                                         r"group 0 \(log rows 2..3\)"):
        evaluate_stream(bad, lambda c, m: np.full((c.shape[0], 2), 0.5))


def test_dask_cluster_equals_in_memory(dataset: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="the 'distributed' extra (dask) "
                                      "is not installed")
    log, q = in_memory(dataset)
    kw = dict(n_bootstrap=40, seed=3)
    ref = evaluate(log, target, ("ips", "snips", "dr"), reward_predictions=q, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = evaluate(str(dataset), target, ("ips", "snips", "dr"), reward_predictions="q",
                       client=client, **kw)
    assert_same(got, ref)
