"""Decisions per second and mean reward of the bandit policies, beside baselines in the
same run.

Workloads: Beta TS (and every non-contextual policy) on K=10 Bernoulli arms paying with
probability 0.05 + 0.03 a; LinUCB and LinTS on K=10 arms, d=20 features, rewards
x . theta_a + N(0, 0.1^2).
Modes: "single", one decision at a time through the Python API (select, then update);
"batch", select_batch of 1,000 then update_batch (every decision of a batch sees the state
at the batch's start), on --threads threads (select_batch's n_threads; updates are
sequential).
Implementations: promobandit on the cpp and numba backends, with default settings
(propensities on: exact by quadrature for Beta TS and LinTS) and with propensities off; a
plain NumPy implementation of the same algorithm (vectorised over a batch); for LinUCB and
LinTS also batched rows "batch-update accumulate" (batch_update="accumulate": update_batch
adds the batch's sums, then refreshes each touched arm exactly once; see LinearConfig); MABWiser,
Vowpal Wabbit and contextualbandits when installed (`pip install ".[bench]"`).
Throughput: the median of --repeats runs, with the min and max beside it, decisions per
second. Mean reward: the average reward per decision over --reward-n decisions, mean over
--reward-seeds problems (each its own rewards and policy seed) with its standard error
(std / sqrt(seeds)), every implementation on the same problems and the same batches.

Run as a script: python bench/bench_policies.py [--quick] [--threads 1 2] [--json PATH]
Or with pytest-benchmark: python -m pytest bench/bench_policies.py --benchmark-enable
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _machine import blas_threads, machine

K, D, BATCH = 10, 20, 1000
LIN_ALPHA, LIN_V = 1.0, 0.5  # LinUCB bound width, LinTS posterior scale (every implementation)


# --- workloads -----------------------------------------------------------------------------
def bernoulli_table(n: int, seed: int = 0) -> np.ndarray:
    """(n, K) rewards: arm a pays 1 with probability 0.05 + 0.03 a."""
    rs = np.random.default_rng(seed)
    return (rs.random((n, K)) < (0.05 + 0.03 * np.arange(K))[None]).astype(np.float64)


def linear_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (n, D) and rewards (n, K) of a linear problem with noise."""
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, D))
    theta = rs.normal(size=(K, D)) / np.sqrt(D)
    return x, x @ theta.T + 0.1 * rs.normal(size=(n, K))


# --- promobandit -------------------------------------------------------------------------
MAB_POLICIES = ("BetaTS", "GaussianTS", "UCB1", "UCBTuned", "EpsilonGreedy", "Softmax")
# The rows of the linear policies' batch_update="accumulate" mode: (setting, propensities).
ACCUMULATE_SETTINGS = {
    "LinUCB": [("batch-update accumulate", True)],
    "LinTS": [("batch-update accumulate", True), ("accumulate, props off", False)],
}


def pb_policy(name: str, backend: str, propensities: bool = True, seed: int = 1,
              **extra: Any) -> Any:
    """A promobandit policy with default settings (propensities=False: switched off;
    extra: further settings, e.g. sampler="matching")."""
    from promobandit.policies import POLICIES

    cls = POLICIES[name]
    kw: dict[str, Any] = dict(extra)
    if name == "LinUCB":
        kw["alpha"] = LIN_ALPHA
    if name == "LinTS":
        kw["v"] = LIN_V
    if not propensities and hasattr(cls.config_class, "propensity_draws"):
        kw["propensity_draws"] = 0
    if cls.contextual:
        return cls(K, D, seed=seed, backend=backend, **kw)
    return cls(K, seed=seed, backend=backend, **kw)


def run_pb_single(policy: Any, n: int, rewards: np.ndarray, xs: np.ndarray | None) -> float:
    select, update = policy.select, policy.update
    total = 0.0
    if xs is None:
        for i in range(n):
            arm, _ = select()
            r = rewards[i, arm]
            update(arm, r)
            total += r
    else:
        for i in range(n):
            x = xs[i]
            arm, _ = select(x)
            r = rewards[i, arm]
            update(arm, r, x)
            total += r
    return total / n


def run_pb_batch(policy: Any, n: int, rewards: np.ndarray, xs: np.ndarray | None,
                 threads: int = 1) -> float:
    rows = np.arange(BATCH)
    total = 0.0
    for lo in range(0, n, BATCH):
        if xs is None:
            arms, _ = policy.select_batch(n=BATCH, n_threads=threads)
            r = rewards[lo + rows, arms]
            policy.update_batch(arms, r)
        else:
            x = xs[lo:lo + BATCH]
            arms, _ = policy.select_batch(x, n_threads=threads)
            r = rewards[lo + rows, arms]
            policy.update_batch(arms, r, x)
        total += float(r.sum())
    return total / n


# --- plain NumPy baselines ---------------------------------------------------------------
def run_numpy_beta_single(n: int, rewards: np.ndarray, seed: int = 1) -> float:
    rs = np.random.default_rng(seed)
    a, b = np.ones(K), np.ones(K)
    total = 0.0
    for i in range(n):
        arm = int(np.argmax(rs.beta(a, b)))
        r = rewards[i, arm]
        a[arm] += r
        b[arm] += 1.0 - r
        total += r
    return total / n


def run_numpy_beta_batch(n: int, rewards: np.ndarray, seed: int = 1) -> float:
    rs = np.random.default_rng(seed)
    a, b = np.ones(K), np.ones(K)
    rows = np.arange(BATCH)
    total = 0.0
    for lo in range(0, n, BATCH):
        arms = rs.beta(a[None], b[None], size=(BATCH, K)).argmax(axis=1)
        r = rewards[lo + rows, arms]
        np.add.at(a, arms, r)
        np.add.at(b, arms, 1.0 - r)
        total += float(r.sum())
    return total / n


class NumpyLinear:
    """Disjoint LinUCB/LinTS with Sherman-Morrison updates in NumPy (ties to the first
    arm, as np.argmax)."""

    def __init__(self, ts: bool, seed: int = 1) -> None:
        self.ts = ts
        self.Ai = np.repeat(np.eye(D)[None], K, axis=0)
        self.b = np.zeros((K, D))
        self.theta = np.zeros((K, D))
        self.rs = np.random.default_rng(seed)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """x (n, D) -> (n, K)."""
        mean = x @ self.theta.T
        var = np.einsum("nd,kde,ne->nk", x, self.Ai, x)
        width = np.sqrt(np.maximum(var, 0.0))
        if self.ts:
            return mean + LIN_V * width * self.rs.normal(size=mean.shape)
        return mean + LIN_ALPHA * width

    def update(self, arm: int, r: float, x: np.ndarray) -> None:
        u = self.Ai[arm] @ x
        self.Ai[arm] -= np.outer(u, u) / (1.0 + x @ u)
        self.b[arm] += r * x
        self.theta[arm] = self.Ai[arm] @ self.b[arm]


def run_numpy_linear_single(ts: bool, n: int, rewards: np.ndarray, xs: np.ndarray,
                            seed: int = 1) -> float:
    m = NumpyLinear(ts, seed)
    total = 0.0
    for i in range(n):
        x = xs[i]
        arm = int(np.argmax(m.scores(x[None])[0]))
        m.update(arm, rewards[i, arm], x)
        total += rewards[i, arm]
    return total / n


def run_numpy_linear_batch(ts: bool, n: int, rewards: np.ndarray, xs: np.ndarray,
                           seed: int = 1) -> float:
    m = NumpyLinear(ts, seed)
    total = 0.0
    for lo in range(0, n, BATCH):
        x = xs[lo:lo + BATCH]
        arms = m.scores(x).argmax(axis=1)
        for j, arm in enumerate(arms):
            m.update(int(arm), rewards[lo + j, arm], x[j])
            total += rewards[lo + j, arm]
    return total / n


# --- peers ---------------------------------------------------------------------------------
def mabwiser_runner(kind: str, batched: bool) -> Callable[..., float] | None:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    arms = list(range(K))

    def run(n: int, rewards: np.ndarray, xs: np.ndarray | None, seed: int = 1) -> float:
        if kind == "beta":
            mab = MAB(arms, LearningPolicy.ThompsonSampling(), seed=seed)
            mab.fit([0, 1], [0, 1])
        else:
            lp = (LearningPolicy.LinUCB(alpha=LIN_ALPHA) if kind == "linucb"
                  else LearningPolicy.LinTS(alpha=LIN_V))
            mab = MAB(arms, lp, seed=seed)
            mab.fit([0, 1], [0.0, 0.0], xs[:2])
        total = 0.0
        if not batched:
            for i in range(n):
                if kind == "beta":
                    arm = mab.predict()
                    mab.partial_fit([arm], [rewards[i, arm]])
                else:
                    arm = mab.predict(xs[i:i + 1])
                    mab.partial_fit([arm], [rewards[i, arm]], xs[i:i + 1])
                total += rewards[i, arm]
            return total / n
        for lo in range(0, n, BATCH):
            if kind == "beta":
                # MABWiser draws one non-contextual decision per predict call.
                arms_b = [mab.predict() for _ in range(BATCH)]
                r = [rewards[lo + j, a] for j, a in enumerate(arms_b)]
                mab.partial_fit(arms_b, r)
            else:
                x = xs[lo:lo + BATCH]
                arms_b = mab.predict(x)
                r = [rewards[lo + j, a] for j, a in enumerate(arms_b)]
                mab.partial_fit(arms_b, r, x)
            total += float(np.sum(r))
        return total / n

    return run


def contextualbandits_runner(kind: str) -> Callable[..., float] | None:
    """contextualbandits' LinUCB / LinTS (batched: predict a batch, then partial_fit it)."""
    try:
        from contextualbandits.online import LinTS, LinUCB
    except ImportError:
        return None

    def run(n: int, rewards: np.ndarray, xs: np.ndarray, seed: int = 1) -> float:
        if kind == "linucb":
            model = LinUCB(K, alpha=LIN_ALPHA, lambda_=1.0, fit_intercept=False,
                           random_state=seed)
        else:
            model = LinTS(K, v_sq=LIN_V ** 2, lambda_=1.0, fit_intercept=False,
                          random_state=seed)
        total = 0.0
        for lo in range(0, n, BATCH):
            x = xs[lo:lo + BATCH]
            if lo == 0:
                arms = np.random.default_rng(seed).integers(0, K, len(x))  # unfitted: random
            else:
                arms = np.asarray(model.predict(x)).astype(np.int64)
            r = rewards[lo + np.arange(len(x)), arms]
            model.partial_fit(x, arms, r)
            total += float(r.sum())
        return total / n

    return run


def vw_runner() -> Callable[..., float] | None:
    try:
        import vowpalwabbit
    except ImportError:
        return None
    # VW has no Thompson sampling or LinUCB; the closest one-at-a-time workload is a
    # contextual bandit over K actions with epsilon-greedy exploration (cb_explore_adf),
    # the action drawn from its pmf.

    def run(n: int, rewards: np.ndarray, xs: np.ndarray | None, seed: int = 1) -> float:
        vw = vowpalwabbit.Workspace(f"--cb_explore_adf --epsilon 0.1 --quiet --random_seed {seed}")
        rs = np.random.default_rng(seed)
        actions = "\n".join(f"|a a{a}" for a in range(K))
        shared = "shared |s c"
        total = 0.0
        for i in range(n):
            if xs is not None:
                shared = "shared |s " + " ".join(f"f{j}:{v:.4f}" for j, v in enumerate(xs[i]))
            pmf = np.asarray(vw.predict(f"{shared}\n{actions}"), dtype=float)
            arm = int(rs.choice(K, p=pmf / pmf.sum()))
            lines = [shared] + [
                (f"0:{-rewards[i, a]:.4f}:{pmf[a]:.4f} " if a == arm else "") + f"|a a{a}"
                for a in range(K)
            ]
            vw.learn("\n".join(lines))
            total += rewards[i, arm]
        vw.finish()
        return total / n

    return run


# --- measurement ---------------------------------------------------------------------------
def time_runs(fn: Callable[[], Any], n: int, repeats: int) -> dict[str, float]:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def update_check_rows(n: int, repeats: int, backends: list[str]) -> list[dict[str, Any]]:
    """The cost of checking every update (issue 11: a statistic that would become
    non-finite is refused, promobandit.policies.base): the single-decision rows (select,
    then update) with today's checked ``policy.update`` beside the same policy whose
    update is the kernel behind the edge conversion only, as before the checks. The two
    alternate repeat by repeat, so the machine's load falls on both alike; the ratio is
    the checked run's median time over the unchecked one's. Propensities are off, so
    select is as cheap as it gets and the update's share of a decision is the largest
    (with them on, Thompson sampling's propensity dwarfs the update)."""
    import os

    from promobandit.policies.base import _edge_update

    out = []
    rewards_b = bernoulli_table(n)
    xs, rewards_l = linear_problem(n)
    for backend in backends:
        for name in ("BetaTS", "GaussianTS", "LinUCB", "LinTS"):
            linear = name.startswith("Lin")

            def run(checked: bool, name: str = name, linear: bool = linear,
                    backend: str = backend) -> float:
                p = pb_policy(name, backend, propensities=False)
                if not checked:
                    p.update = _edge_update(p._kernel.update)
                return run_pb_single(p, n, rewards_l if linear else rewards_b,
                                     xs if linear else None)
            run(True), run(False)  # compile (Numba), warm caches
            times: dict[bool, list[float]] = {True: [], False: []}
            for r in range(repeats):
                for checked in ((True, False) if r % 2 == 0 else (False, True)):
                    t = time.perf_counter()
                    run(checked)
                    times[checked].append(time.perf_counter() - t)
            on, off = statistics.median(times[True]), statistics.median(times[False])
            row = {"workload": name, "backend": backend, "n": n, "repeats": repeats,
                   "checked_per_s": n / on, "unchecked_per_s": n / off,
                   "time_ratio": on / off, "load_avg_1min": os.getloadavg()[0]}
            out.append(row)
            print(f"{name:<11}{backend:<7}unchecked {n / off:>11,.0f}/s  checked "
                  f"{n / on:>11,.0f}/s  time ratio {on / off:.3f}  "
                  f"{off / n * 1e6:.2f} -> {on / n * 1e6:.2f} us a decision "
                  f"(+{(on - off) / n * 1e6:.2f})  (load {row['load_avg_1min']:.1f})",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer decisions, repeats and seeds")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="thread counts of the batched promobandit rows (default: 1 2)")
    ap.add_argument("--reward-n", type=int, default=None, help="decisions per reward run")
    ap.add_argument("--reward-seeds", type=int, default=None, help="problems per reward row")
    ap.add_argument("--skip-rewards", action="store_true", help="throughput only")
    ap.add_argument("--update-checks", action="store_true",
                    help="only the cost of checked updates: single-decision rows, checked "
                         "beside unchecked (writes results/update_checks.json)")
    ap.add_argument("--beta-only", action="store_true",
                    help="the Beta TS rows only (throughput and mean reward)")
    ap.add_argument("--json", type=Path,
                    default=Path(__file__).parent / "results" / "policies.json")
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    n_fast = 20_000 if args.quick else 100_000  # decisions per timed run, native backends
    n_slow = 2_000 if args.quick else 5_000  # NumPy loops, MABWiser, VW
    reward_n = args.reward_n or (4_000 if args.quick else 20_000)
    seeds = args.reward_seeds or (3 if args.quick else 5)

    from promobandit import _backends

    backends = [b for b in ("cpp", "numba") if b in _backends.available()]
    if args.update_checks:
        print(machine(), flush=True)
        checks = update_check_rows(n_fast, max(repeats, 5), backends)
        path = args.json.parent / "update_checks.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": machine(), "rows": checks}, indent=1))
        print(f"wrote {path}")
        return {"update_checks": checks}
    rewards_b = bernoulli_table(max(n_fast, n_slow))
    xs, rewards_l = linear_problem(max(n_fast, n_slow))
    rows: list[dict[str, Any]] = []

    def add(workload: str, mode: str, impl: str, setting: str, n: int,
            fn: Callable[[], Any], threads: int = 1) -> None:
        fn()  # compile (Numba), warm caches
        stats = time_runs(fn, n, repeats)
        rows.append({"workload": workload, "mode": mode, "impl": impl, "setting": setting,
                     "threads": threads, "n": n, **stats})
        print(f"{workload:<18}{mode:<7}{threads:>2}t {impl:<18}{setting:<26}"
              f"{stats['median']:>13,.0f}/s [{stats['min']:,.0f} - {stats['max']:,.0f}]",
              flush=True)

    print(f"machine: {machine()}")
    print(f"throughput: decisions/s, median [min - max] of {repeats} runs")
    # -- Beta TS ----------------------------------------------------------------------------
    w = "BetaTS K=10"
    beta_settings: tuple[tuple[str, bool, dict[str, Any]], ...] = (
        ("defaults (exact props)", True, {}), ("propensity off", False, {}),
        ("matching (exact props)", True, {"sampler": "matching"}),
        # every update refills the win probabilities: the node grid's cost alone
        ("tolerance 0 (exact props)", True, {"propensity_tolerance": 0.0}))
    for b in backends:
        for setting, props, extra in beta_settings:
            add(w, "single", f"pb-{b}", setting, n_fast,
                lambda b=b, p=props, e=extra: run_pb_single(pb_policy("BetaTS", b, p, **e),
                                                            n_fast, rewards_b, None))
            for t in (args.threads if b == "cpp" else [1]):
                add(w, "batch", f"pb-{b}", setting, n_fast,
                    lambda b=b, p=props, t=t, e=extra: run_pb_batch(
                        pb_policy("BetaTS", b, p, **e), n_fast, rewards_b, None, t),
                    threads=t)
    add(w, "single", "numpy loop", "no propensity", n_slow,
        lambda: run_numpy_beta_single(n_slow, rewards_b))
    add(w, "batch", "numpy vectorised", "no propensity", n_fast,
        lambda: run_numpy_beta_batch(n_fast, rewards_b))
    for mode, batched in (("single", False), ("batch", True)):
        mw = mabwiser_runner("beta", batched)
        if mw:
            add(w, mode, "mabwiser", "no propensity", n_slow // 5,
                lambda mw=mw: mw(n_slow // 5, rewards_b, None))
    vw = vw_runner()
    if vw:
        add(w, "single", "vowpalwabbit", "cb_explore_adf eps 0.1", n_slow,
            lambda: vw(n_slow, rewards_b, None))
    # -- LinUCB, LinTS ----------------------------------------------------------------------
    for name, kind in (() if args.beta_only else (("LinUCB", "linucb"), ("LinTS", "lints"))):
        w = f"{name} d=20 K=10"
        settings = ([("defaults (props 1)", True)] if name == "LinUCB" else
                    [("defaults (exact props)", True), ("propensity off", False)])
        for b in backends:
            for setting, props in settings:
                add(w, "single", f"pb-{b}", setting, n_fast // 2,
                    lambda b=b, p=props, nm=name: run_pb_single(pb_policy(nm, b, p),
                                                                n_fast // 2, rewards_l, xs))
                for t in (args.threads if b == "cpp" else [1]):
                    add(w, "batch", f"pb-{b}", setting, n_fast,
                        lambda b=b, p=props, t=t, nm=name: run_pb_batch(
                            pb_policy(nm, b, p), n_fast, rewards_l, xs, t), threads=t)
            # the opt-in batch-update mode: the batch's sums, one exact refresh per arm
            for setting, props in ACCUMULATE_SETTINGS[name]:
                for t in (args.threads if b == "cpp" else [1]):
                    add(w, "batch", f"pb-{b}", setting, n_fast,
                        lambda b=b, p=props, t=t, nm=name: run_pb_batch(
                            pb_policy(nm, b, p, batch_update="accumulate"), n_fast, rewards_l,
                            xs, t), threads=t)
        add(w, "single", "numpy loop", "no propensity", n_slow,
            lambda k=kind: run_numpy_linear_single(k == "lints", n_slow, rewards_l, xs))
        add(w, "batch", "numpy", "no propensity", n_slow,
            lambda k=kind: run_numpy_linear_batch(k == "lints", n_slow, rewards_l, xs))
        for mode, batched in (("single", False), ("batch", True)):
            mw = mabwiser_runner(kind, batched)
            if mw:
                n_mw = n_slow // 10 if not batched else n_slow
                add(w, mode, "mabwiser", "no propensity", n_mw,
                    lambda mw=mw, n=n_mw: mw(n, rewards_l, xs))
        cb = contextualbandits_runner(kind)
        if cb:
            add(w, "batch", "contextualbandits", "no propensity", n_slow,
                lambda cb=cb: cb(n_slow, rewards_l, xs))
        if vw and name == "LinUCB":
            add("VW d=20 K=10", "single", "vowpalwabbit", "cb_explore_adf eps 0.1", n_slow,
                lambda: vw(n_slow, rewards_l, xs))

    rewards_rows: list[dict[str, Any]] = []
    if not args.skip_rewards:
        rewards_rows = mean_rewards(reward_n, seeds, vw, args.beta_only)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine(), "repeats": repeats, "rows": rows,
           "reward_n": reward_n, "reward_seeds": seeds, "rewards": rewards_rows}
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return out


def mean_rewards(n: int, seeds: int, vw: Callable[..., float] | None,
                 beta_only: bool = False) -> list[dict[str, Any]]:
    """Mean reward per decision of every implementation on the same problems and batches."""
    print(f"\nmean reward per decision over {n:,} decisions, mean +- standard error over "
          f"{seeds} problems (seeds 0..{seeds - 1}); batch = {BATCH:,} decisions per "
          "select_batch / update_batch")
    out: list[dict[str, Any]] = []

    def row(workload: str, mode: str, impl: str, fn: Callable[[int], float],
            n_used: int = n) -> None:
        vals = np.array([fn(s) for s in range(seeds)])
        se = float(vals.std(ddof=1) / np.sqrt(seeds)) if seeds > 1 else float("nan")
        out.append({"workload": workload, "mode": mode, "impl": impl, "n": n_used,
                    "mean": float(vals.mean()), "se": se})
        print(f"{workload:<18}{mode:<7}{impl:<22}{vals.mean():>9.4f} +- {se:.4f}"
              + (f"  ({n_used:,} decisions)" if n_used != n else ""), flush=True)

    bern = {s: bernoulli_table(n, seed=100 + s) for s in range(seeds)}
    lin = {s: linear_problem(n, seed=100 + s) for s in range(seeds)}
    for name in (("BetaTS",) if beta_only else MAB_POLICIES):
        for mode in ("single", "batch"):
            run = run_pb_single if mode == "single" else run_pb_batch
            row("K=10 Bernoulli", mode, f"pb {name}",
                lambda s, name=name, run=run: run(pb_policy(name, "cpp", seed=s + 1), n,
                                                  bern[s], None))
    for mode in ("single", "batch"):
        run = run_pb_single if mode == "single" else run_pb_batch
        row("K=10 Bernoulli", mode, "pb BetaTS matching",
            lambda s, run=run: run(pb_policy("BetaTS", "cpp", seed=s + 1, sampler="matching"),
                                   n, bern[s], None))
    row("K=10 Bernoulli", "single", "numpy Beta TS",
        lambda s: run_numpy_beta_single(n, bern[s], seed=s + 1))
    row("K=10 Bernoulli", "batch", "numpy Beta TS",
        lambda s: run_numpy_beta_batch(n, bern[s], seed=s + 1))
    mw_b = mabwiser_runner("beta", True)
    if mw_b:
        row("K=10 Bernoulli", "batch", "mabwiser TS", lambda s: mw_b(n, bern[s], None, s + 1))
    if vw:
        n_vw = min(n, 5_000)
        row("K=10 Bernoulli", "single", "vowpalwabbit eps 0.1",
            lambda s: vw(n_vw, bern[s], None, s + 1), n_vw)
    for name, kind in (() if beta_only else (("LinUCB", "linucb"), ("LinTS", "lints"))):
        w = "d=20 K=10 linear"
        for mode in ("single", "batch"):
            run = run_pb_single if mode == "single" else run_pb_batch
            row(w, mode, f"pb {name}",
                lambda s, name=name, run=run: run(pb_policy(name, "cpp", seed=s + 1), n,
                                                  lin[s][1], lin[s][0]))
        row(w, "batch", f"pb {name} accumulate",
            lambda s, name=name: run_pb_batch(
                pb_policy(name, "cpp", seed=s + 1, batch_update="accumulate"), n, lin[s][1],
                lin[s][0]))
        row(w, "batch", f"numpy {name}",
            lambda s, k=kind: run_numpy_linear_batch(k == "lints", n, lin[s][1], lin[s][0],
                                                     s + 1))
        mw = mabwiser_runner(kind, True)
        if mw:
            row(w, "batch", f"mabwiser {name}", lambda s, mw=mw: mw(n, lin[s][1], lin[s][0],
                                                                    s + 1))
        mw1 = mabwiser_runner(kind, False)
        if mw1:
            n_mw = min(n, 2_000)
            row(w, "single", f"mabwiser {name}",
                lambda s, mw1=mw1, n_mw=n_mw: mw1(n_mw, lin[s][1], lin[s][0], s + 1), n_mw)
        cb = contextualbandits_runner(kind)
        if cb:
            row(w, "batch", f"contextualbandits {name}",
                lambda s, cb=cb: cb(n, lin[s][1], lin[s][0], s + 1))
    return out


# --- pytest-benchmark entry points ---------------------------------------------------------
def test_beta_ts_single_cpp(benchmark: Any) -> None:
    rewards = bernoulli_table(10_000)
    benchmark(lambda: run_pb_single(pb_policy("BetaTS", "cpp"), 10_000, rewards, None))


def test_beta_ts_batch_cpp(benchmark: Any) -> None:
    rewards = bernoulli_table(100_000)
    benchmark(lambda: run_pb_batch(pb_policy("BetaTS", "cpp"), 100_000, rewards, None))


def test_beta_ts_batch_numpy(benchmark: Any) -> None:
    rewards = bernoulli_table(100_000)
    benchmark(lambda: run_numpy_beta_batch(100_000, rewards))


def test_linucb_single_cpp(benchmark: Any) -> None:
    xs, rewards = linear_problem(10_000)
    benchmark(lambda: run_pb_single(pb_policy("LinUCB", "cpp"), 10_000, rewards, xs))


def test_linucb_batch_cpp(benchmark: Any) -> None:
    xs, rewards = linear_problem(100_000)
    benchmark(lambda: run_pb_batch(pb_policy("LinUCB", "cpp"), 100_000, rewards, xs))


def test_linucb_single_numpy(benchmark: Any) -> None:
    xs, rewards = linear_problem(2_000)
    benchmark(lambda: run_numpy_linear_single(False, 2_000, rewards, xs))


if __name__ == "__main__":
    with blas_threads(1):  # the peers' rows are one thread: their BLAS too
        main()
