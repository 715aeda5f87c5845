"""Where the time of one decide (and one feedback) request goes, end to end.

Sections, each the mean CPU time per request over --n requests (CPU of the thread that
runs them, so that other jobs on a shared machine do not stretch them), median of
--repeats runs [min-max], one thread, on the service `promobandit serve` builds (durable files in a
temporary folder, fsync on unless --no-fsync):

  http parse    the request's bytes through httptools (uvicorn's HTTP/1.1 parser; Granian
                parses in Rust, outside this process's Python thread);
  validate      the body into the request model (pydantic, strict JSON mode, one pass);
  prepare       DecisionService.prepare_*: checks, the user's keyed pseudonym, the basket's
                arrays, the log record's JSON, the decision id;
  wal append    Journal.append (the record written to the log file, not yet synced);
  engine        Engine.decide / Engine.feedback (policy, pricing, limits, decision log);
  apply, rest   the apply lock, counters and metrics around the two above;
  durable       the wait for the group fsync covering the record, one request at a time
                (the process's CPU meanwhile, the flusher thread's fsync included, and
                the wall time; with many clients one fsync covers a whole group, so this is
                the cost per group, not per request);
  response      the answer's dict and its JSON (orjson);
  edge + ASGI   the whole ASGI app's process CPU (EdgeMiddleware: API key, body limit,
                metrics; the route; the response messages; called in-process), minus the
                CPU of the sections above (the difference of the medians, and of the
                minima: on a shared machine the least disturbed run is the closest to
                the code's own cost).

Each section is timed on its own over the same bodies, in the request's order, with the
service's own functions (the engine's and the journal's calls are timed by wrapping the
service's instances' methods, so the apply step is the one the server runs). Then
cProfile's top functions of the in-process ASGI loop; and the ASGI app's process CPU per
request when 1, 8 and 64 in-process clients call it at once (no sockets: what the server
would cost with a free HTTP layer). With --http, a service with fsync off is served by
each HTTP server (bench/bench_service.py's Server) to one keep-alive client for --seconds,
taking turns with the same app called in-process: the difference of their CPU per request
is what the HTTP server itself costs (socket I/O, parsing, event loop).

Run: python bench/profile_service.py [--n 2000] [--repeats 5] [--http] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine
from bench_service import API_KEY, PRIVACY_KEY, Server, measure
from promobandit.service.app import _decision, create_app
from promobandit.service.config import from_dict
from promobandit.service.loadgen import decide_body
from promobandit.service.runtime import DecisionService
from promobandit.service.schemas import build_schemas

REPO = Path(__file__).resolve().parents[1]
# Sections are timed in CPU time of the thread that runs them (other jobs on a shared
# machine stretch wall time, not this), so that they add up to the ASGI app's CPU.
CLOCK = time.thread_time_ns
# The request models of each service, built once (a fresh model's first calls are slower).
SCHEMAS: dict[int, Any] = {}


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def wire(path: str, body: bytes) -> bytes:
    """The request as the load generator sends it."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def http_parse(requests: list[bytes]) -> float:
    """Seconds per request to parse with httptools, collecting what uvicorn collects."""
    import httptools

    class Protocol:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.body = b""
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_body(self, body: bytes) -> None:
            self.body += body

    t0 = CLOCK()
    for raw in requests:
        proto = Protocol()
        parser = httptools.HttpRequestParser(proto)
        parser.feed_data(raw)
        httptools.parse_url(proto.url)
    return (CLOCK() - t0) / len(requests) / 1e9


class Timed:
    """Wraps a bound method on an instance, adding its thread CPU time to ``total`` (ns)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name
        self.inner = getattr(owner, name)
        self.total = 0
        setattr(owner, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = CLOCK()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.total += CLOCK() - t0

    def restore(self) -> None:
        setattr(self.owner, self.name, self.inner)


def make_service(tmp: Path, fsync: bool) -> DecisionService:
    cfg = from_dict({"privacy": {"key": PRIVACY_KEY}, "server": {"api_key": API_KEY},
                     "storage": {"dir": str(tmp), "fsync": fsync,
                                 "snapshot_interval_seconds": 3600.0,
                                 "snapshot_every_events": 100_000_000}}, environ={})
    svc = DecisionService(cfg)
    svc.start()
    return svc


def sections(svc: DecisionService, route: str, bodies: list[bytes]) -> dict[str, float]:
    """Seconds per request of each section (see the module doc), for one pass over bodies;
    returns the decision ids too (key 'ids', for feedback bodies) via svc attributes."""
    s = SCHEMAS.setdefault(id(svc), build_schemas(svc.config.limits, svc.n_features))
    n = len(bodies)
    if route == "decide":
        model, prepare, apply = s.DecideRequest, svc.prepare_decide, svc.apply_decide
        render: Callable[[Any], Any] = _decision
        engine_name = "decide"
    else:
        model, prepare, apply = s.FeedbackRequest, svc.prepare_feedback, svc.apply_feedback
        def render(r: Any) -> Any:
            return {"status": r.status, "decision_id": r.decision_id, "reward": r.reward}

        engine_name = "feedback"
    out: dict[str, float] = {"http parse": http_parse([wire(f"/v1/{route}", b)
                                                       for b in bodies])}
    t0 = CLOCK()
    reqs = [model.model_validate_json(b) for b in bodies]
    out["validate"] = (CLOCK() - t0) / n / 1e9
    t0 = CLOCK()
    prepared = [prepare(r) for r in reqs]
    out["prepare"] = (CLOCK() - t0) / n / 1e9
    append = Timed(svc.journal, "append")
    engine = Timed(svc.engine, engine_name)
    durable = durable_cpu = durable_thread = 0

    async def run() -> list[Any]:
        # apply, then wait for its fsync, one request after another (as one client does)
        nonlocal durable, durable_cpu, durable_thread
        done = []
        for p in prepared:
            done.append(apply(p))
            c, t, th = time.process_time_ns(), time.perf_counter_ns(), CLOCK()
            await svc.journal.durable(done[-1][1])
            durable += time.perf_counter_ns() - t
            durable_cpu += time.process_time_ns() - c
            durable_thread += CLOCK() - th
        return done

    try:
        t0 = CLOCK()
        applied = asyncio.run(run())
        # this thread's CPU while it waited for the fsync is in durable_cpu
        total = CLOCK() - t0 - durable_thread
    finally:
        append.restore()
        engine.restore()
    out["wal append"] = append.total / n / 1e9
    out["engine"] = engine.total / n / 1e9
    out["apply, rest"] = (total - append.total - engine.total) / n / 1e9
    out["durable"] = durable_cpu / n / 1e9
    out["durable (wall)"] = durable / n / 1e9
    results = [r for r, _ in applied]
    t0 = CLOCK()
    for r in results:
        orjson.dumps(render(r))
    out["response"] = (CLOCK() - t0) / n / 1e9
    if route == "decide":
        svc._profile_ids = [d.id for d in results]  # type: ignore[attr-defined]
    return out


def asgi_loop(app: Any, route: str, bodies: list[bytes], concurrency: int = 1
              ) -> tuple[float, float, list[bytes]]:
    """(wall seconds, process CPU seconds) per request through the whole ASGI app, called
    in-process by ``concurrency`` tasks, each sending its share one request after another
    (as that many keep-alive clients would, without the sockets); and the answers'
    bodies."""
    answers: list[bytes] = []
    headers = [(b"host", b"127.0.0.1:8080"), (b"x-api-key", API_KEY.encode()),
               (b"content-type", b"application/json")]

    async def one(body: bytes) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": f"/v1/{route}",
                 "raw_path": f"/v1/{route}".encode(), "query_string": b"", "root_path": "",
                 "headers": [*headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise SystemExit(f"ASGI {route}: status {message['status']}")
            if message["type"] == "http.response.body":
                answers.append(message["body"])

        await app(scope, receive, send)

    async def client(part: list[bytes]) -> None:
        for b in part:
            await one(b)

    async def run() -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(bodies[i::concurrency]) for i in range(concurrency)))
        return ((time.perf_counter() - t0) / len(bodies),
                (time.process_time() - c0) / len(bodies))

    wall, cpu = asyncio.run(run())
    return wall, cpu, answers


def http_cost(args: argparse.Namespace, tmp: Path, rs: random.Random, pool: list[bytes],
              result: dict[str, Any]) -> None:
    """What each HTTP server itself costs: its process's CPU per request to one keep-alive
    client, minus the CPU of the same app called in-process (both with fsync off, so that
    the disk's variance does not swamp the difference), the variants taking turns."""
    n = min(len(pool), 1000)
    svc = make_service(tmp / "http-baseline", False)
    app = create_app(svc, manage_lifecycle=False)
    servers: dict[str, Server] = {}
    rows: dict[tuple[str, str], list[float]] = {}
    try:
        asgi_loop(app, "decide", pool[:200])
        for name in args.servers:
            servers[name] = Server(name, 0, False, tmp)
        for server in servers.values():
            measure(server, 1, 1.0, "decide", rs)  # warm-up
        for rep in range(args.repeats):
            for route in ("decide", "feedback"):
                if route == "decide":
                    _, cpu, answers = asgi_loop(app, "decide", pool[:n])
                    ids = [orjson.loads(a)["decision_id"] for a in answers]
                else:
                    _, cpu, _ = asgi_loop(app, "feedback", feedback_bodies(ids, f"h{rep}"))
                rows.setdefault(("in-process ASGI app", route), []).append(cpu * 1e6)
                for name, server in servers.items():
                    m = measure(server, 1, args.seconds, route, rs)
                    rows.setdefault((name, route), []).append(m["server_cpu_us"])
    finally:
        for server in servers.values():
            server.stop()
        svc.stop(snapshot=False)
    print(f"\nover HTTP, 1 keep-alive client, {args.seconds:g} s a run, fsync off, median of "
          f"{args.repeats} [min-max]: server process CPU per request, and what the HTTP server "
          "adds to the in-process ASGI app (socket I/O, parsing, event loop; medians, and the "
          "least disturbed runs' minima)")
    result["http"] = []
    for route in ("decide", "feedback"):
        base = rows[("in-process ASGI app", route)]
        for name in ("in-process ASGI app", *args.servers):
            v = summarise(rows[(name, route)])
            row = {"server": name, "route": route, "cpu_us": v}
            line = (f"  {route:<9}{name:<22}{v['median']:7.0f} [{v['min']:.0f}-"
                    f"{v['max']:.0f}] us/req")
            if name != "in-process ASGI app":
                row["adds_median_us"] = v["median"] - statistics.median(base)
                row["adds_min_us"] = v["min"] - min(base)
                line += (f"   adds {row['adds_median_us']:5.0f} us (minima: "
                         f"{row['adds_min_us']:.0f})")
            result["http"].append(row)
            print(line)


def feedback_bodies(ids: list[str], tag: str) -> list[bytes]:
    return [orjson.dumps({"decision_id": d, "event_id": f"{tag}-{i}", "purchased": True})
            for i, d in enumerate(ids)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="requests per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--http", action="store_true",
                    help="also serve over HTTP with each server, to one client")
    ap.add_argument("--servers", nargs="+", default=["granian", "uvicorn"],
                    choices=["granian", "uvicorn"])
    ap.add_argument("--seconds", type=float, default=3.0, help="per HTTP measurement")
    ap.add_argument("--top", type=int, default=15, help="cProfile rows to print")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64],
                    help="concurrent in-process clients of the ASGI app")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "profile_service.json"))
    args = ap.parse_args()
    fsync = not args.no_fsync
    print(f"machine: {machine()}; fsync {'on' if fsync else 'off'}; {args.n} requests per "
          f"run, median of {args.repeats} [min-max], microseconds per request")
    rs = random.Random(0)
    pool = [orjson.dumps(decide_body(rs)) for _ in range(args.n)]
    result: dict[str, Any] = {"machine": machine(), "fsync": fsync, "n": args.n,
                              "repeats": args.repeats, "sections": {}, "asgi": {}}
    with tempfile.TemporaryDirectory() as tmp:
        svc = make_service(Path(tmp) / "state", fsync)
        app = create_app(svc, manage_lifecycle=False)
        try:
            asgi_loop(app, "decide", pool[:200])  # warm-up: imports, caches
            runs: dict[str, list[dict[str, float]]] = {"decide": [], "feedback": []}
            asgi: dict[str, list[tuple[float, float]]] = {"decide": [], "feedback": []}
            for rep in range(args.repeats):
                runs["decide"].append(sections(svc, "decide", pool))
                fb = feedback_bodies(svc._profile_ids, f"s{rep}")  # type: ignore[attr-defined]
                runs["feedback"].append(sections(svc, "feedback", fb))
                wall, cpu, answers = asgi_loop(app, "decide", pool)
                asgi["decide"].append((wall, cpu))
                ids = [orjson.loads(a)["decision_id"] for a in answers]
                wall, cpu, _ = asgi_loop(app, "feedback", feedback_bodies(ids, f"a{rep}"))
                asgi["feedback"].append((wall, cpu))
            for route in ("decide", "feedback"):
                names = list(runs[route][0])
                table = {k: summarise([r[k] * 1e6 for r in runs[route]]) for k in names}
                # medians, not per-run differences: one slow run of a section would
                # otherwise swing the difference by its whole excess
                inner = sum(v["median"] for k, v in table.items()
                            if k not in ("http parse", "durable (wall)"))
                cpu = statistics.median(c for _, c in asgi[route]) * 1e6
                inner_min = sum(v["min"] for k, v in table.items()
                                if k not in ("http parse", "durable (wall)"))
                cpu_min = min(c for _, c in asgi[route]) * 1e6
                # no spread: a difference of medians, and [the difference of minima]
                table["edge + ASGI"] = {"median": cpu - inner, "min": cpu_min - inner_min,
                                        "max": float("nan")}
                table["ASGI app total (wall)"] = summarise([w * 1e6 for w, _ in asgi[route]])
                table["ASGI app total (process CPU)"] = summarise(
                    [c * 1e6 for _, c in asgi[route]])
                result["sections"][route] = table
                print(f"\n{route}: where one request's time goes (in-process, one thread)")
                for k, v in table.items():
                    spread = (f"[minima: {v['min']:.1f}]" if k == "edge + ASGI" else
                              f"[{v['min']:.1f}-{v['max']:.1f}]")
                    print(f"  {k:<30}{v['median']:9.1f} {spread}")
            prof = cProfile.Profile()
            prof.enable()
            _, _, answers = asgi_loop(app, "decide", pool)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.top)
            print(f"\ncProfile of {args.n} decide requests through the ASGI app "
                  f"(top {args.top} by own time):")
            print("\n".join(ln for ln in buf.getvalue().splitlines()[6:] if ln.strip()))
            print("\nthe ASGI app alone (no sockets), process CPU per request by concurrent "
                  "clients (group commit shares one fsync among the requests waiting):")
            result["asgi_concurrency"] = []
            for conc in args.concurrency:
                row: dict[str, Any] = {"clients": conc}
                for route in ("decide", "feedback"):
                    cpus = []
                    for rep in range(args.repeats):
                        if route == "decide":
                            _, c, answers = asgi_loop(app, "decide", pool, conc)
                            ids = [orjson.loads(a)["decision_id"] for a in answers]
                        else:
                            _, c, _ = asgi_loop(app, "feedback",
                                                feedback_bodies(ids, f"c{conc}-{rep}"), conc)
                        cpus.append(c * 1e6)
                    row[route] = summarise(cpus)
                result["asgi_concurrency"].append(row)
                d, f = row["decide"], row["feedback"]
                print(f"  {conc:>3} clients: decide {d['median']:6.1f} [{d['min']:.1f}-"
                      f"{d['max']:.1f}] us, feedback {f['median']:6.1f} [{f['min']:.1f}-"
                      f"{f['max']:.1f}] us")
        finally:
            svc.stop(snapshot=False)
        if args.http:
            http_cost(args, Path(tmp), rs, pool, result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
