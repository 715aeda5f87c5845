"""The offer kinds: one arm of the offer bandit each.

========================  =============================================================
``NoDiscount``            the basket at list price (the control arm).
``PercentOff``            ``fraction`` off every eligible line.
``SpendThreshold``        spend X save Y (满减): if the eligible lines total at least
                          ``spend``, ``save`` comes off, spread over the eligible lines.
``TimeLimitedPercentOff`` ``fraction`` off, valid for ``hours`` from when it was offered.
``Coupon``                ``amount`` off a *future* order whose eligible lines total at
                          least ``min_spend``, valid ``days`` from issue. Issuing costs
                          nothing now; the redemption is priced on the later basket.
========================  =============================================================

Every offer may exclude item ids and categories: excluded lines never get a discount and
do not count toward thresholds. Money is in the catalogue's currency (a float per unit in
files and baskets); rates are fractions in [0, 1]; times are seconds (float, any origin,
the same clock as the behaviour events). Each kind declares its code in
``pricing.KIND_*``, which is how every pricer tells the kinds apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .._validation import check_range
from .basket import Basket
from .pricing import (
    KIND_COUPON,
    KIND_NONE,
    KIND_PERCENT,
    KIND_SPEND,
    KIND_TIMED,
    Pricing,
    PricingTable,
    fraction_ppm,
)


def _id_list(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name}: expected a list of integers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}[{i}]: expected an integer, got {v!r}")
        out.append(int(v))
    return tuple(sorted(set(out)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Offer:
    """An offer of the catalogue (an arm of the offer bandit).

    id: unique, non-empty name used in files, logs and decisions.
    name: optional display name.
    exclude_items: item ids that never get a discount and never count toward thresholds.
    exclude_categories: category ids treated the same way.
    """

    kind: ClassVar[str] = ""
    code: ClassVar[int] = -1  # the kind's code in pricing.KIND_*
    money_fields: ClassVar[tuple[str, ...]] = ()

    id: str
    name: str = ""
    exclude_items: tuple[int, ...] = ()
    exclude_categories: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or self.id != self.id.strip():
            raise ValueError(f"id: expected a non-empty string without surrounding spaces, "
                             f"got {self.id!r}")
        if not isinstance(self.name, str):
            raise ValueError(f"name: expected a string, got {self.name!r}")
        object.__setattr__(self, "exclude_items", _id_list("exclude_items", self.exclude_items))
        object.__setattr__(self, "exclude_categories",
                           _id_list("exclude_categories", self.exclude_categories))
        self._validate()

    def _validate(self) -> None:
        """Checks and normalises the kind's own fields (floats stored as float)."""

    def _set_float(self, name: str, value: float) -> None:
        object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, Any]:
        """The offer as plain data for a catalogue file (``type`` names the kind)."""
        out: dict[str, Any] = {"id": self.id, "type": self.kind}
        for f in dataclasses.fields(self):
            if f.name != "id":
                v = getattr(self, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def price(self, basket: Basket, *, minor_unit: float = 0.01, now: float | None = None,
              offered_at: float | None = None) -> Pricing:
        """The basket priced under this offer, rounded to ``minor_unit`` (see ``pricing``).

        This is the offer's own arithmetic; it does not apply a margin floor (that is a
        catalogue setting: use ``Catalogue.price``). ``now`` and ``offered_at`` (seconds)
        matter for time-limited offers only.
        """
        table = PricingTable.build((self,), minor_unit, 0.0)
        if not isinstance(basket, Basket):
            raise ValueError(f"basket: expected a Basket, got {type(basket).__name__}")
        line_list, paid, _, applied = table.price_lines(
            basket.item_ids, basket.categories, basket.unit_prices, basket.unit_costs,
            basket.quantities, 0, now, offered_at, redeem=False)
        line_list.setflags(write=False)
        paid.setflags(write=False)
        return Pricing(offer_id=self.id, minor_unit=table.minor_unit, line_list_minor=line_list,
                       line_paid_minor=paid, applied=applied)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoDiscount(Offer):
    """The basket at list price."""

    kind: ClassVar[str] = "none"
    code: ClassVar[int] = KIND_NONE


@dataclasses.dataclass(frozen=True, kw_only=True)
class PercentOff(Offer):
    """``fraction`` (in (0, 1), at most 6 decimals) off every eligible line."""

    kind: ClassVar[str] = "percent_off"
    code: ClassVar[int] = KIND_PERCENT
    fraction: float

    def _validate(self) -> None:
        fraction_ppm("fraction", self.fraction)
        self._set_float("fraction", self.fraction)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpendThreshold(Offer):
    """Spend X save Y (满减): ``save`` off when the eligible lines total at least ``spend``.

    spend: the threshold X (currency, > 0); a basket of exactly X qualifies.
    save: the saving Y (currency, in (0, spend): the discount stays below 100%).
    The saving is spread over the eligible lines in proportion to their value.
    """

    kind: ClassVar[str] = "spend_threshold"
    code: ClassVar[int] = KIND_SPEND
    money_fields: ClassVar[tuple[str, ...]] = ("spend", "save")
    spend: float
    save: float

    def _validate(self) -> None:
        spend = check_range("spend", self.spend, 0.0, lo_open=True)
        check_range("save", self.save, 0.0, spend, lo_open=True, hi_open=True)
        self._set_float("spend", self.spend)
        self._set_float("save", self.save)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimeLimitedPercentOff(Offer):
    """``fraction`` off every eligible line for ``hours`` after the offer is made.

    Valid for offered_at <= now < offered_at + hours * 3600: the end is exclusive, so at
    exactly H hours the offer has expired and gives no discount.
    """

    kind: ClassVar[str] = "time_limited"
    code: ClassVar[int] = KIND_TIMED
    fraction: float
    hours: float

    def _validate(self) -> None:
        fraction_ppm("fraction", self.fraction)
        check_range("hours", self.hours, 0.0, lo_open=True)
        self._set_float("fraction", self.fraction)
        self._set_float("hours", self.hours)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Coupon(Offer):
    """``amount`` off a future order whose eligible lines total at least ``min_spend``.

    amount: currency, in (0, min_spend) (a redemption never makes an order free).
    min_spend: currency, > 0; an order of exactly min_spend qualifies.
    days: validity from issue: issued_at <= now < issued_at + days * 86400 (end exclusive).
    Issuing costs nothing now (the current basket is priced at list); the redemption is
    priced on the later basket with ``Catalogue.redeem``.
    """

    kind: ClassVar[str] = "coupon"
    code: ClassVar[int] = KIND_COUPON
    money_fields: ClassVar[tuple[str, ...]] = ("amount", "min_spend")
    amount: float
    min_spend: float
    days: float

    def _validate(self) -> None:
        min_spend = check_range("min_spend", self.min_spend, 0.0, lo_open=True)
        check_range("amount", self.amount, 0.0, min_spend, lo_open=True, hi_open=True)
        check_range("days", self.days, 0.0, lo_open=True)
        for name in ("amount", "min_spend", "days"):
            self._set_float(name, getattr(self, name))


OFFER_KINDS: dict[str, type[Offer]] = {
    cls.kind: cls for cls in (NoDiscount, PercentOff, SpendThreshold, TimeLimitedPercentOff,
                              Coupon)
}

__all__ = [
    "OFFER_KINDS",
    "Coupon",
    "NoDiscount",
    "Offer",
    "PercentOff",
    "SpendThreshold",
    "TimeLimitedPercentOff",
]
