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

    def to_columns(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The exact state: the sampling factor and w as they are (they are refreshed only
        every ``refresh_every`` updates, so recomputing them on load would change the
        draws of the requests until the next refresh)."""
        meta = {"draws": self.draws, "since": self._since, "seed": self.seed}
        return meta, {"A": self.A.copy(), "b": self.b.copy(), "w": self.w.copy(),
                      "chol": self._chol.copy()}

    def prepare_columns(self, meta: dict[str, Any], z: dict[str, np.ndarray]
                        ) -> tuple[Any, ...]:
        """A saved state checked against this explorer (dimension), without changing it."""
        d = self.A.shape[0]
        try:
            a, b, w, chol = (np.array(z[k], dtype=np.float64) for k in ("A", "b", "w", "chol"))
            draws, since = int(meta["draws"]), int(meta["since"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"recommender.explorer: unreadable state ({exc!r})") from None
        if a.shape != (d, d) or chol.shape != (d, d) or b.shape != (d,) or w.shape != (d,):
            raise ValueError(f"recommender.explorer: saved for another embedding dimension "
                             f"(A {a.shape}, this one {d})")
        if draws < 0 or since < 0:
            raise ValueError("recommender.explorer: negative counters")
        return a, b, w, chol, draws, since

    def install_columns(self, prepared: tuple[Any, ...]) -> None:
        self.A, self.b, self.w, self._chol, self.draws, self._since = prepared

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
        kk, mask = self.check_request(k, candidates)
        u = self.user_vector(user)
        if self.explorer is not None:
            u = (u + self.explorer.draw()).astype(np.float32)
        top = topk_softmax(self.items, u, kk, temperature=self.temperature, mask=mask,
                           bias=self.item_bias, backend=self.backend, n_threads=1)
        return np.asarray(top.ids, dtype=np.int64), np.asarray(top.probs_full, dtype=np.float64)

    def check_request(self, k: int | None = None, candidates: Any = None
                      ) -> tuple[int, np.ndarray | None]:
        """(k, candidate mask or None) of a request, checked without changing anything:
        k an integer in [1, N] and at most the number of distinct candidates; candidates
        a non-empty list of item ids in [0, N). ValueError naming ``k`` or ``candidates``."""
        n = self.items.shape[0]
        kk = self.k if k is None else check_int("k", k, 1)
        if kk > n:
            raise ValueError(f"k: expected at most {n} (the number of items), got {kk}")
        if candidates is None:
            return kk, None
        if isinstance(candidates, (str, bytes)):
            raise ValueError("candidates: expected a list of item ids")
        c = np.asarray(candidates)
        if c.ndim != 1 or c.size == 0 or not (np.issubdtype(c.dtype, np.integer)
                                              and c.dtype != np.bool_):
            raise ValueError(f"candidates: expected a non-empty list of integer item ids, "
                             f"got {c.dtype} of shape {c.shape}")
        bad = np.flatnonzero((c < 0) | (c >= n))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"candidates[{i}]: unknown item {int(c[i])}; expected an item id "
                             f"in [0, {n})")
        mask = np.zeros(n, dtype=bool)
        mask[c.astype(np.int64)] = True
        m = int(mask.sum())
        if kk > m:
            raise ValueError(f"k: expected at most the {m} distinct candidates, got {kk}")
        return kk, mask

    def upsert_items(self, item_ids: Any, embeddings: Any, categories: Any, unit_prices: Any,
                     unit_costs: Any, item_bias: Any = None) -> int:
        """Changes rows of the item table and appends new items, all or none.

        item_ids: (m,) distinct ids; an id below N replaces that item's row, the ids from N
            on must be N, N+1, ... (new items are appended; no item is ever removed, so
            pending decisions and histories keep meaning the same items; take an item out
            of the recommendations with the requests' candidates).
        embeddings: (m, d) finite, the table's dimension. categories, unit_prices,
            unit_costs: (m,) as the constructor takes them (0 <= cost <= price, currency).
        item_bias: (m,) when the table has a bias (required then), else None.
        Returns the number of items afterwards. ValueError naming the field.
        """
        n, d = self.items.shape
        ids = np.asarray(item_ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer) \
                or ids.dtype == np.bool_:
            raise ValueError(f"item_ids: expected a non-empty list of integer ids, got "
                             f"{ids.dtype} of shape {ids.shape}")
        ids = ids.astype(np.int64)
        m = ids.size
        if ids.min() < 0 or np.unique(ids).size != m:
            raise ValueError("item_ids: expected distinct ids >= 0")
        new = np.sort(ids[ids >= n])
        if new.size and not np.array_equal(new, np.arange(n, n + new.size)):
            raise ValueError(f"item_ids: new items must take the next ids {n}, {n + 1}, ...; "
                             f"got {new.tolist()[:5]}")
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.shape != (m, d) or not np.isfinite(emb).all():
            raise ValueError(f"embeddings: expected ({m}, {d}) finite numbers, got shape "
                             f"{emb.shape}")
        f32 = float(np.finfo(np.float32).max)
        if np.abs(emb).max() > f32:
            raise ValueError(f"embeddings: expected values within float32 range (|x| <= {f32:g})")
        emb32 = emb.astype(np.float32)
        rows = Basket(ids, categories, unit_prices, unit_costs, np.ones(m, dtype=np.int64))
        bias = None
        if self.item_bias is not None:
            if item_bias is None:
                raise ValueError("item_bias: required (the item table has a bias)")
            bias = np.asarray(item_bias, dtype=np.float64)
            if bias.shape != (m,) or not np.isfinite(bias).all() or (
                    np.abs(bias).max() > float(np.finfo(np.float32).max)):
                raise ValueError(f"item_bias: expected {m} finite numbers within float32 range")
        elif item_bias is not None:
            raise ValueError("item_bias: this item table has no bias")
        total = n + new.size
        items = np.zeros((total, d), dtype=np.float32)
        items[:n] = self.items
        items[ids] = emb32
        cols = []
        for old, val in ((self.categories, rows.categories), (self.unit_prices, rows.unit_prices),
                         (self.unit_costs, rows.unit_costs)):
            a = np.zeros(total, dtype=old.dtype)
            a[:n] = old
            a[ids] = val
            cols.append(a)
        whole = Basket(np.arange(total), cols[0], cols[1], cols[2],
                       np.ones(total, dtype=np.int64))
        if bias is not None:
            b = np.zeros(total, dtype=np.float32)
            b[:n] = self.item_bias  # type: ignore[index]
            b[ids] = bias.astype(np.float32)
            self.item_bias = b
        self.items = np.ascontiguousarray(items)
        self.categories, self.unit_prices, self.unit_costs = (
            whole.categories, whole.unit_prices, whole.unit_costs)
        return total

    def to_columns(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(header, arrays) of the state (item table, histories, exploration head)."""
        return recommender_to_columns(self)

    def prepare_columns(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        """A saved state, checked against this recommender, without changing it."""
        return recommender_prepare(self, meta, arrays)

    def install_columns(self, prepared: Any) -> None:
        """Replaces the state with a prepared one (see prepare_columns)."""
        recommender_install(self, prepared)

    def load_columns(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restores what to_columns wrote (checked first: all or nothing)."""
        self.install_columns(self.prepare_columns(meta, arrays))

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


# --- state ------------------------------------------------------------------------------
# The recommender's state is part of the engine's state bytes (arrays prefixed "r_"): the
# item table (embeddings, categories, prices, costs, bias), every user's recent items in
# least-recently-seen order, and the exploration head exactly as it is. Its settings (k,
# temperature, history_length, max_users, the exploration config) are configuration.

def recommender_to_columns(rec: ItemRecommender) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of an ItemRecommender's state (see the comment above)."""
    users = list(rec._history)
    hist = [rec._history[u] for u in users]
    meta: dict[str, Any] = {"users": users, "has_bias": rec.item_bias is not None,
                            "explorer": None}
    arrays: dict[str, np.ndarray] = {
        "items": rec.items.copy(), "categories": rec.categories.copy(),
        "unit_prices": rec.unit_prices.copy(), "unit_costs": rec.unit_costs.copy(),
        "history_len": np.array([len(h) for h in hist], dtype=np.int64),
        "history": (np.array([i for h in hist for i in h], dtype=np.int64) if hist
                    else np.zeros(0, np.int64))}
    if rec.item_bias is not None:
        arrays["item_bias"] = rec.item_bias.copy()
    if rec.explorer is not None:
        emeta, earr = rec.explorer.to_columns()
        meta["explorer"] = emeta
        arrays.update({f"x_{k}": v for k, v in earr.items()})
    return meta, arrays


def recommender_prepare(rec: ItemRecommender, meta: dict[str, Any],
                        z: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """A saved recommender state checked against ``rec`` (embedding dimension,
    exploration on or off, history length) without changing it."""
    try:
        items = np.ascontiguousarray(z["items"], dtype=np.float32)
        cats, prices, costs = (np.asarray(z[k]) for k in ("categories", "unit_prices",
                                                          "unit_costs"))
        users = list(meta["users"])
        lens = np.asarray(z["history_len"], dtype=np.int64)
        flat = np.asarray(z["history"], dtype=np.int64)
        bias = z["item_bias"] if meta["has_bias"] else None
        emeta = meta["explorer"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"recommender: unreadable state ({exc!r})") from None
    if items.ndim != 2 or items.shape[1] != rec.items.shape[1]:
        raise ValueError(f"recommender.items: saved with shape {items.shape}, this recommender's "
                         f"embeddings have dimension {rec.items.shape[1]}")
    n = items.shape[0]
    if rec.k > n:
        raise ValueError(f"recommender.items: the saved table has {n} items, fewer than k={rec.k}")
    whole = Basket(np.arange(n), cats, prices, costs, np.ones(n, dtype=np.int64))
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        if bias.shape != (n,):
            raise ValueError(f"recommender.item_bias: expected shape ({n},), got {bias.shape}")
    if (lens.shape != (len(users),) or (len(lens) and (lens.min() < 0
                                                       or lens.max() > rec.history_length))
            or flat.shape != (int(lens.sum()),) or (flat.size and (flat.min() < 0
                                                                   or flat.max() >= n))
            or len(set(users)) != len(users) or len(users) > rec.max_users):
        raise ValueError("recommender.history: does not fit the item table or the "
                         "history settings")
    if (emeta is None) != (rec.explorer is None):
        raise ValueError("recommender.explorer: the saved state and this recommender differ "
                         "in whether exploration is on")
    explorer = None
    if rec.explorer is not None:
        explorer = rec.explorer.prepare_columns(
            emeta, {k[2:]: v for k, v in z.items() if k.startswith("x_")})
    history: OrderedDict[str, deque[int]] = OrderedDict()
    start = 0
    for u, m in zip(users, lens.tolist(), strict=True):
        history[u] = deque(flat[start:start + m].tolist(), maxlen=rec.history_length)
        start += m
    return items, whole, bias, history, explorer


def recommender_install(rec: ItemRecommender, prepared: tuple[Any, ...]) -> None:
    """Puts a checked state (``recommender_prepare``) into ``rec``."""
    items, whole, bias, history, explorer = prepared
    rec.items = items
    rec.categories, rec.unit_prices, rec.unit_costs = (whole.categories, whole.unit_prices,
                                                       whole.unit_costs)
    rec.item_bias = bias
    rec._history = history
    if explorer is not None:
        assert rec.explorer is not None
        rec.explorer.install_columns(explorer)
