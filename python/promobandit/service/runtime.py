"""The decision service without HTTP: one engine, its write-ahead log, snapshots, recovery.

Durability design (see README.md in this folder for the full argument):

* **Everything that changes the engine is a log record, written before it is applied**:
  ``decide`` (the pseudonymised user, the context, the basket, the group), ``decide_batch``,
  ``feedback`` and the periodic ``expire``. Each record carries the time the service gave
  the engine (``now``), so replaying the records in order through the same engine code
  reproduces the state exactly, decision ids included: the engine is deterministic given
  its state, its inputs and ``now`` (decision ids come from a counter, policy draws from a
  counter-based RNG). Decisions are *replayed*, not stored as results, because a decision
  also moves the policy's RNG stream, the budget reservation, the per-user caps and the
  fairness state; re-deciding reproduces all of it through one code path, where restoring
  results would need a second one inside the engine.
* The record is appended under the apply lock, then applied; the apply lock makes log
  order the engine's order. The answer waits for the group fsync that covers the record
  (``Journal``); so every answered decision and feedback event is on disk, and a crash can
  lose only records nobody was answered for.
* A write that fails (disk full) appends nothing and applies nothing: the request gets a
  503 and the engine is unchanged. A failed fsync stops all writes (503, /readyz not
  ready) until a restart recovers from what is on disk.
* The service's clock never goes backwards (``now`` = max(wall clock, last ``now``), also
  across restarts), so the order of log records is the order of their times, as the
  engine's time-based state (budget periods, expiry) assumes.
* Snapshots: under the apply lock, ``Engine.capture_state()`` (encoded outside it) and the seq of the last applied
  record; written atomically by the storage; the log before the oldest kept snapshot is
  dropped. Recovery loads the newest good snapshot and replays the log after it.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import hashlib
import logging
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from .._extras import require
from ..engine import Decision, Engine, FeedbackResult
from ..engine.accounting import ConflictError
from ..features import FeatureStore
from ..offers import Basket, Catalogue, default_catalogue
from ..policies import make_policy
from .config import ServiceConfig, build_recommender, fingerprint_data
from .journal import Journal
from .metrics import ServiceMetrics
from .storage import (
    FileStorage,
    FingerprintMismatch,
    MemoryStorage,
    Storage,
    StorageCorrupt,
    StorageLocked,
)

log = logging.getLogger("promobandit.service")

# Log record kinds.
KIND_DECIDE, KIND_DECIDE_BATCH, KIND_FEEDBACK, KIND_EXPIRE = 1, 2, 3, 4
KIND_NAMES = {KIND_DECIDE: "decide", KIND_DECIDE_BATCH: "decide_batch",
              KIND_FEEDBACK: "feedback", KIND_EXPIRE: "expire"}
# Feature parity (events, recommendations, deferred activation): numbered apart from the
# kinds above so that other new kinds can take the next small numbers.
KIND_ACTIVATE, KIND_EVENTS, KIND_ITEMS = 16, 17, 18
KIND_NAMES.update({KIND_ACTIVATE: "activate", KIND_EVENTS: "events", KIND_ITEMS: "items"})

# Every record payload starts with the engine time it was applied at (float64), followed by
# the JSON of its inputs; the snapshot payload starts with the last such time.
_NOW = struct.Struct("<d")

# How often the housekeeping thread looks at its timers (snapshot, expiry), in seconds.
HOUSEKEEPING_TICK_SECONDS = 0.2

# The engine's Parquet decision log is flushed at each snapshot; this many snapshot
# intervals' worth of records is the in-band backstop before that.
DECISION_LOG_BACKSTOP = 10

T = TypeVar("T")


class Pseudonym(str):
    """A user id that is already the engine's keyed hash (from the log, or hashed at the
    edge of the service), which ServiceEngine passes through instead of hashing again."""

    __slots__ = ()


class ServiceEngine(Engine):
    """The engine, taking Pseudonym users as they are.

    Replay needs to decide again for a user whose raw id the service never kept; the log
    holds only the pseudonym, so the engine must accept one. (An engine-side keyword,
    e.g. ``decide(..., pseudonymised=True)``, would make this subclass unnecessary.)
    """

    # Decision ids the service drew (128 bits from the OS) for the next decisions, in
    # order; logged with the record, so replay gives every decision the same id.
    preset_ids: list[str]

    def pseudonym(self, user: Any) -> str:
        if type(user) is Pseudonym:
            return str(user)
        return super().pseudonym(user)

    def _next_id(self) -> str:
        ids = getattr(self, "preset_ids", None)
        if ids:
            return ids.pop(0)
        # Records logged before ids were random (and the warm-up's scratch engine).
        return super()._next_id()


class ServiceUnavailable(RuntimeError):
    """The service cannot take writes now (recovering, failed, or storage full)."""


# Bytes of randomness in a decision id (128 bits, from the OS: unguessable, and unique
# across processes, deployments and restores from a backup).
DECISION_ID_BYTES = 16


def new_decision_id() -> str:
    """A fresh decision id: 32 hex characters from ``secrets`` (the OS's generator)."""
    return secrets.token_hex(DECISION_ID_BYTES)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclasses.dataclass
class PreparedDecide:
    """A checked decide request: engine inputs and the log payload (without ``now``).
    request_tag: "<request_id>\\0<digest of the request>" when the client sent a
    request_id, else ""."""

    user: Pseudonym
    context: np.ndarray | None
    basket: Basket | None
    group: str
    payload: bytes
    decision_id: str = ""
    request_tag: str = ""
    explain: bool = False  # the request asked for the explanation (changes no state)
    # events, recommendation and exclusions, deferred activation (see _parity_inputs)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PreparedBatch:
    users: list[Pseudonym]
    contexts: np.ndarray | None
    baskets: list[Basket]
    groups: list[str]
    payload: bytes
    decision_ids: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PreparedFeedback:
    kwargs: dict[str, Any]
    decision_id: str
    event_id: str
    payload: bytes
    digest: str = ""


def _basket_columns(lines: list[Any]) -> list[list[Any]]:
    """Basket lines (models or dicts) as the five columns the engine's Basket takes."""
    if lines and not isinstance(lines[0], dict):
        return [[ln.item_id for ln in lines], [ln.category for ln in lines],
                [ln.unit_price for ln in lines], [ln.unit_cost for ln in lines],
                [ln.quantity for ln in lines]]
    return [[ln["item_id"] for ln in lines], [ln["category"] for ln in lines],
            [ln["unit_price"] for ln in lines], [ln["unit_cost"] for ln in lines],
            [ln["quantity"] for ln in lines]]


def _basket(cols: list[list[Any]]) -> Basket:
    """The engine's Basket from checked columns. The request schema (and so every logged
    record) already guarantees what Basket's constructor checks (at least one line, ids
    and quantities integers, money finite, 0 <= unit cost <= unit price, quantity >= 1),
    so the unchecked constructor saves checking it twice (~20 us a request)."""
    return Basket.trusted(np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=np.int64),
                          np.array(cols[2], dtype=np.float64),
                          np.array(cols[3], dtype=np.float64), np.array(cols[4], dtype=np.int64))


def build_engine(cfg: ServiceConfig, catalogue: Catalogue, log_dir: str | None) -> ServiceEngine:
    """The engine the configuration describes (policy seeded with the engine seed)."""
    p = cfg.policy
    policy = make_policy(p.name, len(catalogue), p.n_features, seed=cfg.engine.seed,
                         backend=p.backend, **dict(p.settings))
    flush_rows = max(1, cfg.storage.snapshot_every_events * DECISION_LOG_BACKSTOP)
    features, recommender = build_parity_parts(cfg)
    return ServiceEngine(catalogue, policy, cfg.engine, privacy_key=cfg.privacy_key,
                         log_dir=log_dir, log_flush_rows=flush_rows, features=features,
                         recommender=recommender)


def build_parity_parts(cfg: ServiceConfig) -> tuple[Any, Any]:
    """The feature store and the item recommender of ``[features]`` / ``[recommender]``
    (None where a section is absent); the recommender's exploration is seeded with the
    engine seed."""
    features = (FeatureStore(cfg.features, max_users=cfg.features_max_users)
                if cfg.features is not None else None)
    recommender = (build_recommender(cfg.recommender, cfg.engine.seed)
                   if cfg.recommender is not None else None)
    return features, recommender


def make_storage(cfg: ServiceConfig) -> Storage:
    """The storage the configuration names."""
    if cfg.storage.kind == "memory":
        return MemoryStorage()
    return FileStorage(cfg.storage.dir, fsync=cfg.storage.fsync,
                       snapshots_kept=cfg.storage.snapshots_kept,
                       accept_log_loss=cfg.storage.accept_log_loss)


class DecisionService:
    """One engine behind a write-ahead log (see the module doc).

    config: the service configuration. storage: where the log and snapshots live
    (default: from the configuration). Call ``start()`` (recovers, then starts the
    background threads), serve, then ``stop()`` (final snapshot).
    """

    def __init__(self, config: ServiceConfig, storage: Storage | None = None) -> None:
        self.config = config
        self.catalogue = (Catalogue.load(config.catalogue_path) if config.catalogue_path
                          else default_catalogue())
        files = config.storage.kind == "files"
        log_dir = (str(Path(config.storage.dir) / "decisions")
                   if files and config.storage.decision_log else None)
        self.engine = build_engine(config, self.catalogue, log_dir)
        fp = orjson.dumps(fingerprint_data(config, self.catalogue), option=orjson.OPT_SORT_KEYS)
        self.fingerprint = hashlib.sha256(fp).digest()
        self.storage = storage if storage is not None else make_storage(config)
        self.metrics = ServiceMetrics(self._metrics_view, self.catalogue.ids)
        self.journal = Journal(self.storage, on_sync=self.metrics.observe_sync)
        self.n_features = config.policy.n_features
        self._apply_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._last_now = 0.0
        self._applied_seq = 0
        self._snapshot_seq = 0
        self._since_snapshot = 0
        self._last_snapshot_at = time.monotonic()
        self._last_expire_at = time.monotonic()
        self._snapshot_error: str | None = None
        self._write_error: str | None = None
        self.state = "created"
        self.recovery: dict[str, Any] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._housekeeper: threading.Thread | None = None
        threads = config.server.threads
        self._executor = (concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="promobandit-engine") if threads > 0 else None)
        self._kind_counters = {k: self.metrics.wal_records.labels(n)
                               for k, n in KIND_NAMES.items()}
        self._offer_counters = [self.metrics.decisions.labels(o) for o in self.catalogue.ids]
        self._feedback_counters: dict[str, Any] = {}

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Recovers the state (raises on unrecoverable storage) and starts background work."""
        if self.state == "created":
            self.recover()
        self._warm_up()
        self.journal.start()
        self._housekeeper = threading.Thread(target=self._housekeeping,
                                             name="promobandit-housekeeping", daemon=True)
        self._housekeeper.start()

    def _stop_background(self) -> None:
        """Stops the housekeeping thread and the executor, waiting for both."""
        self._stop.set()
        self._wake.set()
        if self._housekeeper is not None:
            self._housekeeper.join()
            self._housekeeper = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def stop(self, snapshot: bool = True) -> None:
        """Stops background work, writes a final snapshot (so the log is empty for a
        configuration change) and closes the storage."""
        self._stop_background()
        if self.state == "ready" and snapshot:
            try:
                self.snapshot()
            except OSError as exc:
                log.error("final snapshot failed (the log keeps everything): %s", exc)
        self.journal.stop()
        try:
            self.storage.close()
        except OSError as exc:
            log.error("closing storage: %s", exc)
        self.state = "stopped"
        self.metrics.ready.set(0)

    def recover(self) -> dict[str, Any]:
        """Loads the newest good snapshot and replays the log after it (see module doc)."""
        self.state = "recovering"
        t0 = time.perf_counter()
        try:
            rec = self.storage.open(self.fingerprint)
            snap_seq = 0
            used = None
            for ref in rec.snapshots:
                try:
                    data = self.storage.read_snapshot(ref)
                    now = _NOW.unpack_from(data)[0]
                    self.engine.load_bytes(data[_NOW.size:])
                except StorageCorrupt as exc:
                    self.storage.quarantine_snapshot(ref, str(exc).split(": ", 1)[-1])
                    continue
                except ValueError as exc:
                    if ref.fingerprint != self.fingerprint:
                        raise FingerprintMismatch(
                            f"{ref.name}: saved under another engine configuration and it "
                            f"does not load into this one ({exc}); restore the configuration "
                            "or move the state folder away") from exc
                    self.storage.quarantine_snapshot(ref, f"does not load ({exc})")
                    continue
                if ref.fingerprint != self.fingerprint:
                    log.warning("%s was saved under another engine configuration; it loads, "
                                "and the log after it is checked record by record", ref.name)
                snap_seq, used, self._last_now = ref.seq, ref.name, now
                break
            n = rejected = 0
            for seq, kind, payload in self.storage.replay(snap_seq):
                if self._replay(kind, payload):
                    rejected += 1
                self._applied_seq = seq
                n += 1
            self._applied_seq = max(self._applied_seq, snap_seq, self.storage.last_seq)
            self._snapshot_seq = snap_seq
            self._since_snapshot = n
        except (StorageCorrupt, FingerprintMismatch, StorageLocked) as exc:
            self.state = "failed"
            self.recovery = {"error": str(exc)}
            log.critical("recovery failed: %s", exc)
            try:  # releases the folder's lock, so that a fixed configuration can start
                self.storage.close()
            except OSError:
                pass
            raise
        problems = list(self.storage.problems)
        data_loss = list(getattr(self.storage, "data_loss", []))
        for p in problems:
            what = ("data_loss" if p in data_loss
                    else "snapshot" if "snapshot" in p.split(":", 1)[0] else "log")
            self.metrics.recovery_problems.labels(what).inc()
        self.metrics.data_loss.set(len(data_loss))
        self.recovery = {"snapshot": used, "snapshot_seq": snap_seq, "replayed_records": n,
                         "replayed_rejected": rejected, "last_seq": self._applied_seq,
                         "problems": problems, "data_loss": data_loss,
                         "seconds": round(time.perf_counter() - t0, 3)}
        self.metrics.replayed.set(n)
        log.info("recovered: snapshot %s (seq %d), %d log records replayed, %d problems%s",
                 used or "none", snap_seq, n, len(problems),
                 "".join(f"\n  skipped: {p}" for p in problems))
        self.state = "ready"
        self.metrics.ready.set(1)
        return self.recovery

    def _warm_up(self) -> None:
        """Lazy imports and kernel loading now rather than in the first request (which took
        ~0.5 s otherwise) or the first snapshot: one decision and one feedback on a
        scratch engine of the same configuration (the real engine is not touched)."""
        if self.engine.log is not None:
            # The decision log imports pyarrow on its first flush, which happens at a
            # snapshot, under the apply lock: import it now instead (~0.3 s).
            require("pyarrow.parquet", "service", "the service's decision log")
        try:
            scratch = build_engine(self.config, self.catalogue, None)
            x = None if self.n_features is None else np.zeros(self.n_features)
            d = scratch.decide(Pseudonym("warm-up"), context=x, now=self._last_now or None,
                               basket=_basket([[0], [0], [1.0], [0.5], [1]]))
            scratch.feedback(d.id, "warm-up", purchased=True, now=d.created_at)
        except Exception as exc:  # only an optimisation: never fails the start
            log.debug("warm-up skipped: %s", exc)

    def _replay(self, kind: int, payload: bytes) -> bool:
        """Applies one logged record as it was applied live; True if the engine rejected
        it (as it did live: the same inputs meet the same checks in the same state)."""
        if kind not in KIND_NAMES:
            raise StorageCorrupt(f"log: unknown record kind {kind} (written by a newer "
                                 "promobandit?)")
        now = _NOW.unpack_from(payload)[0]
        body = orjson.loads(payload[_NOW.size:])
        self._last_now = max(self._last_now, now)
        try:
            if kind == KIND_DECIDE:
                ctx = body["x"]
                self.engine.preset_ids = [body["id"]] if "id" in body else []
                d = self.engine.decide(Pseudonym(body["u"]),
                                       context=None if ctx is None else np.array(ctx, np.float64),
                                       basket=None if body["b"] is None else _basket(body["b"]),
                                       group=body["g"], now=now, **_parity_kwargs(body))
                if body.get("rq"):
                    self.engine.tag_request(d.id, body["rq"])
            elif kind == KIND_DECIDE_BATCH:
                xs = body["xs"]
                self.engine.preset_ids = list(body.get("ids", []))
                self.engine.decide_batch([Pseudonym(u) for u in body["us"]],
                                         contexts=None if xs is None else np.array(xs, np.float64),
                                         baskets=[_basket(b) for b in body["bs"]],
                                         groups=body["gs"], now=now,
                                         **_parity_batch_kwargs(body))
            elif kind == KIND_ACTIVATE:
                self.engine.activate(body["d"], now=now)
            elif kind == KIND_EVENTS:
                self.engine.record_events(Pseudonym(body["u"]), _events(body["ev"]), now=now)
            elif kind == KIND_ITEMS:
                self.engine.update_items(*_item_columns(body))
            elif kind == KIND_FEEDBACK:
                # checked live before it was logged: replayed as it was applied
                self.engine.feedback(body["d"], body["e"], now=now, check=False,
                                     **_feedback_kwargs(body))
                if body.get("h"):
                    self.engine.note_outcome(body["d"], body["e"], body["h"])
            else:
                self.engine.expire(now)
        except Exception as exc:  # live raised the same, so the state matches it
            log.debug("replayed record rejected as it was live: %s", exc)
            return True
        finally:
            self.engine.preset_ids = []
        return False

    # --- requests (called with checked request models) -----------------------------------
    def _check_writable(self) -> None:
        if self.state != "ready":
            raise ServiceUnavailable(f"service: {self.state}")

    def _clock(self) -> float:
        now = time.time()
        if now < self._last_now:
            now = self._last_now
        self._last_now = now
        return now

    def _append(self, kind: int, payload: bytes) -> tuple[float, int]:
        """Under the apply lock: the engine time for this record, and its appended seq."""
        now = self._clock()
        try:
            seq = self.journal.append(kind, _NOW.pack(now) + payload)
        except OSError as exc:
            self._write_error = f"{type(exc).__name__}: {exc}"
            self.metrics.storage_errors.labels("append").inc()
            raise
        self._write_error = None
        self._applied_seq = seq
        self._since_snapshot += 1
        self._kind_counters[kind].inc()
        return now, seq

    def _checked(self, req: Any) -> tuple[Pseudonym, list[float] | None, np.ndarray | None,
                                           list[list[Any]], Basket]:
        """What the engine would reject, rejected before anything is logged (ValueError
        naming the field); the user pseudonymised; the engine inputs built."""
        self._check_parity_fields(req)
        ctx = req.context
        x = None
        if self.n_features is not None:
            if ctx is None and self.engine.features is None:
                raise ValueError(f"context: required, {self.n_features} numbers (the policy "
                                 f"{self.config.policy.name} is contextual)")
            x = None if ctx is None else np.array(ctx, dtype=np.float64)
        else:
            ctx = None  # a non-contextual policy ignores it: nothing to log
        cols = None if req.basket is None else _basket_columns(req.basket.lines)
        basket = None if cols is None else _basket(cols)
        uh = Pseudonym(self.engine.pseudonym(req.user))
        return uh, ctx, x, cols, basket  # type: ignore[return-value]

    def prepare_decide(self, req: Any) -> PreparedDecide:
        """Checks a decide request and builds the engine inputs and the log payload (the
        pseudonym, never the raw user id; the decision id drawn here). Raises ValueError
        naming the field."""
        uh, ctx, x, cols, basket = self._checked(req)
        body: dict[str, Any] = {"u": uh, "x": ctx, "b": cols, "g": req.group}
        # the parity fields first: the request tag's digest covers them too
        extra = self._parity_inputs(req, uh, body)
        tag = ""
        rid = getattr(req, "request_id", None)
        if rid is not None:
            if "\0" in rid:
                raise ValueError("request_id: expected no NUL character")
            tag = f"{rid}\0{_digest(orjson.dumps(body))}"
            body["rq"] = tag
        did = new_decision_id()
        body["id"] = did
        return PreparedDecide(uh, x, basket, req.group, orjson.dumps(body), did, tag,
                              extra=extra)

    def apply_decide(self, p: PreparedDecide) -> tuple[Decision, int]:
        """Logs and applies one decision; returns it and its log seq (not yet durable).
        A request_id used within the feedback wait of its decision (pending or finalised):
        the same body returns that decision (nothing logged, nothing charged), another
        body raises ConflictError."""
        self._check_writable()
        with self._apply_lock:
            if p.request_tag:
                found = self.engine.decision_for_request(p.request_tag.partition("\0")[0],
                                                         now=self._estimated_now())
                if found is not None:
                    if found[1] != p.request_tag:
                        raise ConflictError("request_id: already used for a decision with "
                                            "another request body (a retry must repeat the "
                                            "request exactly)")
                    return found[0], self._applied_seq  # durable once what precedes is
            now, seq = self._append(KIND_DECIDE, p.payload)
            self.engine.preset_ids = [p.decision_id]
            try:
                d = self.engine.decide(p.user, context=p.context, basket=p.basket,
                                       group=p.group, now=now, explain=p.explain, **p.extra)
            finally:
                self.engine.preset_ids = []
            if p.request_tag:
                self.engine.tag_request(d.id, p.request_tag)
        self._offer_counters[d.offer].inc()
        self._maybe_wake()
        return d, seq

    def prepare_batch(self, req: Any) -> PreparedBatch:
        """As prepare_decide, for every request of a batch."""
        rows = []
        for i, r in enumerate(req.requests):
            if getattr(r, "request_id", None) is not None:
                raise ValueError(f"requests[{i}].request_id: not taken in a batch (send the "
                                 "request to /v1/decide to make it idempotent)")
            try:
                rows.append(self._checked(r))
                self._check_batch_row(r)
            except ValueError as exc:
                raise ValueError(f"requests[{i}].{exc}") from None
        users = [r[0] for r in rows]
        ctxs = [r[1] for r in rows] if self.n_features is not None else None
        ctxs = self._batch_contexts(ctxs)
        xs = np.array(ctxs, dtype=np.float64) if ctxs is not None else None
        groups = [r.group for r in req.requests]
        ids = [new_decision_id() for _ in rows]
        body: dict[str, Any] = {"us": users, "xs": ctxs, "bs": [r[3] for r in rows],
                                "gs": groups, "ids": ids}
        extra = self._parity_batch_inputs(req, body)
        return PreparedBatch(users, xs, [r[4] for r in rows], groups, orjson.dumps(body), ids,
                             extra=extra)

    def apply_batch(self, p: PreparedBatch) -> tuple[list[Decision], int]:
        self._check_writable()
        with self._apply_lock:
            now, seq = self._append(KIND_DECIDE_BATCH, p.payload)
            self.engine.preset_ids = list(p.decision_ids)
            try:
                out = self.engine.decide_batch(p.users, contexts=p.contexts,
                                               baskets=p.baskets, groups=p.groups, now=now,
                                               **p.extra)
            finally:
                self.engine.preset_ids = []
        for d in out:
            self._offer_counters[d.offer].inc()
        self._maybe_wake()
        return out, seq

    def prepare_feedback(self, req: Any) -> PreparedFeedback:
        body = {"d": req.decision_id, "e": req.event_id, "c": req.clicked,
                "p": req.purchased, "r": req.revenue, "cg": req.cost_of_goods,
                "ds": req.discount, "cr": req.coupon_redeemed, "i": req.item}
        if "\0" in req.event_id:
            raise ValueError("event_id: expected no NUL character")
        # The outcome's digest: an event id reused with another outcome is a conflict.
        digest = _digest(orjson.dumps([body[k] for k in ("c", "p", "r", "cg", "ds", "cr",
                                                          "i")]))
        body["h"] = digest
        return PreparedFeedback(_feedback_kwargs(body), req.decision_id, req.event_id,
                                orjson.dumps(body), digest)

    def apply_feedback(self, p: PreparedFeedback) -> tuple[FeedbackResult, int]:
        """Checks the feedback against what the engine quoted for the decision (money,
        coupon, event id, events per decision: nothing is logged when it fails), then
        logs and applies it."""
        self._check_writable()
        lim = self.config.limits
        with self._apply_lock:
            k = p.kwargs
            self.engine.check_feedback(
                p.decision_id, p.event_id, p.digest, purchased=k["purchased"],
                revenue=k["revenue"], cost_of_goods=k["cost_of_goods"],
                discount=k["discount"], coupon_redeemed=k["coupon_redeemed"],
                revenue_multiple=lim.max_revenue_multiple,
                max_events=lim.max_events_per_decision)
            now, seq = self._append(KIND_FEEDBACK, p.payload)
            created = self._pending_created(p.decision_id)
            res = self.engine.feedback(p.decision_id, p.event_id, now=now, check=False,
                                       **p.kwargs)  # checked above, with this service's limits
            self.engine.note_outcome(p.decision_id, p.event_id, p.digest)
        if created is not None:
            self.metrics.feedback_lag.observe(max(now - created, 0.0))
        c = self._feedback_counters.get(res.status)
        if c is None:
            c = self._feedback_counters[res.status] = self.metrics.feedback.labels(res.status)
        c.inc()
        self._maybe_wake()
        return res, seq

    def _pending_created(self, decision_id: str) -> float | None:
        return self.engine.pending_created_at(decision_id)

    # --- feature parity: events, recommendations, exclusions, deferred activation --------
    def _check_parity_fields(self, req: Any) -> None:
        """What this service cannot serve at all (no feature store, no recommender)."""
        eng = self.engine
        if req.events is not None and eng.features is None:
            raise ValueError("events: this service has no feature store ([features] is not "
                             "configured); send the user's context instead")
        if eng.recommender is None:
            if req.k is not None:
                raise ValueError("k: this service has no item recommender ([recommender] is "
                                 "not configured); send a basket")
            if req.candidates is not None:
                raise ValueError("candidates: this service has no item recommender "
                                 "([recommender] is not configured); send a basket")
            if req.basket is None:
                raise ValueError("basket: required (this service has no item recommender)")

    def _estimated_now(self) -> float:
        # The time a record appended now would get, at least (the clock never goes back).
        return max(time.time(), self._last_now)

    def _parity_inputs(self, req: Any, uh: Pseudonym, body: dict[str, Any]) -> dict[str, Any]:
        """The engine keywords of a decide request's events, k, candidates, exclusions and
        deferral, checked as the engine will (nothing is logged for a rejected request);
        adds them to the log record ``body`` only when present, so records of requests
        without them stay as they were."""
        extra: dict[str, Any] = {}
        events = None
        if req.events is not None:
            events = [_event_row(e) for e in req.events]
            body["ev"] = events
            extra["events"] = _events(events)
        for key, field in (("k", "k"), ("c", "candidates"), ("xo", "exclude_offers")):
            v = getattr(req, field)
            if v is not None:
                body[key] = v
                extra[field] = v
        if req.defer_activation:
            body["da"] = True
            extra["defer_activation"] = True
        now = self._estimated_now()
        allowed = self.engine.check_request(uh, events=extra.get("events"), k=req.k,
                                            candidates=req.candidates,
                                            exclude_offers=req.exclude_offers, now=now)
        if allowed is not None and req.basket is not None:
            # Exclusions that leave the basket no eligible offer are refused here, before
            # the record is logged (the engine would refuse it after).
            cols = _basket_columns(req.basket.lines)
            if not (self.catalogue.quote(_basket(cols), now).eligible & allowed).any():
                raise ValueError("exclude_offers: no eligible offer is left for this basket "
                                 "(margin floor and exclusions)")
        return extra

    @staticmethod
    def _check_batch_row(r: Any) -> None:
        for field in ("events", "k", "candidates"):
            if getattr(r, field) is not None:
                raise ValueError(f"{field}: not served in a batch (a batch row is priced on "
                                 "its basket); send this request to /v1/decide")
        if r.basket is None:
            raise ValueError("basket: required in a batch")

    @staticmethod
    def _batch_contexts(ctxs: list[Any] | None) -> list[Any] | None:
        """With a feature store a batch sends a context for every row or for none (then
        every row gets its user's feature vector)."""
        if ctxs is None or all(c is not None for c in ctxs):
            return ctxs
        if all(c is None for c in ctxs):
            return None
        i = next(i for i, c in enumerate(ctxs) if c is None)
        raise ValueError(f"requests[{i}].context: required, because other rows of this batch "
                         "send one (send a context for every row or for none)")

    def _parity_batch_inputs(self, req: Any, body: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        rows = req.requests
        if any(r.exclude_offers is not None for r in rows):
            xos = [r.exclude_offers for r in rows]
            for i, xo in enumerate(xos):
                try:
                    self.engine.offer_mask(xo)
                except ValueError as exc:
                    raise ValueError(f"requests[{i}].{exc}") from None
            body["xos"] = xos
            extra["exclude_offers"] = xos
        if any(r.defer_activation for r in rows):
            body["das"] = [bool(r.defer_activation) for r in rows]
            extra["defer_activation"] = body["das"]
        return extra

    def prepare_activate(self, req: Any) -> bytes:
        """POST /v1/activate: the log payload of an activation (the decision id)."""
        return orjson.dumps({"d": req.decision_id})

    def apply_activate(self, payload: bytes) -> tuple[FeedbackResult, int]:
        """Logs and applies an activation (see Engine.activate)."""
        self._check_writable()
        with self._apply_lock:
            now, seq = self._append(KIND_ACTIVATE, payload)
            res = self.engine.activate(orjson.loads(payload)["d"], now=now)
        self._maybe_wake()
        return res, seq

    def prepare_events(self, req: Any) -> tuple[Pseudonym, list[dict[str, Any]], bytes]:
        """POST /v1/events: behaviour events of a user without a decision, checked (all or
        none) before anything is logged."""
        if self.engine.features is None:
            raise ValueError("events: this service has no feature store ([features] is not "
                             "configured)")
        uh = Pseudonym(self.engine.pseudonym(req.user))
        rows = [_event_row(e) for e in req.events]
        events = _events(rows)
        self.engine.check_request(uh, events=events, now=self._estimated_now())
        return uh, events, orjson.dumps({"u": uh, "ev": rows})

    def apply_events(self, prepared: tuple[Pseudonym, list[dict[str, Any]], bytes]
                     ) -> tuple[int, int]:
        """Logs and adds a user's events; returns how many and the log seq."""
        self._check_writable()
        uh, events, payload = prepared
        with self._apply_lock:
            now, seq = self._append(KIND_EVENTS, payload)
            n = self.engine.record_events(uh, events, now=now)
        self._maybe_wake()
        return n, seq

    def prepare_items(self, req: Any) -> bytes:
        """POST /v1/items: rows of the item table, checked on a scratch copy of the
        recommender (nothing is logged for a rejected request)."""
        rec = self.engine.recommender
        if rec is None:
            raise ValueError("items: this service has no item recommender ([recommender] is "
                             "not configured)")
        body = {"i": [r.item_id for r in req.items], "e": [r.embedding for r in req.items],
                "c": [r.category for r in req.items], "p": [r.unit_price for r in req.items],
                "co": [r.unit_cost for r in req.items],
                "b": (None if all(r.bias is None for r in req.items)
                      else [r.bias for r in req.items])}
        scratch = copy.copy(rec)
        scratch.upsert_items(*_item_columns(body))  # the checks, on a shallow copy
        return orjson.dumps(body)

    def apply_items(self, payload: bytes) -> tuple[int, int]:
        """Logs and applies item table rows; returns the number of items and the seq."""
        self._check_writable()
        with self._apply_lock:
            _, seq = self._append(KIND_ITEMS, payload)
            n = self.engine.update_items(*_item_columns(orjson.loads(payload)))
        self._maybe_wake()
        return n, seq

    def expire(self) -> int:
        """Finalises decisions past the feedback wait (logged like any change)."""
        if self.state != "ready" or self.engine.n_pending == 0:
            return 0
        with self._apply_lock:
            now, _ = self._append(KIND_EXPIRE, b"{}")
            return self.engine.expire(now)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs an engine call on the worker threads (or inline without them)."""
        if self._executor is None:
            return fn(*args)
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- reading ------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """GET /v1/policy: policy, per-offer statistics, engine counters, limits, storage."""
        with self._apply_lock:
            # report() moves the budget into the current period; with the monotonic clock
            # that is what the next logged record would do anyway, so replay still matches.
            rep = self.engine.report(self._clock())
            seq = self._applied_seq
        pol = self.engine.policy
        counts = pol.counts.tolist()  # type: ignore[attr-defined]
        offers = []
        rates = rep["offer_purchase_rate"]
        sums = (pol.reward_sums.tolist()  # type: ignore[attr-defined]
                if hasattr(pol, "reward_sums") else None)
        expected = None if pol.contextual else pol.expectations().tolist()
        for k, oid in enumerate(self.catalogue.ids):
            row: dict[str, Any] = {"offer": k, "id": oid, "updates": counts[k],
                                   "purchase_rate": rates[oid]}
            if sums is not None:
                row["reward_sum"] = sums[k]
            if expected is not None:
                row["expected_reward"] = expected[k]
            offers.append(row)
        engine_keys = ("pending", "decisions", "finalised", "defaulted", "late", "duplicate",
                       "unknown", "purchases")
        return {
            "policy": {"name": rep["policy"], "version": rep["policy_version"],
                       "decisions": pol.n_decisions, "settings": dict(self.config.policy.settings),
                       "n_features": self.n_features},
            "offers": offers,
            "engine": {k: rep[k] for k in engine_keys},
            "budget": rep.get("budget"),
            "fairness": rep.get("fairness"),
            "storage": {"last_seq": seq, "snapshot_seq": self._snapshot_seq,
                        "records_since_snapshot": self._since_snapshot},
        }

    def _metrics_view(self) -> dict[str, Any]:
        if self.state not in ("ready", "stopped"):
            return {}
        with self._apply_lock:
            rep = self.engine.report(self._clock())
        return {"stats": rep, "pending": rep["pending"], "policy_version": rep["policy_version"],
                "budget": rep.get("budget"), "fairness": rep.get("fairness")}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, detail) for /readyz: recovery outcome, storage and snapshot errors."""
        failure = self.journal.failure
        ready = self.state == "ready" and failure is None and self._write_error is None
        detail: dict[str, Any] = {"state": self.state, "recovery": self.recovery,
                                  "last_seq": self._applied_seq,
                                  "snapshot_seq": self._snapshot_seq}
        if failure is not None:
            detail["storage"] = f"failed: {failure}"
        elif self._write_error is not None:
            detail["storage"] = f"last write failed: {self._write_error}"
        else:
            detail["storage"] = "ok"
        if self._snapshot_error is not None:
            detail["snapshot"] = f"last snapshot failed: {self._snapshot_error}"
        return ready, detail

    # --- snapshots and expiry -------------------------------------------------------------
    def snapshot(self) -> int:
        """Writes a snapshot of the engine now; returns the seq it covers. Raises OSError
        (counted, reported in /readyz) if it could not be written; the log keeps all."""
        with self._snapshot_lock:
            t0 = time.perf_counter()
            since = 0
            try:
                with self._apply_lock:
                    if self.engine.log is not None:
                        self.engine.flush()  # the decision log holds what the snapshot covers
                    # Only the copy holds the apply lock; encoding happens outside it.
                    captured = self.engine.capture_state()
                    now_bytes = _NOW.pack(self._last_now)
                    seq = self._applied_seq
                    since, self._since_snapshot = self._since_snapshot, 0
                data = now_bytes + self.engine.encode_state(captured)
                self._last_snapshot_at = time.monotonic()
                self.storage.write_snapshot(seq, data, self.fingerprint,
                                            verify=self._verify_snapshot)
            except OSError as exc:
                with self._apply_lock:
                    self._since_snapshot += since
                self._last_snapshot_at = time.monotonic()  # retry after an interval
                self._snapshot_error = f"{type(exc).__name__}: {exc}"
                self.metrics.snapshots.labels("error").inc()
                self.metrics.storage_errors.labels("snapshot").inc()
                log.error("snapshot failed (the log keeps everything): %s", exc)
                raise
            self._snapshot_error = None
            self._snapshot_seq = seq
            self.metrics.snapshots.labels("ok").inc()
            self.metrics.snapshot_seconds.observe(time.perf_counter() - t0)
            return seq

    def _verify_snapshot(self, data: bytes) -> None:
        """Loads a snapshot's payload into a scratch engine of this configuration
        (ValueError if it does not load: e.g. a non-finite statistic), so that a snapshot
        the next start would refuse never replaces the log it covers."""
        scratch = build_engine(self.config, self.catalogue, None)
        scratch.load_bytes(data[_NOW.size:])

    def _maybe_wake(self) -> None:
        if self._since_snapshot >= self.config.storage.snapshot_every_events:
            self._wake.set()

    def _ticks(self, interval: float) -> Iterator[float]:
        """The housekeeping thread's turns: waits `interval` seconds (or until woken),
        and while the service is ready yields the monotonic time; ends when stopped."""
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set() or self.state != "ready":
                continue
            yield time.monotonic()

    def _housekeeping(self) -> None:
        st = self.config.storage
        for t in self._ticks(HOUSEKEEPING_TICK_SECONDS):
            try:
                if t - self._last_expire_at >= self.config.expire_every_seconds:
                    self._last_expire_at = t
                    self.expire()
                due = (self._since_snapshot >= st.snapshot_every_events
                       or (self._since_snapshot > 0
                           and t - self._last_snapshot_at >= st.snapshot_interval_seconds))
                if due:
                    self.snapshot()
            except OSError:
                pass  # counted and reported by expire/snapshot; retried at the next tick
            except Exception:  # a bug must not silently stop snapshots
                log.exception("housekeeping failed")


# Events in log records: [event, category, price, discount, timestamp] per event.
_EVENT_FIELDS = ("event", "category", "price", "discount", "timestamp")


def _event_row(e: Any) -> list[Any]:
    return [e.event, e.category, e.price, e.discount, e.timestamp]


def _events(rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(_EVENT_FIELDS, r, strict=True)) for r in rows]


def _parity_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """Engine.decide keywords of a logged decide record (absent keys: not given)."""
    out: dict[str, Any] = {}
    if "ev" in body:
        out["events"] = _events(body["ev"])
    for key, field in (("k", "k"), ("c", "candidates"), ("xo", "exclude_offers")):
        if key in body:
            out[field] = body[key]
    if body.get("da"):
        out["defer_activation"] = True
    return out


def _item_columns(body: dict[str, Any]) -> tuple[Any, ...]:
    """Engine.update_items arguments of an items record."""
    return body["i"], body["e"], body["c"], body["p"], body["co"], body["b"]


def _parity_batch_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "xos" in body:
        out["exclude_offers"] = body["xos"]
    if "das" in body:
        out["defer_activation"] = body["das"]
    return out


def _feedback_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    return {"clicked": body["c"], "purchased": body["p"], "revenue": body["r"],
            "cost_of_goods": body["cg"], "discount": body["ds"],
            "coupon_redeemed": body["cr"], "item": body["i"]}


__all__ = ["DecisionService", "Pseudonym", "ServiceEngine", "ServiceUnavailable",
           "build_engine", "make_storage"]
