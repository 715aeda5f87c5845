"""The recommendation step of a decision: the k best items for a user, with exploration.

``ItemRecommender`` scores the item matrix E (N x d, from the PyTorch recommender or
any embedding model) against a user vector u with the native top-k softmax scorer,
and returns the k best items and their probabilities under the full softmax.

Exploration (``ExplorationConfig``): a linear Thompson sampling head over the
embedding space. A shared Bayesian linear model w predicts a click on item i from
its embedding E_i (prior N(0, I / ridge), noise scale v). Each request draws
w~ ~ N(w_hat, v^2 A^-1) and scores items with u + w~, so the list moves towards items
that are clicked more than u predicts, in real time, and keeps trying uncertain
directions. Shown items update the model when the decision is finalised (clicked
item: 1, the other shown items: 0).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import rng as _rng
from .._validation import check_int, check_range
from ..offers import Basket
from ..scoring import topk_softmax

UserVectorFn = Callable[[Sequence[int]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ExplorationConfig:
    """The linear Thompson sampling head over item embeddings.

    ridge: prior precision of w (larger: explore less until evidence arrives).
    v: posterior scale of the draw (0 turns exploration off but keeps learning).
    refresh_every: updates between refreshes of the sampling factor chol(A^-1).
    """

    ridge: float = 1.0
    v: float = 0.1
    refresh_every: int = 32

    def __post_init__(self) -> None:
        check_range("ridge", self.ridge, 0.0, lo_open=True)
        check_range("v", self.v, 0.0)
        check_int("refresh_every", self.refresh_every, 1)


class EmbeddingExplorer:
    """Bayesian linear regression of clicks on item embeddings, sampled per request."""

    def __init__(self, dim: int, config: ExplorationConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.A = config.ridge * np.eye(dim)
        self.b = np.zeros(dim)
        self.w = np.zeros(dim)
        self._chol = np.eye(dim) / np.sqrt(config.ridge)  # chol(A^-1)
        self._since = 0
        self.draws = 0

    def draw(self) -> np.ndarray:
        """w~ for one request, from the counter-based stream (seed, request number)."""
        z = _rng.normal(self.seed, self.draws, self.A.shape[0])
        self.draws += 1
        return self.w + self.config.v * (self._chol @ z)

    def update(self, embeddings: np.ndarray, clicks: np.ndarray) -> None:
        """embeddings (m, d) of shown items, clicks (m,) in {0, 1}."""
        e = embeddings.astype(np.float64)
        self.A += e.T @ e
        self.b += e.T @ clicks
        self._since += len(clicks)
        if self._since >= self.config.refresh_every:
            self.refresh()

    def refresh(self) -> None:
        a_inv = np.linalg.inv(self.A)
        self.w = a_inv @ self.b
        self._chol = np.linalg.cholesky((a_inv + a_inv.T) / 2.0)
        self._since = 0

    def state_dict(self) -> dict[str, Any]:
        return {"A": self.A.tolist(), "b": self.b.tolist(), "draws": self.draws}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.A = np.asarray(s["A"], dtype=float)
        self.b = np.asarray(s["b"], dtype=float)
        self.draws = int(s["draws"])
        self.refresh()


class ItemRecommender:
    """Top-k items for a user, priced into a basket, learning from clicks.

    items: (N, d) float32 item embeddings (C-contiguous).
    categories, unit_prices, unit_costs: (N,) item catalogue data (prices and costs in
        currency) used to build the basket of shown items.
    user_vector: a function from a user's recent item ids (oldest first) to u (d,);
        default: the mean embedding of the history (zeros for a new user).
    k: items per request. temperature: softmax temperature of the probabilities.
    history_length: recent items kept per user; max_users: users kept (least recently
        seen forgotten first), which bounds memory.
    exploration: the Thompson head (None: exploit u only).
    item_bias: optional (N,) float32 added to every score (e.g. popularity, margin).
    """

    def __init__(self, items: np.ndarray, categories: Any, unit_prices: Any, unit_costs: Any, *,
                 user_vector: UserVectorFn | None = None, k: int = 10, temperature: float = 1.0,
                 history_length: int = 20, max_users: int = 1_000_000,
                 exploration: ExplorationConfig | None = None, item_bias: Any = None,
                 seed: int = 0, backend: str = "auto") -> None:
        self.items = np.ascontiguousarray(items, dtype=np.float32)
        if self.items.ndim != 2:
            raise ValueError(f"items: expected an (N, d) matrix, got shape {self.items.shape}")
        n = self.items.shape[0]
        self.categories = np.asarray(categories, dtype=np.int64)
        self.unit_prices = np.asarray(unit_prices, dtype=np.float64)
        self.unit_costs = np.asarray(unit_costs, dtype=np.float64)
        for name, a in (("categories", self.categories), ("unit_prices", self.unit_prices),
                        ("unit_costs", self.unit_costs)):
            if a.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
        # Check every item once (prices, costs, categories) and keep private read-only
        # copies: basket() then builds baskets without checks (Basket.trusted).
        whole = Basket(np.arange(n), self.categories, self.unit_prices, self.unit_costs,
                       np.ones(n, dtype=np.int64))
        self.categories, self.unit_prices, self.unit_costs = (
            whole.categories, whole.unit_prices, whole.unit_costs)
        self.k = check_int("k", k, 1)
        if self.k > n:
            raise ValueError(f"k: expected at most {n} (the number of items), got {k}")
        self.temperature = check_range("temperature", temperature, 0.0, lo_open=True)
        self.history_length = check_int("history_length", history_length, 1)
        self.max_users = check_int("max_users", max_users, 1)
        self.user_vector_fn = user_vector
        self.item_bias = None if item_bias is None else np.ascontiguousarray(item_bias,
                                                                            dtype=np.float32)
        self.backend = backend
        self.explorer = (EmbeddingExplorer(self.items.shape[1], exploration, seed)
                         if exploration is not None else None)
        self._history: OrderedDict[str, deque[int]] = OrderedDict()

    def user_vector(self, user: str) -> np.ndarray:
        hist = self._history.get(user)
        h = list(hist) if hist is not None else []
        if self.user_vector_fn is not None:
            return np.asarray(self.user_vector_fn(h), dtype=np.float32)
        if not h:
            return np.zeros(self.items.shape[1], dtype=np.float32)
        return self.items[h].mean(axis=0)

    def recommend(self, user: str, *, k: int | None = None, candidates: Any = None,
                  now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(item ids (k,) best first, probabilities under the full softmax (k,))."""
        kk = self.k if k is None else check_int("k", k, 1)
        u = self.user_vector(user)
        if self.explorer is not None:
            u = (u + self.explorer.draw()).astype(np.float32)
        mask = None
        if candidates is not None:
            mask = np.zeros(self.items.shape[0], dtype=bool)
            mask[np.asarray(candidates, dtype=np.int64)] = True
        top = topk_softmax(self.items, u, kk, temperature=self.temperature, mask=mask,
                           bias=self.item_bias, backend=self.backend, n_threads=1)
        return np.asarray(top.ids, dtype=np.int64), np.asarray(top.probs_full, dtype=np.float64)

    def basket(self, ids: np.ndarray) -> Basket:
        """The shown items, one unit each."""
        return Basket.trusted(ids, self.categories[ids], self.unit_prices[ids],
                              self.unit_costs[ids], np.ones(len(ids), dtype=np.int64))

    def observe(self, user: str, shown: np.ndarray | None, clicked_item: int | None) -> None:
        """Feedback on a finalised decision: extends the history, trains the head."""
        if clicked_item is not None:
            h = self._history.get(user)
            if h is None:
                h = deque(maxlen=self.history_length)
            h.append(int(clicked_item))
            self._history[user] = h
            self._history.move_to_end(user)
            while len(self._history) > self.max_users:
                self._history.popitem(last=False)
        if self.explorer is not None and shown is not None and len(shown):
            clicks = (shown == clicked_item).astype(np.float64)
            self.explorer.update(self.items[shown], clicks)
