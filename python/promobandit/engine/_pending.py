"""Decisions waiting for feedback: the record, the store, and the one codec.

A ``PendingDecision`` holds what finalising a decision needs (the context the policy
saw, the prices quoted, the budget reservation, the feedback seen so far). The
``PendingStore`` keeps them in creation order, so the oldest is the next to expire.

The codec (``PendingStore.to_columns`` / ``from_columns``) stores the decisions column
by column: a JSON-able header and named NumPy arrays. The engine's state bytes hold the
header under ``"pending"`` and the arrays in its .npz with the prefix ``p_``; one JSON
object per decision made snapshots of 50k pending decisions take over a second.

Header: ``n`` (decisions), ``id``, ``user``, ``group`` (lists of str), ``events``
(lists of event ids), ``has_context``, and ``request`` (list of str: read only, from
states written when the idempotency tag of a decision lived on its pending record; the
engine now keeps its keys apart, for the whole feedback wait, and writes none here).
Arrays, one row per decision in creation order:
the float64 and int64 fields below (``FLOAT_FIELDS``, ``INT_FIELDS``), ``clicked``
(bool), ``clicked_item`` (int64, -1 for none), ``coupon_cost`` (float64, NaN for none),
``eligible`` (n, K) bool, ``context`` (n, d) float64 when ``has_context``,
``has_probs`` (bool) and ``probs`` (n, K) float64 (zeros where has_probs is False),
``lead_cut`` (float64, NaN where unused; optional when read), ``activated`` (bool) and
``fair_metric`` (float64) of deferred activation (absent in older states: all activated),
and the ragged ``items`` (int64) and ``item_probs`` (float64): concatenated, with
``items_len`` / ``item_probs_len`` (-1 for None).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

# Scalar fields stored as one array each (the order is the order of the .npz members).
FLOAT_FIELDS = ("created", "propensity", "max_cost", "expected_cost", "discount_cost",
                "paid_total", "list_total", "cost_total", "lam")
INT_FIELDS = ("offer", "version")


@dataclasses.dataclass(slots=True, eq=False)
class PendingDecision:
    """One decision waiting for feedback (money in the catalogue's currency).

    id, user (pseudonym), group; offer: the arm chosen, propensity its probability;
    probs: the full action distribution when logged, else None; eligible: (K,) the mask
    the policy chose under; context: (d,) the features it saw, or None; items,
    item_probs: the recommended items, or None; created: decision time (unix seconds);
    version: the policy's updates when it decided; lam: the budget's shadow price then.
    max_cost: the discount if bought (a coupon's face value); expected_cost: its
    expected value under the purchase-rate prior; discount_cost: the discount paid at
    the purchase (0 for a coupon, paid only on redemption); paid_total, list_total,
    cost_total: the basket's price under the offer, at list price, and its cost of goods.
    Feedback so far: events (event ids), clicked, clicked_item, coupon_cost (the cost
    of a coupon redeemed while the decision is pending, else None). request: the
    idempotency tag read from an older state ("" for none; see Engine.tag_request).
    """

    id: str
    user: str
    group: str
    offer: int
    propensity: float
    probs: np.ndarray | None
    eligible: np.ndarray
    context: np.ndarray | None
    items: np.ndarray | None
    item_probs: np.ndarray | None
    created: float
    version: int
    lam: float
    max_cost: float
    expected_cost: float
    discount_cost: float
    paid_total: float
    list_total: float
    cost_total: float
    events: set[str] = dataclasses.field(default_factory=set)
    clicked: bool = False
    clicked_item: int | None = None
    coupon_cost: float | None = None
    request: str = ""
    # Policies that model the response (traits.needs_quotes): log(list / paid) of the
    # basket's lead line under the chosen offer; NaN for the others.
    lead_cut: float = math.nan
    # Deferred activation: a decision made with defer_activation is not learnt from until
    # Engine.activate; its fairness metric is recorded then (it was not shown before).
    activated: bool = True
    fair_metric: float = 0.0


class PendingStore:
    """Pending decisions by id, oldest first."""

    def __init__(self, records: Iterator[PendingDecision] | list[PendingDecision] = ()) -> None:
        self._by_id: OrderedDict[str, PendingDecision] = OrderedDict((r.id, r) for r in records)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[PendingDecision]:
        return iter(self._by_id.values())

    def add(self, rec: PendingDecision) -> None:
        self._by_id[rec.id] = rec

    def get(self, decision_id: str) -> PendingDecision | None:
        return self._by_id.get(decision_id)

    def remove(self, rec: PendingDecision) -> None:
        del self._by_id[rec.id]

    def oldest(self) -> PendingDecision | None:
        """The decision made first (the next to expire), or None when there is none."""
        return next(iter(self._by_id.values()), None)

    # --- the codec -------------------------------------------------------------------------
    def to_columns(self, n_offers: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(header, arrays): the decisions column by column (see the module doc)."""
        recs = list(self._by_id.values())
        n, k = len(recs), n_offers
        meta: dict[str, Any] = {
            "n": n, "id": [r.id for r in recs], "user": [r.user for r in recs],
            "group": [r.group for r in recs], "events": [sorted(r.events) for r in recs]}
        if any(r.request for r in recs):  # absent otherwise: the bytes stay as they were
            meta["request"] = [r.request for r in recs]
        arrays: dict[str, np.ndarray] = {}
        for name in FLOAT_FIELDS:
            arrays[name] = np.array([getattr(r, name) for r in recs], dtype=np.float64)
        for name in INT_FIELDS:
            arrays[name] = np.array([getattr(r, name) for r in recs], dtype=np.int64)
        arrays["clicked"] = np.array([r.clicked for r in recs], dtype=bool)
        arrays["clicked_item"] = np.array(
            [-1 if r.clicked_item is None else r.clicked_item for r in recs], dtype=np.int64)
        arrays["coupon_cost"] = np.array(
            [np.nan if r.coupon_cost is None else r.coupon_cost for r in recs], dtype=np.float64)
        arrays["lead_cut"] = np.array([r.lead_cut for r in recs], dtype=np.float64)
        arrays["activated"] = np.array([r.activated for r in recs], dtype=bool)
        arrays["fair_metric"] = np.array([r.fair_metric for r in recs], dtype=np.float64)
        arrays["eligible"] = (np.stack([r.eligible for r in recs]) if n
                              else np.zeros((0, k), dtype=bool))
        has_ctx = n > 0 and recs[0].context is not None
        meta["has_context"] = has_ctx
        if has_ctx:
            arrays["context"] = np.stack([r.context for r in recs])
        has_probs = np.array([r.probs is not None for r in recs], dtype=bool)
        arrays["has_probs"] = has_probs
        probs = np.zeros((n, k))
        for i in np.flatnonzero(has_probs):
            probs[i] = recs[i].probs
        arrays["probs"] = probs
        for name, dtype in (("items", np.int64), ("item_probs", np.float64)):
            lens = np.array([-1 if getattr(r, name) is None else len(getattr(r, name))
                             for r in recs], dtype=np.int64)
            parts = [getattr(r, name) for r in recs if getattr(r, name) is not None]
            arrays[f"{name}_len"] = lens
            arrays[name] = (np.concatenate(parts).astype(dtype) if parts
                            else np.zeros(0, dtype=dtype))
        return meta, arrays

    @classmethod
    def from_columns(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> PendingStore:
        """The store that to_columns wrote. KeyError, IndexError, TypeError or ValueError
        on a malformed header or missing arrays (the engine reports them as an unreadable
        state)."""
        n = int(meta["n"])
        cols = {name: z[name].tolist() for name in (*FLOAT_FIELDS, *INT_FIELDS)}
        clicked = z["clicked"].tolist()
        citem = z["clicked_item"].tolist()
        ccost = z["coupon_cost"].tolist()
        has_probs = z["has_probs"].tolist()
        # Absent from states written before it existed.
        lead_cut = z["lead_cut"].tolist() if "lead_cut" in z else [math.nan] * n
        # States written before deferred activation have neither column: all activated.
        activated = z["activated"].tolist() if "activated" in z else [True] * n
        fair = z["fair_metric"].tolist() if "fair_metric" in z else [0.0] * n
        ragged = {}
        for name in ("items", "item_probs"):
            lens = z[f"{name}_len"]
            flat = z[name]
            ends = np.cumsum(np.maximum(lens, 0))
            starts = ends - np.maximum(lens, 0)
            ragged[name] = [None if lens[i] < 0 else flat[starts[i]:ends[i]].copy()
                            for i in range(n)]
        requests = meta.get("request") or [""] * n
        out = []
        for i in range(n):
            out.append(PendingDecision(
                id=meta["id"][i], user=meta["user"][i], group=meta["group"][i],
                offer=cols["offer"][i], propensity=cols["propensity"][i],
                probs=z["probs"][i].copy() if has_probs[i] else None,
                eligible=z["eligible"][i].copy(),
                context=z["context"][i].copy() if meta["has_context"] else None,
                items=ragged["items"][i], item_probs=ragged["item_probs"][i],
                created=cols["created"][i], version=cols["version"][i], lam=cols["lam"][i],
                max_cost=cols["max_cost"][i], expected_cost=cols["expected_cost"][i],
                discount_cost=cols["discount_cost"][i], paid_total=cols["paid_total"][i],
                list_total=cols["list_total"][i], cost_total=cols["cost_total"][i],
                events=set(meta["events"][i]), clicked=clicked[i],
                clicked_item=None if citem[i] < 0 else citem[i],
                coupon_cost=None if math.isnan(ccost[i]) else ccost[i],
                request=str(requests[i]), lead_cut=lead_cut[i],
                activated=activated[i], fair_metric=fair[i]))
        return cls(out)


__all__ = ["FLOAT_FIELDS", "INT_FIELDS", "PendingDecision", "PendingStore"]
