"""Request and response models of the HTTP API (pydantic, strict).

Requests are strict: unknown fields, wrong types (a string for a number, a float or a
bool for an integer), non-finite numbers and values out of bounds are rejected with a 422
whose message names the field. The bounds come from ``[limits]`` of the configuration, so
the models are built per service by ``build_schemas``; a contextual policy's context must
have exactly ``policy.n_features`` values. Responses are documented with models too (the
OpenAPI document lists them) but written directly with orjson.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .config import LimitsConfig

# Item and category ids are int64 in the engine; money and ids stay exact in float64 below.
MAX_ID = 2**53
MAX_QUANTITY = 1_000_000
MAX_CATEGORY = 2**31 - 1
# Offer ids one request may exclude (a catalogue has a handful of offers).
MAX_EXCLUDED_OFFERS = 1024
# Largest item embedding accepted in POST /v1/items (the table's own dimension is checked).
MAX_EMBEDDING_DIM = 4096

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Decision(_Out):
    """One decision: send ``decision_id`` back with feedback."""

    decision_id: str
    offer: int = Field(description="arm index of the offer in GET /v1/offers")
    offer_id: str
    propensity: float | None = Field(description="probability of this offer under the "
                                     "policy (null when not estimated)")
    policy_version: int
    price: float = Field(description="what the shopper pays for the basket (currency)")
    discount_cost: float = Field(description="the discount if bought (currency; a "
                                 "coupon's face value)")
    items: list[int] | None = None
    item_probs: list[float] | None = None
    explanation: dict[str, Any] | None = Field(
        default=None, description="with \"explain\": true, why this offer: every offer's "
        "price, discount cost, eligibility with the rules that excluded it, the policy's mean, "
        "sd, sample and levers, and a one-sentence reason (promobandit.engine.explain)")


class ActivateResponse(_Out):
    """status: activated, duplicate (already active), late (already finalised: a deferred
    decision not activated within the wait was dropped) or unknown."""

    status: str
    decision_id: str


class ItemsResponse(_Out):
    """status: updated; items: the number of items in the table afterwards."""

    status: str
    items: int


class EventsResponse(_Out):
    """status: recorded; events: how many were added to the user's features."""

    status: str
    events: int


class DecideBatchResponse(_Out):
    decisions: list[Decision]


class FeedbackResponse(_Out):
    """status: applied, finalised, duplicate, late or unknown (see Engine.feedback)."""

    status: str
    decision_id: str
    reward: float | None = None


class ErrorResponse(_Out):
    """error: one line naming the field first; errors: every problem found."""

    error: str
    errors: list[dict[str, Any]] | None = None


class Health(_Out):
    status: str


class Readiness(_Out):
    status: str
    detail: dict[str, Any]


class Offers(_Out):
    currency: str
    minor_unit: float
    margin_floor: float
    offers: list[dict[str, Any]]


class PolicyReport(_Out):
    policy: dict[str, Any]
    offers: list[dict[str, Any]]
    engine: dict[str, Any]
    budget: dict[str, Any] | None
    fairness: dict[str, Any] | None
    storage: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Schemas:
    """The request models of one service (bounds from its configuration)."""

    BasketLine: type[BaseModel]
    Basket: type[BaseModel]
    Event: type[BaseModel]
    DecideRequest: type[BaseModel]
    DecideBatchRequest: type[BaseModel]
    FeedbackRequest: type[BaseModel]
    # feature parity (see the block at the end of build_schemas)
    ActivateRequest: type[BaseModel] | None = None
    EventsRequest: type[BaseModel] | None = None
    ItemsRequest: type[BaseModel] | None = None


def _check_cost_within_price(cls: Any, v: float, info: Any) -> float:
    """unit_cost at most the row's unit_price (a field validator of basket lines and item
    rows)."""
    price = info.data.get("unit_price")
    if price is not None and v > price:
        raise ValueError(f"expected at most unit_price ({price!r}), got {v!r}")
    return v


def build_schemas(limits: LimitsConfig, n_features: int | None) -> Schemas:
    """Request models bounded by ``limits``; ``n_features`` is the exact context length of
    a contextual policy (None: context is optional and ignored)."""
    money = limits.max_money
    id_len = limits.max_id_length
    ctx_min = n_features if n_features is not None else 1
    ctx_max = n_features if n_features is not None else limits.max_context
    feature = Annotated[float, Field(ge=-limits.max_abs_feature, le=limits.max_abs_feature)]

    class BasketLine(BaseModel):
        """One basket line (money in the catalogue's currency)."""

        model_config = STRICT
        item_id: int = Field(ge=0, le=MAX_ID)
        category: int = Field(ge=0, le=MAX_CATEGORY)
        unit_price: float = Field(ge=0.0, le=money)
        unit_cost: float = Field(ge=0.0, le=money, description="at most unit_price")
        quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)

        _cost_within_price = field_validator("unit_cost")(
            classmethod(_check_cost_within_price))

    class Basket(BaseModel):
        """The basket offers are priced on."""

        model_config = STRICT
        lines: list[BasketLine] = Field(min_length=1, max_length=limits.max_basket_lines)

    class Event(BaseModel):
        """A recent behaviour event of the user (for a service with a feature store)."""

        model_config = STRICT
        event: str = Field(min_length=1, max_length=32)
        category: int = Field(ge=0, le=MAX_CATEGORY)
        price: float = Field(ge=0.0, le=money)
        discount: float = Field(ge=0.0, le=1.0)
        timestamp: float = Field(ge=0.0)

    class DecideRequest(BaseModel):
        """One shopper request. ``user`` is pseudonymised on arrival and never stored."""

        model_config = STRICT
        user: str = Field(min_length=1, max_length=id_len)
        request_id: str | None = Field(
            default=None, min_length=1, max_length=id_len,
            description="optional idempotency key: a retry with the same body within "
                        "engine.feedback_wait_seconds of the decision (pending or "
                        "finalised) returns the same decision; another body under the "
                        "same key is a 409; after the wait the key is free again")
        context: list[feature] | None = Field(  # type: ignore[valid-type]
            default=None, min_length=ctx_min, max_length=ctx_max,
            description=(f"exactly {n_features} features, each within "
                         f"+-{limits.max_abs_feature:g} (the policy is contextual)"
                         if n_features is not None else
                         "ignored: the policy is not contextual"))
        events: list[Event] | None = Field(default=None, max_length=limits.max_events)
        k: int | None = Field(default=None, ge=1, le=limits.max_k)
        candidates: list[int] | None = Field(default=None, min_length=1,
                                             max_length=limits.max_candidates)
        basket: Basket | None = None
        group: str = Field(default="", max_length=id_len, description="fairness group")
        explain: bool = Field(default=False, description="return the decision's explanation "
                              "(computed from the state the decision used; costs only when on)")
        # --- feature parity: offer exclusions and deferred activation ---------------------
        exclude_offers: list[str] | None = Field(
            default=None, max_length=MAX_EXCLUDED_OFFERS,
            description="offer ids this request must not get (ids of GET /v1/offers)")
        defer_activation: bool = Field(
            default=False, description="decide now, learn only after POST /v1/activate "
            "confirms the offer was shown; without it within the feedback wait the decision "
            "is dropped (never learnt from; its budget reservation and cap slot released)")

        @field_validator("candidates")
        @classmethod
        def _candidate_ids(cls, v: list[int] | None) -> list[int] | None:
            if v is not None:
                for i, c in enumerate(v):
                    if not 0 <= c <= MAX_ID:
                        raise ValueError(f"expected item ids in [0, 2**53], got {c} at {i}")
            return v

    class DecideBatchRequest(BaseModel):
        """Several requests decided as one moment (see Engine.decide_batch)."""

        model_config = STRICT
        requests: list[DecideRequest] = Field(min_length=1, max_length=limits.max_batch)

    class FeedbackRequest(BaseModel):
        """What the shopper did after a decision (money in currency units)."""

        model_config = STRICT
        decision_id: str = Field(min_length=1, max_length=id_len)
        event_id: str = Field(min_length=1, max_length=id_len,
                              description="unique per event: a repeat changes nothing")
        clicked: bool = False
        purchased: bool = False
        revenue: float | None = Field(default=None, ge=0.0, le=money)
        cost_of_goods: float | None = Field(default=None, ge=0.0, le=money)
        discount: float | None = Field(default=None, ge=0.0, le=money)
        coupon_redeemed: bool = False
        item: int | None = Field(default=None, ge=0, le=MAX_ID)

    # --- feature parity: activation and events without a decision -----------------------
    class ActivateRequest(BaseModel):
        """Confirms that a decision made with ``defer_activation`` was shown."""

        model_config = STRICT
        decision_id: str = Field(min_length=1, max_length=id_len)

    class EventsRequest(BaseModel):
        """Behaviour events of a user that came without a decision (e.g. page views)."""

        model_config = STRICT
        user: str = Field(min_length=1, max_length=id_len)
        events: list[Event] = Field(min_length=1, max_length=limits.max_events)

    class ItemRow(BaseModel):
        """One row of the recommender's item table (money in currency units)."""

        model_config = STRICT
        item_id: int = Field(ge=0, le=MAX_ID, description="an existing id, or the next new one")
        embedding: list[float] = Field(min_length=1, max_length=MAX_EMBEDDING_DIM)
        category: int = Field(ge=0, le=MAX_CATEGORY)
        unit_price: float = Field(ge=0.0, le=money)
        unit_cost: float = Field(ge=0.0, le=money, description="at most unit_price")
        bias: float | None = Field(default=None, description="when the table has a bias")

        _cost_within_price = field_validator("unit_cost")(
            classmethod(_check_cost_within_price))

    class ItemsRequest(BaseModel):
        """Changes or appends rows of the item table (all or none)."""

        model_config = STRICT
        items: list[ItemRow] = Field(min_length=1, max_length=limits.max_candidates)

    return Schemas(BasketLine, Basket, Event, DecideRequest, DecideBatchRequest,
                   FeedbackRequest, ActivateRequest, EventsRequest, ItemsRequest)


__all__ = [
    "ActivateResponse",
    "DecideBatchResponse",
    "Decision",
    "ErrorResponse",
    "EventsResponse",
    "FeedbackResponse",
    "Health",
    "ItemsResponse",
    "Offers",
    "PolicyReport",
    "Readiness",
    "Schemas",
    "build_schemas",
]
