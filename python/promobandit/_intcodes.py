"""Integer keys -> codes for whole arrays, without hashing: a dense table over the keys'
range when that range is small, else the keys sorted and a binary search. Used wherever
integer labels (user ids, arm labels) are mapped to positions row by row."""

from __future__ import annotations

import numpy as np


class IntCodes:
    """codes(query)[i] = vals[j] where keys[j] == query[i], else -1.

    keys: (n,) distinct integers; vals: (n,) int64 codes (default 0..n-1).
    dense_limit: the largest range max(keys) - min(keys) + 1 for which a dense table (one
        int64 slot per value in the range) is built; above it, a binary search over the
        sorted keys. Callers size it to the memory they accept (a few slots per key or per
        row looked up)."""

    __slots__ = ("keys", "lo", "table", "vals")

    def __init__(self, keys: np.ndarray, vals: np.ndarray | None = None, *,
                 dense_limit: int) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        vals = np.arange(len(keys), dtype=np.int64) if vals is None else \
            np.asarray(vals, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys, self.vals = keys[order], vals[order]
        self.lo = int(self.keys[0]) if len(keys) else 0
        self.table: np.ndarray | None = None
        if len(keys) and int(self.keys[-1]) - self.lo + 1 <= dense_limit:
            self.table = np.full(int(self.keys[-1]) - self.lo + 1, -1, dtype=np.int64)
            self.table[self.keys - self.lo] = self.vals

    def codes(self, query: np.ndarray) -> np.ndarray:
        """(m,) int64 codes of an integer array, -1 where a value is not a key."""
        if not len(self.keys):
            return np.full(query.shape[0], -1, dtype=np.int64)
        table = self.table
        if table is not None:
            if query.size:
                lo, hi = int(query.min()), int(query.max())
                if lo >= self.lo and hi < self.lo + len(table):  # every row in the table
                    return table[query - self.lo] if self.lo else table[query]
            inside = (query >= self.lo) & (query < self.lo + len(table))
            out = np.full(query.shape[0], -1, dtype=np.int64)
            out[inside] = table[query[inside] - self.lo]
            return out
        pos = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return np.where(self.keys[pos] == query, self.vals[pos], -1).astype(np.int64)
