"""What the engine maximises: a weighted combination of outcomes, optionally under a
conversion floor.

``Objective(weights={...})`` scores a finalised decision as

    value = w_profit x profit + w_revenue x revenue + w_conversion x purchased
            + w_retention x returned

profit (paid - cost of goods) and revenue (paid) are in the catalogue's currency and their
weights are plain numbers; ``conversion`` (1 for a purchase) and ``retention`` (1 when the
shopper returns within ``retention_window_seconds`` of the decision) are events, and their
weights are the currency an event is worth to the shop (e.g. retention=5.0: a returning
shopper is worth 5 EUR of profit now). The policy learns value / ``reward_scale``.

Retention is a delayed outcome joined like other feedback: a decision whose objective
weighs retention is finalised as usual (purchase or wait: the budget is settled then),
but the policy learns from it only when the shopper returns
(``Engine.feedback(decision_id, event_id, returned=True)``) or the window ends without a
return (``Engine.expire``).

The constraint form, ``conversion_floor=f``, maximises the weighted objective subject to
a conversion rate >= f, through a multiplier mu paced like the budget's shadow price:
every offer's score gets +mu x its purchase rate (reward units), and every
``floor_update_every`` finalised decisions mu += floor_step_size x (f - rate) / f, clipped
to [0, multiplier_max], where rate is the conversion rate of the finalised decisions,
exponentially weighted with a half-life of ``floor_halflife`` decisions.

Bad input raises ValueError naming the key: unknown terms, negative or all-zero weights,
a retention weight without a window, a window without a retention weight.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .._validation import check_int, check_range

TERMS = ("profit", "revenue", "conversion", "retention")
LEGACY = ("profit", "revenue", "conversion")  # EngineConfig(objective=<one of these>)


@dataclasses.dataclass(frozen=True)
class Objective:
    """A weighted objective (see the module doc; money in the catalogue's currency).

    weights: term -> weight >= 0, terms among TERMS, at least one weight > 0.
        profit, revenue: per currency unit; conversion: currency per purchase;
        retention: currency per shopper who returns within the window.
    retention_window_seconds: the window of the return (required with a retention
        weight, refused without one).
    conversion_floor: a conversion rate in (0, 1) to hold (None: no floor).
    floor_step_size: eta of the multiplier, per unit of relative shortfall.
    floor_update_every: finalised decisions between multiplier steps.
    floor_halflife: half-life, in finalised decisions, of the conversion rate the
        multiplier follows.
    multiplier_max: the multiplier's cap, in reward units per conversion.
    """

    weights: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"profit": 1.0})
    retention_window_seconds: float | None = None
    conversion_floor: float | None = None
    floor_step_size: float = 0.5
    floor_update_every: int = 50
    floor_halflife: float = 500.0
    multiplier_max: float = 10.0

    def __post_init__(self) -> None:
        w = self.weights
        if not isinstance(w, Mapping):
            raise ValueError(f"objective.weights: expected a mapping of {TERMS} to weights, got "
                             f"{type(w).__name__}")
        clean: dict[str, float] = {}
        for key, value in w.items():
            if key not in TERMS:
                raise ValueError(f"objective.weights[{key!r}]: unknown objective; expected one of "
                                 f"{TERMS}")
            clean[key] = check_range(f"objective.weights[{key!r}]", value, 0.0)
        if not any(v > 0.0 for v in clean.values()):
            raise ValueError(f"objective.weights: expected at least one positive weight, got "
                             f"{clean}")
        object.__setattr__(self, "weights", dict(clean))
        ret = clean.get("retention", 0.0)
        win = self.retention_window_seconds
        if ret > 0.0 and win is None:
            raise ValueError("objective.retention_window_seconds: required with a retention "
                             "weight (how long to wait for the shopper's return, seconds)")
        if win is not None:
            check_range("objective.retention_window_seconds", win, 0.0, lo_open=True)
            if ret <= 0.0:
                raise ValueError("objective.retention_window_seconds: given without a retention "
                                 "outcome (set weights['retention'] > 0, or drop the window)")
        if self.conversion_floor is not None:
            check_range("objective.conversion_floor", self.conversion_floor, 0.0, 1.0,
                        lo_open=True, hi_open=True)
        check_range("objective.floor_step_size", self.floor_step_size, 0.0)
        check_int("objective.floor_update_every", self.floor_update_every, 1)
        check_range("objective.floor_halflife", self.floor_halflife, 0.0, lo_open=True)
        check_range("objective.multiplier_max", self.multiplier_max, 0.0)

    @classmethod
    def from_any(cls, spec: Any) -> Objective:
        """An Objective from an Objective, a legacy name or a mapping (either the weights,
        or the fields with a "weights" key)."""
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, str):
            if spec not in TERMS:
                raise ValueError(f"objective: expected one of {TERMS} or a weighted "
                                 f"combination, got {spec!r}")
            if spec == "retention":
                raise ValueError("objective.retention_window_seconds: retention alone needs "
                                 "a window: Objective(weights={'retention': 1.0}, "
                                 "retention_window_seconds=...)")
            return cls(weights={spec: 1.0})
        if isinstance(spec, Mapping):
            if "weights" in spec:
                fields = {f.name for f in dataclasses.fields(cls)}
                unknown = sorted(set(spec) - fields)
                if unknown:
                    raise ValueError(f"objective.{unknown[0]}: unknown key; expected some of "
                                     f"{sorted(fields)}")
                return cls(**dict(spec))
            return cls(weights=dict(spec))
        raise ValueError(f"objective: expected a name, a mapping of weights or an Objective, "
                         f"got {type(spec).__name__}")

    @property
    def retention(self) -> bool:
        """True when the policy waits for the return outcome."""
        return self.weights.get("retention", 0.0) > 0.0

    @property
    def name(self) -> str:
        """A short label: the terms with their weights."""
        return " + ".join(f"{w:g} {k}" for k, w in self.weights.items() if w > 0.0)

    def value(self, purchased: bool, revenue: float, cost_of_goods: float,
              returned: bool = False) -> float:
        """The objective of one outcome (currency)."""
        w = self.weights
        v = 0.0
        if purchased:
            v += w.get("profit", 0.0) * (revenue - cost_of_goods)
            v += w.get("revenue", 0.0) * revenue
            v += w.get("conversion", 0.0)
        if returned:
            v += w.get("retention", 0.0)
        return v

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "weights": dict(self.weights)}


class ConversionFloor:
    """The multiplier that holds the conversion rate at or above a floor (see the module)."""

    def __init__(self, objective: Objective) -> None:
        assert objective.conversion_floor is not None
        self.objective = objective
        self._keep = 0.5 ** (1.0 / objective.floor_halflife)
        self.multiplier = 0.0
        self.rate_sum = 0.0
        self.rate_weight = 0.0
        self.since = 0

    @property
    def rate(self) -> float:
        """The weighted conversion rate of finalised decisions (the floor while none)."""
        f = self.objective.conversion_floor
        return self.rate_sum / self.rate_weight if self.rate_weight > 0 else float(f or 0.0)

    def observe(self, purchased: bool) -> None:
        o = self.objective
        self.rate_sum = self.rate_sum * self._keep + (1.0 if purchased else 0.0)
        self.rate_weight = self.rate_weight * self._keep + 1.0
        self.since += 1
        if self.since >= o.floor_update_every:
            self.since = 0
            f = float(o.conversion_floor or 0.0)
            step = o.floor_step_size * (f - self.rate) / f
            self.multiplier = min(max(self.multiplier + step, 0.0), o.multiplier_max)

    def state_dict(self) -> dict[str, float]:
        return {"multiplier": self.multiplier, "rate_sum": self.rate_sum,
                "rate_weight": self.rate_weight, "since": self.since}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        vals = {k: float(s[k]) for k in ("multiplier", "rate_sum", "rate_weight", "since")}
        if not all(math.isfinite(v) for v in vals.values()):
            raise ValueError("objective_state: non-finite values")
        self.multiplier, self.rate_sum, self.rate_weight = (
            vals["multiplier"], vals["rate_sum"], vals["rate_weight"])
        self.since = int(vals["since"])
