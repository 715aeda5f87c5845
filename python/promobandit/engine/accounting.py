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
        if coupon:
            # Keep the worst case reserved until the coupon expires; the hold is also the
            # record that this decision has a coupon left to redeem (check_feedback), so it
            # is kept with or without a budget.
            if self.budget is not None:
                self.budget.settle(now, 0.0, rec.expected_cost, 0.0)
            expires = rec.created + self.coupon_days[rec.offer] * SECONDS_PER_DAY
            self.coupon_holds[rec.id] = [expires, rec.max_cost]
        elif self.budget is not None:
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

    # --- what feedback may claim ---------------------------------------------------------------
    def check_feedback(self, rec: PendingDecision | None, decision_id: str,
                       events: set[str] | None, event_id: str, digest: str, *,
                       purchased: bool, revenue: float | None, cost_of_goods: float | None,
                       discount: float | None, coupon_redeemed: bool,
                       revenue_multiple: float | None, max_events: int | None) -> None:
        """Raises (naming the field) when feedback claims money the engine never quoted
        for this decision: ValueError for amounts out of range, ConflictError for an
        event id reused with another outcome or a coupon already redeemed.

        rec: the pending decision (None once finalised); events: its event set (pending
        or remembered as finalised), None for an unknown decision; digest: a digest of
        this event's outcome (see outcome_entry). The rules: a purchase's discount is at
        most the quoted worst case (``max_cost``); a coupon is redeemed once, only on a
        decision that gave one, for at most its face value, while it has not expired;
        revenue and cost of goods at most ``revenue_multiple`` times the quoted basket
        (list price, cost); at most ``max_events`` events per decision. Changes nothing.
        """
        if events is None:
            return  # unknown decision: the engine records nothing for it
        if "\0" in event_id:
            raise ValueError("event_id: expected no NUL character")
        prior = outcome_of(events, event_id)
        if prior is not None or event_id in events:
            if prior is not None and prior != digest:
                raise ConflictError(f"event_id: {event_id!r} was already recorded for this "
                                    "decision with another outcome")
            return  # a true duplicate: the engine answers "duplicate" and changes nothing
        if max_events is not None and n_events(events) >= max_events:
            raise ConflictError(f"event_id: decision {decision_id} already has {max_events} "
                                "events (limits.max_events_per_decision)")
        tol = 1e-9
        if rec is not None:
            if purchased and discount is not None and discount > rec.max_cost + tol:
                raise ValueError(f"discount: expected at most {rec.max_cost!r}, the worst-case "
                                 f"discount quoted for decision {decision_id}, got {discount!r}")
            if revenue_multiple is not None:
                for name, v, base in (("revenue", revenue, rec.list_total),
                                      ("cost_of_goods", cost_of_goods, rec.cost_total)):
                    if v is not None and v > revenue_multiple * base + tol:
                        raise ValueError(
                            f"{name}: expected at most {revenue_multiple:g} x the quoted basket "
                            f"({base!r}) for decision {decision_id}, got {v!r} "
                            "(limits.max_revenue_multiple)")
        if coupon_redeemed:
            if rec is not None:
                if not self.is_coupon[rec.offer]:
                    raise ValueError(f"coupon_redeemed: decision {decision_id} offered no coupon")
                if rec.coupon_cost is not None:
                    raise ConflictError(f"coupon_redeemed: the coupon of decision {decision_id} "
                                        "was already redeemed")
                face = rec.max_cost
            else:
                hold = self.coupon_holds.get(decision_id)
                if hold is None:
                    raise ConflictError(f"coupon_redeemed: decision {decision_id} has no coupon "
                                        "left to redeem (none given, already redeemed, or "
                                        "expired)")
                face = hold[1]
            if discount is not None and discount > face + tol:
                raise ValueError(f"discount: expected at most the coupon's face value {face!r} "
                                 f"for decision {decision_id}, got {discount!r}")

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


class ConflictError(ValueError):
    """A request that conflicts with what was already recorded (an HTTP 409): an event id
    reused with another outcome, a coupon redeemed twice, an idempotency key reused with
    another body, a decision with its maximum number of events."""


# Outcome digests live beside the event ids in a decision's event set, as entries
# "\0<event id>\0<digest>" (event ids never hold NUL), so they are saved and restored
# with it and need no second structure.
def outcome_entry(event_id: str, digest: str) -> str:
    """The event-set entry that records the outcome digest of `event_id`."""
    return f"\0{event_id}\0{digest}"


def outcome_of(events: set[str], event_id: str) -> str | None:
    """The outcome digest recorded for `event_id` in an event set, or None."""
    prefix = f"\0{event_id}\0"
    for e in events:
        if e.startswith(prefix):
            return e[len(prefix):]
    return None


def n_events(events: set[str]) -> int:
    """Event ids in an event set (outcome entries not counted)."""
    return sum(1 for e in events if not e.startswith("\0"))


__all__ = ["ConflictError", "DiscountLedger", "n_events", "outcome_entry", "outcome_of"]
