"""The batch path: features of many users at once from a table of events.

:func:`features_batch` takes a pandas DataFrame, a pyarrow Table or a dict of arrays
(the columns of ``COLUMNS``), checks every row (an error names the column and the row),
sorts the selected events once by (user, time) and hands them to the vectorised
kernels of :mod:`promobandit.features._stats`. :func:`columns_from_log` turns a
recommender ``InteractionLog`` into those columns. The row checks here serve the
store's ``add_events`` too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._intcodes import IntCodes
from .._validation import check_range
from ..events import EVENT_NAMES, N_EVENT_TYPES, PURCHASE
from ._stats import _MAX_UNITS, _empty_prior, _finish, _isum, _statistics
from .config import FeatureConfig, _config

# Integer user ids spanning up to this many times the number of rows (events and
# requested users) use a lookup table (memory of the same order as the input) instead
# of a binary search.
_DENSE_IDS_FACTOR = 4

COLUMNS: tuple[str, ...] = ("user", "event", "category", "price", "discount", "timestamp")

_EVENT_CODES: dict[Any, int] = {name: code for code, name in enumerate(EVENT_NAMES)}


def cold_start_vector(config: FeatureConfig | None = None) -> np.ndarray:
    """(d,) the vector of a user without events at or before now: recencies at their cap
    (1.0), counts, money, affinity, discount and session features 0, bias 1."""
    cfg = _config(config)
    none_i, none_f = np.zeros(0, np.int64), np.zeros(0)
    stats = _statistics(cfg, 0.0, 1, none_i, none_f, np.zeros(0, np.int8), none_i, none_i,
                        none_i, _empty_prior(1))
    return _finish(cfg, 0.0, stats)[0]


# --- input columns -----------------------------------------------------------------------

def _to_numpy(obj: Any) -> np.ndarray:
    if type(obj).__module__.startswith("pyarrow"):  # (chunked) arrow arrays; strings copy
        return np.asarray(obj.to_numpy(zero_copy_only=False))
    if hasattr(obj, "to_numpy"):  # pandas Series
        return np.asarray(obj.to_numpy())
    return np.asarray(obj)


def _columns(events: Any) -> dict[str, np.ndarray]:
    """The event columns of a pandas DataFrame, a pyarrow Table or a mapping of arrays."""
    if hasattr(events, "column_names") and hasattr(events, "column"):  # pyarrow.Table
        names = set(events.column_names)
        get = events.column
    elif hasattr(events, "columns") and hasattr(events, "__getitem__") and not isinstance(
            events, Mapping):  # pandas.DataFrame
        names = {str(c) for c in events.columns}
        get = events.__getitem__
    elif isinstance(events, Mapping):
        names = set(events)
        get = events.__getitem__
    else:
        raise ValueError(f"events: expected a pandas DataFrame, a pyarrow Table or a dict of "
                         f"arrays, got {type(events).__name__}")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ValueError(f"events: missing column {missing[0]!r}; expected columns "
                         f"{list(COLUMNS)} (others are ignored)")
    cols = {c: _to_numpy(get(c)) for c in COLUMNS}
    n = cols["user"].shape[0]
    for c, a in cols.items():
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"{c}: expected a 1-D column of {n} rows (like user), "
                             f"got shape {a.shape}")
    return cols


def _event_codes(a: np.ndarray) -> np.ndarray:
    """Event types as int8 codes from integer codes or names; ValueError naming the row."""
    if a.dtype.kind in "iu":
        bad = (a < 0) | (a >= N_EVENT_TYPES)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"event: unknown event type {a[i]!r} at row {i}; expected a code "
                             f"in {dict(enumerate(EVENT_NAMES))} or a name")
        return a.astype(np.int8)
    if a.dtype.kind in "OUS":
        values = a.tolist()
        out = np.empty(len(values), dtype=np.int8)
        for i, v in enumerate(values):
            code = _event_code(v)
            if code < 0:
                raise ValueError(f"event: unknown event type {v!r} at row {i}; expected one of "
                                 f"{list(EVENT_NAMES)} or a code in 0..{N_EVENT_TYPES - 1}")
            out[i] = code
        return out
    raise ValueError(f"event: expected integer codes or names {list(EVENT_NAMES)}, "
                     f"got dtype {a.dtype}")


def _event_code(v: Any) -> int:
    """The code of one event type (a name or an integer code), -1 if unknown."""
    if isinstance(v, str):
        return _EVENT_CODES.get(v, -1)
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v) if 0 <= v < N_EVENT_TYPES else -1
    return -1


def _numeric(name: str, a: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric column, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if lo is not None:
        bad |= a < lo
    if hi is not None:
        bad |= a > hi
    if bad.any():
        i = int(np.argmax(bad))
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name}: expected finite values in [{lo_s}, {hi_s}], got {a[i]!r} "
                         f"at row {i}")
    return a


def _validated(cols: dict[str, np.ndarray], cfg: FeatureConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(event codes, categories, timestamps, price units, discount units), all checked."""
    typ = _event_codes(cols["event"])
    cat = cols["category"]
    if cat.dtype.kind not in "iu":
        raise ValueError(f"category: expected integer category ids, got dtype {cat.dtype}")
    bad = (cat < 0) | (cat >= cfg.n_categories)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"category: expected ids in [0, {cfg.n_categories}) (n_categories), "
                         f"got {cat[i]!r} at row {i}")
    t = _numeric("timestamp", cols["timestamp"], None, None)
    price = _numeric("price", cols["price"], 0.0, _MAX_UNITS * cfg.money_unit)
    disc = _numeric("discount", cols["discount"], 0.0, 1.0)
    return (typ, cat.astype(np.int64), t, np.rint(price / cfg.money_unit).astype(np.int64),
            np.rint(disc / cfg.discount_unit).astype(np.int64))


def _check_now(now: Any) -> float:
    return check_range("now", now)


# --- user ids ----------------------------------------------------------------------------

def _user_codes(requested: Any, event_users: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(row -> unique requested user, number of unique users, event -> unique user or -1)."""
    req = list(requested) if not isinstance(requested, np.ndarray) else requested
    req_np = np.asarray(req) if isinstance(req, np.ndarray) or all(
        isinstance(u, (int, np.integer)) and not isinstance(u, bool) for u in req) else None
    if req_np is not None and req_np.dtype.kind in "iu" and event_users.dtype.kind in "iu":
        # Integer ids on both sides: a lookup table when the ids are dense enough,
        # else sorted uniques and a binary search; no hashing either way.
        uniques, inverse = np.unique(req_np, return_inverse=True)
        codes = IntCodes(uniques, dense_limit=_DENSE_IDS_FACTOR * (
            event_users.size + len(uniques))).codes(event_users)
        return inverse.astype(np.int64), len(uniques), codes
    try:
        import pandas as pd  # optional: hash-based lookups for any hashable ids
    except ImportError:  # pragma: no cover - exercised where pandas is absent
        pd = None
    if pd is not None:
        req_arr = np.empty(len(req), dtype=object)
        req_arr[:] = list(req)
        inverse, uniques = pd.factorize(req_arr)
        index = pd.Index(uniques)
        codes = index.get_indexer(pd.Index(event_users))
        return inverse.astype(np.int64), len(uniques), codes.astype(np.int64)
    req_np = np.asarray(req)
    if req_np.dtype.kind == "U" and event_users.dtype.kind == "U":
        uniques, inverse = np.unique(req_np, return_inverse=True)
        pos = np.minimum(np.searchsorted(uniques, event_users), max(len(uniques) - 1, 0))
        found = (uniques[pos] == event_users) if len(uniques) else np.zeros(0, bool)
        return inverse.astype(np.int64), len(uniques), np.where(found, pos, -1).astype(np.int64)
    table: dict[Hashable, int] = {}
    inverse = np.array([table.setdefault(u, len(table)) for u in req], dtype=np.int64)
    codes = np.array([table.get(u, -1) for u in event_users.tolist()], dtype=np.int64)
    return inverse, len(table), codes


def columns_from_log(log: Any, discounts: Any = None) -> dict[str, np.ndarray]:
    """The event columns of a recommender ``InteractionLog`` (which must have prices).

    category comes from the log's item catalogue; discounts: optional (n,) fractions in
    [0, 1] of the purchases (0 elsewhere); without them every purchase is at full price.
    (Read by attribute, so the business layer needs no import of the recommender.)
    """
    needed = ("user_ids", "events", "item_ids", "item_category", "prices", "timestamps")
    if not all(hasattr(log, a) for a in needed):
        raise ValueError(f"log: expected an InteractionLog, got {type(log).__name__}")
    if log.prices is None:
        raise ValueError("log: the interaction log has no prices; spend features need them")
    n = len(log)
    disc = np.zeros(n) if discounts is None else np.asarray(discounts, dtype=np.float64)
    if disc.shape != (n,):
        raise ValueError(f"discounts: expected shape ({n},) like the log, got {disc.shape}")
    return {"user": log.user_ids, "event": log.events.astype(np.int64),
            "category": log.item_category[log.item_ids], "price": log.prices,
            "discount": disc, "timestamp": log.timestamps}


# --- batch -------------------------------------------------------------------------------

def features_batch(events: Any, users: Any, now: float,
                   config: FeatureConfig | None = None) -> np.ndarray:
    """(len(users), d) float64: the feature vector of each user at ``now`` (seconds).

    events: a pandas DataFrame, a pyarrow Table or a mapping of 1-D arrays with columns
        user (any hashable ids), event (codes 0..3 or names view/click/cart/purchase),
        category (int in [0, C)), price (currency, >= 0: the amount paid for a purchase),
        discount (fraction in [0, 1] of a purchase, 0 at full price), timestamp (seconds).
        Other columns are ignored; row order breaks timestamp ties (as arrival order does
        in the store).
    users: the ids to compute (duplicates allowed); users without events at or before
        now get the cold-start vector.

    Vectorised: one stable sort of the selected events and bincounts, no per-event Python.
    Bad rows raise ValueError naming the column and the row.
    """
    cfg = _config(config)
    now = _check_now(now)
    cols = _columns(events)
    typ, cat, t, price_u, disc_u = _validated(cols, cfg)
    inverse, n_users, code = _user_codes(users, cols["user"])
    keep = (code >= 0) & (t <= now)
    code, t, typ, cat, price_u, disc_u = (a[keep] for a in (code, t, typ, cat, price_u, disc_u))
    # Stable sorts by (user, time), ties by row. Logs usually come time-ordered, which
    # saves the first sort; int32 codes make the second one faster.
    key = code.astype(np.int32) if n_users < 2**31 else code
    if t.size < 2 or bool((t[1:] >= t[:-1]).all()):
        order = np.argsort(key, kind="stable")
    else:
        order = np.argsort(t, kind="stable")
        order = order[np.argsort(key[order], kind="stable")]
    code, t, typ, cat, price_u, disc_u = (a[order] for a in (code, t, typ, cat, price_u, disc_u))

    # The cap: a user's rows beyond their latest max_events_per_user fold into the prior.
    prior = _empty_prior(n_users)
    counts = np.bincount(code, minlength=n_users)
    from_end = np.cumsum(counts)[code] - 1 - np.arange(code.shape[0])
    old = from_end >= cfg.max_events_per_user
    if old.any():
        og, ot, otyp, odisc = code[old], t[old], typ[old], disc_u[old]
        np.maximum.at(prior["last_ts"], og, ot)
        buy = otyp == PURCHASE
        np.maximum.at(prior["last_purchase_ts"], og[buy], ot[buy])
        prior["n_purchases"] += np.bincount(og[buy], minlength=n_users)
        prior["n_discounted"] += np.bincount(og[buy & (odisc > 0)], minlength=n_users)
        prior["depth_units"] += _isum(og[buy], odisc[buy], n_users)
        hist = ~old
        code, t, typ, cat, price_u, disc_u = (a[hist]
                                              for a in (code, t, typ, cat, price_u, disc_u))
    stats = _statistics(cfg, now, n_users, code, t, typ, cat, price_u, disc_u, prior)
    return _finish(cfg, now, stats)[inverse]


__all__ = ["COLUMNS", "cold_start_vector", "columns_from_log", "features_batch"]
