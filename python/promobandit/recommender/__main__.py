"""``python -m promobandit.recommender``: the comparison table on a synthetic log.

Samples the default synthetic world (or a resized one), splits it 80/10/10 by time,
fits the two-tower model, popularity and implicit ALS on the training window and
prints Recall@k, NDCG@k and fit time of each on the test window (the README's table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from .compare import compare_recommenders
from .data import SyntheticConfig, synthetic_log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promobandit.recommender",
                                     description=__doc__)
    defaults = SyntheticConfig()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="world seeds (the two-tower config uses the same seed)")
    parser.add_argument("--users", type=int, default=defaults.n_users)
    parser.add_argument("--items", type=int, default=defaults.n_items)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--progress", action="store_true", help="show a training progress bar")
    args = parser.parse_args(argv)

    from .two_tower import TwoTowerConfig  # torch only once the arguments are fine

    world = SyntheticConfig(n_users=args.users, n_items=args.items)
    results = []
    for seed in args.seeds:
        log = synthetic_log(world, seed=seed)
        train, val, test = log.split_by_time(0.1, 0.1)
        table = compare_recommenders(train, val, test, args.k,
                                     two_tower_config=TwoTowerConfig(seed=seed),
                                     progress=args.progress)
        results.append({"seed": seed, "events": len(log), "world": dataclasses.asdict(world),
                        "table": table})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    k = args.k
    print(f"{'seed':>4} {'model':<11} {'recall@' + str(k):>10} {'ndcg@' + str(k):>8} "
          f"{'users':>6} {'fit s':>7}")
    for res in results:
        for name, row in res["table"].items():
            print(f"{res['seed']:>4} {name:<11} {row[f'recall@{k}']:>10.3f} "
                  f"{row[f'ndcg@{k}']:>8.3f} {int(row['users']):>6} {row['fit_seconds']:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
