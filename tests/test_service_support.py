"""Helpers of the service tests (no tests here): configurations, an in-thread uvicorn
server, a subprocess server, storages that fail like a full disk or a failing fsync."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from promobandit.service.config import ServiceConfig, from_dict
from promobandit.service.runtime import DecisionService
from promobandit.service.storage import FileStorage

PRIVACY_KEY = "service-tests-privacy-key-0123456789"
API_KEY = "service-tests-api-key"
# Bounds on waiting for a server (seconds): startup imports numpy/numba/FastAPI.
START_TIMEOUT = 60.0


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_dict(state_dir: Path | None, **sections: Any) -> dict[str, Any]:
    """A test configuration: files in state_dir (memory when None), quiet logs."""
    base: dict[str, Any] = {
        "privacy": {"key": PRIVACY_KEY},
        "server": {"log_level": "warning", "api_key": API_KEY},
        "storage": ({"kind": "memory"} if state_dir is None else
                    {"dir": str(state_dir), "snapshot_interval_seconds": 3600.0}),
        # Expiry is driven explicitly by the tests that want it.
        "engine": {"expire_every_seconds": 3600.0},
    }
    return merge(base, sections)


def make_config(state_dir: Path | None, **sections: Any) -> ServiceConfig:
    return from_dict(config_dict(state_dir, **sections), environ={})


def basket(value: float = 80.0) -> dict[str, Any]:
    return {"lines": [{"item_id": 1, "category": 0, "unit_price": value / 2,
                       "unit_cost": value / 4, "quantity": 1},
                      {"item_id": 2, "category": 1, "unit_price": value / 4,
                       "unit_cost": value / 8, "quantity": 2}]}


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(d: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for test configs (nested tables of scalars and lists)."""
    scalars = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    out = ""
    tables = [k for k, v in d.items() if isinstance(v, dict)]
    if scalars or (prefix and not tables):  # an empty table is written, as [name]
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(scalars) + "\n\n"
    for k, v in d.items():
        if isinstance(v, dict):
            out += to_toml(v, f"{prefix}.{k}" if prefix else k)
    return out


# --- storages that fail -------------------------------------------------------------------


class FlakyDiskStorage(FileStorage):
    """FileStorage whose writes fail like a full disk while ``full`` is set: half of the
    record reaches the file, then OSError(ENOSPC) (the storage must undo the half).
    ``fail_fsync`` makes the log's fdatasync fail with EIO."""

    full = False
    fail_fsync = False

    def _write_all(self, fd: int, data: bytes) -> None:
        if self.full:
            half = len(data) // 2
            if half:
                os.write(fd, data[:half])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super()._write_all(fd, data)

    def _datasync(self, fd: int) -> None:
        if self.fail_fsync:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super()._datasync(fd)


# --- an in-process server on loopback ---------------------------------------------------


class ServerThread:
    """Serves a DecisionService with uvicorn on 127.0.0.1 (a free port) in a thread.

    The service is started (recovered) before serving and stopped after (final snapshot
    unless ``snapshot_on_stop`` is False)."""

    def __init__(self, service: DecisionService, snapshot_on_stop: bool = True) -> None:
        import uvicorn

        from promobandit.service.app import create_app

        self.service = service
        self.snapshot_on_stop = snapshot_on_stop
        if service.state == "created":
            service.start()
        self.app = create_app(service, manage_lifecycle=False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                   access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        self.service.stop(snapshot=self.snapshot_on_stop)


# --- a subprocess server -------------------------------------------------------------------


class ServerProcess:
    """``python -m promobandit serve --config FILE --port 0`` as a child process."""

    def __init__(self, config_file: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.config_file = config_file
        self.args = list(args or [])  # more command-line flags, e.g. ["--server", "uvicorn"]
        # The child inherits the environment, so it imports promobandit from where the
        # tests do (the installed package in CI, with its compiled extension).
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.banner = ""

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promobandit", "serve", "--config", str(self.config_file),
             "--port", "0", *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=self.env)
        assert self.proc.stdout is not None
        line = self._readline_with_timeout(self.proc.stdout, START_TIMEOUT)
        m = re.search(r"listening on (http://\S+) ", line)
        if m is None:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"server did not start: {line!r} {err[-2000:]}")
        self.url, self.banner = m.group(1), line.strip()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=5.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError("server did not become ready")

    def _readline_with_timeout(self, stream: Any, timeout: float) -> str:
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
        t.start()
        t.join(timeout)
        return box[0] if box else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_pipes()

    def stop(self) -> str:
        """SIGTERM (graceful: final snapshot); returns stderr."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


def engine_counts(policy_report: dict[str, Any]) -> dict[str, float]:
    """Per-offer update counts from GET /v1/policy."""
    return {o["id"]: o["updates"] for o in policy_report["offers"]}


def contexts(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).round(6)
