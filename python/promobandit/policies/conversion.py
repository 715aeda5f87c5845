"""Conversion-model Thompson sampling: learn what is uncertain, compute what is known.

The other learners regress each offer's profit, one noisy number, on the context. Most of
that number is known before the shopper answers: the engine prices every offer exactly.
``ConversionTS`` learns only the shopper's response and takes the money from the
engine's quote of *this* basket.

The response model. For a request with context x (d,) and a basket whose first line is
the *lead* item (the one the shopper is looking at), the shopper buys nothing, the lead
line alone, or the whole basket. Two logistic heads:

* head 0, P(buy | x, k) = sigmoid(theta_0 . phi(x, k, c_lead_k)),
* head 1, P(whole basket | buy, x, k) = sigmoid(theta_1 . phi(x, k, c_basket_k - c_lead_k)),

with the shared features phi(x, k, c) = [x, c * x, c, e_k] (p = 2 d + 1 + K): c is the
offer's log price cut, log(list / paid), on the lead line (head 0) or the basket's extra
cut over the lead line's (head 1: how much more the whole basket saves, the
spend-X-save-Y uplift), and e_k the offer's own intercept (urgency, framing). Everything
learnt about the price response (c * x) is shared by every offer: a percent offer
teaches the model about every other depth.

Each head's posterior is Gaussian (a Laplace approximation), N(mu, Sigma), with prior
mu = 0 except the offer intercepts (``prior_logit_buy``, ``prior_logit_basket``) and
Sigma = ``prior_var`` * I. Every observation makes one online Newton step (the exact
Laplace update for the new term, Sherman-Morrison on Sigma):
u = Sigma phi, p = sigmoid(mu . phi), g = w p (1 - p),
Sigma <- Sigma - g u u' / (1 + g phi'u), mu <- mu + w (y - p) u / (1 + g phi'u).
Head 0 learns from every decision (y: bought); head 1 only from purchases (y: the whole
basket). On separable data the step shrinks with |y - p| and g, so the weights grow
slowly and never overflow; logits are clamped to +-35 before the sigmoid: no NaN.

The decision. Each eligible offer's two logits are drawn from their posterior marginals,
z ~ N(mu . phi, v^2 phi' Sigma phi) (independently per offer and head: the per-arm draw
LinTS makes, at O(K) draws per decision), and the offer maximising
    p_buy * ((1 - p_basket) * value_lead + p_basket * value_basket) + bias
is chosen (lowest index on ties). value_lead / value_basket are the objective's exact
value if the lead line / the whole basket is bought under this offer (profit: paid minus
cost of goods, in reward units), and bias is the engine's budget and fairness adjustment,
as for every policy. The propensity is estimated from ``propensity_draws`` further draws,
(wins + 1) / (draws + K_eligible), as for LinTS.

Quotes. ``select`` and ``select_batch`` take ``quotes`` (K, 4) / (n, K, 4) float64:
columns value_lead, value_basket (reward units, any finite number), cut_lead, cut_basket
(log(list / paid) >= 0). The engine computes them from its catalogue quote (see
``promobandit.engine.Engine``); offers below the margin floor are masked by the engine and
never chosen. ``update`` takes the outcome (0 none, 1 lead line, 2 whole basket) and the
chosen offer's cuts (cut_lead, cut_basket).

Not supported (a clear ValueError): adding arms (the feature layout depends on K) and
merging replicas (the online Laplace posterior is not a sum of statistics).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._validation import check_int, check_range, edge_bool, edge_float
from .base import Policy, PolicyConfig, new_counters
from .traits import PolicyTraits


@dataclasses.dataclass(frozen=True)
class ConversionTSConfig(PolicyConfig):
    """Settings of ConversionTS (see the module for the model).

    v (>= 0): exploration scale: logits are drawn with standard deviation v times the
        posterior's (0: act on the posterior mean, no exploration).
    prior_var (> 0): prior variance of every weight of both heads (logit units squared).
    prior_logit_buy: prior mean of each offer's intercept in the purchase head (logit
        of the prior purchase rate: -2.0 is about 12%).
    prior_logit_basket: prior mean of each offer's intercept in the basket head (logit
        of the prior share of purchases that take the whole basket: -1.5 is about 18%).
    propensity_draws (>= 0): draws per decision for the chosen offer's propensity,
        (wins + 1) / (draws + K_eligible); 0 returns NaN. About 2 K normal draws each.
    decay: as for every policy, but here as forgetting: each update divides both heads'
        covariance by decay (1.0: never forget).
    """

    v: float = 1.0
    prior_var: float = 1.0
    prior_logit_buy: float = -2.0
    prior_logit_basket: float = -1.5
    propensity_draws: int = 1000

    def validate(self) -> None:
        super().validate()
        check_range("v", self.v, 0.0)
        check_range("prior_var", self.prior_var, 0.0, lo_open=True)
        check_range("prior_logit_buy", self.prior_logit_buy, -35.0, 35.0)
        check_range("prior_logit_basket", self.prior_logit_basket, -35.0, 35.0)
        check_int("propensity_draws", self.propensity_draws, 0)


# Outcome codes of update.
OUTCOME_NONE, OUTCOME_LEAD, OUTCOME_BASKET = 0, 1, 2
# Quote columns.
QUOTE_COLUMNS = ("value_lead", "value_basket", "cut_lead", "cut_basket")


class ConversionTS(Policy):
    """Conversion-model Thompson sampling (see the module). Extra argument: n_features."""

    traits = PolicyTraits(deterministic=False, propensity="estimated", contextual=True,
                          needs_quotes=True)
    name = "ConversionTS"
    config_class = ConversionTSConfig
    config: ConversionTSConfig

    def __init__(self, n_arms: int, n_features: int, config: ConversionTSConfig | None = None,
                 *, seed: int = 0, backend: str = "auto", **kwargs: Any) -> None:
        self.n_features = check_int("n_features", n_features, 1)
        super().__init__(n_arms, config, seed=seed, backend=backend, **kwargs)

    # --- state -----------------------------------------------------------------------------
    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        d, c = self.n_features, self.config
        p = 2 * d + 1 + n_arms
        mu = np.zeros((2, p))
        mu[0, 2 * d + 1:] = c.prior_logit_buy
        mu[1, 2 * d + 1:] = c.prior_logit_basket
        sigma = np.repeat((c.prior_var * np.eye(p))[None], 2, axis=0)
        return {"mu": mu, "Sigma": np.ascontiguousarray(sigma), "n": np.zeros(n_arms),
                "active": np.ones(n_arms, dtype=np.bool_), "counters": new_counters(self._seed)}

    def _new_arm_rows(self) -> dict[str, np.ndarray]:
        raise ValueError("add_arm: ConversionTS's feature layout depends on the number of "
                         "offers; build a new policy with the new catalogue")

    def add_arm(self) -> int:
        return int(self._new_arm_rows())  # always raises (see _new_arm_rows)

    def _make_kernel(self, module: Any) -> Any:
        c = self.config
        if self.backend == "cpp":
            cls = module.ConvKernel
        else:
            from .._numba.conversion import ConvKernel as cls
        return cls(c.decay, c.v, c.propensity_draws, self._arrays)

    def _bind(self) -> None:
        super()._bind()
        # The base's edge wrappers take the base signature; these methods take quotes or
        # outcomes and cuts, so the class methods below (which convert at the edge) serve.
        for name in ("select", "select_batch", "update", "update_batch"):
            self.__dict__.pop(name, None)

    def _identity(self) -> dict[str, Any]:
        return {"n_features": self.n_features}

    @classmethod
    def _from_identity(cls, state: dict[str, Any], config: Any, backend: str) -> Policy:
        d = state.get("n_features")
        if isinstance(d, bool) or not isinstance(d, int):
            raise ValueError(f"state_dict: n_features must be an integer, got {d!r}")
        return cls(int(state.get("n_arms", 1)), d, config, backend=backend)

    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        raise ValueError("other: ConversionTS cannot merge replicas (its online Laplace "
                         "posterior is not a sum of statistics); share one policy instead")

    # --- decisions and learning ----------------------------------------------------------
    def select(self, context: Any = None, mask: Any = None, bias: Any = None,
               quotes: Any = None) -> tuple[int, float]:
        """Choose an offer for one request: context (d,), optional mask (K,) bool and
        bias (K,) (reward units), quotes (K, 4) (see the module). Returns (arm,
        propensity)."""
        try:
            return self._kernel.select(context, mask, bias, quotes)
        except ValueError:
            c, m = edge_float(context, "context"), edge_bool(mask, "mask")
            b, q = edge_float(bias, "bias"), edge_float(quotes, "quotes")
            if c is context and m is mask and b is bias and q is quotes:
                raise
            return self._kernel.select(c, m, b, q)

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None, *,
                     out_arms: np.ndarray | None = None, out_props: np.ndarray | None = None,
                     n_threads: int = 1, biases: Any = None,
                     quotes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Offers for n requests (as n calls of select without updates between them);
        quotes (n, K, 4). Other arguments as Policy.select_batch."""
        return self._kernel.select_batch(edge_float(contexts, "contexts"), masks, n, out_arms,
                                         out_props, n_threads, edge_float(biases, "biases"),
                                         edge_float(quotes, "quotes"))

    def update(self, arm: int, outcome: Any, context: Any = None, cuts: Any = None,
               weight: float = 1.0) -> None:  # type: ignore[override]
        """Learn from one decision's outcome: 0 no purchase, 1 the lead line alone, 2 the
        whole basket; cuts = (cut_lead, cut_basket) of the chosen offer (its quote's
        columns 2 and 3). A rejected update changes nothing."""
        c = None if cuts is None else np.ascontiguousarray(cuts, dtype=np.float64)
        self._kernel.update(arm, outcome, edge_float(context, "context"),
                            None if c is None else c.reshape(1, -1), weight)

    def update_batch(self, arms: Any, outcomes: Any, contexts: Any = None,  # type: ignore[override]
                     cuts: Any = None, weights: Any = None) -> None:
        """Learn from n outcomes in order; cuts (n, 2). Every row is checked first."""
        self._kernel.update_batch(np.ascontiguousarray(arms, dtype=np.int64),
                                  np.ascontiguousarray(outcomes, dtype=np.int64),
                                  edge_float(contexts, "contexts"),
                                  None if cuts is None else np.ascontiguousarray(
                                      cuts, dtype=np.float64),
                                  edge_float(weights, "weights"))

    def action_probabilities(self, contexts: Any = None, masks: Any = None,
                             n: int | None = None, *, draws: int | None = None,
                             n_threads: int = 1, biases: Any = None,
                             quotes: Any = None) -> np.ndarray:
        """(n, K) estimated action distribution, rows (wins + 1) / (draws + K_eligible)
        over the eligible offers; quotes (n, K, 4). Changes no state."""
        d = self.config.propensity_draws if draws is None else draws
        return self._kernel.action_probabilities(edge_float(contexts, "contexts"), masks,
                                                 max(int(d), 1), n_threads,
                                                 edge_float(biases, "biases"),
                                                 edge_float(quotes, "quotes"))

    def expectations(self, context: Any = None, quotes: Any = None) -> np.ndarray:
        """Expected value of every offer at the posterior mean: (K,) for a (d,) context
        and (K, 4) quotes, (n, K) for (n, d) and (n, K, 4)."""
        x = edge_float(context, "contexts")
        q = edge_float(quotes, "quotes")
        if isinstance(x, np.ndarray) and x.ndim == 1:
            return self._kernel.expectations(x[None], None if q is None else np.asarray(q)[None])[0]
        return self._kernel.expectations(x, q)

    # --- read-outs -------------------------------------------------------------------------
    def response(self, context: Any, quotes: Any) -> tuple[np.ndarray, np.ndarray]:
        """(P(buy), P(whole basket | buy)) of every offer at the posterior mean, (K,) each,
        for one context (d,) and its quotes (K, 4)."""
        from .._numba.conversion import moments as _moments

        x = np.ascontiguousarray(context, dtype=np.float64)
        q = np.ascontiguousarray(quotes, dtype=np.float64)
        with self._exclusive():
            k = self.n_arms
            p = self._arrays["mu"].shape[1]
            means, sds = np.zeros((2, k)), np.zeros((2, k))
            _moments(self._arrays["mu"], self._arrays["Sigma"], np.ones(k, np.bool_),
                     np.ones(k, np.bool_), x, q, means, sds, np.zeros(p), np.zeros(p),
                     np.zeros(5))
        return 1.0 / (1.0 + np.exp(-means[0])), 1.0 / (1.0 + np.exp(-means[1]))

    @property
    def counts(self) -> np.ndarray:
        """Sum of update weights per offer, (K,)."""
        with self._exclusive():
            return self._arrays["n"].copy()


__all__ = ["OUTCOME_BASKET", "OUTCOME_LEAD", "OUTCOME_NONE", "QUOTE_COLUMNS", "ConversionTS",
           "ConversionTSConfig"]
