"""Numba kernels of ``Catalogue.quote``: every offer priced on a basket in one pass.

The arithmetic is the NumPy path of ``promobandit.offers`` (the oracle the tests
compare against), operation for operation: the same float products in the same
order for line amounts and margin floors, the same int64 integer arithmetic for the
percent rounding and the largest-remainder split. So results are equal, not close.

Why Numba: a quote of 10 offers on a 20-line basket is ~200 multiply-adds, but the
NumPy path spends ~50 us in ~40 small-array calls; one compiled call is a few us.

The kernels never distribute the leftover units line by line: a quote only needs
each offer's total saving S (which the split preserves exactly) and whether some
line's saving exceeds its headroom. A line's saving is floor(S L_i / E) plus one
leftover unit if its remainder ranks among the largest, so the rank is computed
only for the rare line whose floor share sits exactly at its headroom.

Inputs arrive from ``Catalogue.quote`` / ``quote_batch`` (1-D int64 / float64 / bool
arrays of Basket objects and the catalogue's tables). Baskets totalling ``max_total``
minor units or more (offers._MAX_INT64_TOTAL, where S * L_i may overflow int64) are
handed back (status ``STATUS_HUGE``) to the NumPy path, whose Python integers stay exact.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}

# Columns of the per-offer int64 table built by Catalogue._kernel.
COL_PERCENT, COL_FIXED, COL_THRESHOLD, COL_AMOUNT, COL_PPM2, COL_COUPON = range(6)
N_COLS = 6

# Per-basket status: OK, or HUGE (re-price on the exact NumPy path); a value >= 0 is
# the line whose amount is beyond exact float pricing (the catalogue raises for it).
STATUS_OK = -1
STATUS_HUGE = -2


@nb.njit(**_JIT)
def _quote_lines(ids, cats, prices, costs, qty, lo, hi, per_unit, floor_mult, tol,
                 max_line, max_total, ppm, table, ex_item_ptr, ex_item_id, ex_cat_ptr,
                 ex_cat_id, active, line_list, headroom, weight, base, elig_out, cost_out,
                 paid_out):  # pragma: no cover  (compiled; covered through the catalogue)
    """Quotes lines [lo, hi) into the (K,) rows elig_out / cost_out / paid_out.

    Returns (status, list total in minor units); line_list .. base are scratch of >= n.
    """
    n = hi - lo
    pu = np.float64(per_unit)
    worst = -1.0
    worst_j = 0
    for j in range(n):
        i = lo + j
        q = np.float64(qty[i])
        amount = np.rint(prices[i] * pu) * q
        if amount > worst:  # the first maximum, like np.argmax
            worst = amount
            worst_j = j
        floor = np.ceil(costs[i] * floor_mult * q * pu - tol)
        room = amount - floor
        headroom[j] = np.int64(room) if 0.0 < room < max_line else 0
        # converted only in range (the caller raises for lines beyond max_line)
        line_list[j] = np.int64(amount) if amount < max_line else 0
    if worst >= max_line:
        return worst_j, 0
    total_all = 0
    for j in range(n):
        total_all += line_list[j]
        if total_all >= max_total:  # S * L_i could overflow int64: exact path instead
            return STATUS_HUGE, 0
    k_offers = table.shape[0]
    two_ppm = 2 * ppm
    for k in range(k_offers):
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
            if table[k, COL_PERCENT] != 0:
                # fraction x total rounded half up, in integers (see catalogue.py)
                s = (table[k, COL_PPM2] * total + ppm) // two_ppm
            elif table[k, COL_FIXED] != 0 and total >= table[k, COL_THRESHOLD]:
                s = table[k, COL_AMOUNT]
        ok = True
        if s > 0:
            denom = total if total > 1 else 1
            left = s
            for j in range(n):
                b = (s * weight[j]) // denom
                base[j] = b
                left -= b
                if b > headroom[j]:
                    ok = False
                    break
            if ok and left > 0:
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
                        ok = False
                        break
        elig_out[k] = ok
        if table[k, COL_COUPON] != 0:
            cost_out[k] = table[k, COL_AMOUNT] / per_unit
        else:
            cost_out[k] = s / per_unit
        paid_out[k] = (total_all - s) / per_unit
    return STATUS_OK, total_all


@nb.njit(**_JIT)
def quote_one(ids, cats, prices, costs, qty, per_unit, floor_mult, tol, max_line, max_total,
              ppm, table, ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id, active, elig_out,
              cost_out, paid_out):  # pragma: no cover
    """One basket: fills the (K,) outputs; returns (status, list total in minor units)."""
    n = ids.shape[0]
    line_list = np.empty(n, np.int64)
    headroom = np.empty(n, np.int64)
    weight = np.empty(n, np.int64)
    base = np.empty(n, np.int64)
    return _quote_lines(ids, cats, prices, costs, qty, 0, n, per_unit, floor_mult, tol,
                        max_line, max_total, ppm, table, ex_item_ptr, ex_item_id, ex_cat_ptr,
                        ex_cat_id, active, line_list, headroom, weight, base, elig_out,
                        cost_out, paid_out)


@nb.njit(**_JIT)
def quote_csr(offsets, ids, cats, prices, costs, qty, per_unit, floor_mult, tol, max_line,
              max_total, ppm, table, ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id, active,
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
                                     per_unit, floor_mult, tol, max_line, max_total, ppm, table,
                                     ex_item_ptr, ex_item_id, ex_cat_ptr, ex_cat_id, active,
                                     line_list, headroom, weight, base, elig_out[b],
                                     cost_out[b], paid_out[b])
        status_out[b] = status
        list_out[b] = total / per_unit
