"""Numba kernels of the marketplace simulator: exact offer pricing and shopper outcomes.

One call handles a batch of decisions row by row (rows in time order), so a shopper who
appears twice in a batch sees the promotions the earlier row gave them. For every row the
kernel computes the expected profit of *every* offer of the catalogue (the ground truth of
regret), then realises the offer that was chosen with the row's common random numbers and
updates the shopper's held promotions (a coupon, a running time-limited offer).

Money is in integer minor units inside the kernel (as in ``promobandit.offers``), and in
the catalogue's currency (floats) where it leaves it. Pricing is the engine's, not a copy:
the offers are the catalogue's ``PricingTable``, the items' list amounts and headrooms
come from ``pricing.line_minor`` (``Market``), and each order is priced by
``offers._kernels.offer_saving`` and ``split_fits`` (the largest-remainder split checked
against the margin floor), the functions the engine's quote kernel calls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..offers._kernels import offer_saving, split_fits

# Kind codes are pricing's (one definition); run.py reads these two through this module.
from ..offers.pricing import KIND_COUPON, KIND_TIMED

# Which promotion priced a purchase (the `source` output).
SOURCE_NONE = 0  # no purchase
SOURCE_OFFER = 1  # the offer decided for this session
SOURCE_COUPON = 2  # a coupon the shopper held from an earlier decision
SOURCE_TIMED = 3  # a time-limited offer from an earlier decision, still running
SOURCE_LIST = 4  # bought at list price

# Outcomes of a session with a decision.
OUTCOME_NONE, OUTCOME_ITEM, OUTCOME_BUNDLE = 0, 1, 2

# Layout of the float parameter vector (see Market.kernel_params).
P_BUY_INTERCEPT, P_BUY_AFFINITY, P_ADDON_INTERCEPT, P_ADDON_AFFINITY = 0, 1, 2, 3
P_URGENCY, P_COUPON_RECALL, P_PER_UNIT = 4, 5, 6
N_PARAMS = 7


@njit(cache=True, inline="always")
def _price(kind: int, ppm: int, threshold: int, amount: int, redeem: bool,
           excluded: np.ndarray, item_a: int, item_b: int, item_list: np.ndarray,
           item_headroom: np.ndarray, weight: np.ndarray, room: np.ndarray,
           base: np.ndarray) -> tuple[int, bool]:
    """(saving, usable) of one offer on the order [item_a] or [item_a, item_b].

    The offer's arrays are a PricingTable's entries (kind, ppm, threshold, amount);
    excluded is its (N,) excluded-item mask; redeem prices a coupon as used on this order
    (else as issued: no saving). usable: the largest-remainder split keeps every line at
    or above its margin floor (a threshold that is not met gives saving 0, usable). The
    rule is offers._kernels' (offer_saving, split_fits), on the items' list amounts and
    headrooms. item_b < 0: a one-line order. weight, room, base: int64 scratch of >= 2
    (the lines' eligible amounts, headrooms and floor shares).
    """
    weight[0] = 0 if excluded[item_a] else item_list[item_a]
    room[0] = item_headroom[item_a]
    total = weight[0]
    n = 1
    if item_b >= 0:
        weight[1] = 0 if excluded[item_b] else item_list[item_b]
        room[1] = item_headroom[item_b]
        total += weight[1]
        n = 2
    saving = offer_saving(kind, ppm, threshold, amount, total, redeem)
    return saving, split_fits(saving, total, weight, room, base, n)


@njit(cache=True, inline="always")
def _offer_saving(k: int, off_kind: np.ndarray, off_ppm: np.ndarray, off_thr: np.ndarray,
                  off_amt: np.ndarray, off_excl: np.ndarray, item_a: int, item_b: int,
                  item_list: np.ndarray, item_headroom: np.ndarray,
                  weight: np.ndarray, room: np.ndarray, base: np.ndarray) -> tuple[int, bool]:
    """Saving of offer k decided now on an order (a coupon is issued: no saving now)."""
    return _price(off_kind[k], off_ppm[k], off_thr[k], off_amt[k], False, off_excl[k],
                  item_a, item_b, item_list, item_headroom, weight, room, base)


@njit(cache=True)
def _order(k: int, recalled: bool, u: int, item_a: int, item_b: int, t: float,
           off_kind: np.ndarray, off_ppm: np.ndarray, off_thr: np.ndarray, off_amt: np.ndarray,
           off_excl: np.ndarray, item_list: np.ndarray, item_headroom: np.ndarray,
           coupon_until: np.ndarray, coupon_offer: np.ndarray, timed_until: np.ndarray,
           timed_offer: np.ndarray, weight: np.ndarray, room: np.ndarray,
           base: np.ndarray) -> tuple[int, int]:
    """(best saving, its source) of an order under offer k and the shopper's holdings.

    One promotion per order: the largest saving wins; on ties the offer of this
    session first, then a held coupon, then a held time-limited offer.
    """
    best, src = 0, SOURCE_LIST
    s, ok = _offer_saving(k, off_kind, off_ppm, off_thr, off_amt, off_excl, item_a, item_b,
                          item_list, item_headroom, weight, room, base)
    if ok and s > 0:
        best, src = s, SOURCE_OFFER
    if recalled and coupon_until[u] > t:
        c = coupon_offer[u]  # a coupon offer: redeemed on this order
        s, ok = _price(off_kind[c], off_ppm[c], off_thr[c], off_amt[c], True, off_excl[c],
                       item_a, item_b, item_list, item_headroom, weight, room, base)
        if ok and s > best:
            best, src = s, SOURCE_COUPON
    if timed_until[u] > t:
        c = timed_offer[u]  # a time-limited offer, still running
        s, ok = _price(off_kind[c], off_ppm[c], off_thr[c], off_amt[c], False, off_excl[c],
                       item_a, item_b, item_list, item_headroom, weight, room, base)
        if ok and s > best:
            best, src = s, SOURCE_TIMED
    return best, src


@njit(cache=True)
def price_orders(item_a: np.ndarray, item_b: np.ndarray, redeem: bool, off_kind: np.ndarray,
                 off_ppm: np.ndarray, off_thr: np.ndarray, off_amt: np.ndarray,
                 off_excl: np.ndarray, item_list: np.ndarray, item_headroom: np.ndarray,
                 out_saving: np.ndarray, out_usable: np.ndarray) -> None:
    """Every offer on every order [item_a[n]] (item_b[n] < 0) or [item_a[n], item_b[n]]:
    out_saving (n, K) minor units and out_usable (n, K), as ``step`` prices them (a
    coupon as issued, or as redeemed on the order when ``redeem``)."""
    weight, room, base = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64)
    for n in range(item_a.shape[0]):
        for k in range(off_kind.shape[0]):
            s, ok = _price(off_kind[k], off_ppm[k], off_thr[k], off_amt[k], redeem, off_excl[k],
                           item_a[n], item_b[n], item_list, item_headroom, weight, room, base)
            out_saving[n, k] = s
            out_usable[n, k] = ok


@njit(cache=True)
def _probabilities(pay_a: float, pay_b: float, ref_a: float, ref_ab: float, aff_a: float,
                   aff_b: float, beta: float, shift: float, urgency: float,
                   params: np.ndarray) -> tuple[float, float]:
    """P(buy the item alone), P(buy item and add-on): a logit over {none, item, bundle}."""
    base = params[P_BUY_INTERCEPT] + params[P_BUY_AFFINITY] * aff_a + shift + urgency
    ua = base + beta * math.log(ref_a / pay_a)
    ub = (base + params[P_ADDON_INTERCEPT] + params[P_ADDON_AFFINITY] * aff_b
          + beta * math.log(ref_ab / pay_b))
    m = max(0.0, ua, ub)
    ea, eb, e0 = math.exp(ua - m), math.exp(ub - m), math.exp(-m)
    z = ea + eb + e0
    return ea / z, eb / z


@njit(cache=True)
def step(users: np.ndarray, item_a: np.ndarray, item_b: np.ndarray, times: np.ndarray,
         shift: np.ndarray, beta_mult: np.ndarray, offers: np.ndarray, u_buy: np.ndarray,
         u_recall: np.ndarray,
         item_list: np.ndarray, item_headroom: np.ndarray, item_cost: np.ndarray,
         item_ref: np.ndarray, item_vec: np.ndarray, item_quality: np.ndarray,
         user_vec: np.ndarray, user_beta: np.ndarray, user_ref: np.ndarray,
         off_kind: np.ndarray, off_ppm: np.ndarray, off_thr: np.ndarray, off_amt: np.ndarray,
         off_dur: np.ndarray, off_excl: np.ndarray,
         coupon_until: np.ndarray, coupon_offer: np.ndarray, timed_until: np.ndarray,
         timed_offer: np.ndarray, params: np.ndarray,
         out_expected: np.ndarray, out_eligible: np.ndarray, out_depth: np.ndarray,
         out_outcome: np.ndarray, out_paid: np.ndarray, out_cogs: np.ndarray,
         out_saving: np.ndarray, out_source: np.ndarray) -> None:
    """Expected profit of every offer, then the realised outcome of the chosen one.

    Per row n (a shopper u who clicked item_a, with item_b the suggested add-on, at
    time t; user_ref[u] scales the items' reference prices to u's): out_expected[n, k] the expected profit (currency) of offer k given u's
    holdings; out_eligible[n, k] offer k passes the margin floor on the basket
    [item_a, item_b] (the engine's quote); out_depth[n, k] the offer's quoted cost on
    that basket over its list total (a coupon counts its face value, as the engine
    does). If offers[n] >= 0 it is realised: out_outcome (OUTCOME_*), out_paid and
    out_cogs (currency), out_saving (the discount of the purchase, currency) and
    out_source (SOURCE_*); the holdings are updated (a used promotion is spent, a
    coupon offer issues a coupon, an unused time-limited offer keeps running).
    """
    n_offers = off_kind.shape[0]
    per_unit = params[P_PER_UNIT]
    # _price's scratch: the lines' eligible amounts, headrooms and floor shares
    weight, room, base = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64)
    recall_p = params[P_COUPON_RECALL]
    dim = item_vec.shape[1]
    for n in range(users.shape[0]):
        u, a, b, t = users[n], item_a[n], item_b[n], times[n]
        aff_a = item_quality[a]
        aff_b = item_quality[b]
        for d in range(dim):
            aff_a += user_vec[u, d] * item_vec[a, d]
            aff_b += user_vec[u, d] * item_vec[b, d]
        beta = user_beta[u] * beta_mult[n]
        ref_a = item_ref[a] * user_ref[u]
        ref_ab = (item_ref[a] + item_ref[b]) * user_ref[u]
        list_a = item_list[a]
        list_ab = item_list[a] + item_list[b]
        cost_a = item_cost[a]
        cost_ab = item_cost[a] + item_cost[b]
        has_coupon = coupon_until[u] > t
        # Expected profit of every offer: a mixture over whether a held coupon is recalled.
        for k in range(n_offers):
            s, ok = _offer_saving(k, off_kind, off_ppm, off_thr, off_amt, off_excl, a, b,
                                  item_list, item_headroom, weight, room, base)
            out_eligible[n, k] = ok
            quoted = off_amt[k] if off_kind[k] == KIND_COUPON else s
            out_depth[n, k] = quoted / list_ab
            urg = params[P_URGENCY] if off_kind[k] == KIND_TIMED else 0.0
            total = 0.0
            for r in range(2):
                recalled = r == 0
                if recalled:
                    w = recall_p if has_coupon else 0.0
                else:
                    w = (1.0 - recall_p) if has_coupon else 1.0
                if w == 0.0:
                    continue
                sa, _ = _order(k, recalled, u, a, -1, t, off_kind, off_ppm, off_thr, off_amt,
                               off_excl, item_list, item_headroom, coupon_until, coupon_offer,
                               timed_until, timed_offer, weight, room, base)
                sb, _ = _order(k, recalled, u, a, b, t, off_kind, off_ppm, off_thr, off_amt,
                               off_excl, item_list, item_headroom, coupon_until, coupon_offer,
                               timed_until, timed_offer, weight, room, base)
                pay_a = (list_a - sa) / per_unit
                pay_b = (list_ab - sb) / per_unit
                pa, pb = _probabilities(pay_a, pay_b, ref_a, ref_ab, aff_a, aff_b, beta,
                                        shift[n], urg, params)
                total += w * (pa * (pay_a - cost_a) + pb * (pay_b - cost_ab))
            out_expected[n, k] = total
        k = offers[n]
        if k < 0:
            continue
        # Realise the chosen offer with this row's common random numbers.
        recalled = has_coupon and u_recall[n] < recall_p
        urg = params[P_URGENCY] if off_kind[k] == KIND_TIMED else 0.0
        sa, src_a = _order(k, recalled, u, a, -1, t, off_kind, off_ppm, off_thr, off_amt,
                           off_excl, item_list, item_headroom, coupon_until, coupon_offer,
                           timed_until, timed_offer, weight, room, base)
        sb, src_b = _order(k, recalled, u, a, b, t, off_kind, off_ppm, off_thr, off_amt,
                           off_excl, item_list, item_headroom, coupon_until, coupon_offer,
                           timed_until, timed_offer, weight, room, base)
        pay_a = (list_a - sa) / per_unit
        pay_b = (list_ab - sb) / per_unit
        pa, pb = _probabilities(pay_a, pay_b, ref_a, ref_ab, aff_a, aff_b, beta, shift[n],
                                urg, params)
        x = u_buy[n]
        if x < pa:
            out_outcome[n] = OUTCOME_ITEM
            out_paid[n] = pay_a
            out_cogs[n] = cost_a
            out_saving[n] = sa / per_unit
            src = src_a
        elif x < pa + pb:
            out_outcome[n] = OUTCOME_BUNDLE
            out_paid[n] = pay_b
            out_cogs[n] = cost_ab
            out_saving[n] = sb / per_unit
            src = src_b
        else:
            out_outcome[n] = OUTCOME_NONE
            out_paid[n] = 0.0
            out_cogs[n] = 0.0
            out_saving[n] = 0.0
            src = SOURCE_NONE
        out_source[n] = src
        if src == SOURCE_COUPON:
            coupon_until[u] = -np.inf
        elif src == SOURCE_TIMED:
            timed_until[u] = -np.inf
        if off_kind[k] == KIND_COUPON:
            coupon_until[u] = t + off_dur[k]
            coupon_offer[u] = k
        elif off_kind[k] == KIND_TIMED and src != SOURCE_OFFER:
            timed_until[u] = t + off_dur[k]
            timed_offer[u] = k


@njit(cache=True)
def click_positions(users: np.ndarray, shown: np.ndarray, u_click: np.ndarray,
                    item_vec: np.ndarray, item_quality: np.ndarray, user_vec: np.ndarray,
                    affinity_weight: float, position_decay: float, outside: float,
                    out_prob: np.ndarray) -> np.ndarray:
    """Clicked position per session (-1: no click) by a logit over the shown items and
    not clicking; out_prob[n] gets the session's click probability (any item)."""
    n_rows, k = shown.shape
    dim = item_vec.shape[1]
    pos = np.full(n_rows, -1, dtype=np.int64)
    w = np.empty(k)
    for n in range(n_rows):
        u = users[n]
        m = outside
        for r in range(k):
            i = shown[n, r]
            a = item_quality[i]
            for d in range(dim):
                a += user_vec[u, d] * item_vec[i, d]
            w[r] = affinity_weight * a - position_decay * r
            m = max(m, w[r])
        z = math.exp(outside - m)
        for r in range(k):
            w[r] = math.exp(w[r] - m)
            z += w[r]
        out_prob[n] = 1.0 - math.exp(outside - m) / z
        acc = 0.0
        x = u_click[n] * z
        for r in range(k):
            acc += w[r]
            if x < acc:
                pos[n] = r
                break
    return pos
