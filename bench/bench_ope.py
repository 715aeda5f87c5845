"""Rows per second of the off-policy estimators, beside a plain NumPy implementation.

Workload: a synthetic decision log of n rows (K = 6 offers), a target policy given as
an (n, K) probability matrix and cross-fitted reward predictions q (n, K) given as an
array (the reward model's fit is timed on its own row, once), so the figures are the
estimators themselves.
Timed per size (1M and 10M rows):
  - promobandit ``evaluate`` per estimator (IPS, SNIPS, DR) and all three at once:
    point estimate, analytic CI, the paired difference to the logged policy and every
    diagnostic (ESS, weight quantiles, support checks), with the target validated;
  - the textbook formulas in plain NumPy (point estimate + CLT interval only, no checks);
  - ``DecisionLog.from_arrays`` (validating the log once);
  - the bootstrap: promobandit's Numba Poisson bootstrap against the same algorithm in
    NumPy on the same number of threads (Poisson(1) weights drawn by NumPy's Generator,
    one per row block, blocks spread over a thread pool, weighted sums by BLAS): B
    replicates of the sums of the IPS/SNIPS/DR columns and of the weights, the same
    (B, 4) output; both are checked to give the same bootstrap standard errors;
  - the cross-fitted Ridge reward model (5 folds) on the 1M log, once.
Each figure is the median of --repeats runs with the min and max.

Out of core (--rows N[,N...]): a decision log of N rows, K = 10 offers and 4 context
features, written as a Parquet dataset partitioned by date (10M rows a day, row groups of
1M rows), then evaluated by ``evaluate_stream`` in a fresh process: IPS + SNIPS + DR with
analytic intervals (the target and the reward model are functions of the context, as a
deployed policy and a model fitted beforehand would be), and the Poisson bootstrap
(--ooc-boot replicates, on the first --ooc-boot-rows rows), one row group at a time or
on a Dask LocalCluster (--dask-workers). Reports wall time and the process's peak RSS.

Run: python bench/bench_ope.py [--quick] [--repeats R] [--json PATH]
     python bench/bench_ope.py --rows 10000000,30000000 [--ooc-dir DIR] [--dask-workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine

K, D = 6, 8


def make_log(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A log with softmax logging probabilities, a different target and noisy predictions."""
    rs = np.random.default_rng(seed)
    scores = rs.normal(size=(n, K)).astype(np.float64)
    logging = np.exp(scores / 2.0)
    logging /= logging.sum(axis=1, keepdims=True)
    logging = 0.9 * logging + 0.1 / K
    target = np.exp(scores / 0.5)
    target /= target.sum(axis=1, keepdims=True)
    cum = logging.cumsum(axis=1)
    actions = np.minimum((cum < rs.random(n)[:, None]).sum(axis=1), K - 1).astype(np.int64)
    rows = np.arange(n)
    mu = 1.0 + scores  # expected reward, currency units
    rewards = mu[rows, actions] + rs.normal(size=n)
    q = mu + 0.3 * rs.normal(size=(n, K))
    return {"actions": actions, "propensities": logging[rows, actions], "rewards": rewards,
            "target": target, "q": q}


def numpy_estimates(data: dict[str, np.ndarray], which: str) -> tuple[float, float]:
    """The textbook estimator and its CLT standard error, nothing else."""
    a, p, r, tp = data["actions"], data["propensities"], data["rewards"], data["target"]
    n = a.size
    rows = np.arange(n)
    w = tp[rows, a] / p
    if which == "ips":
        t = w * r
        return float(t.mean()), float(t.std(ddof=1) / np.sqrt(n))
    if which == "snips":
        v = float((w * r).sum() / w.sum())
        infl = w * (r - v) / w.mean()
        return v, float(infl.std(ddof=1) / np.sqrt(n))
    q = data["q"]
    t = np.einsum("ij,ij->i", tp, q) + w * (r - q[rows, a])
    return float(t.mean()), float(t.std(ddof=1) / np.sqrt(n))


# Rows per block of the NumPy Poisson bootstrap: a (B = 100, 16384) float64 weight block
# is 13 MB, so a thread's weights stay near the cache while BLAS sums them.
NP_BOOT_ROWS = 16384


def numpy_poisson_bootstrap(cols: np.ndarray, n_boot: int, seed: int,
                            threads: int) -> np.ndarray:
    """The Poisson bootstrap in NumPy: (n_boot, m + 1) sums of the (n, m) columns under
    Poisson(1) row weights, the last column the sum of the weights, as
    ``bootstrap_sums`` returns. Row blocks are spread over `threads` threads (NumPy's
    samplers and BLAS release the GIL), each block with its own generator, so the
    result does not depend on the thread count."""
    from concurrent.futures import ThreadPoolExecutor

    n = cols.shape[0]
    aug = np.column_stack([cols, np.ones(n)])
    starts = range(0, n, NP_BOOT_ROWS)
    seeds = np.random.SeedSequence(seed).spawn(len(starts))

    def block(i: int) -> np.ndarray:
        lo = starts[i]
        w = np.random.default_rng(seeds[i]).poisson(1.0, size=(n_boot, min(n, lo + NP_BOOT_ROWS)
                                                                 - lo))
        return w.astype(np.float64) @ aug[lo:lo + w.shape[1]]

    with ThreadPoolExecutor(threads) as pool:
        out = np.zeros((n_boot, aug.shape[1]))
        for part in pool.map(block, range(len(starts))):
            out += part
    return out


def boot_se(sums: np.ndarray) -> np.ndarray:
    """Bootstrap standard errors of the column means (sums / weight sum per replicate)."""
    return (sums[:, :-1] / sums[:, -1:]).std(axis=0, ddof=1)


def time_runs(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    secs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t)
    return {"median_s": statistics.median(secs), "min_s": min(secs), "max_s": max(secs)}


K_OOC, D_OOC, DAY_ROWS, GROUP_ROWS = 10, 4, 10_000_000, 1_000_000
THETA_OOC = np.random.default_rng(42).normal(size=(K_OOC, D_OOC))


def ooc_target(contexts: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """The target policy: a softmax of a linear score (K = 10)."""
    s = contexts @ THETA_OOC.T
    s = np.exp(s - s.max(axis=1, keepdims=True))
    return s / s.sum(axis=1, keepdims=True)


def ooc_model(contexts: np.ndarray) -> np.ndarray:
    """A reward model fitted beforehand: predictions q(x, a) for every offer."""
    return 1.0 + 0.8 * (contexts @ THETA_OOC.T)


def write_ooc_log(root: Path, n: int) -> None:
    """n rows in date partitions of DAY_ROWS, one file a day, row groups of GROUP_ROWS."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rs = np.random.default_rng(0)
    for day, lo in enumerate(range(0, n, DAY_ROWS)):
        folder = root / f"date=2026-01-{day + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(folder / "part-00000.parquet", pa.schema([
                ("offer", pa.int64()), ("propensity", pa.float64()), ("reward", pa.float64()),
                ("context", pa.list_(pa.float64()))])) as writer:
            for g in range(lo, min(n, lo + DAY_ROWS), GROUP_ROWS):
                m = min(n, lo + DAY_ROWS, g + GROUP_ROWS) - g
                x = rs.normal(size=(m, D_OOC))
                logging = np.exp(0.5 * (x @ THETA_OOC.T))
                logging = 0.8 * logging / logging.sum(axis=1, keepdims=True) + 0.2 / K_OOC
                a = (logging.cumsum(axis=1) < rs.random(m)[:, None]).sum(axis=1)
                a = np.minimum(a, K_OOC - 1)
                mu = 1.0 + x @ THETA_OOC.T
                r = mu[np.arange(m), a] + rs.normal(size=m)
                ctx = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), D_OOC)
                writer.write_table(pa.table({
                    "offer": a, "propensity": logging[np.arange(m), a], "reward": r,
                    "context": ctx.cast(pa.list_(pa.float64()))}), row_group_size=GROUP_ROWS)


def ooc_eval(root: Path, n_boot: int, boot_rows: int, dask_workers: int) -> dict[str, Any]:
    """One out-of-core evaluation in this (fresh) process: timings and peak RSS."""
    import resource

    from promobandit.evaluate.stream import dataset_chunks, evaluate_stream

    out: dict[str, Any] = {}
    client = cluster = None
    if dask_workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=dask_workers, threads_per_worker=1, processes=False,
                               dashboard_address=None)
        client = Client(cluster)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        rep = evaluate_stream(root, ooc_target, ["ips", "snips", "dr"], n_actions=K_OOC,
                              reward_predictions=ooc_model, client=client)
        out["analytic_s"] = time.perf_counter() - t
        out["n"] = rep.n_rows
        out["estimates"] = {k: (e.value, e.ci_low, e.ci_high) for k, e in rep.estimates.items()}
        if n_boot:
            files = list(dict.fromkeys(c.path for c in dataset_chunks(root)))
            chunks = [c for c in dataset_chunks(root) if c.start < boot_rows]
            use = list(dict.fromkeys(c.path for c in chunks))
            assert use == files[:len(use)]
            t = time.perf_counter()
            rep = evaluate_stream(use, ooc_target, ["ips", "snips", "dr"], n_actions=K_OOC,
                                  reward_predictions=ooc_model, n_bootstrap=n_boot,
                                  client=client)
            out["boot_s"] = time.perf_counter() - t
            out["boot_n"] = rep.n_rows
            out["boot"] = {k: (e.boot_low, e.boot_high) for k, e in rep.estimates.items()}
    if client is not None and cluster is not None:
        client.close()
        cluster.close()
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def out_of_core(args: argparse.Namespace) -> list[dict[str, Any]]:
    import subprocess
    import sys
    import tempfile

    rows = []
    for n in (int(x) for x in args.rows.split(",")):
        root = Path(args.ooc_dir or tempfile.mkdtemp(prefix="ooc-log-")) / f"n{n}"
        if not root.exists():
            t = time.perf_counter()
            write_ooc_log(root, n)
            print(f"wrote {n:,} rows to {root} in {time.perf_counter() - t:.1f} s", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--ooc-eval", str(root), "--ooc-boot", str(args.ooc_boot),
             "--ooc-boot-rows", str(args.ooc_boot_rows), "--dask-workers",
             str(args.dask_workers)], capture_output=True, text=True, check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        boot = (f"; bootstrap B={args.ooc_boot} on {res['boot_n']:,} rows "
                f"{res['boot_s']:.1f} s" if "boot_s" in res else "")
        how = f"dask {args.dask_workers} workers" if args.dask_workers else "one process"
        print(f"{n:>13,} rows K={K_OOC} out of core ({how}): IPS+SNIPS+DR + CIs "
              f"{res['analytic_s']:.1f} s ({n / res['analytic_s']:,.0f} rows/s){boot}; "
              f"peak RSS {res['peak_rss_gib']:.2f} GiB", flush=True)
        rows.append({"n": n, "task": "out of core", "impl": how, **res})
    if args.obp_rows:
        # The yardstick in the same run: obp (in memory only) on a log it can hold.
        from bench_compat import ope_compare, print_ope

        obp = ope_compare(args.obp_rows, 3)
        print_ope(obp)
        rows.append({"n": args.obp_rows, "task": "obp in memory", "impl": "obp vs compat",
                     **obp})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k and 1M rows, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--boot", type=int, default=100, help="bootstrap replicates B")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "ope.json")
    ap.add_argument("--rows", default=None,
                    help="out of core: comma-separated log sizes (e.g. 10000000,100000000)")
    ap.add_argument("--ooc-dir", default=None, help="where the Parquet logs are written/reused")
    ap.add_argument("--ooc-boot", type=int, default=100, help="out-of-core bootstrap B")
    ap.add_argument("--ooc-boot-rows", type=int, default=10_000_000,
                    help="bootstrap on the first rows (whole days) of the log")
    ap.add_argument("--dask-workers", type=int, default=0,
                    help="out of core on a Dask LocalCluster of this many workers")
    ap.add_argument("--obp-rows", type=int, default=1_000_000,
                    help="with --rows: obp's OffPolicyEvaluation on this many rows in memory "
                         "beside the out-of-core run (0 skips; needs obp, see bench_compat.py)")
    ap.add_argument("--ooc-eval", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ooc_eval is not None:
        print(json.dumps(ooc_eval(args.ooc_eval, args.ooc_boot, args.ooc_boot_rows,
                                  args.dask_workers)))
        return []
    if args.rows:
        rows = out_of_core(args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        path = args.json.with_name(args.json.stem + "_ooc.json")
        path.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
        print(f"wrote {path}")
        return rows
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)

    import numba

    from promobandit.evaluate import DecisionLog, RewardModel, evaluate
    from promobandit.evaluate._kernels import bootstrap_sums

    rows: list[dict[str, Any]] = []

    def add(n: int, task: str, impl: str, fn: Callable[[], Any], reps: int = repeats,
            work: int | None = None) -> None:
        fn()  # warm: Numba compile / cache load, page faults
        stats = time_runs(fn, reps)
        per_s = (work or n) / stats["median_s"]
        rows.append({"n": n, "task": task, "impl": impl, "rows_per_s": per_s, **stats})
        print(f"{n:>11,}  {task:<34}{impl:<22}{per_s:>15,.0f}/s  {stats['median_s']:>8.3f} s "
              f"[{stats['min_s']:.3f} - {stats['max_s']:.3f}]", flush=True)

    print(f"machine: {machine()}; numba threads {numba.get_num_threads()}; "
          f"median [min - max] of {repeats} runs")
    print(f"{'rows':>11}  {'task':<34}{'implementation':<22}{'rows/s':>17}  {'median':>8}")
    threads = numba.get_num_threads()
    for n in sizes:
        data = make_log(n)
        make = lambda data=data: DecisionLog.from_arrays(  # noqa: E731
            data["actions"], data["propensities"], data["rewards"], n_actions=K)
        add(n, "validate the log (from_arrays)", "promobandit", make)
        log = make()
        with warnings.catch_warnings():
            # The synthetic target is far from the logger: the diagnostics may warn; timing only.
            warnings.simplefilter("ignore")
            for est in ("ips", "snips", "dr"):
                add(n, f"{est.upper()} point + analytic CI", "promobandit",
                    lambda est=est, log=log, data=data: evaluate(
                        log, data["target"], [est], reward_predictions=data["q"]))
                add(n, f"{est.upper()} point + analytic CI", "numpy (textbook)",
                    lambda est=est, data=data: numpy_estimates(data, est))
            add(n, "IPS+SNIPS+DR + CIs + diagnostics", "promobandit",
                lambda log=log, data=data: evaluate(log, data["target"], ["ips", "snips", "dr"],
                                                    reward_predictions=data["q"]))
            add(n, "IPS+SNIPS+DR + CIs", "numpy (textbook)",
                lambda data=data: [numpy_estimates(data, e) for e in ("ips", "snips", "dr")])
        rows_idx = np.arange(n)
        w = data["target"][rows_idx, data["actions"]] / data["propensities"]
        dr = np.einsum("ij,ij->i", data["target"], data["q"]) + w * (
            data["rewards"] - data["q"][rows_idx, data["actions"]])
        cols = np.column_stack([w * data["rewards"], w, dr])
        boot_reps = 1 if n > 1_000_000 else max(1, repeats // 2)
        add(n, f"bootstrap B={args.boot} (3 columns)", "promobandit numba",
            lambda cols=cols: bootstrap_sums(cols, args.boot, 0), reps=boot_reps,
            work=n * args.boot)
        # Same work, same answer: the two bootstraps' standard errors agree to within
        # their Monte Carlo error (B = 100 replicates: about 7% relative).
        se_pb = boot_se(bootstrap_sums(cols, args.boot, 0))
        se_np = boot_se(numpy_poisson_bootstrap(cols, args.boot, 0, threads))
        print(f"{'':>13}bootstrap SEs (IPS, SNIPS weights, DR): promobandit "
              f"{np.array2string(se_pb, precision=5)}, numpy {np.array2string(se_np, precision=5)}")
        if not np.allclose(se_pb, se_np, rtol=0.3):
            raise SystemExit("the NumPy Poisson bootstrap disagrees with promobandit's")
        add(n, f"bootstrap B={args.boot} (3 columns)", f"numpy poisson, {threads} threads",
            lambda cols=cols, threads=threads: numpy_poisson_bootstrap(cols, args.boot, 0,
                                                                       threads),
            reps=boot_reps, work=n * args.boot)
        if n == sizes[0] or n == 1_000_000:
            rs = np.random.default_rng(1)
            ctx = rs.normal(size=(n, D))
            add(n, "Ridge reward model, 5-fold fit", "promobandit+sklearn",
                lambda ctx=ctx, data=data: RewardModel(seed=0).cross_fit_predict(
                    ctx, data["actions"], data["rewards"], K), reps=1)
        del data, log, cols

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "repeats": repeats,
                                     "numba_threads": numba.get_num_threads(), "rows": rows},
                                    indent=1))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
