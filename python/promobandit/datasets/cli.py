"""`promobandit datasets fetch NAME` (registered by promobandit.cli)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ds = sub.add_parser("datasets", help="public datasets in the local cache")
    dsub = ds.add_subparsers(dest="datasets_command", required=True)
    f = dsub.add_parser("fetch", help="download a dataset once (then it works offline)")
    f.add_argument("name", help="the dataset: obd (the Open Bandit Dataset sample)")
    f.add_argument("--cache-dir", default=None,
                   help="the dataset folder (default $PROMOBANDIT_DATA/<name> or "
                        "~/.cache/promobandit/<name>)")
    f.add_argument("--force", action="store_true", help="fetch again even if present")
    f.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    from . import DATASETS, fetch

    if args.name not in DATASETS:
        raise ValueError(f"name: expected one of {sorted(DATASETS)}, got {args.name!r}")
    try:
        print(fetch(args.name, args.cache_dir, force=args.force))
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    return 0
