"""Tests of the recommender: interaction logs, the two-tower model, baselines and metrics.

All data is synthetic and small so that the module runs in well under a minute on
two cores. Quality thresholds were checked over seeds 0-3 of the same world sizes
(two-tower / popularity Recall@10 ratio 2.4-3.1, difference 0.18-0.25) and are set
with room below those.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from promobandit.recommender import (  # noqa: E402 (after the torch skip)
    CART,
    CLICK,
    PURCHASE,
    VIEW,
    ALSConfig,
    ImplicitALS,
    InteractionLog,
    PopularityRecommender,
    SyntheticConfig,
    TwoTowerConfig,
    TwoTowerModel,
    compare_recommenders,
    dense_topk,
    evaluate,
    synthetic_log,
    synthetic_world,
)
from promobandit.recommender import two_tower as tt  # noqa: E402

# A world large enough for stable Recall@10 (~300 evaluated users), small enough to fit
# in a few seconds.
QUALITY_WORLD = SyntheticConfig(n_users=1500, n_items=300)
TINY_WORLD = SyntheticConfig(n_users=300, n_items=80, n_categories=8, sessions_per_user=4.0)
QUALITY_MARGIN_RATIO = 1.5  # two-tower Recall@10 >= 1.5 x popularity's
QUALITY_MARGIN_ABS = 0.10  # and at least 0.10 above it


@pytest.fixture(scope="module")
def quality_split() -> tuple[InteractionLog, InteractionLog, InteractionLog]:
    return synthetic_log(QUALITY_WORLD, seed=0).split_by_time(0.1, 0.1)


@pytest.fixture(scope="module")
def quality_model(quality_split) -> TwoTowerModel:
    train, val, _ = quality_split
    return TwoTowerModel.fit(train, val, TwoTowerConfig(max_epochs=8), progress=False)


@pytest.fixture(scope="module")
def tiny_split() -> tuple[InteractionLog, InteractionLog, InteractionLog]:
    return synthetic_log(TINY_WORLD, seed=3).split_by_time(0.15, 0.15)


TINY_CONFIG = TwoTowerConfig(dim=8, id_dim=8, hidden=(16,), max_epochs=3, batch_size=64,
                             history_length=10, seed=7)


@pytest.fixture(scope="module")
def tiny_model(tiny_split) -> TwoTowerModel:
    train, val, _ = tiny_split
    return TwoTowerModel.fit(train, val, TINY_CONFIG, progress=False)


def _log(**overrides):
    base = dict(user_ids=[0, 1, 1], item_ids=[0, 2, 1], events=[VIEW, CLICK, PURCHASE],
                timestamps=[1.0, 2.0, 3.0], item_category=[0, 1, 1],
                item_price_band=[0, 0, 2], n_users=2, prices=[1.0, 2.0, 3.5])
    base.update(overrides)
    return InteractionLog(**base)


# --- interaction log ------------------------------------------------------------------------

def test_log_is_validated_widened_and_read_only():
    log = _log(user_ids=np.array([0, 1, 1], dtype=np.int32))
    assert log.user_ids.dtype == np.int64 and log.events.dtype == np.int8
    assert log.n_items == 3 and log.n_categories == 2 and log.n_price_bands == 3
    with pytest.raises(ValueError, match="read-only"):
        log.user_ids[0] = 5
    assert log.event_counts() == {"view": 1, "click": 1, "cart": 0, "purchase": 1}


@pytest.mark.parametrize(("overrides", "field"), [
    (dict(user_ids=[0, -1, 1]), "user_ids"),
    (dict(user_ids=[0, 2, 1]), "user_ids"),  # n_users=2
    (dict(user_ids=[0.0, 1.0, 1.0]), "user_ids"),  # floats are not ids
    (dict(item_ids=[0, -3, 1]), "item_ids"),
    (dict(item_ids=[0, 3, 1]), "item_ids"),  # 3 items in the catalogue
    (dict(item_ids=[0, 1]), "item_ids"),  # length mismatch
    (dict(events=[0, 4, 1]), "events"),
    (dict(events=[0, -1, 1]), "events"),
    (dict(events=[0, 1]), "events"),
    (dict(timestamps=[1.0, np.nan, 3.0]), "timestamps"),
    (dict(timestamps=[1.0, np.inf, 3.0]), "timestamps"),
    (dict(timestamps=[1.0, 2.0]), "timestamps"),
    (dict(prices=[1.0, -2.0, 3.0]), "prices"),
    (dict(prices=[1.0, 2.0]), "prices"),
    (dict(item_category=[0, -1, 1]), "item_category"),
    (dict(item_price_band=[0, 1]), "item_price_band"),
    (dict(n_users=0), "n_users"),
])
def test_log_rejects_bad_input_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        _log(**overrides)


def test_log_npz_round_trip_and_bad_files(tmp_path):
    log = synthetic_log(TINY_WORLD, seed=1)
    path = tmp_path / "log.npz"
    log.save(path)
    back = InteractionLog.load(path)
    for name in ("user_ids", "item_ids", "events", "timestamps", "item_category",
                 "item_price_band", "prices"):
        np.testing.assert_array_equal(getattr(back, name), getattr(log, name))
    assert back.n_users == log.n_users
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"^file:"):
        InteractionLog.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.arange(3))
    with pytest.raises(ValueError, match="not a promobandit interaction log"):
        InteractionLog.load(other)


def test_time_split_has_no_leakage(quality_split):
    train, val, test = quality_split
    assert train.timestamps.max() < val.timestamps.min()
    assert val.timestamps.max() < test.timestamps.min()
    n = len(train) + len(val) + len(test)
    assert 0.07 * n < len(val) < 0.13 * n and 0.07 * n < len(test) < 0.13 * n


@settings(max_examples=60, deadline=None)
@given(ts=st.lists(st.integers(0, 20), min_size=1, max_size=60),
       v=st.one_of(st.just(0.0), st.floats(0.0, 0.45)),
       t=st.one_of(st.just(0.0), st.floats(0.0, 0.45)))
def test_time_split_property_with_ties(ts, v, t):
    n = len(ts)
    log = InteractionLog(user_ids=np.zeros(n, np.int64), item_ids=np.zeros(n, np.int64),
                         events=np.full(n, CLICK), timestamps=np.asarray(ts, float),
                         item_category=[0], item_price_band=[0], n_users=1)
    parts = log.split_by_time(v, t)
    assert sum(len(p) for p in parts) == n
    if v == 0:
        assert len(parts[1]) == 0
    if t == 0:
        assert len(parts[2]) == 0
    for early, late in ((parts[0], parts[1]), (parts[1], parts[2]), (parts[0], parts[2])):
        if len(early) and len(late):
            assert early.timestamps.max() < late.timestamps.min()


def test_recent_history_is_last_events_oldest_first():
    log = InteractionLog(user_ids=[1, 0, 1, 1, 1], item_ids=[5, 1, 6, 7, 8],
                         events=[VIEW, CLICK, CLICK, CART, PURCHASE],
                         timestamps=[10.0, 1.0, 30.0, 20.0, 40.0],
                         item_category=np.zeros(9, np.int64),
                         item_price_band=np.zeros(9, np.int64), n_users=3)
    items, events = log.recent_history([1, 0, 2], 3)
    np.testing.assert_array_equal(items, [[7, 6, 8], [-1, -1, 1], [-1, -1, -1]])
    np.testing.assert_array_equal(events, [[CART, CLICK, PURCHASE], [-1, -1, CLICK],
                                           [-1, -1, -1]])


def test_synthetic_world_is_seeded_and_has_planted_structure():
    a, b = synthetic_world(TINY_WORLD, seed=5), synthetic_world(TINY_WORLD, seed=5)
    np.testing.assert_array_equal(a.log.item_ids, b.log.item_ids)
    np.testing.assert_array_equal(a.log.timestamps, b.log.timestamps)
    c = synthetic_world(TINY_WORLD, seed=6)
    assert not np.array_equal(a.log.item_category, c.log.item_category)
    counts = a.log.event_counts()
    assert counts["view"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    # Users' positives land mostly in their preferred categories: much more often than
    # the catalogue's share of those categories would give.
    log = a.log
    pos = log.events >= CLICK
    top3 = np.argsort(-a.user_category_pref, axis=1)[:, :3]
    in_top = (top3[log.user_ids[pos]] == log.item_category[log.item_ids[pos]][:, None]).any(1)
    assert in_top.mean() > 0.7
    rows = a.view_weights([0, 1])
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)


# --- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(dim=0), "dim"),
    (dict(hidden=(16, 0)), r"hidden\[1\]"),
    (dict(temperature=0.0), "temperature"),
    (dict(lr=-1.0), "lr"),
    (dict(batch_size=1.5), "batch_size"),
    (dict(event_weights=(1.0, 1.0)), "event_weights"),
    (dict(event_weights=(0.0, 0.0, 0.0, 0.0)), "event_weights"),
    (dict(history_event_weights=(1.0, -1.0, 1.0, 1.0)), r"history_event_weights\[1\]"),
    (dict(user_id_dropout=1.0), "user_id_dropout"),
    (dict(normalize=1), "normalize"),
    (dict(num_threads=0), "num_threads"),
    (dict(seed=-1), "seed"),
])
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        TwoTowerConfig(**kwargs)


def test_config_dict_round_trip():
    cfg = TwoTowerConfig(hidden=(32, 16), max_eval_users=100)
    assert TwoTowerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown settings"):
        TwoTowerConfig.from_dict({**cfg.to_dict(), "bogus": 1})


# --- metrics ----------------------------------------------------------------------------------

class _FixedScores:
    """An embedding recommender with a given score row per user (d = n_items, E = I)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        return np.eye(self.scores.shape[1], dtype=np.float32)

    def users_from_log(self, history, user_ids) -> np.ndarray:
        return self.scores[np.asarray(user_ids)]


def test_metrics_match_a_hand_computed_example():
    cat = np.zeros(5, np.int64)
    history = InteractionLog(user_ids=[0, 1], item_ids=[2, 3], events=[VIEW, CLICK],
                             timestamps=[0.0, 0.0], item_category=cat, item_price_band=cat,
                             n_users=2)
    target = InteractionLog(user_ids=[0, 0, 0, 0, 1], item_ids=[0, 4, 2, 1, 3],
                            events=[CLICK, PURCHASE, CART, VIEW, CLICK],
                            timestamps=[1.0] * 5, item_category=cat, item_price_band=cat,
                            n_users=2)
    # User 0 ranks 2 > 0 > 1 > 3 > 4. Relevant: {0, 4, 2} (item 1 was only viewed).
    model = _FixedScores([[4.0, 3.0, 5.0, 2.0, 1.0], [0.0] * 5])
    got = evaluate(model, history, target, k=2, exclude_seen=False)
    # top-2 [2, 0]: 2 hits of min(2, 3) -> recall 1; NDCG 1. User 1: top [0, 1], item 3 missed.
    assert got["users"] == 2
    assert got["recall@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert got["ndcg@2"] == pytest.approx((1.0 + 0.0) / 2)
    got = evaluate(model, history, target, k=2, exclude_seen=True)
    # Item 2 is seen: ranking [0, 1], R = {0, 4}; user 1's only target (3) is seen -> skipped.
    assert got["users"] == 1
    assert got["recall@2"] == pytest.approx(0.5)
    assert got["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3.0)))


def test_dense_topk_breaks_ties_by_lowest_index():
    np.testing.assert_array_equal(dense_topk(np.array([[1.0, 3.0, 3.0, 0.0, 3.0]]), 3),
                                  [[1, 2, 4]])


def test_als_is_deterministic_and_folds_in(tiny_split):
    train, _, _ = tiny_split
    a = ImplicitALS(ALSConfig(factors=8, iterations=3)).fit(train)
    b = ImplicitALS(ALSConfig(factors=8, iterations=3)).fit(train)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    users = np.unique(train.user_ids)[:20]
    # Folding a user's own training history back in reproduces the last ALS user step.
    np.testing.assert_allclose(a.users_from_log(train, users), a.user_factors[users],
                               rtol=1e-5, atol=1e-6)


# --- the two-tower model ----------------------------------------------------------------------

def test_two_tower_beats_popularity_and_mf_is_computed(quality_split, quality_model):
    train, val, test = quality_split
    history = InteractionLog.concatenate([train, val])
    two = evaluate(quality_model, history, test, k=10)
    pop = evaluate(PopularityRecommender().fit(train), history, test, k=10)
    als = evaluate(ImplicitALS().fit(train), history, test, k=10)
    assert two["users"] == pop["users"] == als["users"] > 200
    assert two["recall@10"] >= QUALITY_MARGIN_RATIO * pop["recall@10"]
    assert two["recall@10"] >= pop["recall@10"] + QUALITY_MARGIN_ABS
    assert two["ndcg@10"] >= QUALITY_MARGIN_RATIO * pop["ndcg@10"]
    # The MF baseline learns the planted structure too (seeds 0-3: 2.0-2.7x popularity).
    assert als["recall@10"] >= QUALITY_MARGIN_RATIO * pop["recall@10"]


def test_cold_users_get_useful_vectors_from_history_alone(quality_split, quality_model):
    train, val, test = quality_split
    history = InteractionLog.concatenate([train, val])
    model = quality_model
    L = model.config.history_length

    class HistoryOnly:
        def item_embeddings(self):
            return model.item_embeddings()

        def users_from_log(self, log, user_ids):
            items, events = log.recent_history(user_ids, L)
            return model.user_vectors([i[i >= 0] for i in items],
                                      [e[e >= 0] for e in events])

    cold = evaluate(HistoryOnly(), history, test, k=10)
    pop = evaluate(PopularityRecommender().fit(train), history, test, k=10)
    assert cold["recall@10"] >= QUALITY_MARGIN_RATIO * pop["recall@10"]


def test_training_stops_early_and_restores_the_best_epoch(quality_model):
    log = quality_model.training_log
    scores = [r["validation_recall@10"] for r in log]
    assert 0 <= quality_model.best_epoch < len(log) <= quality_model.config.max_epochs
    assert scores[quality_model.best_epoch] == max(scores)
    stopped_early = len(log) < quality_model.config.max_epochs
    if stopped_early:
        assert len(log) - 1 - quality_model.best_epoch == quality_model.config.patience
    assert all(np.isfinite(r["loss"]) for r in log)


def test_exports_have_the_scorer_layout(tiny_model, tiny_split):
    train, _, _ = tiny_split
    E = tiny_model.item_embeddings()
    assert E.shape == (train.n_items, TINY_CONFIG.dim) and E.dtype == np.float32
    assert E.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)  # normalize=True
    u = tiny_model.user_vector([1, 2, 3], [VIEW, CLICK, PURCHASE], user_id=0)
    assert u.shape == (TINY_CONFIG.dim,) and u.dtype == np.float32
    cold = tiny_model.user_vector([], user_id=None)
    assert np.isfinite(cold).all()
    # History order matters only through the window; weights change the vector.
    assert not np.array_equal(u, tiny_model.user_vector([1, 2, 3], [VIEW, VIEW, VIEW],
                                                        user_id=0))
    # Untrained or unknown users fall back to the same learned row.
    never = np.setdiff1d(np.arange(train.n_users), train.user_ids[train.events >= CLICK])
    if never.size:
        np.testing.assert_array_equal(tiny_model.user_vector([4], user_id=int(never[0])),
                                      tiny_model.user_vector([4], user_id=None))


def test_user_vector_matches_users_from_log(tiny_model, tiny_split):
    train, val, _ = tiny_split
    history = InteractionLog.concatenate([train, val])
    users = np.unique(history.user_ids)[:25]
    batch = tiny_model.users_from_log(history, users)
    for row, user in zip(batch, users, strict=True):
        rows = np.flatnonzero(history.user_ids == user)
        rows = rows[np.lexsort((rows, history.timestamps[rows]))]
        one = tiny_model.user_vector(history.item_ids[rows], history.events[rows],
                                     user_id=int(user))
        np.testing.assert_allclose(one, row, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("args", "kwargs", "field"), [
    (([0, 80],), {}, "history_items"),  # 80 items
    (([0, -1],), {}, "history_items"),
    (([0.0, 1.0],), {}, "history_items"),
    (([[0, 1]],), {}, "history_items"),  # not 1-D
    (([0, 1], [CLICK]), {}, "history_events"),
    (([0, 1], [CLICK, 9]), {}, "history_events"),
    (([0, 1],), dict(user_id=300), "user_id"),  # 300 users
    (([0, 1],), dict(user_id=-2), "user_id"),
    (([0, 1],), dict(user_id=1.5), "user_id"),
])
def test_user_vector_rejects_bad_input_naming_the_field(tiny_model, args, kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        tiny_model.user_vector(*args, **kwargs)


def test_user_vectors_batch_checks(tiny_model):
    out = tiny_model.user_vectors([[1, 2], [], [3]], [[CLICK, CART], [], [PURCHASE]],
                                  user_ids=[0, None, 5])
    assert out.shape == (3, TINY_CONFIG.dim)
    with pytest.raises(ValueError, match=r"^events:"):
        tiny_model.user_vectors([[1], [2]], [[CLICK]])
    with pytest.raises(ValueError, match=r"^histories\[1\]:"):
        tiny_model.user_vectors([[1], [999]])
    with pytest.raises(ValueError, match=r"^user_ids:"):
        tiny_model.user_vectors([[1], [2]], user_ids=[0])


def test_same_seed_trains_identical_models_and_leaves_global_state(tiny_split):
    train, val, _ = tiny_split
    rng_before = torch.get_rng_state()
    det_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    a = TwoTowerModel.fit(train, val, TINY_CONFIG, progress=False)
    b = TwoTowerModel.fit(train, val, TINY_CONFIG, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.are_deterministic_algorithms_enabled() == det_before
    assert torch.get_num_threads() == threads_before
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(torch.from_numpy(a.item_embeddings()), torch.from_numpy(b.item_embeddings()))
    c = TwoTowerModel.fit(train, val, dataclasses.replace(TINY_CONFIG, seed=8), progress=False)
    assert not torch.equal(torch.from_numpy(a.item_embeddings()),
                           torch.from_numpy(c.item_embeddings()))


def test_fit_without_validation_runs_all_epochs(tiny_split):
    train, _, _ = tiny_split
    cfg = dataclasses.replace(TINY_CONFIG, max_epochs=2)
    model = TwoTowerModel.fit(train, None, cfg, progress=False)
    assert len(model.training_log) == 2 and model.best_epoch == 1


def test_progress_bar_runs_cleanly(tiny_split, capsys):
    train, val, _ = tiny_split
    TwoTowerModel.fit(train, val, dataclasses.replace(TINY_CONFIG, max_epochs=1),
                      progress=True)
    assert "two-tower" in capsys.readouterr().err


def test_fit_rejects_a_log_without_positives(tiny_split):
    train, _, _ = tiny_split
    views = train.select(train.events == VIEW)
    with pytest.raises(ValueError, match=r"^train:"):
        TwoTowerModel.fit(views, None, TINY_CONFIG, progress=False)


# --- save / load ------------------------------------------------------------------------------

def test_save_load_round_trips_exactly(tiny_model, tiny_split, tmp_path):
    train, val, _ = tiny_split
    history = InteractionLog.concatenate([train, val])
    path = tmp_path / "model.pt"
    tiny_model.save(path)
    for back in (TwoTowerModel.load(path), TwoTowerModel.from_bytes(tiny_model.to_bytes())):
        assert back.config == tiny_model.config
        np.testing.assert_array_equal(back.item_embeddings(), tiny_model.item_embeddings())
        users = np.arange(history.n_users)
        np.testing.assert_array_equal(back.users_from_log(history, users),
                                      tiny_model.users_from_log(history, users))
        np.testing.assert_array_equal(back.user_vector([3, 1], [CART, VIEW]),
                                      tiny_model.user_vector([3, 1], [CART, VIEW]))
        assert back.training_log == tiny_model.training_log
        assert back.best_epoch == tiny_model.best_epoch
    assert list(tmp_path.iterdir()) == [path]  # the atomic write left no temporary file


def test_load_rejects_other_versions_and_corrupt_files(tiny_model, tmp_path):
    data = tiny_model.to_bytes()
    with pytest.raises(ValueError, match="not a readable two-tower model file"):
        TwoTowerModel.from_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable two-tower model file"):
        TwoTowerModel.from_bytes(b"\x00garbage" * 10)
    state = tiny_model.state()
    buf = io.BytesIO()
    torch.save({**state, "format_version": tt.FORMAT_VERSION + 1}, buf)
    with pytest.raises(ValueError, match="format version 2, this build reads version 1"):
        TwoTowerModel.from_bytes(buf.getvalue())
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf)
    with pytest.raises(ValueError, match="not a promobandit two-tower model"):
        TwoTowerModel.from_bytes(buf.getvalue())
    broken = dict(state, state_dict={k: v for k, v in state["state_dict"].items()
                                     if k != "user_mlp.0.weight"})
    buf = io.BytesIO()
    torch.save(broken, buf)
    with pytest.raises(ValueError, match="inconsistent"):
        TwoTowerModel.from_bytes(buf.getvalue())


# --- the comparison and packaging -------------------------------------------------------------

def test_compare_recommenders_returns_the_three_rows(tiny_split):
    train, val, test = tiny_split
    table = compare_recommenders(train, val, test, k=5, two_tower_config=TINY_CONFIG,
                                 als_config=ALSConfig(factors=8, iterations=2))
    assert set(table) == {"two_tower", "popularity", "als"}
    for row in table.values():
        assert set(row) == {"recall@5", "ndcg@5", "users", "fit_seconds"}
        assert 0.0 <= row["recall@5"] <= 1.0 and 0.0 <= row["ndcg@5"] <= 1.0
        assert row["fit_seconds"] >= 0.0
    assert len({row["users"] for row in table.values()}) == 1


def test_torch_is_not_imported_by_the_package_or_the_numpy_modules():
    code = ("import sys, promobandit, promobandit.recommender, "
            "promobandit.recommender.data, promobandit.recommender.metrics, "
            "promobandit.recommender.baselines, promobandit.recommender.compare; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "promobandit.recommender.TwoTowerConfig; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_event_constants_follow_the_funnel():
    assert (VIEW, CLICK, CART, PURCHASE) == (0, 1, 2, 3)
