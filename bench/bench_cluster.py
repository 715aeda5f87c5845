"""The cost of cluster mode per request, in process (no HTTP), beside the embedded mode.

Rows, all in one run, one thread, the same engine configuration (default catalogue,
GaussianTS, a budget, per-user caps):
  embedded/memory: DecisionService with storage.kind = "memory" (the baseline: the
    engine and the service's checks, no durability);
  embedded/files: storage.kind = "files", fsync on (local WAL, group fsync);
  cluster/always, cluster/everysec: ClusterService (one worker) against a redis-server
    on loopback started by this script in a temporary folder (AOF, appendfsync always or
    everysec; the data folder on the same disk as the WAL above).
decide: prepare_decide + apply_decide (and the durability wait of the embedded mode);
feedback: a purchase for a distinct decision made before. Each figure: the median over
--repeats runs of --n requests, microseconds per request, with min and max; the ratio
is against embedded/memory in the same run.

Concurrent rows: --clients threads over two cluster workers in one process, decide +
purchase pairs per second (median over the repeats), beside the single-thread rate of
the same mode: how much Redis's grouping of concurrent writes' fsyncs gives back.

Run as a script: python bench/bench_cluster.py [--n 500] [--repeats 5] [--clients 8]
[--json PATH]
Needs redis-server on the PATH and the cluster extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from promobandit.service.config import LimitsConfig, from_dict
from promobandit.service.runtime import DecisionService
from promobandit.service.schemas import build_schemas

ENGINE = {"budget": {"amount": 1e9}, "expire_every_seconds": 3600.0,
          "caps": {"max_offers_per_day": 1_000_000}}
BASKET = {"lines": [{"item_id": 1, "category": 0, "unit_price": 40.0, "unit_cost": 20.0,
                     "quantity": 1}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis(folder: Path, appendfsync: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(folder), "--appendonly", "yes", "--appendfsync",
                             appendfsync, "--save", ""], stdout=subprocess.DEVNULL)
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def _service(kind: str, folder: Path, url: str = "", appendfsync: str = "always") -> Any:
    storage: dict[str, Any] = {"kind": kind, "dir": str(folder)}
    if kind == "redis":
        storage.update(url=url, appendfsync=appendfsync, namespace=f"bench{time.time_ns()}",
                       sync_interval_ms=50.0)
    cfg = from_dict({"privacy": {"key": "bench-privacy-key-0123456789abcdef"},
                     "server": {"log_level": "warning"}, "engine": ENGINE,
                     "storage": storage}, environ={})
    if kind == "redis":
        from promobandit.service.cluster import ClusterService

        return ClusterService(cfg)
    return DecisionService(cfg)


def _time(svc: Any, n: int, schemas: Any) -> tuple[float, float]:
    """Microseconds per decide and per feedback (n of each)."""
    loop = asyncio.new_event_loop()
    reqs = [schemas.DecideRequest.model_validate({"user": f"u{i}", "basket": BASKET})
            for i in range(n)]
    t0 = time.perf_counter()
    ids = []
    for r in reqs:
        d, seq = svc.apply_decide(svc.prepare_decide(r))
        loop.run_until_complete(svc.journal.durable(seq))
        ids.append(d.id)
    t1 = time.perf_counter()
    fbs = [schemas.FeedbackRequest.model_validate({"decision_id": i, "event_id": "b",
                                                   "purchased": True}) for i in ids]
    t2 = time.perf_counter()
    for f in fbs:
        res, seq = svc.apply_feedback(svc.prepare_feedback(f))
        loop.run_until_complete(svc.journal.durable(seq))
        assert res.status == "finalised", res
    t3 = time.perf_counter()
    loop.close()
    return (t1 - t0) / n * 1e6, (t3 - t2) / n * 1e6


def _concurrent(services: list[Any], clients: int, n: int, schemas: Any) -> float:
    """Decide + purchase pairs per second, `clients` threads spread over the services
    (in process: the threads wait on Redis with the GIL released, so Redis groups the
    fsyncs of concurrent writes as it does for concurrent HTTP workers)."""
    import threading

    def run(k: int) -> None:
        svc = services[k % len(services)]
        for i in range(n):
            d, _ = svc.apply_decide(svc.prepare_decide(schemas.DecideRequest.model_validate(
                {"user": f"c{k}-{i}", "basket": BASKET})))
            res, _ = svc.apply_feedback(svc.prepare_feedback(
                schemas.FeedbackRequest.model_validate(
                    {"decision_id": d.id, "event_id": "b", "purchased": True})))
            assert res.status == "finalised", res

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="bench/results/cluster.json")
    ap.add_argument("--clients", type=int, default=8,
                    help="threads of the concurrent rows (over 2 cluster workers)")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        print("bench_cluster: redis-server is not installed", file=sys.stderr)
        return 2
    schemas = build_schemas(LimitsConfig(), None)
    rows: dict[str, dict[str, list[float]]] = {}
    conc: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        servers = {m: _redis(base / f"redis-{m}", m) for m in ("always", "everysec")
                   if (base / f"redis-{m}").mkdir() is None}
        try:
            for rep in range(args.repeats):
                setups = [("embedded/memory", "memory", "", "always"),
                          ("embedded/files", "files", "", "always"),
                          ("cluster/always", "redis", servers["always"][1], "always"),
                          ("cluster/everysec", "redis", servers["everysec"][1], "everysec")]
                for name, kind, url, mode in setups:
                    svc = _service(kind, base / f"state-{name.replace('/', '-')}-{rep}", url,
                                   mode)
                    svc.start()
                    try:
                        _time(svc, 20, schemas)  # warm-up (imports, scripts loaded)
                        dec, fb = _time(svc, args.n, schemas)
                    finally:
                        svc.stop()
                    r = rows.setdefault(name, {"decide": [], "feedback": []})
                    r["decide"].append(dec)
                    r["feedback"].append(fb)
                for mode in ("always", "everysec"):
                    pair = [_service("redis", base / f"conc-{mode}-{rep}-{i}",
                                     servers[mode][1], mode) for i in range(2)]
                    for svc in pair:
                        svc.start()
                    try:
                        rate = _concurrent(pair, args.clients, max(1, args.n // args.clients),
                                           schemas)
                    finally:
                        for svc in pair:
                            svc.stop()
                    conc.setdefault(mode, []).append(rate)
        finally:
            for proc, _ in servers.values():
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)

    def med(v: list[float]) -> float:
        return sorted(v)[len(v) // 2]

    print(f"Machine: {machine()}; load average before/after is in the JSON. "
          f"{args.n} requests x {args.repeats} repeats, one thread, no HTTP.")
    print("| mode | decide us [min, max] | vs embedded/memory | feedback us [min, max] "
          "| vs embedded/memory |")
    print("|---|---|---|---|---|")
    base_d = med(rows["embedded/memory"]["decide"])
    base_f = med(rows["embedded/memory"]["feedback"])
    out = {"machine": machine(), "n": args.n, "repeats": args.repeats,
           "loadavg": os.getloadavg(), "rows": {}}
    for name, r in rows.items():
        d, f = med(r["decide"]), med(r["feedback"])
        print(f"| {name} | {d:.0f} [{min(r['decide']):.0f}, {max(r['decide']):.0f}] | "
              f"{d / base_d:.2f}x | {f:.0f} [{min(r['feedback']):.0f}, "
              f"{max(r['feedback']):.0f}] | {f / base_f:.2f}x |")
        out["rows"][name] = {"decide_us": r["decide"], "feedback_us": r["feedback"],
                             "decide_median_us": d, "feedback_median_us": f}
    print(f"\nConcurrent, {args.clients} client threads over 2 cluster workers in one "
          "process (decide + purchase pairs per second, median [min, max]); single-thread "
          "rate of the same mode beside it:")
    print("| mode | pairs/s | single-thread pairs/s | ratio |")
    print("|---|---|---|---|")
    for mode, v in conc.items():
        r = rows[f"cluster/{mode}"]
        single = 1e6 / (med(r["decide"]) + med(r["feedback"]))
        print(f"| cluster/{mode} | {med(v):.0f} [{min(v):.0f}, {max(v):.0f}] | "
              f"{single:.0f} | {med(v) / single:.2f}x |")
        out["concurrent"] = {**out.get("concurrent", {}), mode: v}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
