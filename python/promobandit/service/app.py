"""The HTTP API (FastAPI): routes, authentication, body limit, errors, metrics.

Routes (all JSON; see README.md in this folder):

=========================  =================================================================
POST /v1/decide            one decision (user, context, basket, group)
POST /v1/decide/batch      several decisions as one moment
POST /v1/feedback          a click / purchase / coupon redemption for a decision
POST /v1/activate          confirm a decision made with defer_activation was shown
POST /v1/events            behaviour events of a user (with a feature store)
POST /v1/items             change or append rows of the item table (with a recommender)
GET  /v1/offers            the offer catalogue
GET  /v1/policy            policy version and per-offer statistics, engine counters, budget,
                           fairness gap, log position
GET  /healthz              the process answers (no key needed)
GET  /readyz               recovered and able to write (503 otherwise; detail says why)
GET  /metrics              Prometheus text format (no key needed)
=========================  =================================================================

Errors are ``{"error": "<field>: <what was expected>", "errors": [...]}``: 401 without the
API key, 413 for a body above ``server.max_body_bytes``, 422 for a request that does not
fit the schema or that the engine rejects, 503 when the state cannot be written (disk full,
failed fsync, still recovering). A write answered 200 is durable.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engine import Decision as EngineDecision
from ..engine.accounting import ConflictError
from . import schemas as out
from .metrics import ROUTES
from .runtime import DecisionService, ServiceUnavailable
from .schemas import Schemas, build_schemas

log = logging.getLogger("promobandit.service")

# Routes anyone may call: probes and the scraper carry no key.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
JSON = "application/json"


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON, headers=headers)


def error(status: int, message: str, errors: list[dict[str, Any]] | None = None,
          headers: dict[str, str] | None = None) -> Response:
    """The error body every route uses: one line naming the field, and the details."""
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = errors
    return _json(body, status, headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'basket', 'lines', 0, 'unit_cost') -> 'basket.lines[0].unit_cost'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    outp = ""
    for p in parts:
        if isinstance(p, int):
            outp += f"[{p}]"
        else:
            outp += f".{p}" if outp else str(p)
    return outp or "body"


def _decision(d: EngineDecision) -> dict[str, Any]:
    prop = d.propensity
    return {"decision_id": d.id, "offer": d.offer, "offer_id": d.offer_id,
            "propensity": prop if prop == prop else None, "policy_version": d.policy_version,
            "price": d.price, "discount_cost": d.discount_cost,
            "items": None if d.items is None else d.items.tolist(),
            "item_probs": None if d.item_probs is None else d.item_probs.tolist(),
            **({} if d.explanation is None else {"explanation": d.explanation.to_dict()})}


def _error_body(errors: list[Any]) -> tuple[int, bytes]:
    errs = []
    for e in errors:
        # The input is never echoed: it may be a raw user id, or a NaN JSON cannot carry.
        if e.get("type") == "json_invalid":
            errs.append({"field": "body", "message": e.get("msg", "invalid JSON"),
                         "type": "json_invalid"})
            continue
        errs.append({"field": field_path(e.get("loc", ())), "message": e.get("msg", ""),
                     "type": e.get("type", "")})
    first = errs[0] if errs else {"field": "body", "message": "invalid"}
    return 422, orjson.dumps({"error": f"{first['field']}: {first['message']}",
                              "errors": errs})


def validation_errors(exc: ValidationError) -> tuple[int, bytes]:
    """A 422 body for a pydantic error: one line naming the first field, then all."""
    return _error_body(exc.errors(include_url=False, include_input=False))


class WriteRoutes:
    """The three write routes, from the raw body to (status, JSON body): one code path,
    served by EdgeMiddleware directly (Starlette's routing and FastAPI's dependency
    machinery cost more per request than the engine) and by the FastAPI routes that
    document them in OpenAPI.

    Validation is pydantic's strict JSON mode on the raw bytes (one pass in Rust, no
    intermediate Python objects); the write is durable before the answer."""

    def __init__(self, service: DecisionService, schemas: Schemas) -> None:
        self.service = service
        self.s = schemas
        self.routes: dict[str, Callable[[bytes], Awaitable[tuple[int, bytes]]]] = {
            "/v1/decide": self.decide, "/v1/decide/batch": self.decide_batch,
            "/v1/feedback": self.feedback}
        # feature parity: deferred activation and events without a decision
        self.routes.update({"/v1/activate": self.activate, "/v1/events": self.events,
                            "/v1/items": self.items})

    async def _write(self, model: type[BaseModel], body: bytes,
                     prepare: Callable[[Any], Any], apply: Callable[[Any], tuple[Any, int]],
                     render: Callable[[Any], Any]) -> tuple[int, bytes]:
        svc = self.service
        try:
            req = model.model_validate_json(body)
        except ValidationError as exc:
            return validation_errors(exc)
        try:
            prepared = prepare(req)
            result, seq = await svc.run(apply, prepared)
            await svc.journal.durable(seq)
        except ConflictError as exc:
            return 409, orjson.dumps({"error": str(exc)})
        except ValueError as exc:
            return 422, orjson.dumps({"error": str(exc)})
        except ServiceUnavailable as exc:
            return 503, orjson.dumps({"error": str(exc)})
        except OSError as exc:
            # Nothing was applied (the append failed) or nothing more will be (fsync).
            return 503, orjson.dumps({"error": f"storage: {exc.strerror or exc}; the request "
                                               "was not applied (retry later)"})
        return 200, orjson.dumps(render(result))

    async def decide(self, body: bytes) -> tuple[int, bytes]:
        svc = self.service

        def prepare(req: Any) -> Any:
            p = svc.prepare_decide(req)
            p.explain = req.explain
            return p

        return await self._write(self.s.DecideRequest, body, prepare, svc.apply_decide,
                                 _decision)

    async def decide_batch(self, body: bytes) -> tuple[int, bytes]:
        svc = self.service
        return await self._write(self.s.DecideBatchRequest, body, svc.prepare_batch,
                                 svc.apply_batch,
                                 lambda ds: {"decisions": [_decision(d) for d in ds]})

    async def feedback(self, body: bytes) -> tuple[int, bytes]:
        svc = self.service
        return await self._write(self.s.FeedbackRequest, body, svc.prepare_feedback,
                                 svc.apply_feedback,
                                 lambda r: {"status": r.status, "decision_id": r.decision_id,
                                            "reward": r.reward})


    async def activate(self, body: bytes) -> tuple[int, bytes]:
        svc = self.service
        assert self.s.ActivateRequest is not None
        return await self._write(self.s.ActivateRequest, body, svc.prepare_activate,
                                 svc.apply_activate,
                                 lambda r: {"status": r.status, "decision_id": r.decision_id})

    async def events(self, body: bytes) -> tuple[int, bytes]:
        svc = self.service
        assert self.s.EventsRequest is not None
        return await self._write(self.s.EventsRequest, body, svc.prepare_events,
                                 svc.apply_events, lambda n: {"status": "recorded", "events": n})


    async def items(self, body: bytes) -> tuple[int, bytes]:
        svc = self.service
        assert self.s.ItemsRequest is not None
        return await self._write(self.s.ItemsRequest, body, svc.prepare_items,
                                 svc.apply_items, lambda n: {"status": "updated", "items": n})


_JSON_HEADERS = [(b"content-type", b"application/json")]


class EdgeMiddleware:
    """Pure ASGI, outermost: request metrics, the API key, the body limit and unexpected
    query parameters, before FastAPI parses anything (cheaper than BaseHTTPMiddleware,
    and a rejected request never reaches a handler)."""

    def __init__(self, app: ASGIApp, service: DecisionService, writes: WriteRoutes) -> None:
        self.app = app
        self.service = service
        self.writes = writes.routes
        self.metrics = service.metrics
        key = service.config.server.api_key
        self.key = key.encode() if key else None
        self.max_body = service.config.server.max_body_bytes

    def _authorised(self, scope: Scope) -> bool:
        assert self.key is not None
        for name, value in scope["headers"]:
            if name == b"x-api-key" and hmac.compare_digest(value, self.key):
                return True
            if name == b"authorization" and value[:7].lower() == b"bearer " and \
                    hmac.compare_digest(value[7:].strip(), self.key):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope["path"]
        route = path if path in ROUTES else "other"
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_status, path)
        finally:
            self.metrics.observe_request(route, scope["method"], status,
                                         time.perf_counter() - t0)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        if self.key is not None and path not in OPEN_ROUTES and not self._authorised(scope):
            await error(401, "api_key: missing or wrong (send X-API-Key or Authorization: "
                        "Bearer)", headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        if path.startswith("/v1/") and scope.get("query_string"):
            name = scope["query_string"].split(b"&")[0].split(b"=")[0].decode("latin-1")
            await error(422, f"{name or 'query'}: unknown query parameter (this route takes "
                        "none)")(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_body:
                    await self._too_large(scope, receive, send)
                    return
        # Read the body here (bounded), so a chunked body cannot get past the limit.
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        handler = self.writes.get(path) if scope["method"] == "POST" else None
        if handler is not None:
            status, data = await handler(body)
            await send({"type": "http.response.start", "status": status,
                        "headers": [*_JSON_HEADERS,
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        done = False

        async def replay() -> Message:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error(413, f"body: larger than server.max_body_bytes = {self.max_body} bytes"
                    )(scope, receive, send)


def warn_if_unauthenticated(api_key: str, host: str) -> bool:
    """Logs a warning (and returns True) when no API key is set and `host` is reachable
    from other machines: anyone who can reach the port could then decide and report
    purchases."""
    from .config import is_loopback

    if api_key or is_loopback(host):
        return False
    log.warning("no API key is set (server.api_key or PROMOBANDIT_API_KEY) and the service "
                "listens on %s, which is not a loopback address: every client that reaches "
                "it can decide and report feedback", host)
    return True


def app_factory() -> FastAPI:
    """The app for ASGI servers that build it themselves::

        uvicorn --factory promobandit.service.app:app_factory --host 0.0.0.0 --port 8080
        granian --interface asgi --factory promobandit.service.app:app_factory

    The configuration comes from ``PROMOBANDIT_CONFIG`` (a TOML file; absent: the embedded
    default) and the ``PROMOBANDIT_SECTION__KEY`` variables; the service recovers when the
    app starts (its lifespan) and writes its final snapshot when it stops. The listen
    address is the ASGI server's, so the warning about a missing API key is given unless
    ``server.host`` (which the factory cannot check against the server's) is loopback."""
    import os

    from .config import CONFIG_FILE_ENV, load

    cfg = load(os.environ.get(CONFIG_FILE_ENV) or None)
    warn_if_unauthenticated(cfg.server.api_key, cfg.server.host)
    return create_app(DecisionService(cfg))


def create_app(service: DecisionService, *, manage_lifecycle: bool = True) -> FastAPI:
    """The FastAPI application serving ``service``.

    manage_lifecycle: start the service (recovery, background threads) when the app
    starts, if it was not started already, and stop it (final snapshot) when it stops.
    """
    s = build_schemas(service.config.limits, service.n_features)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle and service.state == "created":
            service.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                service.stop()

    app = FastAPI(
        title="promobandit decision service",
        version="1",
        description="Personalised discount decisions with a bandit policy, inside a budget "
                    "and fairness limits; every answered write is durable.",
        lifespan=lifespan,
        # Our own Prometheus metrics cover requests; tracing is not configured here.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        redoc_url=None,
    )
    errors_4xx: dict[int | str, dict[str, Any]] = {
        401: {"model": out.ErrorResponse, "description": "missing or wrong API key"},
        413: {"model": out.ErrorResponse, "description": "body too large"},
        409: {"model": out.ErrorResponse, "description": "conflicts with what is recorded "
              "(request_id with another body, event id with another outcome, coupon "
              "already redeemed, too many events); names the field"},
        422: {"model": out.ErrorResponse, "description": "invalid request; names the field"},
        503: {"model": out.ErrorResponse, "description": "state cannot be written now"},
    }

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # Only reachable for parameters FastAPI validates itself (the write routes
        # validate their bodies in WriteRoutes); same answer either way.
        status, data = _error_body(list(exc.errors()))
        return Response(data, status_code=status, media_type=JSON)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            msg = f"method: {request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 404:
            msg = f"path: no route {request.url.path}"
        else:
            msg = f"request: {exc.detail}"
        return error(exc.status_code, msg, headers=getattr(exc, "headers", None))

    writes = WriteRoutes(service, s)

    def write_route(path: str, model: type[BaseModel], response: type[BaseModel],
                    summary: str) -> None:
        handler = writes.routes[path]

        async def endpoint(request: Request) -> Response:
            status, data = await handler(await request.body())
            return Response(data, status_code=status, media_type=JSON)

        body_doc = {"required": True, "content": {JSON: {"schema": {
            "$ref": f"#/components/schemas/{model.__name__}"}}}}
        app.post(path, response_model=response, responses=errors_4xx, summary=summary,
                 openapi_extra={"requestBody": body_doc})(endpoint)

    write_route("/v1/decide", s.DecideRequest, out.Decision, "Decide the offer for one request")
    write_route("/v1/decide/batch", s.DecideBatchRequest, out.DecideBatchResponse,
                "Decide several requests as one moment")
    write_route("/v1/feedback", s.FeedbackRequest, out.FeedbackResponse,
                "Report what the shopper did after a decision")
    assert s.ActivateRequest is not None and s.EventsRequest is not None
    write_route("/v1/activate", s.ActivateRequest, out.ActivateResponse,
                "Confirm that a decision made with defer_activation was shown")
    write_route("/v1/events", s.EventsRequest, out.EventsResponse,
                "Add behaviour events of a user (no decision)")
    assert s.ItemsRequest is not None
    write_route("/v1/items", s.ItemsRequest, out.ItemsResponse,
                "Change or append rows of the recommender's item table")

    offers_body = orjson.dumps(service.catalogue.to_dict())

    @app.get("/v1/offers", response_model=out.Offers, responses=errors_4xx,
             summary="The offer catalogue (arm k is offers[k])")
    async def offers() -> Response:
        return Response(offers_body, media_type=JSON)

    @app.get("/v1/policy", response_model=out.PolicyReport, responses=errors_4xx,
             summary="Policy and per-offer statistics, budget, fairness gap")
    async def policy() -> Response:
        if service.state != "ready":
            return error(503, f"service: {service.state}")
        rep = await service.run(service.report)
        return Response(orjson.dumps(rep, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)

    @app.get("/healthz", response_model=out.Health, summary="Liveness")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", response_model=out.Readiness,
             responses={503: {"model": out.Readiness, "description": "not ready"}},
             summary="Readiness, with what recovery found")
    async def readyz() -> Response:
        ready, detail = service.readiness()
        return _json({"status": "ready" if ready else "not ready", "detail": detail},
                     200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def metrics() -> Response:
        data = await service.run(generate_latest, service.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            comps = doc.setdefault("components", {}).setdefault("schemas", {})
            for model in (s.DecideRequest, s.DecideBatchRequest, s.FeedbackRequest,
                          s.ActivateRequest, s.EventsRequest, s.ItemsRequest):
                if model is None:
                    continue
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                comps.update(js.pop("$defs", {}))
                comps[model.__name__] = js
            if service.config.server.api_key:
                # The key is checked by EdgeMiddleware; the document says where it goes.
                comps = doc.setdefault("components", {})
                comps["securitySchemes"] = {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "Bearer": {"type": "http", "scheme": "bearer"}}
                for path, ops in doc["paths"].items():
                    if path not in OPEN_ROUTES:
                        for op in ops.values():
                            op["security"] = [{"ApiKey": []}, {"Bearer": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(EdgeMiddleware, service=service, writes=writes)
    return app


__all__ = ["EdgeMiddleware", "create_app", "error", "field_path"]
