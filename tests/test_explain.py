"""Explanations: exact (the choice recomputed from their numbers, for every policy and
backend), free when off (no work, same decisions and state), ineligible offers with their
rule and numbers, feature contributions with the feature store's names, the sentence."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from promobandit._reference import PURPOSE_TIE, Stream, TieArgmax
from promobandit.constraints import BudgetConfig, FairnessConfig, UserCapsConfig
from promobandit.engine import Engine, EngineConfig
from promobandit.engine import explain as explain_mod
from promobandit.features import FeatureStore
from promobandit.offers import (
    Basket,
    Catalogue,
    NoDiscount,
    PercentOff,
    SpendThreshold,
)
from promobandit.policies import FixedOffer, Policy, make_policy

KEY = b"test-key-0123456789abcdef"
T0 = 1_700_000_000.0
D = 4

SETTINGS = {
    "BetaTS": {"propensity_draws": 50}, "GaussianTS": {"propensity_draws": 50},
    "UCB1": {"c": 0.5}, "UCBTuned": {"c": 0.5}, "EpsilonGreedy": {"epsilon": 0.3},
    "Softmax": {"temperature": 0.05}, "LinUCB": {"alpha": 0.3},
    "LinTS": {"v": 0.3, "propensity_draws": 50},
}
ALL = [*SETTINGS, "FixedOffer"]


def catalogue() -> Catalogue:
    return Catalogue(offers=(NoDiscount(id="none"), PercentOff(id="p10", fraction=0.10),
                             PercentOff(id="p20", fraction=0.20),
                             PercentOff(id="p40", fraction=0.40),
                             SpendThreshold(id="s200", spend=200.0, save=30.0)),
                     currency="EUR", minor_unit=0.01, margin_floor=0.10)


def basket(value: float) -> Basket:
    # cost 60% of price: 40% off breaks the 10% margin floor
    return Basket.from_lines([(1, 0, value / 2, value * 0.3, 1), (2, 1, value / 4, value * 0.15, 2)])


def policy(name: str, backend: str, k: int = 5) -> Policy:
    if name == "FixedOffer":
        return FixedOffer(k, offer=2, fallback=None, seed=5, backend=backend)
    return make_policy(name, k, D, seed=5, backend=backend, **SETTINGS[name])


def make_engine(name: str, backend: str, **config) -> Engine:
    config.setdefault("budget", BudgetConfig(amount=150.0, update_every=5, step_size=2.0))
    config.setdefault("fairness", FairnessConfig(max_gap=0.02, step_size=0.5))
    config.setdefault("caps", UserCapsConfig(max_offers_per_day=3))
    return Engine(catalogue(), policy(name, backend), EngineConfig(**config), privacy_key=KEY)


def run(eng: Engine, n: int, *, explain: bool, seed: int = 1) -> list:
    """n decisions of a small market with purchases; returns the decisions."""
    rs = np.random.default_rng(seed)
    out = []
    for i in range(n):
        now = T0 + 30.0 * i
        x = np.array([1.0, rs.normal(), rs.normal(), float(rs.random() < 0.5)])
        d = eng.decide(f"u{i % 7}", context=x, basket=basket(60.0 + 80.0 * rs.random()),
                       group="a" if x[3] else "b", now=now, explain=explain)
        out.append(d)
        if rs.random() < 0.3 + 0.8 * d.discount_cost / max(d.price, 1.0):
            eng.feedback(d.id, f"e{i}", purchased=True, now=now + 1.0)
    return out


def choose_from_numbers(e) -> int:
    """The policy's rule, written here from the explanation's documented numbers only."""
    elig = [o for o in e.offers if o.eligible]
    p = e.to_dict()["params"]
    best = max(o.score for o in elig)
    first_best = next(o.offer for o in elig if o.score == best)
    if p.get("ties") == "random":
        # exact ties broken as the kernels do, by the reference's TieArgmax on the
        # decision's tie stream (named in the explanation's params)
        am = TieArgmax(lambda: Stream(p["tie_seed"], p["tie_stream"], PURPOSE_TIE))
        for o in elig:
            am.offer(o.offer, o.score)
        first_best = am.best
    if e.rule == "argmax":
        # the base value (sample for Thompson sampling, bound for UCB) plus the levers
        for o in elig:
            base = o.sample if not math.isnan(o.sample) else (
                o.mean + o.width if not math.isnan(o.width) else o.mean)
            assert o.score == pytest.approx(base + o.levers, rel=1e-9, abs=1e-12) or \
                math.isinf(o.score)
        return first_best
    if e.rule == "epsilon_greedy":
        if e.draws["u_explore"] < p["epsilon"]:
            return elig[min(int(e.draws["u_arm"] * len(elig)), len(elig) - 1)].offer
        return first_best
    if e.rule == "softmax":
        w = np.array([math.exp((o.score - best) / p["temperature"]) for o in elig])
        j = int(np.searchsorted(np.cumsum(w), e.draws["u"] * w.sum(), side="right"))
        return elig[min(j, len(elig) - 1)].offer
    if e.rule == "fixed":
        ids = [o.offer for o in elig]
        if p["offer"] in ids:
            return p["offer"]
        return ids[min(int(e.draws["u"] * len(ids)), len(ids) - 1)]
    raise AssertionError(e.rule)


@pytest.mark.parametrize("name", ALL)
def test_explanation_reproduces_every_decision(name: str, backend: str) -> None:
    eng = make_engine(name, backend)
    decisions = run(eng, 120, explain=True)
    levers_seen = set()
    for d in decisions:
        e = d.explain()
        assert e.offer == d.offer and e.decision_id == d.id
        assert e.propensity == d.propensity or (math.isnan(e.propensity) and math.isnan(d.propensity))
        assert e.recompute() == d.offer
        assert choose_from_numbers(e) == d.offer
        chosen = e.offers[d.offer]
        assert chosen.eligible and chosen.price == pytest.approx(d.price)
        assert chosen.discount_cost == pytest.approx(d.discount_cost)
        assert e.sentence.startswith(f"{d.offer_id}:")
        for o in e.offers:
            if o.budget_lever:
                levers_seen.add("budget")
            if o.fairness_lever:
                levers_seen.add("fairness")
    # the budget's shadow price and the fairness multipliers did move these choices
    assert levers_seen == {"budget", "fairness"}


@pytest.mark.parametrize("name", ["BetaTS", "LinTS", "Softmax", "EpsilonGreedy", "LinUCB"])
def test_explaining_changes_nothing(name: str, backend: str) -> None:
    """Same decisions, propensities and final state with explanations on and off."""
    a, b = make_engine(name, backend), make_engine(name, backend)
    da, db = run(a, 80, explain=True), run(b, 80, explain=False)
    assert [d.offer for d in da] == [d.offer for d in db]
    assert [d.propensity for d in da] == pytest.approx([d.propensity for d in db], nan_ok=True)
    sa, sb = a.policy.state_dict()["arrays"], b.policy.state_dict()["arrays"]
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
    assert a.budget.state_dict() == b.budget.state_dict()
    assert all(d.explanation is None for d in db)


def test_off_does_no_explanation_work(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        raise AssertionError("explanation work on the plain decide path")

    monkeypatch.setattr(explain_mod, "begin", spy)
    monkeypatch.setattr(explain_mod, "finish", spy)
    monkeypatch.setattr(explain_mod, "policy_numbers", spy)
    monkeypatch.setattr(explain_mod, "again", spy)
    eng = make_engine("LinTS", "numba")
    ds = run(eng, 30, explain=False)
    rs = np.random.default_rng(0)
    batch = eng.decide_batch([f"b{i}" for i in range(40)], contexts=rs.normal(size=(40, D)),
                             baskets=[basket(150.0)] * 40, now=T0 + 1e4)
    assert not calls and not eng._explanations
    assert all(d.explanation is None for d in batch)
    with pytest.raises(ValueError, match="explain=True"):
        ds[-1].explain()
    with pytest.raises(ValueError, match="decision_id"):
        eng.explain(ds[-1].id)


def test_engine_explain_within_the_wait_then_gone() -> None:
    eng = make_engine("LinUCB", "numba", keep_explanations=True, feedback_wait_seconds=100.0)
    x = np.array([1.0, 0.2, -0.3, 1.0])
    d = eng.decide("u1", context=x, basket=basket(100.0), now=T0)
    e = eng.explain(d.id)
    assert e is d.explain() and e.recompute() == d.offer
    # later decisions and updates change the state; the kept explanation is the decision's
    for i in range(5):
        d2 = eng.decide(f"v{i}", context=x, basket=basket(100.0), now=T0 + i)
        eng.feedback(d2.id, f"e{i}", purchased=True, now=T0 + i + 0.5)
    assert eng.explain(d.id) is e
    eng.expire(T0 + 101.0)
    with pytest.raises(ValueError, match="not a decision within its feedback wait"):
        eng.explain(d.id)


def test_ineligible_offers_carry_rule_and_numbers() -> None:
    cat = catalogue()
    eng = Engine(cat, FixedOffer(len(cat), offer=2, fallback=0),
                 EngineConfig(budget=BudgetConfig(amount=25.0),
                              caps=UserCapsConfig(max_offers_per_day=1)), privacy_key=KEY)
    d = eng.decide("u1", basket=basket(100.0), now=T0, explain=True)
    assert d.offer_id == "p20"  # 20 EUR off fits in the 25 EUR budget
    e = d.explain()
    by_id = {o.offer_id: o for o in e.offers}
    floor = by_id["p40"]
    assert not floor.eligible
    (r,) = [r for r in floor.reasons if r["rule"] == "margin_floor"]
    assert r["line_price"] < r["line_floor"]
    assert r["line_price"] == pytest.approx(0.6 * 50.0) and r["line_floor"] == pytest.approx(33.0)
    spend = by_id["s200"]
    (r,) = spend.reasons
    assert r == {"rule": "not_applicable", "threshold": 200.0, "basket_total": 100.0}
    assert spend.eligible and spend.discount_cost == 0.0
    # the budget: 20 EUR are reserved, so a 200 EUR basket's 20% (40 EUR) does not fit
    e2 = eng.decide("u2", basket=basket(200.0), now=T0 + 1, explain=True).explain()
    (r,) = [r for r in e2.offers[2].reasons if r["rule"] == "budget"]
    assert r == {"rule": "budget", "worst_case_cost": pytest.approx(40.0),
                 "remaining": pytest.approx(5.0)}
    assert not e2.offers[2].eligible and e2.offer == 0
    assert "p20 was not allowed" in e2.sentence or "none:" in e2.sentence
    # the per-user cap: u1 had a discount offer today already
    e3 = eng.decide("u1", basket=basket(10.0), now=T0 + 2, explain=True).explain()
    capped = [o for o in e3.offers if any(r["rule"] == "per_user_offers" for r in o.reasons)]
    assert {o.offer_id for o in capped} == {"p10", "p20", "p40", "s200"}
    assert all(not o.eligible for o in capped) and e3.offers[0].eligible
    (r,) = [r for r in capped[0].reasons if r["rule"] == "per_user_offers"]
    assert r == {"rule": "per_user_offers", "offers_today": 1, "max_offers_per_day": 1}


def test_feature_contributions_use_the_store_names() -> None:
    store = FeatureStore()
    names = store.config.feature_names()
    d = len(names)
    cat = catalogue()
    pol = make_policy("LinUCB", len(cat), d, seed=1, alpha=0.1)
    eng = Engine(cat, pol, EngineConfig(caps=None), privacy_key=KEY, features=store)
    rs = np.random.default_rng(0)
    for i in range(40):
        x = rs.random(d)
        pol.update(i % len(cat), float(rs.random()), x)
    dec = eng.decide("shopper", basket=basket(100.0), now=T0, explain=True)
    e = dec.explain()
    assert 0 < len(e.features) <= explain_mod.TOP_FEATURES
    x = store.vector(eng.pseudonym("shopper"), T0)
    theta = pol.theta[dec.offer]
    contrib = theta * x
    # ranked by |contribution|; the constant "bias" feature (the intercept) is not a reason
    top = [i for i in np.argsort(-np.abs(contrib), kind="stable")
           if names[i] != "bias"][:explain_mod.TOP_FEATURES]
    assert names[-1] == "bias" and "bias" not in [f["name"] for f in e.features]
    assert [f["name"] for f in e.features] == [names[i] for i in top]
    for f, i in zip(e.features, top, strict=True):
        assert f["contribution"] == pytest.approx(theta[i] * x[i])
    # the contributions sum (over all features) to the chosen offer's mean
    assert contrib.sum() == pytest.approx(e.offers[dec.offer].mean)


def test_sentence_names_offer_and_lever() -> None:
    # a budget with a high shadow price: the cheap offer wins over the one that scores
    # higher before the budget's price
    eng = make_engine("LinUCB", "numba", fairness=None, caps=None,
                      budget=BudgetConfig(amount=1e6, lambda_init=50.0, lambda_max=50.0))
    x = np.array([1.0, 0.0, 0.0, 0.0])
    for _ in range(30):
        eng.policy.update(0, 0.50, x)
        eng.policy.update(3 - 1, 0.60, x)  # 20% off earns a little more before its cost
    d = eng.decide("u", context=x, basket=basket(100.0), now=T0, explain=True)
    e = d.explain()
    assert d.offer_id == "none"
    assert e.sentence.startswith("none: highest optimistic profit")
    assert "within budget" in e.sentence
    assert "p20 scored higher but is above today's budget price" in e.sentence
    js = e.to_dict()
    assert js["offers"][2]["budget_lever"] < 0 and js["lam"] == 50.0


def test_readme_section_runs() -> None:
    from .readme import readme_section, run_python_blocks

    section = readme_section("Why this offer, and what to maximise")
    assert section is not None
    ns = run_python_blocks(section)
    assert ns["e"].recompute() == ns["d"].offer
    assert ns["engine"].policy.version == 1  # learnt once the shopper came back


def test_an_offer_excluding_the_whole_basket_says_so() -> None:
    cat = Catalogue(offers=(NoDiscount(id="none"),
                            PercentOff(id="p10_not_food", fraction=0.10, exclude_categories=(0, 1))),
                    currency="EUR", minor_unit=0.01)
    eng = Engine(cat, make_policy("UCB1", 2, seed=0), EngineConfig(caps=None), privacy_key=KEY)
    e = eng.decide("u", basket=basket(100.0), now=T0, explain=True).explain()
    assert e.offers[1].reasons == ({"rule": "exclusion", "excluded_lines": 2},)
    assert e.offers[1].eligible and e.offers[1].discount_cost == 0.0


def test_the_discount_cap_rule_carries_its_numbers() -> None:
    cat = catalogue()
    eng = Engine(cat, FixedOffer(len(cat), offer=2, fallback=0),
                 EngineConfig(caps=UserCapsConfig(max_discount_per_period=15.0)),
                 privacy_key=KEY)
    e = eng.decide("u1", basket=basket(100.0), now=T0, explain=True).explain()
    # 20% of 100 EUR is more than the shopper's 15 EUR cap: the fallback is chosen
    assert e.offer == 0 and not e.offers[2].eligible
    (r,) = e.offers[2].reasons
    assert r == {"rule": "per_user_discount", "spent": 0.0,
                 "worst_case_cost": pytest.approx(20.0), "max_discount_per_period": 15.0}
    assert e.offers[1].eligible  # 10 EUR fits
    assert "p20 was not allowed: it would pass the shopper's discount cap" in e.sentence or \
        "was not allowed" in e.sentence


def test_explanations_are_not_state() -> None:
    eng = make_engine("LinTS", "numba", keep_explanations=True)
    ds = run(eng, 10, explain=False)
    pending = [d for d in ds if eng.pending_created_at(d.id) is not None]
    assert pending and eng.explain(pending[-1].id).offer == pending[-1].offer
    twin = make_engine("LinTS", "numba", keep_explanations=True)
    twin.load_bytes(eng.to_bytes())
    with pytest.raises(ValueError, match="restored"):
        twin.explain(pending[-1].id)


def test_a_policy_can_supply_its_own_numbers() -> None:
    from promobandit.policies import UCB1

    class Scored(UCB1):
        """A UCB1 that reports its bounds itself (as a new policy family would)."""

        def explanation_numbers(self, x, eligible, bias, t):
            base = explain_mod.policy_numbers(UCB1(self.n_arms, self.config), x, eligible,
                                              bias, t)
            return dataclasses.replace(base, rule="argmax")

    cat = catalogue()
    eng = Engine(cat, Scored(len(cat)), EngineConfig(caps=None), privacy_key=KEY)
    e = eng.decide("u", basket=basket(100.0), now=T0, explain=True).explain()
    assert e.rule == "argmax" and e.recompute() == e.offer

    class Broken(UCB1):
        def explanation_numbers(self, x, eligible, bias, t):
            return {"rule": "argmax"}

    eng = Engine(cat, Broken(len(cat)), EngineConfig(caps=None), privacy_key=KEY)
    with pytest.raises(TypeError, match="explanation_numbers"):
        eng.decide("u", basket=basket(100.0), now=T0, explain=True)
    assert eng.n_pending == 0 and eng.policy.n_decisions == 0  # nothing was decided


@pytest.mark.parametrize("name", ["LinTS", "BetaTS", "EpsilonGreedy", "Softmax", "UCB1",
                                  "FixedOffer"])
def test_batch_explanations_reproduce_every_row(name: str, backend: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    again = []
    real_again = explain_mod.again
    monkeypatch.setattr(explain_mod, "again",
                        lambda *a, **k: again.append(1) or real_again(*a, **k))
    rs = np.random.default_rng(4)
    # a budget small enough that later rows of a batch are decided again
    a = make_engine(name, backend, budget=BudgetConfig(amount=120.0))
    b = make_engine(name, backend, budget=BudgetConfig(amount=120.0))
    for step in range(6):
        users = [f"u{step}-{i}" for i in range(12)]
        xs = rs.normal(size=(12, D))
        baskets = [basket(60.0 + 80.0 * rs.random()) for _ in users]
        now = T0 + 3600.0 * step
        da = a.decide_batch(users, contexts=xs, baskets=baskets, now=now, explain=True)
        db = b.decide_batch(users, contexts=xs, baskets=baskets, now=now)
        assert [d.offer for d in da] == [d.offer for d in db]
        for d in da:
            e = d.explain()
            assert e.recompute() == d.offer == choose_from_numbers(e)
            if d.offer and step % 2 == 0:
                a.feedback(d.id, f"e{d.id}", purchased=True, now=now + 1)
                b.feedback(d.id, f"e{d.id}", purchased=True, now=now + 1)
    assert again  # rows were decided again after the budget ran short, and explained again
    np.testing.assert_array_equal(a.policy.state_dict()["arrays"]["counters"],
                                  b.policy.state_dict()["arrays"]["counters"])
