"""The headroom that the features allow: a *feature oracle* beside the full oracle.

The full oracle picks, for every decision, the offer with the most expected profit given
everything the simulator knows (the shopper's hidden tastes and price sensitivity
included). No policy can reach it: the engine sees only its context features and the
basket. The *feature oracle* is the best policy that sees only what the engine sees,
estimated from the simulator's exact expected profits:

1. the scenario's decisions are replayed in a world where no promotion is held (the
   no-discount run's world: no coupon or time-limited offer from earlier decisions), and
   for each the simulator gives the exact expected profit of every offer (currency) and
   the margin-floor eligibility, and the ContextBuilder gives the context the policies
   see; the basket's list totals and costs (lead line and whole basket, which the
   engine's quote sees) join the context;
2. per offer, a ridge regression of the expected profit on the quadratic expansion of
   those features (every feature and every product of two: ``quadratic``) is fitted on
   one half of the decisions and its argmax over eligible offers is played on the other
   half, and the other way round (two-fold cross-fitting: the estimate is out of sample,
   so it does not flatter the oracle);
3. the feature oracle's value is the summed exact expected profit of the offers it picks.

It is an estimate from below of what the features allow (a richer model could do
better), and an honest one: every figure is an exact expectation, not a noisy outcome.

The *share of the reachable headroom* a policy captures is
    (policy - best fixed) / (feature oracle - best fixed),
with every term a sum of exact expected profit over the run's decisions (the policy's
and the best fixed offer's from their own runs). Money is in the catalogue's currency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._validation import check_int, check_range

if TYPE_CHECKING:
    from .run import PolicyRun, Scenario

# Ridge penalty of the per-offer regressions, relative to the mean diagonal of the
# (standardised) Gram matrix: enough to keep 150 quadratic terms well conditioned.
DEFAULT_RIDGE = 1e-3
# Feature groups of the report (columns of simulate.context, by name): what the shop knows
# of the shopper's appetite for deals, of the promotions they hold and the threshold, and
# of who they are; the basket's money (lead and basket list price and cost) is in every
# group. A group's names missing from the replayed columns are skipped.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "basket money": (),
    "deal signals": ("deal_share", "discount_share", "via_deals", "promo_lift", "deal_x_via",
                     "deal_x_discount", "discount_x_via", "deal_sq"),
    "promotions held, threshold": ("holds_timed", "holds_coupon", "pair_over_threshold"),
    "shopper profile": ("new", "region_south", "region_west", "log_purchases",
                        "log_clicks", "recency"),
}


@dataclasses.dataclass(frozen=True)
class Headroom:
    """Exact expected profit totals (currency) over the scenario's decisions.

    full_oracle: the best eligible offer of every decision (hidden truth included).
    feature_oracle: the cross-fitted argmax of the per-offer models of the features.
    fixed: (K,) each offer made to everyone (no discount where it is not eligible);
        best_fixed the largest of them (offer index best_fixed_offer).
    decisions: how many decisions; offers: the offer indices the oracles chose among.
    groups: the feature oracle of each feature group alone (with the basket's money
        columns, which every group keeps), by group name: which features carry the gain.
    """

    full_oracle: float
    feature_oracle: float
    fixed: np.ndarray
    best_fixed: float
    best_fixed_offer: int
    decisions: int
    offers: tuple[int, ...]
    groups: dict[str, float] = dataclasses.field(default_factory=dict)

    def share(self, policy_total: float, best_fixed_total: float | None = None) -> float:
        """(policy - best fixed) / (feature oracle - best fixed); best_fixed_total
        defaults to this replay's best fixed offer. NaN when there is no headroom."""
        base = self.best_fixed if best_fixed_total is None else float(best_fixed_total)
        room = self.feature_oracle - base
        return (float(policy_total) - base) / room if room > 0 else float("nan")


def quadratic(z: np.ndarray) -> np.ndarray:
    """[1, z, z_i * z_j for i <= j]: (n, 1 + m + m (m + 1) / 2) for (n, m) features."""
    n, m = z.shape
    iu, ju = np.triu_indices(m)
    return np.hstack([np.ones((n, 1)), z, z[:, iu] * z[:, ju]])


def replay(scenario: Scenario, features: Sequence[str] | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (n, m), expected (n, K), eligible (n, K)) of every decision in the
    no-promotion-held world (see the module): the context (the scenario's columns, or
    `features` by name) plus the basket's lead and total list price and cost of goods
    (currency)."""
    sc, mk, dec = scenario, scenario.market, scenario.decisions
    builder = sc.contexts if features is None else sc.contexts.with_features(tuple(features))
    holdings = mk.new_holdings()  # never updated: nothing is issued in this world
    params = mk.kernel_params()
    n, k = len(dec), mk.n_offers
    dim = builder.dim
    feats = np.empty((n, dim + 4))
    expected = np.empty((n, k))
    eligible = np.empty((n, k), dtype=bool)
    for s in range(sc.step_times.shape[0]):
        lo, hi = int(sc.step_bounds[s]), int(sc.step_bounds[s + 1])
        if hi <= lo:
            continue
        now = float(sc.step_times[s])
        users, items, addons = dec.user[lo:hi], dec.item[lo:hi], dec.addon[lo:hi]
        x = builder.build(users, items, addons, dec.via_deals[lo:hi], now, holdings)
        res = mk.step(users, items, addons, dec.time[lo:hi], np.full(hi - lo, -1, np.int64),
                      dec.u_buy[lo:hi], dec.u_recall[lo:hi], holdings, params=params)
        feats[lo:hi, :dim] = x
        feats[lo:hi, dim:] = np.column_stack([
            mk.item_price[items], mk.item_price[items] + mk.item_price[addons],
            mk.item_cost[items], mk.item_cost[items] + mk.item_cost[addons]])
        expected[lo:hi] = res.expected
        eligible[lo:hi] = res.eligible
    return feats, expected, eligible


def _fit_predict(z_fit: np.ndarray, y_fit: np.ndarray, z_eval: np.ndarray,
                 ridge: float) -> np.ndarray:
    """Ridge regression of every column of y_fit on z_fit, predicted on z_eval."""
    gram = z_fit.T @ z_fit
    lam = ridge * float(np.mean(np.diag(gram)))
    gram[np.diag_indices_from(gram)] += lam
    coef = np.linalg.solve(gram, z_fit.T @ y_fit)
    return z_eval @ coef


def cross_fitted_argmax(feats: np.ndarray, values: np.ndarray, eligible: np.ndarray, *,
                        ridge: float = DEFAULT_RIDGE, folds: int = 2,
                        max_rows: int | None = None) -> np.ndarray:
    """(n,) the column each row picks: per column a ridge regression of `values` (n, K)
    on the quadratic expansion of the standardised `feats` (n, m), fitted on the other
    folds (contiguous blocks), its argmax over `eligible` (n, K) columns."""
    n = values.shape[0]
    mean, sd = feats.mean(axis=0), feats.std(axis=0)
    sd[sd == 0] = 1.0  # a constant column: nothing to scale
    z = quadratic((feats - mean) / sd)
    pred = np.empty_like(values, dtype=np.float64)
    bounds = np.linspace(0, n, folds + 1).astype(np.int64)
    for f in range(folds):
        ev = np.arange(bounds[f], bounds[f + 1])
        fit = np.concatenate([np.arange(bounds[g], bounds[g + 1]) for g in range(folds)
                              if g != f])
        if max_rows is not None and fit.size > max_rows:
            fit = fit[np.linspace(0, fit.size - 1, max_rows).astype(np.int64)]
        pred[ev] = _fit_predict(z[fit], values[fit], z[ev], ridge)
    return np.argmax(np.where(eligible, pred, -np.inf), axis=1)


def feature_oracle(scenario: Scenario, *, offers: Sequence[int] | None = None,
                   features: Sequence[str] | None = None, ridge: float = DEFAULT_RIDGE,
                   folds: int = 2, max_rows: int | None = None,
                   groups: dict[str, Sequence[str]] | None = None) -> Headroom:
    """The feature oracle and the full oracle of a scenario (see the module).

    offers: the offer indices the oracles and the fixed offers choose among (default
        every offer but coupons, as the learners); the market's no-discount offer must
        be among them (the fallback where an offer is not eligible).
    features: the context columns by name (default the scenario's): give the union of
        every policy's columns, so the oracle sees what any of them sees.
    ridge: penalty relative to the mean diagonal of the Gram matrix (> 0).
    folds: cross-fitting folds (>= 2), contiguous blocks of decisions in time order.
    max_rows: fit on at most this many rows per fold (evenly spaced; None: all).
    groups: feature groups (name -> column names) whose oracles are estimated alone,
        each with the basket's money columns (Headroom.groups); None: none.
    """
    check_range("ridge", ridge, 0.0, lo_open=True)
    check_int("folds", folds, 2)
    mk = scenario.market
    if offers is None:
        offers = [i for i, o in enumerate(mk.catalogue.offers) if o.kind != "coupon"]
    offers = [int(o) for o in offers]
    none = mk.none_offer
    if none not in offers:
        raise ValueError("offers: must include the no-discount offer (the fallback)")
    feats, expected, eligible = replay(scenario, features)
    n = expected.shape[0]
    if n < 2 * folds:
        raise ValueError(f"scenario: expected at least {2 * folds} decisions, got {n}")
    pick = cross_fitted_argmax(feats, expected[:, offers], eligible[:, offers], ridge=ridge,
                               folds=folds, max_rows=max_rows)
    y = expected[:, offers]
    ok = eligible[:, offers]
    rows = np.arange(n)
    feature_total = float(y[rows, pick].sum())
    full_total = float(np.where(ok, y, -np.inf).max(axis=1).sum())
    fixed = np.array([np.where(eligible[:, o], expected[:, o], expected[:, none]).sum()
                      for o in offers])
    b = int(np.argmax(fixed))
    by_group: dict[str, float] = {}
    if groups:
        names = list(scenario.contexts.names if features is None else features)
        money = list(range(len(names), feats.shape[1]))  # the basket's money columns
        for name, cols in groups.items():
            idx = [names.index(c) for c in cols if c in names] + money
            g = cross_fitted_argmax(feats[:, idx], y, ok, ridge=ridge, folds=folds,
                                    max_rows=max_rows)
            by_group[name] = float(y[rows, g].sum())
    return Headroom(full_oracle=full_total, feature_oracle=feature_total, fixed=fixed,
                    best_fixed=float(fixed[b]), best_fixed_offer=offers[b], decisions=n,
                    offers=tuple(offers), groups=by_group)


def policy_shares(headroom: Headroom, runs: Sequence[PolicyRun],
                  best_fixed_key: str | None) -> dict[str, float]:
    """Share of the reachable headroom of every run, by spec key: (its summed expected
    profit - the best fixed run's) / (feature oracle - the best fixed run's)."""
    base = next((float(r.expected.sum()) for r in runs if r.spec.key == best_fixed_key), None)
    return {r.spec.key: headroom.share(float(r.expected.sum()), base) for r in runs}


__all__ = ["DEFAULT_RIDGE", "FEATURE_GROUPS", "Headroom", "cross_fitted_argmax", "feature_oracle", "policy_shares", "quadratic",
           "replay"]
