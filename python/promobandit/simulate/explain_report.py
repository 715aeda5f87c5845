"""The report's "Who got which offer, and why": offers by shopper segment and by feature
bins, the features behind each offer, and ten sampled decisions with their reasons.

Read from one run of the retention world (promobandit.simulate.retention) whose every
n-th decision was explained (``run_retention(..., explain_every=n)``): the segments are
the world's truth (at risk / loyal), the bins are terciles of each context feature over
the run's decisions, the top features are the largest coefficient x value contribution to
the chosen offer's score (LinTS / LinUCB explanations), and the sentences are the
explanations' own (promobandit.engine.explain).

Knobs: ``N_SENTENCES`` (decisions sampled with their reasons), ``BINNED`` (the features
binned).
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

import numpy as np

from .retention import DEPTHS, FEATURES, RetentionRun, catalogue

N_SENTENCES = 10
BINNED = ("risk_score", "recency_weeks", "purchases_5")


def who_got_what(run: RetentionRun, *, seed: int = 0) -> dict[str, Any]:
    """The section's tables as plain data (shares are fractions of the row's decisions).

    segments: {segment: {"n": decisions, "shares": {offer id: share}, "depth": mean}};
    bins: {feature: [(label, n, {offer id: share}, mean depth)]};
    top_features: {offer id: [(feature, times it was the largest contribution)]};
    sampled: N_SENTENCES (segment, offer id, sentence) of explained decisions."""
    ids = catalogue().ids
    k = len(ids)

    def shares(rows: np.ndarray) -> dict[str, float]:
        counts = np.bincount(run.offer[rows], minlength=k)
        n = max(int(rows.size), 1)
        return {ids[a]: float(counts[a] / n) for a in range(k)}

    segments = {}
    for name, sel in (("at risk", run.at_risk), ("loyal", ~run.at_risk)):
        rows = np.flatnonzero(sel)
        segments[name] = {"n": int(rows.size), "shares": shares(rows),
                          "depth": float(run.depth[rows].mean()) if rows.size else float("nan")}
    bins: dict[str, list[tuple[str, int, dict[str, float], float]]] = {}
    for feat in BINNED:
        j = FEATURES.index(feat)
        v = run.x[:, j]
        edges = np.unique(np.quantile(v, [1 / 3, 2 / 3])) if v.size else np.array([])
        which = np.searchsorted(edges, v, side="right")
        out = []
        for b in range(len(edges) + 1):
            rows = np.flatnonzero(which == b)
            lo = "min" if b == 0 else f"{edges[b - 1]:.2f}"
            hi = "max" if b == len(edges) else f"{edges[b]:.2f}"
            out.append((f"{lo} – {hi}", int(rows.size), shares(rows),
                        float(run.depth[rows].mean()) if rows.size else float("nan")))
        bins[feat] = out
    top: dict[str, list[tuple[str, int]]] = {}
    for a in range(k):
        c = Counter(f for f, o in zip(run.top_feature, run.offer, strict=True)
                    if f and o == a)
        if c:
            top[ids[a]] = c.most_common(3)
    explained = [i for i, s in enumerate(run.sentence) if s]
    rs = np.random.default_rng(seed)
    pick = sorted(rs.choice(explained, size=min(N_SENTENCES, len(explained)), replace=False)) \
        if explained else []
    sampled = [("at risk" if run.at_risk[i] else "loyal", ids[run.offer[i]], run.sentence[i])
               for i in pick]
    return {"segments": segments, "bins": bins, "top_features": top, "sampled": sampled,
            "explained": len(explained), "depths": dict(zip(ids, DEPTHS, strict=True))}


def explain_html(run: RetentionRun, *, seed: int = 0) -> str:
    """The section as HTML."""
    w = who_got_what(run, seed=seed)
    ids = catalogue().ids
    offer_head = "".join(f"<th>{html.escape(o)}</th>" for o in ids)

    def share_cells(sh: dict[str, float]) -> str:
        return "".join(f"<td>{100 * sh[o]:.1f}%</td>" for o in ids)

    seg_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s['n']:,}</td>{share_cells(s['shares'])}"
        f"<td>{100 * s['depth']:.1f}%</td></tr>" for name, s in w["segments"].items())
    bin_rows = "".join(
        f"<tr><td>{html.escape(feat)}</td><td>{html.escape(label)}</td><td>{n:,}</td>"
        f"{share_cells(sh)}<td>{100 * depth:.1f}%</td></tr>"
        for feat, rows in w["bins"].items() for label, n, sh, depth in rows)
    top_rows = "".join(
        f"<tr><td>{html.escape(o)}</td><td>"
        + ", ".join(f"{html.escape(f)} ({n})" for f, n in feats) + "</td></tr>"
        for o, feats in w["top_features"].items())
    sample_rows = "".join(
        f"<tr><td>{html.escape(seg)}</td><td>{html.escape(o)}</td><td>{html.escape(s)}</td></tr>"
        for seg, o, s in w["sampled"])
    return (
        "<h2>Who got which offer, and why</h2>"
        f"<p class='note'>The retention world's run of {html.escape(run.objective)}: "
        f"{len(run.offer):,} decisions, every 10th explained ({w['explained']:,}) by the "
        "engine from the state it decided with.</p>"
        "<h3>By segment</h3><div class='scroll'><table id='who-segments'><tr><th>segment</th>"
        f"<th>decisions</th>{offer_head}<th>mean depth</th></tr>{seg_rows}</table></div>"
        "<h3>By feature bins (terciles)</h3><div class='scroll'><table id='who-bins'><tr>"
        f"<th>feature</th><th>bin</th><th>decisions</th>{offer_head}<th>mean depth</th></tr>"
        f"{bin_rows}</table></div>"
        "<h3>Top features behind each offer</h3><p class='note'>How often each feature made "
        "the largest contribution (coefficient x value) to the chosen offer's score.</p>"
        f"<table id='who-features'><tr><th>offer</th><th>features (times largest)</th></tr>"
        f"{top_rows}</table>"
        "<h3>Ten decisions and their reasons</h3><div class='scroll'><table id='who-sample'>"
        f"<tr><th>segment</th><th>offer</th><th>reason</th></tr>{sample_rows}</table></div>")
