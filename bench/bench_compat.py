"""The same MABWiser program on MABWiser and on promobandit.compat.mabwiser, in one run.

Programs (one thread, arms labelled 0..9):
  Thompson sampling, K=10, Bernoulli rewards (arm a pays 1 with probability 0.05 + 0.03 a);
  LinUCB (alpha=1, l2_lambda=1), K=10, d=20, linear rewards with noise.
Modes: one decision at a time (predict one, partial_fit it) and batches of 1,000
(predict 1,000, partial_fit them). Both libraries start from the same fit on 100 uniformly
logged rows and see the same reward tables. The program text is identical: only the
module that MAB and LearningPolicy come from differs.

Reports decisions per second of each (median of the repetitions), the speed-up, and the
mean reward of each with its difference in standard errors (Monte Carlo error of the
repetitions' seeds). Targets: >= 50x one at a time, >= 5x batched, mean reward equal
within Monte Carlo error.

OPE (`--ope-rows`, default 1M): the same obp program, ``OffPolicyEvaluation`` with IPW,
SNIPW, DM and DR on one synthetic ``bandit_feedback`` (K=10, len_list=1, a softmax target and
a fixed reward model), run on obp and on ``promobandit.compat.obp``: seconds (median of the
repetitions) and the largest difference between the two libraries' values. obp 0.5.7 pins
old versions of its dependencies, so it is installed without them:
``pip install --no-deps obp==0.5.7`` (it then runs on the packages already installed);
without obp only the compat layer's time is printed.

Run: python bench/bench_compat.py [--quick] [--ope-rows N] [--json PATH]   (needs the
compat-test or bench extra: mabwiser)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from _machine import blas_threads, machine

K, D, BATCH, WARM = 10, 20, 1000, 100


def problem(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(rewards (n + WARM, K), contexts (n + WARM, D) or None)."""
    rs = np.random.default_rng(seed)
    if kind == "ts":
        p = 0.05 + 0.03 * np.arange(K)
        return (rs.random((n + WARM, K)) < p[None]).astype(np.float64), None
    x = rs.normal(size=(n + WARM, D))
    theta = rs.normal(size=(K, D)) / math.sqrt(D)
    return x @ theta.T + 0.1 * rs.normal(size=(n + WARM, K)), x


def program(lib: Any, kind: str, batched: bool, n: int, seed: int) -> tuple[float, float]:
    """The MABWiser program; lib is the module holding MAB and LearningPolicy.
    Returns (seconds for the n decisions and their partial_fit, mean reward)."""
    table, xs = problem(kind, n, seed)
    arms = list(range(K))
    lp = lib.LearningPolicy.ThompsonSampling() if kind == "ts" else \
        lib.LearningPolicy.LinUCB(alpha=1.0, l2_lambda=1.0)
    mab = lib.MAB(arms, lp, seed=seed)
    warm = np.arange(WARM) % K
    mab.fit(warm.tolist(), table[np.arange(WARM), warm].tolist(),
            None if xs is None else xs[:WARM])
    total = 0.0
    t0 = time.perf_counter()
    if not batched:
        for t in range(WARM, WARM + n):
            if xs is None:
                a = mab.predict()
                r = float(table[t, a])
                mab.partial_fit([a], [r])
            else:
                x = xs[t:t + 1]
                a = mab.predict(x)
                r = float(table[t, a])
                mab.partial_fit([a], [r], x)
            total += r
    else:
        for s in range(WARM, WARM + n, BATCH):
            e = min(s + BATCH, WARM + n)
            if xs is None:
                # A non-contextual MABWiser policy makes one decision per context row.
                chosen = np.asarray(mab.predict(np.zeros((e - s, 1))))
                r = table[np.arange(s, e), chosen]
                mab.partial_fit(chosen, r)
            else:
                chosen = np.asarray(mab.predict(xs[s:e]))
                r = table[np.arange(s, e), chosen]
                mab.partial_fit(chosen, r, xs[s:e])
            total += float(r.sum())
    return time.perf_counter() - t0, total / n


def compare(kind: str, batched: bool, n: int, seeds: list[int]) -> dict[str, Any]:
    import mabwiser.mab as mw

    import promobandit.compat.mabwiser as pb

    out: dict[str, Any] = {"program": "ThompsonSampling K=10" if kind == "ts" else
                           "LinUCB K=10 d=20", "mode": "batch 1000" if batched else "one at a time",
                           "decisions": n, "repetitions": len(seeds)}
    for name, lib in (("mabwiser", mw), ("compat", pb)):
        secs, means = [], []
        for seed in seeds:
            s, m = program(lib, kind, batched, n, seed)
            secs.append(s)
            means.append(m)
        out[name] = {"decisions_per_s": n / statistics.median(secs),
                     "mean_reward": statistics.fmean(means),
                     "se": statistics.stdev(means) / math.sqrt(len(means))}
    out["speedup"] = out["compat"]["decisions_per_s"] / out["mabwiser"]["decisions_per_s"]
    se = math.hypot(out["mabwiser"]["se"], out["compat"]["se"])
    diff = out["compat"]["mean_reward"] - out["mabwiser"]["mean_reward"]
    out["reward_diff_in_se"] = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
    out["target"] = 5.0 if batched else 50.0
    return out


def ope_feedback(n: int, seed: int = 0) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """obp's bandit_feedback for n rounds (K=10, len_list=1), the target's action_dist and a
    reward model's predictions, both of shape (n, K, 1)."""
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 4))
    theta = rs.normal(size=(K, 4))
    logit = x @ theta.T
    logging = np.exp(0.5 * logit)
    logging = 0.8 * logging / logging.sum(axis=1, keepdims=True) + 0.2 / K
    action = np.minimum((logging.cumsum(axis=1) < rs.random(n)[:, None]).sum(axis=1), K - 1)
    reward = (rs.random(n) < 1.0 / (1.0 + np.exp(-logit[np.arange(n), action]))).astype(float)
    target = np.exp(logit - logit.max(axis=1, keepdims=True))
    target /= target.sum(axis=1, keepdims=True)
    q = 1.0 / (1.0 + np.exp(-0.8 * logit))
    feedback = {"n_rounds": n, "n_actions": K, "action": action, "reward": reward,
                "pscore": logging[np.arange(n), action], "position": np.zeros(n, dtype=int),
                "context": x, "action_context": np.eye(K)}
    return feedback, target[:, :, None], q[:, :, None]


def ope_compare(n: int, repeats: int) -> dict[str, Any]:
    """obp's OffPolicyEvaluation (IPW, SNIPW, DM, DR point estimates) against the compat
    layer on the same inputs, in this run."""
    import promobandit.compat.obp as pb

    libs: list[tuple[str, Any]] = [("compat", pb)]
    try:
        import obp.ope as ob

        libs.insert(0, ("obp", ob))
    except ImportError:
        pass
    feedback, dist, q = ope_feedback(n)
    out: dict[str, Any] = {"program": f"obp OffPolicyEvaluation IPW+SNIPW+DM+DR K={K}",
                           "rows": n, "repetitions": repeats}
    for name, lib in libs:
        secs, values = [], {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            ope = lib.OffPolicyEvaluation(bandit_feedback=feedback, ope_estimators=[
                lib.InverseProbabilityWeighting(),
                lib.SelfNormalizedInverseProbabilityWeighting(),
                lib.DirectMethod(), lib.DoublyRobust()])
            values = ope.estimate_policy_values(action_dist=dist,
                                                estimated_rewards_by_reg_model=q)
            secs.append(time.perf_counter() - t0)
        out[name] = {"seconds": statistics.median(secs),
                     "values": {k: float(v) for k, v in values.items()}}
    if "obp" in out:
        out["speedup"] = out["obp"]["seconds"] / out["compat"]["seconds"]
        out["max_abs_diff"] = max(abs(out["obp"]["values"][k] - out["compat"]["values"][k])
                                  for k in out["compat"]["values"])
    return out


def print_ope(row: dict[str, Any]) -> None:
    pb = row["compat"]
    line = f"{row['program']} on {row['rows']:,} rows: compat {pb['seconds']:.3f} s"
    if "obp" in row:
        line += (f", obp {row['obp']['seconds']:.3f} s (x{row['speedup']:.1f}), largest "
                 f"difference of the values {row['max_abs_diff']:.1e}")
    else:
        line += " (obp not installed: pip install --no-deps obp==0.5.7)"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer decisions and repetitions")
    ap.add_argument("--json", type=Path,
                    default=Path(__file__).parent / "results" / "compat.json")
    ap.add_argument("--ope-rows", type=int, default=1_000_000,
                    help="rows of the obp OPE comparison (0 skips it)")
    args = ap.parse_args(argv)
    n_single = 500 if args.quick else 3_000
    n_batch = 5_000 if args.quick else 20_000
    seeds = list(range(1, 4 if args.quick else 9))
    print(f"machine: {machine()}; one thread; {len(seeds)} repetitions (seeds), decisions/s "
          "median, mean reward +- its standard error")
    rows = []
    for kind in ("ts", "linucb"):
        for batched in (False, True):
            row = compare(kind, batched, n_batch if batched else n_single, seeds)
            rows.append(row)
            mw, pb = row["mabwiser"], row["compat"]
            ok = "meets" if row["speedup"] >= row["target"] else "MISSES"
            print(f"{row['program']:<22} {row['mode']:<14} mabwiser {mw['decisions_per_s']:>11,.0f}/s"
                  f"  compat {pb['decisions_per_s']:>11,.0f}/s  x{row['speedup']:.1f} ({ok} "
                  f">= {row['target']:.0f}x)  reward {mw['mean_reward']:.4f}+-{mw['se']:.4f} vs "
                  f"{pb['mean_reward']:.4f}+-{pb['se']:.4f} ({row['reward_diff_in_se']:+.1f} se)")
    ope = ope_compare(args.ope_rows, 3 if args.quick else 5) if args.ope_rows else None
    if ope is not None:
        print_ope(ope)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "ope": ope},
                                    indent=2))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    with blas_threads(1):  # MABWiser's matrix products on one thread, as ours
        main()
