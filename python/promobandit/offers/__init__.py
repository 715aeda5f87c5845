"""Offers: the discount kinds (``offer``), baskets (``basket``), exact pricing in minor
units and eligibility under the margin floor (``pricing``: the one PricingTable and the
rounding rule), and the catalogue (``catalogue``)."""

from __future__ import annotations

from .basket import Basket
from .catalogue import (
    CATALOGUE_FORMAT_VERSION,
    QUOTE_BACKENDS,
    Catalogue,
    Quote,
    QuoteBatch,
    default_catalogue,
)
from .offer import (
    OFFER_KINDS,
    Coupon,
    NoDiscount,
    Offer,
    PercentOff,
    SpendThreshold,
    TimeLimitedPercentOff,
)
from .pricing import Pricing, PricingTable

__all__ = [
    "CATALOGUE_FORMAT_VERSION",
    "OFFER_KINDS",
    "QUOTE_BACKENDS",
    "Basket",
    "Catalogue",
    "Coupon",
    "NoDiscount",
    "Offer",
    "PercentOff",
    "Pricing",
    "PricingTable",
    "Quote",
    "QuoteBatch",
    "SpendThreshold",
    "TimeLimitedPercentOff",
    "default_catalogue",
]
