"""Durability of the decision service: exact replay, recovery from damaged files, disk
full and failed fsync at the HTTP edge, privacy of what is written, config changes."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from promobandit.service.runtime import DecisionService, build_engine
from promobandit.service.schemas import build_schemas
from promobandit.service.storage import FingerprintMismatch, encode_record
from tests.test_service_support import (
    FlakyDiskStorage,
    ServerThread,
    basket,
    config_dict,
    make_config,
    to_toml,
)

RICH = {  # a contextual policy with every limit on, and a short wait so that expiry happens
    "policy": {"name": "LinTS", "n_features": 4, "settings": {"v": 0.2, "propensity_draws": 50}},
    "engine": {"feedback_wait_seconds": 0.05, "seed": 7,
               "budget": {"amount": 150.0, "update_every": 5, "lambda_init": 0.3},
               "fairness": {"max_gap": 0.05},
               "caps": {"max_offers_per_day": 2}},
}


class Driver:
    """Calls a DecisionService as the HTTP handlers do (checked models, then apply), and
    waits until each write is durable, as an answered request would."""

    def __init__(self, svc: DecisionService) -> None:
        self.svc = svc
        self.s = build_schemas(svc.config.limits, svc.n_features)

    def decide(self, body: dict[str, Any]) -> Any:
        p = self.svc.prepare_decide(self.s.DecideRequest.model_validate(body))
        d, seq = self.svc.apply_decide(p)
        assert self.svc.journal.wait_durable(seq, 30)
        return d

    def batch(self, bodies: list[dict[str, Any]]) -> list[Any]:
        p = self.svc.prepare_batch(self.s.DecideBatchRequest.model_validate({"requests": bodies}))
        ds, seq = self.svc.apply_batch(p)
        assert self.svc.journal.wait_durable(seq, 30)
        return ds

    def feedback(self, body: dict[str, Any]) -> Any:
        p = self.svc.prepare_feedback(self.s.FeedbackRequest.model_validate(body))
        res, seq = self.svc.apply_feedback(p)
        assert self.svc.journal.wait_durable(seq, 30)
        return res


def workload(drv: Driver, n: int, seed: int, snapshot_at: int | None = None) -> dict[str, int]:
    """A mix of every kind of write; returns how many of each status feedback got."""
    rs = random.Random(seed)
    ids: list[str] = []
    statuses: dict[str, int] = {}
    for i in range(n):
        r = rs.random()
        ctx = [round(rs.gauss(0, 1), 4) for _ in range(4)]
        req = {"user": f"user-{rs.randrange(25)}@example.com", "context": ctx,
               "basket": basket(rs.uniform(20, 200)), "group": rs.choice(["a", "b"])}
        if r < 0.55 or not ids:
            try:
                if r < 0.45 or not ids:
                    ids.append(drv.decide(req).id)
                else:
                    ids += [d.id for d in drv.batch([req, {**req, "user": f"other-{i}"}])]
            except ValueError as exc:
                # The engine may refuse after the record is logged (a 422 to the client):
                # late coupon redemptions can book spend past the budget, and then no
                # offer fits, not even "none". Replay meets the same refusal.
                assert str(exc).startswith("basket: no offer is eligible"), exc
                statuses["rejected"] = statuses.get("rejected", 0) + 1
        elif r < 0.95:
            did = rs.choice(ids) if rs.random() < 0.95 else "no-such-decision"
            ev = f"e{rs.randrange(i + 1)}"  # repeats now and then: duplicates
            res = drv.feedback({"decision_id": did, "event_id": ev,
                                "purchased": rs.random() < 0.5, "clicked": True,
                                "coupon_redeemed": rs.random() < 0.05})
            statuses[res.status] = statuses.get(res.status, 0) + 1
        else:
            time.sleep(0.06)  # past the feedback wait: the next write expires decisions
            drv.svc.expire()
        if snapshot_at is not None and i == snapshot_at:
            drv.svc.snapshot()
    return statuses


def canonical(svc: DecisionService) -> bytes:
    """The engine state as bytes after one load: UserCaps.load_state_dict stores its day
    and period indices as floats (20785.0 where a live engine has 20785), so the bytes of
    a state that went through a snapshot differ in that notation only; loading both sides
    once makes the comparison exact for everything else."""
    fresh = build_engine(svc.config, svc.catalogue, None)
    fresh.load_bytes(svc.engine.to_bytes())
    return fresh.to_bytes()


def recovered(cfg: Any) -> DecisionService:
    svc = DecisionService(cfg)
    svc.start()
    return svc


@pytest.mark.parametrize("snapshot_at", [None, 120])
def test_replay_reproduces_the_engine_byte_for_byte(tmp_path: Path,
                                                   snapshot_at: int | None) -> None:
    cfg = make_config(tmp_path, **RICH)
    svc = recovered(cfg)
    drv = Driver(svc)
    statuses = workload(drv, 300, seed=1, snapshot_at=snapshot_at)
    # every feedback outcome and expiry occurred, so replay is exercised on all of them
    assert {"applied", "finalised", "duplicate", "late", "unknown"} <= set(statuses), statuses
    assert svc.engine.stats["defaulted"] > 0 and svc.engine.budget.spent > 0
    # a coupon redeemed for more than the budget takes spend past it: every discount is
    # masked from then on, but the no-discount offer is still served (and replayed)
    d = drv.decide({"user": "x", "context": [0.0] * 4, "basket": basket()})
    drv.feedback({"decision_id": d.id, "event_id": "big-coupon", "coupon_redeemed": True,
                  "discount": 1000.0})
    after = drv.decide({"user": "y", "context": [0.0] * 4, "basket": basket()})
    # only offers that cost nothing here remain (no discount, or a threshold this basket
    # misses); a zero context ties their scores, and ties are broken at random
    assert after.discount_cost == 0.0
    before = canonical(svc)
    svc.stop(snapshot=False)  # as after a crash: only the log and older snapshots exist
    svc2 = recovered(cfg)
    assert svc2.recovery["replayed_records"] == 303 - (0 if snapshot_at is None else 121)
    assert svc2.recovery["replayed_rejected"] == 0 and svc2.recovery["problems"] == []
    assert canonical(svc2) == before
    svc2.stop()


def test_corrupt_newest_snapshot_falls_back_and_says_so(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **RICH)
    svc = recovered(cfg)
    drv = Driver(svc)
    workload(drv, 80, seed=2)
    svc.snapshot()
    workload(drv, 80, seed=3)
    svc.snapshot()
    workload(drv, 40, seed=4)
    before = canonical(svc)
    svc.stop(snapshot=False)
    newest = sorted(tmp_path.glob("snapshot-*.snap"))[-1]
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    newest.write_bytes(bytes(blob))
    with ServerThread(recovered(cfg)) as srv, srv.client() as c:
        assert canonical(srv.service) == before
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready"
        problems = ready["detail"]["recovery"]["problems"]
        assert len(problems) == 1 and newest.name in problems[0] and "checksum" in problems[0]
        assert ready["detail"]["recovery"]["snapshot"] != newest.name
        metrics = c.get("/metrics").text
        assert 'promobandit_recovery_problems_total{kind="snapshot"} 1.0' in metrics


def test_torn_log_tail_is_cut_and_reported(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **RICH)
    svc = recovered(cfg)
    workload(Driver(svc), 60, seed=5)
    before = canonical(svc)
    last = svc.storage.last_seq
    svc.stop(snapshot=False)
    seg = sorted(tmp_path.glob("wal-*.log"))[-1]
    with open(seg, "ab") as fh:  # a crash halfway through writing the next record
        fh.write(encode_record(last + 1, 1, b'{"u": "someone"}' * 5)[:50])
    with ServerThread(recovered(cfg)) as srv, srv.client() as c:
        assert canonical(srv.service) == before
        detail = c.get("/readyz").json()["detail"]
        assert len(detail["recovery"]["problems"]) == 1
        assert "cut 50 bytes" in detail["recovery"]["problems"][0]
        assert 'promobandit_recovery_problems_total{kind="log"} 1.0' in c.get("/metrics").text
        # new writes continue the log after the last good record
        r = c.post("/v1/decide", json={"user": "u", "context": [0, 0, 0, 0], "basket": basket()})
        assert r.status_code == 200
        assert srv.service.storage.last_seq == last + 1


def test_disk_full_answers_503_and_changes_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, **RICH)
    storage = FlakyDiskStorage(cfg.storage.dir)
    svc = DecisionService(cfg, storage=storage)
    with ServerThread(svc) as srv, srv.client() as c:
        req = {"user": "alice", "context": [0.1, 0.2, 0.3, 0.4], "basket": basket()}
        d = c.post("/v1/decide", json=req).json()
        before = canonical(svc)
        seq = storage.last_seq
        storage.full = True
        for path, body in (("/v1/decide", req),
                           ("/v1/decide/batch", {"requests": [req, req]}),
                           ("/v1/feedback", {"decision_id": d["decision_id"], "event_id": "e1",
                                             "purchased": True})):
            r = c.post(path, json=body)
            assert r.status_code == 503, r.text
            assert "No space left on device" in r.json()["error"]
        assert canonical(svc) == before and storage.last_seq == seq
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "No space left" in ready.json()["detail"]["storage"]
        assert 'promobandit_storage_errors_total{op="append"} 3.0' in c.get("/metrics").text
        with pytest.raises(OSError):  # a snapshot cannot be written either: reported
            svc.snapshot()
        assert "No space left" in c.get("/readyz").json()["detail"]["snapshot"]
        assert 'promobandit_snapshots_total{result="error"} 1.0' in c.get("/metrics").text
        assert canonical(svc) == before
        storage.full = False
        r = c.post("/v1/feedback", json={"decision_id": d["decision_id"], "event_id": "e1",
                                         "purchased": True})
        assert r.status_code == 200 and r.json()["status"] == "finalised"
        assert c.get("/readyz").status_code == 200
        after = canonical(svc)
    svc2 = recovered(cfg)
    assert canonical(svc2) == after
    svc2.stop()


def test_failed_fsync_stops_writes_until_restart(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    storage = FlakyDiskStorage(cfg.storage.dir)
    svc = DecisionService(cfg, storage=storage)
    with ServerThread(svc, snapshot_on_stop=False) as srv, srv.client() as c:
        req = {"user": "bob", "basket": basket()}
        assert c.post("/v1/decide", json=req).status_code == 200
        storage.fail_fsync = True
        r = c.post("/v1/decide", json=req)
        assert r.status_code == 503 and "fsync" in r.json()["error"]
        storage.fail_fsync = False  # too late: what reached the disk is unknown
        assert c.post("/v1/decide", json=req).status_code == 503
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "fsync" in ready.json()["detail"]["storage"]


def test_no_raw_user_id_is_written_anywhere(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, engine={"feedback_wait_seconds": 0.01})
    raw = [f"private.person.{i}@example.com" for i in range(20)]
    with ServerThread(recovered(cfg)) as srv, srv.client() as c:
        ids = []
        for u in raw:
            ids.append(c.post("/v1/decide", json={"user": u, "basket": basket()}).json())
        r = c.post("/v1/decide/batch", json={"requests": [{"user": u, "basket": basket()}
                                                          for u in raw[:5]]})
        assert r.status_code == 200
        for i, d in enumerate(ids[:10]):
            c.post("/v1/feedback", json={"decision_id": d["decision_id"], "event_id": f"e{i}",
                                         "purchased": True})
        time.sleep(0.02)
        srv.service.expire()  # the rest are finalised: every decision reaches the log
        pseudonym = srv.service.engine.pseudonym(raw[0])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    blob = b"".join(p.read_bytes() for p in files)
    for u in raw:
        assert u.encode() not in blob
        assert u.split("@")[0].encode() not in blob
    wal = b"".join(p.read_bytes() for p in tmp_path.glob("wal-*.log"))
    snaps = b"".join(p.read_bytes() for p in tmp_path.glob("snapshot-*"))
    assert pseudonym.encode() in wal + snaps


def test_a_configuration_change_needs_an_empty_log(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    svc = recovered(cfg)
    Driver(svc).decide({"user": "u", "basket": basket()})
    svc.stop(snapshot=False)  # the log holds a record
    changed = make_config(tmp_path, engine={"feedback_wait_seconds": 60.0})
    with pytest.raises(FingerprintMismatch, match="another engine configuration"):
        DecisionService(changed).start()
    # a clean stop snapshots and empties the log; then the change is accepted
    svc = recovered(cfg)
    before = canonical(svc)
    svc.stop()
    svc2 = recovered(changed)
    assert canonical(svc2) == before and svc2.recovery["replayed_records"] == 0
    svc2.stop()
    # a policy change cannot load the saved policy at all: refused with the reason
    other_policy = make_config(tmp_path, policy={"settings": {"propensity_draws": 7}})
    with pytest.raises(FingerprintMismatch, match="config differs"):
        DecisionService(other_policy).start()


def test_the_service_clock_never_goes_back_across_restarts(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    svc = recovered(cfg)
    Driver(svc).decide({"user": "u", "basket": basket()})
    svc._last_now = time.time() + 3600.0  # as if the wall clock had been an hour ahead
    Driver(svc).decide({"user": "u", "basket": basket()})
    svc.stop()
    svc2 = recovered(cfg)
    assert svc2._last_now >= time.time() + 3500.0
    d = Driver(svc2).decide({"user": "u", "basket": basket()})
    assert d.created_at >= time.time() + 3500.0
    svc2.stop()


def test_serve_refuses_to_start_on_unreadable_acknowledged_data(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "state")
    svc = recovered(cfg)
    drv = Driver(svc)
    for i in range(3):
        drv.decide({"user": f"u{i}", "basket": basket()})
    svc.snapshot()  # the first snapshot: the whole log is kept (a second is needed first)
    for i in range(3):
        drv.decide({"user": f"v{i}", "basket": basket()})
    svc.stop(snapshot=False)
    (tmp_path / "state" / "snapshot-00000000000000000003.snap").write_bytes(b"garbage")
    first = sorted((tmp_path / "state").glob("wal-*.log"))[0]
    blob = bytearray(first.read_bytes())
    blob[-5] ^= 0xFF  # inside the last record of the first segment: not a tail
    first.write_bytes(bytes(blob))
    (tmp_path / "service.toml").write_text(to_toml(config_dict(tmp_path / "state")))
    proc = subprocess.run([sys.executable, "-m", "promobandit", "serve", "--config",
                           str(tmp_path / "service.toml"), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "cannot recover the state" in proc.stderr
    assert first.name in proc.stderr and "acknowledged records cannot be read" in proc.stderr
