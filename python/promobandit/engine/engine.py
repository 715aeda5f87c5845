"""The discount engine: per-request decisions, delayed feedback, logged for evaluation.

``Engine.decide`` turns one shopper request into a ``Decision``:

1. the user id is pseudonymised with a keyed hash (nothing downstream sees it);
2. the context is the given feature vector, or the feature store's vector of the
   user's events (events given with the request are added first);
3. with a recommender, the k best items (and their softmax probabilities) are
   chosen; they form the basket offers are priced on unless a basket is given;
4. every offer is quoted on the basket: the margin floor, per-user caps and the
   budget (worst-case cost must fit) give the mask; the budget's shadow price
   times each offer's expected discount cost and the fairness multiplier of the
   user's group give the per-offer score adjustment;
5. the policy picks the offer (and its propensity); the decision is kept pending.

``Engine.feedback`` joins clicks and purchases to the decision by id (idempotent per
event id); a purchase finalises it, and decisions without a purchase are finalised
after ``feedback_wait_seconds`` with the default reward (no event at all) or the
objective of what happened (e.g. a click but no purchase: no profit). Finalising
updates the policy with the scaled reward, settles the budget and appends a row to
the decision log (see promobandit.engine.decision_log for the columns).

This module is the request path. The pending decisions and their codec live in
``_pending``, the budget and coupon bookkeeping in ``accounting`` (``DiscountLedger``),
the log's schema in ``decision_log``. What the engine needs to know about its policy it
reads from ``policy.traits`` (promobandit.policies.traits).

Money is in the catalogue's currency. Rewards are the objective's value divided by
``reward_scale`` for the policy, and unscaled everywhere else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import io
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_range
from ..constraints import (
    BudgetConfig,
    BudgetPacer,
    FairnessConfig,
    FairnessGuard,
    UserCaps,
    UserCapsConfig,
)
from ..offers import Basket, Catalogue
from ..policies import Policy
from . import explain as _explain
from ._pending import PendingDecision, PendingStore
from .accounting import DiscountLedger, outcome_entry
from .decision_log import DecisionLogWriter, DecisionRow
from .objective import ConversionFloor, Objective

_log = logging.getLogger("promobandit.engine")

ENGINE_FORMAT = "promobandit.engine"
ENGINE_FORMAT_VERSION = 1
OBJECTIVES = ("profit", "revenue", "conversion")
# Engine.feedback's checks by default (the service's limits.max_revenue_multiple and
# limits.max_events_per_decision defaults): reported revenue and cost of goods at most
# this multiple of the decision's quoted basket; feedback events per decision.
FEEDBACK_REVENUE_MULTIPLE = 10.0
FEEDBACK_MAX_EVENTS = 32


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Settings of the engine (money in the catalogue's currency).

    objective: "profit" (paid - cost of goods; the default), "revenue" (paid) or
        "conversion" (1 for a purchase); or a weighted combination of profit, revenue,
        conversion and retention, optionally under a conversion floor: an
        ``Objective``, or a mapping of weights (e.g. {"profit": 1.0, "retention": 5.0}
        with retention_window_seconds; see promobandit.engine.objective). Weighted
        objectives are in currency and divided by reward_scale.
    reward_scale: currency units per unit of policy reward (profit and revenue are
        divided by it; conversion is not). Scaled rewards are clipped to the range the
        policy accepts (``policy.traits.reward_range``: [0, 1] for Beta TS).
    feedback_wait_seconds: how long a decision waits for a purchase before it is
        finalised without one.
    default_reward: the objective value (unscaled) given to a decision that got no
        feedback event at all within the wait.
    conversion_prior: Beta(a, b) prior of each offer's purchase probability, used
        for the expected discount cost the budget prices (updated from outcomes).
    caps, budget, fairness: the limits (see promobandit.constraints); fairness is
        off unless given.
    log_action_probs: "auto" logs each decision's full action distribution when the
        policy has it in closed form (``policy.traits.propensity``: UCB,
        epsilon-greedy, softmax, LinUCB, a fixed offer); "always" also estimates it for
        Thompson sampling (costly: draws x K per decision), and the decision's propensity
        is then that estimate's entry for the chosen offer, so log and distribution
        agree; "never" logs only the propensity.
    remember_finalised: finalised decisions remembered for duplicate and late
        feedback detection (memory bound).
    max_request_keys: idempotency keys kept (``tag_request``; memory bound). A key lives
        for ``feedback_wait_seconds`` after its decision; when more than this many are
        live, the oldest is forgotten early (its request id is then free again; counted
        in ``stats["request_keys_evicted"]``).
    seed: decision ids are derived from it and a counter.
    keep_explanations: every decision computes its explanation (promobandit.engine.explain)
        and keeps it until it is finalised, for ``Engine.explain(decision_id)``; off, only
        decisions made with ``decide(..., explain=True)`` are explained (and kept), and
        the decide path does no explanation work at all (decide and decide_batch).
    """

    objective: Any = "profit"
    reward_scale: float = 20.0
    feedback_wait_seconds: float = 1800.0
    default_reward: float = 0.0
    conversion_prior: tuple[float, float] = (1.0, 9.0)
    caps: UserCapsConfig | None = dataclasses.field(default_factory=UserCapsConfig)
    budget: BudgetConfig | None = None
    fairness: FairnessConfig | None = None
    log_action_probs: str = "auto"
    remember_finalised: int = 200_000
    seed: int = 0
    max_request_keys: int = 100_000
    keep_explanations: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.objective, str) and self.objective in OBJECTIVES):
            # a weighted objective (names, weights and windows are checked there)
            object.__setattr__(self, "objective", Objective.from_any(self.objective))
        if not isinstance(self.keep_explanations, bool):
            raise ValueError(f"keep_explanations: expected a bool, got {self.keep_explanations!r}")
        check_range("reward_scale", self.reward_scale, 0.0, lo_open=True)
        check_range("feedback_wait_seconds", self.feedback_wait_seconds, 0.0)
        check_range("default_reward", self.default_reward)
        if len(self.conversion_prior) != 2:
            raise ValueError("conversion_prior: expected (a, b)")
        check_range("conversion_prior[0]", self.conversion_prior[0], 0.0, lo_open=True)
        check_range("conversion_prior[1]", self.conversion_prior[1], 0.0, lo_open=True)
        if self.log_action_probs not in ("auto", "always", "never"):
            raise ValueError("log_action_probs: expected 'auto', 'always' or 'never', "
                             f"got {self.log_action_probs!r}")
        check_int("remember_finalised", self.remember_finalised, 0)
        check_int("max_request_keys", self.max_request_keys, 1)
        check_int("seed", self.seed, 0)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the engine decided for one request.

    id: the decision id to send feedback with. user: the pseudonymised user.
    offer: arm index in the catalogue; offer_id its id. propensity: probability of
    this offer under the policy (NaN if the policy's estimate is switched off).
    items / item_probs: recommended item ids, best first, and their probability
    under the full softmax of the scorer (None without a recommender).
    policy_version: updates the policy had when it decided. price: what the shopper
    pays for the basket under the offer; discount_cost: the discount if bought
    (currency; for a coupon its face value, paid only on a later redemption).
    """

    id: str
    user: str
    group: str
    offer: int
    offer_id: str
    propensity: float
    policy_version: int
    created_at: float
    price: float
    discount_cost: float
    items: np.ndarray | None = None
    item_probs: np.ndarray | None = None
    explanation: _explain.Explanation | None = dataclasses.field(default=None, repr=False,
                                                                  compare=False)

    def explain(self) -> _explain.Explanation:
        """Why this offer (promobandit.engine.explain): available when the decision was
        made with ``explain=True`` or ``EngineConfig(keep_explanations=True)``."""
        if self.explanation is None:
            raise ValueError("explain: this decision was made without an explanation; decide "
                             "with explain=True (or EngineConfig(keep_explanations=True))")
        return self.explanation


@dataclasses.dataclass(frozen=True)
class _RequestKey:
    """An idempotency key's record: its whole tag as given to ``tag_request`` (the key,
    then what a retry must repeat), the decision made under it (returned again to a
    retry), and when the key is free again (decision time + feedback wait, unix s)."""

    tag: str
    decision: Decision
    expires: float

    def to_row(self, key: str) -> list[Any]:
        d = self.decision
        return [key, self.tag, self.expires, d.id, d.user, d.group, d.offer, d.offer_id,
                d.propensity, d.policy_version, d.created_at, d.price, d.discount_cost,
                None if d.items is None else d.items.tolist(),
                None if d.item_probs is None else d.item_probs.tolist()]

    @classmethod
    def from_row(cls, row: list[Any]) -> tuple[str, _RequestKey]:
        (key, tag, expires, id_, user, group, offer, offer_id, prop, version, created, price,
         cost, items, item_probs) = row
        d = Decision(str(id_), str(user), str(group), int(offer), str(offer_id), float(prop),
                     int(version), float(created), float(price), float(cost),
                     None if items is None else np.array(items, dtype=np.int64),
                     None if item_probs is None else np.array(item_probs, dtype=np.float64))
        return str(key), cls(str(tag), d, float(expires))


@dataclasses.dataclass
class _Awaiting:
    """A finalised decision whose policy update waits for the shopper's return (retention
    objective): its record and outcome, money in currency."""

    rec: PendingDecision
    value: float  # the objective without the return
    purchased: bool
    revenue: float
    discount: float
    defaulted: bool


@dataclasses.dataclass(frozen=True)
class FeedbackResult:
    """status: "applied" (joined to a pending decision), "finalised" (it completed the
    decision and updated the policy), "duplicate" (event id already seen), "late" (the
    decision was already finalised: recorded, not learnt from), "unknown" (no such
    decision). reward: the objective value when finalised, else None."""

    status: str
    decision_id: str
    reward: float | None = None


class Engine:
    """Per-request discount decisions with a bandit policy, inside limits, logged.

    catalogue: the offers (arm k is catalogue.offers[k]).
    policy: a promobandit policy with len(catalogue) arms; contextual policies need a
        context per request (given, or from `features`).
    config: EngineConfig.
    privacy_key: secret bytes (>= 16) for the keyed hash of user ids. Required: there
        is no default key.
    features: optional feature store with add(event) and vector(user, now).
    recommender: optional promobandit.engine.ItemRecommender.
    log_dir: optional folder for the Parquet decision log.
    context_names: optional names of the context vector's features, in order, for
        explanations of contexts given with the request (without them, explanations use
        the feature store's names, else x0, x1, ...).
    """

    def __init__(self, catalogue: Catalogue, policy: Policy, config: EngineConfig | None = None,
                 *, privacy_key: bytes, features: Any = None, recommender: Any = None,
                 log_dir: str | None = None, log_flush_rows: int = 50_000,
                 context_names: Sequence[str] | None = None) -> None:
        if not isinstance(catalogue, Catalogue):
            raise ValueError(f"catalogue: expected a Catalogue, got {type(catalogue).__name__}")
        if not isinstance(policy, Policy):
            raise ValueError(f"policy: expected a promobandit Policy, got {type(policy).__name__}")
        if policy.n_arms != len(catalogue):
            raise ValueError(f"policy: has {policy.n_arms} arms, the catalogue has "
                             f"{len(catalogue)} offers")
        if not isinstance(privacy_key, (bytes, bytearray)) or len(privacy_key) < 16:
            raise ValueError("privacy_key: expected at least 16 secret bytes (user ids are "
                             "pseudonymised with it; there is no default)")
        if context_names is not None and (isinstance(context_names, str) or not all(
                isinstance(n, str) for n in context_names)):
            raise ValueError("context_names: expected a sequence of feature names (str)")
        self.context_names = None if context_names is None else tuple(context_names)
        self.catalogue = catalogue
        self.policy = policy
        self.config = config or EngineConfig()
        self._key = bytes(privacy_key)[:64]
        self.features = features
        self.recommender = recommender
        self.log = DecisionLogWriter(log_dir, log_flush_rows) if log_dir is not None else None
        c = self.config
        self.caps = UserCaps(c.caps) if c.caps is not None else None
        self.budget = BudgetPacer(c.budget) if c.budget is not None else None
        self.fairness = FairnessGuard(c.fairness) if c.fairness is not None else None
        self.ledger = DiscountLedger(catalogue, self.budget, self.caps, c.conversion_prior)
        self._offer_ids = catalogue.ids
        self._pending = PendingStore()
        self._finalised: OrderedDict[str, set[str]] = OrderedDict()
        # Idempotency keys (tag_request), oldest first: kept for the feedback wait after
        # their decision, finalised or not (decision_for_request).
        self._requests: OrderedDict[str, _RequestKey] = OrderedDict()
        self._counter = 0
        self._lock = threading.RLock()
        self._id_key = hashlib.blake2b(self.config.seed.to_bytes(8, "little"),
                                       digest_size=16).digest()
        self._traits = policy.traits
        self._log_probs = (c.log_action_probs == "always"
                           or (c.log_action_probs == "auto" and self._traits.closed_form))
        # A policy that models the shopper's response (ConversionTS) gets the exact money
        # of every offer on the request's basket, and learns from purchase outcomes.
        self._quoted = bool(getattr(self._traits, "needs_quotes", False))
        self.stats = {"decisions": 0, "finalised": 0, "defaulted": 0, "late": 0, "duplicate": 0,
                      "unknown": 0, "purchases": 0, "coupons_redeemed": 0,
                      "log_write_errors": 0}
        obj = c.objective
        self.objective: Objective | None = obj if isinstance(obj, Objective) else None
        self._floor = (ConversionFloor(obj) if isinstance(obj, Objective)
                       and obj.conversion_floor is not None else None)
        if self._quoted and obj != "profit":
            raise ValueError(f"objective: {type(policy).__name__} models the shopper's "
                             "response and prices each offer's profit exactly, so it takes "
                             f"objective='profit', got {obj!r}")
        # Retention objective: finalised decisions waiting for the shopper's return before
        # the policy learns (id -> _Awaiting), their due times, and returns seen early.
        self._awaiting: dict[str, _Awaiting] = {}
        self._awaiting_due: list[tuple[float, str]] = []
        self._returned: set[str] = set()
        self._explanations: dict[str, _explain.Explanation] = {}

    @property
    def objective_name(self) -> str:
        """The objective's label ("profit", or the weighted terms)."""
        return self.objective.name if self.objective is not None else str(self.config.objective)

    @property
    def conversion_multiplier(self) -> float:
        """The conversion floor's multiplier mu (reward units per conversion; 0 without a
        floor): every offer's score gets + mu x its purchase rate."""
        return self._floor.multiplier if self._floor is not None else 0.0

    @property
    def objective_is_money(self) -> bool:
        """True when the objective is in currency (divided by reward_scale for the policy)."""
        return self.objective is not None or self.config.objective != "conversion"

    # --- identities ---------------------------------------------------------------------
    def pseudonym(self, user: Any) -> str:
        """The keyed hash (BLAKE2b, 128 bits, hex) that stands for a user everywhere."""
        raw = user if isinstance(user, bytes) else str(user).encode()
        return hashlib.blake2b(raw, key=self._key, digest_size=16).hexdigest()

    def _next_id(self) -> str:
        self._counter += 1
        return hashlib.blake2b(self._counter.to_bytes(8, "little"), key=self._id_key,
                               digest_size=12).hexdigest()

    # --- deciding -----------------------------------------------------------------------
    def _context(self, uh: str, context: Any, events: Iterable[Any] | None,
                 now: float) -> np.ndarray | None:
        if events is not None:
            if self.features is None:
                raise ValueError("events: this engine has no feature store to add them to")
            # The store only ever sees the pseudonym: the event's own user field (if any)
            # is replaced by the requesting user's. All events are checked, then added.
            self.features.add_all([self._as_event(ev, uh) for ev in events], now=now)
        if context is not None:
            if not self.policy.contextual:
                return None
            x = np.asarray(context, dtype=np.float64) if not isinstance(context, np.ndarray) \
                else context
            return x  # shape, dtype and finiteness are checked by the policy kernel
        if not self.policy.contextual:
            return None
        if self.features is None:
            raise ValueError("context: required (this engine's policy is contextual and it "
                             "has no feature store)")
        return np.ascontiguousarray(self.features.vector(uh, now), dtype=np.float64)

    @staticmethod
    def _as_event(ev: Any, uh: str) -> dict[str, Any]:
        if isinstance(ev, dict):
            return {**ev, "user": uh}
        if dataclasses.is_dataclass(ev) and not isinstance(ev, type):
            return {**dataclasses.asdict(ev), "user": uh}
        raise ValueError(f"events: expected event mappings or Event objects, got "
                         f"{type(ev).__name__}")

    def record_events(self, user: Any, events: Sequence[Any], now: float | None = None) -> int:
        """Adds behaviour events of `user` to the feature store, all or none (each checked
        first; timestamps at most ``now`` + the store's reorder tolerance). Returns how
        many were added."""
        if self.features is None:
            raise ValueError("events: this engine has no feature store")
        now = time.time() if now is None else float(now)
        with self._lock:
            uh = self.pseudonym(user)
            n = int(self.features.add_all([self._as_event(ev, uh) for ev in events], now=now))
            self._evict_users()
            return n

    def _evict_users(self) -> None:
        # A feature store bounded in users (FeatureStore(max_users=...)) forgets the least
        # recently updated ones once a change is committed.
        evict = getattr(self.features, "evict", None)
        if evict is not None:
            evict()

    def update_items(self, item_ids: Any, embeddings: Any, categories: Any, unit_prices: Any,
                     unit_costs: Any, item_bias: Any = None) -> int:
        """Changes and appends rows of the recommender's item table, all or none (see
        ItemRecommender.upsert_items); returns the number of items afterwards."""
        if self.recommender is None:
            raise ValueError("items: this engine has no item recommender")
        with self._lock:
            return int(self.recommender.upsert_items(item_ids, embeddings, categories,
                                                     unit_prices, unit_costs, item_bias))

    def record_event(self, user: Any, event: Any) -> None:
        """Adds one behaviour event of `user` to the feature store (e.g. a page view
        that came without a decision)."""
        if self.features is None:
            raise ValueError("event: this engine has no feature store")
        with self._lock:
            self.features.add(self._as_event(event, self.pseudonym(user)))
            self._evict_users()

    def _levers(self, uhs: Sequence[str], groups: Sequence[str], costs: np.ndarray,
                eligible: np.ndarray, list_totals: np.ndarray, now: float
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """Masks, biases (None when all zero), expected discount costs and fairness
        metric values of every offer for n requests, (n, K) each, from their quotes
        (costs, eligible: (n, K); list_totals: (n,)). Nothing changes state here."""
        masks = eligible.copy()
        if self.caps is not None:
            for i, uh in enumerate(uhs):
                masks[i] &= self.caps.mask(uh, now, self.ledger.discounted, costs[i])
        if self.budget is not None:
            masks &= self.budget.mask(now, costs)
        expected = self.ledger.expected_costs(costs)
        lt = list_totals[:, None]
        depth = np.divide(costs, lt, out=np.zeros_like(costs), where=lt > 0)
        bias = None
        if self.budget is not None and self.budget.lam > 0.0:
            bias = self.budget.bias(expected, self.config.reward_scale)
        if self.fairness is not None:
            distinct = set(groups)
            if len(distinct) == 1:  # one request, or a batch of one group
                fb = self.fairness.bias(groups[0], depth)
            else:
                fb = np.zeros_like(costs)
                for g in distinct:
                    rows = [i for i, gi in enumerate(groups) if gi == g]
                    fb[rows] = self.fairness.bias(g, depth[rows])
            if fb.any():
                bias = fb if bias is None else bias + fb
        if self._floor is not None and self._floor.multiplier > 0.0:
            cb = self._conversion_bias(costs.shape[0])
            bias = cb if bias is None else bias + cb
        empty = ~masks.any(axis=1)
        if empty.any():
            raise ValueError(f"basket: no offer is eligible for request {int(np.argmax(empty))} "
                             "(margin floor, caps or budget); include a no-discount offer in "
                             "the catalogue")
        metric = self.fairness.value(depth) if self.fairness is not None else depth
        return masks, bias, expected, metric

    def _conversion_bias(self, n: int) -> np.ndarray:
        """(n, K): + mu x each offer's purchase rate (the conversion floor's lever)."""
        assert self._floor is not None
        row = self.ledger.purchase_rate * self._floor.multiplier
        return np.broadcast_to(row, (n, row.shape[0])).copy()

    def _lever_parts(self, group: str, costs: np.ndarray, expected: np.ndarray,
                     list_total: float) -> dict[str, np.ndarray]:
        """The per-offer score adjustments of one request, lever by lever (what _levers
        summed): for explanations only."""
        k = costs.shape[0]
        zero = np.zeros(k)
        budget = zero
        if self.budget is not None and self.budget.lam > 0.0:
            budget = self.budget.bias(expected, self.config.reward_scale)
        fairness = zero
        if self.fairness is not None:
            depth = costs / list_total if list_total > 0 else np.zeros_like(costs)
            fairness = self.fairness.bias(group, depth)
        conversion = zero
        if self._floor is not None and self._floor.multiplier > 0.0:
            conversion = self._conversion_bias(1)[0]
        return {"budget": budget, "fairness": fairness, "conversion": conversion}

    def decide(self, user: Any, *, context: Any = None, events: Iterable[Any] | None = None,
               basket: Basket | None = None, candidates: Any = None, k: int | None = None,
               group: str = "", now: float | None = None, explain: bool = False,
               exclude_offers: Sequence[str] | None = None,
               defer_activation: bool = False) -> Decision:
        """Decide the items and the offer for one request (see the module doc).

        user: the shopper's id (any str/int/bytes; pseudonymised at once).
        context: (d,) float64 features for a contextual policy, or None to take the
            feature store's vector (after adding `events`).
        basket: the basket offers are priced on; without one, the recommended items
            (one unit each) form it.
        candidates: item ids the recommender may choose from (default all).
        k: items to recommend (default the recommender's k). group: the fairness group.
        now: decision time in unix seconds (default the clock).
        explain: compute the decision's explanation (``Decision.explain()``, and
            ``Engine.explain(id)`` until it is finalised); changes no state, draws from no
            stream the policy uses.
        exclude_offers: offer ids this request must not get (e.g. offers the shop cannot
            show on this page); the rest of the catalogue's eligible offers remain.
        defer_activation: the decision is made now but learnt from only once
            ``activate(decision_id)`` confirms the offer was shown; without activation
            within ``feedback_wait_seconds`` it is dropped: never learnt from, not logged,
            its budget reservation and cap slot released (see ``activate``).

        Everything is checked before anything changes: a rejected request (a bad event,
        an unknown candidate, k out of range, an unknown excluded offer, no eligible
        offer) leaves the engine, its feature store and its recommender as they were.
        """
        now = time.time() if now is None else float(now)
        events = None if events is None else list(events)
        with self._lock:
            self._expire(now)
            uh = self.pseudonym(user)
            if basket is None and self.recommender is None:
                raise ValueError("basket: required when the engine has no recommender")
            allowed = self.check_request(uh, events=events, k=k, candidates=candidates,
                                         exclude_offers=exclude_offers, now=now)
            saved = self._checkpoint(uh, events)
            try:
                x = self._context(uh, context, events, now)
                items = item_probs = None
                if self.recommender is not None:
                    items, item_probs = self.recommender.recommend(uh, k=k,
                                                                   candidates=candidates,
                                                                   now=now)
                    if basket is None:
                        basket = self.recommender.basket(items)
                assert basket is not None  # check_request: required without a recommender
                q = self.catalogue.quote(basket, now)
                eligible = q.eligible if allowed is None else q.eligible & allowed
                if not eligible.any():
                    raise ValueError("exclude_offers: no eligible offer is left for this "
                                     "request (margin floor and exclusions)")
                masks, biases, expected, metric = self._levers(
                    (uh,), (group,), q.discount_cost[None], eligible[None],
                    np.array([q.list_total]), now)
                bias = None if biases is None else biases[0]
                pend = None
                if explain or self.config.keep_explanations:
                    pend = _explain.begin(
                        self, uh, group, x, basket, q, masks[0], bias, expected[0],
                        self._lever_parts(group, q.discount_cost, expected[0],
                                          float(q.list_total)),
                        now)
                quotes = (self._offer_quotes([basket], q.paid_total[None],
                                             np.array([q.list_total]), now)
                          if self._quoted else None)
                if quotes is None:
                    arm, prop = self.policy.select(x, masks[0], bias)
                else:
                    arm, prop = self.policy.select(x, masks[0], bias, quotes[0])
                probs = None
                if self._log_probs:
                    kw = {} if quotes is None else {"quotes": quotes}
                    probs = self.policy.action_probabilities(
                        None if x is None else x[None], masks, 1, biases=biases, **kw)[0]
            except Exception:
                self._rollback(saved)
                raise
            d = self._commit(uh, group, x, arm, prop, probs, masks[0],
                             float(q.discount_cost[arm]), float(q.paid_total[arm]),
                             float(q.list_total), float(expected[0, arm]),
                             float(metric[0, arm]), self._cost_of_goods(basket), items,
                             item_probs, now,
                             lead_cut=(math.nan if quotes is None
                                       else float(quotes[0, arm, 2])),
                             defer_activation=bool(defer_activation))
            if events:
                self._evict_users()
            if pend is None:
                return d
            e = _explain.finish(self, pend, d.id, d.offer, d.propensity, d.policy_version)
            self._explanations[d.id] = e
            return dataclasses.replace(d, explanation=e)

    def explain(self, decision_id: str) -> _explain.Explanation:
        """The explanation of a decision that is still within its feedback wait, computed
        when it was made (decide(..., explain=True) or EngineConfig(keep_explanations=
        True)): from the state the decision used, not today's."""
        with self._lock:
            e = self._explanations.get(decision_id)
            if e is not None:
                return e
            if self._pending.get(decision_id) is not None:
                raise ValueError(f"decision_id: {decision_id!r} has no explanation kept "
                                 "(decided without explain=True or EngineConfig("
                                 "keep_explanations=True), or before the engine was restored: "
                                 "explanations are not saved state); the state it used has "
                                 "changed since, so none can be computed now")
            raise ValueError(f"decision_id: {decision_id!r} is not a decision within its "
                             "feedback wait (unknown, or already finalised)")

    # --- request checks and rollback (events, recommendations, exclusions) ---------------
    def offer_mask(self, exclude_offers: Sequence[str] | None) -> np.ndarray | None:
        """(K,) bool, False for the excluded offer ids (None: nothing excluded).
        ValueError naming ``exclude_offers`` for an id the catalogue does not have."""
        if exclude_offers is None:
            return None
        if isinstance(exclude_offers, (str, bytes)):
            raise ValueError("exclude_offers: expected a list of offer ids, got a string")
        index = {oid: i for i, oid in enumerate(self._offer_ids)}
        allowed = np.ones(len(self._offer_ids), dtype=bool)
        for i, oid in enumerate(exclude_offers):
            j = index.get(oid) if isinstance(oid, str) else None
            if j is None:
                raise ValueError(f"exclude_offers[{i}]: unknown offer id {oid!r}; expected "
                                 f"one of {list(self._offer_ids)}")
            allowed[j] = False
        if not allowed.any():
            raise ValueError("exclude_offers: excludes every offer of the catalogue")
        return allowed

    def check_request(self, user: str, *, events: Sequence[Any] | None = None,
                      k: int | None = None, candidates: Any = None,
                      exclude_offers: Sequence[str] | None = None, now: float | None = None
                      ) -> np.ndarray | None:
        """Checks what decide would reject about a request's events, recommendation and
        exclusions, changing nothing (``user`` is the pseudonym). Returns the offer mask
        of the exclusions (None: none). ValueError naming the field."""
        if events is not None:
            if self.features is None:
                raise ValueError("events: this engine has no feature store to add them to")
            self.features.add_all([self._as_event(ev, user) for ev in events], now=now,
                                  check_only=True)
        if self.recommender is not None:
            self.recommender.check_request(k, candidates)
        else:
            if k is not None:
                raise ValueError("k: this engine has no item recommender")
            if candidates is not None:
                raise ValueError("candidates: this engine has no item recommender")
        return self.offer_mask(exclude_offers)

    def _checkpoint(self, uh: str, events: Sequence[Any] | None) -> tuple[Any, int | None]:
        """What a failed decide must put back: the user's feature history (when events
        are added) and the exploration head's draw counter."""
        feats = (self.features.checkpoint([uh])
                 if events and self.features is not None else None)
        ex = getattr(self.recommender, "explorer", None)
        return feats, None if ex is None else ex.draws

    def _rollback(self, saved: tuple[Any, int | None]) -> None:
        feats, draws = saved
        if feats is not None:
            self.features.rollback(feats)
        if draws is not None:
            self.recommender.explorer.draws = draws

    @staticmethod
    def _cost_of_goods(basket: Basket) -> float:
        return float(np.dot(basket.unit_costs, basket.quantities))

    def _offer_quotes(self, baskets: Sequence[Basket], paid: np.ndarray,
                      list_totals: np.ndarray, now: float) -> np.ndarray:
        """(n, K, 4) exact money of every offer on every basket, for policies that model
        the shopper's response (``traits.needs_quotes``; see
        promobandit.policies.conversion): the objective's value (divided by
        reward_scale, as rewards are) if the lead line (the basket's first) alone is
        bought and if the whole basket is, and the log price cuts log(list / paid) of
        the lead line and of the basket. paid: (n, K) the baskets' paid totals under
        every offer, list_totals: (n,), from the catalogue's quote of the baskets."""
        leads = [b if len(b) == 1 else Basket.trusted(
            b.item_ids[:1], b.categories[:1], b.unit_prices[:1], b.unit_costs[:1],
            b.quantities[:1]) for b in baskets]
        ql = self.catalogue.quote_batch(leads, now)
        n, k = paid.shape
        out = np.empty((n, k, 4))
        cogs_basket = np.array([self._cost_of_goods(b) for b in baskets])
        cogs_lead = np.array([self._cost_of_goods(b) for b in leads])
        obj = self.config.objective
        scale = self.config.reward_scale
        if obj == "conversion":
            out[:, :, 0] = 1.0
            out[:, :, 1] = 1.0
        elif obj == "revenue":
            out[:, :, 0] = ql.paid_total / scale
            out[:, :, 1] = paid / scale
        else:
            out[:, :, 0] = (ql.paid_total - cogs_lead[:, None]) / scale
            out[:, :, 1] = (paid - cogs_basket[:, None]) / scale
        out[:, :, 2] = _log_cut(ql.list_total[:, None], ql.paid_total)
        out[:, :, 3] = _log_cut(list_totals[:, None], paid)
        return out

    def _commit(self, uh: str, group: str, x: np.ndarray | None, arm: int, prop: float,
                probs: np.ndarray | None, mask: np.ndarray, max_cost: float, paid_total: float,
                list_total: float, expected_cost: float, metric: float, cost_total: float,
                items: np.ndarray | None, item_probs: np.ndarray | None,
                now: float, lead_cut: float = math.nan,
                defer_activation: bool = False) -> Decision:
        arm = int(arm)
        if probs is not None and not self._traits.closed_form:
            # One estimate for both: the propensity is the logged distribution's, so the
            # log is consistent (a second estimate of the same probability would differ).
            prop = float(probs[arm])
        rec = PendingDecision(
            id=self._next_id(), user=uh, group=group, offer=arm, propensity=float(prop),
            probs=probs, eligible=mask,
            context=None if x is None else np.array(x, dtype=np.float64),
            items=items, item_probs=item_probs, created=now, version=self.policy.version,
            lam=self.budget.lam if self.budget is not None else 0.0, max_cost=max_cost,
            expected_cost=expected_cost,
            discount_cost=self.ledger.purchase_discount(arm, max_cost),
            paid_total=paid_total, list_total=list_total, cost_total=cost_total,
            lead_cut=lead_cut, activated=not defer_activation, fair_metric=metric)
        self._pending.add(rec)
        self.ledger.reserve(uh, arm, max_cost, expected_cost, now)
        if self.fairness is not None and not defer_activation:
            self.fairness.record(group, metric)
        self.stats["decisions"] += 1
        return Decision(rec.id, uh, group, rec.offer, self._offer_ids[rec.offer], rec.propensity,
                        rec.version, now, rec.paid_total, rec.max_cost, items, item_probs)

    def decide_batch(self, users: Sequence[Any], *, contexts: Any = None,
                     baskets: Sequence[Basket], groups: Sequence[str] | None = None,
                     now: float | None = None, n_threads: int = 1,
                     explain: bool = False,
                     exclude_offers: Sequence[Sequence[str] | None] | None = None,
                     defer_activation: Sequence[bool] | None = None) -> list[Decision]:
        """Decisions for many requests at once (offline and batch serving).

        Equivalent to calling decide for each row in order with the same `now`, except
        that all rows are chosen from the policy state and budget multiplier at the
        start of the batch (a batch is one moment). Limits are still charged row by row:
        rows whose worst-case cost would no longer fit in the budget, or whose user's
        caps the rows before them used up, are decided again with those offers masked.
        explain: compute every row's explanation, as decide does (row i is the policy's
        decision number t + i of the batch; a row decided again is explained again).

        exclude_offers, defer_activation: per row, as decide's (None: none excluded,
        activated at once).
        """
        now = time.time() if now is None else float(now)
        n = len(users)
        allowed = self._batch_offer_masks(exclude_offers, n)
        if defer_activation is not None and len(defer_activation) != n:
            raise ValueError(f"defer_activation: expected {n} flags (one per user), got "
                             f"{len(defer_activation)}")
        if len(baskets) != n:
            raise ValueError(f"baskets: expected {n} baskets (one per user), got {len(baskets)}")
        groups = [""] * n if groups is None else list(groups)
        if len(groups) != n:
            raise ValueError(f"groups: expected {n} groups, got {len(groups)}")
        with self._lock:
            self._expire(now)
            uhs = [self.pseudonym(u) for u in users]
            if self.policy.contextual:
                if contexts is None:
                    if self.features is None:
                        raise ValueError("contexts: required (contextual policy, no feature store)")
                    contexts = self.features.vectors(uhs, now)
                xs = np.ascontiguousarray(contexts, dtype=np.float64)
            else:
                xs = None
            qb = self.catalogue.quote_batch(baskets, now)
            costs = qb.discount_cost
            eligible = qb.eligible if allowed is None else qb.eligible & allowed
            masks, biases, expected, metric = self._levers(uhs, groups, costs, eligible,
                                                           qb.list_total, now)
            pends: list[Any] | None = None
            if explain or self.config.keep_explanations:
                t0 = self.policy.n_decisions
                pends = [_explain.begin(
                    self, uhs[i], groups[i], None if xs is None else xs[i], baskets[i],
                    qb.row(i), masks[i], None if biases is None else biases[i], expected[i],
                    self._lever_parts(groups[i], costs[i], expected[i], float(qb.list_total[i])),
                    now, t=t0 + i) for i in range(n)]
            quotes = (self._offer_quotes(baskets, qb.paid_total, qb.list_total, now)
                      if self._quoted else None)
            kw = {} if quotes is None else {"quotes": quotes}
            arms, props = self.policy.select_batch(xs, masks, n, n_threads=n_threads,
                                                   biases=biases, **kw)
            probs = None
            if self._log_probs:
                probs = self.policy.action_probabilities(xs, masks, n, biases=biases, **kw)
            out = []
            for i in range(n):
                arm, prop = int(arms[i]), float(props[i])
                p_i = None if probs is None else probs[i]
                row_mask = self._row_limits(uhs[i], uhs[:i], costs[i], now)
                if row_mask is not None and not row_mask[arm]:
                    # Earlier rows of the batch used up the budget or the user's caps this
                    # offer needed (offers that cost nothing always fit).
                    masks[i] &= row_mask
                    x_i = None if xs is None else xs[i]
                    b_i = None if biases is None else biases[i]
                    if pends is not None:
                        pends[i] = _explain.again(self, pends[i], masks[i], costs[i], now)
                    kw_i = {} if quotes is None else {"quotes": quotes[i]}
                    arm, prop = self.policy.select(x_i, masks[i], b_i, **kw_i)
                    if p_i is not None:
                        kw_i = {} if quotes is None else {"quotes": quotes[i:i + 1]}
                        p_i = self.policy.action_probabilities(
                            None if x_i is None else x_i[None], masks[i][None], 1,
                            biases=None if b_i is None else b_i[None], **kw_i)[0]
                d = self._commit(
                    uhs[i], groups[i], None if xs is None else xs[i], arm, prop,
                    p_i, masks[i], float(costs[i, arm]),
                    float(qb.paid_total[i, arm]), float(qb.list_total[i]),
                    float(expected[i, arm]), float(metric[i, arm]),
                    self._cost_of_goods(baskets[i]), None, None, now,
                    lead_cut=math.nan if quotes is None else float(quotes[i, arm, 2]),
                    defer_activation=bool(defer_activation[i]) if defer_activation else False)
                if pends is not None:
                    e = _explain.finish(self, pends[i], d.id, d.offer, d.propensity,
                                        d.policy_version)
                    self._explanations[d.id] = e
                    d = dataclasses.replace(d, explanation=e)
                out.append(d)
            return out

    def _row_limits(self, uh: str, earlier: Sequence[str], costs: np.ndarray,
                    now: float) -> np.ndarray | None:
        """A batch row's limits after the rows before it were charged (as sequential
        decides would see them): the budget's mask, and the user's caps when the user
        had an earlier row; None when neither applies."""
        mask = None
        if self.budget is not None:
            mask = self.budget.mask(now, costs)
        if self.caps is not None and uh in earlier:
            caps = self.caps.mask(uh, now, self.ledger.discounted, costs)
            mask = caps if mask is None else mask & caps
        return mask

    def _batch_offer_masks(self, exclude_offers: Sequence[Sequence[str] | None] | None,
                           n: int) -> np.ndarray | None:
        """(n, K) offer masks of per-row exclusions (None: no row excludes anything)."""
        if exclude_offers is None:
            return None
        if len(exclude_offers) != n:
            raise ValueError(f"exclude_offers: expected {n} rows (one per user), got "
                             f"{len(exclude_offers)}")
        out = np.ones((n, len(self._offer_ids)), dtype=bool)
        for i, ex in enumerate(exclude_offers):
            try:
                m = self.offer_mask(ex)
            except ValueError as exc:
                raise ValueError(f"requests[{i}].{exc}") from None
            if m is not None:
                out[i] = m
        return out

    # --- feedback -----------------------------------------------------------------------
    def feedback(self, decision_id: str, event_id: str, *, clicked: bool = False,
                 purchased: bool = False, revenue: float | None = None,
                 cost_of_goods: float | None = None, discount: float | None = None,
                 coupon_redeemed: bool = False, item: int | None = None,
                 ended: bool = False, returned: bool = False,
                 now: float | None = None, check: bool = True,
                 revenue_multiple: float | None = FEEDBACK_REVENUE_MULTIPLE,
                 max_events: int | None = FEEDBACK_MAX_EVENTS) -> FeedbackResult:
        """Joins one feedback event to its decision.

        event_id: unique per event; a repeated id changes nothing ("duplicate").
        clicked / purchased: what happened (a purchase implies a click and finalises).
        revenue: what the shopper paid (currency; default: the priced basket).
        cost_of_goods: cost of what was bought (default: the basket's cost).
        discount: discount cost of the purchase (default: the priced offer's).
        coupon_redeemed: a coupon from this decision was redeemed on a later order;
            `discount` is its cost (default the coupon's face value). Booked to the
            budget even when the decision is already finalised.
        item: the recommended item the event concerns (clicked or bought), which
            teaches the recommender's exploration head.
        ended: the shopper's session ended without a purchase: the decision is finalised
            now (objective of no purchase) instead of holding its budget reservation for
            the whole wait.
        returned: the shopper came back (a retention objective's outcome; see
            promobandit.engine.objective). Within the window it completes a decision that
            waits for it ("finalised"); earlier, it is remembered ("applied").
        now: event time (unix seconds, default the clock).
        check: the amounts and ids are checked against what the engine quoted for the
            decision before anything changes, with the service's rules (see
            ``check_feedback``): a purchase's ``discount`` at most the quoted worst case;
            ``revenue`` and ``cost_of_goods`` at most ``revenue_multiple`` x the quoted
            basket (list price, cost of goods; None: no limit); a coupon redeemed once,
            only on a decision that offered one, for at most its face value; an event id
            reused with another outcome, or a decision past ``max_events`` events (None:
            no limit), is a ConflictError. A rejected event (ValueError naming the field)
            changes nothing. ``check=False`` is for trusted callers that checked already
            (the service checks before it logs, with its configured limits, and replays
            its log unchecked).
        """
        now = time.time() if now is None else float(now)
        if not isinstance(decision_id, str) or not decision_id:
            raise ValueError(f"decision_id: expected a non-empty string, got {decision_id!r}")
        if not isinstance(event_id, str) or not event_id:
            raise ValueError(f"event_id: expected a non-empty string, got {event_id!r}")
        for name, v in (("revenue", revenue), ("cost_of_goods", cost_of_goods),
                        ("discount", discount)):
            if v is not None:
                check_range(name, v, 0.0)
        if returned and (self.objective is None or not self.objective.retention):
            raise ValueError("returned: this engine's objective has no retention term")
        with self._lock:
            digest = None
            if check:
                digest = hashlib.blake2b(repr((
                    bool(clicked), bool(purchased), revenue, cost_of_goods, discount,
                    bool(coupon_redeemed), item, bool(ended), bool(returned))).encode(),
                    digest_size=16).hexdigest()
                self.check_feedback(decision_id, event_id, digest, purchased=purchased,
                                    revenue=revenue, cost_of_goods=cost_of_goods,
                                    discount=discount, coupon_redeemed=coupon_redeemed,
                                    revenue_multiple=revenue_multiple, max_events=max_events)
            res = self._feedback(decision_id, event_id, clicked=clicked, purchased=purchased,
                                 revenue=revenue, cost_of_goods=cost_of_goods,
                                 discount=discount, coupon_redeemed=coupon_redeemed,
                                 item=item, ended=ended, returned=returned, now=now)
            if digest is not None:
                self.note_outcome(decision_id, event_id, digest)
            return res

    def _feedback(self, decision_id: str, event_id: str, *, clicked: bool, purchased: bool,
                  revenue: float | None, cost_of_goods: float | None, discount: float | None,
                  coupon_redeemed: bool, item: int | None, ended: bool, returned: bool,
                  now: float) -> FeedbackResult:
        """feedback, once checked (call under the lock)."""
        rec = self._pending.get(decision_id)
        if rec is None:
            if returned and decision_id in self._awaiting:
                # the decision is complete now: a repeat of this event is then "late"
                # or, remembered, "duplicate", as for any finalised decision
                seen = self._finalised.get(decision_id)
                if seen is not None:
                    seen.add(event_id)
                value = self._learn(self._awaiting.pop(decision_id), True, now)
                return FeedbackResult("finalised", decision_id, value)
            seen = self._finalised.get(decision_id)
            if seen is None:
                self.stats["unknown"] += 1
                return FeedbackResult("unknown", decision_id)
            if event_id in seen:
                self.stats["duplicate"] += 1
                return FeedbackResult("duplicate", decision_id)
            seen.add(event_id)
            if coupon_redeemed and self.ledger.redeem_coupon(decision_id, discount, now):
                self.stats["coupons_redeemed"] += 1
            self.stats["late"] += 1
            return FeedbackResult("late", decision_id)
        if not rec.activated:
            raise ValueError(f"decision_id: {decision_id} was decided with "
                             "defer_activation and is not activated; activate it (the "
                             "offer was shown) before sending its feedback")
        if event_id in rec.events:
            self.stats["duplicate"] += 1
            return FeedbackResult("duplicate", decision_id)
        rec.events.add(event_id)
        if returned:
            self._returned.add(decision_id)
        if coupon_redeemed:
            self.ledger.redeem_coupon(decision_id, discount, now, rec)
        rec.clicked = rec.clicked or clicked or purchased
        if item is not None and (clicked or purchased):
            rec.clicked_item = int(item)
        if purchased:
            reward = self._finalise(rec, now, purchased=True, revenue=revenue,
                                    cost_of_goods=cost_of_goods, discount=discount)
            return FeedbackResult("finalised", decision_id, reward)
        if ended:
            reward = self._finalise(rec, now, purchased=False)
            return FeedbackResult("finalised", decision_id, reward)
        return FeedbackResult("applied", decision_id)

    # --- checks a service makes before logging (issue 11: money, idempotency) -----------
    def check_feedback(self, decision_id: str, event_id: str, digest: str, *,
                       purchased: bool = False, revenue: float | None = None,
                       cost_of_goods: float | None = None, discount: float | None = None,
                       coupon_redeemed: bool = False, revenue_multiple: float | None = None,
                       max_events: int | None = None) -> None:
        """Raises (ValueError naming the field, or ConflictError) if this feedback claims
        money the engine did not quote for the decision, reuses an event id with another
        outcome (`digest`: the service's digest of the outcome fields), redeems a coupon
        twice or where none was given, or exceeds `max_events`; changes nothing. See
        DiscountLedger.check_feedback for the rules."""
        with self._lock:
            rec = self._pending.get(decision_id)
            events = rec.events if rec is not None else self._finalised.get(decision_id)
            self.ledger.check_feedback(
                rec, decision_id, events, event_id, digest, purchased=purchased,
                revenue=revenue, cost_of_goods=cost_of_goods, discount=discount,
                coupon_redeemed=coupon_redeemed, revenue_multiple=revenue_multiple,
                max_events=max_events)

    def note_outcome(self, decision_id: str, event_id: str, digest: str) -> None:
        """Records the outcome digest of an event just joined to `decision_id` (pending
        or remembered as finalised), so a reuse of its id with another outcome is seen."""
        with self._lock:
            rec = self._pending.get(decision_id)
            events = rec.events if rec is not None else self._finalised.get(decision_id)
            if events is not None and event_id in events:
                events.add(outcome_entry(event_id, digest))

    def tag_request(self, decision_id: str, tag: str) -> None:
        """Records that the decision just made (pending) was made under an idempotency
        tag: "<key>" or "<key>\\0<what a retry must repeat, e.g. a digest of the request>".
        The key then finds that decision (decision_for_request) until its feedback wait
        ends, whether it is still pending or already finalised; a key used again after
        that is replaced. At most ``config.max_request_keys`` keys are kept (the oldest
        is forgotten first)."""
        with self._lock:
            rec = self._pending.get(decision_id)
            if rec is None:
                return
            key = tag.partition("\0")[0]
            self._requests.pop(key, None)
            self._requests[key] = _RequestKey(
                tag, self._decision_of(rec), rec.created + self.config.feedback_wait_seconds)
            while len(self._requests) > self.config.max_request_keys:
                self._requests.popitem(last=False)
                self.stats["request_keys_evicted"] = (
                    self.stats.get("request_keys_evicted", 0) + 1)

    def decision_for_request(self, key: str, now: float | None = None
                             ) -> tuple[Decision, str] | None:
        """(the decision made under idempotency key `key`, its whole tag as given to
        tag_request), while the key is live at `now` (unix seconds, default the clock):
        within the feedback wait of that decision, pending or finalised. None otherwise.
        Changes nothing."""
        now = time.time() if now is None else float(now)
        with self._lock:
            entry = self._requests.get(key)
            if entry is None or entry.expires <= now:
                return None
            return entry.decision, entry.tag

    @property
    def n_request_keys(self) -> int:
        """Idempotency keys kept now (live or not yet pruned)."""
        return len(self._requests)

    def _decision_of(self, rec: PendingDecision) -> Decision:
        return Decision(rec.id, rec.user, rec.group, rec.offer, self._offer_ids[rec.offer],
                        rec.propensity, rec.version, rec.created, rec.paid_total, rec.max_cost,
                        None if rec.items is None else np.asarray(rec.items, dtype=np.int64),
                        None if rec.item_probs is None
                        else np.asarray(rec.item_probs, dtype=np.float64))

    def activate(self, decision_id: str, now: float | None = None) -> FeedbackResult:
        """Confirms that a decision made with ``defer_activation`` was shown: from now on
        it is learnt from like any other (its fairness metric is recorded now).

        Status: "activated"; "duplicate" (already active, or decided without deferral:
        nothing changes); "late" (already finalised: a deferred decision whose wait
        passed without activation was dropped, and stays dropped); "unknown".
        """
        if not isinstance(decision_id, str) or not decision_id:
            raise ValueError(f"decision_id: expected a non-empty string, got {decision_id!r}")
        now = time.time() if now is None else float(now)
        with self._lock:
            self._expire(now)  # an activation after the wait comes too late
            rec = self._pending.get(decision_id)
            if rec is None:
                status = "late" if decision_id in self._finalised else "unknown"
                return FeedbackResult(status, decision_id)
            if rec.activated:
                return FeedbackResult("duplicate", decision_id)
            rec.activated = True
            if self.fairness is not None:
                self.fairness.record(rec.group, rec.fair_metric)
            self.stats["activated"] = self.stats.get("activated", 0) + 1
            return FeedbackResult("activated", decision_id)

    def _drop_unactivated(self, rec: PendingDecision, now: float) -> float:
        """A deferred decision never activated within the wait: not shown, so never learnt
        from and not logged; its reservation and cap slot are released."""
        self._pending.remove(rec)
        self.ledger.release(rec, now)
        self.stats["not_activated"] = self.stats.get("not_activated", 0) + 1
        if self.config.remember_finalised > 0:
            self._finalised[rec.id] = rec.events
            while len(self._finalised) > self.config.remember_finalised:
                self._finalised.popitem(last=False)
        return 0.0

    def pending_created_at(self, decision_id: str) -> float | None:
        """When a pending decision was made (unix seconds), or None if it is not pending."""
        rec = self._pending.get(decision_id)
        return None if rec is None else rec.created

    def _objective(self, purchased: bool, revenue: float, cogs: float) -> float:
        if self.objective is not None:
            return self.objective.value(purchased, revenue, cogs)
        if not purchased:
            return 0.0
        if self.config.objective == "conversion":
            return 1.0
        if self.config.objective == "revenue":
            return revenue
        return revenue - cogs

    def _finalise(self, rec: PendingDecision, now: float, *, purchased: bool,
                  revenue: float | None = None, cost_of_goods: float | None = None,
                  discount: float | None = None, defaulted: bool = False) -> float:
        if not rec.activated:
            return self._drop_unactivated(rec, now)
        self._pending.remove(rec)
        paid = rec.paid_total if revenue is None else revenue
        cogs = rec.cost_total if cost_of_goods is None else cost_of_goods
        disc = (rec.discount_cost if discount is None else discount) if purchased else 0.0
        value = self.config.default_reward if defaulted else self._objective(purchased, paid, cogs)
        self._explanations.pop(rec.id, None)
        if self._floor is not None:
            self._floor.observe(purchased)
        waits = self.objective is not None and self.objective.retention
        if self._quoted:
            # The response, not the money: nothing bought, the lead line alone, or the
            # whole basket (a purchase whose cost of goods covers the basket's).
            outcome = 0 if not purchased else (
                2 if cogs >= rec.cost_total - 1e-9 * max(1.0, rec.cost_total) else 1)
            cut_basket = float(_log_cut(rec.list_total, rec.paid_total))
            lead = rec.lead_cut if math.isfinite(rec.lead_cut) else cut_basket
            self._teach(rec, lambda: self.policy.update(  # type: ignore[call-arg]
                rec.offer, outcome, rec.context, np.array([lead, cut_basket])))
        elif not waits:
            scaled = value if self.config.objective == "conversion" else \
                value / self.config.reward_scale
            scaled = self._traits.clip_reward(scaled)
            self._teach(rec, lambda: self.policy.update(rec.offer, scaled, rec.context))
        if self.recommender is not None:
            self.recommender.observe(rec.user, rec.items, rec.clicked_item)
        if purchased:
            self.stats["purchases"] += 1
        disc = self.ledger.settle(rec, purchased, disc, now)
        self.stats["finalised"] += 1
        if defaulted:
            self.stats["defaulted"] += 1
        if self.config.remember_finalised > 0:
            self._finalised[rec.id] = rec.events
            while len(self._finalised) > self.config.remember_finalised:
                self._finalised.popitem(last=False)
        if waits:
            # The policy learns when the shopper returns or the window ends (_learn).
            aw = _Awaiting(rec, value, purchased, paid if purchased else 0.0, disc, defaulted)
            if rec.id in self._returned:  # the return came before the purchase or the wait
                self._returned.discard(rec.id)
                return self._learn(aw, True, now)
            due = rec.created + float(self.objective.retention_window_seconds)  # type: ignore
            self._awaiting[rec.id] = aw
            heapq.heappush(self._awaiting_due, (due, rec.id))
            return value
        if self.log is not None:
            self._log_row(DecisionRow.finalised(
                rec, offer_id=self._offer_ids[rec.offer], policy=self.policy.name, reward=value,
                purchased=purchased, revenue=paid if purchased else 0.0, discount_cost=disc,
                defaulted=defaulted, feedback_at=now))
        return value

    def _teach(self, rec: PendingDecision, update: Any) -> None:
        """Applies a finalised decision's policy update. The policy checks every update
        before it counts (promobandit.policies.base) and refuses one that would make a
        statistic non-finite, unchanged; the decision is then finalised all the same (its
        outcome is real: the budget is settled and the decision-log row written), only
        not learnt from, counted in ``stats["updates_refused"]`` and logged. The same
        inputs meet the same check on replay, so a replayed engine refuses it too."""
        try:
            update()
        except ValueError as exc:
            self.stats["updates_refused"] = self.stats.get("updates_refused", 0) + 1
            _log.warning("decision %s finalised without a policy update: %s", rec.id, exc)

    def _learn(self, aw: _Awaiting, returned: bool, now: float) -> float:
        """A retention objective's decision is complete: the policy learns its value (with
        the return's weight when the shopper returned) and the log gets its row."""
        assert self.objective is not None
        rec = aw.rec
        value = aw.value + (self.objective.weights.get("retention", 0.0) if returned else 0.0)
        scaled = self._traits.clip_reward(value / self.config.reward_scale)
        self._teach(rec, lambda: self.policy.update(rec.offer, scaled, rec.context))
        self.stats["returned"] = self.stats.get("returned", 0) + int(returned)
        if self.log is not None:
            self._log_row(DecisionRow.finalised(
                rec, offer_id=self._offer_ids[rec.offer], policy=self.policy.name, reward=value,
                purchased=aw.purchased, revenue=aw.revenue, discount_cost=aw.discount,
                defaulted=aw.defaulted, feedback_at=now))
        return value

    def _log_row(self, row: DecisionRow) -> None:
        # A failed write must not leave a decision half-finalised: the row stays in the
        # log's buffer (written with the next flush) and the failure is counted.
        try:
            self.log.append(row)  # type: ignore[union-attr]
        except OSError:
            self.stats["log_write_errors"] += 1

    def _expire(self, now: float) -> int:
        self.ledger.release_expired_coupons(now)
        requests = self._requests
        while requests:
            key = next(iter(requests))
            if requests[key].expires > now:
                break
            del requests[key]
        wait = self.config.feedback_wait_seconds
        n = 0
        while (rec := self._pending.oldest()) is not None:
            if rec.created + wait > now:
                break
            self._finalise(rec, now, purchased=False, defaulted=not rec.events)
            n += 1
        # retention windows that ended without a return (after the waits: a decision just
        # finalised whose window is over too is learnt now, not at the next call)
        due = self._awaiting_due
        while due and due[0][0] <= now:
            aw = self._awaiting.pop(heapq.heappop(due)[1], None)
            if aw is not None:
                self._learn(aw, False, now)
        return n

    def expire(self, now: float | None = None) -> int:
        """Finalises every decision older than the wait; returns how many."""
        now = time.time() if now is None else float(now)
        with self._lock:
            return self._expire(now)

    def flush(self) -> None:
        """Writes buffered decision-log rows."""
        with self._lock:
            if self.log is not None:
                self.log.flush()

    def close(self, now: float | None = None) -> None:
        """Finalises what is due and flushes the log."""
        self.expire(now)
        self.flush()

    # --- reporting ----------------------------------------------------------------------
    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def report(self, now: float | None = None) -> dict[str, Any]:
        """Counters, budget state and fairness gap (money in currency units)."""
        now = time.time() if now is None else float(now)
        with self._lock:
            out: dict[str, Any] = {"policy": self.policy.name,
                                   "policy_version": self.policy.version,
                                   "pending": len(self._pending), **self.stats,
                                   "offer_purchase_rate": dict(zip(
                                       self._offer_ids, self.ledger.purchase_rate.tolist(),
                                       strict=True))}
            if self.budget is not None:
                out["budget"] = self.budget.report(now)
            if self.fairness is not None:
                out["fairness"] = self.fairness.report()
            return out

    # --- state --------------------------------------------------------------------------
    # The state is a JSON-able header and named arrays: the policy's arrays and the pending
    # decisions column by column (promobandit.engine._pending). to_bytes stores the arrays
    # in an .npz with the prefixes "policy_" and "p_".
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: policy, limits, pending decisions (the
        header of their columns, with the arrays under "arrays")."""
        with self._lock:
            s = self._state_header()
            meta, arrays = self._pending.to_columns(len(self.catalogue))
            if self.objective is not None:
                ameta, aarrays = self._awaiting_columns()
                s["objective_state"]["awaiting_pending"] = {**ameta, "arrays": aarrays}
            parts = self._part_columns()
        s["pending"] = {**meta, "arrays": arrays}
        for name, cols in parts.items():
            s[name] = None if cols is None else {**cols[0], "arrays": cols[1]}
        return s

    def _awaiting_columns(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return PendingStore([a.rec for a in self._awaiting.values()]).to_columns(
            len(self.catalogue))

    # The feature store's and the recommender's state ride in the engine's state as two
    # more parts, "features" and "recommender" (None when the engine has none), each a
    # JSON-able header with its arrays (prefixes "f_" and "r_" in the .npz). A state
    # written before these parts existed has neither key: it loads as empty parts.
    _PARTS = (("features", "f_"), ("recommender", "r_"))

    def _part_columns(self) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]] | None]:
        """(header, arrays) of the feature store and the recommender (call under the lock)."""
        return {"features": None if self.features is None else self.features.to_columns(),
                "recommender": (None if self.recommender is None
                                else self.recommender.to_columns())}

    def _prepare_parts(self, state: dict[str, Any]) -> dict[str, Any]:
        """The saved feature store and recommender, checked against this engine's, without
        changing anything (ValueError naming the part)."""
        out: dict[str, Any] = {}
        for name, _ in self._PARTS:
            saved = state.get(name)
            obj = getattr(self, name)
            if saved is not None and obj is None:
                raise ValueError(f"{name}: the saved engine has one, this engine has none")
            if obj is None or saved is None:
                out[name] = None
                continue
            if not hasattr(obj, "prepare_columns"):
                raise ValueError(f"{name}: {type(obj).__name__} cannot load a saved state")
            meta = {k: v for k, v in saved.items() if k != "arrays"}
            out[name] = obj.prepare_columns(meta, saved.get("arrays", {}))
        return out

    def _install_parts(self, prepared: dict[str, Any]) -> None:
        for name, _ in self._PARTS:
            obj = getattr(self, name)
            if obj is None:
                continue
            if prepared[name] is None:
                # An older state without the part: the feature store starts empty; the
                # recommender keeps what it was built with (that state had none).
                if name == "features" and hasattr(obj, "install_columns"):
                    obj.install_columns(({}, 0))
                continue
            obj.install_columns(prepared[name])

    def _state_header(self) -> dict[str, Any]:
        """Everything but the pending decisions (call under the lock)."""
        ledger = self.ledger.state_dict()
        return {
            "format": ENGINE_FORMAT,
            "format_version": ENGINE_FORMAT_VERSION,
            "policy": self.policy.state_dict(),
            "counter": self._counter,
            "decided": ledger["decided"],
            "bought": ledger["bought"],
            "finalised": [[k, sorted(v)] for k, v in self._finalised.items()],
            "coupon_holds": ledger["coupon_holds"],
            "budget": None if self.budget is None else self.budget.state_dict(),
            "fairness": None if self.fairness is None else self.fairness.state_dict(),
            "caps": None if self.caps is None else self.caps.state_dict(),
            "stats": dict(self.stats),
            # absent when empty, so states without idempotency keys keep their bytes
            **({"requests": [e.to_row(k_) for k_, e in self._requests.items()]}
               if self._requests else {}),
            **({} if self.objective is None else {"objective_state": {
                "objective": self.objective.to_dict(),
                "floor": None if self._floor is None else self._floor.state_dict(),
                "returned": sorted(self._returned),
                "awaiting": [[k_, a.value, a.purchased, a.revenue, a.discount, a.defaulted]
                             for k_, a in self._awaiting.items()],
                "awaiting_due": [list(d) for d in self._awaiting_due]}}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a state_dict; checked before anything changes."""
        if not isinstance(state, dict) or state.get("format") != ENGINE_FORMAT:
            raise ValueError(f"state: expected a {ENGINE_FORMAT} state dict")
        if state.get("format_version") != ENGINE_FORMAT_VERSION:
            raise ValueError(f"format_version: this promobandit reads version "
                             f"{ENGINE_FORMAT_VERSION}, got {state.get('format_version')!r}")
        self.ledger.check_state_dict(state)
        for name, obj in (("budget", self.budget), ("fairness", self.fairness),
                          ("caps", self.caps)):
            if (state[name] is None) != (obj is None):
                raise ValueError(f"{name}: the saved engine and this one differ in whether "
                                 f"{name} is configured")
        try:
            pending = PendingStore.from_columns(state["pending"], state["pending"]["arrays"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"pending: unreadable pending decisions ({exc!r})") from exc
        obj_state = state.get("objective_state")
        if (obj_state is None) != (self.objective is None):
            raise ValueError("objective_state: the saved engine and this one differ in whether "
                             "a weighted objective is configured")
        awaiting: dict[str, _Awaiting] = {}
        if obj_state is not None:
            if obj_state.get("objective") != self.objective.to_dict():  # type: ignore[union-attr]
                raise ValueError("objective_state: saved with a different objective")
            try:
                ap = obj_state["awaiting_pending"]
                recs = {r.id: r for r in PendingStore.from_columns(ap, ap["arrays"])}
                for id_, value, bought, revenue, disc, dflt in obj_state["awaiting"]:
                    awaiting[id_] = _Awaiting(recs[id_], float(value), bool(bought),
                                              float(revenue), float(disc), bool(dflt))
                due = [(float(t_), str(i_)) for t_, i_ in obj_state["awaiting_due"]]
                returned = {str(r) for r in obj_state["returned"]}
                if (obj_state["floor"] is None) != (self._floor is None):
                    raise ValueError("floor: differs in whether a conversion floor is set")
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"objective_state: unreadable ({exc!r})") from exc
        try:
            if "requests" in state:
                requests = OrderedDict(_RequestKey.from_row(r) for r in state["requests"])
            else:
                # States written before keys outlived their pending decision kept the tag
                # on the pending record.
                requests = OrderedDict(
                    (r.request.partition("\0")[0], _RequestKey(
                        r.request, self._decision_of(r),
                        r.created + self.config.feedback_wait_seconds))
                    for r in pending if r.request)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"requests: unreadable idempotency keys ({exc!r})") from exc
        parts = self._prepare_parts(state)
        with self._lock:
            self._install_parts(parts)
            self._requests = requests
            self.policy.load_state_dict(state["policy"])
            self._counter = int(state["counter"])
            self.ledger.load_state_dict(state)
            self._pending = pending
            self._finalised = OrderedDict((k_, set(v)) for k_, v in state["finalised"])
            if self.budget is not None:
                self.budget.load_state_dict(state["budget"])
            if self.fairness is not None:
                self.fairness.load_state_dict(state["fairness"])
            if self.caps is not None:
                self.caps.load_state_dict(state["caps"])
            self.stats = dict(state["stats"])
            if obj_state is not None:
                self._awaiting = awaiting
                self._awaiting_due = due
                heapq.heapify(self._awaiting_due)
                self._returned = returned
                if self._floor is not None:
                    self._floor.load_state_dict(obj_state["floor"])
            self._explanations = {}  # explanations are not state: they end with a restart

    def capture_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A consistent copy of the state (JSON-able header, arrays), taken under the lock;
        encode it with encode_state outside the lock, so serving waits only for the copy."""
        with self._lock:
            s = self._state_header()
            meta, pending = self._pending.to_columns(len(self.catalogue))
            if self.objective is not None:
                ameta, aarrays = self._awaiting_columns()
                s["objective_state"]["awaiting_pending"] = ameta
            parts = self._part_columns()
        s["pending"] = meta
        arrays = {f"p_{k}": v for k, v in pending.items()}
        if self.objective is not None:
            arrays.update({f"a_{k}": v for k, v in aarrays.items()})
        for name, prefix in self._PARTS:
            cols = parts[name]
            s[name] = None if cols is None else cols[0]
            if cols is not None:
                arrays.update({f"{prefix}{k}": v for k, v in cols[1].items()})
        policy_arrays = s["policy"].pop("arrays")
        arrays.update({f"policy_{k}": v for k, v in policy_arrays.items()})
        return s, arrays

    @staticmethod
    def encode_state(captured: tuple[dict[str, Any], dict[str, np.ndarray]]) -> bytes:
        """The bytes of a captured state: the header's length (8 bytes, little-endian),
        the header as JSON, then the arrays as an .npz (no pickle)."""
        header, arrays = captured
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        h = json.dumps(header, allow_nan=True).encode()
        return len(h).to_bytes(8, "little") + h + buf.getvalue()

    def to_bytes(self) -> bytes:
        """The state as bytes (see encode_state)."""
        return self.encode_state(self.capture_state())

    def load_bytes(self, data: bytes) -> None:
        """Restores a state made by to_bytes; checked before anything changes."""
        if len(data) < 8:
            raise ValueError("state: truncated engine state")
        n = int.from_bytes(data[:8], "little")
        try:
            s = json.loads(data[8:8 + n])
            with np.load(io.BytesIO(data[8 + n:]), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            s["policy"]["arrays"] = {k[7:]: v for k, v in arrays.items()
                                     if k.startswith("policy_")}
            s["pending"]["arrays"] = {k[2:]: v for k, v in arrays.items() if k.startswith("p_")}
            if "objective_state" in s:
                s["objective_state"]["awaiting_pending"]["arrays"] = {
                    k[2:]: v for k, v in arrays.items() if k.startswith("a_")}
            for name, prefix in self._PARTS:
                if s.get(name) is not None:
                    s[name]["arrays"] = {k[len(prefix):]: v for k, v in arrays.items()
                                         if k.startswith(prefix)}
        except (ValueError, OSError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"state: unreadable engine state ({exc})") from exc
        self.load_state_dict(s)


def _log_cut(list_total: Any, paid: Any) -> Any:
    """log(list / paid), the log price cut (>= 0), 0 where the list total is 0; a paid
    total of 0 (a 100% discount) counts as a millionth of the list total."""
    lt = np.asarray(list_total, dtype=np.float64)
    pd = np.maximum(np.asarray(paid, dtype=np.float64), 1e-6 * lt)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = np.where(lt > 0.0, np.log(np.where(lt > 0.0, lt, 1.0) / np.where(pd > 0, pd, 1.0)),
                       0.0)
    return np.maximum(cut, 0.0)


__all__ = ["Decision", "Engine", "EngineConfig", "FeedbackResult"]
