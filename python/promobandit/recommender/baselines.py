"""The two baseline recommenders, both embedding recommenders (see ``metrics``):
popularity (d = 1: E = interaction counts, u = 1) and implicit matrix factorisation by
weighted ALS (d = factors). NumPy only."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .._validation import check_int, check_range, check_seed, int_array
from .data import InteractionLog
from .metrics import event_weight_vector


class PopularityRecommender:
    """Ranks every user's items by how often they were interacted with in the training log.

    score(item) = sum over training events on the item of event_weights[event]; the
    default (0, 1, 1, 1) counts clicks, carts and purchases. As an embedding
    recommender: E = scores as an (N, 1) column, u = [1] for every user.
    """

    def __init__(self, event_weights: Sequence[float] = (0.0, 1.0, 1.0, 1.0)) -> None:
        self.event_weights = event_weight_vector("event_weights", event_weights)
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
        check_range("regularization", self.regularization, 0.0)
        check_range("alpha", self.alpha, 0.0)
        check_int("iterations", self.iterations, 1)
        event_weight_vector("event_weights", self.event_weights)
        object.__setattr__(self, "event_weights", tuple(float(x) for x in self.event_weights))
        check_range("init_std", self.init_std, 0.0, lo_open=True)
        check_seed(self.seed, bits=63)


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


__all__ = ["ALSConfig", "ImplicitALS", "PopularityRecommender"]
