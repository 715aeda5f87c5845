"""The decision log: one row per finalised decision, written as Parquet parts.

This module is the one definition of the log's schema: ``DecisionRow`` (the engine
builds one per finalised decision), ``COLUMNS`` (name, Arrow type and meaning of every
column, in order, taken from DecisionRow's fields) and ``schema()`` (the pyarrow
schema). The engine writes it with ``DecisionLogWriter``; off-policy evaluation
(promobandit.evaluate.log) reads it by these names.

Rows are buffered and written as ``part-NNNNN.parquet`` files in a folder every
``flush_rows`` rows and on ``close()``; a folder of parts reads back as one table.
Writing needs pyarrow (the ``log`` extra).
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from .._extras import require
from ._pending import PendingDecision


def _column(arrow_type: str, doc: str) -> dict[str, str]:
    """A DecisionRow field's metadata: the column's Arrow type (as text) and meaning."""
    return {"type": arrow_type, "doc": doc}


@dataclasses.dataclass(slots=True)
class DecisionRow:
    """One finalised decision; its fields are the log's columns, in order (money in the
    catalogue's currency, times in unix seconds)."""

    decision_id: str = field(metadata=_column("string", "the decision id (Decision.id)"))
    ts: float = field(metadata=_column("float64", "decision time"))
    user: str = field(metadata=_column("string", "the user's keyed hash, never the raw id"))
    group: str = field(metadata=_column("string", "the fairness group"))
    offer: int = field(metadata=_column("int64", "the logged offer: arm index in [0, K)"))
    offer_id: str = field(metadata=_column("string", "the logged offer's id"))
    propensity: float = field(metadata=_column(
        "float64",
        "probability of the logged offer under the policy, in (0, 1] (NaN when not estimated)"))
    action_probs: list[float] | None = field(metadata=_column(
        "list<float64>", "the policy's distribution over the K offers when logged, else null"))
    policy: str = field(metadata=_column("string", "the policy's name"))
    policy_version: int = field(metadata=_column("int64", "updates the policy had when it decided"))
    context: list[float] | None = field(metadata=_column(
        "list<float64>", "the features the policy saw (null without a context)"))
    eligible: list[bool] = field(metadata=_column(
        "list<bool>", "K flags, True where the offer was allowed"))
    items: list[int] | None = field(metadata=_column(
        "list<int64>", "recommended item ids, best first (null without a recommender)"))
    item_probs: list[float] | None = field(metadata=_column(
        "list<float64>", "the items' softmax probabilities (null without a recommender)"))
    reward: float = field(metadata=_column(
        "float64",
        "the objective, unscaled (currency units for profit and revenue; null while unknown)"))
    clicked: bool = field(metadata=_column("bool", "a click (or purchase) was reported"))
    purchased: bool = field(metadata=_column("bool", "a purchase was reported"))
    revenue: float = field(metadata=_column(
        "float64", "what the shopper paid (0 without a purchase)"))
    discount_cost: float = field(metadata=_column("float64", "the discount given"))
    defaulted: bool = field(metadata=_column(
        "bool", "no feedback within the wait: the default reward"))
    feedback_at: float = field(metadata=_column("float64", "when the decision was finalised"))
    shadow_price: float = field(metadata=_column(
        "float64", "the budget multiplier when the decision was made"))

    @classmethod
    def finalised(cls, rec: PendingDecision, *, offer_id: str, policy: str, reward: float,
                  purchased: bool, revenue: float, discount_cost: float, defaulted: bool,
                  feedback_at: float) -> DecisionRow:
        """The row of a pending decision finalised with this outcome."""
        return cls(
            decision_id=rec.id, ts=rec.created, user=rec.user, group=rec.group,
            offer=rec.offer, offer_id=offer_id, propensity=rec.propensity,
            action_probs=None if rec.probs is None else rec.probs.tolist(),
            policy=policy, policy_version=rec.version,
            context=None if rec.context is None else rec.context.tolist(),
            eligible=rec.eligible.tolist(),
            items=None if rec.items is None else rec.items.tolist(),
            item_probs=None if rec.item_probs is None else rec.item_probs.tolist(),
            reward=reward, clicked=rec.clicked, purchased=purchased, revenue=revenue,
            discount_cost=discount_cost, defaulted=defaulted, feedback_at=feedback_at,
            shadow_price=rec.lam)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the log: its name, Arrow type (as text) and meaning."""

    name: str
    type: str
    doc: str


COLUMNS: tuple[Column, ...] = tuple(
    Column(f.name, f.metadata["type"], f.metadata["doc"]) for f in dataclasses.fields(DecisionRow))
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
# A row's values in column order, in one C call per row (the writer's hot path).
_row_values = operator.attrgetter(*COLUMN_NAMES)
_mapping_values = operator.itemgetter(*COLUMN_NAMES)


def schema() -> Any:
    """The log's pyarrow schema."""
    pa = require("pyarrow", "log", "the decision log")
    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
             "bool": pa.bool_(), "list<float64>": pa.list_(pa.float64()),
             "list<bool>": pa.list_(pa.bool_()), "list<int64>": pa.list_(pa.int64())}
    return pa.schema([(c.name, types[c.type]) for c in COLUMNS])


class DecisionLogWriter:
    """Buffers decision rows and writes them as Parquet parts in ``path`` (a folder).

    flush_rows: rows buffered before a part is written (memory vs. number of files).
    """

    def __init__(self, path: str | os.PathLike[str], flush_rows: int = 50_000) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows: expected an integer >= 1, got {flush_rows}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.flush_rows = flush_rows
        self._rows: list[tuple[Any, ...]] = []  # buffered rows, values in column order
        self._part = len(list(self.path.glob("part-*.parquet")))
        self.rows_written = 0

    def append(self, row: DecisionRow | Mapping[str, Any]) -> None:
        """Buffers one row: a DecisionRow, or a mapping with every column (extra keys are
        ignored)."""
        if isinstance(row, DecisionRow):
            self._rows.append(_row_values(row))
        else:
            missing = [name for name in COLUMN_NAMES if name not in row]
            if missing:
                raise ValueError(f"{missing[0]}: missing from the decision-log row "
                                 f"(expected every column of {list(COLUMN_NAMES)})")
            self._rows.append(_mapping_values(row))
        if len(self._rows) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered rows as a new part (atomically: temporary file, then rename)."""
        if not self._rows:
            return
        pa = require("pyarrow", "log", "the decision log")
        pq = require("pyarrow.parquet", "log", "the decision log")
        columns = dict(zip(COLUMN_NAMES, map(list, zip(*self._rows, strict=True)), strict=True))
        table = pa.table(columns, schema=schema())
        final = self.path / self._part_name()
        tmp = final.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        self._part += 1
        self.rows_written += len(self._rows)
        self._rows = []

    def close(self) -> None:
        self.flush()

    def _part_name(self) -> str:
        """The file name of the next part (writers sharing one folder name theirs apart;
        every name matches ``part-*.parquet``, which is what the readers take)."""
        return f"part-{self._part:05d}.parquet"

    @staticmethod
    def read(path: str | os.PathLike[str]) -> Any:
        """The whole log (a folder of parts or one Parquet file) as a pyarrow Table."""
        pa = require("pyarrow", "log", "the decision log")
        pq = require("pyarrow.parquet", "log", "the decision log")
        p = Path(path)
        files = sorted(p.glob("part-*.parquet")) if p.is_dir() else [p]
        if not files:
            return schema().empty_table()
        return pa.concat_tables([pq.read_table(f, schema=schema()) for f in files])


__all__ = ["COLUMNS", "COLUMN_NAMES", "Column", "DecisionLogWriter", "DecisionRow", "schema"]
