"""Numba kernels of pricing: ``Catalogue.quote`` (every offer on a basket in one pass)
and the helpers the simulator's market kernels price with.

One rule, compiled once: the float and integer arithmetic of the rounding rule is
``pricing.line_minor`` and ``pricing.percent_saving``, compiled here as they are (the
NumPy path calls the same functions on arrays), so line amounts, margin floors and
percent savings are the same operations in the same order: results are equal, not
close. ``offer_saving`` (which saving an offer kind gives on an eligible total) and
``split_fits`` (does the largest-remainder split keep every line above its floor) are
the only compiled copies of those steps; ``simulate/_kernels.py`` calls them too. Numba's
cache checks only the file of the kernel it cached: after editing ``pricing.py``, clear
``offers/__pycache__`` and ``simulate/__pycache__``; after editing this module,
``simulate/__pycache__``.

Why Numba: a quote of 10 offers on a 20-line basket is ~200 multiply-adds, but the
NumPy path spends ~50 us in ~40 small-array calls; one compiled call is a few us.

The kernels never distribute the leftover units line by line: a quote only needs
each offer's total saving S (which the split preserves exactly) and whether some
line's saving exceeds its headroom. A line's saving is floor(S L_i / E) plus one
leftover unit if its remainder ranks among the largest, so the rank is computed
only for the rare line whose floor share sits exactly at its headroom.

Inputs arrive from ``Catalogue.quote`` / ``quote_batch`` (1-D int64 / float64 / bool
arrays of Basket objects and the arrays of ``PricingTable.kernel_args``). Baskets
totalling ``pricing.MAX_INT64_TOTAL`` minor units or more (where S * L_i may overflow
int64) are handed back (status ``STATUS_HUGE``) to the NumPy path, whose Python integers
stay exact.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from . import pricing
from .pricing import (
    COL_AMOUNT,
    COL_KIND,
    COL_PPM,
    COL_THRESHOLD,
    KIND_COUPON,
    KIND_PERCENT,
    KIND_SPEND,
    KIND_TIMED,
    MAX_INT64_TOTAL,
)

_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}
# The shared steps are inlined into each kernel that calls them (Numba IR inlining): a
# call per offer with array arguments costs more than the step itself.
_STEP: dict[str, Any] = {**_JIT, "inline": "always"}

# Per-basket status: OK, or HUGE (re-price on the exact NumPy path); a value >= 0 is
# the line whose amount is beyond exact float pricing (the catalogue raises for it).
STATUS_OK = -1
STATUS_HUGE = -2

# The rounding rule of pricing.py, compiled as written there.
line_minor = nb.njit(**_STEP)(pricing.line_minor)
percent_saving = nb.njit(**_STEP)(pricing.percent_saving)


@nb.njit(**_STEP)
def offer_saving(kind, ppm, threshold, amount, total, redeem):  # pragma: no cover
    """The saving S (minor units) of an offer of ``kind`` on an eligible total: a percent
    or time-limited offer ppm / PPM of it rounded half up; a spend threshold (and a
    coupon when ``redeem``: priced on the order it is used on) its amount once the total
    reaches the threshold; else 0 (no discount, a coupon being issued)."""
    if kind == KIND_PERCENT or kind == KIND_TIMED:
        return percent_saving(ppm, total)
    if (kind == KIND_SPEND or (redeem and kind == KIND_COUPON)) and total >= threshold:
        return amount
    return 0


@nb.njit(**_STEP)
def split_fits(s, total, weight, headroom, base, n):  # pragma: no cover
    """True when S spread over lines 0..n-1 by the largest-remainder method (weight: the
    eligible list amounts, summing to total) takes no line past its headroom; base is
    scratch of >= n. Line j gets floor(S w_j / E), plus one leftover unit when its
    remainder ranks among the S - sum(floors) largest (ties to the lower line)."""
    if s <= 0:
        return True
    denom = total if total > 1 else 1
    left = s
    for j in range(n):
        b = (s * weight[j]) // denom
        base[j] = b
        left -= b
        if b > headroom[j]:
            return False
    if left > 0:
        for j in range(n):
            if base[j] < headroom[j]:
                continue  # even a leftover unit fits
            rem = s * weight[j] - base[j] * denom
            if rem == 0:
                continue  # zero remainders never get a leftover unit
            rank = 0  # position in (-remainder, line index) order
            for m in range(n):
                rm = s * weight[m] - base[m] * denom
                if rm > rem or (rm == rem and m < j):
                    rank += 1
            if rank < left:
                return False
    return True


@nb.njit(**_JIT)
def _quote_lines(ids, cats, prices, costs, qty, lo, hi, per_unit, margin_mult, max_line, columns,
                 ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id, active,
                 line_list, headroom, weight, base, elig_out, cost_out,
                 paid_out):  # pragma: no cover  (compiled; covered through the catalogue)
    """Quotes lines [lo, hi) into the (K,) rows elig_out / cost_out / paid_out.

    Returns (status, list total in minor units); line_list .. base are scratch of >= n.
    max_line is pricing.MAX_LINE_MINOR, an argument rather than a global on purpose: as
    a compile-time constant it makes LLVM compile the line loop to code twice as slow.
    """
    n = hi - lo
    worst = -1.0
    worst_j = 0
    for j in range(n):
        i = lo + j
        amt, room = line_minor(prices[i], costs[i], qty[i], per_unit, margin_mult)
        if amt > worst:  # the first maximum, like np.argmax
            worst = amt
            worst_j = j
        # converted only in range (the caller raises for lines beyond max_line)
        headroom[j] = np.int64(room) if room < max_line else 0
        line_list[j] = np.int64(amt) if amt < max_line else 0
    if worst >= max_line:
        return worst_j, 0
    total_all = 0
    for j in range(n):
        total_all += line_list[j]
        if total_all >= MAX_INT64_TOTAL:  # S * L_i could overflow int64: exact path instead
            return STATUS_HUGE, 0
    for k in range(columns.shape[0]):
        kind, ppm = columns[k, COL_KIND], columns[k, COL_PPM]
        threshold, amount = columns[k, COL_THRESHOLD], columns[k, COL_AMOUNT]
        a0, a1 = ex_item_ptr[k], ex_item_ptr[k + 1]
        c0, c1 = ex_cat_ptr[k], ex_cat_ptr[k + 1]
        total = 0
        for j in range(n):
            w = line_list[j]
            if a1 > a0 or c1 > c0:
                it = ids[lo + j]
                ct = cats[lo + j]
                for e in range(a0, a1):
                    if ex_item_id[e] == it:
                        w = 0
                        break
                for e in range(c0, c1):
                    if ex_cat_id[e] == ct:
                        w = 0
                        break
            weight[j] = w
            total += w
        s = 0
        if active[k]:
            s = offer_saving(kind, ppm, threshold, amount, total, False)
        elig_out[k] = split_fits(s, total, weight, headroom, base, n)
        if kind == KIND_COUPON:
            cost_out[k] = amount / per_unit
        else:
            cost_out[k] = s / per_unit
        paid_out[k] = (total_all - s) / per_unit
    return STATUS_OK, total_all


@nb.njit(**_JIT)
def quote_one(ids, cats, prices, costs, qty, per_unit, margin_mult, max_line, columns,
              ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id, active, elig_out,
              cost_out, paid_out):  # pragma: no cover
    """One basket: fills the (K,) outputs; returns (status, list total in minor units)."""
    n = ids.shape[0]
    line_list = np.empty(n, np.int64)
    headroom = np.empty(n, np.int64)
    weight = np.empty(n, np.int64)
    base = np.empty(n, np.int64)
    return _quote_lines(ids, cats, prices, costs, qty, 0, n, per_unit, margin_mult, max_line,
                        columns, ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id,
                        active, line_list, headroom, weight, base, elig_out, cost_out, paid_out)


@nb.njit(**_JIT)
def quote_csr(offsets, ids, cats, prices, costs, qty, per_unit, margin_mult, max_line, columns,
              ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id, active,
              elig_out, cost_out, paid_out, list_out, status_out):  # pragma: no cover
    """B baskets as CSR lines (basket b is lines offsets[b]:offsets[b + 1]).

    Fills the (B, K) outputs, list_out (B,) (list totals in currency) and status_out (B,).
    """
    n_baskets = offsets.shape[0] - 1
    longest = 0
    for b in range(n_baskets):
        longest = max(longest, offsets[b + 1] - offsets[b])
    line_list = np.empty(longest, np.int64)
    headroom = np.empty(longest, np.int64)
    weight = np.empty(longest, np.int64)
    base = np.empty(longest, np.int64)
    for b in range(n_baskets):
        status, total = _quote_lines(ids, cats, prices, costs, qty, offsets[b], offsets[b + 1],
                                     per_unit, margin_mult, max_line, columns, ex_item_ptr,
                                     ex_item_id, ex_cat_ptr, ex_cat_id, active,
                                     line_list, headroom, weight, base, elig_out[b],
                                     cost_out[b], paid_out[b])
        status_out[b] = status
        list_out[b] = total / per_unit
