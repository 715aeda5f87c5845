"""The HTTP API: routes, authentication, body limit, strict schemas, OpenAPI, metrics,
configuration errors and the `promobandit serve` command."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from promobandit.cli import build_parser, main
from promobandit.offers import default_catalogue
from promobandit.service.config import load
from promobandit.service.runtime import DecisionService
from tests.test_service_support import (
    API_KEY,
    PRIVACY_KEY,
    ServerThread,
    basket,
    config_dict,
    make_config,
    to_toml,
)

LIN = {"policy": {"name": "LinUCB", "n_features": 3, "settings": {"alpha": 0.5}}}


@pytest.fixture(scope="module")
def server() -> Any:
    cfg = make_config(None, limits={"max_batch": 8, "max_k": 20},
                      engine={"budget": {"amount": 500.0}, "fairness": {"max_gap": 0.1}})
    with ServerThread(DecisionService(cfg)) as srv:
        yield srv


@pytest.fixture(scope="module")
def lin_server() -> Any:
    with ServerThread(DecisionService(make_config(None, **LIN))) as srv:
        yield srv


@pytest.mark.parametrize("threads", [0, 3])
def test_decide_feedback_and_the_policy_report(threads: int) -> None:
    cfg = make_config(None, server={"threads": threads})
    with ServerThread(DecisionService(cfg)) as srv, srv.client() as c:
        before = c.get("/v1/policy").json()
        r = c.post("/v1/decide", json={"user": "alice", "basket": basket(), "group": "new"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        d = r.json()
        assert d["offer_id"] == default_catalogue().ids[d["offer"]]
        assert 0 < d["propensity"] <= 1 and d["price"] > 0 and d["items"] is None
        r = c.post("/v1/feedback", json={"decision_id": d["decision_id"], "event_id": "e1",
                                         "purchased": True, "revenue": d["price"]})
        fb = r.json()
        assert r.status_code == 200 and fb["status"] == "finalised"
        assert fb["reward"] == pytest.approx(d["price"] - 80.0 / 4 - 2 * 80.0 / 8)
        again = c.post("/v1/feedback", json={"decision_id": d["decision_id"], "event_id": "e1",
                                             "purchased": True, "revenue": d["price"]}).json()
        assert again["status"] == "duplicate"
        # The same event id with another outcome is a conflict, not a silent "duplicate".
        other = c.post("/v1/feedback", json={"decision_id": d["decision_id"], "event_id": "e1",
                                             "purchased": True})
        assert other.status_code == 409 and other.json()["error"].startswith("event_id: ")
        unknown = c.post("/v1/feedback", json={"decision_id": "nope", "event_id": "e2"}).json()
        assert unknown["status"] == "unknown"
        rep = c.get("/v1/policy").json()
        assert rep["policy"]["version"] == before["policy"]["version"] + 1
        assert rep["engine"]["purchases"] == 1 and rep["engine"]["decisions"] == 1
        assert rep["engine"]["duplicate"] == 1 and rep["engine"]["unknown"] == 1
        row = rep["offers"][d["offer"]]
        assert row["id"] == d["offer_id"] and row["updates"] == 1.0
        assert row["reward_sum"] == pytest.approx(fb["reward"] / 20.0)
        assert rep["storage"]["last_seq"] == 4  # decide + three feedback records
        batch = c.post("/v1/decide/batch", json={"requests": [
            {"user": f"u{i}", "basket": basket(50.0 + i)} for i in range(5)]}).json()
        assert len({x["decision_id"] for x in batch["decisions"]}) == 5
        assert c.get("/v1/offers").json() == default_catalogue().to_dict()


def test_api_key_guards_everything_but_probes_and_metrics(server: Any) -> None:
    req = {"user": "a", "basket": basket()}
    with server.client(key=None) as anon:
        for method, path in (("POST", "/v1/decide"), ("POST", "/v1/decide/batch"),
                             ("POST", "/v1/feedback"), ("GET", "/v1/offers"),
                             ("GET", "/v1/policy"), ("GET", "/openapi.json"), ("GET", "/docs")):
            r = anon.request(method, path, json=req if method == "POST" else None)
            assert r.status_code == 401, path
            assert r.json()["error"].startswith("api_key:")
            assert r.headers["www-authenticate"] == "Bearer"
        for path in ("/healthz", "/readyz", "/metrics"):
            assert anon.get(path).status_code == 200, path
        assert anon.get("/v1/offers", headers={"X-API-Key": "wrong"}).status_code == 401
        assert anon.get("/v1/offers", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert anon.get("/v1/offers", headers={"Authorization": f"Bearer {API_KEY}"}
                        ).status_code == 200
        assert anon.get("/v1/offers", headers={"X-API-Key": API_KEY}).status_code == 200


def test_body_size_limit(server: Any) -> None:
    limit = server.service.config.server.max_body_bytes
    with server.client() as c:
        big = json.dumps({"user": "a" * (limit + 10), "basket": basket()}).encode()
        r = c.post("/v1/decide", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"].startswith("body:")

        def chunks() -> Any:  # no Content-Length: the limit must hold on a streamed body
            yield b'{"user": "'
            for _ in range(limit // 1000 + 2):
                yield b"a" * 1000
            yield b'"}'

        r = c.post("/v1/decide", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/readyz").status_code == 200


BAD = [  # (body change, field the 422 must name)
    ({"user": ""}, "user"),
    ({"user": 12}, "user"),
    ({"user": "x" * 300}, "user"),
    ({"k": 0}, "k"),
    ({"k": 21}, "k"),
    ({"k": True}, "k"),
    ({"k": 2.0}, "k"),
    ({"group": ["a"]}, "group"),
    ({"surprise": 1}, "surprise"),
    ({"basket": {"lines": []}}, "basket.lines"),
    ({"basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": "9",
                            "unit_cost": 1.0}]}}, "basket.lines[0].unit_price"),
    ({"basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": 9.0,
                            "unit_cost": 10.0}]}}, "basket.lines[0].unit_cost"),
    ({"basket": {"lines": [{"item_id": -1, "category": 0, "unit_price": 9.0,
                            "unit_cost": 1.0}]}}, "basket.lines[0].item_id"),
    ({"basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": 9.0,
                            "unit_cost": 1.0, "quantity": 0}]}}, "basket.lines[0].quantity"),
    ({"basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": 1e300,
                            "unit_cost": 1.0}]}}, "basket.lines[0].unit_price"),
    ({"basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": 9.0,
                            "unit_cost": 1.0, "colour": "red"}]}}, "basket.lines[0].colour"),
    ({"basket": None}, "basket"),
    ({"events": [{"event": "view", "category": 1, "price": 1.0, "discount": 0.0,
                  "timestamp": 1.0}]}, "events"),
    ({"candidates": [1, 2]}, "candidates"),
    ({"k": 5}, "k"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_decide_requests_name_the_field(server: Any, change: dict[str, Any],
                                            field: str) -> None:
    svc = server.service
    with server.client() as c:
        before, seq = svc.engine.to_bytes(), svc.storage.last_seq
        r = c.post("/v1/decide", json={"user": "a", "basket": basket(), **change})
        assert r.status_code == 422, r.text
        assert r.json()["error"].startswith(f"{field}:"), r.json()
        assert svc.engine.to_bytes() == before and svc.storage.last_seq == seq


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"user": "a", "basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": NaN, '
     b'"unit_cost": 1.0}]}}', "basket.lines[0].unit_price"),
    (b'{"user": "a", "basket": {"lines": [{"item_id": 1, "category": 0, "unit_price": 1.0, '
     b'"unit_cost": -Infinity}]}}', "basket.lines[0].unit_cost"),
    (b'{"user": "a", ', "body"),
    (b'[1, 2, 3]', "body"),
    (b'\xff\xfe', "body"),
])
def test_non_finite_numbers_and_broken_json(server: Any, raw: bytes, field: str) -> None:
    with server.client() as c:
        r = c.post("/v1/decide", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"].startswith(f"{field}:"), r.text


def test_batch_and_feedback_bounds(server: Any) -> None:
    with server.client() as c:
        one = {"user": "a", "basket": basket()}
        r = c.post("/v1/decide/batch", json={"requests": [one] * 9})
        assert r.status_code == 422 and r.json()["error"].startswith("requests:")
        r = c.post("/v1/decide/batch", json={"requests": []})
        assert r.status_code == 422 and r.json()["error"].startswith("requests:")
        r = c.post("/v1/decide/batch", json={"requests": [one, {**one, "k": 0}]})
        assert r.status_code == 422 and r.json()["error"].startswith("requests[1].k:")
        for change, field in (({"revenue": -1.0}, "revenue"), ({"item": "3"}, "item"),
                              ({"decision_id": ""}, "decision_id"), ({"purchased": 1},
                                                                     "purchased"),
                              ({"when": 3}, "when")):
            r = c.post("/v1/feedback", json={"decision_id": "d", "event_id": "e", **change})
            assert r.status_code == 422 and r.json()["error"].startswith(f"{field}:"), r.text


def test_contextual_policy_needs_exactly_n_features(lin_server: Any) -> None:
    with lin_server.client() as c:
        ok = c.post("/v1/decide", json={"user": "a", "context": [0.5, -1, 2], "basket": basket()})
        assert ok.status_code == 200
        for ctx in ([1.0, 2.0], [1.0, 2.0, 3.0, 4.0]):
            r = c.post("/v1/decide", json={"user": "a", "context": ctx, "basket": basket()})
            assert r.status_code == 422 and r.json()["error"].startswith("context:")
        r = c.post("/v1/decide", json={"user": "a", "basket": basket()})
        assert r.status_code == 422 and r.json()["error"].startswith("context: required")


def test_methods_routes_and_query_parameters(server: Any) -> None:
    with server.client() as c:
        r = c.get("/v1/decide")
        assert r.status_code == 405 and r.json()["error"].startswith("method:")
        r = c.get("/v1/nothing")
        assert r.status_code == 404 and r.json()["error"].startswith("path:")
        r = c.get("/v1/offers?verbose=1")
        assert r.status_code == 422 and r.json()["error"].startswith("verbose:")


def test_openapi_lists_every_route_and_loads_in_schemathesis(server: Any) -> None:
    import schemathesis

    with server.client() as c:
        doc = c.get("/openapi.json").json()
    expected = {"/v1/decide": "post", "/v1/decide/batch": "post", "/v1/feedback": "post",
                "/v1/offers": "get", "/v1/policy": "get", "/healthz": "get", "/readyz": "get",
                "/metrics": "get", "/v1/activate": "post", "/v1/events": "post",
                "/v1/items": "post"}
    assert set(doc["paths"]) == set(expected)
    for path, method in expected.items():
        assert method in doc["paths"][path], path
    body = doc["paths"]["/v1/decide"]["post"]["requestBody"]["content"]["application/json"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    req = doc["components"]["schemas"][ref]
    assert req["additionalProperties"] is False and "user" in req["required"]
    assert req["properties"]["k"]["anyOf"][0]["maximum"] == 20
    assert doc["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert "security" not in doc["paths"]["/healthz"]["get"]
    schema = schemathesis.openapi.from_dict(doc)
    ops = {(op.method.upper(), op.path) for op in
           (r.ok() for r in schema.get_all_operations())}
    assert ops == {(m.upper(), p) for p, m in expected.items()}


def test_metrics_cover_requests_decisions_budget_lag_and_defaults() -> None:
    wait = 1.0
    cfg = make_config(None, engine={"budget": {"amount": 500.0}, "feedback_wait_seconds": wait,
                                    "fairness": {"max_gap": 0.1}})
    with ServerThread(DecisionService(cfg)) as srv, srv.client() as c:
        ds = [c.post("/v1/decide", json={"user": f"u{i}", "basket": basket(), "group": "g"}
                     ).json() for i in range(6)]
        r = c.post("/v1/feedback", json={"decision_id": ds[-1]["decision_id"], "event_id": "e",
                                         "clicked": True})
        assert r.json()["status"] == "applied"
        time.sleep(wait * 1.05)
        assert srv.service.expire() == 6
        text = c.get("/metrics").text
        offer = ds[1]["offer_id"]
    for needle in (
        'promobandit_http_requests_total{method="POST",route="/v1/decide",status="200"} 6.0',
        'promobandit_http_request_duration_seconds_count{route="/v1/decide"} 6.0',
        f'promobandit_decisions_total{{offer="{offer}"}}',
        'promobandit_feedback_total{status="applied"} 1.0',
        "promobandit_feedback_lag_seconds_count 1.0",
        "promobandit_default_rewards_total 5.0",
        'promobandit_engine_events_total{kind="finalised"} 6.0',
        "promobandit_budget_amount 500.0",
        "promobandit_budget_spent ",
        "promobandit_budget_reserved ",
        "promobandit_fairness_gap ",
        'promobandit_wal_records_total{kind="decide"} 6.0',
        "promobandit_ready 1.0",
    ):
        assert needle in text, needle


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    ({"servre": {}}, "servre: unknown key"),
    ({"server": {"port": 70000}}, "server.port: expected a value in [0, 65535]"),
    ({"server": {"threads": "4"}}, "server.threads: expected an integer"),
    ({"server": {"max_body_bytes": True}}, "server.max_body_bytes: expected an integer"),
    ({"limits": {"max_k": 0}}, "limits.max_k: expected a value in [1"),
    ({"engine": {"budget": {"amount": -5.0}}}, "engine.budget.amount: expected a value in (0"),
    ({"engine": {"budget": {"amont": 5.0}}}, "engine.budget.amont: unknown key"),
    ({"engine": {"budget": {}}}, "engine.budget: "),
    ({"engine": {"objective": "fun"}}, "engine.objective: expected one of"),
    ({"engine": {"caps": True}}, "engine.caps: expected a table or false"),
    ({"engine": {"fairness": {"max_gap": 2.0}}}, "engine.fairness.max_gap: expected"),
    ({"engine": {"expire_every_seconds": 0}}, "engine.expire_every_seconds: expected a value > 0"),
    ({"policy": {"name": "Nope"}}, "policy.name: expected one of"),
    ({"policy": {"name": "LinTS"}}, "policy.n_features: required"),
    ({"policy": {"name": "BetaTS", "n_features": 3}}, "policy.n_features: BetaTS is not"),
    ({"policy": {"settings": {"propensity_draws": -1}}}, "policy.settings.propensity_draws"),
    ({"policy": {"settings": {"alpha": 1.0}}}, "policy.settings.alpha: unknown key"),
    ({"storage": {"kind": "s3"}}, "storage.kind: expected one of"),
    ({"storage": {"snapshots_kept": 1}}, "storage.snapshots_kept: expected a value in [2"),
    ({"privacy": {"key": "short"}}, "privacy.key: expected at least 16 bytes"),
    ({"privacy": {"key": ""}}, "privacy.key: required"),
])
def test_config_errors_name_the_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    from tests.test_service_support import merge

    f = tmp_path / "service.toml"
    f.write_text(to_toml(merge(config_dict(tmp_path / "state"), change)))
    with pytest.raises(ValueError) as info:
        load(f, environ={})
    assert str(info.value).startswith(message), str(info.value)


def test_config_file_paths_environment_and_defaults(tmp_path: Path) -> None:
    cat = default_catalogue()
    cat.save(tmp_path / "cat.json")
    f = tmp_path / "service.toml"
    f.write_text(to_toml({"catalogue": {"path": "cat.json"}, "storage": {"dir": "state"},
                          "policy": {"name": "LinTS", "n_features": 5},
                          "engine": {"caps": False, "budget": {"amount": 10.0,
                                                               "plan": [1.0, 2.0]}}}))
    env = {"PROMOBANDIT_PRIVACY_KEY": PRIVACY_KEY, "PROMOBANDIT_API_KEY": "from-env"}
    cfg = load(f, environ=env)
    assert cfg.catalogue_path == str(tmp_path / "cat.json")
    assert cfg.storage.dir == str(tmp_path / "state")
    assert cfg.server.api_key == "from-env" and cfg.privacy_key == PRIVACY_KEY.encode()
    assert cfg.engine.caps is None and cfg.engine.budget.plan == (1.0, 2.0)
    assert cfg.policy.n_features == 5
    with pytest.raises(ValueError, match=r"privacy\.key: required"):
        load(None, environ={})
    default = load(None, environ={"PROMOBANDIT_PRIVACY_KEY": PRIVACY_KEY})
    assert default.storage.kind == "files" and default.policy.name == "GaussianTS"
    assert default.catalogue_path is None and default.server.api_key == ""
    with pytest.raises(ValueError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("[server\n")
        load(tmp_path / "bad.toml", environ={})


def test_serve_command_is_registered_and_checks_config(tmp_path: Path, capsys: Any,
                                                        monkeypatch: Any) -> None:
    assert "serve" in build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    monkeypatch.delenv("PROMOBANDIT_PRIVACY_KEY", raising=False)
    monkeypatch.delenv("PROMOBANDIT_API_KEY", raising=False)
    assert main(["serve", "--check"]) == 2
    assert "privacy.key: required" in capsys.readouterr().err
    monkeypatch.setenv("PROMOBANDIT_PRIVACY_KEY", PRIVACY_KEY)
    monkeypatch.setenv("PROMOBANDIT_API_KEY", "secret-api-key")
    assert main(["serve", "--check", "--port", "9999", "--memory", "--threads", "0"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["server"]["port"] == 9999 and shown["storage"]["kind"] == "memory"
    assert shown["server"]["api_key"] == "<set>" and shown["server"]["threads"] == 0
    assert PRIVACY_KEY not in out and "secret-api-key" not in out
    assert dataclasses.is_dataclass(load(None))
