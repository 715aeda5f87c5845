"""Limits on discount decisions: per-user caps, the discount budget, fairness.

Each limit turns into one of two per-request levers that every policy accepts:
a mask (offers that may not be shown at all) and a bias (an additive change of
each offer's score, in the policy's reward units).

- ``UserCaps``: at most ``max_offers_per_day`` discounted offers per user per day
  and at most ``max_discount_per_period`` of discount cost per user per period.
  Violating offers are masked.
- ``BudgetPacer``: a discount budget per period (currency units). Spend never
  exceeds it: an offer is masked when its worst-case cost for this request would
  not fit into the budget left after realised spend and the worst-case cost
  reserved for decisions still awaiting feedback. Within the budget the policy
  maximises reward - lambda * expected discount cost; the shadow price lambda
  follows spend against the plan (a dual, primal-dual step as in bandits with
  knapsacks): spend above plan raises it, below plan lowers it.
- ``FairnessGuard`` (off unless configured): keeps the gap between user groups'
  average discount rate within ``max_gap`` with one multiplier per group: a group
  served more discount than the band around the mean of groups gets its discount
  offers' scores lowered, a group served less gets them raised.

All state is plain numbers and dicts, saved and loaded exactly (``state_dict``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Any

import numpy as np

from ._validation import check_int, check_range
from .events import SECONDS_PER_DAY

# ======================================================================================
# Per-user caps
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class UserCapsConfig:
    """max_offers_per_day: discounted offers a user may receive per calendar day (UTC
        day of the decision time); None for no cap.
    max_discount_per_period: discount cost a user may receive per period (currency);
        None for no cap. period_seconds: that period's length (default one week).
    max_users: users tracked at once; the least recently seen are forgotten first
        (their caps restart), which bounds memory.
    """

    max_offers_per_day: int | None = 3
    max_discount_per_period: float | None = None
    period_seconds: float = 7 * SECONDS_PER_DAY
    max_users: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_offers_per_day is not None:
            check_int("max_offers_per_day", self.max_offers_per_day, 0)
        if self.max_discount_per_period is not None:
            check_range("max_discount_per_period", self.max_discount_per_period, 0.0)
        check_range("period_seconds", self.period_seconds, 0.0, lo_open=True)
        check_int("max_users", self.max_users, 1)


class UserCaps:
    """Counts discounted offers per user and day and discount cost per user and period."""

    def __init__(self, config: UserCapsConfig | None = None) -> None:
        self.config = config or UserCapsConfig()
        # user -> [day index, offers that day, period index, discount cost that period]
        self._users: OrderedDict[str, list[float]] = OrderedDict()

    def _row(self, user: str, now: float) -> list[float]:
        # [day index, offers that day, period index, discount cost that period]; the
        # indices are whole numbers (floor), kept as floats in one list per user.
        day = float(math.floor(now / SECONDS_PER_DAY))
        period = float(math.floor(now / self.config.period_seconds))
        row = self._users.get(user)
        if row is None:
            return [day, 0.0, period, 0.0]
        if row[0] != day:
            row = [day, 0.0, row[2], row[3]]
        if row[2] != period:
            row = [row[0], row[1], period, 0.0]
        return row

    def mask(self, user: str, now: float, discounted: np.ndarray,
             max_costs: np.ndarray) -> np.ndarray:
        """(K,) bool: offers this user may still receive. `discounted` marks the
        offers that count as a discount; `max_costs` their worst-case cost."""
        c = self.config
        _, offers, _, spent = self._row(user, now)
        ok = np.ones(len(discounted), dtype=bool)
        if c.max_offers_per_day is not None and offers >= c.max_offers_per_day:
            ok &= ~discounted
        if c.max_discount_per_period is not None:
            # An offer that costs nothing always fits, even when spend has passed the cap
            # (several pending offers bought): a cap never locks a shopper out.
            ok &= ((spent + max_costs) <= c.max_discount_per_period + 1e-9) | (max_costs <= 0.0)
        return ok

    def record_offer(self, user: str, now: float, discounted: bool) -> None:
        row = self._row(user, now)
        if discounted:
            row[1] += 1
        self._store(user, row)

    def release_offer(self, user: str, when: float, discounted: bool) -> None:
        """Takes back an offer counted at time `when` that was never shown (a deferred
        decision whose activation did not come): the count of that day drops by one if it
        is still the user's current day (a later day's count never went up for it)."""
        row = self._users.get(user)
        if not discounted or row is None:
            return
        if row[0] == float(math.floor(when / SECONDS_PER_DAY)) and row[1] > 0:
            row[1] -= 1

    def record_cost(self, user: str, now: float, cost: float) -> None:
        row = self._row(user, now)
        row[3] += cost
        self._store(user, row)

    def _store(self, user: str, row: list[float]) -> None:
        self._users[user] = row
        self._users.move_to_end(user)
        while len(self._users) > self.config.max_users:
            self._users.popitem(last=False)

    def state_dict(self) -> dict[str, Any]:
        return {"users": [[u, *row] for u, row in self._users.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._users = OrderedDict((str(r[0]), [float(x) for x in r[1:]]) for r in state["users"])


# ======================================================================================
# Budget pacing
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """A discount budget and how spend is paced against it.

    amount: discount budget per period, in currency units (> 0).
    period_seconds: length of a budget period (default one day); periods start at
        `start` (unix seconds) and repeat; unspent budget does not carry over.
    plan: relative spend weights of equal slices of the period (e.g. 24 hourly
        weights); the planned cumulative spend is the budget times the cumulative
        weight share. Empty: spend evenly.
    step_size: eta of the multiplier update, per unit of relative pacing error.
    update_every: decisions between multiplier updates.
    ahead_band: share of the amount (0-1) by which committed spend (realised plus
        expected) may run ahead of the plan: beyond it, offers that can cost anything are
        masked until the plan catches up (1 turns the band off). The multiplier prices
        spend between its updates; the band bounds what a burst spends before the
        multiplier reacts (a cold start, where every offer ties and discounts are
        explored at random, would otherwise spend for `update_every` decisions at no
        price).
    lambda_init, lambda_max: the shadow price's start and cap (reward units per
        currency unit of expected discount cost, after reward scaling).
    """

    amount: float
    period_seconds: float = SECONDS_PER_DAY
    start: float = 0.0
    plan: tuple[float, ...] = ()
    step_size: float = 0.5
    update_every: int = 50
    ahead_band: float = 0.03
    lambda_init: float = 0.0
    lambda_max: float = 100.0

    def __post_init__(self) -> None:
        check_range("amount", self.amount, 0.0, lo_open=True)
        check_range("period_seconds", self.period_seconds, 0.0, lo_open=True)
        check_range("start", self.start)
        for i, w in enumerate(self.plan):
            check_range(f"plan[{i}]", w, 0.0)
        if self.plan and sum(self.plan) <= 0:
            raise ValueError("plan: expected weights with a positive sum")
        check_range("step_size", self.step_size, 0.0)
        check_int("update_every", self.update_every, 1)
        check_range("ahead_band", self.ahead_band, 0.0, 1.0)
        check_range("lambda_init", self.lambda_init, 0.0)
        check_range("lambda_max", self.lambda_max, self.lambda_init)


class BudgetPacer:
    """Masks offers that could overrun the budget and prices discount cost with lambda.

    Accounting, all in currency units within the current period:
      spent: realised discount cost;
      reserved: worst-case cost of decisions still awaiting feedback (released when
        they are finalised), so that no combination of late purchases can overrun;
      expected: expected cost of those pending decisions, used for pacing.
    """

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self.period = 0
        self.spent = 0.0
        self.reserved = 0.0
        self.expected = 0.0
        self.lam = config.lambda_init
        self._since_update = 0
        self._last_time: float | None = None
        self._last_committed = 0.0
        self.history: list[tuple[float, float, float, float]] = []  # (t, spent+expected, plan, lam)
        self._cum_plan = self._cumulative_plan()

    def _cumulative_plan(self) -> np.ndarray:
        w = np.asarray(self.config.plan if self.config.plan else (1.0,), dtype=float)
        return np.concatenate([[0.0], np.cumsum(w) / w.sum()])

    def planned(self, now: float) -> float:
        """Planned cumulative spend of the current period at time `now` (currency)."""
        c = self.config
        frac = ((now - c.start) / c.period_seconds) - self.period
        frac = min(max(frac, 0.0), 1.0)
        slices = len(self._cum_plan) - 1
        pos = frac * slices
        i = min(int(pos), slices - 1)
        share = self._cum_plan[i] + (pos - i) * (self._cum_plan[i + 1] - self._cum_plan[i])
        return c.amount * float(share)

    def _roll(self, now: float) -> None:
        period = math.floor((now - self.config.start) / self.config.period_seconds)
        if period > self.period:
            self.period = period
            self.spent = 0.0  # reserved and expected belong to decisions still pending
            self._last_committed = self.expected
            self._last_time = None

    @property
    def remaining(self) -> float:
        """Budget left after realised spend and worst-case reservations (currency)."""
        return self.config.amount - self.spent - self.reserved

    def mask(self, now: float, max_costs: np.ndarray) -> np.ndarray:
        """Offers whose worst-case cost fits in what is left (same shape as max_costs),
        and only offers that cost nothing while committed spend runs more than
        `ahead_band` of the amount ahead of the plan. An offer that costs nothing always
        fits, even when an unreserved cost (see book) has taken spend past the budget."""
        self._roll(now)
        c = self.config
        if self.spent + self.expected > self.planned(now) + c.ahead_band * c.amount:
            return max_costs <= 0.0  # ahead of the plan: only what costs nothing
        return (max_costs <= self.remaining + 1e-9) | (max_costs <= 0.0)

    def bias(self, expected_costs: np.ndarray, reward_scale: float) -> np.ndarray:
        """(K,) score adjustment: -lambda * expected cost, in scaled reward units."""
        return expected_costs * (-self.lam / reward_scale)

    def commit(self, now: float, max_cost: float, expected_cost: float) -> None:
        """A decision was made: reserve its worst case, count its expected cost."""
        self._roll(now)
        self.reserved += max_cost
        self.expected += expected_cost
        self._since_update += 1
        if self._since_update >= self.config.update_every:
            self._update(now)

    def settle(self, now: float, max_cost: float, expected_cost: float, actual: float) -> None:
        """A decision was finalised: release its reservation, book its actual cost."""
        self._roll(now)
        self.reserved = max(self.reserved - max_cost, 0.0)
        self.expected = max(self.expected - expected_cost, 0.0)
        self.spent += actual

    def book(self, now: float, cost: float) -> None:
        """A cost that arrives outside a decision's life (e.g. a late coupon redemption)."""
        self._roll(now)
        self.spent += cost

    def _update(self, now: float) -> None:
        """Dual step: lambda += eta * (committed - planned) / planned over the interval."""
        self._since_update = 0
        committed = self.spent + self.expected
        planned = self.planned(now)
        if self._last_time is not None:
            d_committed = committed - self._last_committed
            d_planned = planned - self.planned(self._last_time)
            if d_planned > 0:
                err = (d_committed - d_planned) / d_planned
                self.lam = min(max(self.lam + self.config.step_size * err, 0.0),
                               self.config.lambda_max)
        self._last_time = now
        self._last_committed = committed
        self.history.append((now, committed, planned, self.lam))

    def report(self, now: float) -> dict[str, float]:
        self._roll(now)
        return {"budget": self.config.amount, "spent": self.spent, "reserved": self.reserved,
                "expected_pending": self.expected, "planned": self.planned(now),
                "lambda": self.lam, "period": float(self.period)}

    def state_dict(self) -> dict[str, Any]:
        return {"period": self.period, "spent": self.spent, "reserved": self.reserved,
                "expected": self.expected, "lam": self.lam, "since_update": self._since_update,
                "last_time": self._last_time, "last_committed": self._last_committed}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.period = int(s["period"])
        self.spent, self.reserved, self.expected = (float(s["spent"]), float(s["reserved"]),
                                                    float(s["expected"]))
        self.lam = float(s["lam"])
        self._since_update = int(s["since_update"])
        self._last_time = None if s["last_time"] is None else float(s["last_time"])
        self._last_committed = float(s["last_committed"])


# ======================================================================================
# Fairness
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class FairnessConfig:
    """A bound on the gap in discount between user groups (e.g. new vs returning).

    max_gap: the largest allowed difference between any two groups' average rate
        (a fraction in [0, 1]).
    metric: "discount_rate" (average discount depth offered, as a fraction of the
        list price) or "offer_rate" (share of decisions with any discount).
    halflife: decisions of a group after which an old decision weighs half in the
        group's running rate (the rate the bound is enforced on).
    step_size: multiplier change per decision per unit of excess over the band.
    multiplier_max: cap on each group's multiplier (scaled reward units).
    relax: fraction by which a multiplier shrinks on each decision of a group that
        is inside the band, so constraints that stop binding let go.
    """

    max_gap: float = 0.05
    metric: str = "discount_rate"
    halflife: float = 500.0
    step_size: float = 0.05
    multiplier_max: float = 10.0
    relax: float = 0.001

    def __post_init__(self) -> None:
        check_range("max_gap", self.max_gap, 0.0, 1.0)
        if self.metric not in ("discount_rate", "offer_rate"):
            raise ValueError(f"metric: expected 'discount_rate' or 'offer_rate', got {self.metric!r}")
        check_range("halflife", self.halflife, 0.0, lo_open=True)
        check_range("step_size", self.step_size, 0.0)
        check_range("multiplier_max", self.multiplier_max, 0.0)
        check_range("relax", self.relax, 0.0, 1.0)


class FairnessGuard:
    """One multiplier per group steering its discount rate into a band of width
    max_gap around the mean rate of the groups."""

    def __init__(self, config: FairnessConfig) -> None:
        self.config = config
        self._keep = 0.5 ** (1.0 / config.halflife)
        # group -> [weighted sum of rates, weight, multiplier, decisions, cumulative sum]
        self.groups: dict[str, list[float]] = {}

    def value(self, depths: np.ndarray) -> np.ndarray:
        """The metric of each offer: its discount depth, or 1 for any discount."""
        if self.config.metric == "offer_rate":
            return (depths > 0).astype(float)
        return depths

    def rates(self) -> dict[str, float]:
        """Running (exponentially weighted) rate of each group."""
        return {g: (r[0] / r[1] if r[1] > 0 else 0.0) for g, r in self.groups.items()}

    def cumulative_rates(self) -> dict[str, float]:
        return {g: (r[4] / r[3] if r[3] > 0 else 0.0) for g, r in self.groups.items()}

    def gap(self, cumulative: bool = False) -> float:
        """Largest difference between two groups' rates (0 with fewer than two groups)."""
        r = list((self.cumulative_rates() if cumulative else self.rates()).values())
        return max(r) - min(r) if len(r) > 1 else 0.0

    def bias(self, group: str, depths: np.ndarray) -> np.ndarray:
        """Score adjustment for requests of `group`, shaped like `depths` ((K,) or
        (n, K) offer depths): -multiplier * metric."""
        row = self.groups.get(group)
        if row is None or row[2] == 0.0:
            return np.zeros_like(depths, dtype=float)
        return self.value(depths) * (-row[2])

    def record(self, group: str, metric_value: float) -> None:
        """A decision for `group` gave this metric value (depth or 0/1); step the multiplier."""
        c = self.config
        row = self.groups.setdefault(group, [0.0, 0.0, 0.0, 0.0, 0.0])
        row[0] = row[0] * self._keep + metric_value
        row[1] = row[1] * self._keep + 1.0
        row[3] += 1.0
        row[4] += metric_value
        if len(self.groups) < 2:
            return
        rates = self.rates()
        center = sum(rates.values()) / len(rates)
        dev = rates[group] - center
        half = c.max_gap / 2.0
        excess = dev - min(max(dev, -half), half)  # 0 inside the band
        if excess != 0.0:
            row[2] = min(max(row[2] + c.step_size * excess / max(c.max_gap, 1e-6),
                             -c.multiplier_max), c.multiplier_max)
        else:
            row[2] *= 1.0 - c.relax

    def report(self) -> dict[str, Any]:
        return {"gap": self.gap(), "gap_cumulative": self.gap(cumulative=True),
                "rates": self.rates(), "cumulative_rates": self.cumulative_rates(),
                "multipliers": {g: r[2] for g, r in self.groups.items()},
                "max_gap": self.config.max_gap, "metric": self.config.metric}

    def state_dict(self) -> dict[str, Any]:
        return {"groups": {g: list(r) for g, r in self.groups.items()}}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.groups = {str(g): [float(x) for x in r] for g, r in s["groups"].items()}
