"""The one TOML loader: catalogues, simulation and service configurations all read
through it, so they agree on the parser (``tomllib``, or ``tomli`` on Python 3.10) and
on the error a bad file gives."""

from __future__ import annotations

import os
from typing import Any


def load_toml(path: str | os.PathLike[str], field: str = "config") -> dict[str, Any]:
    """The table in a TOML file; ValueError naming ``field`` when the file is missing or is
    not valid TOML."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10: the tomli backport (a declared dependency there)
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{field}: no such file {p!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{field}: {p} is not valid TOML: {exc}") from None


def parse_toml_value(text: str) -> Any:
    """One TOML value written as text (``5000``, ``true``, ``[1.0, 9.0]``, ``"s"``);
    ValueError when the text is not one (e.g. environment variables of the service)."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10: the tomli backport
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not a TOML value: {exc}") from None
