"""Cluster mode: many service workers (processes, on one host or many) sharing one state
in Redis (``[storage] kind = "redis"``; the keys and the Lua script: redis_state.py).

What is shared, and how:

* **Policy statistics.** Each worker decides from its own copy of the policy (no network
  round trip for the choice). A finalised decision's policy update (arm, reward, context)
  is appended to the worker's list ``u:<worker>`` in the same atomic script that settles
  the decision, so it is in Redis before the answer. Every ``sync_interval_ms`` (or as
  soon as ``sync_every_updates`` wait) the worker folds its list: it replays the updates
  into a fresh policy, takes the change of its statistics arrays (the delta since its
  last sync, never a whole snapshot) and a script adds that delta to the merged
  statistics and drops exactly those entries from the list, in one step; the worker then
  loads the merged statistics. Every update is thus counted once: in a list, or in the
  merged statistics. A worker that dies leaves its list; another worker notices its
  heartbeat is gone and folds it. After the feedback stops, every worker holds the
  statistics one process would hold after the same updates (sums equal up to the order of
  float64 additions, ~1e-16 relative).
* **Decay.** Forgetting (``decay`` < 1) multiplies every statistic at every update, which
  does not commute with adding deltas from several workers; cluster mode refuses it (a
  clear error at start). Policies whose state is not a sum (ConversionTS) are refused too.
* **Budget.** One Redis hash holds the pacer's state. A decide reads it (with the user's
  caps row, one round trip, no write), the policy chooses within the masks it gives, and
  one script records the decision only if the chosen offer's worst case still fits the
  budget and the caps (compare-and-set: another worker may have reserved meanwhile);
  otherwise nothing is recorded and the worker decides again from a fresh read (at most
  ``DECIDE_ATTEMPTS`` times). Reservations are atomic, so the budget is never exceeded
  across workers; coupons keep their hold in Redis until redeemed or expired; the shadow
  price lambda is stepped in the script and read with the budget (shared pacing). One
  write, so one fsync, per decision.
* **Per-user caps, pending decisions, idempotency keys** live in Redis keyed by the
  pseudonym, the decision id or the request id, with expiry after the feedback wait.
  Feedback reaches any worker: it reads the decision, applies the engine's own checks and
  feedback code to it and writes the result back in one script, guarded by the
  decision's keys still holding what it read (else it starts over). A decision past its
  wait is finalised (default reward) exactly once, by whichever worker takes its lease
  (SET NX PX) first, with the same guard.
* **Durability.** A ``200`` means the script that made the change has returned, i.e. the
  change is in Redis's append-only file, fsynced with ``appendfsync always`` (the default
  ``storage.appendfsync``, checked at start) or within a second with ``everysec``. Each
  worker writes its decision-log rows to its own Parquet parts (``part-<host>-<pid>-
  <start>-NNNNN.parquet``) under ``storage.dir/decisions``, one folder read as one log.
* **Redis unreachable**: writes answer 503 and change nothing the worker cannot record;
  /readyz says why; the worker recovers by itself when Redis answers again.

Not shared (refused at start in cluster mode, with an error naming the setting): the
feature store and the item recommender, fairness, weighted objectives, deferred
activation; ``/v1/decide/batch``, ``/v1/events`` and ``/v1/items`` answer 422.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .._extras import require
from ..constraints import SECONDS_PER_DAY, BudgetConfig, BudgetPacer, UserCaps, UserCapsConfig
from ..engine import Decision, FeedbackResult
from ..engine._pending import PendingStore
from ..engine.accounting import ConflictError
from ..engine.decision_log import DecisionLogWriter
from ..policies import make_policy
from ..policies._codes import CTR_PROPENSITY_AT, CTR_UPDATES
from . import redis_state as rs
from .config import ServiceConfig
from .runtime import (
    DECISION_LOG_BACKSTOP,
    DecisionService,
    PreparedDecide,
    PreparedFeedback,
    ServiceUnavailable,
)
from .storage import FingerprintMismatch, MemoryStorage

log = logging.getLogger("promobandit.service.cluster")

# Updates folded per sync call at most (a long list is folded over several calls).
MAX_FOLD = 5000
# Decisions finalised per expiry sweep at most (the next sweep takes the rest).
EXPIRE_BATCH = 1000
# A decide whose chosen offer another worker's decision made unaffordable meanwhile (budget,
# caps) is decided again from a fresh read, at most this many times in all (then 503).
DECIDE_ATTEMPTS = 5
# A feedback whose decision another worker changed meanwhile is applied again from a
# fresh read, at most this many times in all (then 503).
FEEDBACK_ATTEMPTS = 5
# Heartbeats a worker writes per worker_timeout_ms (so that a late one is not taken for
# death).
HEARTBEATS_PER_TIMEOUT = 4
# Redis client timeouts (seconds): connecting, and any one command.
CONNECT_TIMEOUT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 2.0


class ClusterConfigError(ValueError):
    """The configuration asks for something cluster mode does not share."""


def check_cluster_config(cfg: ServiceConfig) -> None:
    """Refuses (ValueError naming the setting) what cluster mode cannot share exactly."""
    if cfg.storage.kind != "redis":
        raise ClusterConfigError(f"storage.kind: cluster mode needs 'redis', got "
                                 f"{cfg.storage.kind!r}")
    name = cfg.policy.name
    if name == "ConversionTS":
        raise ClusterConfigError("policy.name: ConversionTS's posterior is not a sum of "
                                 "statistics, so workers cannot merge it; use another "
                                 "policy in cluster mode")
    decay = dict(cfg.policy.settings).get("decay", 1.0)
    if decay != 1.0:
        raise ClusterConfigError(f"policy.settings.decay: cluster mode needs 1.0 (forgetting "
                                 f"multiplies every statistic at every update, which does not "
                                 f"add up across workers), got {decay!r}")
    e = cfg.engine
    if e.fairness is not None:
        raise ClusterConfigError("engine.fairness: not shared in cluster mode (remove the "
                                 "table, or run the embedded mode)")
    if not isinstance(e.objective, str):
        raise ClusterConfigError("engine.objective: cluster mode takes 'profit', 'revenue' "
                                 "or 'conversion' (a weighted objective's retention and "
                                 "floor state is not shared)")
    if cfg.features is not None:
        raise ClusterConfigError("features: the feature store is not shared in cluster mode "
                                 "(remove [features], or run the embedded mode)")
    if cfg.recommender is not None:
        raise ClusterConfigError("recommender: the item recommender is not shared in cluster "
                                 "mode (remove [recommender], or run the embedded mode)")


def connect(url: str) -> Any:
    """A Redis client for ``url`` that never retries a command by itself (a retried
    script could apply twice; the service answers 503 and the client retries)."""
    redis = require("redis", "cluster", "cluster mode (storage.kind = 'redis')")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                socket_timeout=COMMAND_TIMEOUT_SECONDS,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                health_check_interval=0)


def worker_seed(seed: int, worker_no: int) -> int:
    """The policy seed of worker number ``worker_no``: distinct streams per worker (two
    workers with one seed would draw the same exploration), the same for the same seed
    and number (deterministic)."""
    h = hashlib.blake2b(f"{seed}:{worker_no}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1  # below 2**63


class _Ops:
    """Guards, operations, keys and payloads of one call of the script's "apply"."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []
        self.guards: list[list[Any]] = []
        self.ops: list[list[Any]] = []
        self._kidx: dict[str, int] = {}

    def k(self, key: str) -> int:
        i = self._kidx.get(key)
        if i is None:
            self.keys.append(key)
            i = self._kidx[key] = len(self.keys)
        return i

    def a(self, value: Any) -> int:
        self.args.append(value)
        return len(self.args) + 3  # ARGV[1..3] are the command, the budget config, the spec


class RedisBudgetPacer(BudgetPacer):
    """The budget pacer whose state is in Redis (see the module doc): ``mask`` works on
    the state the service read for this request (``load_read``); ``commit``, ``settle``
    and ``book`` are queued for the call that records the change (``ops``), which
    checks that the chosen offer still fits."""

    def __init__(self, config: BudgetConfig) -> None:
        super().__init__(config)
        self.ops: list[tuple[Any, ...]] = []
        # Reads the pacer's hash from Redis (set by the service), for report().
        self.read: Any = None

    def script_config(self) -> bytes:
        c = self.config
        return orjson.dumps({"amount": c.amount, "start": c.start,
                             "period_seconds": c.period_seconds, "ahead_band": c.ahead_band,
                             "step_size": c.step_size, "update_every": c.update_every,
                             "lambda_init": c.lambda_init, "lambda_max": c.lambda_max,
                             "cum_plan": self._cum_plan.tolist()})

    def load_read(self, h: dict[bytes, bytes]) -> None:
        """The pacer's state as read from Redis (a fresh budget: nothing read)."""
        f = {k.decode(): v.decode() for k, v in h.items()}

        def num(name: str, default: float) -> float:
            v = f.get(name, "")
            return float(v) if v != "" else default

        self.period = int(num("period", 0.0))
        self.spent, self.reserved = num("spent", 0.0), num("reserved", 0.0)
        self.expected = num("expected", 0.0)
        self.lam = num("lam", self.config.lambda_init)
        self._since_update = int(num("since", 0.0))
        lt = f.get("last_time", "")
        self._last_time = float(lt) if lt != "" else None
        self._last_committed = num("last_committed", 0.0)

    def commit(self, now: float, max_cost: float, expected_cost: float) -> None:
        self.ops.append(("commit", float(max_cost), float(expected_cost), now))

    def report(self, now: float) -> dict[str, float]:
        """The shared budget now (read from Redis)."""
        if self.read is not None:
            self.load_read(self.read())
        return super().report(now)

    def settle(self, now: float, max_cost: float, expected_cost: float, actual: float) -> None:
        self.ops.append(("settle", now, float(max_cost), float(expected_cost), float(actual)))

    def book(self, now: float, cost: float) -> None:
        self.ops.append(("book", now, float(cost)))


class RedisUserCaps(UserCaps):
    """Per-user caps whose rows are in Redis: ``mask`` works on the row the service read
    for this request (``rows``); the changes are queued for the call that records them
    (``ops``), which checks that the chosen offer still fits."""

    def __init__(self, config: UserCapsConfig) -> None:
        super().__init__(config)
        self.rows: dict[str, list[float] | None] = {}
        self.ops: list[tuple[str, float, float, float, float]] = []

    def _indices(self, now: float) -> tuple[float, float]:
        return (float(np.floor(now / SECONDS_PER_DAY)),
                float(np.floor(now / self.config.period_seconds)))

    def mask(self, user: str, now: float, discounted: np.ndarray,
             max_costs: np.ndarray) -> np.ndarray:
        row = self.rows.get(user)
        self._users.clear()
        if row is not None:
            self._users[user] = row
        try:
            return super().mask(user, now, discounted, max_costs)
        finally:
            self._users.clear()

    def record_offer(self, user: str, now: float, discounted: bool) -> None:
        day, period = self._indices(now)
        self.ops.append((user, day, period, 1.0 if discounted else 0.0, 0.0))

    def record_cost(self, user: str, now: float, cost: float) -> None:
        day, period = self._indices(now)
        self.ops.append((user, day, period, 0.0, float(cost)))

    def release_offer(self, user: str, when: float, discounted: bool) -> None:
        raise ValueError("defer_activation: not served in cluster mode")

    def ttl_ms(self) -> int:
        return int(1000 * max(SECONDS_PER_DAY, self.config.period_seconds)) + 60_000


class ClusterLogWriter(DecisionLogWriter):
    """A decision-log writer whose parts carry the worker's name, so that many workers
    write into one folder without clobbering: ``part-<worker>-NNNNN.parquet``."""

    def __init__(self, path: str, flush_rows: int, worker: str) -> None:
        super().__init__(path, flush_rows)
        self.worker = worker
        self._part = 0

    def _part_name(self) -> str:
        return f"part-{self.worker}-{self._part:05d}.parquet"


class ClusterService(DecisionService):
    """A DecisionService whose shared state is in Redis (see the module doc).

    config: a configuration with ``storage.kind = "redis"``. client: a Redis client
    (default: ``connect(config.storage.url)``). worker: this worker's id (default
    host-pid-start time in ms, unique across restarts).
    """

    def __init__(self, config: ServiceConfig, client: Any = None,
                 worker: str | None = None) -> None:
        check_cluster_config(config)
        super().__init__(config, storage=MemoryStorage())
        st = config.storage
        self.redis = client if client is not None else connect(st.url)
        self.worker = worker or (f"{socket.gethostname().replace('-', '_')}-{os.getpid()}-"
                                 f"{int(time.time() * 1000)}")
        self.P = f"{st.namespace}:"
        self._script = self.redis.register_script(rs.SCRIPT)
        self._sync_lock = threading.Lock()
        self._redis_error: str | None = None
        self._n_offers = len(self.catalogue)
        self._wait = float(config.engine.feedback_wait_seconds)
        self._unsynced = 0
        self._last_sync = 0.0
        self._last_reap = 0.0
        self._last_flush = time.monotonic()
        self.worker_no = -1
        eng = self.engine
        if eng.budget is not None:
            eng.budget = RedisBudgetPacer(eng.budget.config)
            eng.budget.read = lambda: self._call(self.redis.hgetall, self.P + "budget")
            eng.ledger.budget = eng.budget
        if eng.caps is not None:
            eng.caps = RedisUserCaps(eng.caps.config)
            eng.ledger.caps = eng.caps
        self._budget_cfg = (eng.budget.script_config()
                            if isinstance(eng.budget, RedisBudgetPacer) else b"{}")
        if st.decision_log:
            eng.log = ClusterLogWriter(str(Path(st.dir) / "decisions"),
                                       max(1, st.snapshot_every_events * DECISION_LOG_BACKSTOP),
                                       self.worker)
        self._captured: list[bytes] = []
        self._current_id = ""
        self._fresh = self._new_policy(0)
        self._stat_names = rs.policy_stat_names(self._fresh._arrays)
        self._fresh_stats = rs.pack_stats(self._fresh._arrays, self._stat_names)

    # --- policy ----------------------------------------------------------------------------
    def _new_policy(self, seed: int) -> Any:
        p = self.config.policy
        return make_policy(p.name, self._n_offers, p.n_features, seed=seed, backend=p.backend,
                           **dict(p.settings))

    def _install_policy(self, seed: int) -> None:
        """This worker's policy: its own stream (worker_seed), updates captured for Redis
        instead of applied (the local copy changes only by loading merged statistics)."""
        pol = self._new_policy(seed)
        pol.update = self._capture_update  # type: ignore[method-assign]
        self.engine.policy = pol

    def _capture_update(self, arm: int, reward: float, context: Any = None,
                        weight: float = 1.0) -> None:
        if weight != 1.0:
            raise ValueError("weight: cluster mode learns with weight 1")
        self._captured.append(rs.encode_update(self._current_id, int(arm), float(reward),
                                               context))

    # --- Redis helpers ---------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A Redis call; a connection failure becomes ServiceUnavailable (503)."""
        redis = require("redis", "cluster", "cluster mode")
        try:
            out = fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._redis_error = f"{type(exc).__name__}: {exc}"
            raise ServiceUnavailable(f"redis: unreachable ({exc}); nothing acknowledged "
                                     "(retry later)") from exc
        self._redis_error = None
        return out

    def _run_script(self, keys: list[str], args: list[Any]) -> Any:
        return self._call(self._script, keys=keys, args=args)

    def _read_limits(self, user: str) -> list[Any]:
        """One round trip (no lock held): the budget's state and the user's caps row."""
        eng = self.engine
        budget = isinstance(eng.budget, RedisBudgetPacer)
        caps = isinstance(eng.caps, RedisUserCaps)
        if not (budget or caps):
            return []
        pipe = self.redis.pipeline(transaction=False)
        if budget:
            pipe.hgetall(self.P + "budget")
        if caps:
            pipe.hmget(f"{self.P}caps:{user}", ["d", "o", "p", "s"])
        return list(self._call(pipe.execute))

    def _load_limits(self, user: str, read: list[Any]) -> None:
        """What _read_limits read, into the masks (under the apply lock)."""
        eng = self.engine
        out = list(read)
        if isinstance(eng.budget, RedisBudgetPacer):
            eng.budget.load_read(out.pop(0))
        if isinstance(eng.caps, RedisUserCaps):
            v = out.pop(0)
            eng.caps.rows = {user: None if v[0] is None else [float(x) for x in v]}

    def _apply(self, o: _Ops) -> list[Any]:
        spec = orjson.dumps({"guards": o.guards, "ops": o.ops})
        r = self._run_script(o.keys, ["apply", self._budget_cfg, spec, *o.args])
        return [x.decode() if isinstance(x, bytes) and i == 0 else x for i, x in enumerate(r)]

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Checks Redis (reachable, append-only file as configured, same engine
        configuration as the other workers), registers this worker, loads the merged
        statistics, then starts serving and the background work."""
        try:
            self._join()
        except BaseException:
            with contextlib.suppress(Exception):
                self.redis.close()  # a worker that does not start holds no connection
            raise
        super().start()

    def _join(self) -> None:
        P = self.P
        self._call(self.redis.ping)
        self._check_durability()
        fp = self.fingerprint.hex()
        self._call(self.redis.set, P + "fingerprint", fp, nx=True)
        theirs = self._call(self.redis.get, P + "fingerprint")
        if theirs is not None and theirs.decode() != fp:
            raise FingerprintMismatch(
                f"redis namespace {self.config.storage.namespace!r}: the workers there run "
                "another engine configuration (catalogue, policy, engine settings); use the "
                "same configuration or another storage.namespace")
        self._call(self.redis.set, P + "policy", self._fresh_stats, nx=True)
        self.worker_no = int(self._call(self.redis.incr, P + "worker_seq"))
        self._install_policy(worker_seed(self.config.engine.seed, self.worker_no))
        self._heartbeat()
        self.sync()

    def _check_durability(self) -> None:
        redis = require("redis", "cluster", "cluster mode")
        want = self.config.storage.appendfsync
        try:
            aof = self._call(self.redis.config_get, "append*")
        except redis.exceptions.ResponseError as exc:  # CONFIG renamed or forbidden
            log.warning("cannot read the Redis server's appendonly/appendfsync (%s); make "
                        "sure it runs with appendonly yes, appendfsync %s", exc, want)
            return
        if aof.get("appendonly") != "yes":
            raise ServiceUnavailable(
                "redis: the server runs without its append-only file (appendonly no), so an "
                "acknowledged change could be lost; start it with --appendonly yes "
                f"--appendfsync {want}")
        got = aof.get("appendfsync")
        if want == "always" and got != "always":
            raise ServiceUnavailable(
                f"redis: the server fsyncs its append-only file '{got}', storage.appendfsync "
                "asks for 'always' (every acknowledged change on disk); start it with "
                "--appendfsync always, or set storage.appendfsync = 'everysec' to accept "
                "a one-second window")

    def stop(self, snapshot: bool = True) -> None:
        """Stops the background work, folds what this worker learnt, flushes its decision
        log and leaves the worker set (its heartbeat removed)."""
        self._stop_background()
        if self.state == "ready":
            with contextlib.suppress(ServiceUnavailable):
                self.sync()
                if self._call(self.redis.llen, f"{self.P}u:{self.worker}") == 0:
                    self._call(self.redis.srem, self.P + "workers", self.worker)
                    self._call(self.redis.delete, f"{self.P}hb:{self.worker}")
            self._flush_log()
        self.journal.stop()
        with contextlib.suppress(Exception):
            self.redis.close()
        self.state = "stopped"
        self.metrics.ready.set(0)

    def _heartbeat(self) -> None:
        P = self.P
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(P + "workers", self.worker)
        pipe.set(f"{P}hb:{self.worker}", b"1", px=self.config.storage.worker_timeout_ms)
        self._call(pipe.execute)

    def _flush_log(self) -> None:
        with self._apply_lock:
            if self.engine.log is not None:
                self.engine.flush()
        self._last_flush = time.monotonic()

    # --- sync of the policy statistics -----------------------------------------------------
    def _fold_delta(self, entries: list[bytes]) -> bytes:
        """The change of the statistics arrays that these updates make, from a fresh policy
        (float64, the layout of the merged statistics)."""
        pol = self._new_policy(0)
        base = {n: pol._arrays[n].copy() for n in self._stat_names}
        ups = [rs.decode_update(e) for e in entries]
        arms = np.array([u[1] for u in ups], dtype=np.int64)
        rewards = np.array([u[2] for u in ups], dtype=np.float64)
        ctxs = (None if ups[0][3] is None
                else np.ascontiguousarray(np.stack([u[3] for u in ups]), dtype=np.float64))
        pol.update_batch(arms, rewards, ctxs)
        delta = {n: pol._arrays[n].astype(np.float64) - base[n] for n in self._stat_names}
        return rs.pack_stats(delta, self._stat_names)

    def _fold(self, worker: str) -> tuple[bool, Any]:
        """Folds the first updates of ``worker``'s list into the merged statistics. Returns
        (done, reply): done when the list had no more than one call's worth."""
        P = self.P
        key = f"{P}u:{worker}"
        entries = self._call(self.redis.lrange, key, 0, MAX_FOLD - 1)
        n = len(entries)
        delta = self._fold_delta(entries) if n else b""
        r = self._run_script([P + "policy", key, P + "stats"],
                             ["sync", n, entries[0] if n else b"", delta])
        if r[0] == b"stale":
            return False, None
        return n < MAX_FOLD, r

    def sync(self) -> None:
        """Pushes this worker's updates since its last sync and loads the merged
        statistics (and the offers' purchase counts)."""
        with self._sync_lock:
            while True:
                done, r = self._fold(self.worker)
                if done and r is not None:
                    break
            self._install_merged(r[1], r[2])
            self._last_sync = time.monotonic()

    def _install_merged(self, blob: bytes, stats_flat: list[bytes]) -> None:
        stats = {stats_flat[i].decode(): stats_flat[i + 1].decode()
                 for i in range(0, len(stats_flat), 2)}
        eng = self.engine
        pol = eng.policy
        merged = rs.unpack_stats(blob, pol._arrays, self._stat_names)
        k = self._n_offers
        decided = np.array([float(stats.get(f"decided:{i}", 0)) for i in range(k)])
        bought = np.array([float(stats.get(f"bought:{i}", 0)) for i in range(k)])
        with self._apply_lock, pol._exclusive():
            for n in self._stat_names:
                pol._arrays[n][...] = merged[n]
            counters = pol._arrays["counters"]
            counters[CTR_UPDATES] = int(stats.get("policy_updates", 0))
            counters[CTR_PROPENSITY_AT] = -1
            pol._after_merge()
            eng.ledger.decided = decided
            eng.ledger.bought = bought
            eng.ledger._update_purchase_rates()
            self._unsynced = 0

    def _reap(self) -> int:
        """Folds the lists of workers whose heartbeat is gone (they died). Returns the
        number of workers folded."""
        P = self.P
        n = 0
        for w in self._call(self.redis.smembers, P + "workers"):
            w = w.decode()
            if w == self.worker or self._call(self.redis.exists, f"{P}hb:{w}"):
                continue
            lease = f"{P}lease:worker:{w}"
            if not self._call(self.redis.set, lease, self.worker, nx=True,
                              px=self.config.storage.lease_ms):
                continue
            try:
                with self._sync_lock:
                    while not self._fold(w)[0]:
                        pass
                if self._call(self.redis.llen, f"{P}u:{w}") == 0:
                    self._call(self.redis.srem, P + "workers", w)
                n += 1
                log.warning("worker %s stopped without leaving: its unsynced updates were "
                            "folded into the shared statistics", w)
            finally:
                self._call(self.redis.delete, lease)
        return n

    # --- housekeeping ----------------------------------------------------------------------
    def _housekeeping(self) -> None:
        st = self.config.storage
        interval = st.sync_interval_ms / 1000.0
        last_expire = time.monotonic()
        last_beat = 0.0
        outage = False
        for t in self._ticks(interval):
            try:
                # a heartbeat is a write (an fsync with appendfsync always): a few per
                # timeout, not one per sync
                if t - last_beat >= st.worker_timeout_ms / (1000.0 * HEARTBEATS_PER_TIMEOUT):
                    last_beat = t
                    self._heartbeat()
                self.sync()
                if t - self._last_reap >= st.worker_timeout_ms / 2000.0:
                    self._last_reap = t
                    self._reap()
                if t - last_expire >= self.config.expire_every_seconds:
                    last_expire = t
                    self.expire()
                if t - self._last_flush >= st.snapshot_interval_seconds:
                    self._flush_log()
                if outage:
                    log.warning("cluster housekeeping: redis answers again")
                    outage = False
            except ServiceUnavailable as exc:
                if not outage:  # once per outage, not at every tick
                    log.warning("cluster housekeeping: %s", exc)
                outage = True
                continue
            except Exception:  # a bug must not silently stop the syncs
                log.exception("cluster housekeeping failed")

    def snapshot(self) -> int:
        """Cluster mode keeps no local snapshot (the state is in Redis): flushes this
        worker's decision log."""
        self._flush_log()
        return 0

    # --- one decision's life ---------------------------------------------------------------
    def _begin(self, decision_id: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        eng = self.engine
        self._captured = []
        self._current_id = decision_id
        for part in (eng.budget, eng.caps):
            if part is not None:
                part.ops.clear()  # type: ignore[union-attr]
        return dict(eng.stats), eng.ledger.decided.copy(), eng.ledger.bought.copy()

    def _changes(self, o: _Ops, before: tuple[dict[str, Any], np.ndarray, np.ndarray]) -> None:
        """The queued budget and caps changes, the engine counters' and purchase counts'
        increments and the captured policy updates, as operations of ``o``."""
        P = self.P
        eng = self.engine
        b = eng.budget
        if isinstance(b, RedisBudgetPacer):
            kb = o.k(P + "budget")
            for op in b.ops:
                o.ops.append([op[0], kb, *op[1:]])
            b.ops.clear()
        c = eng.caps
        if isinstance(c, RedisUserCaps):
            for user, day, period, offers, cost in c.ops:
                o.ops.append(["caps", o.k(f"{P}caps:{user}"), day, period, offers, cost,
                              c.ttl_ms()])
            c.ops.clear()
        stats0, decided0, bought0 = before
        ks = o.k(P + "stats")
        for name, v in eng.stats.items():
            d = int(v) - int(stats0.get(name, 0))
            if d:
                o.ops.append(["hincrby", ks, o.a(name), d])
        for arr, arr0, name in ((eng.ledger.decided, decided0, "decided"),
                                (eng.ledger.bought, bought0, "bought")):
            for i in np.flatnonzero(arr != arr0):
                o.ops.append(["hincrby", ks, o.a(f"{name}:{i}"), int(arr[i] - arr0[i])])
        eng.ledger.decided, eng.ledger.bought = decided0, bought0  # Redis's until the sync
        eng.ledger._update_purchase_rates()
        eng.stats = stats0
        if self._captured:
            ku = o.k(f"{P}u:{self.worker}")
            for e in self._captured:
                o.ops.append(["rpush", ku, o.a(e)])
            self._unsynced += len(self._captured)
            self._captured = []

    def apply_decide(self, p: PreparedDecide) -> tuple[Decision, int]:
        """Decides from this worker's policy copy within the limits as read from Redis,
        then records the decision (budget, caps, the pending decision, its idempotency
        key) in one script, guarded by the chosen offer still fitting the budget and the
        caps; when another worker took them meanwhile, decides again from a fresh read.
        Nothing is answered that is not recorded."""
        self._check_writable()
        rq_key = ""
        if p.request_tag:
            rq_key = f"{self.P}rq:{p.request_tag.partition(chr(0))[0]}"
            found = self._call(self.redis.get, rq_key)
            if found is not None:
                return self._idempotent(found, p.request_tag), 0
        # Only the engine work holds the apply lock; the read and the write (the round
        # trips, the fsync) do not, so that a worker's threads overlap them. The write's
        # guards make that safe.
        for _ in range(DECIDE_ATTEMPTS):
            read = self._read_limits(p.user)
            with self._apply_lock:
                d, o = self._decide_once(p, rq_key, read)
            r = self._apply(o)
            if r[0] == "ok":
                break
            if r[0] == "exists":  # another request with this request_id was recorded first
                return self._idempotent(r[1], p.request_tag), 0
            # "budget" / "caps": the limits changed since the read; decide again
        else:
            raise ServiceUnavailable("budget: other decisions keep taking what this "
                                     "decision needs; retry")
        self._offer_counters[d.offer].inc()
        return d, 0

    def _decide_once(self, p: PreparedDecide, rq_key: str, read: list[Any]
                     ) -> tuple[Decision, _Ops]:
        P = self.P
        eng = self.engine
        before = self._begin(p.decision_id)
        self._load_limits(p.user, read)
        now = self._clock()
        eng.preset_ids = [p.decision_id]
        try:
            d = eng.decide(p.user, context=p.context, basket=p.basket, group=p.group,
                           now=now, explain=p.explain, **p.extra)
        except Exception:
            eng.stats = before[0]
            raise
        finally:
            eng.preset_ids = []
        rec = eng._pending.get(d.id)
        eng._pending = PendingStore()
        eng._explanations.pop(d.id, None)
        assert rec is not None
        if p.request_tag:
            rec.request = p.request_tag
        o = _Ops()
        if isinstance(eng.budget, RedisBudgetPacer):
            o.guards.append(["budget_fits", o.k(P + "budget"), float(rec.max_cost), now])
        if isinstance(eng.caps, RedisUserCaps):
            cc = eng.caps.config
            day, period = eng.caps._indices(now)
            o.guards.append(["caps_fits", o.k(f"{P}caps:{p.user}"), day, period,
                             int(bool(eng.ledger.discounted[rec.offer])), float(rec.max_cost),
                             -1 if cc.max_offers_per_day is None else cc.max_offers_per_day,
                             -1.0 if cc.max_discount_per_period is None
                             else float(cc.max_discount_per_period)])
        if rq_key:
            o.guards.append(["absent", o.k(rq_key)])
            o.ops.append(["set", o.k(rq_key),
                          o.a(p.request_tag.encode() + b"\0" + rs.decision_json(d)),
                          int(self._wait * 1000) + 1])
        o.ops.append(["set", o.k(f"{P}p:{d.id}"), o.a(rs.encode_pending(rec, self._n_offers)),
                      0])
        o.ops.append(["zadd", o.k(P + "due"), o.a(repr(float(rec.created) + self._wait)),
                      o.a(d.id)])
        self._changes(o, before)
        return d, o

    def _idempotent(self, stored: bytes, tag: str) -> Decision:
        stored_tag, body = _split_tag(stored)
        if stored_tag != tag:
            raise ConflictError("request_id: already used for a decision with another request "
                                "body (a retry must repeat the request exactly)")
        f = orjson.loads(body)
        return Decision(f["id"], f["user"], f["group"], f["offer"], f["offer_id"],
                        f["propensity"], f["policy_version"], f["created_at"], f["price"],
                        f["discount_cost"])

    def _unlease(self, key: str) -> None:
        with contextlib.suppress(ServiceUnavailable):
            o = _Ops()
            o.guards.append(["lease", o.k(key), o.a(self.worker)])
            o.ops.append(["del", o.k(key)])
            self._apply(o)

    def _read_decision(self, decision_id: str) -> list[bytes | None]:
        """The decision's pending, finalised and coupon keys (one round trip)."""
        P = self.P
        return list(self._call(self.redis.mget, [f"{P}p:{decision_id}",
                                                 f"{P}f:{decision_id}",
                                                 f"{P}c:{decision_id}"]))

    def _adopt(self, decision_id: str, read: list[bytes | None] | None = None
               ) -> tuple[bool, bool, list[bytes]]:
        """Loads a decision (read from Redis now, or given as _read_decision read it)
        into the engine: (pending, finalised and known, what was read: the three keys'
        values, b"" for none)."""
        eng = self.engine
        if read is None:
            read = self._read_decision(decision_id)
        blob, fin, coupon = read
        seen = [b"" if v is None else v for v in read]
        eng._pending = PendingStore()
        if blob is not None:
            eng._pending.add(rs.decode_pending(blob))
            return True, False, seen
        if fin is not None:
            eng._finalised[decision_id] = set(orjson.loads(fin))
            if coupon is not None:
                exp, amount = coupon.decode().split(",")
                eng.ledger.coupon_holds[decision_id] = [float(exp), float(amount)]
            return False, True, seen
        return False, False, seen

    def _same(self, o: _Ops, decision_id: str, seen: list[bytes]) -> None:
        """Guards: the decision's keys still hold what was read."""
        P = self.P
        for prefix, v in zip(("p:", "f:", "c:"), seen, strict=True):
            o.guards.append(["same", o.k(f"{P}{prefix}{decision_id}"), o.a(v)])

    def _forget(self, decision_id: str) -> None:
        eng = self.engine
        eng._pending = PendingStore()
        eng._finalised.pop(decision_id, None)
        eng.ledger.coupon_holds.pop(decision_id, None)
        eng._explanations.pop(decision_id, None)

    def _settle_ops(self, o: _Ops, decision_id: str, was_pending: bool, was_final: bool,
                    had_hold: bool, now: float) -> None:
        """The decision's own keys after the engine applied feedback or finalised it."""
        P = self.P
        eng = self.engine
        kp = o.k(f"{P}p:{decision_id}")
        rec = eng._pending.get(decision_id)
        keep_ms = int(1000 * max(rs.FINALISED_KEEP_WAITS * self._wait,
                                 rs.FINALISED_KEEP_MIN_SECONDS)) + 1
        if was_pending and rec is not None:
            o.ops.append(["set", kp, o.a(rs.encode_pending(rec, self._n_offers)), 0])
            return
        events = eng._finalised.get(decision_id)
        hold = eng.ledger.coupon_holds.get(decision_id)
        if was_pending:
            o.ops.append(["del", kp])
            o.ops.append(["zrem", o.k(P + "due"), o.a(decision_id)])
        if events is not None and (was_pending or was_final):
            ms = keep_ms
            if hold is not None:
                ms = max(ms, int((hold[0] - now) * 1000) + 1)
            o.ops.append(["set", o.k(f"{P}f:{decision_id}"),
                          o.a(orjson.dumps(sorted(events))), ms])
        kc = o.k(f"{P}c:{decision_id}")
        if hold is not None and not had_hold:
            o.ops.append(["set", kc, o.a(f"{float(hold[0])!r},{float(hold[1])!r}"),
                          max(1, int((hold[0] - now) * 1000) + 60_000)])
            o.ops.append(["zadd", o.k(P + "coupon_due"), o.a(repr(float(hold[0]))),
                          o.a(decision_id)])
        elif hold is None and had_hold:
            o.ops.append(["del", kc])
            o.ops.append(["zrem", o.k(P + "coupon_due"), o.a(decision_id)])

    def apply_feedback(self, p: PreparedFeedback) -> tuple[FeedbackResult, int]:
        """Applies feedback to a decision wherever it was made: read from Redis, through
        the engine's checks and feedback code, written back in one script (with the
        budget, caps, counters and the policy update) guarded by the decision's keys
        still holding what was read; when another worker changed them meanwhile, applied
        again from a fresh read."""
        self._check_writable()
        for _ in range(FEEDBACK_ATTEMPTS):
            read = self._read_decision(p.decision_id)  # no lock held for the round trips
            with self._apply_lock:
                res, now, created, o = self._feedback_once(p, read)
            r = self._apply(o)
            if r[0] == "ok":
                break
            if r[0] != "changed":
                raise ServiceUnavailable(f"decision_id: {p.decision_id} could not be "
                                         f"recorded ({r[0]}); retry")
        else:
            raise ServiceUnavailable(f"decision_id: {p.decision_id} keeps changing at "
                                     "other workers; retry")
        if created is not None:
            self.metrics.feedback_lag.observe(max(now - created, 0.0))
        c = self._feedback_counters.get(res.status)
        if c is None:
            c = self._feedback_counters[res.status] = self.metrics.feedback.labels(res.status)
        c.inc()
        self._maybe_sync()
        return res, 0

    def _feedback_once(self, p: PreparedFeedback, read: list[bytes | None]
                       ) -> tuple[FeedbackResult, float, float | None, _Ops]:
        lim = self.config.limits
        did = p.decision_id
        eng = self.engine
        try:
            pending, final, seen = self._adopt(did, read)
            had_hold = did in eng.ledger.coupon_holds
            before = self._begin(did)
            k = p.kwargs
            eng.check_feedback(
                did, p.event_id, p.digest, purchased=k["purchased"],
                revenue=k["revenue"], cost_of_goods=k["cost_of_goods"],
                discount=k["discount"], coupon_redeemed=k["coupon_redeemed"],
                revenue_multiple=lim.max_revenue_multiple,
                max_events=lim.max_events_per_decision)
            now = self._clock()
            created = eng.pending_created_at(did)
            try:
                res = eng.feedback(did, p.event_id, now=now, check=False,
                                   **k)  # checked above, with this service's limits
            except Exception:
                eng.stats = before[0]
                raise
            eng.note_outcome(did, p.event_id, p.digest)
            o = _Ops()
            self._same(o, did, seen)
            self._settle_ops(o, did, pending, final, had_hold, now)
            self._changes(o, before)
        finally:
            self._forget(did)
        return res, now, created, o

    def _maybe_sync(self) -> None:
        if self._unsynced >= self.config.storage.sync_every_updates:
            self._wake.set()

    def expire(self) -> int:
        """Finalises (default reward) the decisions whose wait is over, each under its
        lease, exactly once across workers; releases expired coupons' holds."""
        if self.state != "ready":
            return 0
        P = self.P
        now = max(time.time(), self._last_now)
        ids = self._call(self.redis.zrangebyscore, P + "due", "-inf", repr(now), start=0,
                         num=EXPIRE_BATCH)
        n = 0
        for raw in ids:
            n += self._expire_one(raw.decode())
        for raw in self._call(self.redis.zrangebyscore, P + "coupon_due", "-inf", repr(now),
                              start=0, num=EXPIRE_BATCH):
            self._expire_coupon(raw.decode())
        if n:
            self._maybe_sync()
        return n

    def _expire_one(self, did: str) -> int:
        P = self.P
        eng = self.engine
        key = f"{P}lease:{did}"
        with self._apply_lock:
            if not self._call(self.redis.set, key, self.worker, nx=True,
                              px=self.config.storage.lease_ms):
                return 0  # another worker is on it
            consumed = False
            try:
                pending, _, seen = self._adopt(did)
                if not pending:  # finalised meanwhile: only the index entry is left
                    self._call(self.redis.zrem, P + "due", did)
                    return 0
                before = self._begin(did)
                now = self._clock()
                done = eng.expire(now)
                o = _Ops()
                kl = o.k(key)
                o.guards.append(["lease", kl, o.a(self.worker)])
                self._same(o, did, seen)
                self._settle_ops(o, did, True, False, False, now)
                self._changes(o, before)
                o.ops.append(["del", kl])
                r = self._apply(o)
                consumed = True
                return done if r[0] == "ok" else 0
            finally:
                self._forget(did)
                if not consumed:
                    self._unlease(key)

    def _expire_coupon(self, did: str) -> None:
        P = self.P
        key = f"{P}lease:{did}"
        with self._apply_lock:
            if not self._call(self.redis.set, key, self.worker, nx=True,
                              px=self.config.storage.lease_ms):
                return
            try:
                hold = self._call(self.redis.get, f"{P}c:{did}")
                o = _Ops()
                kc = o.k(f"{P}c:{did}")
                o.ops.append(["zrem", o.k(P + "coupon_due"), o.a(did)])
                if hold is not None:
                    _, amount = hold.decode().split(",")
                    o.guards.append(["same", kc, o.a(hold)])
                    o.ops.append(["del", kc])
                    if isinstance(self.engine.budget, RedisBudgetPacer):
                        o.ops.append(["settle", o.k(P + "budget"), self._clock(),
                                      float(amount), 0.0, 0.0])
                self._apply(o)
            finally:
                self._unlease(key)

    # --- what cluster mode does not serve --------------------------------------------------
    def _not_served(self, what: str) -> Any:
        raise ValueError(f"{what}: not served in cluster mode (storage.kind = 'redis'); "
                         "run the embedded mode for it")

    def apply_batch(self, p: Any) -> Any:
        return self._not_served("requests (/v1/decide/batch)")

    def apply_activate(self, payload: bytes) -> Any:
        return self._not_served("decision_id (/v1/activate, deferred activation)")

    def apply_events(self, prepared: Any) -> Any:
        return self._not_served("events")

    def apply_items(self, payload: bytes) -> Any:
        return self._not_served("items")

    def prepare_decide(self, req: Any) -> PreparedDecide:
        if getattr(req, "defer_activation", False):
            raise ValueError("defer_activation: not served in cluster mode")
        return super().prepare_decide(req)

    # --- reading ---------------------------------------------------------------------------
    def shared_counters(self) -> dict[str, int]:
        """The engine counters of all workers together (from Redis)."""
        h = self._call(self.redis.hgetall, self.P + "stats")
        return {k.decode(): int(v) for k, v in h.items()}

    def report(self) -> dict[str, Any]:
        rep = super().report()
        shared = self.shared_counters()
        rep["engine"] = {k: shared.get(k, 0) for k in rep["engine"]}
        rep["engine"]["pending"] = int(self._call(self.redis.zcard, self.P + "due"))
        rep["storage"] = {"kind": "redis", "worker": self.worker, "worker_no": self.worker_no,
                          "unsynced_updates": self._unsynced}
        return rep

    def _metrics_view(self) -> dict[str, Any]:
        try:
            return super()._metrics_view()
        except ServiceUnavailable:
            return {}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = self.state == "ready"
        detail: dict[str, Any] = {"state": self.state, "worker": self.worker}
        try:
            self._call(self.redis.ping)
            detail["storage"] = "redis ok"
        except ServiceUnavailable as exc:
            ready = False
            detail["storage"] = f"failed: {exc}"
        return ready, detail


# A worker that exits sooner than this after its start is not restarted (a configuration or
# Redis problem would only repeat); later exits are restarted (seconds).
RESTART_AFTER_SECONDS = 5.0


def serve_workers(cfg: ServiceConfig, args: Any, listening_socket: Any) -> int:
    """``promobandit serve --workers N``: binds the listening socket once and runs N worker
    processes (``promobandit serve`` each, in cluster mode) that accept on it; the kernel
    spreads the connections. A worker that dies after its start is replaced (the others
    fold what it had not synced and finalise its pending decisions). SIGTERM / SIGINT are
    passed on; returns when every worker has stopped. listening_socket(host, port): the
    CLI's socket factory."""
    import signal
    import subprocess
    import sys

    sock = listening_socket(cfg.server.host, cfg.server.port)
    host, port = sock.getsockname()[:2]
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    cmd = [sys.executable, "-m", "promobandit", "serve", "--inherit-fd", str(fd),
           "--redis-url", cfg.storage.url, "--server", getattr(args, "server", "uvicorn")]
    for flag, value in (("--config", args.config), ("--storage-dir", args.storage_dir),
                        ("--threads", args.threads), ("--log-level", args.log_level)):
        if value is not None:
            cmd += [flag, str(value)]
    stopping = threading.Event()
    procs: dict[int, tuple[Any, float]] = {}

    def spawn(i: int) -> None:
        procs[i] = (subprocess.Popen(cmd, pass_fds=(fd,)), time.monotonic())

    def forward(signum: int, _frame: Any) -> None:
        stopping.set()
        for p, _ in procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    n = args.workers
    print(f"promobandit serve: listening on http://{host}:{port} (cluster mode, {n} workers, "
          f"redis {cfg.storage.url})", flush=True)
    rc = 0
    try:
        for i in range(n):
            spawn(i)
        while procs:
            time.sleep(0.2)
            for i, (p, started) in list(procs.items()):
                code = p.poll()
                if code is None:
                    continue
                del procs[i]
                if stopping.is_set():
                    continue
                if time.monotonic() - started < RESTART_AFTER_SECONDS:
                    rc = code or 1
                    forward(signal.SIGTERM, None)
                    continue
                log.warning("worker %d (pid %d) exited with %s: starting another", i, p.pid,
                            code)
                spawn(i)
    finally:
        for s_, h in old.items():
            signal.signal(s_, h)
        sock.close()
    return rc


def _split_tag(stored: bytes) -> tuple[str, bytes]:
    """(request tag, decision JSON) of an idempotency key's value; the tag itself holds
    one NUL ("<request_id>\\0<digest>"), the JSON follows the second."""
    rid, _, rest = stored.partition(b"\0")
    digest, _, body = rest.partition(b"\0")
    return (rid + b"\0" + digest).decode(), body


__all__ = ["ClusterConfigError", "ClusterLogWriter", "ClusterService", "RedisBudgetPacer",
           "RedisUserCaps", "check_cluster_config", "connect", "serve_workers", "worker_seed"]
