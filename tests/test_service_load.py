"""A bounded load test on loopback: decide and feedback at a fixed rate for a few seconds
against `promobandit serve` in a subprocess (durable files, fsync on), then exact checks
of what the server learnt against what the clients were answered. Throughput and latency
are printed, never asserted (timing does not decide a test)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from promobandit.service.loadgen import run_load
from tests.test_service_support import API_KEY, ServerProcess, config_dict, to_toml

DURATION = 5.0  # seconds of load
RATE = 400.0  # requests per second, all clients together
CLIENTS = 16


def report_line(name: str, s: dict[str, float]) -> str:
    return (f"{name}: {s['requests']:.0f} requests in {s['seconds']:.1f} s = "
            f"{s['throughput']:.0f}/s; decide p50 {s.get('decide_p50_ms', 0):.1f} ms, p99 "
            f"{s.get('decide_p99_ms', 0):.1f} ms; feedback p50 {s.get('feedback_p50_ms', 0):.1f}"
            f" ms, p99 {s.get('feedback_p99_ms', 0):.1f} ms")


def test_mixed_load_is_answered_and_learnt_exactly(tmp_path: Path, capsys: Any) -> None:
    cfg = config_dict(tmp_path / "state", storage={"snapshot_every_events": 500},
                      engine={"budget": {"amount": 1e6}})
    (tmp_path / "service.toml").write_text(to_toml(cfg))
    srv = ServerProcess(tmp_path / "service.toml").start()
    try:
        url = urlsplit(srv.url)
        assert url.hostname is not None and url.port is not None
        res = asyncio.run(run_load(url.hostname, url.port, clients=CLIENTS, duration=DURATION,
                                   rate=RATE, feedback_share=0.5, purchase_prob=0.4,
                                   api_key=API_KEY, seed=1))
        fast = asyncio.run(run_load(url.hostname, url.port, clients=CLIENTS, duration=2.0,
                                    feedback_share=0.5, purchase_prob=0.4, api_key=API_KEY,
                                    seed=2))
        with srv.client() as c:
            rep = c.get("/v1/policy").json()
            metrics = c.get("/metrics").text
    finally:
        err = srv.stop()
    with capsys.disabled():
        print("\n" + report_line(f"fixed rate {RATE:.0f}/s, {CLIENTS} clients", res.summary()))
        print(report_line(f"closed loop, {CLIENTS} clients", fast.summary()))
    assert "Traceback" not in err, err
    for r in (res, fast):
        assert r.errors == [], r.errors[:3]
    # the fixed rate was kept (the schedule, not the server's speed, sets the count)
    assert res.requests == pytest.approx(RATE * DURATION, rel=0.05)
    decisions = {**res.decisions, **fast.decisions}
    feedback = res.feedback + fast.feedback
    assert len(decisions) == len(res.decide_latency) + len(fast.decide_latency)
    # every event was for a known, pending decision: applied (a click) or finalised (a buy)
    assert {s for _, _, buy, s, _ in feedback if buy} <= {"finalised"}
    assert {s for _, _, buy, s, _ in feedback if not buy} <= {"applied"}
    bought = Counter(decisions[d] for d, _, buy, _, _ in feedback if buy)
    eng = rep["engine"]
    assert eng["decisions"] == len(decisions)
    assert eng["purchases"] == sum(bought.values()) > 0
    assert eng["pending"] == len(decisions) - sum(bought.values())
    assert eng["duplicate"] == eng["unknown"] == eng["late"] == 0
    assert rep["policy"]["version"] == sum(bought.values())
    for row in rep["offers"]:
        assert row["updates"] == bought.get(row["id"], 0), row
    rewards = sum(r for _, _, buy, _, r in feedback if buy)
    assert sum(row["reward_sum"] for row in rep["offers"]) * 20.0 == pytest.approx(rewards)
    assert f'promobandit_http_requests_total{{method="POST",route="/v1/decide",status="200"}} ' \
           f'{len(decisions)}.0' in metrics
    # a graceful stop snapshots: the restarted server has the same state and an empty log
    srv2 = ServerProcess(tmp_path / "service.toml").start()
    try:
        with srv2.client() as c:
            rep2 = c.get("/v1/policy").json()
            ready = c.get("/readyz").json()
    finally:
        srv2.stop()
    assert ready["detail"]["recovery"]["replayed_records"] == 0
    assert rep2["offers"] == rep["offers"] and rep2["engine"] == rep["engine"]
