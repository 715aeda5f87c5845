"""Tests of the offer catalogue: arithmetic per offer kind, rounding, the margin floor,
eligibility, files, and a property test against a slow per-line reference."""

from __future__ import annotations

import json
import math
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promobandit import _backends
from promobandit.offers import (
    QUOTE_BACKENDS,
    Basket,
    Catalogue,
    Coupon,
    NoDiscount,
    Offer,
    PercentOff,
    QuoteBatch,
    SpendThreshold,
    TimeLimitedPercentOff,
    default_catalogue,
)
from promobandit.offers.basket import _checked_columns

HOUR, DAY = 3600.0, 86400.0


def basket(*lines: tuple) -> Basket:
    """Lines (item, category, unit price, unit cost, quantity)."""
    return Basket.from_lines(list(lines))


def cat(*offers: Offer, floor: float = 0.0, minor: float = 0.01) -> Catalogue:
    return Catalogue(tuple(offers), currency="EUR", minor_unit=minor, margin_floor=floor)


# --- arithmetic of each offer kind --------------------------------------------------------

@pytest.mark.parametrize(
    ("offer", "lines", "paid_minor", "applied"),
    [
        # no discount: list price
        (NoDiscount(id="n"), [(1, 0, 10.0, 1.0, 1), (2, 0, 5.55, 1.0, 2)], [1000, 1110], False),
        # 10% of 21.10 = 2.11, spread 1.00 / 1.11 (exact shares)
        (PercentOff(id="p", fraction=0.1), [(1, 0, 10.0, 1.0, 1), (2, 0, 5.55, 1.0, 2)],
         [900, 999], True),
        # 5% of 10.10 = 0.505: an exact tie, rounded half up in the shopper's favour
        (PercentOff(id="p", fraction=0.05), [(1, 0, 10.10, 1.0, 1)], [959], True),
        # 5% of 10.30 = 0.515 -> 0.52 (half up), 5% of 10.20 = 0.51
        (PercentOff(id="p", fraction=0.05), [(1, 0, 10.30, 1.0, 1)], [978], True),
        (PercentOff(id="p", fraction=0.05), [(1, 0, 10.20, 1.0, 1)], [969], True),
        # spend 100 save 15: exactly 100 qualifies; spread 60/40 -> 9/6
        (SpendThreshold(id="s", spend=100, save=15), [(1, 0, 60.0, 1.0, 1), (2, 0, 40.0, 1.0, 1)],
         [5100, 3400], True),
        # 99.99 does not qualify
        (SpendThreshold(id="s", spend=100, save=15), [(1, 0, 59.99, 1.0, 1), (2, 0, 40.0, 1.0, 1)],
         [5999, 4000], False),
        # quantity counts toward the threshold: 2 x 50 = 100
        (SpendThreshold(id="s", spend=100, save=15), [(1, 0, 50.0, 1.0, 2)], [8500], True),
        # largest remainder: 1.00 over three equal lines -> 34/33/33, the extra cent to line 0
        (SpendThreshold(id="s", spend=3, save=1), [(1, 0, 1.0, 0.1, 1)] * 3, [66, 67, 67], True),
        # ... and to the line with the largest remainder when they differ: 10 over 1.00/2.00
        # (shares 3.33 / 6.67 cents -> 3 / 7)
        (SpendThreshold(id="s", spend=3, save=0.10),
         [(1, 0, 1.0, 0.1, 1), (2, 0, 2.0, 0.1, 1)], [97, 193], True),
    ],
)
def test_offer_arithmetic(offer: Offer, lines: list, paid_minor: list, applied: bool) -> None:
    b = basket(*lines)
    p = cat(offer).price(b, 0)
    assert p.line_paid_minor.tolist() == paid_minor
    assert p.applied is applied
    assert p.paid_total_minor == sum(paid_minor)
    assert p.discount_cost_minor == p.list_total_minor - p.paid_total_minor
    assert p.paid_total == pytest.approx(sum(paid_minor) / 100, abs=0)
    # the offer's own arithmetic is the catalogue's without a floor
    assert np.array_equal(offer.price(b).line_paid_minor, p.line_paid_minor)


def test_floats_read_as_the_decimal_amounts() -> None:
    p = cat(PercentOff(id="p", fraction=0.2)).price(basket((1, 0, 113.97, 1.0, 1)), 0)
    assert p.discount_cost == 22.79  # 22.794 rounded, printed exactly as the decimal
    assert p.paid_total == 91.18
    assert p.list_total == 113.97
    assert p.discount_fraction == pytest.approx(2279 / 11397)


def test_excluded_items_and_categories() -> None:
    lines = [(1, 0, 80.0, 1.0, 1), (2, 7, 30.0, 1.0, 1), (3, 1, 10.0, 1.0, 1)]
    b = basket(*lines)
    # 120 in the basket, but only 80 + 10 = 90 eligible: the threshold is not met
    ex_cat = SpendThreshold(id="s", spend=100, save=15, exclude_categories=[7])
    assert cat(ex_cat).price(b, 0).discount_cost == 0.0
    ex_item = SpendThreshold(id="s", spend=100, save=15, exclude_items=[2])
    assert not cat(ex_item).price(b, 0).applied
    # without exclusions it qualifies and the excluded-free split covers all lines
    assert cat(SpendThreshold(id="s", spend=100, save=15)).price(b, 0).discount_cost == 15.0
    # with 85 eligible + exclusions the saving lands on eligible lines only
    b2 = basket((1, 0, 95.0, 1.0, 1), (2, 7, 30.0, 1.0, 1), (3, 1, 5.0, 1.0, 1))
    p = cat(ex_cat).price(b2, 0)
    assert p.line_saving_minor.tolist() == [1425, 0, 75]
    pct = PercentOff(id="p", fraction=0.5, exclude_items=[3], exclude_categories=[7])
    p = cat(pct).price(b2, 0)
    assert p.line_saving_minor.tolist() == [4750, 0, 0]


def test_time_limited_expires_at_exactly_h_hours() -> None:
    offer = TimeLimitedPercentOff(id="t", fraction=0.2, hours=24)
    c = cat(offer)
    b = basket((1, 0, 50.0, 10.0, 1))
    t0 = 1_700_000_000.0
    assert c.price(b, 0).discount_cost == 10.0  # made now (decision time)
    assert c.price(b, 0, now=t0, offered_at=t0).discount_cost == 10.0
    just_before = c.price(b, 0, now=t0 + 24 * HOUR - 0.001, offered_at=t0)
    assert just_before.applied and just_before.discount_cost == 10.0
    at_end = c.price(b, 0, now=t0 + 24 * HOUR, offered_at=t0)  # end exclusive: expired
    assert not at_end.applied and at_end.discount_cost == 0.0
    assert c.quote(b, t0 + 30 * HOUR, offered_at=t0).discount_cost[0] == 0.0
    with pytest.raises(ValueError, match="now: expected a time >= offered_at"):
        c.price(b, 0, now=t0 - 1, offered_at=t0)
    with pytest.raises(ValueError, match="now: required"):
        c.price(b, 0, offered_at=t0)


def test_coupon_issue_and_redemption() -> None:
    coupon = Coupon(id="c", amount=10, min_spend=50, days=14, exclude_categories=[9])
    c = cat(coupon, NoDiscount(id="n"), floor=0.05)
    now = basket((1, 0, 20.0, 5.0, 1))
    # issuing costs nothing now; the expected cost is the amount (upper bound)
    assert c.price(now, "c").discount_cost == 0.0
    assert c.expected_discount_cost(now, "c") == 10.0
    assert c.quote(now).discount_cost.tolist() == [10.0, 0.0]
    t0 = 1000.0
    later = basket((1, 0, 30.0, 5.0, 1), (2, 0, 20.0, 5.0, 1), (3, 9, 100.0, 5.0, 1))
    p = c.redeem(later, "c", issued_at=t0, now=t0 + DAY)
    assert p.applied and p.discount_cost == 10.0  # eligible total exactly 50 qualifies
    assert p.line_saving_minor.tolist() == [600, 400, 0]  # category 9 is excluded
    short = basket((1, 0, 30.0, 5.0, 1), (2, 0, 19.99, 5.0, 1), (3, 9, 100.0, 5.0, 1))
    assert not c.redeem(short, "c", issued_at=t0, now=t0 + DAY).applied
    expired = c.redeem(later, "c", issued_at=t0, now=t0 + 14 * DAY)  # end exclusive
    assert not expired.applied and expired.discount_cost == 0.0
    assert c.redeem(later, "c", issued_at=t0, now=t0 + 14 * DAY - 1).applied
    with pytest.raises(ValueError, match="not a coupon"):
        c.redeem(later, "n", issued_at=t0, now=t0)
    with pytest.raises(ValueError, match="now: expected a time >= issued_at"):
        c.redeem(later, "c", issued_at=t0, now=t0 - 5)
    # a redemption that would break the floor raises rather than clipping
    thin = basket((1, 0, 50.0, 45.0, 1))
    with pytest.raises(ValueError, match="ineligible"):
        c.redeem(thin, "c", issued_at=t0, now=t0 + 1)


# --- margin floor ------------------------------------------------------------------------

def test_margin_floor_masks_and_price_raises() -> None:
    c = cat(NoDiscount(id="n"), PercentOff(id="p5", fraction=0.05),
            PercentOff(id="p10", fraction=0.10), floor=0.05)
    b = basket((1, 0, 10.0, 9.0, 1))  # floor 9.45
    assert c.eligible(b).tolist() == [True, True, False]  # 9.50 ok, 9.00 below
    assert c.price(b, "p5").paid_total == 9.5
    with pytest.raises(ValueError, match=r"ineligible.*margin floor"):
        c.price(b, "p10")
    with pytest.raises(ValueError, match="ineligible"):
        c.expected_discount_cost(b, 2)
    # exactly at the floor is allowed: 11.05 - 5% = 10.4975 -> saving 0.55 -> 10.50
    # = 10.00 x 1.05 (the float product 1050.0000000000002 is not mistaken for 1051)
    b_edge = basket((1, 0, 11.05, 10.0, 1))
    assert c.price(b_edge, "p5").paid_total == 10.5
    assert c.eligible(b_edge)[1]


def test_line_listed_below_its_floor_may_not_be_discounted() -> None:
    pct = PercentOff(id="p", fraction=0.1)
    pct_ex = PercentOff(id="px", fraction=0.1, exclude_categories=[3])
    c = cat(NoDiscount(id="n"), pct, pct_ex, floor=0.05)
    b = basket((1, 3, 10.0, 9.8, 1), (2, 0, 100.0, 10.0, 1))  # line 0: floor 10.29 > 10
    assert c.eligible(b).tolist() == [True, False, True]
    assert c.price(b, "px").line_saving_minor.tolist() == [0, 1000]


def test_quantity_scales_the_floor() -> None:
    c = cat(PercentOff(id="p", fraction=0.1), floor=0.0)
    # 3 x 1.00 at cost 0.90: paid 2.70 = 3 x 0.90 exactly: allowed; cost 0.91: not
    assert c.eligible(basket((1, 0, 1.0, 0.90, 3))).tolist() == [True]
    assert c.eligible(basket((1, 0, 1.0, 0.91, 3))).tolist() == [False]


# --- baskets and validation --------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unit_prices": [-1.0]}, "unit_prices: expected values >= 0"),
        ({"unit_costs": [6.0]}, "unit_costs: expected values <= unit_prices"),
        ({"unit_costs": [-0.5]}, "unit_costs: expected values >= 0"),
        ({"quantities": [0]}, "quantities: expected integers >= 1"),
        ({"unit_prices": [float("nan")]}, "unit_prices: expected finite"),
        ({"unit_costs": [float("inf")]}, "unit_costs: expected finite"),
        ({"item_ids": [1.5]}, "item_ids: expected a 1-D integer array"),
        ({"quantities": [1.0]}, "quantities: expected a 1-D integer array"),
        ({"categories": [0, 1]}, "categories: expected 1 lines"),
        ({"item_ids": [], "categories": [], "unit_prices": [], "unit_costs": [],
          "quantities": []}, "item_ids: a basket needs at least one line"),
        ({"unit_prices": ["a"]}, "unit_prices: expected a 1-D numeric"),
    ],
)
def test_bad_baskets(kwargs: dict, match: str) -> None:
    base = {"item_ids": [1], "categories": [0], "unit_prices": [5.0], "unit_costs": [1.0],
            "quantities": [1]}
    base.update(kwargs)
    if not base["item_ids"] and isinstance(base["item_ids"], list):
        base["item_ids"] = np.zeros(0, np.int64)
    with pytest.raises(ValueError, match=match):
        Basket(**{k: np.asarray(v) for k, v in base.items()})


def test_basket_is_read_only() -> None:
    src = np.array([5.0])
    b = Basket(np.array([1]), np.array([0]), src, np.array([1.0]), np.array([1]))
    src[0] = 99.0
    assert b.unit_prices[0] == 5.0
    with pytest.raises(ValueError, match="read-only"):
        b.unit_prices[0] = 1.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PercentOff(id="p", fraction=1.5), "fraction: expected a value in \\(0, 1\\)"),
        (lambda: PercentOff(id="p", fraction=0.0), "fraction"),
        (lambda: PercentOff(id="p", fraction=0.1234567), "fraction: expected at most 6 decimal"),
        (lambda: PercentOff(id="p", fraction=True), "fraction: expected a number"),
        (lambda: SpendThreshold(id="s", spend=100, save=-5), "save"),
        (lambda: SpendThreshold(id="s", spend=100, save=100), "save"),
        (lambda: TimeLimitedPercentOff(id="t", fraction=0.1, hours=0), "hours"),
        (lambda: Coupon(id="c", amount=60, min_spend=50, days=14), "amount"),
        (lambda: Coupon(id="c", amount=5, min_spend=50, days=-1), "days"),
        (lambda: NoDiscount(id=""), "id: expected a non-empty string"),
        (lambda: NoDiscount(id="n", exclude_items=[1, "x"]), "exclude_items\\[1\\]"),
        (lambda: NoDiscount(id="n", exclude_categories="3"), "exclude_categories"),
    ],
)
def test_bad_offers(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"offers": ()}, "offers: expected at least one"),
        ({"offers": (NoDiscount(id="a"), PercentOff(id="a", fraction=0.1))},
         "offers\\[1\\].id: duplicate id 'a'"),
        ({"currency": "eur"}, "currency"),
        ({"minor_unit": 0.03}, "minor_unit: expected 1/n"),
        ({"minor_unit": 0.0}, "minor_unit"),
        ({"margin_floor": -0.1}, "margin_floor"),
        ({"offers": (SpendThreshold(id="s", spend=100, save=15.004),)},
         "offers\\[0\\].save: expected a multiple of the minor unit 0.01"),
        ({"offers": ("none",)}, "offers\\[0\\]: expected an Offer"),
    ],
)
def test_bad_catalogues(kwargs: dict, match: str) -> None:
    args = {"offers": (NoDiscount(id="n"),), "currency": "EUR", "minor_unit": 0.01,
            "margin_floor": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Catalogue(**args)


def test_lookup_by_index_and_id() -> None:
    c = default_catalogue()
    assert c.index("pct10") == 2 and c.index(2) == 2
    with pytest.raises(ValueError, match="unknown offer id"):
        c.index("nope")
    with pytest.raises(ValueError, match="expected an index in"):
        c.index(len(c))


def test_other_minor_units() -> None:
    jpy = Catalogue((PercentOff(id="p", fraction=0.15),), currency="JPY", minor_unit=1)
    p = jpy.price(basket((1, 0, 999.0, 100.0, 1), (2, 0, 1001.0, 100.0, 1)), 0)
    assert p.discount_cost_minor == 300 and p.line_saving_minor.tolist() == [150, 150]
    chf = Catalogue((PercentOff(id="p", fraction=0.1),), currency="CHF", minor_unit=0.05)
    p = chf.price(basket((1, 0, 9.95, 1.0, 1)), 0)
    # 9.95 = 199 units of 0.05; 10% = 19.9 units -> 20 units = 1.00
    assert p.discount_cost == 1.0 and p.paid_total == 8.95


def test_huge_baskets_stay_exact() -> None:
    # 2 x 20 million EUR: E = 4e9 cents, beyond the int64 fast path of the split
    c = cat(PercentOff(id="p", fraction=0.333333))
    b = basket((1, 0, 20_000_000.01, 1.0, 1), (2, 0, 19_999_999.98, 1.0, 1))
    p = c.price(b, 0)
    e = 2_000_000_001 + 1_999_999_998
    s = (2 * 333333 * e + 1_000_000) // 2_000_000
    assert p.discount_cost_minor == s
    assert abs(p.line_saving_minor[0] - s * 2_000_000_001 / e) < 1


# --- the default catalogue and vectorised paths ------------------------------------------

def test_default_catalogue() -> None:
    c = default_catalogue()
    assert c.ids == ("none", "pct5", "pct10", "pct15", "pct20", "spend100_save15",
                     "flash20_24h", "coupon10_min50")
    assert (c.currency, c.minor_unit, c.margin_floor) == ("EUR", 0.01, 0.05)
    b = basket((1, 0, 60.0, 30.0, 1), (2, 1, 45.0, 20.0, 1))
    q = c.quote(b)
    assert q.eligible.all()
    assert q.discount_cost.tolist() == [0.0, 5.25, 10.5, 15.75, 21.0, 15.0, 21.0, 10.0]
    assert q.list_total == 105.0


def test_quote_matches_single_offer_pricing_and_quote_many() -> None:
    c = default_catalogue()
    rs = np.random.default_rng(3)
    baskets = []
    for _ in range(20):
        n = int(rs.integers(1, 8))
        price = np.round(rs.uniform(1, 80, n), 2)
        baskets.append(Basket(rs.integers(0, 50, n), rs.integers(0, 5, n), price,
                              price * rs.uniform(0.5, 0.95, n), rs.integers(1, 4, n)))
    elig, cost = c.quote_many(baskets)
    for b_i, b in enumerate(baskets):
        q = c.quote(b)
        assert np.array_equal(q.eligible, elig[b_i]) and np.array_equal(q.discount_cost, cost[b_i])
        assert np.array_equal(c.eligible(b), q.eligible)
        for k in range(len(c)):
            if q.eligible[k]:
                p = c.price(b, k)
                assert p.paid_total == q.paid_total[k]
            else:
                with pytest.raises(ValueError):
                    c.price(b, k)
    assert not elig.all() and elig.any()  # the sample exercises both outcomes


# --- files -------------------------------------------------------------------------------

def test_json_round_trip(tmp_path: Path) -> None:
    c = Catalogue(
        (NoDiscount(id="none"), PercentOff(id="p", name="ten", fraction=0.1, exclude_items=[5, 3]),
         SpendThreshold(id="s", spend=100, save=15, exclude_categories=[2]),
         TimeLimitedPercentOff(id="t", fraction=0.125, hours=36.5),
         Coupon(id="c", amount=10, min_spend=50, days=14)),
        currency="GBP", minor_unit=0.01, margin_floor=0.1)
    path = tmp_path / "cat.json"
    c.save(path)
    loaded = Catalogue.load(path)
    assert loaded == c
    assert loaded.offers[1].exclude_items == (3, 5)
    assert Catalogue.load(path).to_dict() == json.loads(path.read_text())
    d = default_catalogue()
    d.save(tmp_path / "default.json")
    assert Catalogue.load(tmp_path / "default.json") == d
    with pytest.raises(ValueError, match="saved as JSON"):
        d.save(tmp_path / "x.toml")


TOML = """
currency = "EUR"
minor_unit = 0.01
margin_floor = 0.05

[[offers]]
id = "none"
type = "none"

[[offers]]
id = "pct10"
type = "percent_off"
fraction = 0.10
exclude_categories = [7]

[[offers]]
id = "spend"
type = "spend_threshold"
spend = 100
save = 15

[[offers]]
id = "coupon"
type = "coupon"
amount = 10
min_spend = 50
days = 14
"""


def test_toml_load(tmp_path: Path) -> None:
    path = tmp_path / "cat.toml"
    path.write_text(TOML)
    c = Catalogue.load(path)
    assert c == Catalogue(
        (NoDiscount(id="none"), PercentOff(id="pct10", fraction=0.1, exclude_categories=[7]),
         SpendThreshold(id="spend", spend=100.0, save=15.0),
         Coupon(id="coupon", amount=10.0, min_spend=50.0, days=14.0)),
        currency="EUR", minor_unit=0.01, margin_floor=0.05)
    assert isinstance(c.offers[2].save, float)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d["offers"][1].update(fractoin=0.1), "offers\\[1\\].fractoin: unknown key"),
        (lambda d: d["offers"][2].update(save=-5), "offers\\[2\\].save: expected a value in"),
        (lambda d: d["offers"][1].update(fraction=1.5), "offers\\[1\\].fraction: expected a value "
                                                        "in \\(0, 1\\), got 1.5"),
        (lambda d: d["offers"][3].update(id="pct10"), "offers\\[3\\].id: duplicate id 'pct10'"),
        (lambda d: d["offers"][0].update(type="bogo"), "offers\\[0\\].type: expected one of"),
        (lambda d: d["offers"][3].pop("days"), "offers\\[3\\].days: missing key"),
        (lambda d: d["offers"][2].update(spend="100"), "offers\\[2\\].spend: expected a number"),
        (lambda d: d.update(format_version=2), "format_version"),
        (lambda d: d.pop("offers"), "offers: missing key"),
        (lambda d: d.update(offers={"id": "x"}), "offers: expected a list"),
        (lambda d: d.update(margin_floor=-1), "margin_floor"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, edit, match: str) -> None:
    import tomllib

    data = tomllib.loads(TOML)
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        Catalogue.load(path)


def test_bad_file_syntax_and_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("currency = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        Catalogue.load(tmp_path / "a.toml")
    (tmp_path / "a.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        Catalogue.load(tmp_path / "a.json")
    with pytest.raises(ValueError, match=r"expected a \.toml or \.json"):
        Catalogue.load(tmp_path / "a.yaml")


# --- property test against a slow reference ---------------------------------------------

def reference_pricing(offer: Offer, lines: list[tuple], per_unit: int) -> list[int]:
    """Line savings in minor units, by a plain per-line loop with exact fractions."""
    list_minor = [round(p * per_unit) * q for (_, _, p, _, q) in lines]
    ex_items = set(offer.exclude_items)
    ex_cats = set(offer.exclude_categories)
    elig = [it not in ex_items and c not in ex_cats for (it, c, _, _, _) in lines]
    total = sum(m for m, e in zip(list_minor, elig, strict=True) if e)
    if isinstance(offer, (PercentOff, TimeLimitedPercentOff)):
        s = math.floor(Fraction(round(offer.fraction * 1_000_000), 1_000_000) * total
                       + Fraction(1, 2))
    elif isinstance(offer, SpendThreshold):
        s = round(offer.save * per_unit) if total >= round(offer.spend * per_unit) else 0
    else:  # none, or a coupon being issued
        s = 0
    shares = [Fraction(s * m, total) if (e and total) else Fraction(0)
              for m, e in zip(list_minor, elig, strict=True)]
    saving = [math.floor(x) for x in shares]
    left = s - sum(saving)
    # largest remainder, ties to the lower index
    by_rem = sorted(range(len(lines)), key=lambda i: (-(shares[i] - saving[i]), i))
    for i in by_rem[:left]:
        saving[i] += 1
    return saving


def reference_floor(lines: list[tuple], floor: float, per_unit: int) -> list[int]:
    """Per-line floor in minor units (the documented rule, computed one line at a time)."""
    out = []
    for (_, _, p, c, q) in lines:
        raw = c * (1.0 + floor) * float(q) * per_unit
        out.append(min(math.ceil(raw - 1e-6), round(p * per_unit) * q))
    return out


money_cents = st.integers(0, 50_000)


@st.composite
def offers_strategy(draw, i: int, per_unit: int) -> Offer:
    kind = draw(st.sampled_from(["none", "pct", "spend", "timed", "coupon"]))
    ex_items = draw(st.lists(st.integers(0, 9), max_size=3))
    ex_cats = draw(st.lists(st.integers(0, 3), max_size=2))
    common = {"id": f"o{i}", "exclude_items": ex_items, "exclude_categories": ex_cats}
    frac = draw(st.integers(1, 999_999)) / 1_000_000
    if kind == "none":
        return NoDiscount(**common)
    if kind == "pct":
        return PercentOff(fraction=frac, **common)
    if kind == "timed":
        return TimeLimitedPercentOff(fraction=frac, hours=draw(st.sampled_from([1.0, 24.0])),
                                     **common)
    spend = draw(st.integers(2, 60_000))
    save = draw(st.integers(1, spend - 1))
    if kind == "spend":
        return SpendThreshold(spend=spend / per_unit, save=save / per_unit, **common)
    return Coupon(amount=save / per_unit, min_spend=spend / per_unit, days=7.0, **common)


@st.composite
def worlds(draw):
    per_unit = draw(st.sampled_from([100, 1, 20]))
    n_offers = draw(st.integers(1, 6))
    offers = tuple(draw(offers_strategy(i, per_unit)) for i in range(n_offers))
    floor = draw(st.sampled_from([0.0, 0.05, 0.2]) | st.floats(0.0, 0.6))
    catalogue = Catalogue(offers, minor_unit=1.0 / per_unit, margin_floor=floor)
    n = draw(st.integers(1, 20))
    lines = []
    for _ in range(n):
        price = draw(money_cents) / per_unit
        cost = price * draw(st.floats(0.0, 1.0))
        lines.append((draw(st.integers(0, 9)), draw(st.integers(0, 3)), price, cost,
                      draw(st.integers(1, 5))))
    return catalogue, lines


@settings(max_examples=300, deadline=None)
@given(world=worlds())
def test_no_line_below_the_floor_and_eligible_iff_pricing_allowed(world) -> None:
    catalogue, lines = world
    per_unit = round(1 / catalogue.minor_unit)
    b = Basket.from_lines(lines)
    eligible = catalogue.eligible(b)
    quote = catalogue.quote(b)
    assert np.array_equal(eligible, quote.eligible)
    floors = reference_floor(lines, catalogue.margin_floor, per_unit)
    for k, offer in enumerate(catalogue.offers):
        raw = offer.price(b, minor_unit=catalogue.minor_unit)  # the offer alone, no floor
        want = reference_pricing(offer, lines, per_unit)
        assert raw.line_saving_minor.tolist() == want
        assert raw.discount_cost_minor == sum(want)
        assert raw.paid_total_minor == int(raw.line_paid_minor.sum())
        assert (raw.line_paid_minor >= 0).all()
        violates = any(p < f for p, f in zip(raw.line_paid_minor.tolist(), floors, strict=True))
        assert eligible[k] == (not violates)
        if eligible[k]:
            p = catalogue.price(b, k)
            assert np.array_equal(p.line_paid_minor, raw.line_paid_minor)
            for (_, _, _, cost, q), paid, saving in zip(lines, p.line_paid, p.line_saving_minor,
                                                        strict=True):
                if saving > 0:  # a discounted line never goes below cost x (1 + floor)
                    assert paid >= cost * (1 + catalogue.margin_floor) * q - 1e-6 / per_unit
        else:
            with pytest.raises(ValueError, match="ineligible"):
                catalogue.price(b, k)


# --- the compiled quote against the NumPy path ----------------------------------------

needs_numba = pytest.mark.skipif(not _backends.has_numba(), reason="numba is not installed")


def assert_same_quote(fast, slow) -> None:
    """Equal, not close: both paths are exact in minor units."""
    assert fast.offer_ids == slow.offer_ids
    for name in ("eligible", "discount_cost", "paid_total"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), name
    assert fast.list_total == slow.list_total
    assert type(fast.list_total) is type(slow.list_total)


@st.composite
def moments(draw):
    """(now, offered_at): decision time, or later with a time-limited offer maybe expired."""
    if draw(st.booleans()):
        return 1_700_000_000.0, None
    t0 = 1_700_000_000.0
    return t0 + draw(st.sampled_from([0.0, 1.0, HOUR - 0.5, HOUR, 24 * HOUR, 30 * HOUR])), t0


@needs_numba
@settings(max_examples=300, deadline=None)
@given(world=worlds(), moment=moments(), more=st.lists(worlds(), max_size=4))
def test_numba_quote_equals_the_numpy_path(world, moment, more) -> None:
    catalogue, lines = world
    now, offered_at = moment
    b = Basket.from_lines(lines)
    slow = catalogue.quote(b, now, offered_at=offered_at, backend="numpy")
    fast = catalogue.quote(b, now, offered_at=offered_at, backend="numba")
    assert_same_quote(fast, slow)
    assert np.array_equal(catalogue.eligible(b, now, offered_at=offered_at), slow.eligible)
    # the batch: this basket among others of the same catalogue, in order
    baskets = [b, *(Basket.from_lines(other) for _, other in more), b]
    for backend in ("numba", "numpy"):
        batch = catalogue.quote_batch(baskets, now, offered_at=offered_at, backend=backend)
        assert len(batch) == len(baskets)
        for i, basket in enumerate(baskets):
            row = batch.row(i)
            assert_same_quote(row, catalogue.quote(basket, now, offered_at=offered_at,
                                                   backend="numpy"))


@pytest.mark.parametrize("backend", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_leftover_unit_decides_eligibility(backend: str) -> None:
    # spend 3 save 1: 100 cents over three equal lines -> 34/33/33, the extra cent to line
    # 0 (ties to the lower index). With 33 cents of headroom on every line only line 0's
    # extra cent breaks the floor; with it on line 1 instead, the offer is fine.
    offer = SpendThreshold(id="s", spend=3, save=1)
    c = cat(NoDiscount(id="n"), offer)
    tight0 = basket((1, 0, 1.0, 0.67, 1), (2, 0, 1.0, 0.5, 1), (3, 0, 1.0, 0.5, 1))
    tight1 = basket((1, 0, 1.0, 0.5, 1), (2, 0, 1.0, 0.67, 1), (3, 0, 1.0, 0.5, 1))
    assert c.quote(tight0, backend=backend).eligible.tolist() == [True, False]
    assert c.quote(tight1, backend=backend).eligible.tolist() == [True, True]
    # the remainder, not the index, first: 10 cents over 1.00/2.00 -> 3/7 (see above)
    c2 = cat(SpendThreshold(id="s", spend=3, save=0.10))
    b = basket((1, 0, 1.0, 0.97, 1), (2, 0, 2.0, 1.93, 1))  # headroom 3 and 7: fits
    assert c2.quote(b, backend=backend).eligible.tolist() == [True]
    b = basket((1, 0, 1.0, 0.97, 1), (2, 0, 2.0, 1.94, 1))  # headroom 3 and 6: does not
    assert c2.quote(b, backend=backend).eligible.tolist() == [False]


@pytest.mark.parametrize("backend", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_huge_baskets_quote_exactly_on_every_backend(backend: str) -> None:
    # E = 4e9 cents: the kernel hands the basket to the exact Python-integer path
    c = cat(NoDiscount(id="n"), PercentOff(id="p", fraction=0.333333),
            SpendThreshold(id="s", spend=100, save=15))
    huge = basket((1, 0, 20_000_000.01, 1.0, 1), (2, 0, 19_999_999.98, 1.0, 1))
    small = basket((1, 0, 60.0, 1.0, 1), (2, 0, 45.0, 1.0, 1))
    q = c.quote(huge, backend=backend)
    assert_same_quote(q, c.quote(huge, backend="numpy"))
    assert q.discount_cost[1] == c.price(huge, 1).discount_cost
    batch = c.quote_batch([small, huge, small], backend=backend)
    for i, b in enumerate([small, huge, small]):
        assert_same_quote(batch.row(i), c.quote(b, backend="numpy"))


@pytest.mark.parametrize("backend", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_quote_errors_on_every_backend(backend: str) -> None:
    c = cat(NoDiscount(id="n"), PercentOff(id="p", fraction=0.1))
    ok = basket((1, 0, 5.0, 1.0, 1))
    too_big = basket((1, 0, 5.0, 1.0, 1), (2, 0, 1e14, 1.0, 1))  # 1e16 cents > 2**53
    with pytest.raises(ValueError, match=r"^unit_prices: line 1 amounts to more than"):
        c.quote(too_big, backend=backend)
    with pytest.raises(ValueError, match=r"^baskets\[2\]\.unit_prices: line 1 amounts"):
        c.quote_batch([ok, ok, too_big], backend=backend)
    with pytest.raises(ValueError, match="basket: expected a Basket"):
        c.quote([(1, 0, 5.0, 1.0, 1)], backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"baskets\[1\]: expected a Basket, got tuple"):
        c.quote_batch([ok, (1, 0, 5.0, 1.0, 1)], backend=backend)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="now: expected a finite"):
        c.quote_batch([ok], float("nan"), backend=backend)


def test_quote_backend_names() -> None:
    c = default_catalogue()
    b = basket((1, 0, 60.0, 30.0, 1))
    assert QUOTE_BACKENDS == ("auto", "numba", "numpy")
    assert_same_quote(c.quote(b, backend="auto"), c.quote(b, backend="numpy"))
    with pytest.raises(ValueError, match="backend: expected one of 'auto', 'numba', 'numpy'"):
        c.quote(b, backend="cpp")
    # the kernel's cached tables are plain arrays: a quoted catalogue still pickles
    again = pickle.loads(pickle.dumps(c))
    assert again == c
    assert_same_quote(again.quote(b), c.quote(b))


def test_quote_batch_shapes_and_unpacking() -> None:
    c = default_catalogue()
    empty = c.quote_batch([])
    assert isinstance(empty, QuoteBatch) and len(empty) == 0
    assert empty.eligible.shape == (0, len(c)) and empty.list_total.shape == (0,)
    b = basket((1, 0, 60.0, 30.0, 1), (2, 1, 45.0, 20.0, 1))
    elig, cost, paid, total = c.quote_batch([b, b])
    assert elig.dtype == bool and elig.shape == cost.shape == paid.shape == (2, len(c))
    assert total.tolist() == [105.0, 105.0]
    assert cost[1].tolist() == [0.0, 5.25, 10.5, 15.75, 21.0, 15.0, 21.0, 10.0]
    assert c.quote_many([b, b])[1].tolist() == cost.tolist()


# --- trusted baskets and the validated fast path -----------------------------------------

def test_trusted_basket_prices_like_a_checked_one() -> None:
    cols = (np.array([3, 1, 4]), np.array([0, 7, 0]), np.array([10.0, 5.55, 0.99]),
            np.array([1.0, 2.0, 0.5]), np.array([1, 2, 3]))
    trusted = Basket.trusted(*cols)
    checked = Basket(*cols)
    c = default_catalogue()
    assert_same_quote(c.quote(trusted), c.quote(checked))
    assert len(trusted) == 3
    names = ("item_ids", "categories", "unit_prices", "unit_costs", "quantities")
    for name, col in zip(names, cols, strict=True):
        held = getattr(trusted, name)
        assert np.shares_memory(held, col)  # no copy: a view, read-only
        assert not held.flags.writeable and col.flags.writeable
        assert not np.shares_memory(getattr(checked, name), col)


column_values = st.lists(
    st.tuples(st.floats(allow_nan=True, allow_infinity=True, width=64),
              st.floats(allow_nan=True, allow_infinity=True, width=64),
              st.integers(-2, 3)),
    min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(rows=column_values, short=st.sampled_from([None, "categories", "unit_costs"]))
def test_basket_fast_validation_changes_nothing(rows, short) -> None:
    # The constructor first tries a fused check on int64/float64 columns; whatever it
    # accepts or rejects must match the field-by-field rules (same arrays, same error).
    n = len(rows)
    cols = {
        "item_ids": np.arange(n, dtype=np.int64),
        "categories": np.zeros(n, dtype=np.int64),
        "unit_prices": np.array([r[0] for r in rows], dtype=np.float64),
        "unit_costs": np.array([r[1] for r in rows], dtype=np.float64),
        "quantities": np.array([r[2] for r in rows], dtype=np.int64),
    }
    if short is not None and n:
        cols[short] = cols[short][:-1]
    try:
        want = _checked_columns(*cols.values())
    except ValueError as exc:
        with pytest.raises(ValueError) as got_exc:
            Basket(**cols)
        assert str(got_exc.value) == str(exc)
        return
    got = Basket(**cols)
    for name, w in zip(cols, want, strict=True):
        a = getattr(got, name)
        assert a.dtype == w.dtype and np.array_equal(a, w)
        assert not np.shares_memory(a, cols[name]) and not a.flags.writeable
