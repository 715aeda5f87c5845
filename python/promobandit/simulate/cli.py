"""`promobandit simulate`: the main job (registered by promobandit.cli)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = sub.add_parser("simulate", help="compare bandit offer policies with fixed discounts "
                                          "on a problem with known ground truth")
    sim.add_argument("--steps", type=int, default=100_000, help="shoppers (default 100000)")
    sim.add_argument("--batch", type=int, default=100,
                     help="decisions between policy updates (default 100)")
    sim.add_argument("--features", type=int, default=8, help="shopper features (default 8)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..policies import UCB1, BetaTS, EpsilonGreedy, LinTS, LinUCB
    from .offer_problem import OfferProblem, run_policy

    problem = OfferProblem(seed=args.seed, n_features=args.features)
    k, d = problem.n_offers, problem.context_dim
    learners = {
        "Beta TS": lambda: BetaTS(k, seed=args.seed, propensity_draws=200, propensity_refresh=10),
        "UCB1": lambda: UCB1(k, seed=args.seed, c=0.5),
        "epsilon-greedy": lambda: EpsilonGreedy(k, seed=args.seed, epsilon=0.05),
        "LinUCB": lambda: LinUCB(k, d, seed=args.seed, alpha=0.5),
        "LinTS": lambda: LinTS(k, d, seed=args.seed, v=0.3, propensity_draws=100),
    }
    t0 = time.perf_counter()
    runs = [run_policy(problem, None, args.steps, fixed_offer=j,
                       name=f"fixed {problem.discounts[j]:.0%} off") for j in range(k)]
    best_fixed = max(runs, key=lambda r: r.expected.sum())
    runs.append(run_policy(problem, None, args.steps, fixed_offer=int(best_fixed.offers[0]),
                           name=f"best fixed in hindsight ({best_fixed.name})"))
    for name, make in learners.items():
        runs.append(run_policy(problem, make(), args.steps, batch=args.batch, name=name))
    elapsed = time.perf_counter() - t0
    base = runs[-1 - len(learners)].profit.sum()
    print(f"promobandit simulate: {args.steps:,} shoppers, {k} offers "
          f"{[f'{x:.0%}' for x in problem.discounts]}, price {problem.price:g}, "
          f"cost {problem.cost:g}, seed {args.seed}\n")
    header = f"{'policy':<44}{'profit':>12}{'vs best fixed':>15}{'regret':>12}{'regret 2nd half':>17}"
    print(header)
    print("-" * len(header))
    for r in runs:
        s = r.summary()
        print(f"{r.name:<44}{s['profit']:>12,.0f}{s['profit'] / base - 1:>+15.1%}"
              f"{s['regret']:>12,.0f}{s['regret_second_half_share']:>17.0%}")
    best = max(runs[-len(learners):], key=lambda r: r.profit.sum())
    print(f"\n{best.name} earned {best.profit.sum() / base - 1:+.1%} profit against the best "
          f"fixed offer in hindsight ({elapsed:.1f} s).")
    return 0
