"""The incremental path: :class:`FeatureStore`, fed one event at a time, answers
:meth:`FeatureStore.vector` for serving, bitwise equal to
:func:`~promobandit.features.batch.features_batch` on the same events.

Memory bound of the store: per user at most ``max_events_per_user`` live events, in
buffers of at most 2 x (max_events_per_user + 1) rows of 29 bytes (five NumPy columns;
the slack makes compaction amortised O(1)), so at most 60 kB at the default 1024, plus
about 1 kB of fixed state (Python objects, array headers); events older than every
window are folded into five all-time aggregates. The store holds one entry per user
seen (``drop_user`` forgets one), or at most about ``max_users`` of them when given
(``evict`` forgets the least recently updated ones). The batch path applies the same cap: the windowed and
session statistics of a user come from at most their latest ``max_events_per_user``
events at or before ``now``; older events still count in the recencies and the
all-time discount statistics.

User ids may be any hashable (ints or strings). Nothing here logs or persists them; the
store keeps them only as keys of its in-memory table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..events import EVENT_NAMES, N_EVENT_TYPES, PURCHASE
from ._stats import _MAX_UNITS, _finish, _statistics_one
from .batch import COLUMNS, _check_now, _columns, _event_code, _validated, cold_start_vector
from .config import FeatureConfig, _config

# How far past max_users the store may grow before evict() trims it back (a fraction).
EVICTION_SLACK = 0.05


class LateEventError(ValueError):
    """An event older than the store's reorder tolerance allows (see FeatureStore.add)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One behaviour event (see features_batch for the fields and their units)."""

    user: Hashable
    event: int | str
    category: int
    price: float
    discount: float
    timestamp: float


class _History:
    """One user's events in time order (ties in arrival order) plus folded aggregates."""

    __slots__ = ("cat", "depth_units", "disc_u", "hi", "last_purchase_ts", "last_ts", "lo",
                 "max_ts", "n_discounted", "n_purchases", "price_u", "seen", "t", "typ")

    def __init__(self, capacity: int) -> None:
        self.t = np.empty(capacity)
        self.typ = np.empty(capacity, np.int8)
        self.cat = np.empty(capacity, np.int32)
        self.price_u = np.empty(capacity, np.int64)
        self.disc_u = np.empty(capacity, np.int64)
        self.lo = 0  # live rows are [lo, hi)
        self.hi = 0
        self.max_ts = -math.inf
        # aggregates of the events folded away (all older than every live row)
        self.last_ts = -math.inf
        self.last_purchase_ts = -math.inf
        self.n_purchases = 0
        self.n_discounted = 0
        self.depth_units = 0
        self.seen = 0  # the store's update counter at this user's latest event (eviction)

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.t, self.typ, self.cat, self.price_u, self.disc_u)

    def make_room(self, limit: int) -> None:
        """Frees a slot at hi: compacts the live rows to the front when at least half of
        the buffer is dead (or it cannot grow), else doubles it, up to ``limit`` rows."""
        live = self.hi - self.lo
        cap = self.t.shape[0]
        if self.lo > 0 and (cap >= limit or live <= cap // 2):
            for a in self.columns():
                a[:live] = a[self.lo:self.hi]
            self.lo, self.hi = 0, live
            return
        new_cap = min(2 * cap, limit)
        for name in ("t", "typ", "cat", "price_u", "disc_u"):
            old = getattr(self, name)
            new = np.empty(new_cap, old.dtype)
            new[:live] = old[self.lo:self.hi]
            setattr(self, name, new)
        self.lo, self.hi = 0, live

    def fold(self, k: int) -> None:
        """Folds the k oldest live rows into the aggregates and drops them."""
        lo, hi = self.lo, self.lo + k
        self.last_ts = max(self.last_ts, float(self.t[hi - 1]))
        buy = self.typ[lo:hi] == PURCHASE
        if buy.any():
            tb = self.t[lo:hi][buy]
            db = self.disc_u[lo:hi][buy]
            self.last_purchase_ts = max(self.last_purchase_ts, float(tb[-1]))
            self.n_purchases += int(buy.sum())
            self.n_discounted += int((db > 0).sum())
            self.depth_units += int(db.sum())
        self.lo = hi

    def prior(self) -> dict[str, float]:
        return {"last_ts": self.last_ts, "last_purchase_ts": self.last_purchase_ts,
                "n_purchases": self.n_purchases, "n_discounted": self.n_discounted,
                "depth_units": self.depth_units}

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns())

    def copy(self) -> _History:
        out = _History.__new__(_History)
        for name in self.__slots__:
            v = getattr(self, name)
            setattr(out, name, v.copy() if isinstance(v, np.ndarray) else v)
        return out


class FeatureStore:
    """Incremental behaviour features for serving: add events one at a time, read vectors.

    ``add`` is O(1) amortised for an event in time order (an append and, now and then,
    folding the oldest rows into aggregates); an out-of-order event shifts the rows after
    it (at most the ones of the last ``reorder_tolerance_seconds``). ``vector`` costs about
    forty small NumPy calls over the user's rows (at most ``max_events_per_user``): tens
    of microseconds, see bench/bench_features.py.

    Out-of-order events: an event up to ``reorder_tolerance_seconds`` older than the user's
    latest one is inserted in time order and counts exactly as in the batch path; an older
    one raises LateEventError (a ValueError) and changes nothing, so a caller can count
    and drop late data explicitly.

    Exactness: ``vector(user, now)`` equals ``features_batch`` over the same events at the
    same now (bitwise) for any now >= the user's latest event, and for now down to
    ``reorder_tolerance_seconds`` before it unless the user hit the ``max_events_per_user``
    cap (then the store no longer holds the oldest events the batch path would count).
    Earlier times raise ValueError: the store does not keep the past.
    Memory: see the module docstring (bounded per user; one entry per user seen).
    """

    def __init__(self, config: FeatureConfig | None = None, *,
                 max_users: int | None = None) -> None:
        """max_users: users kept at most after ``evict`` (None: no bound). The store may
        hold up to ``EVICTION_SLACK`` more than that between two evictions, so that each
        eviction pass (O(users log users)) is amortised over many new users."""
        self.config = _config(config)
        self.max_users = None if max_users is None else check_int("max_users", max_users, 1)
        self._tick = 0  # updates so far: the recency order of the users
        self._users: dict[Hashable, _History] = {}
        self._cold = cold_start_vector(self.config)
        self._cold.setflags(write=False)
        # Buffers grow to twice the cap, so that compacting the live rows to the front
        # happens once per ~cap inserts (amortised O(1)) once a user reaches the cap.
        self._capacity = 2 * (self.config.max_events_per_user + 1)
        self._max_price = _MAX_UNITS * self.config.money_unit
        self._history_seconds = self.config.history_seconds

    def __len__(self) -> int:
        """Number of users held."""
        return len(self._users)

    def __contains__(self, user: Any) -> bool:
        try:
            return user in self._users
        except TypeError:
            return False

    def n_events(self, user: Hashable) -> int:
        """Events of ``user`` held in memory (0 for an unknown user)."""
        h = self._users.get(user)
        return 0 if h is None else h.hi - h.lo

    def memory_bytes(self) -> int:
        """Bytes held by the event rows of all users (excluding per-object overhead)."""
        return sum(h.nbytes() for h in self._users.values())

    def evict(self) -> int:
        """Forgets the least recently updated users beyond ``max_users``, once the store
        holds more than ``max_users * (1 + EVICTION_SLACK)`` (amortised); returns how many
        were forgotten. Callers that add events call it after the change is committed (a
        rolled-back change never evicts anyone)."""
        m = self.max_users
        n = len(self._users)
        if m is None or n <= m + int(m * EVICTION_SLACK):
            return 0
        order = sorted(self._users.items(), key=lambda kv: kv[1].seen)
        for u, _ in order[:n - m]:
            del self._users[u]
        return n - m

    def drop_user(self, user: Hashable) -> bool:
        """Forgets a user (e.g. an erasure request); True if the user was held."""
        return self._users.pop(user, None) is not None

    def cold_start_vector(self) -> np.ndarray:
        """(d,) the vector of an unknown user (a copy)."""
        return self._cold.copy()

    def add(self, event: Event | Mapping[str, Any]) -> None:
        """Adds one event (an Event, or a mapping with the Event fields; extra keys ignored).

        Every field is checked before anything changes: an unknown event type, a category
        outside [0, C), a negative or non-finite price, a discount outside [0, 1], a
        non-finite timestamp or an unhashable user raises ValueError naming the field; an
        event older than the reorder tolerance raises LateEventError.
        """
        user, h, code, cat, t, price_u, disc_u = self._parse(event)
        if h is not None and t < h.max_ts - self.config.reorder_tolerance_seconds:
            raise LateEventError(
                f"timestamp: event at {t!r} is {h.max_ts - t:g} s older than this user's latest "
                f"event, beyond reorder_tolerance_seconds="
                f"{self.config.reorder_tolerance_seconds:g}")
        self._insert(h, user, code, cat, t, price_u, disc_u)

    def _parse(self, event: Event | Mapping[str, Any]
               ) -> tuple[Hashable, _History | None, int, int, float, int, int]:
        """(user, the user's history or None, code, category, timestamp, price units,
        discount units) of one event, every field checked (not the lateness)."""
        if isinstance(event, Event):
            user, etype, cat, price, disc, ts = (event.user, event.event, event.category,
                                                 event.price, event.discount, event.timestamp)
        elif isinstance(event, Mapping):
            missing = [c for c in COLUMNS if c not in event]
            if missing:
                raise ValueError(f"{missing[0]}: missing from the event; expected "
                                 f"{list(COLUMNS)}")
            user, etype, cat, price, disc, ts = (event[c] for c in COLUMNS)
        else:
            raise ValueError(f"event: expected an Event or a mapping, got {type(event).__name__}")
        cfg = self.config
        try:
            h = self._users.get(user)
        except TypeError:
            raise ValueError(f"user: expected a hashable id, got {type(user).__name__}") from None
        # Fast paths for plain Python values (the serving case); anything else goes through
        # the full checks, which also write the error messages.
        code = etype if type(etype) is int and 0 <= etype < N_EVENT_TYPES else _event_code(etype)
        if code < 0:
            raise ValueError(f"event: unknown event type {etype!r}; expected one of "
                             f"{list(EVENT_NAMES)} or a code in 0..{N_EVENT_TYPES - 1}")
        if not (type(cat) is int and 0 <= cat < cfg.n_categories) and (
                isinstance(cat, (bool, np.bool_)) or not isinstance(cat, (int, np.integer))
                or not 0 <= cat < cfg.n_categories):
            raise ValueError(f"category: expected an integer in [0, {cfg.n_categories}) "
                             f"(n_categories), got {cat!r}")
        # NaN fails every comparison, so a float passing these is finite and in range.
        price_f = price if type(price) is float and 0.0 <= price <= self._max_price else \
            check_range("price", price, 0.0, self._max_price)
        disc_f = disc if type(disc) is float and 0.0 <= disc <= 1.0 else \
            check_range("discount", disc, 0.0, 1.0)
        t = ts if type(ts) is float and math.isfinite(ts) else check_range("timestamp", ts)
        # Python's round and np.rint both round half to even: the batch path's units.
        return (user, h, code, int(cat), float(t), round(price_f / cfg.money_unit),
                round(disc_f / cfg.discount_unit))

    def add_all(self, events: Sequence[Event | Mapping[str, Any]], *,
                now: float | None = None, check_only: bool = False) -> int:
        """Adds several events, all or none: every event is checked (fields, lateness
        against its user's latest event including the ones before it in ``events``)
        before the first is added. ``now`` (seconds): events stamped later than ``now +
        reorder_tolerance_seconds`` are refused (``timestamp``), so that no event can
        move a user's history so far ahead that ``vector(user, now)`` fails for the
        times a service will ask about. check_only: check, add nothing. Returns the
        number of events (ValueError / LateEventError naming the event's index and field)."""
        tol = self.config.reorder_tolerance_seconds
        if now is not None:
            now = _check_now(now)
        parsed = []
        latest: dict[Hashable, float] = {}
        for i, ev in enumerate(events):
            try:
                user, h, code, cat, t, pu, du = self._parse(ev)
            except LateEventError:
                raise
            except ValueError as exc:
                raise ValueError(f"events[{i}].{exc}") from None
            if now is not None and t > now + tol:
                raise ValueError(f"events[{i}].timestamp: expected at most now + "
                                 f"reorder_tolerance_seconds = {now + tol!r}, got {t!r}")
            m = latest.get(user, -math.inf if h is None else h.max_ts)
            if t < m - tol:
                raise LateEventError(f"events[{i}].timestamp: event at {t!r} is {m - t:g} s "
                                     f"older than this user's latest event, beyond "
                                     f"reorder_tolerance_seconds={tol:g}")
            latest[user] = max(m, t)
            parsed.append((user, code, cat, t, pu, du))
        if not check_only:
            for user, code, cat, t, pu, du in parsed:
                self._insert(self._users.get(user), user, code, cat, t, pu, du)
        return len(parsed)

    def _insert(self, h: _History | None, user: Hashable, code: int, cat: int, t: float,
                price_u: int, disc_u: int) -> None:
        """Inserts a checked event in time order, then folds what no answer needs."""
        cfg = self.config
        if h is None:
            h = self._users[user] = _History(min(8, self._capacity))
        self._tick += 1
        h.seen = self._tick
        if h.hi == h.t.shape[0]:
            h.make_room(self._capacity)
        lo, hi = h.lo, h.hi
        if hi == lo or t >= h.t[hi - 1]:
            pos = hi
        else:  # out of order: after every row with t' <= t (ties keep arrival order)
            pos = lo + int(np.searchsorted(h.t[lo:hi], t, side="right"))
            for a in h.columns():
                a[pos + 1:hi + 1] = a[pos:hi]
        h.t[pos], h.typ[pos], h.cat[pos], h.price_u[pos], h.disc_u[pos] = (
            t, code, cat, price_u, disc_u)
        h.hi = hi + 1
        if t > h.max_ts:
            h.max_ts = t

        # Fold rows older than every window of any time the store still answers for
        # (now >= max_ts - tolerance), then rows beyond the cap.
        horizon = (h.max_ts - cfg.reorder_tolerance_seconds) - self._history_seconds
        k = 0
        if h.t[h.lo] <= horizon:
            k = int(np.searchsorted(h.t[h.lo:h.hi], horizon, side="right"))
        k = max(k, h.hi - h.lo - cfg.max_events_per_user)
        if k > 0:
            h.fold(k)

    def add_events(self, events: Any) -> None:
        """Adds the rows of a DataFrame, Table or dict of arrays (as features_batch takes)
        in row order. Every row is checked first (late rows too): a rejected batch changes
        nothing."""
        cfg = self.config
        cols = _columns(events)
        typ, cat, t, price_u, disc_u = _validated(cols, cfg)
        users = cols["user"].tolist()
        latest: dict[Hashable, float] = {}
        for i, (u, ti) in enumerate(zip(users, t.tolist(), strict=True)):
            try:
                m = latest.get(u)
            except TypeError:
                raise ValueError(f"user: expected hashable ids, got {type(u).__name__} "
                                 f"at row {i}") from None
            if m is None:
                h = self._users.get(u)
                m = -math.inf if h is None else h.max_ts
            if ti < m - cfg.reorder_tolerance_seconds:
                raise LateEventError(f"timestamp: row {i} is {m - ti:g} s older than its user's "
                                     f"latest event, beyond reorder_tolerance_seconds="
                                     f"{cfg.reorder_tolerance_seconds:g}")
            latest[u] = max(m, ti)
        for u, code, c, ti, pu, du in zip(users, typ.tolist(), cat.tolist(), t.tolist(),
                                          price_u.tolist(), disc_u.tolist(), strict=True):
            self._insert(self._users.get(u), u, code, c, ti, pu, du)

    # --- state --------------------------------------------------------------------------------
    # The store's state is a JSON-able header and named arrays, like the engine's (it is
    # part of the engine's state bytes, arrays prefixed "f_"): only the live rows and the
    # folded aggregates are kept, so a state is the same bytes whatever the buffers'
    # capacities were (a replayed store and a loaded one serialise identically).
    def to_columns(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(header, arrays): header ``config`` (the FeatureConfig's fields) and ``users``
        (ids in insertion order; str or int only); arrays, one row per user: ``n_rows``
        (live events), ``max_ts``, ``last_ts``, ``last_purchase_ts`` (float64),
        ``n_purchases``, ``n_discounted``, ``depth_units`` (int64); and the live events
        of every user, concatenated in user order: ``t``, ``typ``, ``cat``, ``price_u``,
        ``disc_u``."""
        users = list(self._users)
        for u in users:
            if type(u) not in (str, int):
                raise ValueError(f"user: only str or int user ids can be saved, got "
                                 f"{type(u).__name__}")
        hs = [self._users[u] for u in users]
        meta = {"config": _config_dict(self.config), "users": users, "tick": self._tick}
        arrays: dict[str, np.ndarray] = {
            "n_rows": np.array([h.hi - h.lo for h in hs], dtype=np.int64)}
        for name in ("max_ts", "last_ts", "last_purchase_ts"):
            arrays[name] = np.array([getattr(h, name) for h in hs], dtype=np.float64)
        for name in ("n_purchases", "n_discounted", "depth_units", "seen"):
            arrays[name] = np.array([getattr(h, name) for h in hs], dtype=np.int64)
        for name, dtype in (("t", np.float64), ("typ", np.int8), ("cat", np.int32),
                            ("price_u", np.int64), ("disc_u", np.int64)):
            parts = [getattr(h, name)[h.lo:h.hi] for h in hs]
            arrays[name] = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        return meta, arrays

    def load_columns(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restores what to_columns wrote; everything is checked (the configuration must
        be this store's) before anything changes (ValueError naming the part)."""
        self.install_columns(self.prepare_columns(meta, arrays))

    def install_columns(self, prepared: Any) -> None:
        """Replaces the store's users with what ``prepare_columns`` returned."""
        self._users, self._tick = prepared

    def prepare_columns(self, meta: dict[str, Any], z: dict[str, np.ndarray]
                        ) -> Any:
        """The users of a saved state, checked, without changing the store (for a caller
        that restores several parts all or none; see ``install_columns``)."""
        try:
            saved_cfg = meta["config"]
            users = list(meta["users"])
            n_rows = np.asarray(z["n_rows"], dtype=np.int64)
            cols = {name: np.asarray(z[name]) for name in (
                "max_ts", "last_ts", "last_purchase_ts", "n_purchases", "n_discounted",
                "depth_units", "t", "typ", "cat", "price_u", "disc_u")}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"features: unreadable feature store state ({exc!r})") from None
        if saved_cfg != _config_dict(self.config):
            raise ValueError("features: the saved feature store has another FeatureConfig "
                             f"({saved_cfg}) than this one ({_config_dict(self.config)})")
        n = len(users)
        # States written before eviction existed have no "seen" and no "tick".
        seen = np.asarray(z["seen"], dtype=np.int64) if "seen" in z else np.zeros(n, np.int64)
        tick = int(meta.get("tick", 0))
        if seen.shape != (n,):
            raise ValueError(f"features: seen has shape {seen.shape}, expected ({n},)")
        total = int(n_rows.sum()) if n else 0
        if n_rows.shape != (n,) or (n and (n_rows.min() < 0
                                           or n_rows.max() > self.config.max_events_per_user)):
            raise ValueError("features: n_rows does not match the users")
        for name in ("max_ts", "last_ts", "last_purchase_ts", "n_purchases", "n_discounted",
                     "depth_units"):
            if cols[name].shape != (n,):
                raise ValueError(f"features: {name} has shape {cols[name].shape}, expected ({n},)")
        for name in ("t", "typ", "cat", "price_u", "disc_u"):
            if cols[name].shape != (total,):
                raise ValueError(f"features: {name} has shape {cols[name].shape}, "
                                 f"expected ({total},)")
        if len(set(users)) != n or any(type(u) not in (str, int) for u in users):
            raise ValueError("features: users must be distinct str or int ids")
        out: dict[Hashable, _History] = {}
        start = 0
        for i, u in enumerate(users):
            m = int(n_rows[i])
            h = _History(max(min(8, self._capacity), min(self._capacity, m)))
            for name in ("t", "typ", "cat", "price_u", "disc_u"):
                getattr(h, name)[:m] = cols[name][start:start + m]
            h.lo, h.hi = 0, m
            h.max_ts = float(cols["max_ts"][i])
            h.last_ts = float(cols["last_ts"][i])
            h.last_purchase_ts = float(cols["last_purchase_ts"][i])
            h.n_purchases = int(cols["n_purchases"][i])
            h.n_discounted = int(cols["n_discounted"][i])
            h.depth_units = int(cols["depth_units"][i])
            h.seen = int(seen[i])
            out[u] = h
            start += m
        return out, tick

    def checkpoint(self, users: Sequence[Hashable]) -> tuple[int, dict[Hashable, Any]]:
        """Copies of these users' histories (None: not held) and the update counter, for
        ``rollback``: a caller that adds events and then fails can put the store back
        exactly as it was (events of other users must not be added in between)."""
        out: dict[Hashable, _History | None] = {}
        for u in users:
            h = self._users.get(u)
            out[u] = None if h is None else h.copy()
        return self._tick, out

    def rollback(self, saved: tuple[int, dict[Hashable, Any]]) -> None:
        """Restores the users of a ``checkpoint`` (and forgets those it did not hold)."""
        self._tick, users = saved
        for u, h in users.items():
            if h is None:
                self._users.pop(u, None)
            else:
                self._users[u] = h

    def vector(self, user: Hashable, now: float) -> np.ndarray:
        """(d,) float64 features of ``user`` at ``now`` (seconds); the cold-start vector for
        an unknown user. ValueError if now is more than the reorder tolerance before the
        user's latest event."""
        now = _check_now(now)
        try:
            h = self._users.get(user)
        except TypeError:
            raise ValueError(f"user: expected a hashable id, got {type(user).__name__}") from None
        if h is None:
            return self._cold.copy()
        if now < h.max_ts - self.config.reorder_tolerance_seconds:
            raise ValueError(f"now: the store answers from {h.max_ts:g} - "
                             f"reorder_tolerance_seconds on for this user, got {now!r}")
        lo, hi = h.lo, h.hi
        stats = _statistics_one(self.config, now, h.t[lo:hi], h.typ[lo:hi], h.cat[lo:hi],
                                h.price_u[lo:hi], h.disc_u[lo:hi], h.prior())
        return _finish(self.config, now, stats)[0]

    def vectors(self, users: Sequence[Hashable], now: float) -> np.ndarray:
        """(len(users), d): ``vector`` of each user at ``now``."""
        out = np.empty((len(users), self.config.dim))
        for i, u in enumerate(users):
            out[i] = self.vector(u, now)
        return out


def _config_dict(config: FeatureConfig) -> dict[str, Any]:
    """The FeatureConfig as JSON values (tuples as lists), as a saved state holds it."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


__all__ = ["Event", "FeatureStore", "LateEventError"]
