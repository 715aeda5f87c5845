"""Feature parity of the service: behaviour events, recommendations (k, candidates), offer
exclusions and deferred activation through HTTP.

- The same requests through HTTP and through an in-process Engine built from the public
  API with the same seed (and the same times) give the same decisions, items and item
  probabilities, and the same engine state bytes (feature store and recommender included).
- kill -9 in the middle of a stream of such requests, restart: every acknowledged decision
  and event is there, and the recovered state (snapshot + log) is byte for byte the state a
  replay of the whole log from nothing gives.
- Deferred activation: a decision is learnt from only after POST /v1/activate; without it
  the decision is dropped at the wait, its budget reservation and cap slot released.
- Bad input (unknown candidate, k out of range, malformed or late events, unknown
  exclusions) is a 422 naming the field, and changes neither the engine bytes nor the log.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promobandit import Engine, EngineConfig, FeatureStore
from promobandit.engine import ExplorationConfig, ItemRecommender
from promobandit.features import FeatureConfig
from promobandit.offers import Basket, default_catalogue
from promobandit.policies import make_policy
from promobandit.service.config import from_dict
from promobandit.service.runtime import DecisionService, Pseudonym
from tests.test_service_support import (
    PRIVACY_KEY,
    ServerProcess,
    ServerThread,
    basket,
    config_dict,
    to_toml,
)

N_ITEMS, DIM, N_CATEGORIES, SEED = 40, 6, 4, 11
FEATURES = {"n_categories": N_CATEGORIES}
EXPLORATION = {"v": 0.2, "refresh_every": 3}
T0 = 1_700_000_000.0  # in the past: the stepped clock runs behind the wall clock


def item_table(seed: int = 5) -> dict[str, np.ndarray]:
    rs = np.random.default_rng(seed)
    prices = rs.uniform(5.0, 60.0, N_ITEMS).round(2)
    return {"embeddings": rs.normal(size=(N_ITEMS, DIM)).astype(np.float32),
            "categories": rs.integers(0, N_CATEGORIES, N_ITEMS),
            "unit_prices": prices, "unit_costs": (prices * 0.55).round(2)}


def parity_config(tmp_path: Path, state: Path | None, **sections: Any) -> dict[str, Any]:
    path = tmp_path / "items.npz"
    if not path.exists():
        np.savez(path, **item_table())
    dim = FeatureConfig(**FEATURES).dim
    base = {"policy": {"name": "LinTS", "n_features": dim},
            "engine": {"seed": SEED, "budget": {"amount": 400.0}},
            "features": dict(FEATURES),
            "recommender": {"items": str(path), "k": 3, "exploration": dict(EXPLORATION)}}
    cfg = config_dict(state, **base)
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return cfg


class SameIdsEngine(Engine):
    """An Engine that gives its next decision the id in ``next_ids`` when there is one:
    the id the service answered, so that a service whose decision ids are not the
    engine's counter (e.g. random ids drawn at the edge) can still be compared decision
    by decision and state by state."""

    next_ids: list[str]

    def _next_id(self) -> str:
        own = super()._next_id()
        ids = getattr(self, "next_ids", None)
        return ids.pop(0) if ids else own


def in_process_engine() -> Engine:
    """The engine the parity configuration describes, built from the public API."""
    cat = default_catalogue()
    fc = FeatureConfig(**FEATURES)
    t = item_table()
    rec = ItemRecommender(t["embeddings"], t["categories"], t["unit_prices"], t["unit_costs"],
                          k=3, exploration=ExplorationConfig(**EXPLORATION), seed=SEED)
    from promobandit.constraints import BudgetConfig

    return SameIdsEngine(cat, make_policy("LinTS", len(cat), fc.dim, seed=SEED),
                  EngineConfig(seed=SEED, budget=BudgetConfig(amount=400.0)),
                  privacy_key=PRIVACY_KEY.encode(), features=FeatureStore(fc), recommender=rec)


class SteppedClockService(DecisionService):
    """The service with a clock that moves one second per logged record from T0, so that
    an in-process engine can be given the same times."""

    tick = 0

    def _clock(self) -> float:
        self.tick += 1
        self._last_now = T0 + self.tick
        return self._last_now


def event(kind: str, category: int, ts: float, price: float = 20.0,
          discount: float = 0.0) -> dict[str, Any]:
    return {"event": kind, "category": category, "price": price, "discount": discount,
            "timestamp": ts}


def script(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """A stream of (route, body) for the parity test; times are T0 + the record number,
    the k-th record (from 1) being applied at T0 + k."""
    rs = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    offers = default_catalogue().ids
    for i in range(n):
        now = T0 + len(out) + 1
        user = f"user-{rs.randrange(6)}"
        r = rs.random()
        if r < 0.15:
            out.append(("/v1/events", {"user": user, "events": [
                event(rs.choice(["view", "click", "cart"]), rs.randrange(N_CATEGORIES),
                      now - rs.uniform(0, 100)) for _ in range(rs.randint(1, 3))]}))
            continue
        body: dict[str, Any] = {"user": user}
        if rs.random() < 0.5:
            body["events"] = [event("view", rs.randrange(N_CATEGORIES), now - 1.0)]
        if rs.random() < 0.4:
            body["candidates"] = sorted(rs.sample(range(N_ITEMS), 8))
        if rs.random() < 0.4:
            body["k"] = rs.randint(1, 5)
        if rs.random() < 0.3:
            body["exclude_offers"] = rs.sample(list(offers[1:]), 2)
        if rs.random() < 0.3:
            body["basket"] = basket(40.0 + i)
        if rs.random() < 0.2:
            body["defer_activation"] = True
        out.append(("/v1/decide", body))
    return out


def item_rows(ids: list[int], seed: int) -> list[dict[str, Any]]:
    rs = np.random.default_rng(seed)
    return [{"item_id": i, "embedding": rs.normal(size=DIM).round(6).tolist(),
             "category": int(rs.integers(N_CATEGORIES)), "unit_price": 30.0,
             "unit_cost": 12.5} for i in ids]


def apply_in_process(engine: Engine, route: str, body: dict[str, Any], now: float,
                     ids: dict[str, str]) -> Any:
    """The in-process equivalent of one request (decision ids mapped through `ids`)."""
    if route == "/v1/items":
        rows = body["items"]
        return engine.update_items([r["item_id"] for r in rows], [r["embedding"] for r in rows],
                                   [r["category"] for r in rows],
                                   [r["unit_price"] for r in rows],
                                   [r["unit_cost"] for r in rows])
    if route == "/v1/events":
        return engine.record_events(body["user"], body["events"], now=now)
    if route == "/v1/activate":
        return engine.activate(ids[body["decision_id"]], now=now).status
    if route == "/v1/feedback":
        kw = {k: v for k, v in body.items() if k not in ("decision_id", "event_id")}
        return engine.feedback(ids[body["decision_id"]], body["event_id"], now=now, **kw).status
    b = body.get("basket")
    bk = None
    if b is not None:
        lines = b["lines"]
        bk = Basket([ln["item_id"] for ln in lines], [ln["category"] for ln in lines],
                    [ln["unit_price"] for ln in lines], [ln["unit_cost"] for ln in lines],
                    [ln["quantity"] for ln in lines])
    return engine.decide(body["user"], events=body.get("events"), k=body.get("k"),
                         candidates=body.get("candidates"), basket=bk,
                         exclude_offers=body.get("exclude_offers"),
                         defer_activation=body.get("defer_activation", False), now=now)


def test_http_gives_the_decisions_of_the_in_process_engine(tmp_path: Path) -> None:
    svc = SteppedClockService(from_dict(parity_config(tmp_path, None), environ={}))
    engine = in_process_engine()
    ids: dict[str, str] = {}
    # the item table changes first (one row replaced, two items added), then the stream
    steps = [("/v1/items", {"items": item_rows([5, N_ITEMS, N_ITEMS + 1], seed=1)}),
             *script(60, seed=3)]
    rs = random.Random(4)
    n_records = 0
    compared = 0
    with ServerThread(svc) as srv, srv.client() as c:
        i = 0
        while i < len(steps):
            route, body = steps[i]
            i += 1
            r = c.post(route, json=body)
            assert r.status_code == 200, (route, body, r.text)
            n_records += 1
            got = r.json()
            if route == "/v1/decide":
                engine.next_ids = [got["decision_id"]]  # type: ignore[attr-defined]
            local = apply_in_process(engine, route, body, T0 + n_records, ids)
            if route != "/v1/decide":
                if route == "/v1/events":
                    assert got == {"status": "recorded", "events": local}
                elif route == "/v1/items":
                    assert got == {"status": "updated", "items": local}
                    assert local == N_ITEMS + 2
                else:
                    assert got["status"] == local
                continue
            compared += 1
            assert got["decision_id"] == local.id
            assert got["offer_id"] == local.offer_id
            assert got["offer"] not in [default_catalogue().ids.index(o)
                                        for o in body.get("exclude_offers", [])]
            assert got["propensity"] == (None if np.isnan(local.propensity)
                                         else local.propensity)
            assert got["price"] == local.price and got["discount_cost"] == local.discount_cost
            assert got["items"] == local.items.tolist()
            assert got["item_probs"] == local.item_probs.tolist()
            assert len(got["items"]) == body.get("k", 3)
            if "candidates" in body:
                assert set(got["items"]) <= set(body["candidates"])
            ids[got["decision_id"]] = local.id
            # follow-ups, applied the same way on both sides
            follow: list[tuple[str, dict[str, Any]]] = []
            if body.get("defer_activation") and rs.random() < 0.6:
                follow.append(("/v1/activate", {"decision_id": got["decision_id"]}))
            if (not body.get("defer_activation") or follow) and rs.random() < 0.7:
                follow.append(("/v1/feedback", {
                    "decision_id": got["decision_id"], "event_id": f"e{i}",
                    "clicked": True, "item": got["items"][rs.randrange(len(got["items"]))],
                    "purchased": rs.random() < 0.5}))
            steps[i:i] = follow
        assert compared > 40
        # what both learnt and spent is the same bytes: the policy, the feature store, the
        # recommender, the purchase rates, the budget and the caps (the service may keep
        # bookkeeping of its own beside them, e.g. for idempotency)
        assert learnt_state(svc.engine) == learnt_state(engine)
        assert len(svc.engine.features) == 6 and svc.engine.recommender.explorer.draws == compared
        # and the recommender learnt from the clicks on both sides (history is non-empty)
        assert svc.engine.recommender.to_columns()[1]["history"].size > 0


LEARNT = ("policy", "decided", "bought", "budget", "caps", "fairness", "features",
          "recommender")
# Columns of the pending decisions: what was decided, on what, waiting for what.
PENDING_LEARNT = ("offer", "propensity", "created", "max_cost", "expected_cost", "eligible",
                  "context", "items", "item_probs", "items_len", "clicked", "clicked_item",
                  "activated")


def learnt_state(engine: Engine) -> bytes:
    """The parts of the engine's state that learning and spending change, as bytes."""
    header, arrays = engine.capture_state()
    kept = {k: header[k] for k in LEARNT}
    kept["pending_ids"] = header["pending"]["id"]
    pending = {f"p_{k}" for k in PENDING_LEARNT}
    return Engine.encode_state((kept, {k: v for k, v in arrays.items()
                                       if k.startswith(("policy_", "f_", "r_")) or k in pending}))


def engine_parts(engine: Engine) -> bytes:
    """The feature store's and the recommender's state as bytes."""
    header, arrays = engine.capture_state()
    parts = {k: header[k] for k in ("features", "recommender")}
    mine = {k: v for k, v in arrays.items() if k.startswith(("f_", "r_"))}
    return Engine.encode_state((parts, mine))


def recovered(cfg: dict[str, Any]) -> DecisionService:
    svc = DecisionService(from_dict(cfg, environ={}))
    svc.recover()
    return svc


def test_kill_9_mid_stream_then_replay_is_byte_for_byte(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # Snapshots every few records (so the kill can land in one) and every segment kept,
    # so the whole log can be replayed from nothing afterwards.
    cfg = parity_config(tmp_path, state, storage={"snapshot_every_events": 15,
                                                  "snapshots_kept": 1000})
    (tmp_path / "service.toml").write_text(to_toml(cfg))
    srv = ServerProcess(tmp_path / "service.toml").start()
    with srv.client() as c:  # the item table changes through the log too
        r = c.post("/v1/items", json={"items": item_rows([2, N_ITEMS], seed=9)})
        assert r.json() == {"status": "updated", "items": N_ITEMS + 1}
    acked_decisions: list[str] = []
    acked_events: dict[str, int] = {}
    in_flight: dict[str, int] = {}
    stop = threading.Event()
    errors: list[Any] = []

    def stream() -> None:
        rs = random.Random(7)
        with srv.client() as c:
            i = 0
            while not stop.is_set():
                i += 1
                user = f"user-{rs.randrange(8)}"
                now = time.time()
                evs = [event("view", rs.randrange(N_CATEGORIES), now - 5.0)]
                body = {"user": user, "events": evs, "k": rs.randint(1, 4)}
                if rs.random() < 0.5:
                    body["candidates"] = sorted(rs.sample(range(N_ITEMS), 6))
                in_flight[user] = in_flight.get(user, 0) + 1
                try:
                    r = c.post("/v1/decide", json=body)
                except Exception:
                    return
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                in_flight[user] -= 1
                acked_events[user] = acked_events.get(user, 0) + 1
                d = r.json()
                acked_decisions.append(d["decision_id"])
                try:
                    r = c.post("/v1/feedback", json={"decision_id": d["decision_id"],
                                                     "event_id": f"f{i}", "clicked": True,
                                                     "item": d["items"][0],
                                                     "purchased": rs.random() < 0.5})
                except Exception:
                    return

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    # kill once enough is acknowledged (however loaded the machine), at a random moment
    deadline = time.monotonic() + 120.0
    while len(acked_decisions) < 30 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    time.sleep(random.Random(8).uniform(0.0, 0.3))
    srv.kill()
    stop.set()
    t.join(timeout=30)
    assert not errors, errors[:3]
    assert len(acked_decisions) >= 30
    srv = ServerProcess(tmp_path / "service.toml").start()
    with srv.client() as c:
        for did in acked_decisions:  # every acknowledged decision is known
            assert c.post("/v1/activate", json={"decision_id": did}).json()["status"] in (
                "duplicate", "late"), did
    srv.kill()  # again without a final snapshot: recovery is snapshot + log
    live = recovered(cfg)
    assert live.engine.recommender.items.shape == (N_ITEMS + 1, DIM)
    np.testing.assert_array_equal(live.engine.recommender.items[N_ITEMS],
                                  np.float32(item_rows([2, N_ITEMS], seed=9)[1]["embedding"]))
    store = live.engine.features
    for user, n in acked_events.items():
        uh = live.engine.pseudonym(user)
        assert n <= store.n_events(uh) <= n + in_flight.get(user, 0), user
    # replaying the whole log from nothing gives the same bytes
    scratch = tmp_path / "replayed"
    shutil.copytree(state, scratch)
    for snap in scratch.glob("snapshot-*.snap"):
        snap.unlink()
    cfg2 = {**cfg, "storage": {**cfg["storage"], "dir": str(scratch)}}
    again = recovered(cfg2)
    assert again.recovery["snapshot"] is None and live.recovery["snapshot"] is not None
    assert engine_parts(live.engine) == engine_parts(again.engine)
    assert live.engine.to_bytes() == again.engine.to_bytes()
    live.stop(snapshot=False)
    again.stop(snapshot=False)


def test_deferred_activation(tmp_path: Path) -> None:
    cfg = from_dict(config_dict(None, engine={"budget": {"amount": 100.0},
                                              "feedback_wait_seconds": 0.5,
                                              "caps": {"max_offers_per_day": 1}}), environ={})
    svc = DecisionService(cfg)
    with ServerThread(svc) as srv, srv.client() as c:
        eng = svc.engine
        version = eng.policy.version
        r = c.post("/v1/decide", json={"user": "u", "basket": basket(),
                                       "defer_activation": True})
        assert r.status_code == 200
        d = r.json()
        reserved = eng.budget.reserved
        uh = eng.pseudonym("u")
        counted = eng.caps.state_dict()["users"][0][2]  # discounted offers today
        assert (reserved > 0) == (counted == 1) == (d["discount_cost"] > 0)
        # feedback before activation: refused, nothing changed
        before = eng.to_bytes()
        r = c.post("/v1/feedback", json={"decision_id": d["decision_id"], "event_id": "x",
                                         "purchased": True})
        assert r.status_code == 422 and r.json()["error"].startswith("decision_id:")
        assert eng.to_bytes() == before
        # the wait passes without activation: dropped, never learnt from, released
        time.sleep(0.6)
        svc.expire()
        assert eng.n_pending == 0 and eng.policy.version == version
        assert eng.budget.reserved == 0.0 and eng.budget.spent == 0.0
        assert eng.caps.state_dict()["users"][0][2] == 0
        assert eng.stats["not_activated"] == 1 and eng.stats["finalised"] == 0
        assert c.post("/v1/activate", json={"decision_id": d["decision_id"]}).json()[
            "status"] == "late"
        # activated in time: learnt from like any decision
        d2 = c.post("/v1/decide", json={"user": "u", "basket": basket(),
                                        "defer_activation": True}).json()
        a = c.post("/v1/activate", json={"decision_id": d2["decision_id"]}).json()
        assert a == {"status": "activated", "decision_id": d2["decision_id"]}
        assert c.post("/v1/activate", json={"decision_id": d2["decision_id"]}).json()[
            "status"] == "duplicate"
        f = c.post("/v1/feedback", json={"decision_id": d2["decision_id"], "event_id": "y",
                                         "purchased": True}).json()
        assert f["status"] == "finalised" and eng.policy.version == version + 1
        assert c.post("/v1/activate", json={"decision_id": "nope"}).json()["status"] == \
            "unknown"
        # a decision without deferral needs no activation (activating it changes nothing)
        d3 = c.post("/v1/decide", json={"user": "w", "basket": basket()}).json()
        assert c.post("/v1/activate", json={"decision_id": d3["decision_id"]}).json()[
            "status"] == "duplicate"
        # batch rows defer too
        b = c.post("/v1/decide/batch", json={"requests": [
            {"user": "x", "basket": basket(), "defer_activation": True},
            {"user": "y", "basket": basket()}]}).json()["decisions"]
        assert not eng._pending.get(b[0]["decision_id"]).activated
        assert eng._pending.get(b[1]["decision_id"]).activated
    assert uh


def bad_requests(now: float) -> list[tuple[str, dict[str, Any], str]]:
    ok = {"user": "victim"}
    return [
        ("/v1/decide", {**ok, "candidates": [3, N_ITEMS]}, "candidates[1]"),
        ("/v1/decide", {**ok, "candidates": [-1]}, "candidates"),
        ("/v1/decide", {**ok, "candidates": []}, "candidates"),
        ("/v1/decide", {**ok, "k": N_ITEMS + 1}, "k"),
        ("/v1/decide", {**ok, "k": 0}, "k"),
        ("/v1/decide", {**ok, "k": 4, "candidates": [1, 1, 2]}, "k"),
        ("/v1/decide", {**ok, "events": [event("zap", 1, now)]}, "events[0].event"),
        ("/v1/decide", {**ok, "events": [event("view", N_CATEGORIES, now)]},
         "events[0].category"),
        ("/v1/decide", {**ok, "events": [event("view", 1, now), event("view", 1, now + 1e7)]},
         "events[1].timestamp"),
        ("/v1/decide", {**ok, "events": [event("view", 1, now - 1e6)]}, "events[0].timestamp"),
        ("/v1/decide", {**ok, "events": [{"event": "view", "category": 1}]},
         "events[0].price"),
        ("/v1/decide", {**ok, "events": [{**event("view", 1, now), "user": "other"}]},
         "events[0].user"),
        ("/v1/decide", {**ok, "events": [event("view", 1, now, discount=1.5)]},
         "events[0].discount"),
        ("/v1/decide", {**ok, "exclude_offers": ["no-such-offer"]}, "exclude_offers[0]"),
        ("/v1/decide", {**ok, "exclude_offers": list(default_catalogue().ids)},
         "exclude_offers"),
        ("/v1/decide", {**ok, "defer_activation": 1}, "defer_activation"),
        ("/v1/decide", {**ok, "basket": {"lines": [{"item_id": 1, "category": 0,
                                                     "unit_price": 10.0, "unit_cost": 9.99}]},
                        "exclude_offers": ["none", "spend100_save15", "coupon10_min50"]},
         "exclude_offers"),
        ("/v1/events", {"user": "victim", "events": []}, "events"),
        ("/v1/events", {"user": "victim", "events": [event("view", 1, now),
                                                     event("view", 99, now)]},
         "events[1].category"),
        ("/v1/decide/batch", {"requests": [{**ok, "basket": basket(), "k": 2}]},
         "requests[0].k"),
        ("/v1/decide/batch", {"requests": [{**ok, "basket": basket(),
                                            "exclude_offers": ["x"]}]},
         "requests[0].exclude_offers[0]"),
        ("/v1/activate", {"decision_id": ""}, "decision_id"),
        ("/v1/decide/batch", {"requests": [
            {**ok, "basket": basket()},
            {**ok, "basket": basket(), "context": [0.0] * FeatureConfig(**FEATURES).dim}]},
         "requests[0].context"),
        ("/v1/items", {"items": item_rows([N_ITEMS + 1], 0)}, "item_ids"),
        ("/v1/items", {"items": item_rows([1, 1], 0)}, "item_ids"),
        ("/v1/items", {"items": [{**item_rows([1], 0)[0], "embedding": [1.0, 2.0]}]},
         "embeddings"),
        ("/v1/items", {"items": [{**item_rows([1], 0)[0], "unit_cost": 31.0}]},
         "items[0].unit_cost"),
        ("/v1/items", {"items": [{**item_rows([1], 0)[0], "bias": 0.5}]}, "item_bias"),
        ("/v1/items", {"items": [{**item_rows([1], 0)[0], "embedding": [1e39] * DIM}]},
         "embeddings"),
    ]


def test_bad_input_is_422_naming_the_field_and_changes_nothing(tmp_path: Path) -> None:
    cfg = from_dict(parity_config(tmp_path, tmp_path / "state"), environ={})
    svc = DecisionService(cfg)
    with ServerThread(svc) as srv, srv.client() as c:
        now = time.time()
        # some state first: the victim has events and a click history
        d = c.post("/v1/decide", json={"user": "victim", "events": [event("view", 1, now)]})
        assert d.status_code == 200, d.text
        c.post("/v1/feedback", json={"decision_id": d.json()["decision_id"], "event_id": "e",
                                     "clicked": True, "item": d.json()["items"][0]})
        before, seq = svc.engine.to_bytes(), svc.storage.last_seq
        for route, body, field in bad_requests(time.time()):
            r = c.post(route, json=body)
            assert r.status_code == 422, (route, body, r.text)
            assert r.json()["error"].startswith(field), (field, r.json()["error"])
            assert svc.engine.to_bytes() == before, (route, body)
            assert svc.storage.last_seq == seq, (route, body)
        # and the victim is still served
        r = c.post("/v1/decide", json={"user": "victim", "k": 2})
        assert r.status_code == 200 and len(r.json()["items"]) == 2


def test_engine_rolls_back_events_when_a_decision_fails() -> None:
    engine = in_process_engine()
    engine.decide("u", events=[event("view", 1, T0)], now=T0)
    before = engine.to_bytes()
    with pytest.raises(ValueError, match="exclude_offers"):
        engine.decide("u", events=[event("cart", 2, T0 + 1)],
                      exclude_offers=list(engine.catalogue.ids), now=T0 + 1)
    assert engine.to_bytes() == before
    # a failure after the events were added and the explorer drew (no offer left once
    # the margin floor and the exclusions are applied) also leaves both as they were
    thin = Basket([1], [0], [10.0], [9.99], [1])  # the margin floor rules out the percents
    eligible = engine.catalogue.quote(thin, T0).eligible
    excluded = [o for o, ok in zip(engine.catalogue.ids, eligible, strict=True) if ok]
    assert 0 < len(excluded) < len(engine.catalogue)
    with pytest.raises(ValueError, match="exclude_offers: no eligible offer"):
        engine.decide("u", events=[event("cart", 2, T0 + 1)], exclude_offers=excluded,
                      basket=thin, now=T0 + 1)
    assert engine.to_bytes() == before


def test_a_state_without_the_new_parts_still_loads() -> None:
    engine = in_process_engine()
    engine.decide("u", events=[event("view", 1, T0)], now=T0)
    header, arrays = engine.capture_state()
    header.pop("features")
    header.pop("recommender")
    old = {k: v for k, v in arrays.items() if not k.startswith(("f_", "r_"))}
    fresh = in_process_engine()
    fresh.load_bytes(Engine.encode_state((header, old)))
    assert len(fresh.features) == 0 and fresh.n_pending == 1


def test_pseudonyms_only_in_the_feature_store(tmp_path: Path) -> None:
    svc = DecisionService(from_dict(parity_config(tmp_path, None), environ={}))
    with ServerThread(svc) as srv, srv.client() as c:
        r = c.post("/v1/events", json={"user": "alice@example.com",
                                       "events": [event("view", 1, time.time())]})
        assert r.json() == {"status": "recorded", "events": 1}
    meta, _ = svc.engine.features.to_columns()
    assert meta["users"] == [svc.engine.pseudonym("alice@example.com")]
    assert isinstance(Pseudonym(meta["users"][0]), str)


def test_state_dict_round_trip_includes_the_store_and_the_recommender() -> None:
    a = in_process_engine()
    for i in range(6):
        d = a.decide(f"u{i % 2}", events=[event("view", i % N_CATEGORIES, T0 + i)],
                     candidates=list(range(10)), now=T0 + i)
        a.feedback(d.id, f"e{i}", clicked=True, item=int(d.items[-1]), now=T0 + i + 0.5,
                   ended=True)
    b = in_process_engine()
    b.load_state_dict(a.state_dict())
    assert b.to_bytes() == a.to_bytes()
    assert len(b.features) == 2 and b.recommender.explorer.draws == 6
    # the next decisions agree too (same draws, same features, same histories)
    for e in (a, b):
        e.decide("u0", k=2, now=T0 + 10)
    assert b.to_bytes() == a.to_bytes()
    # a state with another FeatureConfig is refused, and nothing changes
    other = Engine(a.catalogue, make_policy("LinTS", len(a.catalogue),
                                            FeatureConfig(n_categories=N_CATEGORIES).dim),
                   privacy_key=PRIVACY_KEY.encode(),
                   features=FeatureStore(FeatureConfig(n_categories=N_CATEGORIES,
                                                       session_gap_seconds=60.0)),
                   recommender=in_process_engine().recommender,
                   config=EngineConfig(seed=SEED, budget=a.config.budget))
    before = other.to_bytes()
    with pytest.raises(ValueError, match="features: the saved feature store has another"):
        other.load_bytes(a.to_bytes())
    assert other.to_bytes() == before


def test_every_new_record_kind_replays_byte_for_byte(tmp_path: Path) -> None:
    """decide (events, k, candidates, exclusions, deferral), decide_batch (exclusions,
    deferral), activate, events and items records: a service recovered from the log alone
    has the same engine bytes as the one that wrote it."""
    cfg = parity_config(tmp_path, tmp_path / "state")
    svc = DecisionService(from_dict(cfg, environ={}))
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        now = time.time()
        ok = [
            ("/v1/items", {"items": item_rows([0, N_ITEMS], seed=2)}),
            ("/v1/events", {"user": "a", "events": [event("cart", 1, now - 10)]}),
            ("/v1/decide", {"user": "a", "events": [event("view", 2, now)], "k": 2,
                            "candidates": [0, 3, N_ITEMS], "exclude_offers": ["pct20"],
                            "defer_activation": True}),
            ("/v1/decide/batch", {"requests": [
                {"user": "b", "basket": basket(), "exclude_offers": ["none"]},
                {"user": "c", "basket": basket(), "defer_activation": True}]}),
        ]
        answers = []
        for route, body in ok:
            r = c.post(route, json=body)
            assert r.status_code == 200, (route, r.text)
            answers.append(r.json())
        deferred = answers[2]["decision_id"]
        batch = answers[3]["decisions"]
        assert batch[0]["offer_id"] != "none"
        assert c.post("/v1/activate", json={"decision_id": deferred}).json()["status"] == \
            "activated"
        assert c.post("/v1/feedback", json={"decision_id": deferred, "event_id": "e1",
                                            "clicked": True, "item": answers[2]["items"][0],
                                            "purchased": True}).json()["status"] == "finalised"
        live = svc.engine.to_bytes()
    again = recovered(cfg)
    assert again.recovery["snapshot"] is None and again.recovery["replayed_rejected"] == 0
    assert again.recovery["replayed_records"] == len(ok) + 2
    assert again.engine.to_bytes() == live
    assert not again.engine._pending.get(batch[1]["decision_id"]).activated
    again.stop(snapshot=False)


@pytest.mark.parametrize(("change", "key"), [
    ({"recommender": {"items": "missing.npz"}}, "recommender.items"),
    ({"recommender": {"k": 0}}, "recommender.k"),
    ({"recommender": {"k": N_ITEMS + 1}}, "recommender.k"),
    ({"recommender": {"history_length": "long"}}, "recommender.history_length"),
    ({"recommender": {"exploration": {"v": -1.0}}}, "recommender.exploration.v"),
    ({"recommender": {"colour": 1}}, "recommender.colour"),
    ({"features": {"n_categories": 0}}, "features.n_categories"),
    ({"features": {"windows": [1]}}, "features.windows"),
    ({"features": {"n_categories": N_CATEGORIES + 1}}, "policy.n_features"),
])
def test_configuration_errors_name_the_key(tmp_path: Path, change: dict[str, Any],
                                           key: str) -> None:
    cfg = parity_config(tmp_path, None)
    for section, values in change.items():
        cfg[section] = {**cfg[section], **values}
    with pytest.raises(ValueError, match=rf"^{key.replace('.', '[.]')}"):
        from_dict(cfg, environ={}, base_dir=tmp_path)


def test_the_feature_store_is_bounded_in_users(tmp_path: Path) -> None:
    cfg = parity_config(tmp_path, tmp_path / "state")
    cfg["features"] = {**cfg["features"], "max_users": 20}
    svc = DecisionService(from_dict(cfg, environ={}))
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        now = time.time()
        for i in range(60):  # a client inventing users: the store stays within the bound
            r = c.post("/v1/events", json={"user": f"u{i}", "events": [
                event("view", 1, now)]})
            assert r.status_code == 200
            assert len(svc.engine.features) <= 21  # max_users + 5% slack between trims
        c.post("/v1/events", json={"user": "u0", "events": [event("view", 1, now)]})
        store = svc.engine.features
        kept = {u for u in (f"u{i}" for i in range(60)) if svc.engine.pseudonym(u) in store}
        # the least recently updated were forgotten first: u0 came back, the newest stay
        assert "u0" in kept and "u59" in kept and "u1" not in kept
        live = svc.engine.to_bytes()
    again = recovered(cfg)  # eviction is replayed exactly
    assert again.engine.to_bytes() == live
    again.stop(snapshot=False)
    with pytest.raises(ValueError, match=r"^features\.max_users"):
        from_dict({**cfg, "features": {**cfg["features"], "max_users": 0}}, environ={})
