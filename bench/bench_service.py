"""Throughput and latency of `promobandit serve` on loopback, beside the in-process cost.

Baselines in the same run (one thread, no HTTP), each validating inside its timed region
as the HTTP path does:
  engine: the request's basket built and checked (Basket.from_lines) from the parsed JSON
    body, then Engine.decide / Engine.feedback on the service's engine configuration;
  service: the JSON body validated into the request model, then DecisionService.prepare_*
    + apply_* (checks, pseudonym, log record in memory), each answer checked.
Service: `python -m promobandit serve --server NAME` as a subprocess (durable files, fsync
on unless --no-fsync), once per HTTP server of --servers (Granian, uvicorn) and value of
--threads, all on the same app, driven closed-loop on keep-alive connections by 1, 8 and 64 concurrent
clients (a small asyncio HTTP/1.1 client, bodies built in advance) for --seconds each:
  decide: POST /v1/decide; feedback: a purchase for a distinct decision made beforehand.
Only answers with status 200 whose body parses and carries the expected fields (checked
by the client inside the timed region, before the latency is taken) count: req/s is
those per second, p50 and p99 their latencies, and any other answer is reported as an
error beside the row. Also the server's CPU time per successful request (user + system, all
its threads; read from /proc), which is less disturbed than wall time by other load on the
machine, and the load generator's own CPU per request and its share of the CPU both spent
(client / (client + server)): the load generator is this script's asyncio HTTP/1.1
keep-alive client (promobandit.service.loadgen.HttpConnection), in this process. Each
figure is the median of --repeats runs, with the min and max beside it; the servers take
turns at every point, so other load on the machine falls on them alike, and the ratio
of their CPU per request is printed per point.

Run as a script: python bench/bench_service.py [--quick] [--servers granian uvicorn]
[--threads 0 4] [--json PATH]. uvicorn runs with uvloop and httptools when they are
installed, else asyncio and h11; Granian's embedded server with uvloop for the app (the
table's header says which).

Cluster hook: --workers N and --redis-url URL are handed to every `promobandit serve`
(as `--workers N --redis-url URL`) for the scale-out mode of issue 12; this script only
passes them on, and a serve that does not know them fails with its own message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
try:  # the installed package (with its compiled extension) when there is one
    import promobandit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "python"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python"), *filter(None, [os.environ.get("PYTHONPATH")])])

from promobandit.service.loadgen import HttpConnection, decide_body  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

try:  # the load generator on uvloop when there is one: less of the shared CPU for it
    import uvloop

    run_client = uvloop.run
    CLIENT_LOOP = "uvloop"
except ImportError:
    run_client = asyncio.run
    CLIENT_LOOP = "asyncio"

PRIVACY_KEY = "bench-privacy-key-0123456789"
API_KEY = "bench-api-key"
POOL = 2000  # distinct request bodies cycled through by the clients


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks()


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --- in-process baselines -------------------------------------------------------------------
def in_process(repeats: int, n: int) -> dict[str, Any]:
    from promobandit.service.config import from_dict
    from promobandit.service.runtime import DecisionService, build_engine
    from promobandit.service.schemas import build_schemas

    cfg = from_dict({"privacy": {"key": PRIVACY_KEY}, "storage": {"kind": "memory"},
                     "server": {"threads": 0}}, environ={})
    rs = random.Random(0)
    bodies = [decide_body(rs) for _ in range(POOL)]
    out: dict[str, Any] = {}

    def engine_run() -> tuple[float, float]:
        from promobandit.offers import Basket

        eng = build_engine(cfg, __import__("promobandit.offers", fromlist=["x"])
                           .default_catalogue(), None)

        def decide(b: dict[str, Any]) -> str:
            basket = Basket.from_lines([(ln["item_id"], ln["category"], ln["unit_price"],
                                         ln["unit_cost"], ln["quantity"])
                                        for ln in b["basket"]["lines"]])
            d = eng.decide(b["user"], basket=basket, group=b["group"])
            if not d.id:
                raise SystemExit("engine baseline: a decision without an id")
            return d.id

        t0 = time.perf_counter()
        ids = [decide(bodies[i % POOL]) for i in range(n)]
        t1 = time.perf_counter()
        for i, d in enumerate(ids):
            if eng.feedback(d, f"e{i}", purchased=True).status != "finalised":
                raise SystemExit("engine baseline: a purchase did not finalise its decision")
        t2 = time.perf_counter()
        return (t1 - t0) / n, (t2 - t1) / n

    def service_run() -> tuple[float, float]:
        svc = DecisionService(cfg)
        svc.start()
        s = build_schemas(cfg.limits, None)
        raw = [orjson.dumps(b) for b in bodies]  # what arrives on the wire
        t0 = time.perf_counter()
        ids = []
        for i in range(n):
            d = svc.apply_decide(svc.prepare_decide(
                s.DecideRequest.model_validate_json(raw[i % POOL])))[0]
            if not d.id:
                raise SystemExit("service baseline: a decision without an id")
            ids.append(d.id)
        t1 = time.perf_counter()
        fb_raw = [orjson.dumps({"decision_id": d, "event_id": f"e{i}", "purchased": True})
                  for i, d in enumerate(ids)]
        t2 = time.perf_counter()
        for body in fb_raw:
            r, _ = svc.apply_feedback(svc.prepare_feedback(
                s.FeedbackRequest.model_validate_json(body)))
            if r.status != "finalised":
                raise SystemExit("service baseline: a purchase did not finalise its decision")
        t3 = time.perf_counter()
        svc.stop(snapshot=False)
        return (t1 - t0) / n, (t3 - t2) / n

    for name, fn in (("engine", engine_run), ("service (no HTTP)", service_run)):
        fn()  # warm-up
        runs = [fn() for _ in range(repeats)]
        out[name] = {"decide_us": summarise([r[0] * 1e6 for r in runs]),
                     "feedback_us": summarise([r[1] * 1e6 for r in runs])}
    return out


def snapshot_cost(sizes: list[int]) -> list[dict[str, float]]:
    """Time of one snapshot (the engine state as bytes, under the apply lock, then written
    and fsynced) with n decisions pending; requests wait for the first part."""
    from promobandit.service.config import from_dict
    from promobandit.service.runtime import DecisionService
    from promobandit.service.schemas import build_schemas

    out = []
    rs = random.Random(3)
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = from_dict({"privacy": {"key": PRIVACY_KEY}, "storage": {"dir": tmp}},
                            environ={})
            svc = DecisionService(cfg)
            svc.start()
            s = build_schemas(cfg.limits, None)
            for i in range(0, n, 256):
                reqs = [decide_body(rs) for _ in range(min(256, n - i))]
                svc.apply_batch(svc.prepare_batch(
                    s.DecideBatchRequest.model_validate({"requests": reqs})))
            t0 = time.perf_counter()
            with svc._apply_lock:
                blob = svc.engine.to_bytes()
            locked = time.perf_counter() - t0
            t0 = time.perf_counter()
            svc.snapshot()
            total = time.perf_counter() - t0
            svc.stop(snapshot=False)
            out.append({"pending": float(n), "locked_ms": locked * 1e3,
                        "total_ms": total * 1e3, "mbytes": len(blob) / 1e6})
    return out


# --- the server -------------------------------------------------------------------------------
class Server:
    """`promobandit serve --server NAME` as a subprocess on a free loopback port."""

    def __init__(self, name: str, threads: int, fsync: bool, workdir: Path,
                 cluster: list[str] | None = None) -> None:
        self.name, self.threads = name, threads
        tag = f"{name}-{threads}-{int(fsync)}"
        cfg = workdir / f"bench-{tag}.toml"
        cfg.write_text(
            f'[privacy]\nkey = "{PRIVACY_KEY}"\n[server]\napi_key = "{API_KEY}"\n'
            f'log_level = "warning"\nthreads = {threads}\n'
            f'[storage]\ndir = "state-{tag}"\nfsync = {str(fsync).lower()}\n'
            # No snapshot during the measurement: its cost is measured on its own.
            f'snapshot_interval_seconds = 3600.0\nsnapshot_every_events = 100000000\n')
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promobandit", "serve", "--config", str(cfg), "--port", "0",
             "--server", name, *(cluster or [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)", line)
        if m is None:
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.host, self.port = m.group(1), int(m.group(2))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=120)


def valid_answer(path: str, status: int, data: bytes) -> bool:
    """A 200 whose body is the answer the route promises (checked field by field)."""
    if status != 200:
        return False
    try:
        a = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    if path == "/v1/decide":
        return (isinstance(a, dict) and isinstance(a.get("decision_id"), str)
                and bool(a["decision_id"]) and isinstance(a.get("offer_id"), str))
    return isinstance(a, dict) and a.get("status") in ("applied", "finalised")


async def closed_loop(host: str, port: int, clients: int, seconds: float,
                      bodies: list[tuple[str, bytes]]) -> tuple[int, list[float], int]:
    """(valid answers, their latencies, other answers); client i sends bodies i,
    i+clients, ... Each answer is validated before its latency is taken."""
    lat: list[float] = []
    bad = 0
    t_end = time.perf_counter() + seconds

    async def client(ci: int) -> None:
        nonlocal bad
        conn = HttpConnection(host, port, {"X-API-Key": API_KEY})
        await conn.connect()
        i = ci
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end or i >= len(bodies):
                break
            path, body = bodies[i]
            status, data = await conn.request("POST", path, body)
            if valid_answer(path, status, data):
                lat.append(time.perf_counter() - t0)
            else:
                bad += 1
            i += clients
        await conn.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    return len(lat), lat, bad


def measure(server: Server, clients: int, seconds: float, workload: str,
            rs: random.Random) -> dict[str, float]:
    # Enough bodies for the fastest plausible rate; feedback needs one decision each.
    n = int(seconds * 8_000)
    if workload == "decide":
        pool = [("/v1/decide", orjson.dumps(decide_body(rs))) for _ in range(POOL)]
        bodies = [pool[i % POOL] for i in range(n)]
    else:
        bodies = prepare_feedback(server, n, rs)
    c0 = cpu_seconds(server.proc.pid)
    own0 = time.process_time()
    t0 = time.perf_counter()
    done, lat, bad = run_client(closed_loop(server.host, server.port, clients, seconds, bodies))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(server.proc.pid) - c0
    client = time.process_time() - own0
    if done == 0:
        raise SystemExit(f"{server.name}, {workload}, {clients} clients: no valid 200 answer "
                         f"({bad} others)")
    a = np.asarray(lat) * 1e3
    return {"throughput": done / wall, "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "server_cpu_us": cpu / done * 1e6,
            "client_cpu_us": client / done * 1e6,
            "client_share": client / (client + cpu) if client + cpu > 0 else 0.0,
            "errors": float(bad)}


def prepare_feedback(server: Server, n: int, rs: random.Random) -> list[tuple[str, bytes]]:
    """Makes n decisions (batches of 256; one by one in cluster mode, which serves no
    batch) and returns a purchase body for each."""
    async def make() -> list[str]:
        conn = HttpConnection(server.host, server.port, {"X-API-Key": API_KEY})
        ids: list[str] = []
        batched = True
        while len(ids) < n:
            if batched:
                reqs = [decide_body(rs) for _ in range(256)]
                status, data = await conn.request("POST", "/v1/decide/batch",
                                                  orjson.dumps({"requests": reqs}))
                if status == 422 and b"cluster mode" in data:
                    batched = False
                    continue
                assert status == 200, data
                ids += [d["decision_id"] for d in orjson.loads(data)["decisions"]]
            else:
                status, data = await conn.request("POST", "/v1/decide",
                                                  orjson.dumps(decide_body(rs)))
                assert status == 200, data
                ids.append(orjson.loads(data)["decision_id"])
        await conn.close()
        return ids[:n]

    ids = asyncio.run(make())
    return [("/v1/feedback", orjson.dumps({"decision_id": d, "event_id": f"buy-{i}",
                                           "purchased": True})) for i, d in enumerate(ids)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 1.5 s per point")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", nargs="+", default=["granian", "uvicorn"],
                    choices=["granian", "uvicorn"], help="HTTP servers to compare")
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="server.threads values to compare")
    ap.add_argument("--workers", type=int, default=None,
                    help="handed to promobandit serve as --workers N (cluster mode)")
    ap.add_argument("--redis-url", default=None,
                    help="handed to promobandit serve as --redis-url URL (cluster mode)")
    ap.add_argument("--skip-in-process", action="store_true",
                    help="leave out the in-process baselines and the snapshot cost")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "service.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seconds = 1, 1.5

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    try:
        from importlib.metadata import version
        granian = version("granian")
    except Exception:  # not installed: only uvicorn can be measured
        granian = "not installed"
    cluster = [*(["--workers", str(args.workers)] if args.workers is not None else []),
               *(["--redis-url", args.redis_url] if args.redis_url else [])]
    env = {"machine": machine(), "python": platform.python_version(),
           "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
           "uvicorn_loop": loop, "uvicorn_http": http, "granian": granian,
           "client": f"loadgen.HttpConnection on {CLIENT_LOOP}", "fsync": not args.no_fsync,
           "serve_extra_args": cluster}
    print(f"promobandit serve on loopback: {env}")
    results: dict[str, Any] = {"environment": env, "http": []}
    if not args.skip_in_process:
        results["in_process"] = in_process(args.repeats, 3000)
        print("\nin-process cost per request (us, median [min-max]):")
        for name, r in results["in_process"].items():
            d, f = r["decide_us"], r["feedback_us"]
            print(f"  {name:<20} decide {d['median']:7.1f} [{d['min']:.1f}-{d['max']:.1f}]   "
                  f"feedback {f['median']:7.1f} [{f['min']:.1f}-{f['max']:.1f}]")
        results["snapshot"] = snapshot_cost([10_000] if args.quick else [10_000, 100_000])
        print("\nsnapshot with n decisions pending (requests wait while the state is copied):")
        for r in results["snapshot"]:
            print(f"  {r['pending']:>9,.0f} pending: {r['mbytes']:6.1f} MB, under the lock "
                  f"{r['locked_ms']:7.0f} ms, written and fsynced {r['total_ms']:7.0f} ms")
    rs = random.Random(1)
    variants = [(name, t) for name in args.servers for t in args.threads]
    with tempfile.TemporaryDirectory() as tmp:
        # All servers run at once and the variants take turns at every point, so that
        # other load on the machine falls on them alike.
        servers: dict[tuple[str, int], Server] = {}
        try:
            for name, t in variants:
                servers[(name, t)] = Server(name, t, not args.no_fsync, Path(tmp), cluster)
            for server in servers.values():
                measure(server, 8, 1.0, "decide", rs)  # warm-up
            for workload in ("decide", "feedback"):
                for clients in args.clients:
                    runs: dict[tuple[str, int], list[dict[str, float]]] = {
                        v: [] for v in servers}
                    for _ in range(args.repeats):
                        for v, server in servers.items():
                            runs[v].append(measure(server, clients, args.seconds, workload, rs))
                    for (name, t), rr in runs.items():
                        results["http"].append(
                            {"server": name, "threads": t, "workload": workload,
                             "clients": clients,
                             **{k: summarise([r[k] for r in rr]) for k in rr[0]}})
        finally:
            for server in servers.values():
                server.stop()
    print(f"\nHTTP, closed loop ({args.seconds:g} s per point, median of {args.repeats}; "
          "[min-max]); client = the load generator, in this process")
    head = (f"{'server':<8}{'threads':>7} {'route':<9}{'clients':>8}{'req/s':>20}"
            f"{'p50 ms':>16}{'p99 ms':>18}{'server CPU us/req':>20}{'client us/req':>15}"
            f"{'client share':>13}")
    print(head + "\n" + "-" * len(head))

    def cell(r: dict[str, Any], k: str, fmt: str) -> str:
        v = r[k]
        return f"{v['median']:{fmt}} [{v['min']:{fmt}}-{v['max']:{fmt}}]"

    for r in results["http"]:
        print(f"{r['server']:<8}{r['threads']:>7} {r['workload']:<9}{r['clients']:>8}"
              f"{cell(r, 'throughput', ',.0f'):>20}{cell(r, 'p50_ms', '.1f'):>16}"
              f"{cell(r, 'p99_ms', '.1f'):>18}{cell(r, 'server_cpu_us', '.0f'):>20}"
              f"{r['client_cpu_us']['median']:>15.0f}{r['client_share']['median']:>13.0%}")
        if r["errors"]["max"]:
            print(f"        ({r['errors']['max']:.0f} answers not 200 or not valid, left out "
                  "of req/s and latency)")
    if len(args.servers) > 1:
        base = args.servers[-1]
        print(f"\nserver CPU per request, ratio to {base} (median; < 1: cheaper than {base}):")
        index = {(r["server"], r["threads"], r["workload"], r["clients"]): r
                 for r in results["http"]}
        results["cpu_ratio"] = []
        for (name, t, workload, clients), r in index.items():
            if name == base:
                continue
            b = index[(base, t, workload, clients)]
            ratio = r["server_cpu_us"]["median"] / b["server_cpu_us"]["median"]
            thr = r["throughput"]["median"] / b["throughput"]["median"]
            results["cpu_ratio"].append({"server": name, "base": base, "threads": t,
                                         "workload": workload, "clients": clients,
                                         "cpu_ratio": ratio, "throughput_ratio": thr})
            print(f"  {name} / {base}, threads {t}, {workload:<8} {clients:>3} clients: "
                  f"CPU x{ratio:.2f}, req/s x{thr:.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
