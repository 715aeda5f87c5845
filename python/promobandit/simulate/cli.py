"""`promobandit simulate`: the main job (registered by promobandit.cli).

With no arguments it runs the embedded default (simulate.config.default_config): builds
the market, generates the behaviour history, trains the two-tower recommender, runs every
policy through the engine on the same shoppers, then the A/B test of [abtest] (two
engines, each serving its own share of the shoppers), prints the summary table (with a
line for the A/B test) and the verdict, and writes the HTML report, the table (CSV,
JSON), the A/B test's per-shopper table and the Parquet decision logs into --out
(default ./promobandit-report/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import Any

from .._extras import require, require_extra

DEFAULT_OUT = "promobandit-report"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = sub.add_parser(
        "simulate", help="simulate a marketplace and compare discount policies run through "
                         "the engine; writes an HTML report",
        description=__doc__.splitlines()[0])
    sim.add_argument("--config", metavar="FILE", help="TOML configuration (see "
                     "promobandit.simulate.config for every key)")
    sim.add_argument("--quick", action="store_true",
                     help="a small, fast run for a first look (seconds)")
    sim.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                     help=f"output folder (default ./{DEFAULT_OUT}/)")
    sim.add_argument("--users", type=int, metavar="N",
                     help="shoppers in the market (the daily budget scales with them unless "
                          "--budget or the config sets it)")
    sim.add_argument("--days", type=int, metavar="N", help="simulated days of the run")
    sim.add_argument("--budget", type=float, metavar="AMOUNT",
                     help="daily discount budget of the runs with pacing (currency)")
    sim.add_argument("--fairness", type=float, metavar="GAP",
                     help="largest gap in average discount depth between groups (a fraction) "
                          "for the runs with +fairness")
    sim.add_argument("--seed", type=int, metavar="N", help="seed of everything")
    sim.add_argument("--policies", metavar="LIST",
                     help="comma-separated policies, e.g. fixed,lints+pacing,thompson "
                          "(names in promobandit.simulate.config)")
    sim.add_argument("--workers", type=int, metavar="N",
                     help="processes running policies side by side")
    sim.add_argument("--abtest", action=argparse.BooleanOptionalAction, default=None,
                     help="also run the A/B test of [abtest] (default: on; its control, "
                          "treatment, weights and salt are set in the config)")
    sim.add_argument("--tradeoff", action=argparse.BooleanOptionalAction, default=None,
                     help="also run the profit / conversion / retention sweep of [tradeoff] "
                          "and explain who got which offer (default: on)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """The configuration: preset, then the file, then the flags (errors name the key)."""
    from .config import SimulationConfig, default_config, quick_config

    base = quick_config() if args.quick else default_config()
    data: dict[str, Any] = {}
    if args.config:
        from .._toml import load_toml

        data = load_toml(args.config, "--config")
    budget_given = "daily" in data.get("budget", {}) if isinstance(data.get("budget"),
                                                                    dict) else False
    cfg = SimulationConfig.from_dict(data, base)
    flags: dict[str, Any] = {}
    if args.users is not None:
        flags.setdefault("market", {})["n_users"] = args.users
        if args.budget is None and not budget_given and args.users > 0:
            # The default budget is sized for the default market: keep its share of demand.
            flags.setdefault("budget", {})["daily"] = (cfg.budget.daily * args.users
                                                       / cfg.market.n_users)
    if args.budget is not None:
        flags.setdefault("budget", {})["daily"] = args.budget
    if args.fairness is not None:
        flags.setdefault("fairness", {})["max_gap"] = args.fairness
    if args.days is not None:
        flags["days"] = args.days
    if args.seed is not None:
        flags["seed"] = args.seed
    if args.workers is not None:
        flags["workers"] = args.workers
    if args.policies is not None:
        flags["policies"] = [p.strip() for p in args.policies.split(",") if p.strip()]
    if args.abtest is not None:
        flags["abtest"] = {"enabled": args.abtest}
    if getattr(args, "tradeoff", None) is not None:
        flags["tradeoff"] = {"enabled": args.tradeoff}
    return SimulationConfig.from_dict(flags, cfg) if flags else cfg


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    cfg = build_config(args)  # settings first: a bad one is named with or without the extra
    require_extra("simulate", "promobandit simulate")  # before anything is written
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out: {args.out!r} exists and is not a folder")
    logs = os.path.join(out, "logs")
    if os.path.isdir(logs):
        shutil.rmtree(logs)  # a log folder appends parts: old runs would mix in
    os.makedirs(logs, exist_ok=True)

    tqdm = require("tqdm", "simulate", "promobandit simulate").tqdm

    from .pipeline import simulate
    from .report import summarise, summary_text, verdict, write_report

    n_runs = len(cfg.specs())
    stages = ("behaviour history", "two-tower recommender", "sessions and lists", "policies",
              *(("A/B test",) if cfg.abtest.enabled else ()),
              *(("trade-off",) if cfg.tradeoff.enabled else ()))
    bar = tqdm(total=len(stages) - 1 + n_runs + 1, desc="simulate", unit="step",
               disable=args.no_progress, file=sys.stderr, leave=False,
               bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed} {postfix}")
    seen: list[str] = []

    def stage(name: str) -> None:
        if seen:
            bar.update(1)
        seen.append(name)
        bar.set_postfix_str(name)

    def done(r: Any) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{r.spec.label} done")

    try:
        result = simulate(cfg, log_root=logs, progress=stage, on_run=done)
        sections: list[str] = []
        tradeoff = ""
        if cfg.tradeoff.enabled:
            from .pareto import report_sections

            stage("trade-off")
            t0 = time.perf_counter()
            sections, tradeoff = report_sections(cfg.tradeoff, cfg.seed)
            result.timings["trade-off"] = time.perf_counter() - t0
        bar.set_postfix_str("report")
        t0 = time.perf_counter()
        summary = summarise(result)
        path = write_report(result, out, summary, sections)
        result.timings["report"] = time.perf_counter() - t0
        bar.update(1)
    finally:
        bar.close()
    m = cfg.market
    print(f"promobandit simulate: {m.n_users:,} shoppers, {m.n_items:,} items, "
          f"{int(cfg.days)} days, seed {cfg.seed}, {n_runs} policies "
          f"(budget {cfg.budget.daily:,.0f}/day for +pacing, fairness gap "
          f"{cfg.fairness.max_gap:.0%} by {cfg.fairness.group} for +fairness)\n")
    print(summary_text(summary))
    print("\n" + verdict(summary) + "\n")
    if tradeoff:
        print(tradeoff + "\n")
    total = time.perf_counter() - t_start
    print(f"report: {path}\ndecision logs: {logs}\ntime: {total:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()) + ")")
    return 0


__all__ = ["DEFAULT_OUT", "build_config", "register", "run"]
