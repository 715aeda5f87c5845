"""Baskets: the lines a shopper may buy, checked once at the edge.

A basket is five columns of one length n >= 1 (item ids, categories, unit prices, unit
costs, quantities). Money is in the catalogue's currency (a float per unit); the pricing
rounds it to the minor unit (see ``pricing``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import float_column, int_column

_BASKET_FIELDS = ("item_ids", "categories", "unit_prices", "unit_costs", "quantities")
_INT64 = np.dtype(np.int64)
_FLOAT64 = np.dtype(np.float64)


def _checked_columns(item_ids: Any, categories: Any, unit_prices: Any, unit_costs: Any,
                     quantities: Any) -> tuple[np.ndarray, ...]:
    """The five basket columns as new int64/float64 arrays, every rule checked in turn
    (raises ValueError naming the first broken rule's field and line)."""
    items = int_column("item_ids", item_ids)
    n = items.shape[0]
    if n == 0:
        raise ValueError("item_ids: a basket needs at least one line, got 0")
    cats = int_column("categories", categories)
    prices = float_column("unit_prices", unit_prices)
    costs = float_column("unit_costs", unit_costs)
    qty = int_column("quantities", quantities)
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


__all__ = ["Basket"]
