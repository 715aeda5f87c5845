"""ConversionTS: the response model's kernels (parity, determinism, bad input) and its
learning on planted markets against LinTS and LinUCB on the same draws."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit import _backends
from promobandit.engine import Engine, EngineConfig
from promobandit.offers import Basket, Catalogue, NoDiscount, PercentOff, SpendThreshold
from promobandit.policies import POLICIES, QUOTED_POLICIES, ConversionTS, make_policy

BACKENDS = [b for b in ("cpp", "numba") if b != "cpp" or _backends.has_cpp()]
KEY = b"test-key-0123456789abcdef"
T0 = 1_700_000_000.0


def _random_problem(n: int, k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, d)) / np.sqrt(d)
    q = np.empty((n, k, 4))
    q[:, :, 0] = rs.uniform(-0.5, 2.0, (n, k))
    q[:, :, 1] = q[:, :, 0] + rs.uniform(0.0, 2.0, (n, k))
    q[:, :, 2] = rs.uniform(0.0, 0.3, (n, k))
    q[:, :, 3] = q[:, :, 2] + rs.uniform(0.0, 0.2, (n, k))
    return x, q


def _play(backend: str, n: int = 200, k: int = 6, d: int = 5) -> dict[str, np.ndarray]:
    x, q = _random_problem(n, k, d, 1)
    pol = ConversionTS(k, d, seed=11, backend=backend, propensity_draws=40)
    arms, props = [], []
    for i in range(n):
        a, p = pol.select(x[i], None, None, q[i])
        arms.append(a)
        props.append(p)
        pol.update(a, i % 3, x[i], q[i, a, 2:])
    batch_arms, batch_props = pol.select_batch(x, quotes=q)
    arrays = pol.state_dict()["arrays"]
    return {"arms": np.array(arms), "props": np.array(props), "batch_arms": batch_arms,
            "batch_props": batch_props, "mu": arrays["mu"], "Sigma": arrays["Sigma"],
            "exp": pol.expectations(x[:7], q[:7]),
            "ap": pol.action_probabilities(x[:7], quotes=q[:7], draws=60)}


@pytest.mark.skipif(not _backends.has_cpp(), reason="the C++ backend was not built")
def test_cpp_and_numba_decide_and_learn_identically() -> None:
    c, n = _play("cpp"), _play("numba")
    np.testing.assert_array_equal(c["arms"], n["arms"])
    np.testing.assert_array_equal(c["batch_arms"], n["batch_arms"])
    for key in ("props", "batch_props", "mu", "Sigma", "exp", "ap"):
        np.testing.assert_allclose(c[key], n[key], rtol=1e-12, atol=0, err_msg=key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_seed_gives_the_same_decisions_and_a_batch_equals_single_calls(backend: str) -> None:
    x, q = _random_problem(50, 5, 4, 2)
    a = ConversionTS(5, 4, seed=3, backend=backend, propensity_draws=20)
    b = ConversionTS(5, 4, seed=3, backend=backend, propensity_draws=20)
    other = ConversionTS(5, 4, seed=4, backend=backend, propensity_draws=20)
    single = [a.select(x[i], None, None, q[i]) for i in range(50)]
    arms, props = b.select_batch(x, quotes=q)
    assert [s[0] for s in single] == arms.tolist()
    np.testing.assert_array_equal([s[1] for s in single], props)
    assert other.select_batch(x, quotes=q)[0].tolist() != arms.tolist()
    # Propensities are estimates of a distribution over the eligible offers.
    assert ((props > 0) & (props <= 1)).all()
    ap = a.action_probabilities(x[:3], quotes=q[:3], draws=200)
    np.testing.assert_allclose(ap.sum(axis=1), 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_propensity_draws_and_threads_never_change_a_decision(backend: str) -> None:
    """The propensity estimate draws from its own stream: with 0 or 100 draws, one
    request at a time or in batches on any thread count, the same offers are chosen."""
    x, q = _random_problem(120, 6, 5, 3)
    plain = ConversionTS(6, 5, seed=2, backend=backend, propensity_draws=0)
    estimated = ConversionTS(6, 5, seed=2, backend=backend, propensity_draws=100)
    batched = ConversionTS(6, 5, seed=2, backend=backend, propensity_draws=100)
    for lo in range(0, 120, 40):
        arms, _ = batched.select_batch(x[lo:lo + 40], quotes=q[lo:lo + 40], n_threads=4)
        for i in range(lo, lo + 40):
            a, _ = plain.select(x[i], None, None, q[i])
            b, _ = estimated.select(x[i], None, None, q[i])
            assert a == b == arms[i - lo]
        for pol in (plain, estimated, batched):
            pol.update_batch(arms, np.arange(40) % 3, x[lo:lo + 40],
                             np.ascontiguousarray(q[np.arange(lo, lo + 40), arms, 2:]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_and_biases_steer_the_choice(backend: str) -> None:
    x, q = _random_problem(40, 4, 3, 5)
    pol = ConversionTS(4, 3, seed=1, backend=backend, propensity_draws=0)
    mask = np.array([False, True, False, True])
    arms, props = pol.select_batch(x, np.repeat(mask[None], 40, 0), quotes=q)
    assert set(arms.tolist()) <= {1, 3}
    assert np.isnan(props).all()  # propensity_draws=0: no estimate
    bias = np.array([0.0, 0.0, 100.0, 0.0])
    assert pol.select(x[0], None, bias, q[0])[0] == 2


def _state(pol: ConversionTS) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in pol.state_dict()["arrays"].items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(backend: str) -> None:
    x, q = _random_problem(3, 4, 3, 7)
    pol = ConversionTS(4, 3, seed=1, backend=backend)
    pol.update(1, 2, x[0], q[0, 1, 2:])
    before = _state(pol)
    bad_x = x[0].copy()
    bad_x[1] = np.nan
    with pytest.raises(ValueError, match="context"):
        pol.select(bad_x, None, None, q[0])
    bad_q = q[0].copy()
    bad_q[2, 0] = np.nan
    with pytest.raises(ValueError, match="quotes"):
        pol.select(x[0], None, None, bad_q)
    neg = q[0].copy()
    neg[1, 3] = -0.1  # paid above list: a negative price cut
    with pytest.raises(ValueError, match="quotes"):
        pol.select_batch(x[:1], quotes=neg[None])
    with pytest.raises(ValueError, match="quotes"):
        pol.select(x[0])
    with pytest.raises(ValueError, match="outcome"):
        pol.update(1, 3, x[0], q[0, 1, 2:])
    with pytest.raises(ValueError, match="cuts"):
        pol.update(1, 1, x[0], np.array([np.inf, 0.1]))
    with pytest.raises(ValueError, match="context"):
        pol.update(1, 1, bad_x, q[0, 1, 2:])
    with pytest.raises(IndexError):
        pol.update(9, 1, x[0], q[0, 1, 2:])
    with pytest.raises(ValueError, match="outcomes"):  # a bad row anywhere: nothing applied
        pol.update_batch(np.array([0, 1]), np.array([1, 5]), x[:2], np.zeros((2, 2)))
    after = _state(pol)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    with pytest.raises(ValueError, match="add_arm"):
        pol.add_arm()
    with pytest.raises(ValueError, match="merge"):
        pol.merge(ConversionTS(4, 3, seed=2, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_separable_data_never_gives_a_nan(backend: str) -> None:
    """Every shopper buys the whole basket under every offer (perfectly separable): the
    online Laplace steps shrink with the residual, weights stay finite, decisions valid."""
    k, d = 3, 2
    pol = ConversionTS(k, d, seed=0, backend=backend, propensity_draws=10, prior_var=100.0)
    x = np.array([1.0, 5.0])
    q = np.array([[1.0, 2.0, 0.0, 0.0], [0.8, 1.8, 0.1, 0.1], [0.6, 1.6, 0.2, 0.2]])
    for i in range(3000):
        a, p = pol.select(x, None, None, q)
        assert 0 <= a < k and 0 < p <= 1
        pol.update(a, 2, x * (1 + i % 7), q[a, 2:])
    arrays = pol.state_dict()["arrays"]
    assert np.isfinite(arrays["mu"]).all() and np.isfinite(arrays["Sigma"]).all()
    assert np.isfinite(pol.expectations(x, q)).all()
    # The model learnt that everyone buys the basket: value of offer 0 near 2.0.
    assert pol.expectations(x, q)[0] > 1.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_round_trips_and_continues_identically(backend: str) -> None:
    x, q = _random_problem(30, 4, 3, 9)
    pol = ConversionTS(4, 3, seed=5, backend=backend, propensity_draws=10)
    for i in range(10):
        a, _ = pol.select(x[i], None, None, q[i])
        pol.update(a, i % 3, x[i], q[i, a, 2:])
    copy = ConversionTS.from_state_dict(pol.state_dict(), backend=backend)
    np.testing.assert_array_equal(pol.select_batch(x[10:], quotes=q[10:])[0],
                                  copy.select_batch(x[10:], quotes=q[10:])[0])
    assert QUOTED_POLICIES["ConversionTS"] is ConversionTS
    assert "ConversionTS" not in POLICIES  # POLICIES share the reward interface
    assert isinstance(make_policy("ConversionTS", 4, 3, seed=1), ConversionTS)


# --- planted markets -------------------------------------------------------------------

class PlantedMarket:
    """A planted truth: one-line baskets whose list price P (log-normal around 40.00) and
    cost C (45-80% of P) vary by request; offers at percent depths `depths` plus "spend
    50, save 10" (a price cut only on baskets of 50.00 or more); an offer that would sell
    below cost is not eligible. Shoppers of segment s buy with probability
    sigmoid(a_s + b_s * log(P / paid)). Profit = paid - C when bought (currency)."""

    def __init__(self, depths: list[float], a: list[float], b: list[float], n: int,
                 seed: int) -> None:
        rs = np.random.default_rng(seed)
        self.a, self.b = np.asarray(a), np.asarray(b)
        self.n_seg = len(a)
        self.seg = rs.integers(0, self.n_seg, n)
        self.u = rs.random(n)
        self.price = np.round(40.0 * np.exp(0.5 * rs.normal(size=n)), 2)
        self.cost = np.round(self.price * rs.uniform(0.45, 0.8, n), 2)
        d = np.asarray(depths)
        paid = np.round(self.price[:, None] * (1.0 - d[None, :]), 2)
        spend = np.where(self.price >= 50.0, self.price - 10.0, self.price)
        self.paid = np.column_stack([paid, spend])
        self.eligible = self.paid >= self.cost[:, None]
        self.cut = np.log(self.price[:, None] / self.paid)
        self.margin = self.paid - self.cost[:, None]
        z = self.a[self.seg][:, None] + self.b[self.seg][:, None] * self.cut
        self.prob = 1.0 / (1.0 + np.exp(-z))
        self.expected = self.prob * self.margin
        self.best = np.where(self.eligible, self.expected, -np.inf).max(axis=1)

    def contexts(self) -> np.ndarray:
        """[segment one-hot, one-hot x P / 40, one-hot x C / 40]: what every policy sees;
        the linear policies' expected profit under a percent offer is linear in it."""
        oh = np.eye(self.n_seg)[self.seg]
        return np.hstack([oh, oh * (self.price / 40.0)[:, None],
                          oh * (self.cost / 40.0)[:, None]])


REWARD_SCALE = 10.0


def _run(market: PlantedMarket, policy: str, *, batch: int = 50, seed: int = 0,
         **settings: float) -> np.ndarray:
    """Expected profit per decision of a policy over the planted draws (the same draws
    for every policy: common random numbers)."""
    x = market.contexts()
    n, d = x.shape
    k = market.paid.shape[1]
    quotes = np.empty((n, k, 4))
    quotes[:, :, 0] = quotes[:, :, 1] = market.margin / REWARD_SCALE
    quotes[:, :, 2] = quotes[:, :, 3] = market.cut
    if policy == "ConversionTS":
        pol = make_policy("ConversionTS", k, d, seed=seed, propensity_draws=0, **settings)
    elif policy == "LinTS":
        pol = make_policy("LinTS", k, d, seed=seed, v=0.25, propensity_draws=0)
    else:
        pol = make_policy("LinUCB", k, d, seed=seed, alpha=0.3)
    out = np.empty(n)
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        rows = np.arange(lo, hi)
        masks = np.ascontiguousarray(market.eligible[lo:hi])
        if policy == "ConversionTS":
            arms, _ = pol.select_batch(x[lo:hi], masks, quotes=quotes[lo:hi])
        else:
            arms, _ = pol.select_batch(x[lo:hi], masks)
        bought = market.u[lo:hi] < market.prob[rows, arms]
        out[lo:hi] = market.expected[rows, arms]
        if policy == "ConversionTS":
            pol.update_batch(arms, np.where(bought, 2, 0), x[lo:hi], quotes[rows, arms, 2:])
        else:
            pol.update_batch(arms, np.where(bought, market.margin[rows, arms], 0.0)
                             / REWARD_SCALE, x[lo:hi])
    return out


DEPTHS = [0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30]


def test_segment_market_reaches_95_percent_of_the_oracle_and_beats_the_linear_policies() -> None:
    """Three segments whose best offers differ (from no discount for the price-insensitive
    to deep cuts for deal-seekers), 50,000 decisions: ConversionTS earns at least 95% of
    the oracle's expected profit, and more than LinTS and LinUCB on the same draws."""
    market = PlantedMarket(DEPTHS, a=[-1.0, -2.0, -3.0], b=[1.0, 6.0, 12.0], n=50_000,
                           seed=42)
    best = np.argmax(np.where(market.eligible, market.expected, -np.inf), axis=1)
    depth = np.asarray([*DEPTHS, 0.0])[best]
    # the best offer differs by segment: none for segment 0, deeper cuts further on
    assert (best[market.seg == 0] == 0).mean() > 0.9
    assert depth[market.seg == 1].mean() < depth[market.seg == 2].mean() - 0.03
    got = {p: _run(market, p).sum() for p in ("ConversionTS", "LinTS", "LinUCB")}
    ratio = got["ConversionTS"] / market.best.sum()
    assert ratio >= 0.95, (ratio, got)
    assert got["ConversionTS"] > got["LinTS"], got
    assert got["ConversionTS"] > got["LinUCB"], got


def test_market_where_no_discount_pays_converges_to_no_discount() -> None:
    """Price-insensitive shoppers: every discount loses money. Regret per decision in the
    last quarter falls below 10% of the first quarter's."""
    market = PlantedMarket(DEPTHS, a=[-1.5, -2.0], b=[0.3, 0.5], n=50_000, seed=7)
    assert (np.argmax(np.where(market.eligible, market.expected, -np.inf), axis=1) == 0).all()
    regret = market.best - _run(market, "ConversionTS")
    q = regret.shape[0] // 4
    assert regret[-q:].mean() < 0.10 * regret[:q].mean(), (regret[:q].mean(), regret[-q:].mean())


# --- in the engine ----------------------------------------------------------------------

def _catalogue(margin_floor: float = 0.0) -> Catalogue:
    return Catalogue(offers=(NoDiscount(id="none"), PercentOff(id="p10", fraction=0.10),
                             PercentOff(id="p40", fraction=0.40),
                             SpendThreshold(id="s50", spend=50.0, save=8.0)),
                     currency="EUR", minor_unit=0.01, margin_floor=margin_floor)


def _basket() -> Basket:
    # lead 40.00 (cost 25.00) + add-on 20.00 (cost 12.00): the threshold needs both.
    return Basket.from_lines([(1, 0, 40.0, 25.0, 1), (2, 1, 20.0, 12.0, 1)])


def test_engine_prices_lead_line_and_basket_exactly_and_learns_the_outcome() -> None:
    cat = _catalogue()
    pol = ConversionTS(len(cat), 2, seed=1, propensity_draws=50)
    eng = Engine(cat, pol, EngineConfig(caps=None, reward_scale=10.0), privacy_key=KEY)
    q = eng._offer_quotes([_basket()], cat.quote(_basket(), T0).paid_total[None],
                          np.array([60.0]), T0)[0]
    # profit / reward_scale, exactly: lead 40 - 25, basket 60 - 37, under each offer
    np.testing.assert_allclose(q[0], [1.5, 2.3, 0.0, 0.0])
    np.testing.assert_allclose(q[1], [(36.0 - 25.0) / 10, (54.0 - 37.0) / 10,
                                      np.log(40 / 36), np.log(60 / 54)])
    # spend 50 save 8: nothing on the lead line alone, 8 off the basket
    np.testing.assert_allclose(q[3], [1.5, (52.0 - 37.0) / 10, 0.0, np.log(60 / 52)])
    x = np.array([1.0, 0.5])
    d1 = eng.decide("u1", context=x, basket=_basket(), now=T0)
    d2 = eng.decide("u2", context=x, basket=_basket(), now=T0)
    assert 0.0 < d1.propensity <= 1.0
    before = pol.counts.copy()
    eng.feedback(d1.id, "e1", purchased=True, revenue=d1.price, now=T0 + 5)
    # only the lead line bought (its cost of goods is the lead line's)
    eng.feedback(d2.id, "e2", purchased=True, revenue=30.0, cost_of_goods=25.0, now=T0 + 6)
    assert pol.counts.sum() == before.sum() + 2
    assert pol.version == 2
    # the engine's state (pending decisions with their lead-line cut) round-trips
    d3 = eng.decide("u3", context=x, basket=_basket(), now=T0 + 7)
    blob = eng.to_bytes()
    other = Engine(cat, ConversionTS(len(cat), 2, seed=1, propensity_draws=50),
                   EngineConfig(caps=None, reward_scale=10.0), privacy_key=KEY)
    other.load_bytes(blob)
    assert other.feedback(d3.id, "e3", ended=True, now=T0 + 8).status == "finalised"


def test_engine_never_offers_below_the_margin_floor() -> None:
    """40% off takes the lead line (cost 25.00 of 40.00) below cost x (1 + 10%): the
    engine masks it, so ConversionTS never picks it however it is biased."""
    cat = _catalogue(margin_floor=0.10)
    pol = ConversionTS(len(cat), 2, seed=2, propensity_draws=0, v=5.0)
    eng = Engine(cat, pol, EngineConfig(caps=None), privacy_key=KEY)
    assert not cat.quote(_basket(), T0).eligible[2]
    baskets = [_basket()] * 300
    ds = eng.decide_batch([f"u{i}" for i in range(300)], contexts=np.ones((300, 2)),
                          baskets=baskets, now=T0)
    assert {d.offer for d in ds} <= {0, 1, 3}
    assert len({d.offer for d in ds}) > 1  # it explores among the eligible ones


def test_budget_and_fairness_steer_conversion_ts_in_the_engine() -> None:
    """The engine's limits apply to ConversionTS as to any policy: a tight daily budget is
    never exceeded, and a binding fairness bound at least halves the gap in discount depth
    between deal-seekers and full-price buyers (test_engine's shoppers)."""
    from promobandit.constraints import BudgetConfig, FairnessConfig

    from .test_engine import pct_catalogue, simulate

    def conversion_engine(**config: object) -> Engine:
        cat = pct_catalogue()
        pol = ConversionTS(len(cat), 4, seed=3, propensity_draws=20)
        config.setdefault("caps", None)
        return Engine(cat, pol, EngineConfig(**config), privacy_key=KEY)  # type: ignore[arg-type]

    amount = 400.0
    paced = conversion_engine(budget=BudgetConfig(amount=amount, period_seconds=86_400.0,
                                                  start=T0, step_size=0.5, update_every=20),
                              feedback_wait_seconds=900.0)

    def within(e: Engine, now: float) -> None:
        assert e.budget is not None and e.budget.spent <= amount + 1e-9

    unpaced = simulate(conversion_engine(feedback_wait_seconds=900.0), 3000, step=10.0)
    assert unpaced["spend"] > 1.5 * amount  # the budget binds
    simulate(paced, 3000, step=10.0, check=within)
    assert paced.budget is not None and 0.0 < paced.budget.spent <= amount + 1e-9
    measured = conversion_engine(fairness=FairnessConfig(max_gap=1.0))
    simulate(measured, 4000, groups=True, seed=1)
    # a bound below the gap ConversionTS creates on its own, so that it binds
    bounded = conversion_engine(fairness=FairnessConfig(max_gap=0.002, step_size=0.5))
    simulate(bounded, 4000, groups=True, seed=1)
    assert bounded.fairness is not None and measured.fairness is not None
    gap_off = measured.fairness.gap(cumulative=True)
    gap_on = bounded.fairness.gap(cumulative=True)
    assert gap_off > 0.002 + 0.005, measured.fairness.report()
    assert gap_on < 0.5 * gap_off, (gap_on, gap_off)
