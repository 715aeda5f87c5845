"""Issue 11, item 7: a decide retried with its request_id within the feedback wait is the
same decision, whether that decision is still pending or already finalised (bought or
expired); another body under the id is a 409; after the wait the id is free again. The
keys are durable state: they survive a snapshot, a replay of the log and a kill -9."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from promobandit.engine import Engine, EngineConfig
from promobandit.offers import Basket, default_catalogue
from promobandit.policies import make_policy
from promobandit.service.runtime import DecisionService
from tests.test_service_support import (
    ServerProcess,
    ServerThread,
    basket,
    config_dict,
    make_config,
    to_toml,
)

KEY = b"idempotency-test-key-0123456789"
T0 = 1_700_000_000.0
WAIT = 600.0


def _engine(**config: object) -> Engine:
    cat = default_catalogue()
    policy = make_policy("GaussianTS", len(cat), seed=5, propensity_draws=20)
    return Engine(cat, policy, EngineConfig(feedback_wait_seconds=WAIT, caps=None, **config),
                  privacy_key=KEY)


def _basket() -> Basket:
    return Basket.from_lines([(1, 0, 40.0, 20.0, 1), (2, 1, 20.0, 10.0, 2)])


# --- the engine ---------------------------------------------------------------------------
def test_a_key_outlives_its_pending_decision_for_the_feedback_wait() -> None:
    eng = _engine()
    d = eng.decide("u1", basket=_basket(), now=T0)
    eng.tag_request(d.id, "rq-1\0body-digest")
    assert eng.decision_for_request("rq-1", now=T0 + 1) == (d, "rq-1\0body-digest")
    res = eng.feedback(d.id, "buy", purchased=True, now=T0 + 2)
    assert res.status == "finalised" and eng.n_pending == 0
    # finalised: still the same decision, field for field, until the wait ends
    found = eng.decision_for_request("rq-1", now=T0 + WAIT - 1e-3)
    assert found is not None and found[0] == d and found[1] == "rq-1\0body-digest"
    assert eng.decision_for_request("rq-1", now=T0 + WAIT) is None  # free again
    assert eng.decision_for_request("other", now=T0 + 1) is None
    # the next change after the wait prunes it from the state
    eng.decide("u2", basket=_basket(), now=T0 + WAIT + 1)
    assert eng.n_request_keys == 0


def test_a_key_of_an_expired_decision_lives_until_the_wait_ends() -> None:
    eng = _engine()
    d = eng.decide("u1", basket=_basket(), now=T0)
    eng.tag_request(d.id, "rq")
    eng.expire(T0 + WAIT - 1.0)
    assert eng.decision_for_request("rq", now=T0 + WAIT - 0.5)[0] == d  # type: ignore[index]
    eng.expire(T0 + WAIT)  # finalised by the wait, and the key goes with it
    assert eng.n_pending == 0 and eng.n_request_keys == 0
    assert eng.decision_for_request("rq", now=T0 + WAIT - 0.5) is None


def test_keys_are_state_round_tripped_byte_for_byte() -> None:
    eng = _engine()
    ids = []
    for i in range(5):
        d = eng.decide(f"u{i}", basket=_basket(), now=T0 + i)
        eng.tag_request(d.id, f"rq-{i}\0digest-{i}")
        ids.append(d)
    eng.feedback(ids[1].id, "buy", purchased=True, now=T0 + 10)
    data = eng.to_bytes()
    other = _engine()
    other.load_bytes(data)
    assert other.to_bytes() == data
    for i, d in enumerate(ids):
        assert other.decision_for_request(f"rq-{i}", now=T0 + 20) == (d, f"rq-{i}\0digest-{i}")
    # state_dict too, and NaN propensities (propensities switched off) survive JSON
    cat = default_catalogue()
    nan_eng = Engine(cat, make_policy("GaussianTS", len(cat), seed=1, propensity_draws=0),
                     EngineConfig(caps=None), privacy_key=KEY)
    d = nan_eng.decide("u", basket=_basket(), now=T0)
    nan_eng.tag_request(d.id, "k")
    assert np.isnan(d.propensity)
    copy = Engine(cat, make_policy("GaussianTS", len(cat), seed=1, propensity_draws=0),
                  EngineConfig(caps=None), privacy_key=KEY)
    copy.load_state_dict(nan_eng.state_dict())
    assert copy.to_bytes() == nan_eng.to_bytes()
    assert np.isnan(copy.decision_for_request("k", now=T0)[0].propensity)  # type: ignore[index]


def test_the_key_table_is_bounded_oldest_forgotten_first() -> None:
    eng = _engine(max_request_keys=3)
    ds = []
    for i in range(5):
        ds.append(eng.decide(f"u{i}", basket=_basket(), now=T0 + i))
        eng.tag_request(ds[-1].id, f"rq-{i}")
    assert eng.n_request_keys == 3
    assert eng.stats["request_keys_evicted"] == 2
    assert eng.decision_for_request("rq-0", now=T0 + 5) is None  # forgotten early
    assert eng.decision_for_request("rq-1", now=T0 + 5) is None
    assert eng.decision_for_request("rq-4", now=T0 + 5)[0] == ds[4]  # type: ignore[index]
    with pytest.raises(ValueError, match="max_request_keys"):
        EngineConfig(max_request_keys=0)


# --- the service, in process (no HTTP) ------------------------------------------------------
@pytest.fixture()
def files_service(tmp_path: Path):  # type: ignore[no-untyped-def]
    svc = DecisionService(make_config(tmp_path, engine={"feedback_wait_seconds": 3600.0}))
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        yield svc, c, tmp_path


def test_a_retry_after_a_purchase_is_the_same_decision_and_changes_nothing(
        files_service) -> None:  # type: ignore[no-untyped-def]
    svc, c, _ = files_service
    body = {"user": "retry-user", "basket": basket(), "request_id": "order-7"}
    a = c.post("/v1/decide", json=body).json()
    r = c.post("/v1/feedback", json={"decision_id": a["decision_id"], "event_id": "buy",
                                     "purchased": True})
    assert r.json()["status"] == "finalised"
    before, seq = svc.engine.to_bytes(), svc.storage.last_seq
    for _ in range(3):
        again = c.post("/v1/decide", json=body)
        assert again.status_code == 200 and again.json() == a  # same id, offer, price, ...
    # nothing logged, no second decision, cap slot or reservation: the engine is unchanged
    assert svc.engine.to_bytes() == before and svc.storage.last_seq == seq
    # another body under the id: 409 naming it, nothing changed either
    for other in ({**body, "group": "g2"}, {**body, "user": "someone-else"},
                  {**body, "basket": basket(90.0)}):
        r = c.post("/v1/decide", json=other)
        assert r.status_code == 409, r.text
        assert r.json()["error"].startswith("request_id:")
    assert svc.engine.to_bytes() == before and svc.storage.last_seq == seq
    metrics = c.get("/metrics").text
    assert 'promobandit_engine_events_total{kind="decisions"} 1.0' in metrics
    assert 'promobandit_engine_events_total{kind="request_keys_evicted"} 0.0' in metrics


def test_a_key_survives_a_snapshot_and_a_replay_byte_for_byte(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, engine={"feedback_wait_seconds": 3600.0})
    bodies = [{"user": f"u{i}", "basket": basket(), "request_id": f"rq-{i}"} for i in range(4)]
    svc = DecisionService(cfg)
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        first = [c.post("/v1/decide", json=b).json() for b in bodies[:2]]
        c.post("/v1/feedback", json={"decision_id": first[0]["decision_id"],
                                     "event_id": "buy", "purchased": True})
        svc.snapshot()  # the keys of rq-0 (finalised) and rq-1 (pending) are in it
        later = [c.post("/v1/decide", json=b).json() for b in bodies[2:]]
        c.post("/v1/feedback", json={"decision_id": later[0]["decision_id"],
                                     "event_id": "buy", "purchased": True})
        live = svc.engine.to_bytes()
    # the restart loads the snapshot and replays the log after it
    svc2 = DecisionService(cfg)
    with ServerThread(svc2, snapshot_on_stop=False) as srv, srv.client() as c:
        assert svc2.recovery["snapshot"] is not None and svc2.recovery["replayed_records"] > 0
        assert svc2.engine.to_bytes() == live
        seq = svc2.storage.last_seq
        assert [c.post("/v1/decide", json=b).json() for b in bodies] == first + later
        assert c.post("/v1/decide", json={**bodies[0], "group": "x"}).status_code == 409
        assert svc2.storage.last_seq == seq and svc2.engine.to_bytes() == live


def test_the_id_is_free_again_after_the_feedback_wait(tmp_path: Path) -> None:
    wait = 3.0  # seconds of the service clock (the retries before it take milliseconds)
    svc = DecisionService(make_config(None, engine={"feedback_wait_seconds": wait}))
    body = {"user": "u", "basket": basket(), "request_id": "once"}
    with ServerThread(svc) as srv, srv.client() as c:
        a = c.post("/v1/decide", json=body).json()
        c.post("/v1/feedback", json={"decision_id": a["decision_id"], "event_id": "b",
                                     "purchased": True})
        assert c.post("/v1/decide", json=body).json() == a
        time.sleep(wait + 0.2)
        b = c.post("/v1/decide", json=body)
        assert b.status_code == 200 and b.json()["decision_id"] != a["decision_id"]
        # the new decision holds the id now, for another wait; another body is refused
        assert c.post("/v1/decide", json=body).json() == b.json()
        assert c.post("/v1/decide", json={**body, "group": "x"}).status_code == 409
        assert svc.engine.stats["decisions"] == 2


def test_a_key_survives_kill_9(tmp_path: Path) -> None:
    cfg = tmp_path / "service.toml"
    cfg.write_text(to_toml(config_dict(tmp_path / "state",
                                       engine={"feedback_wait_seconds": 3600.0})))
    body = {"user": "crash-user", "basket": basket(), "request_id": "pay-1"}
    first = ServerProcess(cfg).start()
    try:
        with first.client() as c:
            a = c.post("/v1/decide", json=body).json()
            assert c.post("/v1/feedback", json={"decision_id": a["decision_id"],
                                                "event_id": "buy",
                                                "purchased": True}).status_code == 200
    finally:
        first.kill()  # SIGKILL: no final snapshot, the log is all there is
    second = ServerProcess(cfg).start()
    try:
        with second.client() as c:
            assert c.post("/v1/decide", json=body).json() == a
            r = c.post("/v1/decide", json={**body, "group": "other"})
            assert r.status_code == 409 and r.json()["error"].startswith("request_id:")
            assert c.get("/v1/policy").json()["engine"]["decisions"] == 1
    finally:
        second.stop()


def test_a_failed_decide_leaves_its_id_unused(tmp_path: Path) -> None:
    # A decide the engine rejects (every offer excluded) holds no key: the id stays free.
    svc = DecisionService(make_config(None))
    with ServerThread(svc) as srv, srv.client() as c:
        ids = [o["id"] for o in c.get("/v1/offers").json()["offers"]]
        bad = {"user": "u", "basket": basket(), "request_id": "r", "exclude_offers": ids}
        assert c.post("/v1/decide", json=bad).status_code == 422
        good = {"user": "u", "basket": basket(), "request_id": "r"}
        assert c.post("/v1/decide", json=good).status_code == 200
        assert svc.engine.n_request_keys == 1
