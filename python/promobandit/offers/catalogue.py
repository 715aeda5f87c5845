"""The offer catalogue: the offers the engine may show, quotes of every offer on a
basket, eligibility under the margin floor, and catalogue files.

A catalogue is its offers (``offer``), a currency with its minor unit and a margin floor.
It builds its ``PricingTable`` once (``pricing``: the rounding rule and the floor) and
quotes through it: ``quote`` / ``quote_batch`` on the compiled kernel
(``offers/_kernels.py``) or the NumPy path of the table, with identical results. An offer
that would push any line of a basket below its floor is *ineligible* for that basket:
``Catalogue.eligible`` is False for it (the bandit's per-request arm mask) and
``Catalogue.price`` raises instead of clipping.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .. import _backends
from .._toml import load_toml
from .._validation import check_range
from .basket import Basket
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

CATALOGUE_FORMAT_VERSION = 1

_CURRENCY_RE = re.compile(r"[A-Z]{3}")

# Pricing backends of quote / eligible / quote_batch. "numba": one compiled pass over
# offers and lines (offers/_kernels.py); "numpy": the vectorised array path of the
# PricingTable, the oracle of the tests and the fallback where Numba does not import;
# "auto": Numba when it imports, else NumPy. PROMOBANDIT_BACKEND does not apply: pricing
# has no C++ or CUDA kernel, and both backends give identical results.
QUOTE_BACKENDS = ("auto", "numba", "numpy")


_KERNELS: ModuleType | None = None


def _offers_kernels() -> ModuleType:
    """promobandit.offers._kernels, imported on first use: importing Numba takes ~0.3 s,
    which ``import promobandit.offers`` alone should not pay."""
    global _KERNELS
    if _KERNELS is None:
        from . import _kernels as kern

        _KERNELS = kern
    return _KERNELS


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
        table = PricingTable.build(offers, self.minor_unit, self.margin_floor)
        set_ = object.__setattr__
        set_(self, "offers", offers)
        set_(self, "minor_unit", table.minor_unit)
        set_(self, "margin_floor", table.margin_floor)
        set_(self, "_table", table)
        set_(self, "_index", seen)
        set_(self, "_ids", tuple(o.id for o in offers))  # quote returns it on every call

    # --- lookup ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offers)

    @property
    def ids(self) -> tuple[str, ...]:
        """Offer ids in arm order."""
        return self._ids  # type: ignore[attr-defined,no-any-return]

    @property
    def pricing(self) -> PricingTable:
        """The offers as every pricer reads them (kind codes, minor-unit amounts,
        exclusions, the rounding rule); built once with the catalogue."""
        return self._table  # type: ignore[attr-defined,no-any-return]

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

    # --- backends -------------------------------------------------------------------------
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
        """The Numba kernel module and the pricing table's constant arguments to it.

        The module is imported on first use (Numba then, not with this module); the
        arguments are the table's own read-only arrays, so nothing is copied per call and
        the catalogue still pickles and deep-copies.
        """
        return _offers_kernels(), self.pricing.kernel_args()

    def _quote_numpy(self, basket: Basket, active: np.ndarray) -> Quote:
        """``quote`` on the NumPy path of the pricing table (the reference for the kernel)."""
        ok, cost, paid, total = self.pricing.quote_lines(
            basket.item_ids, basket.categories, basket.unit_prices, basket.unit_costs,
            basket.quantities, active)
        return Quote(offer_ids=self.ids, eligible=ok, discount_cost=cost, paid_total=paid,
                     list_total=total / self.pricing.per_unit)

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
        active = self.pricing.active(now, offered_at)
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
                         list_total=int(total) / self.pricing.per_unit)
        if status >= 0:
            raise self.pricing.line_too_large(status)
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
        active = self.pricing.active(now, offered_at)
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
                    raise self.pricing.line_too_large(int(status[b]), f"baskets[{b}].")
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
                 redeem: bool = False) -> Pricing:
        """Offer k on the basket; raises ValueError if a line would be sold below its
        margin floor (the offer is ineligible for the basket)."""
        if not isinstance(basket, Basket):
            raise ValueError(f"basket: expected a Basket, got {type(basket).__name__}")
        line_list, paid, headroom, applied = self.pricing.price_lines(
            basket.item_ids, basket.categories, basket.unit_prices, basket.unit_costs,
            basket.quantities, k, now, offered_at, redeem)
        floor = line_list - headroom
        if (paid < floor).any():
            i = int(np.argmax(paid < floor))
            per_unit = self.pricing.per_unit
            raise ValueError(
                f"offer: {self.offers[k].id!r} is ineligible for this basket: line {i} would be "
                f"sold at {paid[i] / per_unit:g} {self.currency}, below its margin floor "
                f"{floor[i] / per_unit:g} (unit cost x (1 + {self.margin_floor:g}) x quantity)")
        line_list.setflags(write=False)
        paid.setflags(write=False)
        return Pricing(offer_id=self.offers[k].id, minor_unit=self.minor_unit,
                       line_list_minor=line_list, line_paid_minor=paid, applied=applied)

    def price(self, basket: Basket, offer: int | str, now: float | None = None, *,
              offered_at: float | None = None) -> Pricing:
        """The basket priced under one offer (arm index or id); arguments as in ``quote``.

        Raises ValueError if the offer is ineligible for the basket (never clips). A
        coupon is priced as issued: the basket at list price.
        """
        k = self.index(offer)
        return self._pricing(basket, k, now=now, offered_at=offered_at)

    def expected_discount_cost(self, basket: Basket, offer: int | str,
                               now: float | None = None, *,
                               offered_at: float | None = None) -> float:
        """The discount cost (currency) if the shopper buys ``basket`` under the offer.

        For a coupon: its amount, an upper bound of what the later redemption can cost
        (it may never be redeemed), used for budget masking. Raises ValueError if the
        offer is ineligible for the basket.
        """
        k = self.index(offer)
        pricing = self._pricing(basket, k, now=now, offered_at=offered_at)
        if isinstance(self.offers[k], Coupon):
            return float(self.pricing.coupon_cost[k])
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
        valid = n < i + self.pricing.duration[k]
        if not valid:
            if not isinstance(basket, Basket):
                raise ValueError(f"basket: expected a Basket, got {type(basket).__name__}")
            line_list, _ = self.pricing.line_arrays(basket.unit_prices, basket.unit_costs,
                                                    basket.quantities)
            line_list.setflags(write=False)
            return Pricing(offer_id=coupon.id, minor_unit=self.minor_unit,
                           line_list_minor=line_list, line_paid_minor=line_list, applied=False)
        return self._pricing(basket, k, now=None, offered_at=None, redeem=True)

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
    "QUOTE_BACKENDS",
    "Catalogue",
    "Quote",
    "QuoteBatch",
    "default_catalogue",
]
