"""``python -m promobandit.datasets fetch obd [--cache-dir DIR] [--force]``.

The same as ``promobandit datasets fetch obd`` once the CLI wires it; this entry point
exists so CI can fetch before the CLI command lands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import DATASETS, fetch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promobandit.datasets",
                                     description="fetch public datasets into the local cache")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download a dataset once (then it works offline)")
    f.add_argument("name", choices=DATASETS)
    f.add_argument("--cache-dir", default=None,
                   help="the dataset folder (default $PROMOBANDIT_DATA/<name> or "
                        "~/.cache/promobandit/<name>)")
    f.add_argument("--force", action="store_true", help="fetch again even if present")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.name, args.cache_dir, force=args.force)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
