"""Helpers of the cluster tests (no tests here): a real ``redis-server`` on a free loopback
port in a temporary folder, with its append-only file fsynced on every write, stopped by
its pid; configurations of cluster workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from promobandit.service.config import ServiceConfig, from_dict
from tests.test_service_support import config_dict, merge

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (apt-get install redis-server; CI installs it)")
# Bound on waiting for redis-server to answer after a start (seconds).
REDIS_START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (redis-server takes no port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>, data in ``folder`` (AOF, appendfsync
    always, no RDB snapshots). ``kill9`` and ``start`` again reuse the port and folder, so
    a restart recovers from the append-only file."""

    def __init__(self, folder: Path, appendfsync: str = "always") -> None:
        assert REDIS_SERVER is not None
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: list[Any] = []

    def client(self) -> Any:
        """A Redis client of the tests' own (closed by stop)."""
        from promobandit.service.cluster import connect

        c = connect(self.url)
        self._clients.append(c)
        return c

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes",
             "--appendfsync", self.appendfsync, "--save", "", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer")

    def kill9(self) -> None:
        """SIGKILL by pid: nothing is flushed beyond what the AOF already holds."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        self._clients = []
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def cluster_dict(redis_url: str, state_dir: Path, **sections: Any) -> dict[str, Any]:
    """A cluster worker's configuration (decision log under state_dir/decisions)."""
    base = config_dict(state_dir)
    base["storage"] = {"kind": "redis", "url": redis_url, "dir": str(state_dir),
                       "sync_interval_ms": 20.0, "worker_timeout_ms": 500, "lease_ms": 2000}
    return merge(base, sections)


def cluster_config(redis_url: str, state_dir: Path, **sections: Any) -> ServiceConfig:
    return from_dict(cluster_dict(redis_url, state_dir, **sections), environ={})
