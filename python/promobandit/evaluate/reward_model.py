"""The reward model behind the direct method and doubly robust estimators.

A scikit-learn estimator learns q(x, a), the expected reward (currency units,
or a probability for binary rewards) of offer a in context x, from the log.
Predictions are cross-fitted: the rows are split into ``n_folds`` folds and
each fold is predicted by a model fitted on the other folds, so a row's own
reward never enters its own prediction (Chernozhukov et al. 2018). This keeps
DR unbiased when the model overfits and makes the CLT intervals valid.

scikit-learn is imported only when a model is fitted.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from .._extras import require
from .._validation import check_int, check_seed

ENCODINGS = ("interactions", "concat")


class OPEWarning(UserWarning):
    """An off-policy estimate may be unreliable (weights, support, model fit)."""


def default_estimator() -> Any:
    """Ridge regression with alpha = 1 (light shrinkage; features are one-hot blocks
    and the log's own feature scale)."""
    Ridge = require("sklearn.linear_model", "evaluate", "the reward model").Ridge

    return Ridge(alpha=1.0)


def design_matrix(contexts: np.ndarray | None, actions: np.ndarray, n_actions: int,
                  encoding: str, sparse: bool = False) -> Any:
    """Features of (context, offer) pairs, one row per pair.

    "interactions": a sparse CSR matrix [onehot(a), x placed in block a] of width
        K * (d + 1): a linear model on it is a separate linear model per offer,
        fitted in one go (personalised offer effects).
    "concat": [x, onehot(a)] of width d + K, for models that find the interactions
        themselves (gradient boosting, forests) or additive effects; dense, or CSR
        when `sparse` (faster for linear models when K is large).
    """
    sp = require("scipy.sparse", "evaluate", "the reward model")

    n = actions.shape[0]
    k = n_actions
    d = 0 if contexts is None else contexts.shape[1]
    if encoding == "concat":
        if sparse:
            x = sp.csr_matrix(contexts) if d else sp.csr_matrix((n, 0))
            onehot = sp.csr_matrix((np.ones(n), (np.arange(n), actions)), shape=(n, k))
            return sp.hstack([x, onehot], format="csr")
        out = np.zeros((n, d + k))
        if d:
            out[:, :d] = contexts
        out[np.arange(n), d + actions] = 1.0
        return out
    width = d + 1
    cols = np.empty((n, width), dtype=np.int64)
    vals = np.empty((n, width))
    cols[:, 0] = actions
    vals[:, 0] = 1.0
    if d:
        cols[:, 1:] = k + actions[:, None] * d + np.arange(d)[None, :]
        vals[:, 1:] = contexts
    indptr = np.arange(0, n * width + 1, width, dtype=np.int64)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, k * (d + 1)))


@dataclasses.dataclass
class RewardModel:
    """Cross-fitted reward model q(x, a).

    estimator: an unfitted scikit-learn regressor (rewards in currency units) or
        classifier (binary rewards 0/1: q is the predicted probability of 1);
        cloned once per fold. None: Ridge(alpha=1.0).
    n_folds: cross-fitting folds (>= 2); 1 fits and predicts on all rows (in-sample,
        which overfits and biases DR's correction term towards zero).
    encoding: "interactions" (default; per-offer linear effects, sparse) or
        "concat" ([x, onehot(a)], for tree models or additive effects). See design_matrix.
    sparse: build the "concat" design as sparse CSR (linear models; tree models such as
        HistGradientBoosting need the dense default).
    seed: seeds the random split into folds.
    chunk_rows: design rows predicted at once (a log row expands into K design rows,
        one per offer); bounds the memory of prediction.
    """

    estimator: Any = None
    n_folds: int = 5
    encoding: str = "interactions"
    sparse: bool = False
    seed: int = 0
    chunk_rows: int = 1_000_000

    def __post_init__(self) -> None:
        check_int("n_folds", self.n_folds, 1)
        check_int("chunk_rows", self.chunk_rows, 1)
        check_seed(self.seed)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: expected one of {ENCODINGS}, got {self.encoding!r}")

    def _fit(self, estimator: Any, x: Any, y: np.ndarray, classifier: bool,
             sample_weight: np.ndarray | None) -> Any:
        clone = require("sklearn.base", "evaluate", "the reward model").clone

        if classifier and np.unique(y).size < 2:
            return float(y[0])  # one class in this fold: its rate is the prediction
        model = clone(estimator)
        if sample_weight is None:
            model.fit(x, y)
        else:
            model.fit(x, y, sample_weight=sample_weight)
        return model

    def _predict_all(self, model: Any, contexts: np.ndarray | None, rows: np.ndarray,
                     n_actions: int, classifier: bool) -> np.ndarray:
        m = rows.shape[0]
        if isinstance(model, float):
            return np.full((m, n_actions), model)
        out = np.empty((m, n_actions))
        step = max(1, self.chunk_rows // n_actions)
        for lo in range(0, m, step):
            sel = rows[lo:lo + step]
            c = sel.shape[0]
            ctx = None if contexts is None else np.repeat(contexts[sel], n_actions, axis=0)
            acts = np.tile(np.arange(n_actions, dtype=np.int64), c)
            x = design_matrix(ctx, acts, n_actions, self.encoding, self.sparse)
            if classifier:
                pos = int(np.flatnonzero(np.asarray(model.classes_) == 1)[0])
                pred = model.predict_proba(x)[:, pos]
            else:
                pred = model.predict(x)
            out[lo:lo + c] = np.asarray(pred, dtype=np.float64).reshape(c, n_actions)
        return out

    def cross_fit_predict(self, contexts: np.ndarray | None, actions: np.ndarray,
                          rewards: np.ndarray, n_actions: int,
                          sample_weight: np.ndarray | None = None) -> np.ndarray:
        """(n, K) predictions q(x_i, a) for every row and offer, each row predicted by a
        model that did not see it (unless n_folds == 1).

        sample_weight: optional (n,) non-negative row weights for the fits (bootstrap
        counts); rows of weight 0 are left out of training but still predicted.
        """
        is_classifier = require("sklearn.base", "evaluate", "the reward model").is_classifier
        exceptions = require("sklearn.exceptions", "evaluate", "the reward model")

        estimator = default_estimator() if self.estimator is None else self.estimator
        classifier = bool(is_classifier(estimator))
        if classifier and not np.isin(rewards, (0.0, 1.0)).all():
            raise ValueError("rewards: a classifier reward model needs binary rewards (0 or 1); "
                             "use a regressor for rewards in currency units")
        n = actions.shape[0]
        if self.n_folds > n:
            raise ValueError(f"n_folds: {self.n_folds} folds need at least as many rows, "
                             f"the log has {n}")
        q = np.empty((n, n_actions))
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if sw is not None and (sw.shape != (n,) or not np.isfinite(sw).all() or (sw < 0).any()):
            raise ValueError(f"sample_weight: expected {n} non-negative finite weights")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fold = (np.zeros(n, dtype=np.int64) if self.n_folds == 1
                    else np.random.default_rng(self.seed).permutation(n) % self.n_folds)
            for f in range(self.n_folds):
                test = np.flatnonzero(fold == f)
                train = test if self.n_folds == 1 else np.flatnonzero(fold != f)
                if sw is not None:
                    train = train[sw[train] > 0]
                if train.size == 0:
                    raise ValueError(f"n_folds: fold {f} leaves no rows to fit the model on")
                x = design_matrix(None if contexts is None else contexts[train],
                                  actions[train], n_actions, self.encoding, self.sparse)
                model = self._fit(estimator, x, rewards[train], classifier,
                                  None if sw is None else sw[train])
                q[test] = self._predict_all(model, contexts, test, n_actions, classifier)
        # Re-raise what the fits said, converting convergence trouble into our own class so
        # callers can filter all evaluation warnings at once.
        seen: set[str] = set()
        for w in caught:
            msg = str(w.message)
            if msg in seen:
                continue
            seen.add(msg)
            if issubclass(w.category, exceptions.ConvergenceWarning):
                warnings.warn(f"reward model did not converge ({msg.splitlines()[0]}); "
                              "DM/DR estimates may be off: raise max_iter or scale contexts",
                              OPEWarning, stacklevel=3)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not np.isfinite(q).all():
            raise ValueError("reward model: predictions contain NaN or inf")
        return q
