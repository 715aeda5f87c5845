"""Offers: the discount kinds, baskets, the catalogue, exact pricing in minor units and
eligibility under the margin floor (see ``catalogue`` for the rounding rule)."""

from __future__ import annotations

from .catalogue import (
    CATALOGUE_FORMAT_VERSION,
    OFFER_KINDS,
    QUOTE_BACKENDS,
    Basket,
    Catalogue,
    Coupon,
    NoDiscount,
    Offer,
    PercentOff,
    Pricing,
    Quote,
    QuoteBatch,
    SpendThreshold,
    TimeLimitedPercentOff,
    default_catalogue,
)

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
    "Quote",
    "QuoteBatch",
    "SpendThreshold",
    "TimeLimitedPercentOff",
    "default_catalogue",
]
