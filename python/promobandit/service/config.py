"""The service's configuration: a TOML file (or the embedded default), validated with errors
that name the key, e.g. ``engine.budget.amount: expected a value in (0, inf], got -5``.

Sections and keys (every one optional; the defaults are the embedded configuration):

``[server]``      host, port, api_key, max_body_bytes, threads, log_level
``[limits]``      max_batch, max_basket_lines, max_k, max_candidates, max_events,
                  max_context, max_id_length, max_money
``[privacy]``     key
``[catalogue]``   path (absent: the embedded ``default_catalogue()``)
``[policy]``      name, n_features, backend, ``[policy.settings]`` (the policy's config)
``[engine]``      seed, objective, reward_scale, feedback_wait_seconds, default_reward,
                  conversion_prior, log_action_probs, remember_finalised, max_request_keys,
                  expire_every_seconds, ``caps`` (a table, or false),
                  ``[engine.budget]`` (absent: no budget), ``[engine.fairness]`` (absent: off)
``[storage]``     kind, dir, fsync, snapshot_interval_seconds, snapshot_every_events,
                  snapshots_kept, decision_log; cluster mode (kind = "redis"): url,
                  namespace, appendfsync, sync_interval_ms, sync_every_updates, lease_ms,
                  worker_timeout_ms
``[features]``    the feature store (absent: none); the keys of FeatureConfig
``[recommender]`` the item recommender (absent: none): items (an .npz file), k,
                  temperature, history_length, max_users, ``[recommender.exploration]``

Secrets come from the environment when set there: ``PROMOBANDIT_PRIVACY_KEY`` replaces
``privacy.key`` and ``PROMOBANDIT_API_KEY`` replaces ``server.api_key`` (so that neither
has to be written into a file or onto a command line). The service refuses to start
without a privacy key: there is no demo key, because the key is what keeps raw user ids
out of every file the service writes.

Every key can also be set from the environment (containers): ``PROMOBANDIT_<SECTION>__<KEY>``,
with ``__`` between the levels of a nested key, e.g. ``PROMOBANDIT_STORAGE__DIR=/data``,
``PROMOBANDIT_ENGINE__BUDGET__AMOUNT=5000``, ``PROMOBANDIT_POLICY__SETTINGS__ALPHA=0.5``.
The value is read as a TOML value (``5000``, ``true``, ``[1.0, 9.0]``, ``"text"``), and as
a plain string when it is not one (``/data``). The environment overrides the file; an
unknown key is an error naming the key. Quote a string that would read as a number
(``PROMOBANDIT_SERVER__API_KEY='"12345"'``). ``PROMOBANDIT_CONFIG`` names the TOML file the
app factory (``promobandit.service.app:app_factory``) reads.

Relative paths (``catalogue.path``, ``storage.dir``) are relative to the config file's
folder, or to the working directory for the embedded default.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._toml import load_toml, parse_toml_value
from ..constraints import BudgetConfig, FairnessConfig, UserCapsConfig
from ..engine import EngineConfig, ExplorationConfig
from ..features import FeatureConfig
from ..policies import POLICIES

PRIVACY_KEY_ENV = "PROMOBANDIT_PRIVACY_KEY"
API_KEY_ENV = "PROMOBANDIT_API_KEY"
# Any key as PROMOBANDIT_SECTION__KEY (see the module doc); the config file for the factory.
ENV_PREFIX = "PROMOBANDIT_"
ENV_SEPARATOR = "__"
CONFIG_FILE_ENV = "PROMOBANDIT_CONFIG"

# The engine hashes user ids with a key of at least this many bytes (Engine checks it too).
MIN_PRIVACY_KEY_BYTES = 16

STORAGE_KINDS = ("files", "memory", "redis")
# storage.appendfsync values (Redis's own names): what a cluster worker requires of the
# Redis server's append-only file before it acknowledges anything.
APPENDFSYNC_MODES = ("always", "everysec")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How the HTTP server listens.

    host, port: the listening address (port 0: any free port).
    api_key: the key every route except /healthz, /readyz and /metrics requires (in
        ``X-API-Key`` or ``Authorization: Bearer``); "" turns authentication off.
    max_body_bytes: largest request body accepted (413 above it).
    threads: worker threads that run engine calls off the event loop; 0 (the default)
        runs them on the event loop itself. Measured on 2 cores (bench/bench_service.py):
        a decision holds the engine's lock for its whole ~25-35 us, of which the native
        select (the only part that releases the GIL) is a few us, while the hop to a
        worker thread and back costs ~100 us of CPU; so threads only pay off when a
        request carries long GIL-free native work (e.g. a large top-k recommender).
    log_level: uvicorn's and the service's log level.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str = ""
    max_body_bytes: int = 1_048_576
    threads: int = 0
    log_level: str = "info"


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """Bounds of the request schemas (each enforced with a 422 naming the field).

    max_batch: requests in one POST /v1/decide/batch.
    max_basket_lines: lines in a basket. max_k: items to recommend.
    max_candidates: candidate item ids. max_events: recent events in one request.
    max_context: features in a context for a non-contextual policy (ignored there; a
        contextual policy requires exactly policy.n_features).
    max_id_length: characters in a user, group, decision or event id.
    max_money: largest amount of money in a request (currency units).
    max_abs_feature: bound on every context feature, |x_i| <= max_abs_feature (a 422
        naming ``context[i]`` outside it). The policy's statistics are sums of x x^T and
        r x, so bounded features (and bounded money) keep them finite for far more
        updates than a service will see; scale features to a few units.
    max_revenue_multiple: a purchase's reported ``revenue`` (and ``cost_of_goods``) may be
        at most this multiple of the basket the engine quoted for the decision (the
        shopper may add items); above it, a 422 naming the field.
    max_events_per_decision: feedback events one decision accepts (a 409 naming
        ``event_id`` after that), so that no decision's state grows without bound.
    """

    max_batch: int = 256
    max_basket_lines: int = 200
    max_k: int = 100
    max_candidates: int = 10_000
    max_events: int = 100
    max_context: int = 1024
    max_id_length: int = 256
    max_money: float = 1e9
    max_abs_feature: float = 1e6
    max_revenue_multiple: float = 10.0
    max_events_per_decision: int = 32


@dataclasses.dataclass(frozen=True)
class PolicyServiceConfig:
    """The bandit policy (see promobandit.policies).

    name: one of promobandit.policies.POLICIES. n_features: context length, for the
    contextual policies (LinUCB, LinTS). backend: "auto", "cpp" or "numba".
    settings: the policy's config keywords (e.g. propensity_draws, alpha, v).
    """

    name: str = "GaussianTS"
    n_features: int | None = None
    backend: str = "auto"
    settings: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"propensity_draws": 100})


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """Durable state (see promobandit.service.storage).

    kind: "files" (write-ahead log and snapshots in ``dir``), "memory" (nothing
        survives a restart: for tests and demos) or "redis" (cluster mode, below).
    dir: the state folder (created if missing).
    fsync: make every acknowledged write durable with fdatasync before answering;
        false keeps data in the OS page cache only (survives a process crash, not a
        power loss).
    snapshot_interval_seconds / snapshot_every_events: a snapshot is written when this
        much time has passed, or this many log records were written, since the last.
    snapshots_kept: snapshots kept (>= 2, so that a corrupt newest one can fall back on
        the one before it, with the log since then).
    decision_log: write the engine's Parquet decision log to ``dir/decisions`` (flushed
        at each snapshot).
    accept_log_loss: start even when the log is damaged where acknowledged records were
        (a bad record followed by valid ones, a whole record with a bad checksum, a
        missing segment): the records from the damage on are set aside as ``*.corrupt``
        and the loss is reported in /readyz (``detail.recovery.data_loss``) and
        ``promobandit_recovery_data_loss``. Default false: such damage refuses to start
        (exit status 3, naming the file and byte offset). An operator's decision, for
        one start (``promobandit serve --accept-log-loss``), not a setting to leave on.

    Cluster mode (``kind = "redis"``, see promobandit.service.cluster): the shared state
    lives in Redis; ``dir`` holds only this host's decision-log parts (``dir/decisions``).
    url: the Redis server, ``redis://host:port/db`` (``--redis-url``).
    namespace: prefix of every key (several deployments can share one Redis).
    appendfsync: what the Redis server must run with, checked at start: "always" (the
        default: a 200 means the change is fsynced in Redis's append-only file) or
        "everysec" (a crash of the Redis host can lose the last second of acknowledged
        changes; documented, the operator's choice).
    sync_interval_ms: milliseconds between a worker's policy syncs (it pushes the
        updates it learnt since its last sync and pulls the merged statistics).
    sync_every_updates: a sync also happens as soon as this many updates are waiting.
    lease_ms: how long a worker holds a decision while it applies feedback or finalises
        it (milliseconds; a worker killed mid-way frees it after this).
    worker_timeout_ms: a worker whose heartbeat is older than this is taken for dead;
        another worker folds the updates it had not synced yet into the shared state.
    """

    kind: str = "files"
    dir: str = "promobandit-state"
    fsync: bool = True
    snapshot_interval_seconds: float = 60.0
    snapshot_every_events: int = 100_000
    snapshots_kept: int = 2
    decision_log: bool = True
    accept_log_loss: bool = False
    url: str = ""
    namespace: str = "promobandit"
    appendfsync: str = "always"
    sync_interval_ms: float = 50.0
    sync_every_updates: int = 1000
    lease_ms: int = 5000
    worker_timeout_ms: int = 3000


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """The whole configuration (see the module doc for the file layout)."""

    server: ServerConfig
    limits: LimitsConfig
    privacy_key: bytes = dataclasses.field(repr=False)
    catalogue_path: str | None
    policy: PolicyServiceConfig
    engine: EngineConfig
    expire_every_seconds: float
    storage: StorageConfig
    source: str = "<embedded default>"
    # The engine's feature store and item recommender (None: not served).
    features: FeatureConfig | None = None
    recommender: RecommenderServiceConfig | None = None
    # [features] max_users: users the feature store keeps (least recently updated
    # forgotten first, see FeatureStore.evict).
    features_max_users: int = 1_000_000


# Engine keys of the [engine] table (besides the sub-tables), with their types.
_ENGINE_KEYS: dict[str, tuple[type, ...]] = {
    "seed": (int,), "objective": (str,), "reward_scale": (int, float),
    "feedback_wait_seconds": (int, float), "default_reward": (int, float),
    "conversion_prior": (list,), "log_action_probs": (str,), "remember_finalised": (int,),
    "max_request_keys": (int,),
}
_EXPIRE_DEFAULT = 5.0


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    if set(types) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(path: str, value: Any, types: tuple[type, ...]) -> Any:
    # bool is an int in Python but never a valid number in a config file.
    if isinstance(value, bool) and bool not in types:
        raise ValueError(f"{path}: expected {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise ValueError(f"{path}: expected {_type_name(types)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: expected a finite number, got {value!r}")
    return value


def _table(path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path}: expected a table, got {value!r}")
    return value


def _unknown(path: str, table: Mapping[str, Any], known: set[str]) -> None:
    extra = sorted(set(table) - known)
    if extra:
        where = f"{path}.{extra[0]}" if path else extra[0]
        raise ValueError(f"{where}: unknown key; expected one of {sorted(known)}")


def _dataclass_from(path: str, cls: type, table: Mapping[str, Any],
                    skip: tuple[str, ...] = ()) -> Any:
    """cls(**table) with each key checked against the field's default's type."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    _unknown(path, table, set(fields))
    kwargs = {}
    for name, f in fields.items():
        if name not in table:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            types: tuple[type, ...] = (bool,)
        elif isinstance(default, float):
            types = (int, float)
        elif isinstance(default, int):
            types = (int,)
        elif isinstance(default, str):
            types = (str,)
        else:
            types = (object,)
        v = _check_type(f"{path}.{name}", table[name], types)
        kwargs[name] = float(v) if types == (int, float) else v
    return cls(**kwargs)


def _limit_checks(path: str, obj: Any, rules: dict[str, tuple[float, float]]) -> None:
    for name, (lo, hi) in rules.items():
        v = getattr(obj, name)
        if not (lo <= v <= hi):
            raise ValueError(f"{path}.{name}: expected a value in [{lo:g}, {hi:g}], got {v!r}")


def _engine_part(path: str, cls: type, value: Any) -> Any:
    """A constraints config (caps, budget, fairness) from its table, errors prefixed."""
    table = _table(path, value)
    names = {f.name for f in dataclasses.fields(cls)}
    _unknown(path, table, names)
    kwargs = {}
    for k, v in table.items():
        if isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise ValueError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}.{exc}") from None


def _policy(table: Mapping[str, Any]) -> PolicyServiceConfig:
    _unknown("policy", table, {"name", "n_features", "backend", "settings"})
    name = _check_type("policy.name", table.get("name", "GaussianTS"), (str,))
    if name not in POLICIES:
        raise ValueError(f"policy.name: expected one of {sorted(POLICIES)}, got {name!r}")
    cls = POLICIES[name]
    n_features = table.get("n_features")
    if cls.contextual:
        if n_features is None:
            raise ValueError(f"policy.n_features: required for the contextual policy {name}")
        _check_type("policy.n_features", n_features, (int,))
        if n_features < 1:
            raise ValueError(f"policy.n_features: expected an integer >= 1, got {n_features}")
    elif n_features is not None:
        raise ValueError(f"policy.n_features: {name} is not contextual; remove the key")
    backend = _check_type("policy.backend", table.get("backend", "auto"), (str,))
    if backend not in ("auto", "cpp", "numba"):
        raise ValueError(f"policy.backend: expected 'auto', 'cpp' or 'numba', got {backend!r}")
    if "settings" in table:
        settings = dict(_table("policy.settings", table["settings"]))
    elif name == "GaussianTS":
        settings = {"propensity_draws": 100}
    else:
        settings = {}
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    _unknown("policy.settings", settings, known)
    try:
        cls.config_class(**settings)
    except ValueError as exc:
        raise ValueError(f"policy.settings.{exc}") from None
    return PolicyServiceConfig(name=name, n_features=n_features, backend=backend,
                               settings=settings)


def _engine(table: Mapping[str, Any]) -> tuple[EngineConfig, float]:
    _unknown("engine", table, {*_ENGINE_KEYS, "caps", "budget", "fairness",
                               "expire_every_seconds"})
    kwargs: dict[str, Any] = {}
    for k, types in _ENGINE_KEYS.items():
        if k in table:
            v = _check_type(f"engine.{k}", table[k], types)
            kwargs[k] = tuple(v) if isinstance(v, list) else v
    if "caps" in table:
        caps = table["caps"]
        if caps is False:
            kwargs["caps"] = None
        elif isinstance(caps, bool):
            raise ValueError("engine.caps: expected a table or false, got true")
        else:
            kwargs["caps"] = _engine_part("engine.caps", UserCapsConfig, caps)
    if "budget" in table:
        kwargs["budget"] = _engine_part("engine.budget", BudgetConfig, table["budget"])
    if "fairness" in table:
        kwargs["fairness"] = _engine_part("engine.fairness", FairnessConfig, table["fairness"])
    try:
        cfg = EngineConfig(**kwargs)
    except ValueError as exc:
        raise ValueError(f"engine.{exc}") from None
    expire = _check_type("engine.expire_every_seconds",
                         table.get("expire_every_seconds", _EXPIRE_DEFAULT), (int, float))
    if not expire > 0:
        raise ValueError(f"engine.expire_every_seconds: expected a value > 0, got {expire!r}")
    return cfg, float(expire)


def _privacy_key(table: Mapping[str, Any], environ: Mapping[str, str]) -> bytes:
    _unknown("privacy", table, {"key"})
    key = environ.get(PRIVACY_KEY_ENV) or _check_type("privacy.key", table.get("key", ""), (str,))
    raw = key.encode()
    if not raw:
        raise ValueError(f"privacy.key: required (or set {PRIVACY_KEY_ENV}); user ids are "
                         "pseudonymised with this secret before anything is logged, and there "
                         "is no default key")
    if len(raw) < MIN_PRIVACY_KEY_BYTES:
        raise ValueError(f"privacy.key: expected at least {MIN_PRIVACY_KEY_BYTES} bytes of "
                         f"secret, got {len(raw)}")
    return raw


def _env_value(raw: str) -> Any:
    """A variable's value as TOML reads it, or the plain string when it is not TOML."""
    try:
        return parse_toml_value(raw)
    except ValueError:
        return raw


def with_environment(data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The tables with every ``PROMOBANDIT_SECTION__KEY`` variable applied over them."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        parts = name[len(ENV_PREFIX):].lower().split(ENV_SEPARATOR)
        if not all(parts):
            raise ValueError(f"{name}: expected PROMOBANDIT_SECTION__KEY (empty level)")
        table = out
        for i, part in enumerate(parts[:-1]):
            nxt = table.get(part)
            if nxt is None:
                nxt = table[part] = {}
            elif not isinstance(nxt, dict):
                if not isinstance(nxt, Mapping):
                    raise ValueError(f"{name}: {'.'.join(parts[:i + 1])} is not a table")
                nxt = table[part] = dict(nxt)
            table = nxt
        table[parts[-1]] = _env_value(environ[name])
    return out


def from_dict(data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None,
              environ: Mapping[str, str] | None = None,
              source: str = "<dict>") -> ServiceConfig:
    """A validated ServiceConfig from the parsed TOML tables (errors name the key)."""
    env = os.environ if environ is None else environ
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data = with_environment(_table("config", data), env)
    _unknown("", data, {"server", "limits", "privacy", "catalogue", "policy", "engine",
                        "storage", "features", "recommender"})
    server = _dataclass_from("server", ServerConfig, _table("server", data.get("server", {})))
    if env.get(API_KEY_ENV):
        server = dataclasses.replace(server, api_key=env[API_KEY_ENV])
    _limit_checks("server", server, {"port": (0, 65535), "max_body_bytes": (1024, 2**31),
                                     "threads": (0, 256)})
    if server.log_level not in LOG_LEVELS:
        raise ValueError(f"server.log_level: expected one of {list(LOG_LEVELS)}, "
                         f"got {server.log_level!r}")
    limits = _dataclass_from("limits", LimitsConfig, _table("limits", data.get("limits", {})))
    _limit_checks("limits", limits, {
        "max_batch": (1, 100_000), "max_basket_lines": (1, 100_000), "max_k": (1, 100_000),
        "max_candidates": (1, 10_000_000), "max_events": (1, 100_000),
        "max_context": (1, 1_000_000), "max_id_length": (1, 100_000),
        # Money must stay exact in minor units (the offers catalogue keeps line amounts below 2**53).
        "max_money": (1.0, 1e12), "max_abs_feature": (1e-6, 1e12),
        "max_revenue_multiple": (1.0, 1e6), "max_events_per_decision": (1, 1_000_000)})
    key = _privacy_key(_table("privacy", data.get("privacy", {})), env)
    cat_table = _table("catalogue", data.get("catalogue", {}))
    _unknown("catalogue", cat_table, {"path"})
    cat_path = None
    if "path" in cat_table:
        p = _check_type("catalogue.path", cat_table["path"], (str,))
        cat_path = str(base / p)
    policy = _policy(_table("policy", data.get("policy", {})))
    engine, expire = _engine(_table("engine", data.get("engine", {})))
    storage = _dataclass_from("storage", StorageConfig, _table("storage", data.get("storage", {})))
    if storage.kind not in STORAGE_KINDS:
        raise ValueError(f"storage.kind: expected one of {list(STORAGE_KINDS)}, "
                         f"got {storage.kind!r}")
    if not storage.dir:
        raise ValueError("storage.dir: expected a folder path, got ''")
    if not storage.snapshot_interval_seconds > 0:
        raise ValueError("storage.snapshot_interval_seconds: expected a value > 0, got "
                         f"{storage.snapshot_interval_seconds!r}")
    _limit_checks("storage", storage, {"snapshot_every_events": (1, 2**62),
                                       "snapshots_kept": (2, 1000)})
    storage = dataclasses.replace(storage, dir=str(base / storage.dir))
    _check_cluster_storage(storage)
    features, recommender = _parity_sections(data, base, policy)
    fmax = data.get("features", {}).get("max_users", 1_000_000) if features else 1_000_000
    return ServiceConfig(server=server, limits=limits, privacy_key=key, catalogue_path=cat_path,
                         policy=policy, engine=engine, expire_every_seconds=expire,
                         storage=storage, source=source, features=features,
                         recommender=recommender, features_max_users=fmax)


def _check_cluster_storage(storage: StorageConfig) -> None:
    """The cluster-mode keys of [storage] (only checked for their form when kind is not
    "redis"; what the engine must be to run clustered is checked by the cluster module)."""
    if storage.kind == "redis" and not storage.url:
        raise ValueError("storage.url: required when storage.kind = 'redis' (e.g. "
                         "'redis://127.0.0.1:6379/0', or --redis-url)")
    if storage.url and not storage.url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"storage.url: expected 'redis://host:port/db', 'rediss://...' or "
                         f"'unix:///path', got {storage.url!r}")
    if storage.appendfsync not in APPENDFSYNC_MODES:
        raise ValueError(f"storage.appendfsync: expected one of {list(APPENDFSYNC_MODES)}, "
                         f"got {storage.appendfsync!r}")
    if not storage.namespace or any(c in storage.namespace for c in " {}:"):
        raise ValueError("storage.namespace: expected a non-empty name without spaces, "
                         f"braces or ':', got {storage.namespace!r}")
    _limit_checks("storage", storage, {"sync_interval_ms": (1.0, 60_000.0),
                                       "sync_every_updates": (1, 10_000_000),
                                       "lease_ms": (100, 3_600_000),
                                       "worker_timeout_ms": (100, 3_600_000)})


def load(path: str | os.PathLike[str] | None = None, *,
         environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """The configuration from a TOML file, or the embedded default when path is None."""
    if path is None:
        return from_dict({}, environ=environ, source="<embedded default>")
    p = Path(path)
    data = load_toml(p, "config")
    return from_dict(data, base_dir=p.resolve().parent, environ=environ, source=str(p))


def fingerprint_data(cfg: ServiceConfig, catalogue: Any) -> dict[str, Any]:
    """What must not change between a snapshot and the process that loads it (the engine's
    behaviour on replay depends on exactly these)."""
    return {"catalogue": catalogue.to_dict(), "policy": cfg.policy.name,
            "n_features": cfg.policy.n_features,
            "settings": dict(sorted(cfg.policy.settings.items())),
            "engine": _engine_fingerprint(cfg.engine), **_parity_fingerprint(cfg)}


def _engine_fingerprint(engine: EngineConfig) -> dict[str, Any]:
    # max_request_keys came later: at its default it is left out, so state folders
    # written before it keep their fingerprint (their logs replay as they were written).
    out = dataclasses.asdict(engine)
    if out.get("max_request_keys") == EngineConfig.max_request_keys:
        del out["max_request_keys"]
    return out


# --- the feature store and the item recommender ([features], [recommender]) --------------

# Arrays of a recommender items file (.npz): required, then optional.
ITEM_ARRAYS = ("embeddings", "categories", "unit_prices", "unit_costs")
ITEM_OPTIONAL = ("item_bias",)


@dataclasses.dataclass(frozen=True)
class RecommenderServiceConfig:
    """The engine's item recommender (promobandit.engine.ItemRecommender).

    items: an .npz file with ``embeddings`` (N, d) float32, ``categories`` (N,) ints,
        ``unit_prices`` and ``unit_costs`` (N,) currency, optionally ``item_bias`` (N,).
        It seeds a new state folder; afterwards the item table is part of the engine's
        state (snapshotted), and the state's table is the one served.
    k: items recommended per request (a request's ``k`` overrides it, up to
        ``limits.max_k``). temperature: softmax temperature of the item probabilities.
    history_length: clicked items kept per user; max_users: users kept (least recently
        seen forgotten first).
    exploration: the Thompson head over the embeddings (None: off); seeded with
        ``engine.seed``.
    table: the arrays read from ``items`` (kept as ``arrays``, outside the dataclass
        fields: not printed by ``serve --check``, not part of the fingerprint, since the
        table is state).
    """

    items: str
    k: int = 10
    temperature: float = 1.0
    history_length: int = 20
    max_users: int = 1_000_000
    exploration: ExplorationConfig | None = None
    table: dataclasses.InitVar[Mapping[str, Any] | None] = None

    def __post_init__(self, table: Mapping[str, Any] | None) -> None:
        object.__setattr__(self, "arrays", dict(table or {}))


def _features_section(table: Mapping[str, Any]) -> FeatureConfig:
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    _unknown("features", table, {*names, "max_users"})
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in table.items() if k != "max_users"}
    for k, v in kwargs.items():
        if isinstance(v, bool):
            raise ValueError(f"features.{k}: expected a number, got {v!r}")
    try:
        return FeatureConfig(**kwargs)
    except ValueError as exc:
        raise ValueError(f"features.{exc}") from None


def _recommender_section(table: Mapping[str, Any], base: Path) -> RecommenderServiceConfig:
    import numpy as np

    _unknown("recommender", table, {"items", "k", "temperature", "history_length",
                                    "max_users", "exploration"})
    if "items" not in table:
        raise ValueError("recommender.items: required, the path of an .npz item table with "
                         f"{list(ITEM_ARRAYS)}")
    path = base / _check_type("recommender.items", table["items"], (str,))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.array(z[k]) for k in (*ITEM_ARRAYS, *ITEM_OPTIONAL) if k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"recommender.items: cannot read {path} as an .npz item table "
                         f"({exc})") from None
    missing = [k for k in ITEM_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"recommender.items: {path} lacks the array {missing[0]!r}; expected "
                         f"{list(ITEM_ARRAYS)}")
    exploration = None
    if "exploration" in table and table["exploration"] is not False:
        ex = _table("recommender.exploration", table["exploration"])
        exploration = _engine_part("recommender.exploration", ExplorationConfig, ex)
    kwargs: dict[str, Any] = {}
    for key, types in (("k", (int,)), ("temperature", (int, float)),
                       ("history_length", (int,)), ("max_users", (int,))):
        if key in table:
            kwargs[key] = _check_type(f"recommender.{key}", table[key], types)
    cfg = RecommenderServiceConfig(items=str(path), exploration=exploration, table=arrays,
                                   **kwargs)
    try:  # the recommender's own checks (shapes, prices, k <= N), errors named here
        build_recommender(cfg, seed=0)
    except ValueError as exc:
        raise ValueError(f"recommender.{exc}") from None
    return cfg


def build_recommender(cfg: RecommenderServiceConfig, seed: int) -> Any:
    """The ItemRecommender a [recommender] section describes."""
    from ..engine import ItemRecommender

    t = cfg.arrays  # type: ignore[attr-defined]
    return ItemRecommender(t["embeddings"], t["categories"], t["unit_prices"], t["unit_costs"],
                           k=cfg.k, temperature=cfg.temperature,
                           history_length=cfg.history_length, max_users=cfg.max_users,
                           exploration=cfg.exploration, item_bias=t.get("item_bias"),
                           seed=seed)


def _parity_sections(data: Mapping[str, Any], base: Path, policy: PolicyServiceConfig
                     ) -> tuple[FeatureConfig | None, RecommenderServiceConfig | None]:
    features = recommender = None
    if "features" in data:
        features = _features_section(_table("features", data["features"]))
        max_users = data["features"].get("max_users", 1_000_000)
        if _check_type("features.max_users", max_users, (int,)) < 1:
            raise ValueError(f"features.max_users: expected an integer >= 1, got {max_users}")
        if policy.n_features is not None and policy.n_features != features.dim:
            raise ValueError(f"policy.n_features: the feature store gives {features.dim} "
                             f"features (FeatureConfig.dim), got {policy.n_features}")
    if "recommender" in data:
        recommender = _recommender_section(_table("recommender", data["recommender"]), base)
    return features, recommender


def _parity_fingerprint(cfg: ServiceConfig) -> dict[str, Any]:
    """The feature store's and recommender's settings, when configured (a state folder
    without them keeps the fingerprint it had)."""
    out: dict[str, Any] = {}
    if cfg.features is not None:
        out["features"] = {**dataclasses.asdict(cfg.features),
                           "max_users": cfg.features_max_users}
    if cfg.recommender is not None:
        r = cfg.recommender
        out["recommender"] = {"k": r.k, "temperature": r.temperature,
                              "history_length": r.history_length, "max_users": r.max_users,
                              "exploration": (None if r.exploration is None
                                              else dataclasses.asdict(r.exploration))}
    return out


__all__ = [
    "API_KEY_ENV",
    "PRIVACY_KEY_ENV",
    "LimitsConfig",
    "PolicyServiceConfig",
    "RecommenderServiceConfig",
    "ServerConfig",
    "ServiceConfig",
    "StorageConfig",
    "build_recommender",
    "fingerprint_data",
    "from_dict",
    "is_loopback",
    "load",
    "with_environment",
]


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable only from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
