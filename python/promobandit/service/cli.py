"""`promobandit serve`: the HTTP decision service (registered by promobandit.cli)."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import socket
import sys

from .._extras import require_extra

# Exit status when the state on disk cannot be recovered without losing acknowledged data.
EXIT_UNRECOVERABLE = 3
# Exit status when another process holds the state folder's lock (one writer per folder).
EXIT_LOCKED = 4


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve", help="run the HTTP decision service (FastAPI on uvicorn or Granian)",
        description="Serve decisions over HTTP with durable state. Configuration: a TOML file "
                    "(--config) or the embedded default; the privacy key comes from the file "
                    "or PROMOBANDIT_PRIVACY_KEY (required), the API key from the file or "
                    "PROMOBANDIT_API_KEY. See python/promobandit/service/README.md.")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: embedded)")
    p.add_argument("--host", help="listen address (server.host)")
    p.add_argument("--port", type=int, help="listen port, 0 for any free one (server.port)")
    p.add_argument("--storage-dir", metavar="DIR", help="state folder (storage.dir)")
    p.add_argument("--memory", action="store_true",
                   help="keep state in memory only (storage.kind = 'memory'; nothing survives)")
    p.add_argument("--threads", type=int, help="engine worker threads (server.threads)")
    from .server import DEFAULT_SERVER, SERVERS

    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                   help=f"the HTTP server under the app (default {DEFAULT_SERVER}: the one "
                        "that spends less CPU per request; see service/server.py)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                   help="log level (server.log_level)")
    p.add_argument("--accept-log-loss", action="store_true",
                   help="start even if the log is damaged where acknowledged records were; "
                        "the loss is reported in /readyz and metrics (storage.accept_log_loss)")
    p.add_argument("--redis-url", metavar="URL",
                   help="cluster mode: share the state through this Redis server "
                        "(storage.kind = 'redis', storage.url; e.g. redis://127.0.0.1:6379/0)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="cluster mode: serve with N worker processes on one port (each an "
                        "engine; needs storage.kind = 'redis')")
    # A worker started by --workers serves on the listening socket its parent passed.
    p.add_argument("--inherit-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true",
                   help="validate the configuration, print it (secrets hidden) and exit")
    p.set_defaults(func=run)


def _apply_flags(cfg: object, args: argparse.Namespace) -> object:
    from .config import ServiceConfig

    assert isinstance(cfg, ServiceConfig)
    server = cfg.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"port: expected 0..65535, got {args.port}")
        server = dataclasses.replace(server, port=args.port)
    if args.threads is not None:
        if not 0 <= args.threads <= 256:
            raise ValueError(f"threads: expected 0..256, got {args.threads}")
        server = dataclasses.replace(server, threads=args.threads)
    if args.log_level is not None:
        server = dataclasses.replace(server, log_level=args.log_level)
    storage = cfg.storage
    if args.storage_dir is not None:
        storage = dataclasses.replace(storage, dir=args.storage_dir)
    if args.memory:
        storage = dataclasses.replace(storage, kind="memory")
    if getattr(args, "accept_log_loss", False):
        storage = dataclasses.replace(storage, accept_log_loss=True)
    if getattr(args, "redis_url", None):
        if args.memory:
            raise ValueError("--redis-url: cannot be combined with --memory")
        from .config import _check_cluster_storage

        storage = dataclasses.replace(storage, kind="redis", url=args.redis_url)
        _check_cluster_storage(storage)
    workers = getattr(args, "workers", 1)
    if not 1 <= workers <= 256:
        raise ValueError(f"workers: expected 1..256, got {workers}")
    if workers > 1 and storage.kind != "redis":
        raise ValueError("workers: more than one worker needs the cluster mode (storage.kind = "
                         "'redis' or --redis-url): the embedded state belongs to one process")
    return dataclasses.replace(cfg, server=server, storage=storage)


def _describe(cfg: object) -> str:
    import json

    d = dataclasses.asdict(cfg)  # type: ignore[call-overload]
    d.pop("privacy_key", None)
    if d["server"]["api_key"]:
        d["server"]["api_key"] = "<set>"
    return json.dumps(d, indent=2, default=str)


def run(args: argparse.Namespace) -> int:
    from . import config as config_mod

    cfg = _apply_flags(config_mod.load(args.config), args)
    assert isinstance(cfg, config_mod.ServiceConfig)
    if args.check:
        print(_describe(cfg))
        return 0
    # The checked configuration needs only the core; serving needs the service extra.
    require_extra("service", "promobandit serve")
    if args.server != "uvicorn":
        require_extra(args.server, f"promobandit serve --server {args.server}")

    from .app import create_app
    from .runtime import DecisionService, ServiceUnavailable
    from .server import listen_socket, serve
    from .storage import FingerprintMismatch, StorageCorrupt, StorageLocked

    level = getattr(logging, cfg.server.log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "workers", 1) > 1:
        from .cluster import serve_workers
        from .server import listen_socket

        return serve_workers(cfg, args, listen_socket)
    if cfg.storage.kind == "redis":
        require_extra("cluster", "promobandit serve in cluster mode")
        from .cluster import ClusterService

        service: DecisionService = ClusterService(cfg)
    else:
        service = DecisionService(cfg)
    try:
        service.start()
    except ServiceUnavailable as exc:  # cluster mode: Redis unreachable or not durable
        print(f"promobandit serve: {exc}", file=sys.stderr)
        return EXIT_UNRECOVERABLE
    except StorageLocked as exc:
        print(f"promobandit serve: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (StorageCorrupt, FingerprintMismatch) as exc:
        print(f"promobandit serve: cannot recover the state in {cfg.storage.dir}: {exc}",
              file=sys.stderr)
        return EXIT_UNRECOVERABLE
    app = create_app(service)
    # The imports and the recovered state are hundreds of thousands of long-lived
    # objects; the first full collection while serving walked all of them (a ~0.1-0.3 s
    # pause of every request). Freezing moves them out of the collector's sight.
    gc.collect()
    gc.freeze()
    # Bind before serving, so that the address (port 0: a free one) can be reported; a
    # worker started by --workers serves on the socket its parent bound.
    inherited = getattr(args, "inherit_fd", None)
    sock = (socket.socket(fileno=inherited) if inherited is not None
            else listen_socket(cfg.server.host, cfg.server.port))
    host, port = sock.getsockname()[:2]
    from .app import warn_if_unauthenticated

    warn_if_unauthenticated(cfg.server.api_key, str(host))
    rec = service.recovery
    if cfg.storage.kind == "redis":
        print(f"promobandit serve: listening on http://{host}:{port} (cluster mode, worker "
              f"{getattr(service, 'worker', '?')})", flush=True)
    else:
        print(f"promobandit serve: listening on http://{host}:{port} (snapshot "
              f"{rec.get('snapshot') or 'none'}, {rec.get('replayed_records', 0)} log records "
              f"replayed, {len(rec.get('problems', []))} problems)", flush=True)
    try:
        serve(app, sock, server=args.server, log_level=cfg.server.log_level)
    finally:
        if service.state != "stopped":  # the server did not run the lifespan's shutdown
            service.stop()
    return 0
