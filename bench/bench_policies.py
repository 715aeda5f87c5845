"""Decisions per second of the bandit policies, beside baselines in the same run.

Workloads (one thread):
  Beta TS, K=10 arms, Bernoulli rewards;
  LinUCB and LinTS, K=10 arms, d=20 features, linear rewards.
Modes: one decision at a time through the Python API (select, then update), and
batches of 1,000 (select_batch, then update_batch).
Implementations: promobandit on the cpp and numba backends; a plain NumPy
implementation of the same algorithm; MABWiser and Vowpal Wabbit when installed
(`pip install ".[bench]"`). Each figure is the median of --repeats runs, with the
min and max beside it.

Run as a script: python bench/bench_policies.py [--quick] [--json PATH]
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

from _machine import machine

K, D, BATCH = 10, 20, 1000


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
def pb_policy(kind: str, backend: str, draws: int, refresh: int) -> Any:
    from promobandit.policies import BetaTS, LinTS, LinUCB

    if kind == "beta":
        return BetaTS(K, seed=1, backend=backend, propensity_draws=draws,
                      propensity_refresh=refresh)
    if kind == "linucb":
        return LinUCB(K, D, seed=1, backend=backend, alpha=1.0)
    return LinTS(K, D, seed=1, backend=backend, v=0.5, propensity_draws=draws)


def run_pb_single(policy: Any, n: int, rewards: np.ndarray, xs: np.ndarray | None) -> None:
    select, update = policy.select, policy.update
    if xs is None:
        for i in range(n):
            arm, _ = select()
            update(arm, rewards[i, arm])
    else:
        for i in range(n):
            x = xs[i]
            arm, _ = select(x)
            update(arm, rewards[i, arm], x)


def run_pb_batch(policy: Any, n: int, rewards: np.ndarray, xs: np.ndarray | None) -> None:
    rows = np.arange(BATCH)
    for lo in range(0, n, BATCH):
        if xs is None:
            arms, _ = policy.select_batch(n=BATCH)
            policy.update_batch(arms, rewards[lo + rows, arms])
        else:
            x = xs[lo:lo + BATCH]
            arms, _ = policy.select_batch(x)
            policy.update_batch(arms, rewards[lo + rows, arms], x)


# --- plain NumPy baselines ---------------------------------------------------------------
def run_numpy_beta_single(n: int, rewards: np.ndarray) -> None:
    rs = np.random.default_rng(1)
    a, b = np.ones(K), np.ones(K)
    for i in range(n):
        arm = int(np.argmax(rs.beta(a, b)))
        r = rewards[i, arm]
        a[arm] += r
        b[arm] += 1.0 - r


def run_numpy_beta_batch(n: int, rewards: np.ndarray) -> None:
    rs = np.random.default_rng(1)
    a, b = np.ones(K), np.ones(K)
    rows = np.arange(BATCH)
    for lo in range(0, n, BATCH):
        arms = rs.beta(a[None], b[None], size=(BATCH, K)).argmax(axis=1)
        r = rewards[lo + rows, arms]
        np.add.at(a, arms, r)
        np.add.at(b, arms, 1.0 - r)


class NumpyLinear:
    """Disjoint LinUCB/LinTS with Sherman-Morrison updates in NumPy."""

    def __init__(self, ts: bool) -> None:
        self.ts = ts
        self.Ai = np.repeat(np.eye(D)[None], K, axis=0)
        self.b = np.zeros((K, D))
        self.theta = np.zeros((K, D))
        self.rs = np.random.default_rng(1)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """x (n, D) -> (n, K)."""
        mean = x @ self.theta.T
        var = np.einsum("nd,kde,ne->nk", x, self.Ai, x)
        width = np.sqrt(np.maximum(var, 0.0))
        if self.ts:
            return mean + 0.5 * width * self.rs.normal(size=mean.shape)
        return mean + width

    def update(self, arm: int, r: float, x: np.ndarray) -> None:
        u = self.Ai[arm] @ x
        self.Ai[arm] -= np.outer(u, u) / (1.0 + x @ u)
        self.b[arm] += r * x
        self.theta[arm] = self.Ai[arm] @ self.b[arm]


def run_numpy_linear_single(ts: bool, n: int, rewards: np.ndarray, xs: np.ndarray) -> None:
    m = NumpyLinear(ts)
    for i in range(n):
        x = xs[i]
        arm = int(np.argmax(m.scores(x[None])[0]))
        m.update(arm, rewards[i, arm], x)


def run_numpy_linear_batch(ts: bool, n: int, rewards: np.ndarray, xs: np.ndarray) -> None:
    m = NumpyLinear(ts)
    for lo in range(0, n, BATCH):
        x = xs[lo:lo + BATCH]
        arms = m.scores(x).argmax(axis=1)
        for j, arm in enumerate(arms):
            m.update(int(arm), rewards[lo + j, arm], x[j])


# --- peers ---------------------------------------------------------------------------------
def mabwiser_runner(kind: str, batched: bool) -> Callable[[int, np.ndarray, Any], None] | None:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    arms = list(range(K))

    def run(n: int, rewards: np.ndarray, xs: np.ndarray | None) -> None:
        if kind == "beta":
            mab = MAB(arms, LearningPolicy.ThompsonSampling(), seed=1)
            mab.fit([0, 1], [0, 1])
        else:
            lp = (LearningPolicy.LinUCB(alpha=1.0) if kind == "linucb"
                  else LearningPolicy.LinTS(alpha=0.5))
            mab = MAB(arms, lp, seed=1)
            mab.fit([0, 1], [0.0, 0.0], xs[:2])
        if not batched:
            for i in range(n):
                if kind == "beta":
                    arm = mab.predict()
                    mab.partial_fit([arm], [rewards[i, arm]])
                else:
                    arm = mab.predict(xs[i:i + 1])
                    mab.partial_fit([arm], [rewards[i, arm]], xs[i:i + 1])
            return
        for lo in range(0, n, BATCH):
            if kind == "beta":
                # MABWiser draws one non-contextual decision per predict call.
                arms_b = [mab.predict() for _ in range(BATCH)]
                mab.partial_fit(arms_b, [rewards[lo + j, a] for j, a in enumerate(arms_b)])
            else:
                x = xs[lo:lo + BATCH]
                arms_b = mab.predict(x)
                mab.partial_fit(arms_b, [rewards[lo + j, a] for j, a in enumerate(arms_b)], x)

    return run


def vw_runner(kind: str) -> Callable[[int, np.ndarray, Any], None] | None:
    try:
        import vowpalwabbit
    except ImportError:
        return None
    # VW has no Thompson sampling or LinUCB; the closest one-at-a-time workload is a
    # contextual bandit over K actions with epsilon-greedy exploration (cb_explore_adf).

    def run(n: int, rewards: np.ndarray, xs: np.ndarray | None) -> None:
        vw = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.1 --quiet --random_seed 1")
        actions = "\n".join(f"|a a{a}" for a in range(K))
        if xs is None:
            shared = "shared |s c"
        for i in range(n):
            if xs is not None:
                shared = "shared |s " + " ".join(f"f{j}:{v:.4f}" for j, v in enumerate(xs[i]))
            ex = f"{shared}\n{actions}"
            pmf = vw.predict(ex)
            arm = int(np.argmax(pmf))
            lines = [shared] + [
                (f"0:{-rewards[i, a]:.4f}:{pmf[a]:.4f} " if a == arm else "") + f"|a a{a}"
                for a in range(K)
            ]
            vw.learn("\n".join(lines))
        vw.finish()

    return run


# --- measurement ---------------------------------------------------------------------------
def time_runs(fn: Callable[[], None], n: int, repeats: int) -> dict[str, float]:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}




def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer decisions and repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "policies.json")
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    n_fast = 20_000 if args.quick else 100_000  # decisions per timed run, native backends
    n_slow = 2_000 if args.quick else 5_000  # NumPy loops, MABWiser, VW

    from promobandit import _backends

    backends = [b for b in ("cpp", "numba") if b in _backends.available()]
    rewards_b = bernoulli_table(max(n_fast, n_slow))
    xs, rewards_l = linear_problem(max(n_fast, n_slow))
    rows: list[dict[str, Any]] = []

    def add(workload: str, mode: str, impl: str, setting: str, n: int, fn: Callable[[], None]):
        fn_warm = fn
        fn_warm()  # compile (Numba), warm caches
        stats = time_runs(fn, n, repeats)
        rows.append({"workload": workload, "mode": mode, "impl": impl, "setting": setting,
                     "n": n, **stats})
        print(f"{workload:<20}{mode:<8}{impl:<14}{setting:<34}{stats['median']:>14,.0f}/s "
              f"[{stats['min']:,.0f} - {stats['max']:,.0f}]", flush=True)

    print(f"machine: {machine()}; one thread; decisions/s, median [min - max] of {repeats}")
    for b in backends:
        for setting, draws, refresh in (("propensity off", 0, 1),
                                        ("propensity 1000 draws, per 100 upd", 1000, 100)):
            add("BetaTS K=10", "single", f"pb-{b}", setting, n_fast,
                lambda b=b, d=draws, r=refresh: run_pb_single(pb_policy("beta", b, d, r), n_fast,
                                                              rewards_b, None))
        for setting, draws in (("propensity off", 0), ("propensity 1000 draws, per batch", 1000)):
            add("BetaTS K=10", "batch", f"pb-{b}", setting, n_fast,
                lambda b=b, d=draws: run_pb_batch(pb_policy("beta", b, d, 1), n_fast, rewards_b,
                                                  None))
    add("BetaTS K=10", "single", "numpy", "no propensity", n_slow,
        lambda: run_numpy_beta_single(n_slow, rewards_b))
    add("BetaTS K=10", "batch", "numpy", "no propensity", n_fast,
        lambda: run_numpy_beta_batch(n_fast, rewards_b))
    for mode, batched in (("single", False), ("batch", True)):
        mw = mabwiser_runner("beta", batched)
        if mw:
            add("BetaTS K=10", mode, "mabwiser", "no propensity", n_slow // 5,
                lambda mw=mw: mw(n_slow // 5, rewards_b, None))

    for kind, label in (("linucb", "LinUCB d=20 K=10"), ("lints", "LinTS d=20 K=10")):
        for b in backends:
            settings = [("deterministic", 0)] if kind == "linucb" else [("propensity off", 0),
                                                                       ("propensity 100 draws", 100)]
            for setting, draws in settings:
                add(label, "single", f"pb-{b}", setting, n_fast // 2,
                    lambda b=b, k=kind, d=draws: run_pb_single(pb_policy(k, b, d, 1), n_fast // 2,
                                                               rewards_l, xs))
                add(label, "batch", f"pb-{b}", setting, n_fast,
                    lambda b=b, k=kind, d=draws: run_pb_batch(pb_policy(k, b, d, 1), n_fast,
                                                              rewards_l, xs))
        add(label, "single", "numpy", "no propensity", n_slow,
            lambda k=kind: run_numpy_linear_single(k == "lints", n_slow, rewards_l, xs))
        add(label, "batch", "numpy", "no propensity", n_slow,
            lambda k=kind: run_numpy_linear_batch(k == "lints", n_slow, rewards_l, xs))
        for mode, batched in (("single", False), ("batch", True)):
            mw = mabwiser_runner(kind, batched)
            if mw:
                n_mw = n_slow // 10 if not batched else n_slow
                add(label, mode, "mabwiser", "no propensity", n_mw,
                    lambda mw=mw, n=n_mw: mw(n, rewards_l, xs))
    vw = vw_runner("lin")
    if vw:
        add("VW cb_explore_adf d=20 K=10", "single", "vowpalwabbit", "epsilon 0.1, pmf", n_slow,
            lambda: vw(n_slow, rewards_l, xs))
        add("VW cb_explore_adf K=10", "single", "vowpalwabbit", "epsilon 0.1, pmf", n_slow,
            lambda: vw(n_slow, rewards_b, None))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "repeats": repeats, "rows": rows},
                                    indent=1))
    print(f"wrote {args.json}")
    return rows


# --- pytest-benchmark entry points ---------------------------------------------------------
def test_beta_ts_single_cpp(benchmark: Any) -> None:
    rewards = bernoulli_table(10_000)
    benchmark(lambda: run_pb_single(pb_policy("beta", "cpp", 0, 1), 10_000, rewards, None))


def test_beta_ts_batch_cpp(benchmark: Any) -> None:
    rewards = bernoulli_table(100_000)
    benchmark(lambda: run_pb_batch(pb_policy("beta", "cpp", 0, 1), 100_000, rewards, None))


def test_beta_ts_batch_numpy(benchmark: Any) -> None:
    rewards = bernoulli_table(100_000)
    benchmark(lambda: run_numpy_beta_batch(100_000, rewards))


def test_linucb_single_cpp(benchmark: Any) -> None:
    xs, rewards = linear_problem(10_000)
    benchmark(lambda: run_pb_single(pb_policy("linucb", "cpp", 0, 1), 10_000, rewards, xs))


def test_linucb_batch_cpp(benchmark: Any) -> None:
    xs, rewards = linear_problem(100_000)
    benchmark(lambda: run_pb_batch(pb_policy("linucb", "cpp", 0, 1), 100_000, rewards, xs))


def test_linucb_single_numpy(benchmark: Any) -> None:
    xs, rewards = linear_problem(2_000)
    benchmark(lambda: run_numpy_linear_single(False, 2_000, rewards, xs))


if __name__ == "__main__":
    main()
