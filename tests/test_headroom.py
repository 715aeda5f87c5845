"""The feature oracle and the share of the reachable headroom (simulate.headroom)."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit.simulate.headroom import (
    Headroom,
    cross_fitted_argmax,
    feature_oracle,
    policy_shares,
    quadratic,
)
from promobandit.simulate.run import PolicySpec, run_policies

from .test_market import small_scenario  # the small market with common random numbers


def test_share_is_the_fraction_of_the_reachable_headroom() -> None:
    h = Headroom(full_oracle=130.0, feature_oracle=120.0, fixed=np.array([100.0, 90.0]),
                 best_fixed=100.0, best_fixed_offer=0, decisions=10, offers=(0, 1))
    assert h.share(110.0) == pytest.approx(0.5)
    assert h.share(100.0) == 0.0
    assert h.share(95.0, best_fixed_total=90.0) == pytest.approx(5.0 / 30.0)
    flat = Headroom(full_oracle=100.0, feature_oracle=100.0, fixed=np.array([100.0]),
                    best_fixed=100.0, best_fixed_offer=0, decisions=1, offers=(0,))
    assert np.isnan(flat.share(100.0))  # no headroom: no share


def test_quadratic_expansion_holds_every_product_once() -> None:
    z = np.array([[2.0, 3.0, 5.0]])
    q = quadratic(z)
    assert q.shape == (1, 1 + 3 + 6)
    assert sorted(q[0].tolist()) == sorted([1.0, 2.0, 3.0, 5.0, 4.0, 6.0, 10.0, 9.0, 15.0,
                                            25.0])


def test_cross_fitted_argmax_recovers_a_planted_quadratic_truth() -> None:
    """Values that are exact quadratics of the features: the out-of-fold argmax is the
    true one; an ineligible column is never picked."""
    rs = np.random.default_rng(0)
    f = rs.normal(size=(4000, 3))
    values = np.column_stack([f[:, 0] * f[:, 1], 0.5 - f[:, 2] ** 2, f[:, 0] + 0.1,
                              np.full(4000, 10.0)])
    eligible = np.ones((4000, 4), dtype=bool)
    eligible[:, 3] = False
    pick = cross_fitted_argmax(f, values, eligible, ridge=1e-8)
    truth = np.argmax(values[:, :3], axis=1)
    assert (pick == truth).mean() > 0.99
    assert not (pick == 3).any()


def test_feature_oracle_sits_below_the_full_oracle_and_shares_follow_runs() -> None:
    sc = small_scenario()
    h = feature_oracle(sc)
    assert h.decisions == len(sc.decisions)
    assert h.full_oracle >= h.feature_oracle
    assert h.full_oracle >= h.fixed.max()
    assert h.best_fixed == h.fixed.max()
    assert 0 in h.offers and 7 not in h.offers  # the coupon is left out by default
    none = PolicySpec(key="fixed:none", label="none", policy="fixed", offer="none")
    pct20 = PolicySpec(key="fixed:pct20", label="20%", policy="fixed", offer="pct20")
    runs = run_policies([none, pct20], sc)
    shares = policy_shares(h, runs, "fixed:none")
    assert shares["fixed:none"] == 0.0
    assert shares["fixed:pct20"] < 0.0  # a fixed 20% off earns less than no discount
    with pytest.raises(ValueError, match="no-discount"):
        feature_oracle(sc, offers=[1, 2])


def test_feature_groups_are_estimated_alone_with_the_basket_money() -> None:
    sc = small_scenario(n_users=1000, days=3)
    h = feature_oracle(sc, groups={"money only": (), "all": sc.contexts.names,
                                   "unknown names skipped": ("no_such_feature",)})
    assert set(h.groups) == {"money only", "all", "unknown names skipped"}
    for v in h.groups.values():
        assert h.full_oracle >= v
    # every replayed column: the same columns as the oracle itself, the same picks
    assert h.groups["all"] == pytest.approx(h.feature_oracle)
    assert h.groups["unknown names skipped"] == pytest.approx(h.groups["money only"])
