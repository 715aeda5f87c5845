"""The decision log's one schema: the engine writes it, evaluation reads it by its names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from promobandit.constraints import BudgetConfig
from promobandit.engine import Engine, EngineConfig
from promobandit.engine import decision_log as dl
from promobandit.evaluate import read_decision_log
from promobandit.evaluate.log import METADATA_COLUMNS, READ_COLUMNS
from promobandit.offers import Basket, Catalogue, NoDiscount, PercentOff
from promobandit.policies import make_policy

KEY = b"test-key-0123456789abcdef"
T0 = 1_700_000_000.0


def catalogue() -> Catalogue:
    return Catalogue(offers=(NoDiscount(id="none"), PercentOff(id="p10", fraction=0.10),
                             PercentOff(id="p20", fraction=0.20)),
                     currency="EUR", minor_unit=0.01, margin_floor=0.0)


def basket() -> Basket:
    return Basket.from_lines([(1, 0, 40.0, 10.0, 1), (2, 1, 20.0, 5.0, 2)])


def test_the_columns_are_the_row_record_fields() -> None:
    assert dl.COLUMN_NAMES == tuple(f.name for f in dataclasses.fields(dl.DecisionRow))
    assert [c.name for c in dl.COLUMNS] == list(dl.COLUMN_NAMES)
    assert all(c.doc for c in dl.COLUMNS)
    assert dl.schema().names == list(dl.COLUMN_NAMES)
    # Evaluation reads only columns of the schema, and every one it needs.
    assert set(READ_COLUMNS) <= set(dl.COLUMN_NAMES)
    assert {"offer", "propensity", "reward", *METADATA_COLUMNS} <= set(READ_COLUMNS)


def test_engine_log_round_trips_through_the_schema(tmp_path: Path) -> None:
    cat = catalogue()
    d = 3
    pol = make_policy("LinUCB", len(cat), d, seed=2, alpha=0.5)  # closed form: action_probs
    eng = Engine(cat, pol, EngineConfig(caps=None, feedback_wait_seconds=60.0,
                                        budget=BudgetConfig(amount=500.0)),
                 privacy_key=KEY, log_dir=str(tmp_path / "log"), log_flush_rows=9)
    rs = np.random.default_rng(0)
    ids = []
    for i in range(25):
        x = rs.normal(size=d)
        dec = eng.decide(f"u{i % 7}", context=x, basket=basket(), group=("a", "b")[i % 2],
                         now=T0 + i)
        ids.append(dec.id)
        if i % 3 == 0:
            eng.feedback(dec.id, f"e{i}", purchased=True, now=T0 + i + 0.5)
        elif i % 3 == 1:
            eng.feedback(dec.id, f"c{i}", clicked=True, now=T0 + i + 0.5)
    eng.close(now=T0 + 1000.0)

    # Every part holds every column with the schema's type.
    parts = sorted((tmp_path / "log").glob("part-*.parquet"))
    assert len(parts) == 3
    for part in parts:
        assert pq.read_schema(part).remove_metadata().equals(dl.schema())
    table = dl.DecisionLogWriter.read(tmp_path / "log")
    assert table.schema.equals(dl.schema()) and table.num_rows == 25
    assert sorted(table.column("decision_id").to_pylist()) == sorted(ids)

    # Evaluation reads it back through the same names, with the right types.
    log = read_decision_log(tmp_path / "log")
    assert len(log) == 25 and log.n_actions == len(cat)
    assert log.actions.dtype == np.int64 and log.propensities.dtype == np.float64
    assert log.rewards.dtype == np.float64 and log.contexts.shape == (25, d)
    assert log.action_probs.shape == (25, len(cat)) and log.eligible.dtype == bool
    assert set(log.extra) == set(METADATA_COLUMNS)
    np.testing.assert_array_equal(log.actions, table.column("offer").to_numpy())
    np.testing.assert_array_equal(log.rewards, table.column("reward").to_numpy())
    np.testing.assert_array_equal(log.contexts, np.array(table.column("context").to_pylist()))
    assert log.extra["policy_version"].dtype == np.int64
    assert set(log.extra["policy"]) == {"LinUCB"}
    assert log.extra["user"][0] == eng.pseudonym(f"u{0}")
    assert table.column("purchased").to_pylist().count(True) == 9


def test_writer_names_a_missing_column(tmp_path: Path) -> None:
    writer = dl.DecisionLogWriter(tmp_path / "log")
    with pytest.raises(ValueError, match=r"^decision_id: missing"):
        writer.append({"offer": 0})


@pytest.mark.parametrize("name", ["BetaTS", "GaussianTS", "LinTS"])
def test_estimated_propensities_logged_with_their_distribution_read_back(
        tmp_path: Path, name: str) -> None:
    # log_action_probs="always" on a Thompson policy: the propensity of each decision is
    # taken from the one estimate that is logged as its distribution, so the log is
    # consistent and evaluation accepts it (two separate estimates disagreed by ~0.01).
    cat = catalogue()
    dim = 3 if name == "LinTS" else None
    pol = make_policy(name, len(cat), dim, seed=5, propensity_draws=200)
    eng = Engine(cat, pol, EngineConfig(log_action_probs="always", reward_scale=20.0),
                 privacy_key=KEY, log_dir=tmp_path / "log")
    rs = np.random.default_rng(0)
    decisions = []
    for i in range(40):
        x = rs.normal(size=dim) if dim else None
        d = eng.decide(f"u{i}", context=x, basket=basket(), now=T0 + i)
        decisions.append(d)
        eng.feedback(d.id, f"e{i}", purchased=bool(i % 3 == 0), now=T0 + i + 1)
    batch = eng.decide_batch([f"b{i}" for i in range(10)],
                             contexts=rs.normal(size=(10, dim)) if dim else None,
                             baskets=[basket()] * 10, now=T0 + 100)
    for j, d in enumerate(batch):
        eng.feedback(d.id, f"f{j}", purchased=True, now=T0 + 101)
    eng.close(now=T0 + 200)
    log = read_decision_log(tmp_path / "log")  # raised "propensities: row 0 ..." before
    assert log.action_probs is not None
    np.testing.assert_array_equal(
        log.propensities, log.action_probs[np.arange(len(log)), log.actions])
    # ... and it is the propensity the caller was given.
    given = {d.id: d.propensity for d in decisions + batch}
    logged = dict(zip(log.extra["decision_id"], log.propensities, strict=True))
    assert len(logged) >= 20 and all(given[k] == p for k, p in logged.items())
