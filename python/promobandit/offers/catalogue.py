"""The offer catalogue: discount offers, baskets, exact pricing in minor units and eligibility.

An offer is one arm of the offer bandit. Five kinds exist:

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
the same clock as the behaviour events).

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

The margin floor (``Catalogue.margin_floor``, a fraction >= 0): no discount may take a
line below ``unit_cost * (1 + margin_floor) * quantity``, rounded up to the minor unit
(after absorbing float noise of a millionth of a minor unit, so that 10.00 x 1.05 is
10.50, not 10.51). A line whose list amount is already below its floor (the merchant's
list price, not our decision) may be sold at list but never discounted. An offer that
would push any line of a basket below its floor is *ineligible* for that basket:
``Catalogue.eligible`` is False for it (the bandit's per-request arm mask) and
``Catalogue.price`` raises instead of clipping.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .. import _backends
from .._toml import load_toml
from .._validation import check_range
from ..events import SECONDS_PER_DAY, SECONDS_PER_HOUR

# Percent fractions are held in parts per million so that "fraction x total, rounded
# half up" is decided in exact integer arithmetic.
PPM = 1_000_000

CATALOGUE_FORMAT_VERSION = 1

# Float products such as 10.00 * 1.05 * 100 land a hair above the integer they mean
# (1050.0000000000002); a millionth of a minor unit absorbs that before ceil/rounding
# without moving any real amount.
_MINOR_TOLERANCE = 1e-6

# The largest-remainder split multiplies two minor amounts (S * L_i <= E**2); below this
# eligible total the product fits in int64, above it Python integers take over.
_MAX_INT64_TOTAL = 3_000_000_000

# Line amounts stay exact integers in float64 (2**53) and far from int64 overflow.
_MAX_LINE_MINOR = float(2**53)

_CURRENCY_RE = re.compile(r"[A-Z]{3}")

# Entries of the kernel's table with one value per offer (sliced when pricing one offer).
_PER_OFFER = frozenset({"kind", "ppm", "ppm2", "threshold", "amount", "duration", "is_percent",
                        "is_fixed", "fixed_redeem", "is_coupon", "coupon_cost", "all_active"})

# Pricing backends of quote / eligible / quote_batch. "numba": one compiled pass over
# offers and lines (offers/_kernels.py); "numpy": the vectorised array path below, the
# oracle of the tests and the fallback where Numba does not import; "auto": Numba when
# it imports, else NumPy. PROMOBANDIT_BACKEND does not apply: pricing has no C++ or CUDA
# kernel, and both backends give identical results.
QUOTE_BACKENDS = ("auto", "numba", "numpy")

# Kind codes of the vectorised kernel.
_NONE, _PERCENT, _SPEND, _TIMED, _COUPON = 0, 1, 2, 3, 4


_KERNELS: ModuleType | None = None


def _offers_kernels() -> ModuleType:
    """promobandit.offers._kernels, imported on first use: importing Numba takes ~0.3 s,
    which ``import promobandit.offers`` alone should not pay."""
    global _KERNELS
    if _KERNELS is None:
        from . import _kernels as kern

        _KERNELS = kern
    return _KERNELS


# --- baskets ------------------------------------------------------------------------------

def _int_column(name: str, obj: Any) -> np.ndarray:
    a = np.asarray(obj)
    if a.dtype.kind not in "iu" or a.dtype == np.uint64:
        raise ValueError(f"{name}: expected a 1-D integer array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a.astype(np.int64)


def _float_column(name: str, obj: Any) -> np.ndarray:
    a = np.asarray(obj)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a 1-D numeric array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{name}: expected finite values, got {a[i]} at line {i}")
    return a


_BASKET_FIELDS = ("item_ids", "categories", "unit_prices", "unit_costs", "quantities")
_INT64 = np.dtype(np.int64)
_FLOAT64 = np.dtype(np.float64)


def _checked_columns(item_ids: Any, categories: Any, unit_prices: Any, unit_costs: Any,
                     quantities: Any) -> tuple[np.ndarray, ...]:
    """The five basket columns as new int64/float64 arrays, every rule checked in turn
    (raises ValueError naming the first broken rule's field and line)."""
    items = _int_column("item_ids", item_ids)
    n = items.shape[0]
    if n == 0:
        raise ValueError("item_ids: a basket needs at least one line, got 0")
    cats = _int_column("categories", categories)
    prices = _float_column("unit_prices", unit_prices)
    costs = _float_column("unit_costs", unit_costs)
    qty = _int_column("quantities", quantities)
    for name, a in (("categories", cats), ("unit_prices", prices), ("unit_costs", costs),
                    ("quantities", qty)):
        if a.shape[0] != n:
            raise ValueError(f"{name}: expected {n} lines (like item_ids), got {a.shape[0]}")
    for name, bad, what in (
        ("unit_prices", prices < 0.0, "values >= 0"),
        ("unit_costs", costs < 0.0, "values >= 0"),
        ("unit_costs", costs > prices, "values <= unit_prices"),
        ("quantities", qty < 1, "integers >= 1"),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            got = {"unit_prices": prices, "unit_costs": costs, "quantities": qty}[name][i]
            raise ValueError(f"{name}: expected {what}, got {got} at line {i}")
    return items, cats, prices, costs, qty


def _valid_columns(item_ids: Any, categories: Any, unit_prices: Any, unit_costs: Any,
                   quantities: Any) -> tuple[np.ndarray, ...] | None:
    """Copies of the five columns if they are already 1-D int64/float64 arrays of one
    length n >= 1 that break no rule; else None (``_checked_columns`` then decides)."""
    cols = (item_ids, categories, unit_prices, unit_costs, quantities)
    for a, dtype in zip(cols, (_INT64, _INT64, _FLOAT64, _FLOAT64, _INT64), strict=True):
        if type(a) is not np.ndarray or a.ndim != 1 or a.dtype != dtype:
            return None
    n = item_ids.shape[0]
    if not (n and categories.shape[0] == n and unit_prices.shape[0] == n
            and unit_costs.shape[0] == n and quantities.shape[0] == n):
        return None
    # 0 <= cost <= price < inf on every line covers finiteness (NaN fails every
    # comparison), both signs and the cost bound in three reductions.
    if not (unit_costs.min() >= 0.0 and unit_prices.max() < math.inf
            and np.less_equal(unit_costs, unit_prices).all() and quantities.min() >= 1):
        return None
    return tuple(a.copy() for a in cols)


@dataclasses.dataclass(frozen=True, eq=False)
class Basket:
    """The lines of a shopper's basket (one entry per line, all arrays of length n >= 1).

    item_ids: int64 item ids.
    categories: int64 category ids.
    unit_prices: float64 list price per unit (currency), >= 0.
    unit_costs: float64 cost per unit (currency), in [0, unit price].
    quantities: int64 units on the line, >= 1.

    Arrays are copied and made read-only. Bad input (NaN or infinite money, a negative
    price, a cost above the price, a quantity below 1, mismatched lengths, an empty
    basket, a float id column) raises ValueError naming the field and the line.
    ``Basket.trusted`` skips the checks and the copies for callers that guarantee them.
    """

    item_ids: np.ndarray
    categories: np.ndarray
    unit_prices: np.ndarray
    unit_costs: np.ndarray
    quantities: np.ndarray

    def __post_init__(self) -> None:
        cols = _valid_columns(self.item_ids, self.categories, self.unit_prices,
                              self.unit_costs, self.quantities)
        if cols is None:
            cols = _checked_columns(self.item_ids, self.categories, self.unit_prices,
                                    self.unit_costs, self.quantities)
        for name, a in zip(_BASKET_FIELDS, cols, strict=True):
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @classmethod
    def trusted(cls, item_ids: np.ndarray, categories: np.ndarray, unit_prices: np.ndarray,
                unit_costs: np.ndarray, quantities: np.ndarray) -> Basket:
        """A basket from arrays the caller guarantees valid: no checks, no copies.

        For hot paths that build baskets from tables validated once (an item catalogue
        indexed by item ids). The caller guarantees everything the constructor checks:
        1-D NumPy arrays of one length n >= 1; item_ids, categories and quantities
        int64, unit_prices and unit_costs float64; money finite with 0 <= unit cost <=
        unit price; quantities >= 1. Nothing is verified: a violation gives wrong
        prices, not an error. The basket holds read-only views of the arrays (no copy),
        so the caller must not write to them afterwards.
        """
        basket = object.__new__(cls)
        fields = basket.__dict__
        for name, a in zip(_BASKET_FIELDS, (item_ids, categories, unit_prices, unit_costs,
                                            quantities), strict=True):
            view = a.view()
            view.flags.writeable = False
            fields[name] = view
        return basket

    @classmethod
    def from_lines(cls, lines: Sequence[Sequence[Any]]) -> Basket:
        """A basket from rows ``(item_id, category, unit_price, unit_cost, quantity)``."""
        if len(lines) == 0:
            raise ValueError("lines: a basket needs at least one line, got 0")
        cols = list(zip(*lines, strict=True))
        if len(cols) != 5:
            raise ValueError("lines: expected rows (item_id, category, unit_price, unit_cost, "
                             f"quantity), got rows of {len(cols)} fields")
        return cls(np.asarray(cols[0]), np.asarray(cols[1]), np.asarray(cols[2], np.float64),
                   np.asarray(cols[3], np.float64), np.asarray(cols[4]))

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


# --- pricing -----------------------------------------------------------------------------

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


# --- offers ------------------------------------------------------------------------------

def _id_list(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name}: expected a list of integers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}[{i}]: expected an integer, got {v!r}")
        out.append(int(v))
    return tuple(sorted(set(out)))


def _fraction_ppm(name: str, value: Any) -> int:
    f = check_range(name, value, 0.0, 1.0, lo_open=True, hi_open=True)
    ppm = round(f * PPM)
    if abs(f * PPM - ppm) > _MINOR_TOLERANCE:
        raise ValueError(f"{name}: expected at most 6 decimal places (a whole number of "
                         f"parts per million), got {value!r}")
    return ppm


@dataclasses.dataclass(frozen=True, kw_only=True)
class Offer:
    """An offer of the catalogue (an arm of the offer bandit).

    id: unique, non-empty name used in files, logs and decisions.
    name: optional display name.
    exclude_items: item ids that never get a discount and never count toward thresholds.
    exclude_categories: category ids treated the same way.
    """

    kind: ClassVar[str] = ""
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
        """The basket priced under this offer, rounded to ``minor_unit`` (see the module).

        This is the offer's own arithmetic; it does not apply a margin floor (that is a
        catalogue setting: use ``Catalogue.price``). ``now`` and ``offered_at`` (seconds)
        matter for time-limited offers only.
        """
        cat = Catalogue((self,), minor_unit=minor_unit)
        return cat._pricing(basket, 0, now=now, offered_at=offered_at, check_floor=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoDiscount(Offer):
    """The basket at list price."""

    kind: ClassVar[str] = "none"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PercentOff(Offer):
    """``fraction`` (in (0, 1), at most 6 decimals) off every eligible line."""

    kind: ClassVar[str] = "percent_off"
    fraction: float

    def _validate(self) -> None:
        _fraction_ppm("fraction", self.fraction)
        self._set_float("fraction", self.fraction)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpendThreshold(Offer):
    """Spend X save Y (满减): ``save`` off when the eligible lines total at least ``spend``.

    spend: the threshold X (currency, > 0); a basket of exactly X qualifies.
    save: the saving Y (currency, in (0, spend): the discount stays below 100%).
    The saving is spread over the eligible lines in proportion to their value.
    """

    kind: ClassVar[str] = "spend_threshold"
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
    fraction: float
    hours: float

    def _validate(self) -> None:
        _fraction_ppm("fraction", self.fraction)
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


# --- the catalogue -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Quote:
    """Every offer of a catalogue evaluated on one basket (arrays of length K).

    eligible: True where the offer may be shown (no line pushed below the margin floor).
    discount_cost: the discount cost if the shopper buys this basket under the offer
        (currency); for a coupon the coupon amount, an upper bound of its later cost,
        used for budget masking. Filled for ineligible offers too (what it would be).
    paid_total: what the shopper would pay for this basket now (currency).
    list_total: the basket at list price (currency).
    """

    offer_ids: tuple[str, ...]
    eligible: np.ndarray
    discount_cost: np.ndarray
    paid_total: np.ndarray
    list_total: float


@dataclasses.dataclass(frozen=True, eq=False)
class QuoteBatch:
    """Every offer of a catalogue evaluated on B baskets: row b is ``quote(baskets[b])``.

    eligible: (B, K) bool. discount_cost, paid_total: (B, K) float64 (currency).
    list_total: (B,) float64 (currency). Meanings as in ``Quote``. Unpacks as the tuple
    ``eligible, discount_cost, paid_total, list_total``.
    """

    offer_ids: tuple[str, ...]
    eligible: np.ndarray
    discount_cost: np.ndarray
    paid_total: np.ndarray
    list_total: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.eligible, self.discount_cost, self.paid_total, self.list_total))

    def __len__(self) -> int:
        return int(self.list_total.shape[0])

    def row(self, b: int) -> Quote:
        """Basket b's quote (views of this batch's rows, no copy)."""
        return Quote(offer_ids=self.offer_ids, eligible=self.eligible[b],
                     discount_cost=self.discount_cost[b], paid_total=self.paid_total[b],
                     list_total=float(self.list_total[b]))


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The offers the engine may show, with the currency's rounding and a margin floor.

    offers: the offers, in arm order (arm k is offers[k]); ids must be unique.
    currency: ISO 4217 code (three capital letters), e.g. "EUR".
    minor_unit: the smallest amount charged, 1/n of the currency unit for an integer n
        (0.01 for EUR, 1 for JPY, 0.001 for KWD, 0.05 for cash rounding). All money of
        the offers must be a whole number of minor units.
    margin_floor: a fraction >= 0: no discount may take a line below unit cost x
        (1 + margin_floor) x quantity (see the module for lines listed below it).
    """

    offers: tuple[Offer, ...]
    currency: str = "EUR"
    minor_unit: float = 0.01
    margin_floor: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.offers, (str, bytes)) or not isinstance(self.offers, Sequence):
            raise ValueError(f"offers: expected a sequence of offers, got {self.offers!r}")
        offers = tuple(self.offers)
        if not offers:
            raise ValueError("offers: expected at least one offer")
        for i, o in enumerate(offers):
            if not isinstance(o, Offer):
                raise ValueError(f"offers[{i}]: expected an Offer, got {type(o).__name__}")
        seen: dict[str, int] = {}
        for i, o in enumerate(offers):
            if o.id in seen:
                raise ValueError(f"offers[{i}].id: duplicate id {o.id!r} (also offers[{seen[o.id]}])")
            seen[o.id] = i
        if not isinstance(self.currency, str) or not _CURRENCY_RE.fullmatch(self.currency):
            raise ValueError(f"currency: expected an ISO 4217 code of three capital letters, "
                             f"got {self.currency!r}")
        mu = check_range("minor_unit", self.minor_unit, 0.0, 1.0, lo_open=True)
        per_unit = round(1.0 / mu)
        if abs(1.0 / mu - per_unit) > _MINOR_TOLERANCE * per_unit:
            raise ValueError(f"minor_unit: expected 1/n of the currency unit for an integer n "
                             f"(0.01, 0.05, 1, ...), got {self.minor_unit!r}")
        floor = check_range("margin_floor", self.margin_floor, 0.0)
        for i, o in enumerate(offers):
            for name in o.money_fields:
                v = getattr(o, name) * per_unit
                if abs(v - round(v)) > _MINOR_TOLERANCE:
                    raise ValueError(f"offers[{i}].{name}: expected a multiple of the minor unit "
                                     f"{mu:g}, got {getattr(o, name)!r}")
        set_ = object.__setattr__
        set_(self, "offers", offers)
        set_(self, "minor_unit", mu)
        set_(self, "margin_floor", floor)
        set_(self, "_per_unit", per_unit)
        set_(self, "_index", seen)
        set_(self, "_ids", tuple(o.id for o in offers))  # quote returns it on every call
        self._build_table()

    def _build_table(self) -> None:
        per_unit: int = self._per_unit  # type: ignore[attr-defined]
        k = len(self.offers)
        kind = np.zeros(k, np.int64)
        ppm = np.zeros(k, np.int64)
        threshold = np.zeros(k, np.int64)
        amount = np.zeros(k, np.int64)
        duration = np.zeros(k, np.float64)
        ex_item_offer: list[int] = []
        ex_item_id: list[int] = []
        ex_cat_offer: list[int] = []
        ex_cat_id: list[int] = []
        for i, o in enumerate(self.offers):
            if isinstance(o, PercentOff):
                kind[i], ppm[i] = _PERCENT, _fraction_ppm("fraction", o.fraction)
            elif isinstance(o, TimeLimitedPercentOff):
                kind[i], ppm[i] = _TIMED, _fraction_ppm("fraction", o.fraction)
                duration[i] = o.hours * SECONDS_PER_HOUR
            elif isinstance(o, SpendThreshold):
                kind[i] = _SPEND
                threshold[i] = round(o.spend * per_unit)
                amount[i] = round(o.save * per_unit)
            elif isinstance(o, Coupon):
                kind[i] = _COUPON
                threshold[i] = round(o.min_spend * per_unit)
                amount[i] = round(o.amount * per_unit)
                duration[i] = o.days * SECONDS_PER_DAY
            ex_item_offer += [i] * len(o.exclude_items)
            ex_item_id += o.exclude_items
            ex_cat_offer += [i] * len(o.exclude_categories)
            ex_cat_id += o.exclude_categories
        table = {
            "kind": kind, "ppm": ppm, "threshold": threshold, "amount": amount,
            "duration": duration,
            "ex_item_offer": np.asarray(ex_item_offer, np.int64),
            "ex_item_id": np.asarray(ex_item_id, np.int64),
            "ex_cat_offer": np.asarray(ex_cat_offer, np.int64),
            "ex_cat_id": np.asarray(ex_cat_id, np.int64),
            "is_percent": (kind == _PERCENT) | (kind == _TIMED),
            "is_fixed": kind == _SPEND,
            "fixed_redeem": (kind == _SPEND) | (kind == _COUPON),
            "is_coupon": kind == _COUPON,
            "ppm2": 2 * ppm,
            "coupon_cost": np.where(kind == _COUPON, amount, 0) / per_unit,
            "has_exclusions": bool(ex_item_id or ex_cat_id),
            "all_active": np.ones(k, dtype=bool),
        }
        table["all_active"].setflags(write=False)
        object.__setattr__(self, "_table", table)

    # --- lookup ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offers)

    @property
    def ids(self) -> tuple[str, ...]:
        """Offer ids in arm order."""
        return self._ids  # type: ignore[attr-defined,no-any-return]

    def index(self, offer: int | str) -> int:
        """The arm index of an offer given by index or id (ValueError if unknown)."""
        if isinstance(offer, str):
            if offer not in self._index:  # type: ignore[attr-defined]
                raise ValueError(f"offer: unknown offer id {offer!r}; known: {list(self.ids)}")
            return int(self._index[offer])  # type: ignore[attr-defined]
        if isinstance(offer, (bool, np.bool_)) or not isinstance(offer, (int, np.integer)):
            raise ValueError(f"offer: expected an arm index or an offer id, got {offer!r}")
        if not 0 <= int(offer) < len(self.offers):
            raise ValueError(f"offer: expected an index in [0, {len(self.offers)}), got {offer}")
        return int(offer)

    # --- the vectorised kernel ------------------------------------------------------------
    def _line_arrays(self, basket: Basket) -> tuple[np.ndarray, np.ndarray]:
        """(list amount, headroom) of every line in minor units; the headroom is the most
        a discount may take off the line: list - margin floor, clipped at 0."""
        if not isinstance(basket, Basket):
            raise ValueError(f"basket: expected a Basket, got {type(basket).__name__}")
        per_unit = self._per_unit  # type: ignore[attr-defined]
        amount = np.rint(basket.unit_prices * per_unit) * basket.quantities
        if amount.max() >= _MAX_LINE_MINOR:
            raise self._line_too_large(int(np.argmax(amount)))
        floor = np.ceil(basket.unit_costs * (1.0 + self.margin_floor) * basket.quantities
                        * per_unit - _MINOR_TOLERANCE)
        # A line listed below its floor may be sold at list, never discounted: headroom 0.
        headroom = np.maximum(amount - floor, 0.0)
        return amount.astype(np.int64), headroom.astype(np.int64)

    def _active(self, now: float | None, offered_at: float | None) -> np.ndarray:
        """(K,) True where a time-limited offer is still valid (others: True)."""
        t = self._table  # type: ignore[attr-defined]
        if offered_at is None:
            if now is not None and not (isinstance(now, (int, float)) and math.isfinite(now)):
                check_range("now", now)
            return t["all_active"]  # a fresh offer, made now
        if now is None:
            raise ValueError("now: required when offered_at is given")
        n = check_range("now", now)
        o = check_range("offered_at", offered_at)
        if n < o:
            raise ValueError(f"now: expected a time >= offered_at={o!r}, got {n!r}")
        active = np.ones(len(self.offers), dtype=bool)
        timed = t["kind"] == _TIMED
        active[timed] = n < o + t["duration"][timed]
        return active

    def _savings(self, basket: Basket, line_list: np.ndarray, active: np.ndarray,
                 redeem_coupons: bool, rows: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Line savings (K', n) in minor units and whether each offer applied (K',).

        rows: the offers to evaluate (None: all). active: (K,) validity of time limits.
        """
        t = self._table  # type: ignore[attr-defined]
        if rows is not None:
            t = {k: (v[rows] if k in _PER_OFFER else v) for k, v in t.items()}
            active = active[rows]
        n = line_list.shape[0]
        if t["has_exclusions"]:
            eligible_line = np.ones((len(self.offers), n), dtype=bool)
            if t["ex_item_id"].size:
                hit_ex, hit_line = np.nonzero(t["ex_item_id"][:, None] == basket.item_ids[None, :])
                eligible_line[t["ex_item_offer"][hit_ex], hit_line] = False
            if t["ex_cat_id"].size:
                hit_ex, hit_line = np.nonzero(t["ex_cat_id"][:, None] == basket.categories[None, :])
                eligible_line[t["ex_cat_offer"][hit_ex], hit_line] = False
            if rows is not None:
                eligible_line = eligible_line[rows]
            weights = eligible_line * line_list[None, :]
            total = weights.sum(axis=1)
        else:
            weights = line_list[None, :]
            total = np.full(t["kind"].shape[0], line_list.sum())
        # Percent: fraction x total rounded half up, in integers: floor((2 p E + PPM) / 2 PPM).
        pct = (t["ppm2"] * total + PPM) // (2 * PPM)
        fixed = t["fixed_redeem"] if redeem_coupons else t["is_fixed"]
        applied = active & (t["is_percent"] | (fixed & (total >= t["threshold"])))
        saving_total = np.where(applied, np.where(fixed, t["amount"], pct), 0)
        if int(total.max()) >= _MAX_INT64_TOTAL:
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

    # --- the compiled kernel ---------------------------------------------------------
    def _use_numba(self, backend: str) -> bool:
        if backend == "auto":
            return _backends.has_numba()
        if backend == "numba":
            _backends.resolve("numba", supported=("numba",))  # RuntimeError naming why not
            return True
        if backend == "numpy":
            return False
        raise ValueError(f"backend: expected one of {', '.join(map(repr, QUOTE_BACKENDS))}; "
                         f"got {backend!r}")

    def _kernel(self) -> tuple[ModuleType, tuple[Any, ...]]:
        """The Numba kernel module and the catalogue's constant arguments to it.

        Both are built on first use (importing Numba then, not with this module) and
        kept: the offer table never changes for a frozen catalogue. Only plain arrays
        and numbers are stored on the catalogue, so it still pickles and deep-copies.
        """
        kern = _offers_kernels()
        consts = self.__dict__.get("_kernel_args")
        if consts is not None:
            return kern, consts
        t = self._table  # type: ignore[attr-defined]
        table = np.zeros((len(self.offers), kern.N_COLS), np.int64)
        table[:, kern.COL_PERCENT] = t["is_percent"]
        table[:, kern.COL_FIXED] = t["is_fixed"]
        table[:, kern.COL_THRESHOLD] = t["threshold"]
        table[:, kern.COL_AMOUNT] = t["amount"]
        table[:, kern.COL_PPM2] = t["ppm2"]
        table[:, kern.COL_COUPON] = t["is_coupon"]
        # Exclusions as CSR: offer k's ids are ex_id[ptr[k]:ptr[k + 1]].
        item_ptr = np.zeros(len(self.offers) + 1, np.int64)
        item_ptr[1:] = np.cumsum([len(o.exclude_items) for o in self.offers])
        cat_ptr = np.zeros(len(self.offers) + 1, np.int64)
        cat_ptr[1:] = np.cumsum([len(o.exclude_categories) for o in self.offers])
        item_id = np.array([i for o in self.offers for i in o.exclude_items], np.int64)
        cat_id = np.array([c for o in self.offers for c in o.exclude_categories], np.int64)
        for a in (table, item_ptr, item_id, cat_ptr, cat_id):
            a.setflags(write=False)
        consts = (self._per_unit, 1.0 + self.margin_floor,  # type: ignore[attr-defined]
                  _MINOR_TOLERANCE, _MAX_LINE_MINOR, _MAX_INT64_TOTAL, PPM, table, item_ptr,
                  item_id, cat_ptr, cat_id)
        object.__setattr__(self, "_kernel_args", consts)
        return kern, consts

    def _line_too_large(self, line: int, where: str = "") -> ValueError:
        return ValueError(f"{where}unit_prices: line {line} amounts to more than "
                          f"{_MAX_LINE_MINOR:.3g} minor units, beyond exact pricing")

    def _quote_numpy(self, basket: Basket, active: np.ndarray) -> Quote:
        """``quote`` on the vectorised NumPy path (the reference for the kernel)."""
        line_list, headroom = self._line_arrays(basket)
        saving, _ = self._savings(basket, line_list, active, redeem_coupons=False)
        paid = line_list[None, :] - saving
        ok = np.less_equal(saving, headroom).all(axis=1)
        per_unit = self._per_unit  # type: ignore[attr-defined]
        t = self._table  # type: ignore[attr-defined]
        cost = np.where(t["is_coupon"], t["coupon_cost"], saving.sum(axis=1) / per_unit)
        return Quote(offer_ids=self.ids, eligible=ok, discount_cost=cost,
                     paid_total=paid.sum(axis=1) / per_unit,
                     list_total=int(line_list.sum()) / per_unit)

    # --- the public API -------------------------------------------------------------------
    def quote(self, basket: Basket, now: float | None = None, *,
              offered_at: float | None = None, backend: str = "auto") -> Quote:
        """Every offer evaluated on ``basket`` at once (one pass, exact in minor units).

        now, offered_at: seconds. A time-limited offer made at ``offered_at`` is valid
        while now < offered_at + hours; without offered_at it is priced as made now (the
        decision-time case). Coupons are priced as issued on this basket (no discount now).
        backend: "auto", "numba" or "numpy" (see ``QUOTE_BACKENDS``); results are equal.
        """
        if not isinstance(basket, Basket):
            raise ValueError(f"basket: expected a Basket, got {type(basket).__name__}")
        active = self._active(now, offered_at)
        if not self._use_numba(backend):
            return self._quote_numpy(basket, active)
        kern, consts = self._kernel()
        k = len(self.offers)
        elig = np.empty(k, dtype=bool)
        cost = np.empty(k)
        paid = np.empty(k)
        status, total = kern.quote_one(basket.item_ids, basket.categories, basket.unit_prices,
                                       basket.unit_costs, basket.quantities, *consts, active,
                                       elig, cost, paid)
        if status == kern.STATUS_OK:
            return Quote(offer_ids=self._ids,  # type: ignore[attr-defined]
                         eligible=elig, discount_cost=cost, paid_total=paid,
                         list_total=int(total) / self._per_unit)  # type: ignore[attr-defined]
        if status >= 0:
            raise self._line_too_large(status)
        return self._quote_numpy(basket, active)  # a total beyond int64 products

    def eligible(self, basket: Basket, now: float | None = None, *,
                 offered_at: float | None = None, backend: str = "auto") -> np.ndarray:
        """(K,) bool: True where offer k may be shown for this basket (the bandit's arm mask).

        False exactly when pricing the basket under offer k would take some line below
        its margin floor (see the module). Arguments as in ``quote``.
        """
        return self.quote(basket, now, offered_at=offered_at, backend=backend).eligible

    def quote_batch(self, baskets: Sequence[Basket], now: float | None = None, *,
                    offered_at: float | None = None, backend: str = "auto") -> QuoteBatch:
        """Every offer evaluated on every basket: row b equals ``quote(baskets[b])`` exactly.

        One compiled pass over the baskets' lines laid end to end (CSR), the same
        ``now`` / ``offered_at`` for all (a batch is one moment). Arguments as in
        ``quote``; a bad basket raises ValueError naming its index.
        """
        n_b, k = len(baskets), len(self.offers)
        if set(map(type, baskets)) - {Basket}:
            for b, basket in enumerate(baskets):
                if not isinstance(basket, Basket):
                    raise ValueError(f"baskets[{b}]: expected a Basket, got "
                                     f"{type(basket).__name__}")
        active = self._active(now, offered_at)
        elig = np.empty((n_b, k), dtype=bool)
        cost = np.empty((n_b, k))
        paid = np.empty((n_b, k))
        total = np.empty(n_b)
        out = QuoteBatch(offer_ids=self._ids,  # type: ignore[attr-defined]
                         eligible=elig, discount_cost=cost, paid_total=paid, list_total=total)
        if n_b == 0:
            return out
        if not self._use_numba(backend):
            redo = range(n_b)
        else:
            kern, consts = self._kernel()
            ids = [b.item_ids for b in baskets]
            offsets = np.zeros(n_b + 1, np.int64)
            np.cumsum([a.shape[0] for a in ids], out=offsets[1:])
            status = np.empty(n_b, np.int64)
            kern.quote_csr(offsets, np.concatenate(ids),
                           np.concatenate([b.categories for b in baskets]),
                           np.concatenate([b.unit_prices for b in baskets]),
                           np.concatenate([b.unit_costs for b in baskets]),
                           np.concatenate([b.quantities for b in baskets]),
                           *consts, active, elig, cost, paid, total, status)
            redo = np.flatnonzero(status != kern.STATUS_OK).tolist()
            for b in redo:
                if status[b] >= 0:
                    raise self._line_too_large(int(status[b]), f"baskets[{b}].")
        for b in redo:  # the NumPy path: every basket, or those beyond int64 products
            try:
                q = self._quote_numpy(baskets[b], active)
            except ValueError as exc:
                raise ValueError(f"baskets[{b}].{exc}") from None
            elig[b], cost[b], paid[b], total[b] = (q.eligible, q.discount_cost, q.paid_total,
                                                   q.list_total)
        return out

    def quote_many(self, baskets: Sequence[Basket], now: float | None = None, *,
                   offered_at: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(eligible (B, K) bool, discount_cost (B, K) float) for many baskets.

        The first two arrays of ``quote_batch`` (one pass over all baskets).
        """
        q = self.quote_batch(baskets, now, offered_at=offered_at)
        return q.eligible, q.discount_cost

    def _pricing(self, basket: Basket, k: int, *, now: float | None, offered_at: float | None,
                 check_floor: bool, redeem: bool = False) -> Pricing:
        line_list, headroom = self._line_arrays(basket)
        active = self._active(now, offered_at)
        saving, applied = self._savings(basket, line_list, active, redeem_coupons=redeem,
                                        rows=np.array([k]))
        paid = line_list - saving[0]
        floor = line_list - headroom
        if check_floor and (paid < floor).any():
            i = int(np.argmax(paid < floor))
            per_unit = self._per_unit  # type: ignore[attr-defined]
            raise ValueError(
                f"offer: {self.offers[k].id!r} is ineligible for this basket: line {i} would be "
                f"sold at {paid[i] / per_unit:g} {self.currency}, below its margin floor "
                f"{floor[i] / per_unit:g} (unit cost x (1 + {self.margin_floor:g}) x quantity)")
        line_list.setflags(write=False)
        paid.setflags(write=False)
        return Pricing(offer_id=self.offers[k].id, minor_unit=self.minor_unit,
                       line_list_minor=line_list, line_paid_minor=paid,
                       applied=bool(applied[0]))

    def price(self, basket: Basket, offer: int | str, now: float | None = None, *,
              offered_at: float | None = None) -> Pricing:
        """The basket priced under one offer (arm index or id); arguments as in ``quote``.

        Raises ValueError if the offer is ineligible for the basket (never clips). A
        coupon is priced as issued: the basket at list price.
        """
        k = self.index(offer)
        return self._pricing(basket, k, now=now, offered_at=offered_at, check_floor=True)

    def expected_discount_cost(self, basket: Basket, offer: int | str,
                               now: float | None = None, *,
                               offered_at: float | None = None) -> float:
        """The discount cost (currency) if the shopper buys ``basket`` under the offer.

        For a coupon: its amount, an upper bound of what the later redemption can cost
        (it may never be redeemed), used for budget masking. Raises ValueError if the
        offer is ineligible for the basket.
        """
        k = self.index(offer)
        pricing = self._pricing(basket, k, now=now, offered_at=offered_at, check_floor=True)
        if isinstance(self.offers[k], Coupon):
            return float(self._table["coupon_cost"][k])  # type: ignore[attr-defined]
        return pricing.discount_cost

    def redeem(self, basket: Basket, offer: int | str, *, issued_at: float,
               now: float) -> Pricing:
        """A later basket priced with a coupon issued at ``issued_at`` (seconds).

        The coupon applies when issued_at <= now < issued_at + days and the eligible lines
        total at least min_spend; otherwise the basket is priced at list with
        ``applied=False``. Raises ValueError if the offer is not a coupon, now is before
        issued_at, or the redemption would take a line below its margin floor.
        """
        k = self.index(offer)
        coupon = self.offers[k]
        if not isinstance(coupon, Coupon):
            raise ValueError(f"offer: {coupon.id!r} is a {coupon.kind} offer, not a coupon")
        n = check_range("now", now)
        i = check_range("issued_at", issued_at)
        if n < i:
            raise ValueError(f"now: expected a time >= issued_at={i!r}, got {n!r}")
        valid = n < i + self._table["duration"][k]  # type: ignore[attr-defined]
        if not valid:
            line_list, _ = self._line_arrays(basket)
            line_list.setflags(write=False)
            return Pricing(offer_id=coupon.id, minor_unit=self.minor_unit,
                           line_list_minor=line_list, line_paid_minor=line_list, applied=False)
        return self._pricing(basket, k, now=None, offered_at=None, check_floor=True, redeem=True)

    # --- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data for a catalogue file (see ``from_dict`` for the schema)."""
        return {
            "format_version": CATALOGUE_FORMAT_VERSION,
            "currency": self.currency,
            "minor_unit": self.minor_unit,
            "margin_floor": self.margin_floor,
            "offers": [o.to_dict() for o in self.offers],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Catalogue:
        """A catalogue from plain data, validated with errors naming the key path.

        Schema: ``currency`` (str), ``minor_unit`` (number), ``margin_floor`` (number),
        optional ``format_version`` (1), and ``offers``: a list of tables each with ``id``,
        ``type`` (one of none, percent_off, spend_threshold, time_limited, coupon), the
        kind's own keys, and optional ``name``, ``exclude_items``, ``exclude_categories``.
        Unknown keys are rejected.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"catalogue: expected a table of settings, got {type(data).__name__}")
        known = {"format_version", "currency", "minor_unit", "margin_floor", "offers"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key; expected one of {sorted(known)}")
        version = data.get("format_version", CATALOGUE_FORMAT_VERSION)
        if version != CATALOGUE_FORMAT_VERSION or isinstance(version, bool):
            raise ValueError(f"format_version: this promobandit reads version "
                             f"{CATALOGUE_FORMAT_VERSION}, got {version!r}")
        if "offers" not in data:
            raise ValueError("offers: missing key")
        raw = data["offers"]
        if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
            raise ValueError(f"offers: expected a list of offer tables, got {type(raw).__name__}")
        offers = [_offer_from_dict(i, o) for i, o in enumerate(raw)]
        kwargs = {k: data[k] for k in ("currency", "minor_unit", "margin_floor") if k in data}
        return cls(tuple(offers), **kwargs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the catalogue as JSON (the path must end in .json).

        TOML is read but not written: the standard library has no TOML writer and a
        catalogue does not justify a dependency; JSON loads back to an equal catalogue.
        """
        p = os.fspath(path)
        if not p.endswith(".json"):
            raise ValueError(f"path: catalogues are saved as JSON (a .json path), got {p!r}")
        tmp = p + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, p)  # atomic: a reader never sees half a catalogue

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalogue:
        """Reads a catalogue from a .toml or .json file (validated, see ``from_dict``)."""
        p = os.fspath(path)
        if p.endswith(".toml"):
            data = load_toml(p, "file")
        elif p.endswith(".json"):
            with open(p, encoding="utf-8") as fh:
                try:
                    data = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"file: {p} is not valid JSON: {exc}") from exc
        else:
            raise ValueError(f"path: expected a .toml or .json file, got {p!r}")
        return cls.from_dict(data)


def _offer_from_dict(i: int, raw: Any) -> Offer:
    where = f"offers[{i}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in OFFER_KINDS:
        raise ValueError(f"{where}.type: expected one of {sorted(OFFER_KINDS)}, got {kind!r}")
    cls = OFFER_KINDS[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields - {"type"})
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key for a {kind} offer; expected "
                         f"{sorted(fields | {'type'})}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{where}.{missing[0]}: missing key for a {kind} offer")
    try:
        return cls(**{k: v for k, v in raw.items() if k != "type"})
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def default_catalogue() -> Catalogue:
    """A small starting catalogue in EUR (minor unit 0.01, margin floor 5%).

    none; 5%, 10%, 15%, 20% off; spend 100 save 15; 20% off for 24 hours; a coupon of
    10 off an order of at least 50, valid 14 days.
    """
    return Catalogue(
        offers=(
            NoDiscount(id="none", name="No discount"),
            PercentOff(id="pct5", name="5% off", fraction=0.05),
            PercentOff(id="pct10", name="10% off", fraction=0.10),
            PercentOff(id="pct15", name="15% off", fraction=0.15),
            PercentOff(id="pct20", name="20% off", fraction=0.20),
            SpendThreshold(id="spend100_save15", name="Spend 100, save 15", spend=100.0,
                           save=15.0),
            TimeLimitedPercentOff(id="flash20_24h", name="20% off for 24 hours", fraction=0.20,
                                  hours=24.0),
            Coupon(id="coupon10_min50", name="10 off your next order of 50+", amount=10.0,
                   min_spend=50.0, days=14.0),
        ),
        currency="EUR",
        minor_unit=0.01,
        margin_floor=0.05,
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
