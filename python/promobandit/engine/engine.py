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
import io
import json
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
from ._pending import PendingDecision, PendingStore
from .accounting import DiscountLedger
from .decision_log import DecisionLogWriter, DecisionRow

ENGINE_FORMAT = "promobandit.engine"
ENGINE_FORMAT_VERSION = 1
OBJECTIVES = ("profit", "revenue", "conversion")


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Settings of the engine (money in the catalogue's currency).

    objective: "profit" (paid - cost of goods; the default), "revenue" (paid) or
        "conversion" (1 for a purchase).
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
    seed: decision ids are derived from it and a counter.
    """

    objective: str = "profit"
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

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {OBJECTIVES}, got {self.objective!r}")
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
    """

    def __init__(self, catalogue: Catalogue, policy: Policy, config: EngineConfig | None = None,
                 *, privacy_key: bytes, features: Any = None, recommender: Any = None,
                 log_dir: str | None = None, log_flush_rows: int = 50_000) -> None:
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
        self._counter = 0
        self._lock = threading.RLock()
        self._id_key = hashlib.blake2b(self.config.seed.to_bytes(8, "little"),
                                       digest_size=16).digest()
        self._traits = policy.traits
        self._log_probs = (c.log_action_probs == "always"
                           or (c.log_action_probs == "auto" and self._traits.closed_form))
        self.stats = {"decisions": 0, "finalised": 0, "defaulted": 0, "late": 0, "duplicate": 0,
                      "unknown": 0, "purchases": 0, "coupons_redeemed": 0,
                      "log_write_errors": 0}

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
        empty = ~masks.any(axis=1)
        if empty.any():
            raise ValueError(f"basket: no offer is eligible for request {int(np.argmax(empty))} "
                             "(margin floor, caps or budget); include a no-discount offer in "
                             "the catalogue")
        metric = self.fairness.value(depth) if self.fairness is not None else depth
        return masks, bias, expected, metric

    def decide(self, user: Any, *, context: Any = None, events: Iterable[Any] | None = None,
               basket: Basket | None = None, candidates: Any = None, k: int | None = None,
               group: str = "", now: float | None = None,
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
                arm, prop = self.policy.select(x, masks[0], bias)
                probs = None
                if self._log_probs:
                    probs = self.policy.action_probabilities(
                        None if x is None else x[None], masks, 1, biases=biases)[0]
            except Exception:
                self._rollback(saved)
                raise
            d = self._commit(uh, group, x, arm, prop, probs, masks[0],
                             float(q.discount_cost[arm]), float(q.paid_total[arm]),
                             float(q.list_total), float(expected[0, arm]),
                             float(metric[0, arm]), self._cost_of_goods(basket), items,
                             item_probs, now, defer_activation=bool(defer_activation))
            if events:
                self._evict_users()
            return d

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

    def _commit(self, uh: str, group: str, x: np.ndarray | None, arm: int, prop: float,
                probs: np.ndarray | None, mask: np.ndarray, max_cost: float, paid_total: float,
                list_total: float, expected_cost: float, metric: float, cost_total: float,
                items: np.ndarray | None, item_probs: np.ndarray | None,
                now: float, defer_activation: bool = False) -> Decision:
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
            activated=not defer_activation, fair_metric=metric)
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
                     exclude_offers: Sequence[Sequence[str] | None] | None = None,
                     defer_activation: Sequence[bool] | None = None) -> list[Decision]:
        """Decisions for many requests at once (offline and batch serving).

        Equivalent to calling decide for each row in order with the same `now`, except
        that all rows are chosen from the policy state and budget multiplier at the
        start of the batch (a batch is one moment). Spend still never exceeds the
        budget: rows whose worst-case cost would no longer fit after the rows before
        them are decided again with those offers masked.

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
            arms, props = self.policy.select_batch(xs, masks, n, n_threads=n_threads,
                                                   biases=biases)
            probs = None
            if self._log_probs:
                probs = self.policy.action_probabilities(xs, masks, n, biases=biases)
            out = []
            for i in range(n):
                arm, prop = int(arms[i]), float(props[i])
                p_i = None if probs is None else probs[i]
                if self.budget is not None and costs[i, arm] > self.budget.remaining + 1e-9:
                    # Earlier rows of the batch used up the budget this offer needed (the
                    # pacer's own mask: offers that cost nothing always fit).
                    masks[i] &= self.budget.mask(now, costs[i])
                    x_i = None if xs is None else xs[i]
                    b_i = None if biases is None else biases[i]
                    arm, prop = self.policy.select(x_i, masks[i], b_i)
                    if p_i is not None:
                        p_i = self.policy.action_probabilities(
                            None if x_i is None else x_i[None], masks[i][None], 1,
                            biases=None if b_i is None else b_i[None])[0]
                out.append(self._commit(
                    uhs[i], groups[i], None if xs is None else xs[i], arm, prop,
                    p_i, masks[i], float(costs[i, arm]),
                    float(qb.paid_total[i, arm]), float(qb.list_total[i]),
                    float(expected[i, arm]), float(metric[i, arm]),
                    self._cost_of_goods(baskets[i]), None, None, now,
                    defer_activation=bool(defer_activation[i]) if defer_activation else False))
            return out

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
                 ended: bool = False, now: float | None = None) -> FeedbackResult:
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
        now: event time (unix seconds, default the clock).
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
        with self._lock:
            rec = self._pending.get(decision_id)
            if rec is None:
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
        scaled = value if self.config.objective == "conversion" else value / self.config.reward_scale
        scaled = self._traits.clip_reward(scaled)
        self.policy.update(rec.offer, scaled, rec.context)
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
        if self.log is not None:
            self._log_row(DecisionRow.finalised(
                rec, offer_id=self._offer_ids[rec.offer], policy=self.policy.name, reward=value,
                purchased=purchased, revenue=paid if purchased else 0.0, discount_cost=disc,
                defaulted=defaulted, feedback_at=now))
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
        wait = self.config.feedback_wait_seconds
        n = 0
        while (rec := self._pending.oldest()) is not None:
            if rec.created + wait > now:
                break
            self._finalise(rec, now, purchased=False, defaulted=not rec.events)
            n += 1
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
            parts = self._part_columns()
        s["pending"] = {**meta, "arrays": arrays}
        for name, cols in parts.items():
            s[name] = None if cols is None else {**cols[0], "arrays": cols[1]}
        return s

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
        parts = self._prepare_parts(state)
        with self._lock:
            self._install_parts(parts)
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

    def capture_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A consistent copy of the state (JSON-able header, arrays), taken under the lock;
        encode it with encode_state outside the lock, so serving waits only for the copy."""
        with self._lock:
            s = self._state_header()
            meta, pending = self._pending.to_columns(len(self.catalogue))
            parts = self._part_columns()
        s["pending"] = meta
        arrays = {f"p_{k}": v for k, v in pending.items()}
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
            for name, prefix in self._PARTS:
                if s.get(name) is not None:
                    s[name]["arrays"] = {k[len(prefix):]: v for k, v in arrays.items()
                                         if k.startswith(prefix)}
        except (ValueError, OSError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"state: unreadable engine state ({exc})") from exc
        self.load_state_dict(s)


__all__ = ["Decision", "Engine", "EngineConfig", "FeedbackResult"]
