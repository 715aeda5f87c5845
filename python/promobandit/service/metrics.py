"""Prometheus metrics of the decision service (one registry per service, so that several
services in one process, as in the tests, do not collide).

Counted as they happen: HTTP requests and latency per route, decisions per offer,
feedback by status and its lag, log records and fsync groups, snapshots, storage errors.
Read from the engine at scrape time: its counters (decisions, finalised, default rewards,
late, duplicate, unknown, purchases, pending), the budget (amount, spent, reserved,
planned, shadow price) and the fairness gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Request latency buckets (seconds): sub-millisecond serving up to slow fsyncs.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Feedback lag buckets (seconds): clicks arrive in seconds, purchases in minutes to hours.
LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 86400.0)
# Records made durable by one fsync.
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)
SYNC_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)

# Routes are labelled by their template; anything else is "other" (bounded cardinality).
ROUTES = ("/v1/decide", "/v1/decide/batch", "/v1/feedback", "/v1/offers", "/v1/policy",
          "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
          "/v1/activate", "/v1/events", "/v1/items")


class ServiceMetrics:
    """The service's metrics. ``engine_view`` returns, at scrape time, a dict with the
    engine's ``stats``, ``pending``, optional ``budget`` and ``fairness`` (engine.report()
    shape); it is called from the scraping thread."""

    def __init__(self, engine_view: Callable[[], dict[str, Any]], offer_ids: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("promobandit_http_requests_total", "HTTP requests answered",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("promobandit_http_request_duration_seconds",
                                 "Time from request start to the last response byte",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("promobandit_decisions_total",
                                 "Decisions served by this process, per offer", ["offer"],
                                 registry=r)
        self.feedback = Counter("promobandit_feedback_total",
                                "Feedback events by result (applied, finalised, duplicate, "
                                "late, unknown)", ["status"], registry=r)
        self.feedback_lag = Histogram("promobandit_feedback_lag_seconds",
                                      "Seconds from a decision to its feedback event (for "
                                      "decisions still pending)", buckets=LAG_BUCKETS,
                                      registry=r)
        self.wal_records = Counter("promobandit_wal_records_total",
                                   "Records appended to the write-ahead log", ["kind"],
                                   registry=r)
        self.wal_group = Histogram("promobandit_wal_sync_group_records",
                                   "Records made durable by one fsync", buckets=GROUP_BUCKETS,
                                   registry=r)
        self.wal_sync = Histogram("promobandit_wal_sync_seconds", "Duration of one log fsync",
                                  buckets=SYNC_BUCKETS, registry=r)
        self.snapshots = Counter("promobandit_snapshots_total", "Snapshots written, by result",
                                 ["result"], registry=r)
        self.snapshot_seconds = Histogram("promobandit_snapshot_seconds",
                                          "Time to write one snapshot", registry=r)
        self.storage_errors = Counter("promobandit_storage_errors_total",
                                      "Storage operations that failed (the request got 503)",
                                      ["op"], registry=r)
        self.recovery_problems = Counter("promobandit_recovery_problems_total",
                                         "Damaged files skipped at recovery (corrupt snapshot, "
                                         "torn log tail)", ["kind"], registry=r)
        self.data_loss = Gauge("promobandit_recovery_data_loss",
                               "Log damages accepted at the last start (storage."
                               "accept_log_loss): acknowledged records were lost", registry=r)
        self.replayed = Gauge("promobandit_recovery_replayed_records",
                              "Log records replayed at the last start", registry=r)
        self.ready = Gauge("promobandit_ready", "1 when the service accepts decisions",
                           registry=r)
        for offer in offer_ids:  # every offer shows up from the first scrape
            self.decisions.labels(offer)
        r.register(_EngineCollector(engine_view))
        self._route_cache: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        pair = self._route_cache.get(key)
        if pair is None:
            pair = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            self._route_cache[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def observe_sync(self, records: int, seconds: float) -> None:
        self.wal_group.observe(records)
        self.wal_sync.observe(seconds)


class _EngineCollector(Collector):
    def __init__(self, view: Callable[[], dict[str, Any]]) -> None:
        self._view = view

    def describe(self) -> Iterable[Any]:
        return []  # dynamic: nothing to check at registration

    def collect(self) -> Iterable[Any]:
        rep = self._view()
        if not rep:
            return
        stats = rep.get("stats", {})
        events = CounterMetricFamily("promobandit_engine_events",
                                     "Engine counters from its state (survive restarts)",
                                     labels=["kind"])
        for k in ("decisions", "finalised", "defaulted", "late", "duplicate", "unknown",
                  "purchases", "activated", "not_activated",
                  # issue 11: finalised without learning, idempotency keys forgotten early
                  "updates_refused", "request_keys_evicted"):
            events.add_metric([k], float(stats.get(k, 0)))
        yield events
        yield CounterMetricFamily("promobandit_default_rewards",
                                  "Decisions finalised with the default reward (no feedback "
                                  "within the wait)", value=float(stats.get("defaulted", 0)))
        yield GaugeMetricFamily("promobandit_pending_decisions",
                                "Decisions awaiting feedback", value=float(rep.get("pending", 0)))
        yield GaugeMetricFamily("promobandit_policy_version", "Updates applied to the policy",
                                value=float(rep.get("policy_version", 0)))
        budget = rep.get("budget")
        if budget is not None:
            for key, name, doc in (
                ("budget", "promobandit_budget_amount", "Discount budget of the period"),
                ("spent", "promobandit_budget_spent", "Realised discount spend this period"),
                ("reserved", "promobandit_budget_reserved",
                 "Worst-case cost reserved for pending decisions"),
                ("planned", "promobandit_budget_planned", "Planned cumulative spend by now"),
                ("lambda", "promobandit_budget_shadow_price", "The pacing multiplier"),
            ):
                yield GaugeMetricFamily(name, doc, value=float(budget[key]))
        fairness = rep.get("fairness")
        if fairness is not None:
            yield GaugeMetricFamily("promobandit_fairness_gap",
                                    "Largest gap between groups' running discount rates",
                                    value=float(fairness["gap"]))


__all__ = ["LATENCY_BUCKETS", "ROUTES", "ServiceMetrics"]
