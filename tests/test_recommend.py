"""The recommendation step: top-k from embeddings, the exploration head, the basket."""

from __future__ import annotations

import numpy as np
import pytest

from promobandit.engine.items import EmbeddingExplorer, ExplorationConfig, ItemRecommender
from promobandit.scoring import topk_softmax


def world(n: int = 400, d: int = 8, seed: int = 0):
    rs = np.random.default_rng(seed)
    items = (rs.normal(size=(n, d)) / np.sqrt(d)).astype(np.float32)
    prices = rs.uniform(5, 50, n)
    return items, rs.integers(0, 5, n), prices, prices * 0.6


def test_recommend_returns_the_scorer_top_k_with_full_softmax_probabilities() -> None:
    items, cats, prices, costs = world()
    rec = ItemRecommender(items, cats, prices, costs, k=7, temperature=0.5,
                          user_vector=lambda h: items[3] * 2.0)
    ids, probs = rec.recommend("someone")
    want = topk_softmax(items, items[3] * 2.0, 7, temperature=0.5)
    np.testing.assert_array_equal(ids, want.ids)
    np.testing.assert_allclose(probs, want.probs_full)
    dense = np.exp((items @ (items[3] * 2.0)) / 0.5)
    np.testing.assert_allclose(probs, (dense / dense.sum())[ids], rtol=1e-5)
    b = rec.basket(ids)
    np.testing.assert_array_equal(b.item_ids, ids)
    np.testing.assert_allclose(b.unit_prices, prices[ids])


def test_candidates_restrict_the_list() -> None:
    items, cats, prices, costs = world()
    rec = ItemRecommender(items, cats, prices, costs, k=5)
    cand = np.arange(100, 130)
    ids, _ = rec.recommend("u", candidates=cand)
    assert set(ids.tolist()) <= set(cand.tolist())


def test_exploration_head_moves_the_list_towards_clicked_items() -> None:
    """Shoppers click only items whose embedding points along a hidden direction the
    base user vector ignores; the head learns it and the list follows, in real time."""
    items, cats, prices, costs = world(n=600, d=8, seed=1)
    hidden = np.zeros(8, dtype=np.float32)
    hidden[5] = 1.0
    liked = items @ hidden > 0.35  # ~ the top 16% along the hidden direction
    share = {}
    for v in (0.0, 0.5):
        rec = ItemRecommender(items, cats, prices, costs, k=10, temperature=1.0,
                              exploration=ExplorationConfig(ridge=1.0, v=v, refresh_every=10),
                              seed=2)
        hits = []
        for _ in range(400):
            ids, _ = rec.recommend("u")
            clicked = ids[liked[ids]]
            rec.observe("nobody", ids, int(clicked[0]) if len(clicked) else None)
            hits.append(liked[ids].mean())
        share[v] = (np.mean(hits[:3]), np.mean(hits[-100:]))
    base_rate = liked.mean()
    early, late = share[0.5]
    assert early < 0.35, share  # before any feedback the list knows nothing of the taste
    assert late > 0.5 > 2 * base_rate, share  # it learnt the hidden taste
    # without exploration the same head never sees a click and never learns
    assert share[0.0][1] < 0.2, share


def test_explorer_draws_are_seeded_and_learn_the_click_model() -> None:
    a = EmbeddingExplorer(4, ExplorationConfig(v=0.3), seed=9)
    b = EmbeddingExplorer(4, ExplorationConfig(v=0.3), seed=9)
    np.testing.assert_array_equal(a.draw(), b.draw())
    rs = np.random.default_rng(0)
    w = np.array([1.0, -0.5, 0.0, 0.25])
    e = rs.normal(size=(5000, 4))
    a.update(e, e @ w + 0.1 * rs.normal(size=5000))
    a.refresh()
    np.testing.assert_allclose(a.w, w, atol=0.02)


def test_bad_recommender_inputs() -> None:
    items, cats, prices, costs = world()
    with pytest.raises(ValueError, match="k"):
        ItemRecommender(items, cats, prices, costs, k=10_000)
    with pytest.raises(ValueError, match="unit_prices"):
        ItemRecommender(items, cats, prices[:10], costs)
    with pytest.raises(ValueError, match="temperature"):
        ItemRecommender(items, cats, prices, costs, temperature=0.0)


def test_item_tables_are_checked_once_up_front() -> None:
    items, cats, prices, costs = world()
    bad = costs.copy()
    bad[7] = prices[7] * 2  # cost above price
    with pytest.raises(ValueError, match="unit_costs"):
        ItemRecommender(items, cats, prices, bad)
    rec = ItemRecommender(items, cats, prices, costs)
    prices[0] = -1.0  # the caller's array changing later does not reach the recommender
    assert rec.basket(np.array([0])).unit_prices[0] > 0
