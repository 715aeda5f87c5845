"""Shared test fixtures: one test body parametrised over the available backends."""

from __future__ import annotations

import pytest

from promobandit import _backends

CPU_BACKENDS = [b for b in ("cpp", "numba") if b in _backends.available()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _backends.has_cuda():
        return
    skip = pytest.mark.skip(reason=f"no CUDA backend: {_backends._why_missing('cuda')}")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=CPU_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each CPU backend that is built and importable here."""
    return request.param
