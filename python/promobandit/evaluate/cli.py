"""`promobandit evaluate` and `promobandit abtest` (registered by promobandit.cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._extras import require, require_extra


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ev = sub.add_parser("evaluate", help="off-policy estimates of a policy's value on a "
                                         "decision log, with confidence intervals")
    ev.add_argument("--log", required=True, help="the decision log: a Parquet file or the "
                                                 "engine's folder of part-*.parquet")
    ev.add_argument("--policy", required=True,
                    help="JSON file describing the target policy: {\"policy\": \"fixed\", "
                         "\"offer\": 2}, \"uniform\", \"stationary\" or a policy name with "
                         "config (see promobandit.evaluate.load_target_policy)")
    ev.add_argument("--estimators", default="ips,snips,dm,dr",
                    help="comma-separated: ips, snips, dm, dr, switch-dr, clipped-ips, "
                         "clipped-dr, or all (default ips,snips,dm,dr)")
    ev.add_argument("--level", type=float, default=0.95, help="confidence level (0.95)")
    ev.add_argument("--bootstrap", type=int, default=0,
                    help="bootstrap replicates for bootstrap intervals (default 0: analytic)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the "
                                                         "reward model's folds")
    ev.add_argument("--missing-reward", default="drop",
                    help="rows still waiting for feedback: 'drop' (default), 'error', or a "
                         "number to fill in")
    ev.add_argument("--out", default="evaluation.html",
                    help="report file: .html (a table), .json or .csv (default evaluation.html)")
    ev.set_defaults(func=run_evaluate)

    ab = sub.add_parser("abtest", help="analyse an A/B experiment log (conversion, revenue, "
                                       "profit; CUPED, SRM, always-valid p-values)")
    ab.add_argument("--log", required=True, help="Parquet or CSV with columns user, variant, "
                                                 "converted, revenue, profit[, pre_metric]")
    ab.add_argument("--control", default=None, help="the control variant (default: 'control' "
                                                    "if present, else the first in order)")
    ab.add_argument("--level", type=float, default=0.95, help="confidence level (0.95)")
    ab.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (2000)")
    ab.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ab.add_argument("--out", default=None, help="also write the table: .html, .json or .csv")
    ab.set_defaults(func=run_abtest)


_SUFFIXES = (".html", ".htm", ".json", ".csv")


def _check_out(path: str | None) -> None:
    if path is not None and Path(path).suffix not in _SUFFIXES:
        raise ValueError(f"out: expected a .html, .json or .csv file, got {path!r}")


def _write(frame: Any, path: str, title: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        out.write_text(json.dumps(json.loads(frame.to_json(orient="records")), indent=1))
    elif out.suffix == ".csv":
        frame.to_csv(out, index=False)
    elif out.suffix in (".html", ".htm"):
        out.write_text("<!doctype html><html><head><meta charset='utf-8'><title>"
                       f"{title}</title></head><body><h1>{title}</h1>"
                       f"{frame.to_html(index=False, float_format=lambda v: f'{v:.6g}')}"
                       "</body></html>")
    else:
        raise ValueError(f"out: expected a .html, .json or .csv file, got {path!r}")
    print(f"wrote {out}")


def _missing(value: str) -> str | float:
    if value in ("drop", "error"):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"missing-reward: expected 'drop', 'error' or a number, "
                         f"got {value!r}") from None


def run_evaluate(args: argparse.Namespace) -> int:
    require_extra("evaluate", "promobandit evaluate")
    from .api import evaluate_log_file

    _check_out(args.out)
    est: Any = "all" if args.estimators == "all" else tuple(
        e.strip() for e in args.estimators.split(",") if e.strip())
    report = evaluate_log_file(args.log, args.policy, estimators=est, level=args.level,
                               n_bootstrap=args.bootstrap, seed=args.seed,
                               missing_reward=_missing(args.missing_reward))
    print(report)  # estimates with intervals and diagnostics, in words
    frame = report.to_frame().reset_index()
    _write(frame, args.out, "promobandit off-policy evaluation")
    return 0


def run_abtest(args: argparse.Namespace) -> int:
    require_extra("evaluate", "promobandit abtest")
    pd = require("pandas", "evaluate", "promobandit abtest")

    from .abtest import analyse_experiment

    _check_out(args.out)
    report = analyse_experiment(args.log, control=args.control, level=args.level,
                                n_bootstrap=args.bootstrap, seed=args.seed)
    frame = report.to_frame()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(frame.to_string(index=False))
    if args.out:
        _write(frame, args.out, "promobandit A/B test analysis")
    return 0
