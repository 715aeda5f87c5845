"""The trade-off between profit, conversion and retention: a sweep of objective weights in
the retention world (promobandit.simulate.retention), each point a full run with its
interval, and the Pareto plot of the report.

``sweep`` runs profit alone, profit + w EUR per returning shopper for every w of
``retention_weights``, and profit + c EUR per purchase for every c of
``conversion_weights``: one full run each, on the same world and the same random numbers
(common random numbers), so the points differ by their objective only. Every metric
carries a percentile bootstrap interval over shoppers (``RetentionRun.intervals``).

``pareto_front`` marks the points no other point beats on both profit and the other
metric. ``tradeoff_figure`` draws profit per shopper against conversion and against
retention with both intervals as error bars; ``tradeoff_html`` is the report's section.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from typing import Any

from .retention import RetentionConfig, RetentionRun, retention_objective, run_retention

DEFAULT_RETENTION_WEIGHTS = (0.0, 10.0, 20.0, 40.0, 80.0)
DEFAULT_CONVERSION_WEIGHTS = (10.0, 20.0, 40.0)


@dataclasses.dataclass(frozen=True)
class ParetoPoint:
    """One full run: its objective's weights (EUR per return / per purchase) and every
    metric of ``RetentionRun.metrics`` as (estimate, low, high)."""

    label: str
    retention_weight: float
    conversion_weight: float
    metrics: dict[str, tuple[float, float, float]]


def sweep(config: RetentionConfig,
          retention_weights: Sequence[float] = DEFAULT_RETENTION_WEIGHTS,
          conversion_weights: Sequence[float] = DEFAULT_CONVERSION_WEIGHTS, *,
          n_boot: int = 200, level: float = 0.95) -> tuple[list[ParetoPoint], RetentionRun]:
    """The points of the sweep, and the run of the largest retention weight (kept for the
    report's "who got which offer" section; its every 10th decision is explained)."""
    points = []
    kept = None
    top = max(retention_weights) if retention_weights else None
    for w in retention_weights:
        run = run_retention(config, retention_objective(w, config.window_days),
                            explain_every=10 if w == top else 0)
        if w == top:
            kept = run
        points.append(ParetoPoint(run.objective, float(w), 0.0,
                                  run.intervals(n_boot, level, seed=config.seed)))
    for cw in conversion_weights:
        run = run_retention(config, retention_objective(0.0, config.window_days, cw))
        points.append(ParetoPoint(run.objective, 0.0, float(cw),
                                  run.intervals(n_boot, level, seed=config.seed)))
    if kept is None:
        kept = run_retention(config, "profit", explain_every=10)
    return points, kept


def pareto_front(points: Sequence[ParetoPoint], other: str) -> list[bool]:
    """True for the points that no other point beats on both profit per shopper and
    `other` (e.g. "retention"), by their estimates."""
    est = [(p.metrics["profit_per_shopper"][0], p.metrics[other][0]) for p in points]
    out = []
    for i, (a, b) in enumerate(est):
        dominated = any(c >= a and d >= b and (c > a or d > b)
                        for j, (c, d) in enumerate(est) if j != i)
        out.append(not dominated)
    return out


def tradeoff_figure(points: Sequence[ParetoPoint]) -> Any:
    """Profit per shopper against conversion and against retention, with intervals
    (matplotlib, the report extra)."""
    from .report import _figure

    fig, _ = _figure(9.0, 3.6)
    fig.clf()
    axes = fig.subplots(1, 2)
    for ax, other, name in ((axes[0], "conversion", "conversion (purchases / visit)"),
                            (axes[1], "retention", "retention (returns / visit)")):
        for kind, marker in (("retention", "o"), ("conversion", "s")):
            pts = [p for p in points if (p.conversion_weight > 0) == (kind == "conversion")]
            if not pts:
                continue
            xs = [p.metrics[other] for p in pts]
            ys = [p.metrics["profit_per_shopper"] for p in pts]
            ax.errorbar([x[0] for x in xs], [y[0] for y in ys],
                        xerr=[[x[0] - x[1] for x in xs], [x[2] - x[0] for x in xs]],
                        yerr=[[y[0] - y[1] for y in ys], [y[2] - y[0] for y in ys]],
                        fmt=marker + "-", capsize=2, lw=1,
                        label=("+ w EUR per return" if kind == "retention"
                               else "+ c EUR per purchase"))
            for p, x, y in zip(pts, xs, ys, strict=True):
                w = p.retention_weight if kind == "retention" else p.conversion_weight
                ax.annotate(f"{w:g}", (x[0], y[0]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel("profit per shopper (EUR)")
    axes[0].legend(fontsize=7, frameon=False)
    return fig


def tradeoff_table(points: Sequence[ParetoPoint]) -> str:
    """The sweep as an HTML table (estimates with intervals)."""
    front = pareto_front(points, "retention")
    head = ("<tr><th>objective</th><th>profit / shopper (EUR)</th><th>conversion</th>"
            "<th>retention</th><th>retention of at-risk shoppers</th>"
            "<th>depth offered at risk / loyal</th><th>Pareto (profit, retention)</th></tr>")

    def iv(m: tuple[float, float, float], pct: bool) -> str:
        if pct:
            return f"{100 * m[0]:.1f}% [{100 * m[1]:.1f}, {100 * m[2]:.1f}]"
        return f"{m[0]:.2f} [{m[1]:.2f}, {m[2]:.2f}]"

    rows = "".join(
        f"<tr><td>{html.escape(p.label)}</td><td>{iv(p.metrics['profit_per_shopper'], False)}"
        f"</td><td>{iv(p.metrics['conversion'], True)}</td>"
        f"<td>{iv(p.metrics['retention'], True)}</td>"
        f"<td>{iv(p.metrics['retention_at_risk'], True)}</td>"
        f"<td>{100 * p.metrics['depth_at_risk'][0]:.1f}% / "
        f"{100 * p.metrics['depth_loyal'][0]:.1f}%</td><td>{'yes' if f else ''}</td></tr>"
        for p, f in zip(points, front, strict=True))
    return f"<table id='tradeoff'>{head}{rows}</table>"


def tradeoff_sentence(points: Sequence[ParetoPoint]) -> str:
    """What the sweep says: the retention gained and the profit it cost, against profit
    alone, for the best-retaining point, with intervals."""
    base = next((p for p in points if p.retention_weight == 0 and p.conversion_weight == 0),
                None)
    ret = [p for p in points if p.retention_weight > 0]
    if base is None or not ret:
        return ""
    best = max(ret, key=lambda p: p.metrics["retention_at_risk"][0])
    b, t = base.metrics, best.metrics
    return (f"Weighing a return at {best.retention_weight:g} EUR raised the return rate of "
            f"at-risk shoppers from {100 * b['retention_at_risk'][0]:.1f}% "
            f"[{100 * b['retention_at_risk'][1]:.1f}, {100 * b['retention_at_risk'][2]:.1f}] to "
            f"{100 * t['retention_at_risk'][0]:.1f}% [{100 * t['retention_at_risk'][1]:.1f}, "
            f"{100 * t['retention_at_risk'][2]:.1f}] (all shoppers: "
            f"{100 * b['retention'][0]:.1f}% to {100 * t['retention'][0]:.1f}%) by offering them "
            f"{100 * t['depth_at_risk'][0]:.1f}% off on average instead of "
            f"{100 * b['depth_at_risk'][0]:.1f}%; profit per shopper went from "
            f"{b['profit_per_shopper'][0]:.2f} [{b['profit_per_shopper'][1]:.2f}, "
            f"{b['profit_per_shopper'][2]:.2f}] to {t['profit_per_shopper'][0]:.2f} "
            f"[{t['profit_per_shopper'][1]:.2f}, {t['profit_per_shopper'][2]:.2f}] EUR.")


def tradeoff_html(points: Sequence[ParetoPoint], config: RetentionConfig,
                  figure_svg: str = "") -> str:
    """The report's section: the plot, the table and the sentence."""
    c = config
    return (
        "<h2>Profit, conversion and retention</h2>"
        f"<p class='note'>A second world, built for retention ({c.n_shoppers:,} shoppers over "
        f"{c.days:g} days, {100 * c.at_risk_share:.0f}% of them at risk of not coming back; "
        "offers raise their return far more than a loyal shopper's): each point is a full "
        f"run of {html.escape(c.policy)} through the engine with one objective, on the same "
        "shoppers and random numbers. Intervals: 95% percentile bootstrap over shoppers."
        "</p>"
        + (f"<div class='plot' id='plot-tradeoff'>{figure_svg}</div>" if figure_svg else "")
        + f"<p class='verdict'>{html.escape(tradeoff_sentence(points))}</p>"
        + f"<div class='scroll'>{tradeoff_table(points)}</div>")


def report_sections(tradeoff: Any, seed: int) -> tuple[list[str], str]:
    """The report's two sections (the trade-off; who got which offer, and why) and the
    trade-off's sentence, from a ``TradeoffSection`` (simulate.config) and the run's seed."""
    from .explain_report import explain_html
    from .report import _svg

    rc = RetentionConfig(n_shoppers=tradeoff.n_shoppers, days=tradeoff.days, seed=seed)
    points, kept = sweep(rc, tradeoff.retention_weights, tradeoff.conversion_weights,
                         n_boot=tradeoff.bootstrap)
    svg = _svg(tradeoff_figure(points))
    return [tradeoff_html(points, rc, svg), explain_html(kept, seed=seed)], \
        tradeoff_sentence(points)
