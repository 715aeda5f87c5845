"""A small load generator for the decision service (used by the load tests and
bench/bench_service.py).

The client is a minimal HTTP/1.1 keep-alive connection over asyncio streams rather than
httpx: on a 2-core machine the client shares the CPU with the server, and httpx costs
several times more CPU per request than the few lines here, which would measure the
client instead of the server.

``run_load`` drives ``clients`` connections for ``duration`` seconds, mixing decide and
feedback requests. With ``rate`` (requests per second, all clients together) the load is
open-loop: each request has a scheduled start and its latency counts from that start,
so a server that falls behind shows it in the latency (no coordinated omission); without
``rate`` every client sends its next request as soon as the previous one is answered
(closed loop, for maximum throughput).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson


class HttpConnection:
    """One keep-alive HTTP/1.1 connection (JSON in, status and body out)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {host}:{port}\r\n{extra}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self._writer = self._reader = None

    async def request(self, method: str, path: str, body: bytes | None = None
                      ) -> tuple[int, bytes]:
        """Sends one request and reads the whole response: (status, body)."""
        if self._writer is None:
            await self.connect()
        assert self._reader is not None and self._writer is not None
        if body is None:
            head = f"{method} {path} HTTP/1.1\r\n{self._head}\r\n"
            self._writer.write(head.encode())
        else:
            head = (f"{method} {path} HTTP/1.1\r\n{self._head}Content-Type: application/json"
                    f"\r\nContent-Length: {len(body)}\r\n\r\n")
            self._writer.write(head.encode() + body)
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionResetError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await self._reader.readexactly(length) if length else b""
        return status, data


def decide_body(rs: random.Random, users: int = 10_000, n_features: int | None = None
                ) -> dict[str, Any]:
    """A plausible decide request: a known shopper, 1-4 basket lines, 2 groups."""
    lines = []
    for _ in range(rs.randint(1, 4)):
        price = round(rs.uniform(5.0, 80.0), 2)
        lines.append({"item_id": rs.randrange(100_000), "category": rs.randrange(20),
                      "unit_price": price, "unit_cost": round(price * rs.uniform(0.3, 0.7), 2),
                      "quantity": rs.randint(1, 3)})
    body: dict[str, Any] = {"user": f"shopper-{rs.randrange(users)}@example.com",
                            "basket": {"lines": lines}, "group": rs.choice(("new", "returning"))}
    if n_features is not None:
        body["context"] = [round(rs.gauss(0.0, 1.0), 6) for _ in range(n_features)]
    return body


@dataclasses.dataclass
class LoadResult:
    """What a load run saw. Latencies in seconds; ``errors`` holds (route, status, body)
    of every non-200 answer; ``decisions`` maps decision id -> offer id; ``feedback``
    holds (decision id, event id, purchased, status, reward) of every answered feedback."""

    seconds: float
    decide_latency: list[float] = dataclasses.field(default_factory=list)
    feedback_latency: list[float] = dataclasses.field(default_factory=list)
    errors: list[tuple[str, int, bytes]] = dataclasses.field(default_factory=list)
    decisions: dict[str, str] = dataclasses.field(default_factory=dict)
    feedback: list[tuple[str, str, bool, str, float | None]] = dataclasses.field(
        default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.decide_latency) + len(self.feedback_latency)

    def summary(self) -> dict[str, float]:
        """Throughput (answered requests per second) and latency percentiles (ms)."""
        out: dict[str, float] = {"seconds": self.seconds, "requests": float(self.requests),
                                 "throughput": self.requests / self.seconds if self.seconds else 0.0}
        for name, lat in (("decide", self.decide_latency), ("feedback", self.feedback_latency)):
            if lat:
                a = np.asarray(lat) * 1e3
                out[f"{name}_n"] = float(len(lat))
                out[f"{name}_p50_ms"] = float(np.percentile(a, 50))
                out[f"{name}_p99_ms"] = float(np.percentile(a, 99))
        return out


async def run_load(host: str, port: int, *, clients: int, duration: float,
                   rate: float | None = None, feedback_share: float = 0.5,
                   purchase_prob: float = 0.3, api_key: str | None = None,
                   n_features: int | None = None, seed: int = 0,
                   make_decide: Callable[[random.Random], dict[str, Any]] | None = None
                   ) -> LoadResult:
    """Drives decide and feedback requests (see the module doc). ``feedback_share`` of the
    requests are feedback for a decision this client got earlier (a purchase with
    ``purchase_prob``, else a click), each decision getting at most one event."""
    headers = {"X-API-Key": api_key} if api_key else {}
    res = LoadResult(seconds=0.0)
    make = make_decide or (lambda rs: decide_body(rs, n_features=n_features))
    interval = clients / rate if rate else 0.0
    t_start = time.perf_counter()
    t_end = t_start + duration

    async def client(ci: int) -> None:
        rs = random.Random(seed * 1_000_003 + ci)
        conn = HttpConnection(host, port, headers)
        await conn.connect()
        open_ids: list[str] = []
        n = 0
        next_at = t_start + rs.random() * interval
        try:
            while True:
                if rate:
                    now = time.perf_counter()
                    if next_at >= t_end:
                        break
                    if next_at > now:
                        await asyncio.sleep(next_at - now)
                    started = next_at
                    next_at += interval
                else:
                    started = time.perf_counter()
                    if started >= t_end:
                        break
                if open_ids and rs.random() < feedback_share:
                    did = open_ids.pop(rs.randrange(len(open_ids)))
                    buy = rs.random() < purchase_prob
                    eid = f"c{ci}-e{n}"
                    fb = {"decision_id": did, "event_id": eid,
                          "purchased": buy, "clicked": not buy}
                    status, data = await conn.request("POST", "/v1/feedback", orjson.dumps(fb))
                    res.feedback_latency.append(time.perf_counter() - started)
                    if status == 200:
                        r = orjson.loads(data)
                        res.feedback.append((did, eid, buy, r["status"], r["reward"]))
                    else:
                        res.errors.append(("/v1/feedback", status, data))
                else:
                    status, data = await conn.request("POST", "/v1/decide",
                                                      orjson.dumps(make(rs)))
                    res.decide_latency.append(time.perf_counter() - started)
                    if status == 200:
                        d = orjson.loads(data)
                        res.decisions[d["decision_id"]] = d["offer_id"]
                        open_ids.append(d["decision_id"])
                    else:
                        res.errors.append(("/v1/decide", status, data))
                n += 1
        finally:
            await conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    res.seconds = time.perf_counter() - t_start
    return res


__all__ = ["HttpConnection", "LoadResult", "decide_body", "run_load"]
