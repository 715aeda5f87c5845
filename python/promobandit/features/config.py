"""The feature configuration: every knob, the feature names and the windows.

For a user at a time ``now`` (seconds) the features form a float64 vector of dimension
``FeatureConfig.dim`` in this order (event types are the codes of
:mod:`promobandit.events`):

=====================  =====================================================  ===========
name                   what                                                   scaling
=====================  =====================================================  ===========
days_since_event       days since the user's last event                       log1p(min(days, cap)) / log1p(cap), in [0, 1]; 1 without history
days_since_purchase    days since the user's last purchase                    same
events_{W}d            events in the trailing W days, per frequency window    log1p(count)
purchases_{W}d         purchases in the trailing W days, per frequency window log1p(count)
spend_{W}d             money spent in the trailing W days, per monetary       log1p(currency)
                       window (sum of ``price`` over purchases)
affinity_{c}           share of the user's weighted events (``event_weights``) a share in [0, 1];
                       in category c over the affinity window, c < C          all 0 without events
discount_share         share of the user's purchases (all time) made with a   in [0, 1]; 0 without
                       discount > 0                                           purchases
discount_depth         mean discount fraction of the user's purchases         in [0, 1]; 0 without
                       (all time; 0 for full-price ones)                      purchases
session_events         events in the current session                          log1p(count)
session_minutes        minutes since the current session started              log1p(minutes)
session_cart_open      1 if the current session has a cart event after its    0 or 1
                       last purchase (something waits in the cart)
bias                   the constant 1                                         1
=====================  =====================================================  ===========

A window of W days holds the events with ``t > now - W * 86400`` (and ``t <= now``).
Sessions split where two consecutive events of a user are more than
``session_gap_seconds`` apart; the *current* session is the one of the user's last event,
if that event is at most ``session_gap_seconds`` before now (else the session features
are 0); sessions are looked for among the events of the longest window. Events after
``now`` are ignored everywhere. A user with no events at or before ``now`` gets the
cold-start vector (:func:`~promobandit.features.batch.cold_start_vector`): recencies 1, everything else 0, bias 1.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..events import EVENT_NAMES, N_EVENT_TYPES, SECONDS_PER_DAY


def _windows(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name}: expected a list of window lengths in days, got {value!r}")
    out = tuple(check_range(f"{name}[{i}]", v, 0.0, lo_open=True) for i, v in enumerate(value))
    if not out:
        raise ValueError(f"{name}: expected at least one window")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"{name}: expected strictly increasing windows, got {list(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Every knob of the behaviour features (see the module for the feature list).

    n_categories: C, the number of categories (ids 0..C-1); an event of another
        category is rejected. Each gets an affinity feature.
    frequency_windows_days: trailing windows (days, increasing) for the event and
        purchase counts.
    monetary_windows_days: trailing windows (days, increasing) for the spend.
    affinity_window_days: trailing window (days) of the category affinity.
    recency_cap_days: recencies are capped at this many days (no history reads as the cap).
    session_gap_seconds: a gap longer than this between two events starts a new session.
    event_weights: weight of a (view, click, cart, purchase) in the category affinity,
        each >= 0, not all 0.
    money_unit: prices are rounded to this unit (currency) before summing, so sums are
        exact integers (0.01: cents).
    discount_unit: discount fractions are rounded to this unit before summing (1e-4: a
        basis point); a discount below half of it counts as no discount.
    max_events_per_user: the store keeps at most this many events per user; the batch
        path applies the same cap (see the module).
    reorder_tolerance_seconds: the store accepts an event up to this much older than the
        user's latest event (inserted in time order), and answers ``vector`` for times
        down to this much before it; older events raise LateEventError.
    """

    n_categories: int = 20
    frequency_windows_days: tuple[float, ...] = (7.0, 30.0)
    monetary_windows_days: tuple[float, ...] = (30.0, 90.0)
    affinity_window_days: float = 90.0
    recency_cap_days: float = 365.0
    session_gap_seconds: float = 1800.0
    event_weights: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    money_unit: float = 0.01
    discount_unit: float = 1e-4
    max_events_per_user: int = 1024
    reorder_tolerance_seconds: float = 300.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_int("n_categories", self.n_categories, 1)
        set_(self, "frequency_windows_days",
             _windows("frequency_windows_days", self.frequency_windows_days))
        set_(self, "monetary_windows_days",
             _windows("monetary_windows_days", self.monetary_windows_days))
        for name in ("affinity_window_days", "recency_cap_days", "session_gap_seconds",
                     "money_unit"):
            set_(self, name, check_range(name, getattr(self, name), 0.0, lo_open=True))
        set_(self, "discount_unit",
             check_range("discount_unit", self.discount_unit, 0.0, 1.0, lo_open=True))
        w = self.event_weights
        if isinstance(w, (str, bytes)) or not isinstance(w, (Sequence, np.ndarray)) or len(
                w) != N_EVENT_TYPES:
            raise ValueError(f"event_weights: expected {N_EVENT_TYPES} weights for "
                             f"{list(EVENT_NAMES)}, got {w!r}")
        weights = tuple(check_range(f"event_weights[{i}]", v, 0.0) for i, v in enumerate(w))
        if not any(weights):
            raise ValueError("event_weights: expected at least one weight > 0, got all 0")
        set_(self, "event_weights", weights)
        check_int("max_events_per_user", self.max_events_per_user, 1)
        set_(self, "reorder_tolerance_seconds",
             check_range("reorder_tolerance_seconds", self.reorder_tolerance_seconds, 0.0))

    # --- derived ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """d = 2 recencies + 2 per frequency window + 1 per monetary window + C + 2 + 3 + 1."""
        return (2 + 2 * len(self.frequency_windows_days) + len(self.monetary_windows_days)
                + self.n_categories + 2 + 3 + 1)

    @property
    def history_seconds(self) -> float:
        """The longest window, in seconds: older events are outside every window."""
        return max(*self.frequency_windows_days, *self.monetary_windows_days,
                   self.affinity_window_days) * SECONDS_PER_DAY

    def feature_names(self) -> list[str]:
        """Names of the d features, in vector order."""
        names = ["days_since_event", "days_since_purchase"]
        names += [f"events_{w:g}d" for w in self.frequency_windows_days]
        names += [f"purchases_{w:g}d" for w in self.frequency_windows_days]
        names += [f"spend_{w:g}d" for w in self.monetary_windows_days]
        names += [f"affinity_{c}" for c in range(self.n_categories)]
        names += ["discount_share", "discount_depth", "session_events", "session_minutes",
                  "session_cart_open", "bias"]
        return names


def feature_names(config: FeatureConfig | None = None) -> list[str]:
    """Names of the features of ``config`` (default FeatureConfig()), in vector order."""
    return (config or FeatureConfig()).feature_names()


def _config(config: FeatureConfig | None) -> FeatureConfig:
    if config is None:
        return FeatureConfig()
    if not isinstance(config, FeatureConfig):
        raise ValueError(f"config: expected a FeatureConfig, got {type(config).__name__}")
    return config


__all__ = ["FeatureConfig", "feature_names"]
