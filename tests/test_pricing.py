"""One pricing rule: the engine's quotes (Catalogue.quote / quote_batch / price / redeem,
on both backends) and the simulator market's pricing agree to the minor unit on random
baskets, and the kind codes, the fixed point and the tolerance are defined once."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import promobandit
from promobandit import _backends
from promobandit.offers import (
    OFFER_KINDS,
    Basket,
    Catalogue,
    Coupon,
    PercentOff,
    SpendThreshold,
    TimeLimitedPercentOff,
    default_catalogue,
    pricing,
)
from promobandit.simulate import _kernels as market_kernels
from promobandit.simulate.market import RUN_START, Market, MarketConfig

N_ITEMS, N_CATEGORIES = 60, 4
BACKENDS = ["numpy"] + (["numba"] if _backends.has_numba() else [])


def catalogue(margin_floor: float, minor_unit: float = 0.01) -> Catalogue:
    """The default offers plus offers with exclusions (items and categories), thresholds
    near typical orders, and fractions whose halves fall on ties."""
    extra = (
        PercentOff(id="pct35_ex", fraction=0.35, exclude_items=[3, 7, 11],
                   exclude_categories=[2]),
        SpendThreshold(id="spend60_save9_ex", spend=60.0, save=9.0, exclude_categories=[1]),
        SpendThreshold(id="spend40_save25", spend=40.0, save=25.0, exclude_items=[5]),
        TimeLimitedPercentOff(id="flash45", fraction=0.45, hours=2.0, exclude_items=[0, 1]),
        Coupon(id="coupon20_min80_ex", amount=20.0, min_spend=80.0, days=7.0,
               exclude_categories=[3]),
        PercentOff(id="pct12_5", fraction=0.125),
    )
    base = default_catalogue()
    return Catalogue((*base.offers, *extra), currency="EUR", minor_unit=minor_unit,
                     margin_floor=margin_floor)


def market(cat: Catalogue, seed: int) -> Market:
    """A hand-made world: prices on the minor grid from 0.05 to 150, gross margins from 2%
    to 70% (so the margin floor binds for some offers and not for others)."""
    rs = np.random.default_rng(seed)
    step = round(cat.minor_unit * 100)
    price = rs.integers(1, 15_000 // step, N_ITEMS) * step / 100.0
    cost = np.round(price * (1.0 - rs.uniform(0.02, 0.7, N_ITEMS)), 2)
    cfg = MarketConfig(n_users=1, n_items=N_ITEMS, n_categories=N_CATEGORIES, latent_dim=1,
                       items_shown=2, regions=("here",), region_shares=(1.0,),
                       deal_seeker_share=(0.0,), seed=seed)
    return Market.from_world(
        cfg, cat, item_category=np.arange(N_ITEMS) % N_CATEGORIES, item_price=price,
        item_cost=cost, item_ref=price, item_vec=np.zeros((N_ITEMS, 1)),
        item_quality=np.zeros(N_ITEMS), item_price_band=np.zeros(N_ITEMS, np.int64),
        user_vec=np.zeros((1, 1)), user_taste=np.full((1, N_CATEGORIES), 1 / N_CATEGORIES),
        user_beta=[1.0], user_ref=[1.0], user_deal=[False], user_region=[0],
        user_new=[False], user_rate=[1.0])


def orders(mk: Market, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[Basket]]:
    """n random orders: one item, or an item and an add-on (sometimes the same item)."""
    rs = np.random.default_rng([seed, 1])
    a = rs.integers(0, N_ITEMS, n)
    b = np.where(rs.random(n) < 0.3, -1, rs.integers(0, N_ITEMS, n))
    baskets = []
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        items = np.array([i] if j < 0 else [i, j], np.int64)
        baskets.append(Basket(items, mk.item_category[items], mk.item_price[items],
                              mk.item_cost[items], np.ones(items.shape[0], np.int64)))
    return a, b, baskets


WORLDS = [(0.05, 0.01, 1), (0.3, 0.01, 2), (0.0, 0.01, 3), (0.15, 0.05, 4)]


@pytest.mark.parametrize(("margin_floor", "minor_unit", "seed"), WORLDS)
def test_engine_and_market_price_to_the_same_minor_unit(margin_floor, minor_unit, seed):
    cat = catalogue(margin_floor, minor_unit)
    mk = market(cat, seed)
    a, b, baskets = orders(mk, 300, seed)
    per_unit = cat.pricing.per_unit
    saving, usable = mk.price_orders(a, b)
    assert usable.dtype == bool and saving.dtype == np.int64
    is_coupon = np.array([isinstance(o, Coupon) for o in cat.offers])
    quoted = np.where(is_coupon[None, :], cat.pricing.amount[None, :], saving)
    lists = np.array([mk.item_list_minor[i] + (mk.item_list_minor[j] if j >= 0 else 0)
                      for i, j in zip(a.tolist(), b.tolist(), strict=True)])
    for backend in BACKENDS:
        q = cat.quote_batch(baskets, backend=backend)
        np.testing.assert_array_equal(q.eligible, usable)
        np.testing.assert_array_equal(np.rint(q.discount_cost * per_unit), quoted)
        np.testing.assert_array_equal(np.rint(q.list_total * per_unit), lists)
        np.testing.assert_array_equal(np.rint(q.paid_total * per_unit),
                                      lists[:, None] - saving)
    # Exact integers, offer by offer: Catalogue.price raises exactly where the market
    # finds the offer unusable, and otherwise saves what the market saves.
    for n, basket in enumerate(baskets[:120]):
        for k in range(len(cat)):
            if usable[n, k]:
                assert cat.price(basket, k).discount_cost_minor == saving[n, k]
            else:
                with pytest.raises(ValueError, match="ineligible"):
                    cat.price(basket, k)
    # Both sides saw binding floors, exclusions and thresholds both met and missed.
    assert 0 < usable.mean() < 1
    ids = list(cat.ids)
    spend = ids.index("spend60_save9_ex")
    assert 0 < (saving[:, spend] > 0).mean() < 1


@pytest.mark.parametrize(("margin_floor", "minor_unit", "seed"), WORLDS)
def test_coupon_redemption_is_priced_alike(margin_floor, minor_unit, seed):
    cat = catalogue(margin_floor, minor_unit)
    mk = market(cat, seed)
    a, b, baskets = orders(mk, 300, seed + 10)
    saving, usable = mk.price_orders(a, b, redeem=True)
    coupons = [k for k, o in enumerate(cat.offers) if isinstance(o, Coupon)]
    applied = 0
    for n, basket in enumerate(baskets):
        for k in coupons:
            if usable[n, k]:
                p = cat.redeem(basket, k, issued_at=RUN_START, now=RUN_START + 60.0)
                assert p.discount_cost_minor == saving[n, k]
                applied += p.applied
            else:
                with pytest.raises(ValueError, match="ineligible"):
                    cat.redeem(basket, k, issued_at=RUN_START, now=RUN_START + 60.0)
    assert applied > 0
    # Redeeming changes only the coupons: every other offer prices as at decision time.
    issued, _ = mk.price_orders(a, b)
    others = [k for k in range(len(cat)) if k not in coupons]
    np.testing.assert_array_equal(saving[:, others], issued[:, others])
    assert (issued[:, coupons] == 0).all()


def test_the_market_step_prices_like_price_orders():
    cat = catalogue(0.1)
    mk = market(cat, 5)
    a, b, _ = orders(mk, 200, 5)
    b = np.where(b < 0, (a + 1) % N_ITEMS, b)  # the step prices item and add-on
    saving, usable = mk.price_orders(a, b)
    n = a.shape[0]
    res = mk.step(np.zeros(n, np.int64), a, b, np.full(n, RUN_START), np.full(n, -1, np.int64),
                  np.full(n, 0.5), np.full(n, 0.5), mk.new_holdings())
    np.testing.assert_array_equal(res.eligible, usable)
    quoted = np.where(cat.pricing.kind == pricing.KIND_COUPON, cat.pricing.amount, saving)
    lists = mk.item_list_minor[a] + mk.item_list_minor[b]
    np.testing.assert_array_equal(res.depth, quoted / lists[:, None])


def test_a_table_in_another_currency_grid_is_refused():
    mk = market(catalogue(0.05), 1)
    with pytest.raises(ValueError, match="table: expected the market's minor unit"):
        mk.price_orders(np.array([0]), np.array([-1]),
                        table=catalogue(0.05, minor_unit=0.05).pricing)
    with pytest.raises(ValueError, match="table: expected the market's minor unit"):
        mk.price_orders(np.array([0]), np.array([-1]), table=catalogue(0.2).pricing)
    with pytest.raises(ValueError, match=r"addons: expected item ids in \[-1, 60\)"):
        mk.price_orders(np.array([0]), np.array([60]))


# --- one definition ----------------------------------------------------------------------

def test_the_market_reads_the_catalogues_table():
    cat = catalogue(0.05)
    mk = market(cat, 1)
    assert mk.offers is cat.pricing
    assert mk.per_unit == cat.pricing.per_unit
    assert mk.none_offer == cat.index("none")
    # The simulator's codes are pricing's objects, and each offer kind declares its own.
    assert market_kernels.KIND_COUPON is pricing.KIND_COUPON
    assert market_kernels.KIND_TIMED is pricing.KIND_TIMED
    codes = {name: cls.code for name, cls in OFFER_KINDS.items()}
    assert codes == {"none": pricing.KIND_NONE, "percent_off": pricing.KIND_PERCENT,
                     "spend_threshold": pricing.KIND_SPEND, "time_limited": pricing.KIND_TIMED,
                     "coupon": pricing.KIND_COUPON}
    np.testing.assert_array_equal(cat.pricing.kind, [o.code for o in cat.offers])


RULE_NAMES = {"KIND_NONE", "KIND_PERCENT", "KIND_SPEND", "KIND_TIMED", "KIND_COUPON", "PPM",
              "MINOR_TOLERANCE", "MAX_INT64_TOTAL", "MAX_LINE_MINOR"}


def test_kind_codes_and_pricing_constants_are_assigned_in_one_module():
    root = Path(promobandit.__file__).parent
    where: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for name in ast.walk(t):
                        if isinstance(name, ast.Name) and name.id.lstrip("_") in RULE_NAMES:
                            where.setdefault(name.id.lstrip("_"), []).append(
                                str(path.relative_to(root)))
    assert where == {name: [str(Path("offers", "pricing.py"))] for name in RULE_NAMES}
