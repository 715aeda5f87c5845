"""The decision log: one row per finalised decision, written as Parquet parts.

This is the input format of off-policy evaluation (promobandit.evaluate). Columns:

  decision_id str, ts float64 (decision time, unix seconds), user str (keyed hash,
  never the raw id), group str, offer int64 (arm index), offer_id str,
  propensity float64 (probability of the logged offer under the policy),
  action_probs list<float64> (the policy's distribution over all offers when known,
  else null), policy str, policy_version int64, context list<float64>,
  eligible list<bool>, items list<int64>, item_probs list<float64>,
  reward float64 (the objective, unscaled, in currency units for profit and
  revenue; null while unknown), clicked bool, purchased bool, revenue float64,
  discount_cost float64, defaulted bool (no feedback within the wait: default
  reward), feedback_at float64, shadow_price float64 (the budget multiplier when
  the decision was made).

Rows are buffered and written as ``part-NNNNN.parquet`` files in a folder every
``flush_rows`` rows and on ``close()``; a folder of parts reads back as one table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("decision_id", "string"),
    ("ts", "float64"),
    ("user", "string"),
    ("group", "string"),
    ("offer", "int64"),
    ("offer_id", "string"),
    ("propensity", "float64"),
    ("action_probs", "list<float64>"),
    ("policy", "string"),
    ("policy_version", "int64"),
    ("context", "list<float64>"),
    ("eligible", "list<bool>"),
    ("items", "list<int64>"),
    ("item_probs", "list<float64>"),
    ("reward", "float64"),
    ("clicked", "bool"),
    ("purchased", "bool"),
    ("revenue", "float64"),
    ("discount_cost", "float64"),
    ("defaulted", "bool"),
    ("feedback_at", "float64"),
    ("shadow_price", "float64"),
)


def schema() -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
             "bool": pa.bool_(), "list<float64>": pa.list_(pa.float64()),
             "list<bool>": pa.list_(pa.bool_()), "list<int64>": pa.list_(pa.int64())}
    return pa.schema([(name, types[t]) for name, t in COLUMNS])


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
        self._rows: dict[str, list[Any]] = {name: [] for name, _ in COLUMNS}
        self._n = 0
        self._part = len(list(self.path.glob("part-*.parquet")))
        self.rows_written = 0

    def append(self, row: dict[str, Any]) -> None:
        for name, _ in COLUMNS:
            self._rows[name].append(row[name])
        self._n += 1
        if self._n >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered rows as a new part (atomically: temporary file, then rename)."""
        if self._n == 0:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(self._rows, schema=schema())
        final = self.path / f"part-{self._part:05d}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        self._part += 1
        self.rows_written += self._n
        self._rows = {name: [] for name, _ in COLUMNS}
        self._n = 0

    def close(self) -> None:
        self.flush()

    @staticmethod
    def read(path: str | os.PathLike[str]) -> Any:
        """The whole log (a folder of parts or one Parquet file) as a pyarrow Table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = Path(path)
        files = sorted(p.glob("part-*.parquet")) if p.is_dir() else [p]
        if not files:
            return schema().empty_table()
        return pa.concat_tables([pq.read_table(f, schema=schema()) for f in files])
