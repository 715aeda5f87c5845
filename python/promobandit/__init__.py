"""promobandit: personalised discounts with native contextual bandits.

The product in one import::

    from promobandit import Engine, EngineConfig, Basket, default_catalogue, make_policy

- the engine: ``Engine``, ``EngineConfig``, ``Decision``, ``FeedbackResult``;
- offers: ``Catalogue``, ``Basket``, ``default_catalogue`` and the offer kinds
  (``NoDiscount``, ``PercentOff``, ``SpendThreshold``, ``TimeLimitedPercentOff``,
  ``Coupon``, their base ``Offer``);
- limits: ``BudgetConfig``, ``FairnessConfig``, ``UserCapsConfig``;
- behaviour features: ``FeatureStore``, ``FeatureConfig``;
- every policy (``BetaTS``, ``GaussianTS``, ``UCB1``, ``UCBTuned``, ``EpsilonGreedy``,
  ``Softmax``, ``LinUCB``, ``LinTS``), ``Policy``, ``PolicyTraits``, ``POLICIES``,
  ``make_policy`` and ``FixedOffer`` (the fixed promotion they are compared with);
- top-k softmax scoring: ``topk_softmax``, ``TopK``;
- ``rng``, ``available_backends()``, ``__version__``.

Hot paths (arm selection, posterior updates, top-k softmax scoring) run in C++
(``promobandit._core``) with Numba fallbacks of identical semantics. The policies and
scoring load with the package; the engine, offers, limits and features load on first use
(PEP 562), so ``import promobandit`` stays at NumPy's cost and never imports Numba or an
optional dependency. Optional dependencies live behind extras (``promobandit._extras``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import rng
from ._backends import available as available_backends
from ._version import __version__
from .policies import (
    POLICIES,
    UCB1,
    BetaTS,
    ConversionTS,
    EpsilonGreedy,
    FixedOffer,
    GaussianTS,
    LinTS,
    LinUCB,
    Policy,
    PolicyTraits,
    Softmax,
    UCBTuned,
    make_policy,
)
from .scoring import TopK, topk_softmax

if TYPE_CHECKING:
    from .constraints import BudgetConfig, FairnessConfig, UserCapsConfig
    from .engine import Decision, Engine, EngineConfig, FeedbackResult
    from .features import FeatureConfig, FeatureStore
    from .offers import (
        Basket,
        Catalogue,
        Coupon,
        NoDiscount,
        Offer,
        PercentOff,
        SpendThreshold,
        TimeLimitedPercentOff,
        default_catalogue,
    )

# The business layer, loaded on first use: name -> the subpackage that defines it.
_LAZY = {
    **dict.fromkeys(("Decision", "Engine", "EngineConfig", "FeedbackResult"), "engine"),
    **dict.fromkeys(("Basket", "Catalogue", "Coupon", "NoDiscount", "Offer", "PercentOff",
                     "SpendThreshold", "TimeLimitedPercentOff", "default_catalogue"),
                    "offers"),
    **dict.fromkeys(("BudgetConfig", "FairnessConfig", "UserCapsConfig"), "constraints"),
    **dict.fromkeys(("FeatureConfig", "FeatureStore"), "features"),
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "POLICIES",
    "UCB1",
    "Basket",
    "BetaTS",
    "BudgetConfig",
    "Catalogue",
    "ConversionTS",
    "Coupon",
    "Decision",
    "Engine",
    "EngineConfig",
    "EpsilonGreedy",
    "FairnessConfig",
    "FeatureConfig",
    "FeatureStore",
    "FeedbackResult",
    "FixedOffer",
    "GaussianTS",
    "LinTS",
    "LinUCB",
    "NoDiscount",
    "Offer",
    "PercentOff",
    "Policy",
    "PolicyTraits",
    "Softmax",
    "SpendThreshold",
    "TimeLimitedPercentOff",
    "TopK",
    "UCBTuned",
    "UserCapsConfig",
    "__version__",
    "available_backends",
    "default_catalogue",
    "make_policy",
    "rng",
    "topk_softmax",
]
