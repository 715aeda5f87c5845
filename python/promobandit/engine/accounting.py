"""The engine's money bookkeeping: budget reservations, coupons, purchase rates.

Every decision reserves its worst-case discount cost in the budget (``BudgetPacer``)
and counts as an offer against the user's caps. Finalising it settles the reservation:
the discount actually given becomes spend, the rest is released, and the discount counts
against the user's discount cap.

A coupon is different: its cost is paid when it is redeemed on a later order, possibly
after its decision was finalised. Its worst case therefore stays reserved until the
coupon expires (``coupon_holds``: decision id -> [expiry time, amount]), so a late
redemption can never overrun the budget; a redemption books its cost and releases the
hold, an expiry releases the hold unspent.

The expected discount cost the budget's shadow price is applied to is the worst case
times the offer's purchase probability, the posterior mean of a Beta(a, b) prior
(``EngineConfig.conversion_prior``) updated with the finalised decisions' outcomes.

Money is in the catalogue's currency; times are unix seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..constraints import BudgetPacer, UserCaps
from ..events import SECONDS_PER_DAY
from ..offers import Catalogue, Coupon
from ._pending import PendingDecision


class DiscountLedger:
    """Budget and coupon bookkeeping of one engine's decisions.

    catalogue: the offers; budget, caps: the engine's limits (None when off);
    conversion_prior: (a, b) of the Beta prior of every offer's purchase probability.
    """

    def __init__(self, catalogue: Catalogue, budget: BudgetPacer | None, caps: UserCaps | None,
                 conversion_prior: tuple[float, float]) -> None:
        self.budget = budget
        self.caps = caps
        self.conversion_prior = conversion_prior
        offers = catalogue.offers
        k = len(offers)
        self.is_coupon = np.array([isinstance(o, Coupon) for o in offers])
        self.coupon_days = np.array([o.days if isinstance(o, Coupon) else 0.0 for o in offers])
        self.discounted = np.array([o.kind != "none" for o in offers])
        self.coupon_holds: OrderedDict[str, list[float]] = OrderedDict()
        self.decided = np.zeros(k)  # decisions finalised per offer
        self.bought = np.zeros(k)  # of which purchases
        self._update_purchase_rates()

    # --- purchase rates --------------------------------------------------------------------
    def _update_purchase_rates(self) -> None:
        a, b = self.conversion_prior
        self.purchase_rate = (self.bought + a) / (self.decided + a + b)

    def expected_costs(self, costs: np.ndarray) -> np.ndarray:
        """(n, K) expected discount costs of (n, K) worst-case costs."""
        return self.purchase_rate[None, :] * costs

    def purchase_discount(self, offer: int, max_cost: float) -> float:
        """The discount paid at the purchase itself: a coupon's is paid on redemption."""
        return 0.0 if self.is_coupon[offer] else max_cost

    # --- a decision's life -----------------------------------------------------------------
    def reserve(self, user: str, offer: int, max_cost: float, expected_cost: float,
                now: float) -> None:
        """A decision was made: reserve its worst case, count the offer for the caps."""
        if self.budget is not None:
            self.budget.commit(now, max_cost, expected_cost)
        if self.caps is not None:
            self.caps.record_offer(user, now, bool(self.discounted[offer]))

    def settle(self, rec: PendingDecision, purchased: bool, discount: float, now: float) -> float:
        """A decision is finalised with `discount` given (0 without a purchase): updates
        the purchase rates and settles its reservation (a coupon's stays held until it
        expires). Returns the discount spent on it (a coupon redeemed while the decision
        was pending: its cost)."""
        self.decided[rec.offer] += 1
        if purchased:
            self.bought[rec.offer] += 1
        self._update_purchase_rates()
        coupon = bool(self.is_coupon[rec.offer])
        if coupon and rec.coupon_cost is not None:  # redeemed while pending
            discount = rec.coupon_cost
            coupon = False
        if self.budget is not None:
            if coupon:  # keep the worst case reserved until the coupon expires
                self.budget.settle(now, 0.0, rec.expected_cost, 0.0)
                expires = rec.created + self.coupon_days[rec.offer] * SECONDS_PER_DAY
                self.coupon_holds[rec.id] = [expires, rec.max_cost]
            else:
                self.budget.settle(now, rec.max_cost, rec.expected_cost, discount)
        if self.caps is not None and discount > 0:
            self.caps.record_cost(rec.user, now, discount)
        return discount

    def release(self, rec: PendingDecision, now: float) -> None:
        """A decision that was never shown (deferred activation not confirmed within the
        wait) is dropped: its whole reservation is released unspent (no coupon was given,
        so nothing stays held), its offer no longer counts against the user's daily cap,
        and the purchase rates do not count it."""
        if self.budget is not None:
            self.budget.settle(now, rec.max_cost, rec.expected_cost, 0.0)
        if self.caps is not None:
            self.caps.release_offer(rec.user, rec.created, bool(self.discounted[rec.offer]))

    def redeem_coupon(self, decision_id: str, discount: float | None, now: float,
                      rec: PendingDecision | None = None) -> bool:
        """A coupon of this decision was redeemed (`discount`: its cost, default the face
        value). Pending (`rec` given): noted, settled with the decision; returns False.
        Finalised: its cost leaves the hold and becomes spend; returns True."""
        if rec is not None:
            rec.coupon_cost = rec.max_cost if discount is None else discount
            return False
        hold = self.coupon_holds.pop(decision_id, None)
        amount = discount if discount is not None else (hold[1] if hold is not None else 0.0)
        if self.budget is not None:
            if hold is not None:
                self.budget.settle(now, hold[1], 0.0, amount)
            else:  # no reservation left (expired or redeemed before): book it as it is
                self.budget.book(now, amount)
        return True

    def release_expired_coupons(self, now: float) -> None:
        """Releases the holds of coupons that expired unredeemed by `now`."""
        while self.coupon_holds:
            did, (expires, amount) = next(iter(self.coupon_holds.items()))
            if expires > now:
                break
            del self.coupon_holds[did]
            if self.budget is not None:
                self.budget.settle(now, amount, 0.0, 0.0)

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """decided, bought (per offer) and coupon_holds ([id, expiry, amount] rows)."""
        return {"decided": self.decided.tolist(), "bought": self.bought.tolist(),
                "coupon_holds": [[k, *v] for k, v in self.coupon_holds.items()]}

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """ValueError if `state` does not fit this catalogue (nothing is changed)."""
        k = len(self.decided)
        if len(state["decided"]) != k or len(state["bought"]) != k:
            raise ValueError(f"state: offer statistics for {len(state['decided'])} offers, the "
                             f"catalogue has {k}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a state_dict (check it first with check_state_dict)."""
        self.decided = np.asarray(state["decided"], dtype=float)
        self.bought = np.asarray(state["bought"], dtype=float)
        self._update_purchase_rates()
        self.coupon_holds = OrderedDict((str(h[0]), [float(h[1]), float(h[2])])
                                        for h in state.get("coupon_holds", []))


__all__ = ["DiscountLedger"]
