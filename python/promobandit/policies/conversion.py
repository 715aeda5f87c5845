"""Conversion-model Thompson sampling: learn what is uncertain, compute what is known.

The other learners regress each offer's profit, one noisy number, on the context. Most of
that number is known before the shopper answers: the engine prices every offer exactly.
``ConversionTS`` learns only the shopper's response and takes the money from the
engine's quote of *this* basket.

The response model. For a request with context x (d,) and a basket whose first line is
the *lead* item (the one the shopper is looking at), the shopper buys nothing, the lead
line alone, or the whole basket. Two probit heads (Phi the standard normal CDF):

* head 1, P(whole basket | buy, x, k) = Phi(theta_1 . phi(x, k, e_k)) with
  e_k = c_basket_k - c_lead_k, the basket's extra log price cut over the lead line's,
* head 0, P(buy | x, k) = Phi(theta_0 . phi(x, k, c_lead_k + pi_k e_k)) with pi_k the
  basket head's P(whole basket | buy) at its posterior mean,

with the shared features phi(x, k, c) = [x, c * x, c, 1_k] (p = 2 d + 1 + K): c is a log
price cut, log(list / paid), and 1_k the indicator of the offer's own intercept (urgency,
framing). Head 1's cut is how much more the whole basket saves (the spend-X-save-Y
uplift). Head 0's is the first-order change of the nested choice's inclusive value: a
percent offer cuts both options alike (c_lead), a threshold offer only the basket, which
moves buying at all in proportion to how likely the basket is chosen. Everything
learnt about the price response (c * x) is shared by every offer: a percent offer
teaches the model about every other depth.

Each head's posterior is Gaussian, N(mu, Sigma), with prior mu = 0 except the offer
intercepts (``prior_mean_buy``, ``prior_mean_basket``) and the weight of the cut alone
(``prior_mean_cut``), and
Sigma diagonal: ``prior_var`` for the context weights, ``prior_var_cut`` for the price
response weights, ``prior_var_offer`` for the offer intercepts. Every observation is absorbed by assumed density filtering, the exact moment match of
the Gaussian posterior times the new probit likelihood (as in AdPredictor; no
linearisation, so a wide prior does not make the first observations overshoot):
u = Sigma phi, s = phi'u, m = mu . phi, sd = sqrt(1 + s), t = +1 if y else -1,
a = t m / sd, v = N(a) / Phi(a), w = v (v + a),
mu <- mu + weight t v / sd u, Sigma <- Sigma - weight w / sd^2 u u' (0 < w < 1, so Sigma
stays positive definite; the shrink is capped at 0.999 along phi for weights above 1).
Head 0 learns from every decision (y: bought); head 1 only from purchases (y: the whole
basket). On separable data v and w vanish as the data stops surprising the model, so
the weights stop growing: no overflow, no NaN (the Mills ratio has a stable series for
a < -30).

The decision. Every offer's scores are drawn jointly from the posterior, per head
z ~ N(Phi' mu, v^2 Phi' Sigma Phi) over the K offers' feature vectors Phi (a K x K
Cholesky factor per head and request, K normal draws per head: O(p d + K^2 p) work, no
p x p factorisation). Joint, not per offer: the uncertainty the offers share (how likely
this shopper is to buy at all) moves every offer's logit together and does not make one
offer look better than another by chance. The offer maximising
    Phi(z_buy) * ((1 - Phi(z_basket)) * value_lead + Phi(z_basket) * value_basket) + bias
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
merging replicas (the filtered Gaussian posterior is not a sum of statistics).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._validation import check_int, check_range, edge_bool, edge_float
from .base import ContextualIdentity, Policy, PolicyConfig, new_counters
from .traits import PolicyTraits


@dataclasses.dataclass(frozen=True)
class ConversionTSConfig(PolicyConfig):
    """Settings of ConversionTS (see the module for the model).

    v (>= 0): exploration scale: scores are drawn with standard deviation v times the
        posterior's (0: act on the posterior mean, no exploration).
    prior_var (> 0): prior variance of the context weights x of both heads (probit
        score units squared).
    prior_var_cut (> 0): prior variance of the price-response weights (c * x and c):
        probit score change per unit of log price cut. Wide: a cut is a small number
        (0.2 for 18% off) and shoppers' price sensitivity runs to 5 or more.
    prior_var_offer (> 0): prior variance of each offer's own intercept e_k. Small: an
        offer's response is mostly its price cut, which the shared weights learn from
        every offer; the intercept keeps what the cut does not explain (urgency,
        framing). A wide one would make every offer learn alone.
    prior_mean_buy: prior mean of each offer's intercept in the purchase head (probit
        of the prior purchase rate: -1.2 is about 12%).
    prior_mean_basket: prior mean of each offer's intercept in the basket head (probit
        of the prior share of purchases that take the whole basket: -0.9 is about 18%).
    prior_mean_cut: prior mean of the price-response weight on the cut alone (the c
        feature) in both heads: probit score change per unit of log price cut for every
        shopper. A cut can only make buying (and the basket it cheapens) more attractive,
        so a positive mean says so before any data; 0 (the default) leaves the sign to
        the data. It guards against a lock-in: a few early refusals of discounted offers
        can turn the learnt response negative, after which nothing is discounted and
        nothing corrects it (seen in the simulator with prior_var_offer 1e-3).
    propensity_draws (>= 0): draws per decision for the chosen offer's propensity,
        (wins + 1) / (draws + K_eligible); 0 returns NaN. About 2 K normal draws each.
    decay: as for every policy, but here as forgetting: each update divides both heads'
        covariance by decay (1.0: never forget).
    """

    v: float = 0.5
    prior_var: float = 1.0
    prior_var_cut: float = 25.0
    prior_var_offer: float = 0.1
    prior_mean_buy: float = -1.2
    prior_mean_basket: float = -0.9
    prior_mean_cut: float = 0.0
    propensity_draws: int = 1000

    def validate(self) -> None:
        super().validate()
        check_range("v", self.v, 0.0)
        check_range("prior_var", self.prior_var, 0.0, lo_open=True)
        check_range("prior_var_cut", self.prior_var_cut, 0.0, lo_open=True)
        check_range("prior_var_offer", self.prior_var_offer, 0.0, lo_open=True)
        check_range("prior_mean_buy", self.prior_mean_buy, -30.0, 30.0)
        check_range("prior_mean_basket", self.prior_mean_basket, -30.0, 30.0)
        check_range("prior_mean_cut", self.prior_mean_cut, -30.0, 30.0)
        check_int("propensity_draws", self.propensity_draws, 0)


# Outcome codes of update.
OUTCOME_NONE, OUTCOME_LEAD, OUTCOME_BASKET = 0, 1, 2
# Quote columns.
QUOTE_COLUMNS = ("value_lead", "value_basket", "cut_lead", "cut_basket")


class ConversionTS(ContextualIdentity, Policy):
    """Conversion-model Thompson sampling (see the module). Extra argument: n_features."""

    traits = PolicyTraits(deterministic=False, propensity="estimated", contextual=True,
                          needs_quotes=True)
    name = "ConversionTS"
    config_class = ConversionTSConfig
    config: ConversionTSConfig
    # Checked updates (promobandit.policies.base): an update writes both heads' moments
    # whole and its offer's count.
    _update_rows = ("n",)
    _update_whole = ("mu", "Sigma")

    def __init__(self, n_arms: int, n_features: int, config: ConversionTSConfig | None = None,
                 *, seed: int = 0, backend: str = "auto", **kwargs: Any) -> None:
        self.n_features = check_int("n_features", n_features, 1)
        super().__init__(n_arms, config, seed=seed, backend=backend, **kwargs)

    # --- state -----------------------------------------------------------------------------
    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        d, c = self.n_features, self.config
        p = 2 * d + 1 + n_arms
        mu = np.zeros((2, p))
        mu[0, 2 * d + 1:] = c.prior_mean_buy
        mu[1, 2 * d + 1:] = c.prior_mean_basket
        mu[:, 2 * d] = c.prior_mean_cut
        var = np.full(p, c.prior_var)
        var[d:2 * d + 1] = c.prior_var_cut
        var[2 * d + 1:] = c.prior_var_offer
        sigma = np.repeat(np.diag(var)[None], 2, axis=0)
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

    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        raise ValueError("other: ConversionTS cannot merge replicas (its filtered Gaussian "
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
        x = edge_float(context, "context")
        # Checked like every policy's update (promobandit.policies.base): both heads'
        # moments are written whole, so they are copied and tested on every update.
        self._guarded_update(
            lambda: self._kernel.update(arm, outcome, x, None if c is None else c.reshape(1, -1),
                                        weight), arm, f"update (arm {arm!r})")

    def update_batch(self, arms: Any, outcomes: Any, contexts: Any = None,  # type: ignore[override]
                     cuts: Any = None, weights: Any = None) -> None:
        """Learn from n outcomes in order; cuts (n, 2). Every row is checked first."""
        a = np.ascontiguousarray(arms, dtype=np.int64)
        y = np.ascontiguousarray(outcomes, dtype=np.int64)
        x = edge_float(contexts, "contexts")
        c = None if cuts is None else np.ascontiguousarray(cuts, dtype=np.float64)
        w = edge_float(weights, "weights")

        def rows() -> tuple[int, Any]:
            def row(i: int) -> None:
                self._kernel.update(int(a[i]), int(y[i]), None if x is None else x[i],
                                    None if c is None else c[i:i + 1],
                                    1.0 if w is None else float(np.asarray(w)[i]))
            return len(a), row
        self._guarded_batch(lambda: self._kernel.update_batch(a, y, x, c, w), rows,
                            "update_batch")

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
            means, chol = np.zeros((2, k)), np.zeros((2, k, k))
            _moments(self._arrays["mu"], self._arrays["Sigma"], np.ones(k, np.bool_),
                     np.ones(k, np.bool_), x, q, means, chol, np.zeros(p), np.zeros(p),
                     np.zeros(5), np.zeros(k))
        from .._numba.conversion import probit

        return (np.array([probit(z) for z in means[0]]),
                np.array([probit(z) for z in means[1]]))

    @property
    def counts(self) -> np.ndarray:
        """Sum of update weights per offer, (K,)."""
        with self._exclusive():
            return self._arrays["n"].copy()


__all__ = ["OUTCOME_BASKET", "OUTCOME_LEAD", "OUTCOME_NONE", "QUOTE_COLUMNS", "ConversionTS",
           "ConversionTSConfig"]
