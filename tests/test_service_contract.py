"""Issue 11: the contract between the service and a hostile (or buggy) client.

A table of hostile requests, one row per finding of the issue and many more: each is
answered 4xx with the error naming the field, and changes nothing (the engine's bytes
and the log position are the same before and after). After the whole table the budget
is not exceeded, no shopper is locked out, and a restart from the files gives back the
same engine, byte for byte (every acknowledged event present).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from promobandit.service.runtime import DecisionService
from tests.test_service_support import (
    ServerProcess,
    ServerThread,
    basket,
    config_dict,
    make_config,
    to_toml,
)

BUDGET = 5000.0  # the table's service (the budget test below uses a binding one)
TIGHT_BUDGET = 100.0
CAPS = {"max_offers_per_day": 3, "max_discount_per_period": 30.0}
MAX_EVENTS = 4
SECTIONS: dict[str, Any] = {
    "engine": {"budget": {"amount": BUDGET}, "caps": CAPS, "feedback_wait_seconds": 3600.0},
    "policy": {"settings": {"propensity_draws": 20}},
    "limits": {"max_events_per_decision": MAX_EVENTS, "max_revenue_multiple": 3.0,
               "max_batch": 16},
}


@dataclasses.dataclass
class Ctx:
    c: httpx.Client
    svc: DecisionService
    coupon: dict[str, Any]  # a pending decision that offered the coupon
    pct: dict[str, Any]  # a pending decision with a percent-off discount
    n: int = 0

    def fresh_user(self) -> str:
        self.n += 1
        return f"hostile-user-{self.n}"

    def decide(self, user: str, **kw: Any) -> dict[str, Any]:
        r = self.c.post("/v1/decide", json={"user": user, "basket": basket(), **kw})
        assert r.status_code == 200, r.text
        return r.json()

    def feedback(self, **body: Any) -> httpx.Response:
        return self.c.post("/v1/feedback", json=body)


def _find(ctx_c: httpx.Client, want: Callable[[dict[str, Any]], bool], tag: str) -> dict[str, Any]:
    for i in range(400):
        d = ctx_c.post("/v1/decide", json={"user": f"{tag}-{i}", "basket": basket()}).json()
        if want(d):
            return d
    raise AssertionError(f"no decision for {tag} in 400 tries")


@pytest.fixture(scope="module")
def files_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("contract")
    svc = DecisionService(make_config(state, **SECTIONS))
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        coupon = _find(c, lambda d: d["offer_id"].startswith("coupon"), "coupon")
        pct = _find(c, lambda d: d["offer_id"].startswith("pct") and d["discount_cost"] > 1.0,
                    "pct")
        yield Ctx(c, svc, coupon, pct), state


# --- the table --------------------------------------------------------------------------------
# (name, path, body: a function of the context giving a JSON value or raw bytes,
#  expected status, the field the error must name first)
Row = tuple[str, str, Callable[[Ctx], Any], int, str]


def _fb(ctx: Ctx, d: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"decision_id": d["decision_id"], "event_id": f"ev-{ctx.fresh_user()}", **kw}


def _coupon_redeemed_once(ctx: Ctx) -> dict[str, Any]:
    d = ctx.decide(ctx.fresh_user())
    while not d["offer_id"].startswith("coupon"):
        d = ctx.decide(ctx.fresh_user())
    r = ctx.feedback(**_fb(ctx, d, coupon_redeemed=True))
    assert r.status_code == 200, r.text
    return _fb(ctx, d, coupon_redeemed=True)  # a second redemption under a new event id


def _event_reused(ctx: Ctx) -> dict[str, Any]:
    d = ctx.decide(ctx.fresh_user())
    body = _fb(ctx, d, clicked=True)
    assert ctx.feedback(**body).status_code == 200
    return {**body, "clicked": False, "purchased": True}


def _too_many_events(ctx: Ctx) -> dict[str, Any]:
    d = ctx.decide(ctx.fresh_user())
    for _ in range(MAX_EVENTS):
        assert ctx.feedback(**_fb(ctx, d, clicked=True)).status_code == 200
    return _fb(ctx, d, clicked=True)


def _request_reused(ctx: Ctx) -> dict[str, Any]:
    u = ctx.fresh_user()
    ctx.decide(u, request_id=f"rq-{u}")
    return {"user": u, "basket": basket(90.0), "request_id": f"rq-{u}"}


def _late_coupon_on_finalised_pct(ctx: Ctx) -> dict[str, Any]:
    d = ctx.decide(ctx.fresh_user())
    while d["offer_id"] == "none" or d["offer_id"].startswith("coupon"):
        d = ctx.decide(ctx.fresh_user())
    assert ctx.feedback(**_fb(ctx, d, purchased=True)).status_code == 200
    return _fb(ctx, d, coupon_redeemed=True)


def _line(**kw: Any) -> dict[str, Any]:
    return {"lines": [{"item_id": 1, "category": 0, "unit_price": 10.0, "unit_cost": 5.0,
                       "quantity": 1, **kw}]}


ROWS: list[Row] = [
    # The findings.
    ("discount of a million on a 2.00 quote", "/v1/feedback",
     lambda x: _fb(x, x.pct, purchased=True, discount=1e6), 422, "discount"),
    ("coupon redeemed on a decision that gave none", "/v1/feedback",
     lambda x: _fb(x, x.pct, coupon_redeemed=True), 422, "coupon_redeemed"),
    ("one coupon redeemed twice under new event ids", "/v1/feedback",
     _coupon_redeemed_once, 409, "coupon_redeemed"),
    ("revenue 1e9 as the reward", "/v1/feedback",
     lambda x: _fb(x, x.pct, purchased=True, revenue=1e9), 422, "revenue"),
    ("a discount above the shopper's cap", "/v1/feedback",
     lambda x: _fb(x, x.pct, purchased=True, discount=CAPS["max_discount_per_period"] + 1),
     422, "discount"),
    ("event id reused with another outcome", "/v1/feedback", _event_reused, 409, "event_id"),
    ("unbounded events on one decision", "/v1/feedback", _too_many_events, 409, "event_id"),
    ("request id reused with another body", "/v1/decide", _request_reused, 409, "request_id"),
    # Money, beyond the findings.
    ("discount a cent above the quoted worst case", "/v1/feedback",
     lambda x: _fb(x, x.pct, purchased=True, discount=x.pct["discount_cost"] + 0.01),
     422, "discount"),
    ("coupon redeemed above its face value", "/v1/feedback",
     lambda x: _fb(x, x.coupon, coupon_redeemed=True, discount=x.coupon["discount_cost"] + 1),
     422, "discount"),
    ("a late coupon on a finalised percent-off decision", "/v1/feedback",
     _late_coupon_on_finalised_pct, 409, "coupon_redeemed"),
    ("cost of goods far above the basket", "/v1/feedback",
     lambda x: _fb(x, x.pct, purchased=True, cost_of_goods=1e8), 422, "cost_of_goods"),
    ("negative revenue", "/v1/feedback", lambda x: _fb(x, x.pct, revenue=-1.0), 422, "revenue"),
    ("negative discount", "/v1/feedback", lambda x: _fb(x, x.pct, discount=-5.0), 422,
     "discount"),
    ("revenue as a string", "/v1/feedback", lambda x: _fb(x, x.pct, revenue="10"), 422,
     "revenue"),
    ("NaN discount (raw)", "/v1/feedback",
     lambda x: (b'{"decision_id": "%s", "event_id": "e-nan", "purchased": true, '
                b'"discount": NaN}' % x.pct["decision_id"].encode()), 422, "discount"),
    ("Infinity revenue (raw)", "/v1/feedback",
     lambda x: (b'{"decision_id": "%s", "event_id": "e-inf", "revenue": Infinity}'
                % x.pct["decision_id"].encode()), 422, "revenue"),
    ("a reward field a client may not send", "/v1/feedback",
     lambda x: _fb(x, x.pct, reward=100.0), 422, "reward"),
    ("purchased as a string", "/v1/feedback", lambda x: _fb(x, x.pct, purchased="yes"), 422,
     "purchased"),
    ("negative item", "/v1/feedback", lambda x: _fb(x, x.pct, clicked=True, item=-1), 422,
     "item"),
    ("empty decision id", "/v1/feedback", lambda x: {"decision_id": "", "event_id": "e"}, 422,
     "decision_id"),
    ("event id with a NUL", "/v1/feedback", lambda x: _fb(x, x.pct, event_id="a\u0000b"), 422,
     "event_id"),
    ("event id too long", "/v1/feedback", lambda x: _fb(x, x.pct, event_id="e" * 300), 422,
     "event_id"),
    ("feedback as a list", "/v1/feedback", lambda x: [_fb(x, x.pct)], 422, "body"),
    # Learning inputs and decisions.
    ("user missing", "/v1/decide", lambda x: {"basket": basket()}, 422, "user"),
    ("empty user", "/v1/decide", lambda x: {"user": "", "basket": basket()}, 422, "user"),
    ("user too long", "/v1/decide", lambda x: {"user": "u" * 300, "basket": basket()}, 422,
     "user"),
    ("unit cost above unit price", "/v1/decide",
     lambda x: {"user": "u", "basket": _line(unit_cost=11.0)}, 422,
     "basket.lines[0].unit_cost"),
    ("negative price", "/v1/decide", lambda x: {"user": "u", "basket": _line(unit_price=-1.0)},
     422, "basket.lines[0].unit_price"),
    ("price above max_money", "/v1/decide",
     lambda x: {"user": "u", "basket": _line(unit_price=1e12, unit_cost=1.0)}, 422,
     "basket.lines[0].unit_price"),
    ("quantity zero", "/v1/decide", lambda x: {"user": "u", "basket": _line(quantity=0)}, 422,
     "basket.lines[0].quantity"),
    ("quantity a float", "/v1/decide", lambda x: {"user": "u", "basket": _line(quantity=1.5)},
     422, "basket.lines[0].quantity"),
    ("item id a bool", "/v1/decide", lambda x: {"user": "u", "basket": _line(item_id=True)},
     422, "basket.lines[0].item_id"),
    ("empty basket", "/v1/decide", lambda x: {"user": "u", "basket": {"lines": []}}, 422,
     "basket.lines"),
    ("group too long", "/v1/decide",
     lambda x: {"user": "u", "basket": basket(), "group": "g" * 300}, 422, "group"),
    ("unknown field", "/v1/decide",
     lambda x: {"user": "u", "basket": basket(), "discount": 0.5}, 422, "discount"),
    ("empty request id", "/v1/decide",
     lambda x: {"user": "u", "basket": basket(), "request_id": ""}, 422, "request_id"),
    ("request id with a NUL", "/v1/decide",
     lambda x: {"user": "u", "basket": basket(), "request_id": "a\u0000b"}, 422, "request_id"),
    ("request id as a number", "/v1/decide",
     lambda x: {"user": "u", "basket": basket(), "request_id": 7}, 422, "request_id"),
    ("context too long for a non-contextual policy", "/v1/decide",
     lambda x: {"user": "u", "basket": basket(), "context": [0.0] * 2000}, 422, "context"),
    ("deeply nested body", "/v1/decide", lambda x: b"[" * 5000 + b"]" * 5000, 422, "body"),
    ("empty batch", "/v1/decide/batch", lambda x: {"requests": []}, 422, "requests"),
    ("batch above max_batch", "/v1/decide/batch",
     lambda x: {"requests": [{"user": "u", "basket": basket()}] * 17}, 422, "requests"),
    ("request id inside a batch", "/v1/decide/batch",
     lambda x: {"requests": [{"user": "u", "basket": basket(), "request_id": "r"}]}, 422,
     "requests[0].request_id"),
    ("a bad row in a batch", "/v1/decide/batch",
     lambda x: {"requests": [{"user": "u", "basket": basket()},
                             {"user": "v", "basket": _line(unit_cost=20.0)}]}, 422,
     "requests[1].basket.lines[0].unit_cost"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_hostile_request_is_4xx_naming_the_field_and_changes_nothing(files_server: Any,
                                                                     row: Row) -> None:
    ctx, _ = files_server
    name, path, make, status, field = row
    body = make(ctx)  # setup requests (if any) happen here, before the state is taken
    before = (ctx.svc.engine.to_bytes(), ctx.svc.storage.last_seq)
    if isinstance(body, bytes):
        r = ctx.c.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = ctx.c.post(path, json=body)
    assert r.status_code == status, (name, r.text)
    err = r.json()["error"]
    assert re.match(rf"{re.escape(field)}(\W|$)", err), (name, err)
    assert (ctx.svc.engine.to_bytes(), ctx.svc.storage.last_seq) == before, name


def test_hostile_feedback_never_takes_spend_past_the_budget() -> None:
    svc = DecisionService(make_config(None, **{**SECTIONS, "engine": {
        "budget": {"amount": TIGHT_BUDGET}, "caps": CAPS, "feedback_wait_seconds": 3600.0}}))
    with ServerThread(svc) as srv, srv.client() as c:
        refused = 0
        for i in range(80):
            d = c.post("/v1/decide", json={"user": f"spender-{i % 7}", "basket": basket()}).json()
            did = d["decision_id"]
            # Every purchase first claims far more than quoted (refused), then the most it may.
            for body in ({"purchased": True, "discount": 1e6},
                         {"purchased": True, "discount": d["discount_cost"] + 5.0},
                         {"coupon_redeemed": True, "discount": 1e4},
                         {"purchased": True, "discount": d["discount_cost"]},
                         {"coupon_redeemed": True, "discount": d["discount_cost"]},
                         {"coupon_redeemed": True}):
                r = c.post("/v1/feedback", json={"decision_id": did,
                                                 "event_id": f"{i}-{len(body)}-{refused}",
                                                 **body})
                refused += r.status_code in (409, 422)
                assert r.status_code in (200, 409, 422), r.text
            b = c.get("/v1/policy").json()["budget"]
            assert b["spent"] <= TIGHT_BUDGET + 1e-6, (i, b)
        assert refused >= 80 * 3
        assert b["spent"] > TIGHT_BUDGET / 2  # the budget was binding, not idle
        # Shoppers past their caps still get an answer ("none" at worst): never locked out.
        for i in range(7):
            r = c.post("/v1/decide", json={"user": f"spender-{i}", "basket": basket()})
            assert r.status_code == 200, r.text


def test_after_the_table_no_one_is_locked_out_and_a_restart_keeps_all(
        files_server: Any) -> None:
    ctx, state = files_server
    b = ctx.c.get("/v1/policy").json()["budget"]
    assert b["spent"] + b["reserved"] <= BUDGET + 1e-6, b
    # The shoppers of the table (caps hit, hostile feedback sent) still get an answer.
    for u in [f"hostile-user-{i}" for i in range(1, ctx.n + 1, 3)] + ["pct-0", "coupon-0"]:
        for _ in range(4):
            ctx.decide(u)
    before = ctx.svc.engine.to_bytes()
    ctx.svc.stop(snapshot=False)  # as after a crash: everything comes from the log
    svc2 = DecisionService(make_config(state, **SECTIONS))
    try:
        svc2.recover()
        assert svc2.engine.to_bytes() == before
    finally:
        svc2.stop(snapshot=False)
        ctx.svc.state = "stopped"


# --- items without a table row ----------------------------------------------------------------
def test_a_huge_context_is_refused_and_never_reaches_the_statistics() -> None:
    svc = DecisionService(make_config(None, policy={"name": "LinUCB", "n_features": 2,
                                                    "settings": {}}))
    with ServerThread(svc) as srv, srv.client() as c:
        before = svc.engine.to_bytes()
        r = c.post("/v1/decide", json={"user": "u", "basket": basket(),
                                       "context": [1e308, 1e308]})
        assert r.status_code == 422 and r.json()["error"].startswith("context[0]")
        r = c.post("/v1/decide", json={"user": "u", "basket": basket(),
                                       "context": [0.5, -1e6 - 1]})
        assert r.status_code == 422 and r.json()["error"].startswith("context[1]")
        assert svc.engine.to_bytes() == before
        # The most a client may send, again and again: features at the bound, revenue at
        # the largest multiple of the basket. The statistics stay finite (the snapshot is
        # verified by loading it, which refuses non-finite arrays).
        for i in range(200):
            ok = c.post("/v1/decide", json={"user": f"u{i}", "basket": basket(),
                                            "context": [1e6, -1e6]})
            assert ok.status_code == 200
            fb = c.post("/v1/feedback", json={
                "decision_id": ok.json()["decision_id"], "event_id": "e", "purchased": True,
                "revenue": 10.0 * 80.0, "cost_of_goods": 0.0})
            assert fb.json()["status"] == "finalised", fb.text
        assert svc.snapshot() > 0


def test_a_snapshot_that_does_not_load_is_not_installed(tmp_path: Path) -> None:
    svc = DecisionService(make_config(tmp_path))
    svc.start()
    try:
        # What an unchecked overflow would leave (the service itself never gets here).
        svc.engine.policy._arrays["stats"][0, 1] = float("inf")  # type: ignore[attr-defined]
        with pytest.raises(OSError, match="does not load"):
            svc.snapshot()
        assert list(tmp_path.glob("snapshot-*")) == [] and list(tmp_path.glob("*.tmp")) == []
        assert "does not load" in svc.readiness()[1]["snapshot"]
    finally:
        svc.stop(snapshot=False)


def test_decision_ids_are_random_128_bit_kept_by_replay_and_never_reissued(
        tmp_path: Path) -> None:
    ids: list[str] = []
    for run in range(2):  # two fresh deployments with the same seed
        svc = DecisionService(make_config(tmp_path / f"run{run}"))
        with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
            ids += [c.post("/v1/decide", json={"user": f"u{i}", "basket": basket()}).json()[
                "decision_id"] for i in range(3)]
            ids += [d["decision_id"] for d in c.post("/v1/decide/batch", json={"requests": [
                {"user": "b", "basket": basket()}] * 3}).json()["decisions"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # Replay keeps them: feedback to an id issued before the restart joins it.
    svc = DecisionService(make_config(tmp_path / "run1"))
    svc.start()
    try:
        assert svc.engine.pending_created_at(ids[-1]) is not None
        assert svc.engine.pending_created_at(ids[6]) is not None
        # A restore of the folder from a backup issues new ids, not the old ones.
        with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
            new = c.post("/v1/decide", json={"user": "u0", "basket": basket()}).json()
        assert new["decision_id"] not in ids
    finally:
        if svc.state != "stopped":
            svc.stop(snapshot=False)


def test_a_batch_charges_caps_row_by_row(tmp_path: Path) -> None:
    svc = DecisionService(make_config(None, engine={"caps": {"max_offers_per_day": 3}}))
    with ServerThread(svc) as srv, srv.client() as c:
        ds = c.post("/v1/decide/batch", json={"requests": [
            {"user": "same", "basket": basket()}] * 8}).json()["decisions"]
        assert len(ds) == 8
        assert sum(d["offer_id"] != "none" for d in ds) <= 3
        # As sequential decides: the next decision of this user is "none" too.
        d = c.post("/v1/decide", json={"user": "same", "basket": basket()}).json()
        assert d["offer_id"] == "none"


def test_a_retried_decide_is_the_same_decision_and_survives_a_restart(tmp_path: Path) -> None:
    body = {"user": "retry", "basket": basket(), "request_id": "req-1"}
    svc = DecisionService(make_config(tmp_path))
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        a = c.post("/v1/decide", json=body).json()
        seq = svc.storage.last_seq
        b = c.post("/v1/decide", json=body).json()
        assert a == b and svc.storage.last_seq == seq  # no second decision, nothing logged
        assert svc.engine.stats["decisions"] == 1
    svc2 = DecisionService(make_config(tmp_path))  # replayed from the log
    with ServerThread(svc2) as srv, srv.client() as c:
        assert c.post("/v1/decide", json=body).json() == a
        assert c.post("/v1/decide", json={**body, "group": "other"}).status_code == 409
        # Finalised by a purchase, the decision still answers its key until the feedback
        # wait ends (tests/test_idempotency.py: and then the key is free again).
        c.post("/v1/feedback", json={"decision_id": a["decision_id"], "event_id": "e",
                                     "purchased": True})
        assert c.post("/v1/decide", json=body).json() == a


def test_two_processes_on_one_folder_the_second_refuses_naming_the_holder(
        tmp_path: Path) -> None:
    cfg = tmp_path / "service.toml"
    cfg.write_text(to_toml(config_dict(tmp_path / "state")))
    first = ServerProcess(cfg).start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "promobandit", "serve", "--config", str(cfg), "--port", "0"],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 4, second.stderr[-2000:]
        assert f"pid {first.proc.pid} on " in second.stderr  # type: ignore[union-attr]
        with first.client() as c:  # the first one is untouched
            assert c.post("/v1/decide", json={"user": "u", "basket": basket()}).status_code == 200
    finally:
        first.stop()


def test_log_damage_refuses_to_start_naming_the_file_unless_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "service.toml"
    cfg.write_text(to_toml(config_dict(tmp_path / "state")))
    srv = ServerProcess(cfg).start()
    with srv.client() as c:
        for i in range(5):
            assert c.post("/v1/decide", json={"user": f"u{i}", "basket": basket()}
                          ).status_code == 200
    srv.kill()
    seg = sorted((tmp_path / "state").glob("wal-*.log"))[-1]
    blob = bytearray(seg.read_bytes())
    blob[100] ^= 0x20  # inside the first record: valid records follow
    seg.write_bytes(bytes(blob))
    run = subprocess.run([sys.executable, "-m", "promobandit", "serve", "--config", str(cfg),
                          "--port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3 and f"{seg.name}: corrupt record at byte " in run.stderr
    assert "--accept-log-loss" in run.stderr
    env_srv = ServerProcess(cfg, env={"PROMOBANDIT_STORAGE__ACCEPT_LOG_LOSS": "true"}).start()
    try:
        ready = httpx.get(env_srv.url + "/readyz").json()
        assert ready["detail"]["recovery"]["data_loss"]
        metrics = httpx.get(env_srv.url + "/metrics").text
        assert re.search(r"^promobandit_recovery_data_loss 1\.0$", metrics, re.M)
    finally:
        env_srv.stop()



def test_a_shopper_past_the_discount_cap_still_gets_the_no_discount_offer() -> None:
    cap = 20.0
    svc = DecisionService(make_config(None, engine={"caps": {
        "max_offers_per_day": 50, "max_discount_per_period": cap}}))
    with ServerThread(svc) as srv, srv.client() as c:
        # Several offers pending at once each fit the cap alone; bought together they
        # take the shopper's discount past it (the worst case is not reserved per user).
        pending = []
        for _ in range(30):
            d = c.post("/v1/decide", json={"user": "keen", "basket": basket()}).json()
            if d["discount_cost"] > 0 and not d["offer_id"].startswith("coupon"):
                pending.append(d)
            if sum(p["discount_cost"] for p in pending) > cap:
                break
        assert sum(p["discount_cost"] for p in pending) > cap
        for i, d in enumerate(pending):
            r = c.post("/v1/feedback", json={"decision_id": d["decision_id"],
                                             "event_id": f"buy-{i}", "purchased": True})
            assert r.json()["status"] == "finalised"
        r = c.post("/v1/decide", json={"user": "keen", "basket": basket()})
        assert r.status_code == 200, r.text
        assert r.json()["discount_cost"] == 0.0  # "none", or an offer that costs nothing here
