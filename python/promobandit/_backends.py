"""Which kernel backends are usable: probed once, on first use.

``HAS_CPP``: the compiled ``promobandit._core`` module imports.
``HAS_NUMBA``: numba imports. ``HAS_CUDA``: the optional ``promobandit._cuda``
module imports and sees at least one device. A backend that was not built is
silently absent; one that was built but cannot run gives a warning.

Every kernel-facing API takes ``backend="auto" | "cpp" | "numba" | "cuda"``;
the environment variable ``PROMOBANDIT_BACKEND`` replaces ``"auto"``.
Asking for a backend that is not available raises ``RuntimeError``.
"""

from __future__ import annotations

import importlib
import os
import warnings
from functools import cache
from types import ModuleType

BACKENDS = ("cpp", "numba", "cuda")
ENV_VAR = "PROMOBANDIT_BACKEND"


@cache
def _probe_cpp() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("promobandit._core"), ""
    except ImportError as exc:
        if "No module named" not in str(exc):
            warnings.warn(f"promobandit._core was built but does not import: {exc}",
                          RuntimeWarning, stacklevel=3)
        return None, f"the C++ extension promobandit._core is not available ({exc})"


@cache
def _probe_numba() -> tuple[bool, str]:
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return False, f"numba is not installed ({exc})"
    return True, ""


@cache
def _probe_cuda() -> tuple[ModuleType | None, str]:
    try:
        mod = importlib.import_module("promobandit._cuda")
    except ImportError as exc:
        if "No module named" not in str(exc):
            warnings.warn(f"promobandit._cuda was built but does not import: {exc}",
                          RuntimeWarning, stacklevel=3)
            return None, f"promobandit._cuda does not import ({exc})"
        return None, "the CUDA module promobandit._cuda was not built (no CUDA toolkit at build time)"
    try:
        count = int(mod.device_count())
    except Exception as exc:  # a driver problem must not break CPU users
        warnings.warn(f"promobandit._cuda is built but cannot query devices: {exc}",
                      RuntimeWarning, stacklevel=3)
        return None, f"promobandit._cuda cannot query devices ({exc})"
    if count < 1:
        return None, "promobandit._cuda is built but no CUDA device is visible"
    return mod, ""


def has_cpp() -> bool:
    return _probe_cpp()[0] is not None


def has_numba() -> bool:
    return _probe_numba()[0]


def has_cuda() -> bool:
    return _probe_cuda()[0] is not None


def available() -> tuple[str, ...]:
    """Backends usable on this machine, fastest first."""
    out = []
    if has_cuda():
        out.append("cuda")
    if has_cpp():
        out.append("cpp")
    if has_numba():
        out.append("numba")
    return tuple(out)


def _why_missing(name: str) -> str:
    if name == "cpp":
        return _probe_cpp()[1]
    if name == "numba":
        return _probe_numba()[1]
    return _probe_cuda()[1]


def resolve(backend: str = "auto", *, supported: tuple[str, ...] = ("cpp", "numba")) -> str:
    """The concrete backend for a request.

    ``supported`` lists the backends that implement the kernel at hand, in order
    of preference for ``"auto"``.
    """
    if not isinstance(backend, str):
        raise ValueError(f"backend: expected one of 'auto', {', '.join(map(repr, BACKENDS))}; "
                         f"got {backend!r}")
    want = backend
    if want == "auto":
        want = os.environ.get(ENV_VAR, "auto") or "auto"
    if want not in ("auto", *BACKENDS):
        raise ValueError(f"backend: expected one of 'auto', {', '.join(map(repr, BACKENDS))}; "
                         f"got {want!r}")
    if want == "auto":
        for name in supported:
            if name in available():
                return name
        reasons = "; ".join(f"{n}: {_why_missing(n)}" for n in supported)
        raise RuntimeError(f"no backend available for this kernel ({reasons})")
    if want not in supported:
        raise RuntimeError(f"backend {want!r} does not implement this kernel; "
                           f"supported: {', '.join(supported)}")
    if want not in available():
        raise RuntimeError(f"backend {want!r} is not available: {_why_missing(want)}")
    return want


def core() -> ModuleType:
    mod, why = _probe_cpp()
    if mod is None:
        raise RuntimeError(f"backend 'cpp' is not available: {why}")
    return mod


def cuda() -> ModuleType:
    mod, why = _probe_cuda()
    if mod is None:
        raise RuntimeError(f"backend 'cuda' is not available: {why}")
    return mod
