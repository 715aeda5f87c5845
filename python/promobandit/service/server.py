"""The HTTP server under the app: uvicorn or Granian, on a socket bound beforehand.

``promobandit serve --server NAME`` picks one (a flag, not a configuration key: it changes
no behaviour, only the CPU a request costs; both serve the same ``create_app`` app, so
every route answers the same status and body, tests/test_service_server.py):

``uvicorn`` (the default)
    uvicorn with uvloop and httptools (asyncio and h11 where those are missing): HTTP
    parsing, the event loop and the app all on this process's one Python thread.
``granian``
    Granian (a Rust HTTP server, https://github.com/emmett-framework/granian; the
    ``granian`` extra) running the same ASGI app in this process: parsing, keep-alive and
    socket I/O in a Rust thread, the app on a Python event loop (uvloop when installed).
    Granian's *embedded* server is used, so that the engine, its write-ahead log and the
    state folder's lock stay in this one process, as with uvicorn (Granian calls that mode
    experimental, and says so in a warning when it starts).

Why uvicorn is the default: on this project's 2-core machine the server's Python thread is
the bottleneck, and Granian's hand-over of every request between its Rust thread and the
Python loop costs more CPU than httptools' parsing in the loop's own thread: Granian spent
0.89-1.60x uvicorn's server CPU per request over 1 / 8 / 64 keep-alive clients (more at 1
and 8 clients, about the same or less at 64), and ~150 us more per request at one client
(bench/profile_service.py --http). The figures are printed by
``bench/bench_service.py`` (which runs both, taking turns) and quoted in bench/README.md
("Decision service"); rerun it on a machine with more cores before switching.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

from .._extras import require

# The servers `promobandit serve --server` accepts, and the default (the one that spent
# less server CPU per request in bench/bench_service.py; see the module doc).
SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"

# Connections the kernel queues before the server accepts them (listen(2) backlog).
LISTEN_BACKLOG = 2048


def listen_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 takes any free port (read it back
    with ``getsockname``). Binding before the server starts lets the caller report the
    address and keeps one code path for both servers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and accepted sockets inherit it; with proto 0 every keep-alive
    # response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def check_server(name: str) -> str:
    """``name`` if it is one of SERVERS, else a ValueError naming the choices."""
    if name not in SERVERS:
        raise ValueError(f"server: expected one of {', '.join(SERVERS)}, got {name!r}")
    return name


def serve(app: Any, sock: socket.socket, *, server: str = DEFAULT_SERVER,
          log_level: str = "warning") -> None:
    """Serves the ASGI ``app`` on the listening ``sock`` until SIGINT or SIGTERM, running
    its lifespan (startup before the first request, shutdown after the last)."""
    check_server(server)
    if server == "uvicorn":
        _serve_uvicorn(app, sock, log_level)
    else:
        _serve_granian(app, sock, log_level)


def _serve_uvicorn(app: Any, sock: socket.socket, log_level: str) -> None:
    uvicorn = require("uvicorn", "service", "promobandit serve --server uvicorn")
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                           lifespan="on"))
    server.run(sockets=[sock])


def _serve_granian(app: Any, sock: socket.socket, log_level: str) -> None:
    import asyncio

    what = "promobandit serve --server granian"
    SocketHolder = require("granian._granian", "granian", what).SocketHolder
    constants = require("granian.constants", "granian", what)
    HTTPModes, Interfaces = constants.HTTPModes, constants.Interfaces
    LogLevels = require("granian.log", "granian", what).LogLevels
    Server = require("granian.server.embed", "granian", what).Server

    class BoundServer(Server):
        """Granian's embedded server on our socket (bound before, port 0 resolved).

        Granian 2.x has no public way to serve a socket bound by the caller; this
        overrides the one method that binds (hence the extra's ``<3`` pin), and
        tests/test_service_server.py serves through it, so a change shows there."""

        def _init_shared_socket(self) -> None:
            self._ssp = None
            self._shd = SocketHolder(sock.fileno(), False, LISTEN_BACKLOG)
            self._sfd = self._shd.get_fd()

    host, port = sock.getsockname()[:2]
    # HTTP/1.1 only (as uvicorn): auto-detecting HTTP/2 costs a look at every connection.
    srv = BoundServer(app, address=str(host), port=int(port), interface=Interfaces.ASGI,
                      http=HTTPModes.http1, websockets=False, backlog=LISTEN_BACKLOG,
                      log_level=LogLevels(log_level if log_level != "trace" else "debug"),
                      log_access=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, srv.stop)
        await srv.serve()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


__all__ = ["DEFAULT_SERVER", "LISTEN_BACKLOG", "SERVERS", "check_server", "listen_socket",
           "serve"]
