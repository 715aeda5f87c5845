"""Off-policy evaluation of a decision log too large for memory, on one machine or a cluster.

``evaluate_stream`` reads a Parquet dataset (the engine's folder of ``part-NNNNN.parquet``
files, or a tree of them partitioned by date, ``date=2026-01-01/part-00000.parquet``)
one row group at a time and keeps only running totals, so memory is bounded by one row
group (and, with a ``dask.distributed.Client``, one row group per worker thread).

What is streamed, per row group:

- the co-moment matrix of the per-row quantities [r, w, w r, dm, w q(x, a)] (merged
  across row groups with Chan's pairwise update, which is as accurate as two passes):
  every estimate and analytic interval of IPS, SNIPS (delta method), DM and DR is a
  linear combination of those columns, so they come out of the totals exactly;
- the Poisson-bootstrap sums, with the draws keyed by the row's global index (row i of
  replicate b is word i of the Philox stream (seed, b)), so each row group adds its own
  rows' draws and the replicates are those of the in-memory bootstrap;
- the diagnostics' totals (weights' maximum, propensities' minimum, logged offer counts,
  the target's mass per offer, support).

The results equal ``evaluate(read_decision_log(path), ...)`` up to float summation order
(1e-12 relative in the tests), bootstrap intervals included. Differences:

- the weights' 99th percentile is not computed (``Diagnostics.weight_q99`` is NaN);
- DM and DR need rewards predicted by a model fitted beforehand (a cross-fitted model
  needs every row twice): ``reward_predictions`` names a list<float64> column of K
  predictions per row written into the dataset (e.g. by a cross-fitting job), or is a
  function ``contexts (m, d) -> (m, K)`` such as a model fitted on a sample of the log
  (its rows should then be left out of the evaluated log, or DR's correction is biased
  towards zero on them). DM has no interval, as in ``evaluate`` with
  ``reward_predictions``; IPS and SNIPS need no model and are exact;
- clipped and switch estimators are not streamed; rows with a null reward raise (no
  ``missing_reward``).

Row order: the files in sorted order of their path relative to the dataset root (so a
date-partitioned tree reads in date order), their row groups in file order. The
bootstrap's replicates depend on this order, as they depend on row order in memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import require
from .._validation import check_int, check_range, check_seed
from .log import READ_COLUMNS, read_decision_log
from .ope import (
    DEFAULT_ESTIMATORS,
    LOGGED,
    DiagnosticThresholds,
    Estimate,
    EvaluationReport,
    OPEWarning,
    _make_diagnostics,
    _names,
    _z,
    bootstrap_interval,
)
from .ope import evaluate as evaluate_in_memory
from .targets import TargetPolicy, check_target_chunk, target_function

STREAM_ESTIMATORS = ("ips", "snips", "dm", "dr")

# Columns of the per-row matrix whose co-moments are streamed.
_R, _W, _WR, _DM, _WQ = range(5)

__all__ = ["STREAM_ESTIMATORS", "Chunk", "dataset_chunks", "evaluate", "evaluate_stream"]


def evaluate(log: Any, policy: TargetPolicy,
             estimators: Sequence[str] | str = DEFAULT_ESTIMATORS, *,
             out_of_core: bool = False, client: Any = None, **kwargs: Any) -> EvaluationReport:
    """``promobandit.evaluate.evaluate``: the in-memory ``ope.evaluate`` (every keyword of
    it), or, with ``out_of_core=True`` or a ``client``, ``evaluate_stream`` on a Parquet
    log never held whole in memory.

    out_of_core: `log` is a Parquet file, a folder of them (partitions searched
        recursively) or a list of files, read one row group at a time: ips, snips, dm and
        dr, with dm / dr given ``reward_predictions`` as a column name of the dataset or a
        fitted model's function contexts -> (n, K). Accepts level, n_bootstrap, seed,
        reward_predictions and thresholds; the other keywords raise.
    client: a ``dask.distributed.Client``; implies out_of_core (row groups as its tasks).
    """
    if not (out_of_core or client is not None):
        return evaluate_in_memory(log, policy, estimators, **kwargs)
    if kwargs.get("reward_model") is not None:
        raise ValueError("reward_model: a cross-fitted model is not fitted out of core; pass "
                         "reward_predictions (a column name or a fitted model's function)")
    allowed = {"level", "n_bootstrap", "seed", "reward_predictions", "thresholds",
               "n_actions", "check_action_probs"}
    unknown = sorted(set(kwargs) - allowed - {"reward_model"})
    if unknown:
        raise ValueError(f"{unknown[0]}: not supported out of core (accepted: "
                         f"{sorted(allowed)})")
    kwargs.pop("reward_model", None)
    if not isinstance(log, (str, Path, list, tuple)):
        raise ValueError(f"log: out of core expects a Parquet path, got {type(log).__name__}")
    return evaluate_stream(log, policy, estimators, client=client, **kwargs)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One row group of the dataset: rows start .. start + n_rows - 1 of the whole log."""

    path: str
    row_group: int
    start: int
    n_rows: int


def dataset_chunks(source: str | Path | Sequence[str | Path]) -> list[Chunk]:
    """The row groups of a Parquet dataset in log order, with their global row offsets
    (from the files' footers only; no data is read)."""
    pq = require("pyarrow.parquet", "evaluate", "reading a decision log")

    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.exists():
            raise ValueError(f"source: no such file or folder {str(root)!r}")
        files = (sorted(root.rglob("*.parquet"), key=lambda p: p.relative_to(root).as_posix())
                 if root.is_dir() else [root])
    else:
        files = [Path(f) for f in source]
    if not files:
        raise ValueError(f"source: no .parquet files in {str(source)!r}")
    chunks = []
    start = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            m = meta.row_group(g).num_rows
            if m:
                chunks.append(Chunk(str(f), g, start, m))
                start += m
    if not chunks:
        raise ValueError("offer: the log has no rows")
    return chunks


def _infer_n_actions(chunks: list[Chunk]) -> int:
    """K from the offer column's maximum in the footers' statistics (every row group)."""
    pq = require("pyarrow.parquet", "evaluate", "reading a decision log")

    top = -1
    for path in sorted({c.path for c in chunks}):
        meta = pq.ParquetFile(path).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        if "offer" not in names:
            raise ValueError(f"offer: missing column in {path!r}")
        j = names.index("offer")
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(j).statistics
            if st is None or not st.has_min_max:
                raise ValueError("n_actions: the files carry no offer statistics; pass n_actions")
            top = max(top, int(st.max))
    return top + 1


@dataclasses.dataclass
class _Partial:
    """Totals over some rows; merged in log order."""

    n: int
    mean: np.ndarray  # (5,) column means
    comom: np.ndarray  # (5, 5) sum of outer products of the centred columns
    boot: np.ndarray | None  # (B, m + 1) bootstrap sums
    w_max: float
    p_min: float
    n_tiny: int
    n_positive: int
    n_informative: int
    counts: np.ndarray  # (K,) logged offers
    target_mass: np.ndarray  # (K,)
    unsupported: float
    n_known: int

    def merge(self, o: _Partial) -> _Partial:
        n = self.n + o.n
        delta = o.mean - self.mean
        mean = self.mean + delta * (o.n / n)
        comom = self.comom + o.comom + np.outer(delta, delta) * (self.n * o.n / n)
        boot = None if self.boot is None or o.boot is None else self.boot + o.boot
        return _Partial(n, mean, comom, boot, max(self.w_max, o.w_max),
                        min(self.p_min, o.p_min), self.n_tiny + o.n_tiny,
                        self.n_positive + o.n_positive, self.n_informative + o.n_informative,
                        self.counts + o.counts, self.target_mass + o.target_mass,
                        self.unsupported + o.unsupported, self.n_known + o.n_known)


def _chunk_partial(chunk: Chunk, policy: TargetPolicy, n_total: int, k: int,
                   names: tuple[str, ...], q_source: str | Callable[..., Any] | None,
                   n_boot: int, seed: int, min_propensity: float,
                   check_action_probs: bool) -> _Partial:
    """The totals of one row group (runs on a Dask worker when a client is given)."""
    pq = require("pyarrow.parquet", "evaluate", "reading a decision log")
    from ._kernels import bootstrap_sums

    pf = pq.ParquetFile(chunk.path)
    present = set(pf.schema_arrow.names)
    cols = [c for c in READ_COLUMNS if c in present]
    if isinstance(q_source, str):
        if q_source not in present:
            raise ValueError(f"reward_predictions: no column {q_source!r} in {chunk.path!r}")
        cols.append(q_source)
    table = pf.read_row_group(chunk.row_group, columns=cols)
    where = (f"{chunk.path} row group {chunk.row_group} "
             f"(log rows {chunk.start}..{chunk.start + chunk.n_rows - 1})")
    try:
        log = read_decision_log(table.select([c for c in cols if c != q_source]) if
                                isinstance(q_source, str) else table,
                                n_actions=k, check_action_probs=check_action_probs)
    except ValueError as exc:
        raise ValueError(f"{exc} [in {where}]") from exc
    m = len(log)
    a, p, r = log.actions, log.propensities, log.rewards
    contexts = log.contexts if log.contexts is not None else np.empty((m, 0))
    rows = slice(chunk.start, chunk.start + m)
    tp = check_target_chunk(target_function(policy, n_total, k)(contexts, log.eligible, rows),
                            m, k, log.eligible, chunk.start)
    idx = np.arange(m)
    w = tp[idx, a] / p
    v = np.zeros((m, 5))
    v[:, _R] = r
    v[:, _W] = w
    v[:, _WR] = w * r
    q = None
    if q_source is not None:
        if isinstance(q_source, str):
            from .log import _list_column

            q = _list_column(table, q_source, m, float)
            if q is None or q.shape != (m, k) or np.isnan(q).any():
                raise ValueError(f"reward_predictions: column {q_source!r} must hold {k} "
                                 f"predictions in every row [in {where}]")
        else:
            q = np.asarray(q_source(contexts), dtype=np.float64)
            if q.shape != (m, k):
                raise ValueError(f"reward_predictions: the function returned shape {q.shape}, "
                                 f"expected ({m}, {k}) [in {where}]")
        if not np.isfinite(q).all():
            raise ValueError(f"reward_predictions: contain NaN or inf [in {where}]")
        v[:, _DM] = np.einsum("ij,ij->i", tp, q)
        v[:, _WQ] = w * q[idx, a]
    mean = v.mean(axis=0)
    c = v - mean
    comom = c.T @ c
    boot = None
    if n_boot:
        # The bootstrap columns of the in-memory path, in its order, computed the same way.
        bcols = [r]
        for name in names:
            if name == "ips":
                bcols.append(w * r)
            elif name == "snips":
                bcols += [w * r, w]
            elif name == "dr":
                assert q is not None
                bcols.append(v[:, _DM] + w * (r - q[idx, a]))
        boot = bootstrap_sums(np.column_stack(bcols), n_boot, seed, row_offset=chunk.start)
    positive = w > 0.0
    unsupported = 0.0
    n_known = 0
    if log.action_probs is not None:
        known = ~np.isnan(log.action_probs[:, 0])
        n_known = int(known.sum())
        unsupported = float(np.where(log.action_probs[known] > 0.0, 0.0, tp[known]).sum())
    return _Partial(m, mean, comom, boot, float(w.max()), float(p.min()),
                    int((p < min_propensity).sum()), int(positive.sum()),
                    int((positive & (r != 0.0)).sum()), np.bincount(a, minlength=k),
                    tp.sum(axis=0), unsupported, n_known)


def evaluate_stream(source: str | Path | Sequence[str | Path], policy: TargetPolicy,
                    estimators: Sequence[str] | str = ("ips", "snips"), *,
                    n_actions: int | None = None, level: float = 0.95, n_bootstrap: int = 0,
                    seed: int = 0, reward_predictions: str | Callable[..., Any] | None = None,
                    thresholds: DiagnosticThresholds | None = None, client: Any = None,
                    check_action_probs: bool = True) -> EvaluationReport:
    """``evaluate`` on a Parquet decision-log dataset read one row group at a time.

    source: a Parquet file, a folder of them (searched recursively: ``date=.../part-*``
        partitions work) or a list of files, in the decision-log schema.
    policy: the target, as in ``evaluate`` (an object, a function of (contexts, masks), or
        an (n, K) array indexed by global row); with a client it must pickle.
    estimators: some of STREAM_ESTIMATORS ("ips", "snips", "dm", "dr").
    n_actions: K; by default the offer column's maximum + 1 from the files' statistics.
    reward_predictions: for dm / dr, a list<float> column name of the dataset holding K
        predictions per row, or a function contexts (m, d) -> (m, K) predictions of an
        already fitted model (see the module docstring).
    n_bootstrap, seed, level, thresholds: as in ``evaluate``; the bootstrap replicates are
        those ``evaluate`` draws for the same rows in the same order.
    client: a ``dask.distributed.Client``: the row groups are processed as its tasks
        (the workers must see the files); None processes them here, one at a time.
    Returns an EvaluationReport (settings["streamed"] is True); warns (OPEWarning) as
    ``evaluate`` does; raises ValueError naming the field, and the file and row group.
    """
    import warnings

    names = tuple(_names(estimators))
    for name in names:
        if name not in STREAM_ESTIMATORS:
            raise ValueError(f"estimators: {name!r} is not streamed; expected some of "
                             f"{STREAM_ESTIMATORS} (evaluate it in memory on a sample)")
    level = check_range("level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, 0)
    seed = check_seed(seed)
    th = thresholds or DiagnosticThresholds()
    needs_model = "dm" in names or "dr" in names
    if needs_model and reward_predictions is None:
        raise ValueError("reward_predictions: dm and dr need a column name of the dataset or "
                         "a function contexts -> (m, K) predictions when streamed")
    if reward_predictions is not None and not (isinstance(reward_predictions, str)
                                               or callable(reward_predictions)):
        raise ValueError("reward_predictions: expected a column name or a function, got "
                         f"{type(reward_predictions).__name__}")
    q_source = reward_predictions if needs_model else None
    chunks = dataset_chunks(source)
    n = chunks[-1].start + chunks[-1].n_rows
    if n_actions is None:
        k = _infer_n_actions(chunks)
    else:
        k = check_int("n_actions", n_actions, 1)
    args = (policy, n, k, names, q_source, n_bootstrap, seed, th.min_propensity,
            check_action_probs)
    if client is None:
        parts = (_chunk_partial(c, *args) for c in chunks)
        total = None
        for part in parts:
            total = part if total is None else total.merge(part)
    else:
        require("dask.distributed", "distributed", "evaluation on a Dask cluster")
        futures = client.map(_chunk_partial, chunks, *[[a] * len(chunks) for a in args],
                             pure=False)
        total = None
        # Merge in log order as each arrives; only one partial waits at a time per task.
        for fut in futures:
            part = fut.result()
            total = part if total is None else total.merge(part)
            fut.release()
    assert total is not None
    report = _report(total, names, level, n_bootstrap, seed, th, k)
    prefix = ""
    for message in report.diagnostics.messages:
        warnings.warn(prefix + message, OPEWarning, stacklevel=2)
    return report


def _report(t: _Partial, names: tuple[str, ...], level: float, n_boot: int, seed: int,
            th: DiagnosticThresholds, k: int) -> EvaluationReport:
    n, mu, cm = t.n, t.mean, t.comom
    z = _z(level)

    def se_of(a: np.ndarray) -> float:
        if n < 2:
            return math.nan
        return math.sqrt(max(float(a @ cm @ a) / (n - 1), 0.0) / n)

    e = np.eye(5)
    logged_mean = float(mu[_R])
    logged_se = se_of(e[_R])
    logged = Estimate(estimator=LOGGED, value=logged_mean, stderr=logged_se,
                      ci_low=logged_mean - z * logged_se, ci_high=logged_mean + z * logged_se,
                      level=level, n_rows=n, ess=float(n), vs_logged=0.0, vs_logged_low=0.0,
                      vs_logged_high=0.0)
    sum_w = n * float(mu[_W])
    sum_w2 = float(cm[_W, _W]) + n * float(mu[_W]) ** 2
    ess_w = 0.0 if sum_w2 == 0.0 else sum_w ** 2 / sum_w2
    estimates: dict[str, Estimate] = {}
    boot_spec: list[tuple[str, int, int | None]] = []
    col = 1
    for name in names:
        if name == "snips":
            den_mean = float(mu[_W])
            value = float(mu[_WR] / mu[_W]) if den_mean > 0 else math.nan
            a = (e[_WR] - value * e[_W]) / den_mean if den_mean > 0 else e[_WR] * math.nan
        else:
            a = {"ips": e[_WR], "dm": e[_DM], "dr": e[_DM] + e[_WR] - e[_WQ]}[name]
            value = float(a @ mu)
        se = se_of(a)
        d_se = se_of(a - e[_R])
        if name == "dm":
            se = d_se = math.nan
        estimates[name] = Estimate(
            estimator=name, value=value, stderr=se, ci_low=value - z * se,
            ci_high=value + z * se, level=level, n_rows=n,
            ess=float(n) if name == "dm" else ess_w,
            vs_logged=value - logged_mean, vs_logged_low=value - logged_mean - z * d_se,
            vs_logged_high=value - logged_mean + z * d_se)
        if name == "dm" or n_boot == 0:
            continue
        if name == "snips":
            boot_spec.append((name, col, col + 1))
            col += 2
        else:
            boot_spec.append((name, col, None))
            col += 1
    if n_boot and t.boot is not None:
        sums = t.boot
        counts = sums[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, i_num, i_den in boot_spec:
                reps = sums[:, i_num] / (counts if i_den is None else sums[:, i_den])
                lo, hi, bse = bootstrap_interval(reps, level)
                estimates[name] = dataclasses.replace(estimates[name], boot_low=lo,
                                                      boot_high=hi, boot_stderr=bse)
            lo, hi, bse = bootstrap_interval(sums[:, 0] / counts, level)
        logged = dataclasses.replace(logged, boot_low=lo, boot_high=hi, boot_stderr=bse)
    unlogged = t.counts == 0
    mass = np.where(unlogged, t.target_mass, 0.0)
    diagnostics = _make_diagnostics(
        n, ess_w, float(mu[_W]), se_of(e[_W]), t.w_max, math.nan, t.p_min, t.n_tiny,
        t.counts, mass, t.unsupported, t.n_known, t.n_informative, math.nan, math.nan,
        math.nan, math.nan, th)
    settings = {"estimators": names, "n_bootstrap": n_boot, "n_bootstrap_dm": 0, "seed": seed,
                "thresholds": dataclasses.asdict(th), "streamed": True,
                "reward_model": "predictions given" if "dm" in names or "dr" in names
                else None}
    return EvaluationReport(n, k, level, estimates, logged, diagnostics, settings)
