"""Tests of the behaviour features: batch and incremental paths agree bitwise, both agree
with a slow per-user reference, edge semantics (windows, sessions, caps, late events) and
bad input that leaves the store unchanged."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promobandit.features import (
    Event,
    FeatureConfig,
    FeatureStore,
    LateEventError,
    cold_start_vector,
    columns_from_log,
    feature_names,
    features_batch,
)
from promobandit.recommender.data import (
    CART,
    CLICK,
    PURCHASE,
    VIEW,
    InteractionLog,
    SyntheticConfig,
    synthetic_log,
)

DAY = 86400.0


def approx(x: float):
    """NumPy's vectorised log1p may differ from math.log1p in the last bit."""
    return pytest.approx(x, rel=1e-14)
T0 = 1_700_000_000.0  # a realistic epoch: float rounding at this magnitude is exercised

SMALL = FeatureConfig(n_categories=5, frequency_windows_days=(1.0, 7.0),
                      monetary_windows_days=(3.0, 10.0), affinity_window_days=5.0,
                      recency_cap_days=30.0, session_gap_seconds=600.0,
                      event_weights=(1.0, 2.0, 3.0, 5.0), max_events_per_user=12,
                      reorder_tolerance_seconds=120.0)


# --- a seeded stream of sessions -----------------------------------------------------------

def make_stream(seed: int, n_users: int, n_categories: int, days: float, *,
                string_ids: bool = False, jitter: float = 60.0) -> list[Event]:
    """Events in arrival order: sessions of a funnel walk per user, with purchases at
    random discounts, full-price purchases, carts left open, and arrival jitter (events
    arrive up to ``jitter`` seconds out of time order)."""
    rs = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        uid: object = f"user-{u}" if string_ids else u
        n_sessions = int(rs.integers(1, 12))
        starts = np.sort(rs.uniform(0, days * DAY, n_sessions))
        for s0 in starts:
            t = T0 + s0
            fav = int(rs.integers(0, n_categories))
            for _ in range(int(rs.integers(1, 9))):
                cat = fav if rs.random() < 0.7 else int(rs.integers(0, n_categories))
                price = round(float(rs.uniform(1, 120)), 2)
                etype = VIEW
                for nxt in (CLICK, CART, PURCHASE):
                    rows.append((uid, etype, cat, price, 0.0, t))
                    t += float(rs.exponential(40.0))
                    if rs.random() > 0.5:
                        break
                    etype = nxt
                else:
                    disc = float(rs.choice([0.0, 0.0, 0.05, 0.1, 0.25, 0.123456]))
                    rows.append((uid, PURCHASE, cat, round(price * (1 - disc), 2), disc, t))
                if rs.random() < 0.05:  # an exact timestamp tie within the user
                    rows.append((uid, CLICK, cat, price, 0.0, t))
    rows.sort(key=lambda r: r[5])
    # arrival order: time order disturbed by up to `jitter` seconds
    arrival = np.argsort(np.array([r[5] for r in rows]) + rs.uniform(0, jitter, len(rows)),
                         kind="stable")
    return [Event(*rows[i]) for i in arrival]


def as_columns(events: list[Event]) -> dict[str, np.ndarray]:
    user = np.empty(len(events), dtype=object)
    user[:] = [e.user for e in events]
    if all(isinstance(u, int) for u in user):
        user = user.astype(np.int64)
    return {
        "user": user,
        "event": np.array([e.event for e in events], dtype=np.int64),
        "category": np.array([e.category for e in events], dtype=np.int64),
        "price": np.array([e.price for e in events], dtype=np.float64),
        "discount": np.array([e.discount for e in events], dtype=np.float64),
        "timestamp": np.array([e.timestamp for e in events], dtype=np.float64),
    }


def replay_and_compare(events: list[Event], cfg: FeatureConfig, checkpoints: int) -> dict:
    """Adds events one by one; at checkpoints compares store and batch at several nows."""
    store = FeatureStore(cfg)
    users = [*sorted({e.user for e in events}, key=str), "never-seen", 10**9]
    stops = set(np.linspace(len(events) // checkpoints, len(events), checkpoints, dtype=int))
    seen = {"compared": 0, "out_of_order": 0, "capped": 0, "folded": 0}
    latest = -math.inf
    added: dict[object, int] = {}
    for i, e in enumerate(events, start=1):
        seen["out_of_order"] += e.timestamp < latest
        latest = max(latest, e.timestamp)
        store.add(e)
        added[e.user] = added.get(e.user, 0) + 1
        if i not in stops:
            continue
        prefix = as_columns(events[:i])
        for now in (latest, latest + 1.0, latest + 0.4 * DAY, latest + 3 * DAY):
            batch = features_batch(prefix, users, now, cfg)
            inc = store.vectors(users, now)
            assert np.array_equal(batch, inc), (
                f"mismatch after {i} events at now={now}: features "
                f"{[cfg.feature_names()[j] for j in np.unique(np.argwhere(batch != inc)[:, 1])]}")
            seen["compared"] += len(users)
    for u, n in added.items():
        seen["capped"] += store.n_events(u) == cfg.max_events_per_user
        seen["folded"] += store.n_events(u) < n
    return seen


@pytest.mark.parametrize("string_ids", [False, True])
def test_batch_and_store_agree_bitwise_default_config(string_ids: bool) -> None:
    cfg = FeatureConfig(n_categories=6)
    events = make_stream(1, n_users=15, n_categories=6, days=120, string_ids=string_ids)
    seen = replay_and_compare(events, cfg, checkpoints=5)
    assert seen["out_of_order"] > 50  # the stream really arrives out of order
    assert seen["folded"] > 0  # 120 days of history fold beyond the 90-day windows


def test_batch_and_store_agree_bitwise_with_the_cap_and_short_windows() -> None:
    events = make_stream(2, n_users=12, n_categories=5, days=20)
    seen = replay_and_compare(events, SMALL, checkpoints=8)
    assert seen["capped"] > 3 and seen["folded"] > 3  # the cap binds for several users


def test_store_agrees_within_the_reorder_tolerance_before_the_latest_event() -> None:
    cfg = dataclasses.replace(SMALL, max_events_per_user=10_000)  # the cap never binds
    events = make_stream(3, n_users=8, n_categories=5, days=15)
    store = FeatureStore(cfg)
    for e in events:
        store.add(e)
    cols = as_columns(events)
    latest = float(cols["timestamp"].max())
    users = sorted({e.user for e in events})
    for back in (0.0, 1.0, 60.0, cfg.reorder_tolerance_seconds):
        now = latest - back
        ok = [u for u in users if now >= _user_max(events, u) - cfg.reorder_tolerance_seconds]
        assert np.array_equal(features_batch(cols, ok, now, cfg), store.vectors(ok, now))


TINY = FeatureConfig(n_categories=3, frequency_windows_days=(0.01, 0.02),
                     monetary_windows_days=(0.015,), affinity_window_days=0.01,
                     recency_cap_days=0.05, session_gap_seconds=300.0,
                     max_events_per_user=4, reorder_tolerance_seconds=200.0)


@st.composite
def streams(draw) -> list[Event]:
    """Arrival-ordered events of 3 users: gaps of 0 (ties) to 2000 s, jitter within the
    reorder tolerance, every type, category and a few discount depths."""
    n = draw(st.integers(1, 60))
    base = T0
    out = []
    for _ in range(n):
        # 1800 s: just beyond the longest window (1728 s), inside it plus the tolerance
        base += draw(st.sampled_from([0.0, 1.0, 30.0, 299.0, 300.0, 301.0, 900.0, 1800.0,
                                      2000.0]))
        jitter = draw(st.sampled_from([0.0, 0.0, 0.5, 150.0, 200.0]))
        out.append(Event(draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 2)),
                         draw(st.integers(0, 10_000)) / 100,
                         draw(st.sampled_from([0.0, 0.1, 0.25, 1.0])), base - jitter))
    return out


@settings(max_examples=200, deadline=None)
@given(events=streams(),
       later=st.sampled_from([-200.0, -150.0, -0.5, 0.0, 0.5, 299.0, 300.0, 301.0, 900.0, 5000.0]))
def test_batch_and_store_agree_bitwise_on_random_streams(events: list[Event], later: float) -> None:
    # Before the latest event (within the tolerance) exactness holds while the cap does
    # not bind (see FeatureStore); from the latest event on, always.
    cfg = TINY if later >= 0 else dataclasses.replace(TINY, max_events_per_user=1000)
    store = FeatureStore(cfg)
    for e in events:
        store.add(e)
    now = max(e.timestamp for e in events) + later
    users = [0, 1, 2, 3]
    assert np.array_equal(features_batch(as_columns(events), users, now, cfg),
                          store.vectors(users, now))


def test_store_keeps_what_a_time_within_the_tolerance_needs() -> None:
    # The longest window is 1728 s and the tolerance 200 s: at now = latest - 150 the
    # event 1800 s before the latest is inside the window, so the store must not have
    # folded it away when the latest event arrived.
    cfg = dataclasses.replace(TINY, max_events_per_user=1000)
    events = [ev(1, VIEW, T0), ev(1, VIEW, T0 + 1800)]
    store = FeatureStore(cfg)
    for e in events:
        store.add(e)
    now = T0 + 1800 - 150
    row = features_batch(as_columns(events), [1], now, cfg)[0]
    assert row[col_of(cfg, "events_0.02d")] == approx(math.log1p(1))
    assert np.array_equal(store.vector(1, now), row)


def _user_max(events: list[Event], user: object) -> float:
    return max(e.timestamp for e in events if e.user == user)


# --- a slow per-user reference -------------------------------------------------------------

def reference(events: list[Event], user: object, now: float, cfg: FeatureConfig) -> dict:
    """A handful of features by plain Python loops over one user's events."""
    mine = sorted((e for e in events if e.user == user and e.timestamp <= now),
                  key=lambda e: e.timestamp)  # stable: ties keep arrival order
    hist = mine[-cfg.max_events_per_user:]
    out: dict[str, float] = {}
    w7 = cfg.frequency_windows_days[-1] * DAY
    out["events_w"] = math.log1p(sum(1 for e in hist if e.timestamp > now - w7))
    out["purchases_w"] = math.log1p(sum(1 for e in hist if e.timestamp > now - w7
                                        and e.event == PURCHASE))
    wm = cfg.monetary_windows_days[0] * DAY
    cents = sum(round(e.price / cfg.money_unit) for e in hist
                if e.timestamp > now - wm and e.event == PURCHASE)
    out["spend_w"] = math.log1p(cents * cfg.money_unit)
    buys = [e for e in mine if e.event == PURCHASE]
    if buys:
        days = (now - buys[-1].timestamp) / DAY
        out["days_since_purchase"] = (math.log1p(min(days, cfg.recency_cap_days))
                                      / math.log1p(cfg.recency_cap_days))
        units = [round(e.discount / cfg.discount_unit) for e in buys]
        out["discount_share"] = sum(1 for x in units if x > 0) / len(buys)
        out["discount_depth"] = sum(units) * cfg.discount_unit / len(buys)
    else:
        out["days_since_purchase"] = 1.0
        out["discount_share"] = out["discount_depth"] = 0.0
    wa = cfg.affinity_window_days * DAY
    weights = [0.0] * cfg.n_categories
    for e in hist:
        if e.timestamp > now - wa:
            weights[e.category] += cfg.event_weights[e.event]
    total = sum(weights)
    for c in range(cfg.n_categories):
        out[f"affinity_{c}"] = weights[c] / total if total else 0.0
    recent = [e for e in hist if e.timestamp > now - cfg.history_seconds]
    session: list[Event] = []
    for e in recent:
        if session and e.timestamp - session[-1].timestamp > cfg.session_gap_seconds:
            session = []
        session.append(e)
    alive = bool(session) and now - session[-1].timestamp <= cfg.session_gap_seconds
    out["session_events"] = math.log1p(len(session)) if alive else 0.0
    out["session_minutes"] = math.log1p((now - session[0].timestamp) / 60) if alive else 0.0
    last_cart = max((e.timestamp for e in session if e.event == CART), default=-math.inf)
    last_buy = max((e.timestamp for e in session if e.event == PURCHASE), default=-math.inf)
    out["session_cart_open"] = float(alive and last_cart > last_buy)
    return out


@pytest.mark.parametrize("cfg", [FeatureConfig(n_categories=5), SMALL], ids=["default", "small"])
def test_both_paths_agree_with_a_slow_reference(cfg: FeatureConfig) -> None:
    events = make_stream(4, n_users=10, n_categories=5, days=25)
    cols = as_columns(events)
    names = cfg.feature_names()
    col = {
        "events_w": names.index(f"events_{cfg.frequency_windows_days[-1]:g}d"),
        "purchases_w": names.index(f"purchases_{cfg.frequency_windows_days[-1]:g}d"),
        "spend_w": names.index(f"spend_{cfg.monetary_windows_days[0]:g}d"),
    }
    col.update({k: names.index(k) for k in ("days_since_purchase", "discount_share",
                                            "discount_depth", "session_events",
                                            "session_minutes", "session_cart_open")})
    col.update({f"affinity_{c}": names.index(f"affinity_{c}") for c in range(cfg.n_categories)})
    store = FeatureStore(cfg)
    store.add_events(cols)
    users = sorted({e.user for e in events})
    latest = float(cols["timestamp"].max())
    hits = {"alive": 0, "cart_open": 0, "discounted": 0}
    for now in (latest, latest + 200.0, latest + 2 * DAY):
        batch = features_batch(cols, users, now, cfg)
        assert np.array_equal(batch, store.vectors(users, now))
        for r, u in enumerate(users):
            ref = reference(events, u, now, cfg)
            for key, j in col.items():
                assert batch[r, j] == pytest.approx(ref[key], rel=1e-12, abs=1e-15), (key, u, now)
            hits["alive"] += ref["session_events"] > 0
            hits["cart_open"] += ref["session_cart_open"] > 0
            hits["discounted"] += 0 < ref["discount_share"] < 1
    assert all(v > 0 for v in hits.values()), hits  # the data exercises every branch


# --- semantics at the edges --------------------------------------------------------------

def ev(user: object, etype: int, t: float, *, cat: int = 0, price: float = 10.0,
       disc: float = 0.0) -> Event:
    return Event(user, etype, cat, price, disc, t)


def col_of(cfg: FeatureConfig, name: str) -> int:
    return cfg.feature_names().index(name)


def test_window_edge_is_exclusive_and_now_is_inclusive() -> None:
    cfg = FeatureConfig(n_categories=2)
    store = FeatureStore(cfg)
    store.add(ev(1, VIEW, T0))
    j = col_of(cfg, "events_7d")
    assert store.vector(1, T0)[j] == approx(math.log1p(1))  # an event at now counts
    assert store.vector(1, T0 + 7 * DAY - 1e-3)[j] == approx(math.log1p(1))
    assert store.vector(1, T0 + 7 * DAY)[j] == 0.0  # exactly 7 days old: out
    # events after now are ignored by the batch path
    cols = as_columns([ev(1, VIEW, T0), ev(1, PURCHASE, T0 + 100)])
    row = features_batch(cols, [1], T0 + 50, cfg)[0]
    assert row[col_of(cfg, "purchases_7d")] == 0.0


def test_sessions_split_on_the_gap_and_end_after_it() -> None:
    cfg = FeatureConfig(n_categories=2, session_gap_seconds=100.0)
    store = FeatureStore(cfg)
    for t, e in ((0, VIEW), (50, CART), (150, VIEW), (260, VIEW), (300, CART)):
        store.add(ev("a", e, T0 + t))
    # gap 150 -> 260 is 110 > 100: the current session is {260, 300}
    v = store.vector("a", T0 + 300)
    assert v[col_of(cfg, "session_events")] == approx(math.log1p(2))
    assert v[col_of(cfg, "session_minutes")] == approx(math.log1p(40 / 60))
    assert v[col_of(cfg, "session_cart_open")] == 1.0
    assert store.vector("a", T0 + 400)[col_of(cfg, "session_events")] == approx(math.log1p(2))  # = gap
    assert store.vector("a", T0 + 400.5)[col_of(cfg, "session_events")] == 0.0  # ended
    store.add(ev("a", PURCHASE, T0 + 310))
    assert store.vector("a", T0 + 310)[col_of(cfg, "session_cart_open")] == 0.0  # checked out
    # a gap of exactly session_gap_seconds continues the session
    store.add(ev("b", VIEW, T0))
    store.add(ev("b", VIEW, T0 + 100))
    assert store.vector("b", T0 + 100)[col_of(cfg, "session_events")] == approx(math.log1p(2))
    # a cart and a purchase at the same second: nothing waits in the cart
    store.add(ev("c", CART, T0))
    store.add(ev("c", PURCHASE, T0))
    assert store.vector("c", T0)[col_of(cfg, "session_cart_open")] == 0.0


def test_recency_and_cold_start() -> None:
    cfg = FeatureConfig(n_categories=3, recency_cap_days=10.0)
    cold = cold_start_vector(cfg)
    names = cfg.feature_names()
    assert cold.shape == (cfg.dim,) and cold[names.index("bias")] == 1.0
    assert cold[0] == cold[1] == 1.0 and np.count_nonzero(cold) == 3
    store = FeatureStore(cfg)
    assert np.array_equal(store.vector("nobody", T0), cold)
    store.add(ev("x", VIEW, T0))
    assert store.vector("x", T0 + 5 * DAY)[0] == approx(math.log1p(5) / math.log1p(10))
    assert store.vector("x", T0 + 50 * DAY)[0] == 1.0  # capped
    assert store.vector("x", T0 + 5 * DAY)[1] == 1.0  # never purchased
    # the batch path gives the cold vector to unknown users and users with only later events
    cols = as_columns([ev("x", VIEW, T0)])
    rows = features_batch(cols, ["nobody", "x"], T0 - 1, cfg)
    assert np.array_equal(rows[0], cold) and np.array_equal(rows[1], cold)


def test_discount_features() -> None:
    cfg = FeatureConfig(n_categories=2)
    store = FeatureStore(cfg)
    store.add(ev(7, PURCHASE, T0, disc=0.2))
    store.add(ev(7, PURCHASE, T0 + 1, disc=0.0))
    store.add(ev(7, PURCHASE, T0 + 2, disc=0.1))
    store.add(ev(7, PURCHASE, T0 + 3, disc=0.00004))  # below half a basis point: full price
    v = store.vector(7, T0 + 3)
    assert v[col_of(cfg, "discount_share")] == 0.5
    assert v[col_of(cfg, "discount_depth")] == pytest.approx(0.3 / 4)


def test_late_events_are_rejected_and_vector_does_not_answer_the_past() -> None:
    cfg = FeatureConfig(n_categories=2, reorder_tolerance_seconds=60.0)
    store = FeatureStore(cfg)
    store.add(ev(1, VIEW, T0 + 100))
    store.add(ev(1, VIEW, T0 + 40))  # exactly at the tolerance: accepted, in time order
    before = store.vector(1, T0 + 100)
    with pytest.raises(LateEventError, match=r"timestamp: .*beyond reorder_tolerance"):
        store.add(ev(1, VIEW, T0 + 39.9))
    assert np.array_equal(store.vector(1, T0 + 100), before) and store.n_events(1) == 2
    store.add(ev(2, VIEW, T0))  # another user's clock is its own
    with pytest.raises(ValueError, match="now: the store answers from"):
        store.vector(1, T0 + 39)


def test_memory_is_bounded_per_user() -> None:
    cfg = FeatureConfig(n_categories=2, max_events_per_user=32, reorder_tolerance_seconds=0.0)
    store = FeatureStore(cfg)
    for i in range(2000):
        store.add(ev("heavy", i % 4, T0 + i))
        assert store.n_events("heavy") <= 32
    assert store.n_events("heavy") == 32
    assert store.memory_bytes() <= 2 * (32 + 1) * 29
    # inactivity folds everything beyond the longest window, whatever the cap
    store.add(ev("heavy", VIEW, T0 + 2000 + 100 * DAY))
    assert store.n_events("heavy") == 1
    assert store.drop_user("heavy") and "heavy" not in store and len(store) == 0


# --- bad input ---------------------------------------------------------------------------

GOOD = {"user": "u", "event": "purchase", "category": 1, "price": 9.99, "discount": 0.1,
        "timestamp": T0 + 500}

BAD_FIELDS = [
    ("event", "refund", "event: unknown event type"),
    ("event", 4, "event: unknown event type"),
    ("event", True, "event: unknown event type"),
    ("event", 1.0, "event: unknown event type"),
    ("category", 5, "category: expected an integer in \\[0, 5\\)"),
    ("category", -1, "category"),
    ("category", 1.0, "category"),
    ("price", -0.01, "price: expected a value in"),
    ("price", float("nan"), "price: expected a finite number"),
    ("price", "3", "price: expected a number"),
    ("discount", 1.5, "discount: expected a value in \\[0, 1\\]"),
    ("discount", -0.1, "discount"),
    ("timestamp", float("nan"), "timestamp: expected a finite number"),
    ("timestamp", float("inf"), "timestamp"),
    ("user", ["a", "list"], "user: expected a hashable id"),
]


def store_snapshot(store: FeatureStore, users: list, now: float) -> tuple:
    return (len(store), [store.n_events(u) for u in users],
            store.vectors(users, now).tobytes())


@pytest.mark.parametrize(("field", "value", "match"), BAD_FIELDS)
def test_bad_events_leave_the_store_unchanged(field: str, value: object, match: str) -> None:
    cfg = FeatureConfig(n_categories=5)
    store = FeatureStore(cfg)
    for e in make_stream(5, n_users=3, n_categories=5, days=2, jitter=0.0)[:60]:
        store.add(e)
    users = [0, 1, 2, "u"]
    now = T0 + 5 * DAY
    before = store_snapshot(store, users, now)
    with pytest.raises(ValueError, match=match):
        store.add({**GOOD, field: value})
    assert store_snapshot(store, users, now) == before
    # the same value in a batch column is rejected naming the column and the row
    if field != "user":
        cols = {k: np.array([GOOD[k], GOOD[k]]) for k in GOOD}
        cols[field] = np.array([GOOD[field], value])
        with pytest.raises(ValueError, match=f"^{field}: .*(row 1|dtype)"):
            features_batch(cols, ["u"], now, cfg)
        with pytest.raises(ValueError, match=f"^{field}: "):
            store.add_events(cols)
        assert store_snapshot(store, users, now) == before


def test_bad_event_objects_and_missing_fields() -> None:
    store = FeatureStore(FeatureConfig(n_categories=5))
    with pytest.raises(ValueError, match="timestamp: missing"):
        store.add({k: v for k, v in GOOD.items() if k != "timestamp"})
    with pytest.raises(ValueError, match="event: expected an Event or a mapping"):
        store.add(("u", 0, 1, 1.0, 0.0, T0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="events: missing column 'discount'"):
        features_batch({k: [v] for k, v in GOOD.items() if k != "discount"}, ["u"], T0)
    with pytest.raises(ValueError, match="now: expected a finite number"):
        features_batch({k: [v] for k, v in GOOD.items()}, ["u"], float("nan"),
                       FeatureConfig(n_categories=5))
    assert len(store) == 0


def test_add_events_rejects_a_late_row_atomically() -> None:
    cfg = FeatureConfig(n_categories=5, reorder_tolerance_seconds=10.0)
    store = FeatureStore(cfg)
    store.add(ev("a", VIEW, T0 + 100))
    cols = as_columns([ev("b", VIEW, T0), ev("a", VIEW, T0 + 95), ev("a", VIEW, T0 + 80)])
    with pytest.raises(LateEventError, match="row 2"):
        store.add_events(cols)
    assert len(store) == 1 and store.n_events("a") == 1


@settings(max_examples=60, deadline=None)
@given(price=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-1.0)),
       discount=st.floats(allow_nan=True, allow_infinity=True),
       timestamp=st.one_of(st.floats(-1e12, 1e12), st.sampled_from([math.nan, math.inf])),
       category=st.integers(-3, 8))
def test_any_event_is_either_accepted_or_changes_nothing(price: float, discount: float,
                                                         timestamp: float, category: int) -> None:
    cfg = FeatureConfig(n_categories=5, reorder_tolerance_seconds=1e300)
    store = FeatureStore(cfg)
    store.add(ev("u", VIEW, 0.0))
    now = 1e301
    before = store_snapshot(store, ["u"], now)
    valid = (math.isfinite(price) and 0 <= price <= 2**53 * 0.01 and math.isfinite(discount)
             and 0 <= discount <= 1 and math.isfinite(timestamp) and 0 <= category < 5)
    event = Event("u", PURCHASE, category, price, discount, timestamp)
    if valid:
        store.add(event)
        assert len(store) == 1 and store.n_events("u") >= 1
    else:
        with pytest.raises(ValueError):
            store.add(event)
        assert store_snapshot(store, ["u"], now) == before


# --- input formats -----------------------------------------------------------------------

def test_event_names_and_codes_give_the_same_features() -> None:
    cfg = FeatureConfig(n_categories=5)
    events = make_stream(6, n_users=4, n_categories=5, days=3)
    cols = as_columns(events)
    named = dict(cols, event=np.array(["view", "click", "cart", "purchase"])[cols["event"]])
    now = float(cols["timestamp"].max())
    assert np.array_equal(features_batch(cols, [0, 1, 2, 3], now, cfg),
                          features_batch(named, [0, 1, 2, 3], now, cfg))


def test_requested_users_duplicates_and_order() -> None:
    cfg = FeatureConfig(n_categories=5)
    events = make_stream(7, n_users=4, n_categories=5, days=3, string_ids=True)
    cols = as_columns(events)
    now = float(cols["timestamp"].max())
    one = features_batch(cols, ["user-2", "user-0"], now, cfg)
    dup = features_batch(cols, ["user-0", "user-2", "user-0", 0], now, cfg)
    assert np.array_equal(dup[[1, 0]], one) and np.array_equal(dup[2], one[1])
    assert np.array_equal(dup[3], cold_start_vector(cfg))  # int 0 is not "user-0"


def test_without_pandas_the_numpy_path_gives_the_same_rows(monkeypatch) -> None:
    cfg = FeatureConfig(n_categories=5)
    for string_ids in (False, True):
        events = make_stream(8, n_users=6, n_categories=5, days=5, string_ids=string_ids)
        cols = as_columns(events)
        if string_ids:
            cols["user"] = cols["user"].astype(str)
        users = sorted({e.user for e in events})[::-1] + ["ghost"] * string_ids
        now = float(cols["timestamp"].max())
        with_pd = features_batch(cols, users, now, cfg)
        monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
        without = features_batch(cols, users, now, cfg)
        monkeypatch.undo()
        assert np.array_equal(with_pd, without)


def test_dataframe_and_arrow_table_inputs() -> None:
    pd = pytest.importorskip("pandas")
    cfg = FeatureConfig(n_categories=5)
    events = make_stream(9, n_users=5, n_categories=5, days=4, string_ids=True)
    cols = as_columns(events)
    now = float(cols["timestamp"].max())
    users = sorted({e.user for e in events})
    want = features_batch(cols, users, now, cfg)
    df = pd.DataFrame(cols).assign(item=7, session="s")  # extra columns are ignored
    assert np.array_equal(features_batch(df, users, now, cfg), want)
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(df)
    assert np.array_equal(features_batch(table, users, now, cfg), want)
    store = FeatureStore(cfg)
    store.add_events(table)
    assert np.array_equal(store.vectors(users, now), want)


# --- configuration -----------------------------------------------------------------------

def test_feature_names_and_dimension() -> None:
    cfg = FeatureConfig()
    names = feature_names()
    assert names == cfg.feature_names() and len(names) == cfg.dim == 14 + 20
    assert names[:8] == ["days_since_event", "days_since_purchase", "events_7d", "events_30d",
                         "purchases_7d", "purchases_30d", "spend_30d", "spend_90d"]
    assert names[-6:] == ["discount_share", "discount_depth", "session_events",
                          "session_minutes", "session_cart_open", "bias"]
    assert SMALL.dim == len(SMALL.feature_names()) == 2 + 4 + 2 + 5 + 6
    assert cfg.history_seconds == 90 * DAY


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_categories": 0}, "n_categories"),
        ({"frequency_windows_days": ()}, "frequency_windows_days: expected at least one"),
        ({"frequency_windows_days": (30.0, 7.0)}, "strictly increasing"),
        ({"monetary_windows_days": (0.0,)}, "monetary_windows_days\\[0\\]"),
        ({"monetary_windows_days": "30"}, "monetary_windows_days: expected a list"),
        ({"affinity_window_days": -1.0}, "affinity_window_days"),
        ({"session_gap_seconds": 0.0}, "session_gap_seconds"),
        ({"event_weights": (1.0, 2.0)}, "event_weights: expected 4 weights"),
        ({"event_weights": (0.0, 0.0, 0.0, 0.0)}, "event_weights: expected at least one"),
        ({"event_weights": (1.0, -2.0, 0.0, 0.0)}, "event_weights\\[1\\]"),
        ({"money_unit": 0.0}, "money_unit"),
        ({"discount_unit": 2.0}, "discount_unit"),
        ({"max_events_per_user": 0}, "max_events_per_user"),
        ({"reorder_tolerance_seconds": float("nan")}, "reorder_tolerance_seconds"),
        ({"recency_cap_days": 0}, "recency_cap_days"),
    ],
)
def test_bad_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureConfig(**kwargs)
    with pytest.raises(ValueError, match="config: expected a FeatureConfig"):
        FeatureStore(config={"n_categories": 3})  # type: ignore[arg-type]


def test_vectors_are_well_conditioned() -> None:
    cfg = FeatureConfig(n_categories=6)
    events = make_stream(10, n_users=40, n_categories=6, days=60)
    cols = as_columns(events)
    users = sorted({e.user for e in events})
    x = features_batch(cols, users, float(cols["timestamp"].max()), cfg)
    assert np.isfinite(x).all()
    names = cfg.feature_names()
    bounded = [j for j, n in enumerate(names) if n.startswith(("days_", "affinity_", "discount_",
                                                              "session_cart"))]
    assert (x[:, bounded] >= 0).all() and (x[:, bounded] <= 1).all()
    assert x.max() < 15  # log scaling keeps counts and money on a small scale
    aff = x[:, [j for j, n in enumerate(names) if n.startswith("affinity_")]]
    assert np.allclose(aff.sum(axis=1), 1.0)


@pytest.mark.parametrize("spread", [1, 10**12, -(10**15)])
def test_integer_ids_dense_sparse_and_negative(spread: int) -> None:
    # dense ids use a lookup table, sparse or negative ones a binary search: same rows
    cfg = FeatureConfig(n_categories=5)
    events = make_stream(11, n_users=6, n_categories=5, days=5)
    cols = as_columns(events)
    now = float(cols["timestamp"].max())
    users = [5, 0, 3, 3, 99]
    want = features_batch(cols, users, now, cfg)
    moved = dict(cols, user=cols["user"] * spread + 7)
    got = features_batch(moved, np.array(users) * spread + 7, now, cfg)
    assert np.array_equal(got, want)
    assert np.array_equal(want[4], cold_start_vector(cfg))


def test_columns_from_a_recommender_interaction_log() -> None:
    log = synthetic_log(SyntheticConfig(n_users=40, n_items=30, n_categories=4), seed=0)
    cols = columns_from_log(log)
    cfg = FeatureConfig(n_categories=4)
    now = float(log.timestamps.max())
    users = list(range(40))
    x = features_batch(cols, users, now, cfg)
    store = FeatureStore(cfg)
    store.add_events(cols)
    assert np.array_equal(store.vectors(users, now), x)
    names = cfg.feature_names()
    # every user of the synthetic world has events; purchases happen
    assert (x[:, names.index("days_since_event")] < 1).all()
    assert (x[:, names.index("purchases_30d")] > 0).any()
    no_prices = InteractionLog(user_ids=[0], item_ids=[0], events=[0], timestamps=[0.0],
                               item_category=[0], item_price_band=[0], n_users=1)
    with pytest.raises(ValueError, match="log: the interaction log has no prices"):
        columns_from_log(no_prices)
    with pytest.raises(ValueError, match="discounts: expected shape"):
        columns_from_log(log, discounts=[0.1])
