"""Offline evaluation of recommenders on a time split, and the two baselines.

Every model here is an *embedding recommender*: it gives an item matrix E (N x d)
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

NumPy only; the two-tower model is imported lazily by ``compare_recommenders``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._checks import check_bool, check_float, check_int, check_seed, int_array
from .data import N_EVENT_TYPES, POSITIVE_EVENTS, InteractionLog

if TYPE_CHECKING:
    from .two_tower import TwoTowerConfig


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


def _event_weight_vector(name: str, weights: Sequence[float]) -> np.ndarray:
    if len(weights) != N_EVENT_TYPES:
        raise ValueError(f"{name}: expected {N_EVENT_TYPES} weights (view, click, cart, "
                         f"purchase), got {len(weights)}")
    w = np.array([check_float(f"{name}[{i}]", x, 0.0) for i, x in enumerate(weights)])
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
    seed = check_seed(seed)
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


# --- baselines ----------------------------------------------------------------------------

class PopularityRecommender:
    """Ranks every user's items by how often they were interacted with in the training log.

    score(item) = sum over training events on the item of event_weights[event]; the
    default (0, 1, 1, 1) counts clicks, carts and purchases. As an embedding
    recommender: E = scores as an (N, 1) column, u = [1] for every user.
    """

    def __init__(self, event_weights: Sequence[float] = (0.0, 1.0, 1.0, 1.0)) -> None:
        self.event_weights = _event_weight_vector("event_weights", event_weights)
        self.scores: np.ndarray | None = None

    def fit(self, log: InteractionLog) -> PopularityRecommender:
        """Counts the (weighted) interactions of every item in ``log``; returns self."""
        w = self.event_weights[log.events]
        self.scores = np.bincount(log.item_ids, weights=w, minlength=log.n_items)
        return self

    def item_embeddings(self) -> np.ndarray:
        if self.scores is None:
            raise RuntimeError("PopularityRecommender: call fit() first")
        return np.ascontiguousarray(self.scores[:, None], dtype=np.float32)

    def users_from_log(self, history: InteractionLog, user_ids: np.ndarray) -> np.ndarray:
        return np.ones((np.asarray(user_ids).shape[0], 1), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class ALSConfig:
    """Weighted ALS for implicit feedback (Hu, Koren & Volinsky 2008).

    Each (user, item) pair gets r = sum of event_weights over the user's events on the
    item; preference p = 1 where r > 0, confidence c = 1 + alpha * r (0 preference,
    confidence 1 elsewhere). Minimises sum c (p - x_u . y_i)^2 + regularization *
    (|x|^2 + |y|^2) by alternating exact least-squares solves.

    factors: embedding dimension d.
    regularization: L2 weight lambda (>= 0).
    alpha: confidence slope per unit of event weight (>= 0).
    iterations: full alternations (user solve + item solve).
    event_weights: (view, click, cart, purchase) interaction weights; the default
        trains on the same positives as the two-tower loss (views count 0).
    init_std: standard deviation of the normal initial item factors.
    seed: seed of the initial factors (NumPy PCG64); the fit is otherwise deterministic.
    """

    factors: int = 32
    regularization: float = 1.0
    alpha: float = 10.0
    iterations: int = 10
    event_weights: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    init_std: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("factors", self.factors, 1)
        check_float("regularization", self.regularization, 0.0)
        check_float("alpha", self.alpha, 0.0)
        check_int("iterations", self.iterations, 1)
        _event_weight_vector("event_weights", self.event_weights)
        object.__setattr__(self, "event_weights", tuple(float(x) for x in self.event_weights))
        check_float("init_std", self.init_std, 0.0, lo_open=True)
        check_seed(self.seed)


class ImplicitALS:
    """Implicit matrix factorisation by weighted ALS (see ALSConfig), in NumPy.

    Cost per iteration: O(nnz d^2 + (U + N) d^3) with one d x d solve per user and
    per item (a Python loop: fine for the baseline's sizes, not for millions of users).
    User vectors for ``users_from_log`` are *folded in*: solved exactly from the user's
    history with the item factors fixed, the same step as an ALS user update, so
    users unseen in training (or with newer events) are handled like the two-tower's.
    """

    def __init__(self, config: ALSConfig | None = None) -> None:
        self.config = ALSConfig() if config is None else config
        if not isinstance(self.config, ALSConfig):
            raise ValueError(f"config: expected an ALSConfig, got {type(self.config).__name__}")
        self._w = np.asarray(self.config.event_weights)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def _matrix(self, log: InteractionLog, n_rows: int, by_user: bool) -> tuple[
            np.ndarray, np.ndarray, np.ndarray]:
        """CSR (indptr, cols, r) of summed interaction weights, rows = users or items."""
        w = self._w[log.events]
        keep = w > 0
        rows = (log.user_ids if by_user else log.item_ids)[keep]
        cols = (log.item_ids if by_user else log.user_ids)[keep]
        n_cols = log.n_items if by_user else log.n_users
        codes, inv = np.unique(rows * np.int64(n_cols) + cols, return_inverse=True)
        r = np.bincount(inv.reshape(-1), weights=w[keep], minlength=codes.shape[0])
        indptr = np.searchsorted(codes // n_cols, np.arange(n_rows + 1))
        return indptr, codes % n_cols, r

    def _solve(self, fixed: np.ndarray, indptr: np.ndarray, cols: np.ndarray,
               r: np.ndarray) -> np.ndarray:
        cfg = self.config
        d = fixed.shape[1]
        gram = fixed.T @ fixed + cfg.regularization * np.eye(d)
        out = np.zeros((indptr.shape[0] - 1, d))
        for row in range(indptr.shape[0] - 1):
            a, b = indptr[row], indptr[row + 1]
            if a == b:
                continue  # no interactions: the regularised solution is 0
            y = fixed[cols[a:b]]
            c = 1.0 + cfg.alpha * r[a:b]
            out[row] = np.linalg.solve(gram + (y.T * (c - 1.0)) @ y, y.T @ c)
        return out

    def fit(self, log: InteractionLog) -> ImplicitALS:
        """Fits user and item factors on ``log``; returns self."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        items = cfg.init_std * rng.standard_normal((log.n_items, cfg.factors))
        by_user = self._matrix(log, log.n_users, by_user=True)
        by_item = self._matrix(log, log.n_items, by_user=False)
        users = np.zeros((log.n_users, cfg.factors))
        for _ in range(cfg.iterations):
            users = self._solve(items, *by_user)
            items = self._solve(users, *by_item)
        # A last user half-step makes user_factors the exact fold-in for the final items,
        # so training users and users_from_log agree.
        users = self._solve(items, *by_user)
        self.user_factors, self.item_factors = users, items
        return self

    def item_embeddings(self) -> np.ndarray:
        if self.item_factors is None:
            raise RuntimeError("ImplicitALS: call fit() first")
        return np.ascontiguousarray(self.item_factors, dtype=np.float32)

    def users_from_log(self, history: InteractionLog, user_ids: np.ndarray) -> np.ndarray:
        """(B, factors) float32 fold-in user vectors from each user's events in history."""
        if self.item_factors is None:
            raise RuntimeError("ImplicitALS: call fit() first")
        users = int_array("user_ids", user_ids, lo=0, hi=history.n_users)
        sub = history.select(np.isin(history.user_ids, users))
        indptr, cols, r = self._matrix(sub, history.n_users, by_user=True)
        starts, ends = indptr[users], indptr[users + 1]
        lens = ends - starts
        take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]
                              ) if lens.sum() else np.zeros(0, np.int64)
        local = np.r_[0, np.cumsum(lens)]
        out = self._solve(self.item_factors, local, cols[take], r[take])
        return out.astype(np.float32)


# --- the comparison -----------------------------------------------------------------------

def comparison_table(models: Mapping[str, EmbeddingRecommender], history: InteractionLog,
                     target: InteractionLog, k: int = 10, **evaluate_kwargs: Any
                     ) -> dict[str, dict[str, float]]:
    """{model name: evaluate(model, history, target, k, **evaluate_kwargs)} for each model."""
    return {name: evaluate(m, history, target, k, **evaluate_kwargs) for name, m in models.items()}


def compare_recommenders(train: InteractionLog, validation: InteractionLog,
                         test: InteractionLog, k: int = 10, *,
                         two_tower_config: TwoTowerConfig | None = None,
                         als_config: ALSConfig | None = None, exclude_seen: bool = True,
                         progress: bool | None = False) -> dict[str, dict[str, float]]:
    """Fits the two-tower model, popularity and implicit ALS on ``train`` and compares them.

    The two-tower model early-stops on ``validation``; every model is then evaluated on
    ``test`` with train + validation as the users' history (see ``evaluate``). Returns
    {"two_tower" | "popularity" | "als": {"recall@k", "ndcg@k", "users", "fit_seconds"}}
    (fit_seconds: wall-clock seconds of the fit on this machine).
    """
    from .two_tower import TwoTowerModel  # torch only when the two-tower is asked for

    history = InteractionLog.concatenate([train, validation])
    fitted: dict[str, EmbeddingRecommender] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    fitted["two_tower"] = TwoTowerModel.fit(train, validation, two_tower_config,
                                            progress=progress)
    seconds["two_tower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitted["popularity"] = PopularityRecommender().fit(train)
    seconds["popularity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitted["als"] = ImplicitALS(als_config).fit(train)
    seconds["als"] = time.perf_counter() - t0
    table = comparison_table(fitted, history, test, k, exclude_seen=exclude_seen)
    for name, row in table.items():
        row["fit_seconds"] = seconds[name]
    return table


__all__ = [
    "ALSConfig",
    "EmbeddingRecommender",
    "ImplicitALS",
    "PopularityRecommender",
    "compare_recommenders",
    "comparison_table",
    "dense_topk",
    "evaluate",
]
