"""Offline evaluation of recommenders on a time split (the baselines live in
``baselines``, the three-way comparison with the two-tower model in ``compare``).

Every model evaluated here is an *embedding recommender*: it gives an item matrix E (N x d)
and, for a user's history, a vector u, and ranks items by the raw dot product E @ u,
exactly what the native top-k softmax scorer does in serving. The baselines fit
that shape too: popularity is d = 1 (E = interaction counts, u = 1), implicit
matrix factorisation is d = factors.

Protocol (``evaluate``): the model sees each user's events before the cut
(``history``) and is asked for the top-k items; the relevant items are the
distinct items the user clicked, carted or bought after the cut (``target``).

    Recall@k = |top-k ∩ R| / min(k, |R|)
    NDCG@k   = DCG@k / IDCG@k,  DCG@k = sum over hits at rank r (0-based) of 1 / log2(r + 2),
               IDCG@k = sum_{r < min(k, |R|)} 1 / log2(r + 2)

Recall is normalised by min(k, |R|) (Liang et al. 2018, "Variational autoencoders for
collaborative filtering") so that a perfect ranking scores 1 even for users with more
than k relevant items. Both are averaged over evaluated users with equal weight.
With ``exclude_seen`` every item already in the user's history (any event type) is
removed from both the ranking and R: the task is then to find *new* items.
Ties in score rank the lower item id first.

NumPy only, and nothing here imports the two-tower model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .._validation import check_bool, check_int, check_range, check_seed
from .data import N_EVENT_TYPES, POSITIVE_EVENTS, InteractionLog


class EmbeddingRecommender(Protocol):
    """What ``evaluate`` needs: items and users as vectors scored by dot product."""

    def item_embeddings(self) -> np.ndarray:
        """(N, d) float32 item matrix E."""
        ...

    def users_from_log(self, history: InteractionLog, user_ids: np.ndarray) -> np.ndarray:
        """(B, d) float32 user vectors from each user's events in ``history``."""
        ...


def dense_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, k) indices of the k largest scores of each row, best first, ties by lowest index.

    A plain NumPy reference (a stable sort of every row, O(N log N) per user): the
    evaluation oracle, not a serving path.
    """
    k = check_int("k", k, 1)
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores: expected a 2-D array, got shape {s.shape}")
    return np.argsort(-s, axis=1, kind="stable")[:, : min(k, s.shape[1])]


def event_weight_vector(name: str, weights: Sequence[float]) -> np.ndarray:
    if len(weights) != N_EVENT_TYPES:
        raise ValueError(f"{name}: expected {N_EVENT_TYPES} weights (view, click, cart, "
                         f"purchase), got {len(weights)}")
    w = np.array([check_range(f"{name}[{i}]", x, 0.0) for i, x in enumerate(weights)])
    if not (w > 0).any():
        raise ValueError(f"{name}: expected at least one positive weight, got {tuple(weights)}")
    return w


def _pairs(log: InteractionLog, rows: np.ndarray | None = None) -> np.ndarray:
    """Sorted unique user * n_items + item codes of the selected rows."""
    u, i = log.user_ids, log.item_ids
    if rows is not None:
        u, i = u[rows], i[rows]
    return np.unique(u * np.int64(log.n_items) + i)


def evaluate(model: EmbeddingRecommender, history: InteractionLog, target: InteractionLog,
             k: int = 10, *, exclude_seen: bool = True,
             positive_events: Sequence[int] = POSITIVE_EVENTS, min_history: int = 1,
             max_users: int | None = None, seed: int = 0,
             user_chunk: int = 1024) -> dict[str, float]:
    """Recall@k and NDCG@k of ``model`` on the events of ``target`` (see the module doc).

    history: events the model may look at (everything before the cut).
    target: events after the cut; rows whose event is in ``positive_events`` are relevant.
    exclude_seen: drop items of the user's history from the ranking and from R.
    min_history: evaluate only users with at least this many history events (0 includes
        cold users, whose vectors come from the model's fallback).
    max_users: evaluate a random subset of this many users (drawn with ``seed``), for
        speed on large logs; None evaluates all.
    user_chunk: users scored per dense (chunk x N) block (bounds memory).
    Returns {"recall@k", "ndcg@k", "users"} (users: number evaluated; metrics are NaN
    when no user qualifies).
    """
    k = check_int("k", k, 1)
    exclude_seen = check_bool("exclude_seen", exclude_seen)
    min_history = check_int("min_history", min_history, 0)
    user_chunk = check_int("user_chunk", user_chunk, 1)
    seed = check_seed(seed, bits=63)
    if not history.same_catalogue(target):
        raise ValueError("target: has another catalogue or user space than history")
    pos = np.asarray(list(positive_events), dtype=np.int64)
    if pos.size == 0 or ((pos < 0) | (pos >= N_EVENT_TYPES)).any():
        raise ValueError(f"positive_events: expected event types in [0, {N_EVENT_TYPES}), "
                         f"got {list(positive_events)}")
    n_items = np.int64(history.n_items)

    relevant = _pairs(target, np.isin(target.events, pos))
    if exclude_seen:
        seen = _pairs(history)
        relevant = relevant[~np.isin(relevant, seen)]
    users, n_rel = np.unique(relevant // n_items, return_counts=True)
    n_hist = np.bincount(history.user_ids, minlength=history.n_users)
    keep = n_hist[users] >= min_history
    users, n_rel = users[keep], n_rel[keep]
    if max_users is not None and users.shape[0] > check_int("max_users", max_users, 1):
        pick = np.sort(np.random.default_rng(seed).choice(users.shape[0], max_users,
                                                          replace=False))
        users, n_rel = users[pick], n_rel[pick]
    name_r, name_n = f"recall@{k}", f"ndcg@{k}"
    if users.shape[0] == 0:
        return {name_r: float("nan"), name_n: float("nan"), "users": 0.0}

    items = np.ascontiguousarray(model.item_embeddings(), dtype=np.float32)
    if items.ndim != 2 or items.shape[0] != history.n_items:
        raise ValueError(f"model: item_embeddings() must be ({history.n_items}, d), "
                         f"got {items.shape}")
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discount)
    hist_codes = _pairs(history) if exclude_seen else None
    recall_sum = ndcg_sum = 0.0
    for start in range(0, users.shape[0], user_chunk):
        chunk = users[start:start + user_chunk]
        vecs = np.asarray(model.users_from_log(history, chunk), dtype=np.float32)
        if vecs.shape != (chunk.shape[0], items.shape[1]):
            raise ValueError(f"model: users_from_log() must be ({chunk.shape[0]}, "
                             f"{items.shape[1]}), got {vecs.shape}")
        scores = vecs @ items.T
        if hist_codes is not None:
            lo = np.searchsorted(hist_codes, chunk[0] * n_items)
            hi = np.searchsorted(hist_codes, (chunk[-1] + 1) * n_items)
            codes = hist_codes[lo:hi]
            rows = np.searchsorted(chunk, codes // n_items)
            ok = chunk[np.minimum(rows, chunk.shape[0] - 1)] == codes // n_items
            scores[rows[ok], (codes % n_items)[ok]] = -np.inf
        top = dense_topk(scores, k)
        hits = np.isin(chunk[:, None] * n_items + top, relevant)
        cap = np.minimum(n_rel[start:start + user_chunk], k)
        recall_sum += float((hits.sum(axis=1) / cap).sum())
        ndcg_sum += float(((hits * discount[: top.shape[1]]).sum(axis=1) / ideal[cap - 1]).sum())
    n = users.shape[0]
    return {name_r: recall_sum / n, name_n: ndcg_sum / n, "users": float(n)}


def comparison_table(models: Mapping[str, EmbeddingRecommender], history: InteractionLog,
                     target: InteractionLog, k: int = 10, **evaluate_kwargs: Any
                     ) -> dict[str, dict[str, float]]:
    """{model name: evaluate(model, history, target, k, **evaluate_kwargs)} for each model."""
    return {name: evaluate(m, history, target, k, **evaluate_kwargs) for name, m in models.items()}


__all__ = [
    "EmbeddingRecommender",
    "comparison_table",
    "dense_topk",
    "evaluate",
    "event_weight_vector",
]
