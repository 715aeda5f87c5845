"""``"explain": true`` on POST /v1/decide: the explanation of that very decision."""

from __future__ import annotations

import pytest

from promobandit.service.runtime import DecisionService
from tests.test_service_support import ServerThread, basket, make_config

pytest.importorskip("fastapi")


def test_decide_with_explain_returns_the_decisions_explanation() -> None:
    cfg = make_config(None, engine={"budget": {"amount": 500.0}})
    with ServerThread(DecisionService(cfg)) as srv, srv.client() as c:
        plain = c.post("/v1/decide", json={"user": "alice", "basket": basket()})
        assert plain.status_code == 200 and "explanation" not in plain.json()
        r = c.post("/v1/decide", json={"user": "bob", "basket": basket(), "explain": True})
        assert r.status_code == 200
        d = r.json()
        e = d["explanation"]
        assert e["decision_id"] == d["decision_id"] and e["offer"] == d["offer"]
        assert e["sentence"].startswith(f"{d['offer_id']}:")
        assert len(e["offers"]) == len(c.get("/v1/offers").json()["offers"])
        chosen = e["offers"][d["offer"]]
        assert chosen["eligible"] and chosen["price"] == pytest.approx(d["price"])
        bad = c.post("/v1/decide", json={"user": "bob", "basket": basket(), "explain": "yes"})
        assert bad.status_code == 422 and "explain" in bad.text
