"""The decision log: what the engine decided, with which probability, and what it earned.

The engine writes one Parquet row per decision; the columns are defined once, in
``promobandit.engine.decision_log`` (``COLUMNS``, ``schema()``), and this module reads
them by those names (``READ_COLUMNS``). ``read_decision_log`` turns such a file, a pyarrow
Table or a pandas DataFrame into a validated ``DecisionLog`` of dense NumPy
arrays; ``DecisionLog.from_arrays`` does the same for arrays a caller already
holds (simulations, other log formats such as the Open Bandit Dataset).

Validation fails loudly at the edge: every problem raises ``ValueError``
naming the field, before any estimate is computed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import require
from ..engine.decision_log import COLUMN_NAMES

# Columns read into DecisionLog.extra when present (identifiers and metadata).
METADATA_COLUMNS = ("decision_id", "ts", "user", "group", "offer_id", "policy", "policy_version")
# The decision-log columns evaluation reads, in the schema's order: the logged offer, its
# propensity and reward, what the logging policy saw, and the metadata. The outcome
# details (clicked, revenue, ...) and the recommended items are not needed.
READ_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMN_NAMES
    if c in ("offer", "propensity", "reward", "context", "action_probs", "eligible",
             *METADATA_COLUMNS))

# Tolerance on probabilities that must sum to one or agree with each other: float64
# rounding of K probabilities written by another process stays far below it.
PROB_ATOL = 1e-6


def _as_1d(obj: Any, field: str, dtype: type, n: int | None) -> np.ndarray:
    try:
        a = np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: expected a 1-D array, got {type(obj).__name__}") from exc
    if a.ndim != 1:
        raise ValueError(f"{field}: expected a 1-D array, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{field}: expected {n} rows (the length of offer/actions), "
                         f"got {a.shape[0]}")
    if dtype is np.int64:
        if a.dtype.kind == "f":
            if a.size and not (np.isfinite(a).all() and (a == np.round(a)).all()):
                raise ValueError(f"{field}: expected integers, got non-integral floats")
        elif a.dtype.kind not in "iu" and not (a.dtype.kind == "b" and a.size == 0):
            raise ValueError(f"{field}: expected integers, got dtype {a.dtype}")
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind not in "iufb":
        raise ValueError(f"{field}: expected numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


def _as_2d(obj: Any, field: str, n: int, k: int | None, kind: str) -> np.ndarray:
    try:
        a = np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: expected a 2-D array with {n} rows") from exc
    if a.ndim == 1 and field == "contexts" and a.shape[0] == n:
        a = a[:, None]  # one feature per row
    if a.ndim != 2 or a.shape[0] != n or (k is not None and a.shape[1] != k):
        cols = "d" if k is None else str(k)
        raise ValueError(f"{field}: expected shape ({n}, {cols}), got {a.shape}")
    if kind == "bool":
        if a.dtype.kind != "b":
            raise ValueError(f"{field}: expected booleans, got dtype {a.dtype}")
        return np.ascontiguousarray(a)
    if a.dtype.kind not in "iufb":
        raise ValueError(f"{field}: expected numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class DecisionLog:
    """Validated logged bandit feedback, one row per decision (n rows, K offers).

    actions: (n,) int64 logged offer index in [0, K).
    propensities: (n,) float64 probability in (0, 1] that the logging policy chose
        the logged offer.
    rewards: (n,) float64 objective of the decision (currency units, e.g. profit).
    n_actions: K, the number of offers.
    contexts: (n, d) float64 features the policies saw, or None.
    action_probs: (n, K) float64 full logging distribution where known (NaN rows
        where not), or None when unknown for every row.
    eligible: (n, K) bool, True where the offer was allowed, or None (all allowed).
    extra: metadata columns (decision ids, timestamps, users, ...) as arrays.
    """

    actions: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    n_actions: int
    contexts: np.ndarray | None = None
    action_probs: np.ndarray | None = None
    eligible: np.ndarray | None = None
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def n_rows(self) -> int:
        return len(self)

    @classmethod
    def from_arrays(cls, actions: Any, propensities: Any, rewards: Any, *,
                    n_actions: int | None = None, contexts: Any = None,
                    action_probs: Any = None, eligible: Any = None,
                    extra: Mapping[str, Any] | None = None,
                    check_action_probs: bool = True) -> DecisionLog:
        """A validated log from arrays (see the class docstring for shapes and units).

        n_actions: K; inferred from action_probs / eligible, else max(actions) + 1.
        check_action_probs: check that action_probs rows sum to one, are zero on
            ineligible offers and agree with ``propensities`` on the logged offer
            (within PROB_ATOL). Turn off only for logs known to be consistent.
        Raises ValueError naming the first bad field.
        """
        a = _as_1d(actions, "actions", np.int64, None)
        n = a.shape[0]
        if n == 0:
            raise ValueError("actions: the log has no rows")
        p = _as_1d(propensities, "propensities", np.float64, n)
        r = _as_1d(rewards, "rewards", np.float64, n)
        bad = ~((p > 0.0) & (p <= 1.0))  # also catches NaN
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"propensities: expected values in (0, 1], got {p[i]!r} at row {i}")
        if not np.isfinite(r).all():
            i = _first_bad(~np.isfinite(r))
            raise ValueError(f"rewards: expected finite values, got {r[i]!r} at row {i} "
                             "(rows still waiting for feedback must be dropped or filled)")
        ap = None if action_probs is None else _as_2d(action_probs, "action_probs", n, None,
                                                       "float")
        el = None if eligible is None else _as_2d(eligible, "eligible", n, None, "bool")
        widths = {name: m.shape[1] for name, m in (("action_probs", ap), ("eligible", el))
                  if m is not None}
        if n_actions is not None:
            if isinstance(n_actions, bool) or not isinstance(n_actions, (int, np.integer)) \
                    or int(n_actions) < 1:
                raise ValueError(f"n_actions: expected a positive integer, got {n_actions!r}")
            k = int(n_actions)
        elif widths:
            k = next(iter(widths.values()))
        else:
            k = int(a.max()) + 1
        for name, w in widths.items():
            if w != k:
                raise ValueError(f"{name}: expected {k} columns (one per offer), got {w}")
        if a.min() < 0 or a.max() >= k:
            i = _first_bad((a < 0) | (a >= k))
            raise ValueError(f"actions: expected offer indices in [0, {k}), got {a[i]} at row {i}")
        ctx = None
        if contexts is not None:
            ctx = _as_2d(contexts, "contexts", n, None, "float")
            if not np.isfinite(ctx).all():
                i = _first_bad(~np.isfinite(ctx)) // max(ctx.shape[1], 1)
                raise ValueError(f"contexts: expected finite values, found NaN/inf in row {i}")
        rows = np.arange(n)
        if el is not None:
            if not el[rows, a].all():
                i = _first_bad(~el[rows, a])
                raise ValueError(f"eligible: the logged offer {a[i]} of row {i} is marked "
                                 "ineligible")
        if ap is not None:
            known = ~np.isnan(ap).any(axis=1)
            partly = np.isnan(ap).any(axis=1) & ~np.isnan(ap).all(axis=1)
            if partly.any():
                raise ValueError(f"action_probs: row {_first_bad(partly)} is partly missing "
                                 "(give all K probabilities or none)")
            if not known.any():
                ap = None
            elif check_action_probs:
                apk = ap[known]
                if not (np.isfinite(apk).all() and (apk >= 0.0).all() and (apk <= 1.0).all()):
                    raise ValueError("action_probs: expected probabilities in [0, 1]")
                sums = apk.sum(axis=1)
                if np.abs(sums - 1.0).max() > PROB_ATOL:
                    i = int(np.flatnonzero(known)[_first_bad(np.abs(sums - 1.0) > PROB_ATOL)])
                    raise ValueError(f"action_probs: row {i} sums to {ap[i].sum():.9g}, "
                                     "expected 1")
                if el is not None and (ap[known] * ~el[known]).max() > PROB_ATOL:
                    raise ValueError("action_probs: positive probability on an ineligible offer")
                diff = np.abs(ap[rows[known], a[known]] - p[known])
                if diff.max() > PROB_ATOL:
                    i = int(rows[known][_first_bad(diff > PROB_ATOL)])
                    raise ValueError(f"propensities: row {i} has propensity {p[i]!r} but "
                                     f"action_probs gives {ap[i, a[i]]!r} for its offer")
        ex: dict[str, np.ndarray] = {}
        for key, value in (extra or {}).items():
            arr = np.asarray(value)
            if arr.ndim < 1 or arr.shape[0] != n:
                raise ValueError(f"{key}: expected {n} rows, got shape {arr.shape}")
            ex[key] = arr
        return cls(a, p, r, k, ctx, ap, el, ex)

    def subset(self, rows: Any) -> DecisionLog:
        """The log restricted to some rows (a boolean mask or indices)."""
        idx = np.asarray(rows)

        def take(m: np.ndarray | None) -> np.ndarray | None:
            return None if m is None else np.ascontiguousarray(m[idx])

        ap = take(self.action_probs)
        if ap is not None and np.isnan(ap).all():
            ap = None
        return DecisionLog(self.actions[idx], self.propensities[idx], self.rewards[idx],
                           self.n_actions, take(self.contexts), ap, take(self.eligible),
                           {k: v[idx] for k, v in self.extra.items()})

    def to_frame(self) -> Any:
        """A pandas DataFrame in the decision-log column names (list columns as lists)."""
        pd = require("pandas", "evaluate", "DecisionLog.to_frame")

        data: dict[str, Any] = {k: v for k, v in self.extra.items()}
        data["offer"] = self.actions
        data["propensity"] = self.propensities
        data["reward"] = self.rewards
        if self.contexts is not None:
            data["context"] = list(self.contexts)
        if self.eligible is not None:
            data["eligible"] = list(self.eligible)
        if self.action_probs is not None:
            data["action_probs"] = [None if np.isnan(row[0]) else row for row in self.action_probs]
        return pd.DataFrame(data)


def _list_column(table: Any, name: str, n: int, dtype: Any) -> np.ndarray | None:
    """A list<...> column of equal-length lists as an (n, width) array; None if all null.

    Null rows (allowed for action_probs only) come back as NaN rows.
    """
    pa = require("pyarrow", "evaluate", "reading a decision log")
    pc = require("pyarrow.compute", "evaluate", "reading a decision log")

    col = table.column(name)
    if col.null_count == len(col):
        return None
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise ValueError(f"{name}: expected a list column, got Arrow type {arr.type}")
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if not valid.all() and dtype is bool:
        raise ValueError(f"{name}: null in row {_first_bad(~valid)} (expected a list in every row)")
    widths = np.unique(np.asarray(lengths[valid], dtype=np.int64))
    if widths.size != 1:
        raise ValueError(f"{name}: expected lists of one length in every row, got lengths "
                         f"{widths[:5].tolist()}")
    width = int(widths[0])
    flat = arr.flatten()  # skips null list slots
    if flat.null_count:
        raise ValueError(f"{name}: null entries inside the lists")
    values = flat.to_numpy(zero_copy_only=False)
    if dtype is bool:
        if values.dtype.kind != "b":
            raise ValueError(f"{name}: expected booleans, got Arrow type {flat.type}")
        return values.reshape(n, width)
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected numbers, got Arrow type {flat.type}")
    values = values.astype(np.float64, copy=False)
    if valid.all():
        return values.reshape(n, width)
    out = np.full((n, width), np.nan)
    out[valid] = values.reshape(-1, width)
    return out


def read_decision_log(source: Any, *, n_actions: int | None = None,
                      missing_reward: str | float = "error",
                      check_action_probs: bool = True) -> DecisionLog:
    """Reads and validates a decision log.

    source: a Parquet file or a folder of Parquet parts (the engine's
        ``part-NNNNN.parquet``; str or Path), a pyarrow Table, a pandas DataFrame
        in the decision-log schema (promobandit.engine.decision_log; only
        ``READ_COLUMNS`` are read, outcome columns such as clicked or revenue are
        ignored), or a mapping of column -> array.
    n_actions: K; by default the length of the action_probs / eligible lists, else
        max(offer) + 1 (a log in which the last offers were never chosen would
        then undercount K: pass it).
    missing_reward: what to do with rows whose reward is null (no feedback yet):
        "error" (default) raises, "drop" removes those rows, a number fills them
        with that reward (the engine's default reward after the feedback window).
        Dropping is unbiased only if feedback delay does not depend on the offer.
    check_action_probs: see DecisionLog.from_arrays.
    Returns a DecisionLog; raises ValueError naming the first missing or bad column.
    """
    pa = require("pyarrow", "evaluate", "reading a decision log")
    if isinstance(source, (str, Path)):
        pq = require("pyarrow.parquet", "evaluate", "reading a decision log")

        path = Path(source)
        if not path.exists():
            raise ValueError(f"log_path: no such file or folder {str(path)!r}")
        # The engine writes a folder of part-NNNNN.parquet files (unfinished parts end in
        # .tmp and are skipped); a single file works too.
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"log_path: no .parquet files in {str(path)!r}")
        parts = []
        for f in files:
            names = pq.read_schema(f).names
            parts.append(pq.read_table(f, columns=[c for c in READ_COLUMNS if c in names]))
        try:
            table = pa.concat_tables(parts, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"log_path: the parts of {str(path)!r} have incompatible "
                             f"schemas ({exc})") from exc
    elif isinstance(source, pa.Table):
        table = source
    elif isinstance(source, Mapping):
        table = pa.table({k: (list(v) if isinstance(v, np.ndarray) and v.ndim > 1 else v)
                          for k, v in source.items()})
    else:
        pd = sys.modules.get("pandas")  # a DataFrame can only come from a loaded pandas
        if pd is not None and isinstance(source, pd.DataFrame):
            table = pa.Table.from_pandas(source, preserve_index=False)
        else:
            raise ValueError(f"source: expected a Parquet path, a pyarrow Table or a pandas "
                             f"DataFrame, got {type(source).__name__}")
    for required in ("offer", "propensity", "reward"):
        if required not in table.column_names:
            raise ValueError(f"{required}: missing column (the decision log needs offer, "
                             "propensity and reward)")
    n = table.num_rows
    if n == 0:
        raise ValueError("offer: the log has no rows")

    reward_col = table.column("reward")
    keep: np.ndarray | None = None
    rewards = reward_col.to_numpy(zero_copy_only=False).astype(np.float64)
    if reward_col.null_count:
        null = reward_col.is_null().to_numpy(zero_copy_only=False)
        if isinstance(missing_reward, str):
            if missing_reward == "drop":
                keep = ~null
            elif missing_reward == "error":
                raise ValueError(f"reward: {int(null.sum())} of {n} rows have no reward yet "
                                 "(null); pass missing_reward='drop' or a fill value")
            else:
                raise ValueError(f"missing_reward: expected 'error', 'drop' or a number, got "
                                 f"{missing_reward!r}")
        else:
            fill = float(missing_reward)
            if not math.isfinite(fill):
                raise ValueError(f"missing_reward: expected a finite fill value, got {fill}")
            rewards = np.where(null, fill, rewards)

    def col(name: str) -> np.ndarray:
        c = table.column(name)
        if c.null_count:
            raise ValueError(f"{name}: {c.null_count} null values (expected a value in every row)")
        return c.to_numpy(zero_copy_only=False)

    arrays: dict[str, Any] = {
        "actions": col("offer"),
        "propensities": col("propensity"),
    }
    contexts = _list_column(table, "context", n, float) if "context" in table.column_names \
        else None
    action_probs = _list_column(table, "action_probs", n, float) \
        if "action_probs" in table.column_names else None
    eligible = _list_column(table, "eligible", n, bool) if "eligible" in table.column_names \
        else None
    if contexts is not None and np.isnan(contexts).any():
        raise ValueError("context: null lists (expected features in every row)")
    extra = {name: table.column(name).to_numpy(zero_copy_only=False)
             for name in METADATA_COLUMNS if name in table.column_names}
    if keep is not None:
        if not keep.any():
            raise ValueError("reward: every row is still waiting for feedback (null)")
        sel = np.flatnonzero(keep)
        arrays = {k: v[sel] for k, v in arrays.items()}
        rewards = rewards[sel]
        contexts = None if contexts is None else contexts[sel]
        action_probs = None if action_probs is None else action_probs[sel]
        eligible = None if eligible is None else eligible[sel]
        extra = {k: v[sel] for k, v in extra.items()}
    return DecisionLog.from_arrays(arrays["actions"], arrays["propensities"], rewards,
                                   n_actions=n_actions, contexts=contexts,
                                   action_probs=action_probs, eligible=eligible, extra=extra,
                                   check_action_probs=check_action_probs)


def as_decision_log(log: Any) -> DecisionLog:
    """A DecisionLog from a DecisionLog, a Parquet path, a Table/DataFrame, or a mapping of
    arrays with keys actions, propensities, rewards (and optional contexts, n_actions,
    action_probs, eligible)."""
    if isinstance(log, DecisionLog):
        return log
    if isinstance(log, Mapping) and "actions" in log:
        kw = dict(log)
        try:
            return DecisionLog.from_arrays(kw.pop("actions"), kw.pop("propensities"),
                                           kw.pop("rewards"), **kw)
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]}: missing from the log mapping") from exc
        except TypeError as exc:
            raise ValueError(f"log: unexpected keys in the log mapping ({exc})") from exc
    return read_decision_log(log)
