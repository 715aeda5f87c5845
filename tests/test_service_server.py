"""The HTTP server under the app (service/server.py): `promobandit serve --server NAME`.

Both servers serve the same app, so every route must answer the same status and body
(decision ids aside: they are drawn from the OS); a graceful stop (SIGTERM) must write the
final snapshot under either; a wrong server name is refused naming the choices. Speed is
not tested here: bench/bench_service.py measures it.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("granian")

from promobandit.service import server as server_mod
from promobandit.service.cli import register
from tests.test_service_support import (
    API_KEY,
    ServerProcess,
    basket,
    config_dict,
    to_toml,
)

AUTH = {"X-API-Key": API_KEY}


def _write_config(path: Path, state: Path | None, **sections: Any) -> Path:
    path.write_text(to_toml(config_dict(state, **sections)))
    return path


def _conversation(url: str) -> list[tuple[str, int, Any]]:
    """The same requests, in the same order, to a fresh service: (what, status, body)
    with decision ids replaced by their order of appearance."""
    ids: dict[str, str] = {}

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if k == "decision_id" and isinstance(x, str):
                    x = ids.setdefault(x, f"d{len(ids)}")
                out[k] = norm(x)
            return out
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    got: list[tuple[str, int, Any]] = []
    with httpx.Client(base_url=url, timeout=30.0) as c:
        def record(what: str, r: httpx.Response) -> Any:
            body = r.json() if r.headers.get("content-type", "").startswith(
                "application/json") else r.text
            got.append((what, r.status_code, norm(body)))
            return body

        record("healthz", c.get("/healthz"))
        record("offers", c.get("/v1/offers", headers=AUTH))
        decisions = []
        for i in range(6):
            d = record(f"decide {i}", c.post("/v1/decide", headers=AUTH, json={
                "user": f"shopper-{i % 3}", "basket": basket(40.0 + 10 * i),
                "group": "new" if i % 2 else "returning"}))
            decisions.append(d["decision_id"])
        record("batch", c.post("/v1/decide/batch", headers=AUTH, json={"requests": [
            {"user": "b1", "basket": basket(60.0)}, {"user": "b2", "basket": basket(90.0)}]}))
        record("feedback", c.post("/v1/feedback", headers=AUTH, json={
            "decision_id": decisions[0], "event_id": "e0", "purchased": True}))
        record("feedback repeat", c.post("/v1/feedback", headers=AUTH, json={
            "decision_id": decisions[0], "event_id": "e0", "purchased": True}))
        record("feedback click", c.post("/v1/feedback", headers=AUTH, json={
            "decision_id": decisions[1], "event_id": "e1", "clicked": True}))
        record("feedback unknown", c.post("/v1/feedback", headers=AUTH, json={
            "decision_id": "no-such-decision", "event_id": "e2", "purchased": True}))
        record("bad field", c.post("/v1/decide", headers=AUTH, json={
            "user": "x", "basket": {"lines": [{"item_id": 1, "category": 0,
                                               "unit_price": "ten", "unit_cost": 1.0}]}}))
        record("unknown field", c.post("/v1/decide", headers=AUTH, json={
            "user": "x", "basket": basket(), "colour": "red"}))
        record("bad json", c.post("/v1/decide", headers={**AUTH, "content-type":
                                                           "application/json"},
                                  content=b"{not json"))
        record("no key", c.post("/v1/decide", json={"user": "x", "basket": basket()}))
        # On a connection of its own: a server may close a connection whose body it
        # refused unread, and the next request must not race that close.
        with httpx.Client(base_url=url, timeout=30.0) as once:
            record("too large", once.post("/v1/decide", headers=AUTH,
                                          content=b"{" + b" " * 2_000_000 + b"}"))
        record("query", c.post("/v1/decide?debug=1", headers=AUTH,
                               json={"user": "x", "basket": basket()}))
        record("no route", c.get("/v1/nothing", headers=AUTH))
        record("wrong method", c.get("/v1/decide", headers=AUTH))
        policy = c.get("/v1/policy", headers=AUTH)
        assert policy.status_code == 200
        rep = policy.json()
        # the same statistics and counters (storage positions are the same too)
        got.append(("policy", 200, norm({k: rep[k] for k in ("offers", "engine", "budget",
                                                              "storage")})))
        ready = c.get("/readyz")
        got.append(("readyz", ready.status_code, ready.json()["status"]))
    return got


@pytest.mark.parametrize("state", ["memory", "files"])
def test_both_servers_answer_every_route_alike(tmp_path: Path, state: str) -> None:
    answers = {}
    for name in server_mod.SERVERS:
        folder = tmp_path / name
        folder.mkdir()
        cfg = _write_config(folder / "service.toml",
                            None if state == "memory" else folder / "state")
        srv = ServerProcess(cfg, args=["--server", name]).start()
        try:
            answers[name] = _conversation(srv.url)
        finally:
            srv.stop()
    a, b = (answers[n] for n in server_mod.SERVERS)
    assert [w for w, _, _ in a] == [w for w, _, _ in b]
    for (what, sa, ba), (_, sb, bb) in zip(a, b, strict=True):
        assert (what, sa, ba) == (what, sb, bb)
    statuses = {w: s for w, s, _ in a}
    # the conversation covered successes and every kind of refusal
    assert statuses["decide 0"] == 200 and statuses["feedback"] == 200
    assert statuses["bad field"] == 422 and statuses["no key"] == 401
    assert statuses["too large"] == 413 and statuses["no route"] == 404
    assert statuses["wrong method"] == 405 and statuses["query"] == 422
    bad = next(body for w, _, body in a if w == "bad field")
    assert bad["error"].startswith("basket.lines[0].unit_price:")


@pytest.mark.parametrize("name", ["granian", "uvicorn"])
def test_sigterm_writes_the_final_snapshot_and_a_restart_replays_nothing(
        tmp_path: Path, name: str) -> None:
    cfg = _write_config(tmp_path / "service.toml", tmp_path / "state")
    srv = ServerProcess(cfg, args=["--server", name]).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0, headers=AUTH) as c:
            for i in range(5):
                assert c.post("/v1/decide", json={"user": f"u{i}",
                                                  "basket": basket()}).status_code == 200
            before = c.get("/v1/policy").json()
    finally:
        srv.stop()
    assert list((tmp_path / "state").glob("snapshot-*")), "no final snapshot written"
    again = ServerProcess(cfg, args=["--server", name]).start()
    try:
        assert " 0 log records replayed" in again.banner
        with httpx.Client(base_url=again.url, timeout=30.0, headers=AUTH) as c:
            after = c.get("/v1/policy").json()
    finally:
        again.stop()
    assert after["engine"] == before["engine"] and after["offers"] == before["offers"]


def test_an_unknown_server_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"server: expected one of uvicorn, granian, got 'nginx'"):
        server_mod.check_server("nginx")
    with socket.socket() as sock, pytest.raises(ValueError, match="server: expected one of"):
        server_mod.serve(object(), sock, server="nginx")
    import argparse

    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["serve", "--server", "nginx"])
    assert exc.value.code == 2
    args = ap.parse_args(["serve"])
    assert args.server == server_mod.DEFAULT_SERVER in server_mod.SERVERS


def test_listen_socket_binds_a_free_port_with_nagle_off() -> None:
    sock = server_mod.listen_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        with socket.create_connection((host, port), timeout=5.0):
            pass  # it listens
    finally:
        sock.close()
