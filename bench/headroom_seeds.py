"""Issue 15's headroom check over several seeds: share, gain and spend per seed.

For each seed, the default ``promobandit simulate`` run (20,000 shoppers, 14 days) of the
fixed offers, LinTS + pacing and the conversion model + pacing, summarised by the report's
own code (``promobandit.simulate.report.summarise``): the conversion model's share of the
reachable headroom, its profit over the best fixed offer with the paired 95% interval
(bootstrap over days), its discount spend beside LinTS + pacing's (currency), and its
expected profit over no discount per quarter of the run (currency per decision: does it
keep learning?). The baseline is LinTS + pacing in the same run.

--set KEY=VALUE (repeatable) overrides a conversion-model setting
([policy_settings.conversion], e.g. --set prior_var_offer=0.1 for the policy's own
default), so a change is judged over all seeds together, not on one run.

--policy-seeds 0,1,2 runs the conversion model once per policy seed on each seed's
shoppers (``PolicySpec.policy_seed``; 0 is the default run's own, the scenario's seed):
a policy's own randomness moves its share by 10 percentage points or more between runs,
so a change is read from the mean and the worst run over all of them.

Run as a script: python bench/headroom_seeds.py [--seeds 0,1,2,3] [--policy-seeds 0]
[--set KEY=VALUE ...] [--json PATH]. About 40 s per seed plus 6 s per extra policy seed
on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine
from promobandit.simulate.config import SimulationConfig
from promobandit.simulate.pipeline import SimulationResult, prepare
from promobandit.simulate.report import summarise
from promobandit.simulate.run import run_policies

POLICIES = ["fixed", "lints+pacing", "conversion+pacing"]
KEY = "conversion+pacing"


def one_seed(seed: int, settings: dict[str, Any], policy_seeds: list[int]
             ) -> list[dict[str, Any]]:
    """One row per policy seed: the conversion model's numbers on this seed's shoppers."""
    cfg = SimulationConfig.from_dict({
        "seed": seed, "policies": POLICIES, "workers": 1, "abtest": {"enabled": False},
        "tradeoff": {"enabled": False},
        "policy_settings": {"conversion": settings} if settings else {}})
    scenario, quality, events, timings = prepare(cfg)
    base = run_policies(cfg.specs(), scenario)
    conv_spec = next(r.spec for r in base if r.spec.key == KEY)
    rows = []
    for ps in policy_seeds:
        runs = [r for r in base if r.spec.key != KEY]
        runs.append(base[[r.spec.key for r in base].index(KEY)] if ps == 0 else run_policies(
            [dataclasses.replace(conv_spec, policy_seed=seed + 1000 * ps)], scenario)[0])
        result = SimulationResult(config=cfg, scenario=scenario, runs=runs,
                                  recommender=quality, history_events=events,
                                  timings=timings)
        s = summarise(result)
        conv, lints = s.get(KEY), s.get("lints+pacing")
        assert conv is not None and lints is not None and conv.vs_best_fixed is not None
        run = result.run(KEY)
        none = result.run("fixed:none")
        q = len(run.expected) // 4
        quarters = [float((run.expected[i * q:(i + 1) * q]
                           - none.expected[i * q:(i + 1) * q]).mean()) for i in range(4)]
        rows.append({"seed": seed, "policy_seed": ps, "best_fixed": s.best_fixed,
                     "share": conv.headroom_share, "share_lints": lints.headroom_share,
                     "gain": conv.vs_best_fixed.value, "gain_lo": conv.vs_best_fixed.lo,
                     "gain_hi": conv.vs_best_fixed.hi, "spend": conv.spend,
                     "spend_lints": lints.spend, "quarters": quarters})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--policy-seeds", default="0")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    settings: dict[str, Any] = {}
    for kv in a.set:
        key, _, value = kv.partition("=")
        settings[key] = float(value) if any(c in value for c in ".e") else int(value)
    print(f"machine: {machine()}")
    print(f"conversion settings over the simulator's defaults: {settings or 'none'}")
    policy_seeds = [int(p) for p in a.policy_seeds.split(",")]
    print(f"{'seed':>4} {'pol':>3} {'best fixed':>24} {'share':>7} {'LinTS':>7} "
          f"{'gain [95% CI]':>24} {'spend':>8} {'LinTS':>8}  expected - no discount per "
          "quarter (currency per decision)")
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        for r in one_seed(seed, settings, policy_seeds):
            rows.append(r)
            print(f"{seed:>4} {r['policy_seed']:>3} {r['best_fixed']:>24} {r['share']:>7.1%} "
                  f"{r['share_lints']:>7.1%} {r['gain']:>+8.2%} [{r['gain_lo']:+.2%}, "
                  f"{r['gain_hi']:+.2%}] {r['spend']:>8,.0f} {r['spend_lints']:>8,.0f}  "
                  + " ".join(f"{v:.3f}" for v in r["quarters"]), flush=True)
    shares = [r["share"] for r in rows]
    print(f"conversion model + pacing over {len(rows)} runs: mean share "
          f"{statistics.mean(shares):.1%} (median {statistics.median(shares):.1%}, worst "
          f"{min(shares):.1%}); LinTS + pacing mean share "
          f"{statistics.mean(r['share_lints'] for r in rows):.1%}; median gain "
          f"{statistics.median(r['gain'] for r in rows):+.2%}; every interval above zero: "
          f"{all(r['gain_lo'] > 0 for r in rows)}")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "settings": settings,
                                      "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
