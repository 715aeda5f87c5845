"""The retention world: a retention objective shifts offers toward shoppers at risk and
buys a higher return rate at a stated profit cost (with intervals); the sweep, the Pareto
front and the report's "who got which offer, and why"."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit.simulate.explain_report import N_SENTENCES, explain_html, who_got_what
from promobandit.simulate.pareto import pareto_front, sweep, tradeoff_html, tradeoff_sentence
from promobandit.simulate.retention import (
    RetentionConfig,
    retention_objective,
    run_retention,
)

CFG = RetentionConfig(n_shoppers=500, seed=3)


@pytest.fixture(scope="module")
def runs():
    return (run_retention(CFG, "profit"),
            run_retention(CFG, retention_objective(40.0, CFG.window_days), explain_every=10))


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="return_base"):
        RetentionConfig(return_base=(0.5, 1.0))
    with pytest.raises(ValueError, match="window_days"):
        RetentionConfig(window_days=0.0)


def test_same_seed_same_run() -> None:
    c = RetentionConfig(n_shoppers=60, days=10.0, seed=7)
    a, b = run_retention(c, "profit"), run_retention(c, "profit")
    np.testing.assert_array_equal(a.offer, b.offer)
    np.testing.assert_array_equal(a.returned, b.returned)


def test_retention_objective_moves_offers_to_shoppers_at_risk(runs) -> None:
    profit, retain = runs
    pi, ri = profit.intervals(200), retain.intervals(200)
    # more (and deeper) offers to the shoppers at risk, beyond the intervals' overlap
    assert ri["depth_at_risk"][1] > pi["depth_at_risk"][2]
    gap_p = pi["depth_at_risk"][0] - pi["depth_loyal"][0]
    gap_r = ri["depth_at_risk"][0] - ri["depth_loyal"][0]
    assert gap_r > gap_p + 0.03
    # and they come back more often: the intervals do not overlap
    assert ri["retention_at_risk"][1] > pi["retention_at_risk"][2]
    assert ri["retention"][0] > pi["retention"][0]
    # the profit it costs is stated with its interval (and stays within reach here)
    for m in (pi, ri):
        lo, hi = m["profit_per_shopper"][1:]
        assert lo < m["profit_per_shopper"][0] < hi
    assert ri["profit_per_shopper"][0] > 0.8 * pi["profit_per_shopper"][0]


def test_who_got_what_and_why(runs) -> None:
    _, retain = runs
    w = who_got_what(retain, seed=1)
    seg = w["segments"]
    assert seg["at risk"]["depth"] > seg["loyal"]["depth"]
    assert sum(seg["at risk"]["shares"].values()) == pytest.approx(1.0)
    risk_bins = w["bins"]["risk_score"]
    assert len(risk_bins) == 3 and risk_bins[-1][3] > risk_bins[0][3]  # deeper when riskier
    assert len(w["sampled"]) == N_SENTENCES
    for _, offer, sentence in w["sampled"]:
        assert sentence.startswith(f"{offer}:")
    feats = {f for lst in w["top_features"].values() for f, _ in lst}
    assert feats and feats <= {"risk_score", "recency_weeks", "purchases_5", "visits_10"}
    page = explain_html(retain)
    assert "Who got which offer, and why" in page and page.count("<tr>") > 15


def test_sweep_points_front_and_section() -> None:
    c = RetentionConfig(n_shoppers=150, days=21.0, seed=2)
    points, kept = sweep(c, (0.0, 40.0), (20.0,), n_boot=30)
    assert [p.retention_weight for p in points] == [0.0, 40.0, 0.0]
    assert points[2].conversion_weight == 20.0 and "conversion" in points[2].label
    for p in points:
        for est, lo, hi in p.metrics.values():
            assert lo <= est <= hi or np.isnan(est)
    assert any(s for s in kept.sentence)  # the kept run was explained
    front = pareto_front(points, "retention")
    assert any(front)
    page = tradeoff_html(points, c)
    assert "id='tradeoff'" in page and "EUR" in tradeoff_sentence(points)


def test_pareto_front_by_hand() -> None:
    from promobandit.simulate.pareto import ParetoPoint

    def pt(profit: float, ret: float) -> ParetoPoint:
        m = {"profit_per_shopper": (profit, profit, profit), "retention": (ret, ret, ret)}
        return ParetoPoint("x", 0.0, 0.0, m)

    assert pareto_front([pt(10, 0.5), pt(9, 0.6), pt(8, 0.55), pt(10, 0.4)],
                        "retention") == [True, True, False, False]


def test_report_sections_and_their_config() -> None:
    pytest.importorskip("matplotlib")
    from promobandit.simulate.config import SimulationConfig, TradeoffSection
    from promobandit.simulate.pareto import report_sections

    t = TradeoffSection(n_shoppers=120, days=14.0, retention_weights=(0.0, 40.0),
                        conversion_weights=(20.0,), bootstrap=20)
    sections, sentence = report_sections(t, seed=0)
    assert len(sections) == 2 and "<svg" in sections[0] and "id='tradeoff'" in sections[0]
    assert "Who got which offer, and why" in sections[1]
    assert "at-risk shoppers" in sentence
    with pytest.raises(ValueError, match=r"tradeoff.retention_weights\[1\]"):
        SimulationConfig.from_dict({"tradeoff": {"retention_weights": [0.0, -5.0]}})
    with pytest.raises(ValueError, match=r"tradeoff\.window: unknown key"):
        SimulationConfig.from_dict({"tradeoff": {"window": 3}})
    cfg = SimulationConfig.from_dict({"tradeoff": {"enabled": False}})
    assert cfg.tradeoff.enabled is False


def test_the_tradeoff_flag() -> None:
    from promobandit.cli import build_parser
    from promobandit.simulate.cli import build_config

    args = build_parser().parse_args(["simulate", "--quick", "--no-tradeoff"])
    assert build_config(args).tradeoff.enabled is False
    args = build_parser().parse_args(["simulate", "--quick"])
    cfg = build_config(args)
    assert cfg.tradeoff.enabled is True and cfg.tradeoff.n_shoppers == 300
