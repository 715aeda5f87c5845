"""The ``promobandit`` command line.

Each command lives with its layer and registers itself here: ``simulate``
(promobandit.simulate.cli), ``evaluate`` and ``abtest`` (promobandit.evaluate.cli),
``serve`` (promobandit.service.cli), ``datasets`` (promobandit.datasets.cli). Commands
import their dependencies only when run; one that is missing (an extra not installed) is a
one-line error naming the extra, with exit status 2, like a bad setting.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._extras import MissingExtraError
from ._version import __version__

# Modules with a ``register(subparsers)`` function, in the order of the help text.
COMMAND_MODULES = (
    "promobandit.simulate.cli",
    "promobandit.evaluate.cli",
    "promobandit.service.cli",
    "promobandit.datasets.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promobandit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"promobandit {args.command}: {exc}", file=sys.stderr)
        return 2
    except MissingExtraError as exc:
        print(f"promobandit: error: {exc}", file=sys.stderr)  # exc names the command
        return 2


if __name__ == "__main__":
    sys.exit(main())
