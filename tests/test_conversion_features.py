"""The conversion model's context in the simulator: the deal signals and their products."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from promobandit import _backends
from promobandit.offers import default_catalogue
from promobandit.policies import ConversionTS
from promobandit.simulate.config import LEARNER_FEATURES, LEARNERS, SimulationConfig
from promobandit.simulate.context import ContextBuilder
from promobandit.simulate.headroom import FEATURE_GROUPS
from promobandit.simulate.history import behaviour_history
from promobandit.simulate.market import RUN_START, Market, MarketConfig
from promobandit.simulate.pipeline import behaviour_features


@pytest.fixture(scope="module")
def builder() -> ContextBuilder:
    market = Market(MarketConfig(n_users=600, n_items=240, history_days=14.0, seed=5),
                    default_catalogue())
    history = behaviour_history(market)
    behaviour, names = behaviour_features(market, history)
    return ContextBuilder(market, history.summary, 14.0, behaviour=behaviour,
                          behaviour_names=names)


def test_signal_products_are_the_products_of_their_columns(builder: ContextBuilder) -> None:
    market = builder.market
    rs = np.random.default_rng(0)
    n = 500
    users = rs.integers(0, market.config.n_users, n)
    items = rs.integers(0, market.config.n_items, n)
    addons = (items + 1) % market.config.n_items
    via = rs.random(n) < 0.3
    x = builder.build(users, items, addons, via, RUN_START, market.new_holdings())
    col = {name: x[:, builder.names.index(name)] for name in builder.names}
    np.testing.assert_array_equal(col["deal_x_via"], col["deal_share"] * col["via_deals"])
    np.testing.assert_array_equal(col["deal_x_discount"],
                                  col["deal_share"] * col["discount_share"])
    np.testing.assert_array_equal(col["discount_x_via"],
                                  col["discount_share"] * col["via_deals"])
    np.testing.assert_array_equal(col["deal_sq"], col["deal_share"] ** 2)
    # The history gave discounts, so the products are not all zero: the test has teeth.
    assert (col["deal_x_discount"] > 0).any() and (col["discount_x_via"] > 0).any()


def test_products_can_be_chosen_alone_and_keep_their_values(builder: ContextBuilder) -> None:
    market = builder.market
    users, items = np.arange(50), np.arange(50)
    args = (users, items, items + 1, np.ones(50, dtype=bool), RUN_START, market.new_holdings())
    full = builder.build(*args)
    some = builder.with_features(("deal_sq", "bias")).build(*args)
    np.testing.assert_array_equal(some[:, 0], full[:, builder.names.index("deal_sq")])
    np.testing.assert_array_equal(some[:, 1], 1.0)


def test_without_behaviour_the_discount_products_are_zero() -> None:
    market = Market(MarketConfig(n_users=50, n_items=240, history_days=0.0, seed=3),
                    default_catalogue())
    history = behaviour_history(market)
    b = ContextBuilder(market, history.summary, 1.0,
                       features=("deal_x_discount", "discount_x_via", "deal_x_via"))
    x = b.build(np.arange(20), np.arange(20), np.arange(1, 21), np.ones(20, dtype=bool),
                RUN_START, market.new_holdings())
    assert (x[:, :2] == 0.0).all()
    assert (x[:, 2] > 0.0).all()  # deal_share is smoothed above zero, via_deals is 1


def test_the_simulators_conversion_learner_is_wired_as_documented() -> None:
    cls, _, _ = LEARNERS["conversion"]
    assert cls == "ConversionTS"
    feats = LEARNER_FEATURES["conversion"]
    assert {"deal_x_via", "deal_x_discount", "discount_x_via", "deal_sq",
            "promo_lift"} <= set(feats)
    # Every product of the deal signals belongs to the report's "deal signals" group.
    assert {"deal_x_via", "deal_x_discount", "discount_x_via",
            "deal_sq"} <= set(FEATURE_GROUPS["deal signals"])
    spec = next(s for s in SimulationConfig().specs() if s.key == "conversion+pacing")
    assert spec.features == feats


def test_prior_mean_cut_makes_a_cut_raise_buying_before_any_data() -> None:
    d, k = 3, 3
    x = np.array([1.0, 0.5, 0.0])
    quotes = np.array([[1.0, 2.0, 0.0, 0.0], [0.9, 1.8, 0.1, 0.1], [0.8, 1.6, 0.2, 0.2]])
    flat = ConversionTS(k, d, backend="numba")
    assert np.ptp(flat.response(x, quotes)[0]) == 0.0  # no sign before data
    for backend in [b for b in ("numba", "cpp") if b != "cpp" or _backends.has_cpp()]:
        sure = ConversionTS(k, d, backend=backend, prior_mean_cut=2.0)
        mu = sure.state_dict()["arrays"]["mu"]
        np.testing.assert_array_equal(mu[:, 2 * d], 2.0)
        buy, _ = sure.response(x, quotes)
        assert buy[0] < buy[1] < buy[2]
    with pytest.raises(ValueError, match="prior_mean_cut"):
        ConversionTS(k, d, prior_mean_cut=float("nan"))
    with pytest.raises(ValueError, match="prior_mean_cut"):
        ConversionTS(k, d, prior_mean_cut=31.0)


def test_policy_seed_moves_only_the_policys_own_draws() -> None:
    from promobandit.simulate.run import PolicySpec, run_policies

    from .test_market import small_scenario

    sc = small_scenario(n_users=400, days=2)
    spec = PolicySpec(key="lints", label="LinTS", policy="LinTS", settings=(("v", 1.0),))
    own, same, other = run_policies(
        [spec, dataclasses.replace(spec, key="same", policy_seed=sc.seed),
         dataclasses.replace(spec, key="other", policy_seed=sc.seed + 1000)], sc)
    np.testing.assert_array_equal(own.offer, same.offer)  # None is the scenario's seed
    assert (own.offer != other.offer).any()
    with pytest.raises(ValueError, match="policy_seed"):
        PolicySpec(key="x", label="x", policy="LinTS", policy_seed=-1)
