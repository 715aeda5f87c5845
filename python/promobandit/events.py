"""Behaviour event types shared by every layer that reads behaviour logs.

Ordered along the purchase funnel and stored as small integers (int8 in logs):
the feature store, the recommender's interaction log and the simulator all use
these codes, so the constants live here, below all of them.
"""

from __future__ import annotations

VIEW, CLICK, CART, PURCHASE = 0, 1, 2, 3
EVENT_NAMES: tuple[str, ...] = ("view", "click", "cart", "purchase")
N_EVENT_TYPES = len(EVENT_NAMES)
POSITIVE_EVENTS: tuple[int, ...] = (CLICK, CART, PURCHASE)

# The one definition of the clock's units: behaviour events, offers' validity, budget
# periods and the simulator's days all count seconds.
SECONDS_PER_HOUR = 3_600.0
SECONDS_PER_DAY = 86_400.0
