"""Pricing in minor units: the one table every pricer reads, and the one rounding rule.

Pricing is exact in integer minor units (cents for EUR). The rounding rule:

1. A line's unit price is rounded to the nearest minor unit (ties to even: prices off
   the grid are a data problem, the shop charges on the grid); the line's list amount is
   that times the quantity.
2. The offer's saving S on the basket, in minor units: for a percent offer, ``fraction``
   times the eligible list total, rounded half up (an exact tie goes to the shopper; the
   fraction is held in parts per million so that the tie is decided in integers); for a
   spend threshold or a coupon, the fixed amount when the threshold is met, else 0.
3. S is spread over the eligible lines in proportion to their list amounts by the
   largest-remainder method: line i first gets floor(S * L_i / E) (E the eligible total),
   and the S - sum(floors) units left over go one each to the lines with the largest
   remainders (ties to the lower line index). So line savings add up to S exactly, each
   line is within one minor unit of its exact share, and excluded lines get nothing.
4. paid = list - saving on every line; totals are sums; discount cost = list total -
   paid total = S, exactly, in minor units.

The margin floor (a fraction >= 0): no discount may take a line below ``unit_cost * (1 +
margin_floor) * quantity``, rounded up to the minor unit (after absorbing float noise of
``MINOR_TOLERANCE``, a millionth of a minor unit, so that 10.00 x 1.05 is 10.50, not
10.51). A line whose list amount is already below its floor (the merchant's list price,
not our decision) may be sold at list but never discounted: its *headroom* (the most a
discount may take off it) is ``max(list - floor, 0)``. An offer that would push any line
of a basket below its floor is *ineligible* for that basket.

One definition each, read by every pricer:

* ``PricingTable``: a catalogue's offers as arrays (kind codes, parts per million,
  thresholds and amounts in minor units, validity in seconds, exclusions), built once by
  ``Catalogue``. Its methods are the NumPy path of the engine's quotes (the oracle of the
  tests); ``offers/_kernels.py`` (Numba) takes its arrays (``kernel_args``); the
  simulator's market (``simulate/market.py``) prices its baskets from it.
* ``KIND_*``: the offer kind codes. ``PPM``, ``MINOR_TOLERANCE``: the fixed point of
  fractions and the float noise absorbed before rounding.
* ``line_minor`` and ``percent_saving``: steps 1 and 2 and the floor. Plain functions of
  NumPy arrays *and* of scalars: the NumPy path calls them on arrays, the Numba kernels
  of the engine and the simulator compile these same functions (``offers/_kernels.py``),
  so the float operations are the same ones in the same order and results are equal,
  not close.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_range
from ..events import SECONDS_PER_DAY, SECONDS_PER_HOUR

# Offer kind codes (each Offer class declares its own as ``code``).
KIND_NONE, KIND_PERCENT, KIND_SPEND, KIND_TIMED, KIND_COUPON = 0, 1, 2, 3, 4

# Percent fractions are held in parts per million so that "fraction x total, rounded
# half up" is decided in exact integer arithmetic.
PPM = 1_000_000

# Float products such as 10.00 * 1.05 * 100 land a hair above the integer they mean
# (1050.0000000000002); a millionth of a minor unit absorbs that before ceil/rounding
# without moving any real amount.
MINOR_TOLERANCE = 1e-6

# The largest-remainder split multiplies two minor amounts (S * L_i <= E**2); below this
# eligible total the product fits in int64, above it Python integers take over.
MAX_INT64_TOTAL = 3_000_000_000

# Line amounts stay exact integers in float64 (2**53) and far from int64 overflow.
MAX_LINE_MINOR = float(2**53)

# Columns of PricingTable.columns, the per-offer integers side by side (one argument of
# the compiled kernels instead of four: each array argument costs a type check per call).
COL_KIND, COL_PPM, COL_THRESHOLD, COL_AMOUNT = range(4)


# --- the rounding rule (NumPy arrays or scalars; compiled as is by the Numba kernels) ----

def line_minor(unit_price: Any, unit_cost: Any, quantity: Any, per_unit: Any,
               margin_mult: Any) -> tuple[Any, Any]:
    """(list amount, headroom) of a line in minor units, as floats holding integers.

    list = rint(unit price x per_unit) x quantity; floor = ceil(unit cost x margin_mult x
    quantity x per_unit - MINOR_TOLERANCE) with margin_mult = 1 + margin floor; headroom =
    max(list - floor, 0), the most a discount may take off the line.
    """
    amount = np.rint(unit_price * per_unit) * quantity
    floor = np.ceil(unit_cost * margin_mult * quantity * per_unit - MINOR_TOLERANCE)
    return amount, np.maximum(amount - floor, 0.0)


def percent_saving(ppm: Any, total: Any) -> Any:
    """``ppm`` / PPM of ``total`` minor units, rounded half up, in integers:
    floor((2 p E + PPM) / (2 PPM))."""
    return (2 * ppm * total + PPM) // (2 * PPM)


def fraction_ppm(name: str, value: Any) -> int:
    """A fraction in (0, 1) as a whole number of parts per million (ValueError naming
    ``name`` when it is out of range or has more than 6 decimal places)."""
    f = check_range(name, value, 0.0, 1.0, lo_open=True, hi_open=True)
    ppm = round(f * PPM)
    if abs(f * PPM - ppm) > MINOR_TOLERANCE:
        raise ValueError(f"{name}: expected at most 6 decimal places (a whole number of "
                         f"parts per million), got {value!r}")
    return ppm


def minor_units(minor_unit: Any) -> tuple[float, int]:
    """(minor unit, minor units per currency unit) of a currency's smallest amount, which
    must be 1/n of the currency unit for an integer n (0.01, 0.05, 1, ...)."""
    mu = check_range("minor_unit", minor_unit, 0.0, 1.0, lo_open=True)
    per_unit = round(1.0 / mu)
    if abs(1.0 / mu - per_unit) > MINOR_TOLERANCE * per_unit:
        raise ValueError(f"minor_unit: expected 1/n of the currency unit for an integer n "
                         f"(0.01, 0.05, 1, ...), got {minor_unit!r}")
    return mu, per_unit


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _csr(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, ids): list k is ids[ptr[k]:ptr[k + 1]]."""
    ptr = np.zeros(len(lists) + 1, np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    ids = np.array([i for x in lists for i in x], np.int64)
    return _frozen(ptr), _frozen(ids)


# --- what a basket costs under one offer -------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Pricing:
    """What a basket costs under one offer, exact in minor units.

    offer_id: the offer priced.
    minor_unit: the currency's minor unit (e.g. 0.01), so amounts = minor * minor_unit.
    line_list_minor: (n,) int64 list amount of each line (unit price x quantity).
    line_paid_minor: (n,) int64 what the shopper pays for each line.
    applied: True when the offer's discount applied (percent offers while valid, a
        threshold or coupon when met), even if the saving rounds to 0; False when it gave
        no discount for that reason, and for ``NoDiscount`` and coupons being issued.

    The float views (``line_paid``, ``paid_total``, ``discount_cost``...) are in the
    currency: the minor amounts divided by the units per currency unit, so 1234 cents
    reads 12.34 exactly as Python prints it.
    """

    offer_id: str
    minor_unit: float
    line_list_minor: np.ndarray
    line_paid_minor: np.ndarray
    applied: bool

    @property
    def _per_unit(self) -> int:
        return round(1.0 / self.minor_unit)

    @property
    def list_total_minor(self) -> int:
        return int(self.line_list_minor.sum())

    @property
    def paid_total_minor(self) -> int:
        return int(self.line_paid_minor.sum())

    @property
    def discount_cost_minor(self) -> int:
        """List total - paid total, in minor units (the platform's cost of the offer)."""
        return self.list_total_minor - self.paid_total_minor

    @property
    def line_saving_minor(self) -> np.ndarray:
        return self.line_list_minor - self.line_paid_minor

    @property
    def line_list(self) -> np.ndarray:
        return self.line_list_minor / self._per_unit

    @property
    def line_paid(self) -> np.ndarray:
        return self.line_paid_minor / self._per_unit

    @property
    def list_total(self) -> float:
        return self.list_total_minor / self._per_unit

    @property
    def paid_total(self) -> float:
        return self.paid_total_minor / self._per_unit

    @property
    def discount_cost(self) -> float:
        """List total - paid total (currency)."""
        return self.discount_cost_minor / self._per_unit

    @property
    def discount_fraction(self) -> float:
        """Discount cost / list total, a fraction in [0, 1] (0 for a free basket)."""
        total = self.list_total_minor
        return self.discount_cost_minor / total if total else 0.0


# --- the table ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class PricingTable:
    """A catalogue's offers as the pricers read them: one entry per offer (arm order).

    per_unit: minor units per currency unit (100 for cents); minor_unit = 1 / per_unit.
    margin_floor: the catalogue's margin floor; margin_mult = 1 + margin_floor.
    kind: (K,) int64 ``KIND_*`` codes.
    ppm: (K,) int64 the fraction of percent and time-limited offers in parts per million.
    threshold: (K,) int64 minor units a spend threshold (spend) or a coupon (min_spend)
        needs on the eligible lines.
    amount: (K,) int64 minor units a spend threshold (save) or a coupon (amount) takes off.
    duration: (K,) float64 seconds a time-limited offer (hours) or a coupon (days) is valid.
    ex_item_ptr, ex_item_id: excluded item ids as CSR (offer k: ex_item_id[ptr[k]:ptr[k+1]]);
    ex_cat_ptr, ex_cat_id: excluded categories, the same way.

    Arrays are read-only. Built by ``PricingTable.build`` (which checks the currency
    grid); the derived masks (``is_percent`` ...) are computed once here, and
    ``columns`` (K, 4) holds kind, ppm, threshold and amount side by side (``COL_*``).
    """

    per_unit: int
    minor_unit: float
    margin_floor: float
    kind: np.ndarray
    ppm: np.ndarray
    threshold: np.ndarray
    amount: np.ndarray
    duration: np.ndarray
    ex_item_ptr: np.ndarray
    ex_item_id: np.ndarray
    ex_cat_ptr: np.ndarray
    ex_cat_id: np.ndarray

    def __post_init__(self) -> None:
        kind = self.kind
        set_ = object.__setattr__
        set_(self, "margin_mult", 1.0 + self.margin_floor)
        set_(self, "is_percent", _frozen((kind == KIND_PERCENT) | (kind == KIND_TIMED)))
        set_(self, "is_fixed", _frozen(kind == KIND_SPEND))
        set_(self, "fixed_redeem", _frozen((kind == KIND_SPEND) | (kind == KIND_COUPON)))
        set_(self, "is_coupon", _frozen(kind == KIND_COUPON))
        set_(self, "coupon_cost",
             _frozen(np.where(kind == KIND_COUPON, self.amount, 0) / self.per_unit))
        k = kind.shape[0]
        set_(self, "ex_item_offer", _frozen(np.repeat(np.arange(k), np.diff(self.ex_item_ptr))))
        set_(self, "ex_cat_offer", _frozen(np.repeat(np.arange(k), np.diff(self.ex_cat_ptr))))
        set_(self, "has_exclusions", bool(self.ex_item_id.size or self.ex_cat_id.size))
        set_(self, "all_active", _frozen(np.ones(k, dtype=bool)))
        set_(self, "columns", _frozen(np.stack([kind, self.ppm, self.threshold, self.amount],
                                               axis=1)))

    # Derived in __post_init__ (not fields: the table is defined by the fields above).
    margin_mult: float = dataclasses.field(init=False, repr=False)
    is_percent: np.ndarray = dataclasses.field(init=False, repr=False)
    is_fixed: np.ndarray = dataclasses.field(init=False, repr=False)
    fixed_redeem: np.ndarray = dataclasses.field(init=False, repr=False)
    is_coupon: np.ndarray = dataclasses.field(init=False, repr=False)
    coupon_cost: np.ndarray = dataclasses.field(init=False, repr=False)
    ex_item_offer: np.ndarray = dataclasses.field(init=False, repr=False)
    ex_cat_offer: np.ndarray = dataclasses.field(init=False, repr=False)
    has_exclusions: bool = dataclasses.field(init=False, repr=False)
    all_active: np.ndarray = dataclasses.field(init=False, repr=False)
    columns: np.ndarray = dataclasses.field(init=False, repr=False)

    @classmethod
    def build(cls, offers: Sequence[Any], minor_unit: float, margin_floor: float
              ) -> PricingTable:
        """The table of ``offers`` (Offer objects, arm order) in a currency whose smallest
        amount is ``minor_unit``, under ``margin_floor`` (a fraction >= 0).

        Raises ValueError naming the field: a minor unit that is not 1/n of the currency
        unit, a negative margin floor, money of an offer off the minor grid
        (``offers[i].<field>``), an offer without a kind code.
        """
        mu, per_unit = minor_units(minor_unit)
        floor = check_range("margin_floor", margin_floor, 0.0)
        for i, o in enumerate(offers):
            for name in o.money_fields:
                v = getattr(o, name) * per_unit
                if abs(v - round(v)) > MINOR_TOLERANCE:
                    raise ValueError(f"offers[{i}].{name}: expected a multiple of the minor unit "
                                     f"{mu:g}, got {getattr(o, name)!r}")
        k = len(offers)
        kind = np.zeros(k, np.int64)
        ppm = np.zeros(k, np.int64)
        threshold = np.zeros(k, np.int64)
        amount = np.zeros(k, np.int64)
        duration = np.zeros(k, np.float64)
        for i, o in enumerate(offers):
            code = kind[i] = o.code
            if code == KIND_PERCENT:
                ppm[i] = fraction_ppm("fraction", o.fraction)
            elif code == KIND_TIMED:
                ppm[i] = fraction_ppm("fraction", o.fraction)
                duration[i] = o.hours * SECONDS_PER_HOUR
            elif code == KIND_SPEND:
                threshold[i] = round(o.spend * per_unit)
                amount[i] = round(o.save * per_unit)
            elif code == KIND_COUPON:
                threshold[i] = round(o.min_spend * per_unit)
                amount[i] = round(o.amount * per_unit)
                duration[i] = o.days * SECONDS_PER_DAY
            elif code != KIND_NONE:
                raise ValueError(f"offers[{i}]: kind {o.kind!r} has no pricing (code {code})")
        item_ptr, item_id = _csr([o.exclude_items for o in offers])
        cat_ptr, cat_id = _csr([o.exclude_categories for o in offers])
        return cls(per_unit=per_unit, minor_unit=mu, margin_floor=floor, kind=_frozen(kind),
                   ppm=_frozen(ppm), threshold=_frozen(threshold), amount=_frozen(amount),
                   duration=_frozen(duration), ex_item_ptr=item_ptr, ex_item_id=item_id,
                   ex_cat_ptr=cat_ptr, ex_cat_id=cat_id)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    # --- time limits ----------------------------------------------------------------------
    def active(self, now: float | None, offered_at: float | None) -> np.ndarray:
        """(K,) True where a time-limited offer made at ``offered_at`` is still valid at
        ``now`` (valid while now < offered_at + duration; other kinds: True). Without
        offered_at every offer is priced as made now."""
        if offered_at is None:
            if now is not None and not (isinstance(now, (int, float)) and math.isfinite(now)):
                check_range("now", now)
            return self.all_active
        if now is None:
            raise ValueError("now: required when offered_at is given")
        n = check_range("now", now)
        o = check_range("offered_at", offered_at)
        if n < o:
            raise ValueError(f"now: expected a time >= offered_at={o!r}, got {n!r}")
        active = np.ones(len(self), dtype=bool)
        timed = self.kind == KIND_TIMED
        active[timed] = n < o + self.duration[timed]
        return active

    # --- lines ----------------------------------------------------------------------------
    def line_too_large(self, line: int, where: str = "") -> ValueError:
        return ValueError(f"{where}unit_prices: line {line} amounts to more than "
                          f"{MAX_LINE_MINOR:.3g} minor units, beyond exact pricing")

    def line_arrays(self, unit_prices: np.ndarray, unit_costs: np.ndarray,
                    quantities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(list amount, headroom) of every line in minor units (int64; ``line_minor``).

        Raises ValueError for a line whose amount is beyond exact float pricing."""
        amount, headroom = line_minor(unit_prices, unit_costs, quantities, self.per_unit,
                                      self.margin_mult)
        if amount.max() >= MAX_LINE_MINOR:
            raise self.line_too_large(int(np.argmax(amount)))
        return amount.astype(np.int64), headroom.astype(np.int64)

    def excluded_lines(self, item_ids: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """(K, n) bool: line j is excluded from offer k (its item id or its category is)."""
        out = np.zeros((len(self), item_ids.shape[0]), dtype=bool)
        if self.ex_item_id.size:
            hit_ex, hit_line = np.nonzero(self.ex_item_id[:, None] == item_ids[None, :])
            out[self.ex_item_offer[hit_ex], hit_line] = True
        if self.ex_cat_id.size:
            hit_ex, hit_line = np.nonzero(self.ex_cat_id[:, None] == categories[None, :])
            out[self.ex_cat_offer[hit_ex], hit_line] = True
        return out

    # --- the NumPy path (the oracle of the compiled kernels) ------------------------------
    def savings(self, item_ids: np.ndarray, categories: np.ndarray, line_list: np.ndarray,
                active: np.ndarray, redeem_coupons: bool, rows: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Line savings (K', n) in minor units and whether each offer applied (K',).

        rows: the offers to evaluate (None: all). active: (K,) validity of time limits.
        redeem_coupons: price coupons as redeemed on this basket (else as issued: 0).
        """
        def per_offer(a: np.ndarray) -> np.ndarray:
            return a if rows is None else a[rows]

        if rows is not None:
            active = active[rows]
        if self.has_exclusions:
            eligible_line = ~per_offer(self.excluded_lines(item_ids, categories))
            weights = eligible_line * line_list[None, :]
            total = weights.sum(axis=1)
        else:
            weights = line_list[None, :]
            total = np.full(active.shape[0], line_list.sum())
        pct = percent_saving(per_offer(self.ppm), total)
        fixed = per_offer(self.fixed_redeem if redeem_coupons else self.is_fixed)
        applied = active & (per_offer(self.is_percent)
                            | (fixed & (total >= per_offer(self.threshold))))
        saving_total = np.where(applied, np.where(fixed, per_offer(self.amount), pct), 0)
        if int(total.max()) >= MAX_INT64_TOTAL:
            weights, saving_total, total = (weights.astype(object), saving_total.astype(object),
                                            total.astype(object))
        # Largest remainder: floor(S L_i / E) each, leftover units to the largest remainders.
        denom = np.maximum(total, 1)[:, None]
        share = saving_total[:, None] * weights
        base = share // denom
        leftover = saving_total - base.sum(axis=1)
        if not leftover.any():
            return base.astype(np.int64), applied
        remainder = share - base * denom
        order = np.argsort(-remainder, axis=1, kind="stable")  # ties: lower line index first
        rank = np.argsort(order, axis=1)
        saving = (base + (rank < leftover[:, None])).astype(np.int64)
        return saving, applied

    def quote_lines(self, item_ids: np.ndarray, categories: np.ndarray,
                    unit_prices: np.ndarray, unit_costs: np.ndarray, quantities: np.ndarray,
                    active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Every offer on one basket's lines: (eligible (K,), discount cost (K,) currency,
        paid total (K,) currency, list total in minor units). Coupons are priced as issued
        (no discount now) and cost their amount."""
        line_list, headroom = self.line_arrays(unit_prices, unit_costs, quantities)
        saving, _ = self.savings(item_ids, categories, line_list, active, redeem_coupons=False)
        paid = line_list[None, :] - saving
        ok = np.less_equal(saving, headroom).all(axis=1)
        cost = np.where(self.is_coupon, self.coupon_cost, saving.sum(axis=1) / self.per_unit)
        return ok, cost, paid.sum(axis=1) / self.per_unit, int(line_list.sum())

    def price_lines(self, item_ids: np.ndarray, categories: np.ndarray,
                    unit_prices: np.ndarray, unit_costs: np.ndarray, quantities: np.ndarray,
                    k: int, now: float | None, offered_at: float | None, redeem: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Offer k on one basket's lines at ``now`` (see ``active``): (line list, line
        paid, line headroom, applied), int64 minor units; the caller decides what a line
        paid below its floor means. redeem: a coupon is priced as redeemed, not issued."""
        line_list, headroom = self.line_arrays(unit_prices, unit_costs, quantities)
        active = self.active(now, offered_at)
        saving, applied = self.savings(item_ids, categories, line_list, active,
                                       redeem_coupons=redeem, rows=np.array([k]))
        return line_list, line_list - saving[0], headroom, bool(applied[0])

    # --- the Numba kernels' arguments -----------------------------------------------------
    def kernel_args(self) -> tuple[Any, ...]:
        """The table's constant arguments of ``offers._kernels.quote_one`` / ``quote_csr``:
        (per_unit, margin_mult, MAX_LINE_MINOR, columns, ex_item_ptr, ex_item_id, ex_cat_ptr,
        ex_cat_id). Plain numbers and read-only arrays, built once."""
        args = self.__dict__.get("_kernel_args")
        if args is None:
            args = (self.per_unit, self.margin_mult, MAX_LINE_MINOR, self.columns,
                    self.ex_item_ptr, self.ex_item_id, self.ex_cat_ptr, self.ex_cat_id)
            object.__setattr__(self, "_kernel_args", args)
        return args


__all__ = [
    "COL_AMOUNT",
    "COL_KIND",
    "COL_PPM",
    "COL_THRESHOLD",
    "KIND_COUPON",
    "KIND_NONE",
    "KIND_PERCENT",
    "KIND_SPEND",
    "KIND_TIMED",
    "MAX_INT64_TOTAL",
    "MAX_LINE_MINOR",
    "MINOR_TOLERANCE",
    "PPM",
    "Pricing",
    "PricingTable",
    "fraction_ppm",
    "line_minor",
    "minor_units",
    "percent_saving",
]
