"""A two-tower retrieval model in PyTorch: user history -> u, item side data -> E.

User tower input (concatenated, then an MLP to ``dim``):
  * the user's id embedding (``id_dim``); users without training events, and users the
    caller marks unknown (``user_id=None``), use a learned "unknown user" row, trained by
    randomly hiding the id of ``user_id_dropout`` of the training examples;
  * the weighted mean of the item id embeddings of the user's last ``history_length``
    events, each event weighted by ``history_event_weights[event type]`` (shared with
    the item tower's id embedding, so a cold user's history lands in the item space);
  * the category affinity vector: the same event-weighted share of each category in
    those events (length n_categories, sums to 1, zero for an empty history).
Item tower input: item id embedding (``id_dim``) + category embedding
(``category_dim``) + price-band embedding (``price_band_dim``), then an MLP to ``dim``.

Scoring and normalisation: with ``normalize=True`` both towers' outputs are L2
normalised, so E @ u is a cosine in [-1, 1] and training used softmax(E @ u /
temperature). The native scorer (``promobandit.scoring.topk_softmax``) scores raw dot
products E @ u and takes a temperature: pass ``temperature=model.temperature`` to get
the softmax the model was trained for (rankings do not depend on it). With
``normalize=False`` the dot products are unbounded logits (still divided by the
temperature in training).

Training: in-batch sampled softmax over the positive events (events whose
``event_weights`` entry is > 0, by default clicks, carts and purchases weighted
1/2/3). Every example's item is a negative for the batch's other examples. Items are
in a batch about in proportion to their frequency Q among the examples, which would
push popular items down; the logQ correction (Yi et al. 2019, "Sampling-bias-corrected
neural modeling for large corpus item recommendations") subtracts log Q(item) from
each in-batch logit so that the learnt scores estimate the full softmax. Other
examples of the same item in the batch are masked, not treated as negatives. The
history of an example is the user's events strictly before it in (time, row) order.

Determinism: a seed fixes initialisation (torch.manual_seed inside a forked RNG, so
the caller's global RNG is untouched), shuffling and id dropout (a torch.Generator);
``deterministic=True`` turns on torch.use_deterministic_algorithms for the fit, and
``num_threads`` pins the intra-op thread count (both restored afterwards). On CPU,
the same seed, data, config and thread count give bit-identical parameters.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_bool, check_int, check_range, check_seed, int_array
from .data import CLICK, N_EVENT_TYPES, InteractionLog
from .metrics import evaluate

FORMAT = "promobandit.two_tower"
FORMAT_VERSION = 1

# Guards the division by the history's total weight; far below any real weight sum.
_WEIGHT_EPS = 1e-12


def _weights(name: str, value: Any, need_positive: bool) -> tuple[float, ...]:
    if not isinstance(value, (tuple, list)) or len(value) != N_EVENT_TYPES:
        raise ValueError(f"{name}: expected {N_EVENT_TYPES} weights (view, click, cart, "
                         f"purchase), got {value!r}")
    out = tuple(check_range(f"{name}[{i}]", x, 0.0) for i, x in enumerate(value))
    if need_positive and not any(x > 0 for x in out):
        raise ValueError(f"{name}: expected at least one weight > 0, got {out}")
    return out


@dataclasses.dataclass(frozen=True)
class TwoTowerConfig:
    """Every knob of the two-tower model and its training (see the module doc).

    dim: output embedding dimension d of both towers (the scorer's d).
    id_dim: size of the user and item id embeddings.
    category_dim, price_band_dim: sizes of the item category / price-band embeddings.
    hidden: hidden layer widths of each tower's MLP (ReLU); () is a linear map.
    normalize: L2-normalise tower outputs (scores are cosines; see the module doc).
    temperature: softmax temperature of the training loss (> 0); lower is sharper.
    lr: Adam learning rate.
    weight_decay: Adam's L2 penalty on all parameters (>= 0).
    batch_size: examples per step; also the number of in-batch negatives + 1.
    max_epochs: upper bound on passes over the training examples.
    patience: stop after this many epochs without a better validation Recall@eval_k
        (the best epoch's parameters are restored).
    history_length: number of most recent events that make the behaviour features.
    history_event_weights: (view, click, cart, purchase) weights of history events in
        the mean embedding and the category affinity.
    event_weights: (view, click, cart, purchase) loss weights of training examples;
        events with weight 0 are not examples (by default views).
    history_excludes_target: drop events on the example's own item from its history.
        The funnel puts the item's own view (click, cart) right before every click
        (cart, purchase), so without this the model learns to echo the last item,
        which evaluation on *new* items and serving never reward.
    logq_correction: subtract log of the item's example frequency from in-batch logits.
    user_id_dropout: fraction of examples trained with the unknown-user row instead of
        their id (teaches the cold-start fallback), in [0, 1).
    embedding_init_std: standard deviation of the normal initial embeddings.
    eval_k: k of the validation Recall@k that drives early stopping.
    eval_exclude_seen: validation ranks only items new to the user (see metrics.evaluate).
    max_eval_users: validate on at most this many users (random, fixed by seed); None: all.
    seed: seed of initialisation, shuffling and id dropout.
    num_threads: torch intra-op threads during the fit; None keeps the current setting.
        1 by default: batches this small gain little from more threads, and on a busy
        machine OpenMP workers spin-wait for cores (a 2-thread fit measured 2-5x slower
        than 1 thread while other processes ran on the 2 cores).
    deterministic: torch.use_deterministic_algorithms(True) during the fit.
    """

    dim: int = 32
    id_dim: int = 32
    category_dim: int = 8
    price_band_dim: int = 4
    hidden: tuple[int, ...] = (64,)
    normalize: bool = True
    temperature: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 20
    patience: int = 3
    history_length: int = 50
    history_event_weights: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    event_weights: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    history_excludes_target: bool = True
    logq_correction: bool = True
    user_id_dropout: float = 0.95
    embedding_init_std: float = 0.1
    eval_k: int = 10
    eval_exclude_seen: bool = True
    max_eval_users: int | None = None
    seed: int = 0
    num_threads: int | None = 1
    deterministic: bool = True

    def __post_init__(self) -> None:
        for name in ("dim", "id_dim", "category_dim", "price_band_dim", "batch_size",
                     "max_epochs", "patience", "history_length", "eval_k"):
            check_int(name, getattr(self, name), 1)
        if not isinstance(self.hidden, (tuple, list)):
            raise ValueError(f"hidden: expected a tuple of layer widths, got {self.hidden!r}")
        hidden = tuple(check_int(f"hidden[{i}]", h, 1) for i, h in enumerate(self.hidden))
        object.__setattr__(self, "hidden", hidden)
        check_bool("normalize", self.normalize)
        check_range("temperature", self.temperature, 0.0, lo_open=True)
        check_range("lr", self.lr, 0.0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        object.__setattr__(self, "history_event_weights",
                           _weights("history_event_weights", self.history_event_weights, False))
        object.__setattr__(self, "event_weights",
                           _weights("event_weights", self.event_weights, True))
        check_bool("history_excludes_target", self.history_excludes_target)
        check_bool("logq_correction", self.logq_correction)
        check_range("user_id_dropout", self.user_id_dropout, 0.0, 1.0, hi_open=True)
        check_range("embedding_init_std", self.embedding_init_std, 0.0, lo_open=True)
        check_bool("eval_exclude_seen", self.eval_exclude_seen)
        if self.max_eval_users is not None:
            check_int("max_eval_users", self.max_eval_users, 1)
        check_seed(self.seed, bits=63)
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, 1)
        check_bool("deterministic", self.deterministic)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (tuples as lists), as stored in model files."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any) -> TwoTowerConfig:
        """The config of ``to_dict`` output; unknown or bad keys raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"config: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown settings {unknown}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        return cls(**kwargs)


def _mlp(n_in: int, hidden: Sequence[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class TwoTowerNet(nn.Module):
    """The two towers (see the module doc). Row n_users of ``user_id`` is the unknown
    user; row n_items of ``item_id`` is the zero, gradient-free history padding."""

    item_category: torch.Tensor  # (n_items + 1,) buffer; the padding item has category 0
    item_price_band: torch.Tensor  # (n_items,) buffer
    history_event_weights: torch.Tensor  # (4,) buffer

    def __init__(self, n_users: int, item_category: torch.Tensor,
                 item_price_band: torch.Tensor, n_categories: int, n_price_bands: int,
                 config: TwoTowerConfig) -> None:
        super().__init__()
        n_items = int(item_category.shape[0])
        self.n_users, self.n_items, self.n_categories = n_users, n_items, n_categories
        self.normalize = config.normalize
        self.user_id = nn.Embedding(n_users + 1, config.id_dim)
        self.item_id = nn.Embedding(n_items + 1, config.id_dim, padding_idx=n_items)
        self.category = nn.Embedding(n_categories, config.category_dim)
        self.price_band = nn.Embedding(n_price_bands, config.price_band_dim)
        for emb in (self.user_id, self.item_id, self.category, self.price_band):
            nn.init.normal_(emb.weight, std=config.embedding_init_std)
        with torch.no_grad():
            self.item_id.weight[n_items].zero_()
        self.user_mlp = _mlp(2 * config.id_dim + n_categories, config.hidden, config.dim)
        self.item_mlp = _mlp(config.id_dim + config.category_dim + config.price_band_dim,
                             config.hidden, config.dim)
        # The padding item gets category 0; its history weight is always 0.
        self.register_buffer("item_category", torch.cat([item_category, item_category[:1] * 0]))
        self.register_buffer("item_price_band", item_price_band.clone())
        self.register_buffer("history_event_weights",
                             torch.tensor(config.history_event_weights, dtype=torch.float32))

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, dim) item vectors of item ids (B,) in [0, n_items)."""
        x = torch.cat([self.item_id(ids), self.category(self.item_category[ids]),
                       self.price_band(self.item_price_band[ids])], dim=-1)
        return self._out(self.item_mlp(x))

    def users(self, user_rows: torch.Tensor, hist_items: torch.Tensor,
              hist_weights: torch.Tensor) -> torch.Tensor:
        """(B, dim) user vectors.

        user_rows: (B,) rows of the user id table (n_users = unknown user).
        hist_items: (B, L) item ids, n_items where there is no event.
        hist_weights: (B, L) event weights, 0 where there is no event.
        """
        total = hist_weights.sum(dim=1, keepdim=True)
        denom = torch.where(total > 0, total, torch.ones_like(total)).clamp_min(_WEIGHT_EPS)
        w = (hist_weights / denom).unsqueeze(-1)
        mean_item = (self.item_id(hist_items) * w).sum(dim=1)
        onehot = F.one_hot(self.item_category[hist_items], self.n_categories).to(w.dtype)
        affinity = (onehot * w).sum(dim=1)
        x = torch.cat([self.user_id(user_rows), mean_item, affinity], dim=-1)
        return self._out(self.user_mlp(x))


@contextlib.contextmanager
def _torch_settings(config: TwoTowerConfig) -> Iterator[None]:
    """Seeded, optionally deterministic and thread-pinned torch, restored on exit."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        try:
            if config.deterministic:
                torch.use_deterministic_algorithms(True)
            if config.num_threads is not None:
                torch.set_num_threads(config.num_threads)
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)


class _Examples:
    """Training examples of a log: positive events and the history before each one.

    Rows are sorted by (user, time, row); example j is sorted position ``pos[j]``, and
    its history is the ``length`` positions before it that belong to the same user.
    """

    def __init__(self, log: InteractionLog, config: TwoTowerConfig) -> None:
        order = np.lexsort((np.arange(len(log)), log.timestamps, log.user_ids))
        self.users = log.user_ids[order]
        self.items = log.item_ids[order]
        self.events = log.events[order].astype(np.int64)
        self.start = np.searchsorted(self.users, self.users, side="left")
        loss_w = np.asarray(config.event_weights)[self.events]
        self.pos = np.flatnonzero(loss_w > 0)
        self.weight = loss_w[self.pos].astype(np.float32)
        self.n_items = log.n_items
        self.length = config.history_length
        self.exclude_target = config.history_excludes_target

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def item_frequency(self) -> np.ndarray:
        """(n_items,) share of examples on each item (the in-batch sampling rate Q)."""
        return np.bincount(self.items[self.pos], minlength=self.n_items) / max(len(self), 1)

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """(users, items, weights, history items (B, L), history events (B, L)) of examples."""
        p = self.pos[idx]
        offsets = p[:, None] - np.arange(self.length, 0, -1)[None, :]
        valid = offsets >= self.start[p][:, None]
        safe = np.where(valid, offsets, 0)
        h_items = self.items[safe]
        if self.exclude_target:
            valid &= h_items != self.items[p][:, None]
        return (self.users[p], self.items[p], self.weight[idx],
                np.where(valid, h_items, -1), np.where(valid, self.events[safe], -1))


class TwoTowerModel:
    """A trained two-tower recommender: item matrix E and user vectors u for E @ u.

    Build one with :meth:`fit` (or :meth:`load`). Attributes: ``config``, ``n_users``,
    ``n_items``, ``dim``, ``temperature``, ``best_epoch`` and ``training_log`` (one dict
    per epoch: epoch, loss, validation metric, seconds).
    """

    def __init__(self, net: TwoTowerNet, config: TwoTowerConfig,
                 trained_users: np.ndarray) -> None:
        self.net = net
        self.config = config
        self.trained_users = np.asarray(trained_users, dtype=np.bool_)
        self.training_log: list[dict[str, float]] = []
        self.best_epoch = -1

    # --- sizes ----------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.net.n_users

    @property
    def n_items(self) -> int:
        return self.net.n_items

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def temperature(self) -> float:
        """The training softmax temperature: pass it to the scorer for matching softmax."""
        return self.config.temperature

    # --- training -------------------------------------------------------------------------
    @classmethod
    def fit(cls, train: InteractionLog, validation: InteractionLog | None = None,
            config: TwoTowerConfig | None = None, *,
            progress: bool | None = None) -> TwoTowerModel:
        """Trains a model on ``train``, early-stopping on Recall@eval_k over ``validation``.

        validation: events after the training window (history: ``train``); None, or a
            log where no user qualifies, trains for max_epochs and keeps the last epoch.
        progress: show a tqdm progress bar (None: only when stderr is a terminal).
        """
        cfg = TwoTowerConfig() if config is None else config
        if not isinstance(cfg, TwoTowerConfig):
            raise ValueError(f"config: expected a TwoTowerConfig, got {type(cfg).__name__}")
        if not isinstance(train, InteractionLog):
            raise ValueError(f"train: expected an InteractionLog, got {type(train).__name__}")
        if validation is not None and not train.same_catalogue(validation):
            raise ValueError("validation: has another catalogue or user space than train")
        examples = _Examples(train, cfg)
        if len(examples) == 0:
            raise ValueError(f"train: no events with a positive event weight "
                             f"(event_weights={cfg.event_weights})")
        show = sys.stderr.isatty() if progress is None else bool(progress)
        trained = np.zeros(train.n_users, dtype=np.bool_)
        trained[examples.users[examples.pos]] = True
        with _torch_settings(cfg):
            net = TwoTowerNet(train.n_users, torch.from_numpy(train.item_category.copy()),
                              torch.from_numpy(train.item_price_band.copy()),
                              train.n_categories, train.n_price_bands, cfg)
            model = cls(net, cfg, trained)
            model._train(examples, train, validation, show)
        return model

    def _train(self, examples: _Examples, train: InteractionLog,
               validation: InteractionLog | None, show: bool) -> None:
        cfg, net = self.config, self.net
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        log_q = torch.from_numpy(np.log(np.maximum(examples.item_frequency(), _WEIGHT_EPS))
                                 .astype(np.float32))
        metric = f"recall@{cfg.eval_k}"
        best, best_state, stale = -math.inf, None, 0
        bar = None
        if show:
            from tqdm import tqdm  # optional: only needed for the progress bar

            bar = tqdm(total=cfg.max_epochs, desc="two-tower", unit="epoch", leave=False)
        try:
            for epoch in range(cfg.max_epochs):
                t0 = time.perf_counter()
                net.train()
                perm = torch.randperm(len(examples), generator=gen).numpy()
                loss_sum = weight_sum = 0.0
                for start in range(0, len(examples), cfg.batch_size):
                    idx = perm[start:start + cfg.batch_size]
                    drop = torch.rand(idx.shape[0], generator=gen) < cfg.user_id_dropout
                    loss, w = self._batch_loss(examples.batch(idx), drop, log_q)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    loss_sum += float(loss.detach()) * w
                    weight_sum += w
                net.eval()
                row: dict[str, float] = {"epoch": float(epoch), "loss": loss_sum / weight_sum}
                score = math.nan
                if validation is not None:
                    score = evaluate(self, train, validation, cfg.eval_k,
                                     exclude_seen=cfg.eval_exclude_seen,
                                     max_users=cfg.max_eval_users, seed=cfg.seed)[metric]
                    row[f"validation_{metric}"] = score
                row["seconds"] = time.perf_counter() - t0
                self.training_log.append(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{score:.4f}")
                if math.isnan(score):
                    self.best_epoch = epoch  # nothing to stop on: keep the last epoch
                    continue
                if score > best:
                    best, stale, self.best_epoch = score, 0, epoch
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
        finally:
            if bar is not None:
                bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()

    def _batch_loss(self, batch: tuple[np.ndarray, ...], drop: torch.Tensor,
                    log_q: torch.Tensor) -> tuple[torch.Tensor, float]:
        users, items, weights, h_items, h_events = batch
        cfg, net = self.config, self.net
        rows = torch.from_numpy(users)
        rows = torch.where(drop, torch.full_like(rows, net.n_users), rows)
        item_t = torch.from_numpy(items)
        u = net.users(rows, *self._history_tensors(h_items, h_events))
        e = net.items(item_t)
        logits = (u @ e.T) / cfg.temperature
        if cfg.logq_correction:
            logits = logits - log_q[item_t][None, :]
        # Another example of the same item is not a negative for this one.
        same = item_t[:, None] == item_t[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, -math.inf)
        w = torch.from_numpy(weights)
        target = torch.arange(items.shape[0])
        loss = (F.cross_entropy(logits, target, reduction="none") * w).sum() / w.sum()
        return loss, float(w.sum())

    # --- inference ------------------------------------------------------------------------
    def _history_tensors(self, h_items: np.ndarray, h_events: np.ndarray
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        valid = h_items >= 0
        items = torch.from_numpy(np.where(valid, h_items, self.n_items).astype(np.int64))
        ev = torch.from_numpy(np.where(valid, h_events, 0).astype(np.int64))
        weights = self.net.history_event_weights[ev] * torch.from_numpy(valid)
        return items, weights

    def _user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Rows of the id table: the user's own row if it trained, else the unknown row."""
        known = (user_ids >= 0) & self.trained_users[np.maximum(user_ids, 0)]
        return np.where(known, user_ids, self.n_users).astype(np.int64)

    @torch.no_grad()
    def _encode(self, user_ids: np.ndarray, h_items: np.ndarray,
                h_events: np.ndarray) -> np.ndarray:
        self.net.eval()
        rows = torch.from_numpy(self._user_rows(user_ids))
        u = self.net.users(rows, *self._history_tensors(h_items, h_events))
        return np.ascontiguousarray(u.numpy(), dtype=np.float32)

    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        """(n_items, dim) float32 C-contiguous item matrix E (a fresh copy)."""
        self.net.eval()
        e = self.net.items(torch.arange(self.n_items))
        return np.ascontiguousarray(e.numpy(), dtype=np.float32).copy()

    def _check_history(self, items: Any, events: Any, field: str,
                       events_field: str) -> tuple[np.ndarray, np.ndarray]:
        it = int_array(field, items, lo=0, hi=self.n_items)
        if events is None:
            ev = np.full(it.shape[0], CLICK, dtype=np.int64)
        else:
            ev = int_array(events_field, events, lo=0, hi=N_EVENT_TYPES)
            if ev.shape != it.shape:
                raise ValueError(f"{events_field}: expected length {it.shape[0]} (like "
                                 f"{field}), got {ev.shape[0]}")
        return it, ev

    def _check_user(self, user_id: Any, field: str) -> int:
        if user_id is None:
            return -1
        return check_int(field, user_id, 0, self.n_users - 1)

    def user_vector(self, history_items: Any, history_events: Any = None, *,
                    user_id: int | None = None) -> np.ndarray:
        """(dim,) float32 user vector u from a user's recent history (oldest first).

        history_items: item ids in [0, n_items); only the last history_length count.
        history_events: event types (VIEW..PURCHASE) of those events; None treats every
            event as a click.
        user_id: the user's id in [0, n_users) to add their learnt id embedding, or None
            for a user the model has never seen (the unknown-user row; also used for
            ids that had no training events). An empty history is allowed.
        Raises ValueError naming the field on bad input.
        """
        return self.user_vectors([history_items], None if history_events is None
                                 else [history_events], user_ids=[user_id])[0]

    def user_vectors(self, histories: Sequence[Any], events: Sequence[Any] | None = None, *,
                     user_ids: Sequence[int | None] | None = None) -> np.ndarray:
        """(B, dim) float32 user vectors for B histories (see user_vector).

        histories: B item-id sequences, oldest first. events: None or B event-type
        sequences of matching lengths. user_ids: None (all unknown) or B ids / None.
        """
        if isinstance(histories, np.ndarray) and histories.ndim == 1:
            raise ValueError("histories: expected a sequence of histories (use user_vector "
                             "for a single history)")
        n = len(histories)
        if events is not None and len(events) != n:
            raise ValueError(f"events: expected {n} event sequences (one per history), "
                             f"got {len(events)}")
        if user_ids is not None and len(user_ids) != n:
            raise ValueError(f"user_ids: expected {n} ids (one per history), got {len(user_ids)}")
        L = self.config.history_length
        h_items = np.full((n, L), -1, dtype=np.int64)
        h_events = np.full((n, L), -1, dtype=np.int64)
        users = np.full(n, -1, dtype=np.int64)
        single = n == 1
        for b in range(n):
            field = "history_items" if single else f"histories[{b}]"
            ev_field = "history_events" if single else f"events[{b}]"
            it, ev = self._check_history(histories[b], None if events is None else events[b],
                                         field, ev_field)
            it, ev = it[-L:], ev[-L:]
            if it.shape[0]:
                h_items[b, L - it.shape[0]:] = it
                h_events[b, L - it.shape[0]:] = ev
            if user_ids is not None:
                users[b] = self._check_user(user_ids[b], "user_id" if single
                                            else f"user_ids[{b}]")
        return self._encode(users, h_items, h_events)

    def users_from_log(self, history: InteractionLog, user_ids: Any) -> np.ndarray:
        """(B, dim) float32 vectors of users from their last events in ``history``."""
        users = int_array("user_ids", user_ids, lo=0, hi=self.n_users)
        if history.n_items != self.n_items:
            raise ValueError(f"history: has {history.n_items} items, the model {self.n_items}")
        h_items, h_events = history.recent_history(users, self.config.history_length)
        return self._encode(users, h_items, h_events)

    # --- files ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything save() writes: format, version, config, sizes, tensors, training log."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "n_users": self.n_users,
            "n_categories": self.net.n_categories,
            "n_price_bands": int(self.net.price_band.num_embeddings),
            "trained_users": torch.from_numpy(self.trained_users.copy()),
            "state_dict": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "training_log": [dict(r) for r in self.training_log],
            "best_epoch": self.best_epoch,
        }

    def save(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        """Writes the model to one file (torch zip format); paths are written atomically."""
        state = self.state()
        if isinstance(file, (str, os.PathLike)):
            path = os.fspath(file)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                       prefix=".two_tower.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    torch.save(state, fh)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        else:
            torch.save(state, file)

    def to_bytes(self) -> bytes:
        """The bytes save() would write."""
        buf = io.BytesIO()
        self.save(buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TwoTowerModel:
        return cls.load(io.BytesIO(data))

    @classmethod
    def load(cls, file: str | os.PathLike[str] | IO[bytes]) -> TwoTowerModel:
        """Reads a model written by save(). Another format version or a corrupt or
        foreign file raises ValueError saying which."""
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # torch.load raises many types on corrupt input
            raise ValueError(f"file: not a readable two-tower model file "
                             f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"file: not a promobandit two-tower model (format {got!r}, "
                             f"expected {FORMAT!r})")
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"file: two-tower model format version "
                             f"{state.get('format_version')!r}, this build reads version "
                             f"{FORMAT_VERSION}")
        try:
            config = TwoTowerConfig.from_dict(state["config"])
            sd = state["state_dict"]
            cat = sd["item_category"][:-1].clone()
            net = TwoTowerNet(int(state["n_users"]), cat, sd["item_price_band"].clone(),
                              int(state["n_categories"]), int(state["n_price_bands"]), config)
            net.load_state_dict(sd, strict=True)
            trained = state["trained_users"].numpy().astype(np.bool_)
            if trained.shape != (net.n_users,):
                raise ValueError(f"trained_users has shape {trained.shape}")
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise ValueError(f"file: two-tower model file is inconsistent "
                             f"({type(exc).__name__}: {exc})") from exc
        net.eval()
        model = cls(net, config, trained)
        model.training_log = [dict(r) for r in state.get("training_log", [])]
        model.best_epoch = int(state.get("best_epoch", -1))
        return model

    def __repr__(self) -> str:
        return (f"TwoTowerModel(n_users={self.n_users}, n_items={self.n_items}, "
                f"dim={self.dim}, best_epoch={self.best_epoch})")


__all__ = ["FORMAT", "FORMAT_VERSION", "TwoTowerConfig", "TwoTowerModel", "TwoTowerNet"]
