"""What a rule can wait for besides a transition, and the conditions any rule can add.

A transition rule fires when an order or shipment enters a state. The kinds here fire
when *time passes* (``held``, ``promise_missed``, ``predicted_late``: the store keeps a
durable timer for them, ``core.timers`` decides when it is due and whether it still
holds) or when a carrier moves a delivery date later (``estimate_revised``).
``Conditions`` narrow any rule to some sources, carriers or order values. Validation
errors come out through ``rules._describe``, one line naming the rule and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from notifier.contracts.events import OrderEvent, OrderState
from notifier.core.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class RuleKind(StrEnum):
    """What makes a rule fire."""

    #: an order or shipment enters a state (``when: {state: [...]}``)
    TRANSITION = "transition"
    #: a state held longer than a duration, or past the end of the customer's day
    HELD = "held"
    #: the delivery date promised (plus a grace) passed without ``delivered``
    PROMISE_MISSED = "promise_missed"
    #: a shipment's estimated delivery moved later than the customer was told
    ESTIMATE_REVISED = "estimate_revised"
    #: a shipment still undelivered when its carrier has usually delivered by now, before
    #: the date promised (the transit model, ``core.transit``)
    PREDICTED_LATE = "predicted_late"


#: the kinds the store keeps a timer for
TIMED = frozenset({RuleKind.HELD, RuleKind.PROMISE_MISSED, RuleKind.PREDICTED_LATE})


class Audience(StrEnum):
    """Who a rule tells."""

    #: the order's customer, on the channels they can receive
    CUSTOMER = "customer"
    #: the operations team, at ``NOTIFIER_OPS_EMAIL`` by email
    OPS = "ops"


class HeldWhen(BaseModel):
    """``held: {state: [processing], for: 48h}`` or ``until: end_of_local_day``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    state: list[OrderState] = Field(min_length=1)
    for_: Duration | None = Field(default=None, alias="for")
    until: Literal["end_of_local_day"] | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> HeldWhen:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("give either for (a duration such as 48h) or until")
        return self


class PromiseMissedWhen(BaseModel):
    """``promise_missed: {grace: 12h}``."""

    model_config = ConfigDict(extra="forbid")

    grace: Duration = timedelta(0)


class PredictedLateWhen(BaseModel):
    """``predicted_late: {percentile: 90}``: warn once the carrier's usual transit time at
    that percentile has passed (the shipment is slower than ``percentile``% of those
    delivered before), if that comes before the promised date."""

    model_config = ConfigDict(extra="forbid")

    percentile: float = Field(default=90, gt=0, le=100)


class EstimateRevisedWhen(BaseModel):
    """``estimate_revised: {later: true}``: only a later date is news worth a message."""

    model_config = ConfigDict(extra="forbid")

    later: Literal[True]


class ValueRange(BaseModel):
    """``order_value: {min: 100, max: 500}``, either bound optional."""

    model_config = ConfigDict(extra="forbid")

    min: Decimal | None = None
    max: Decimal | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class ConditionsIn(BaseModel):
    """``conditions: {source: [...], carrier: [...], order_value: {...}}``."""

    model_config = ConfigDict(extra="forbid")

    source: list[str] | None = Field(default=None, min_length=1)
    carrier: list[str] | None = Field(default=None, min_length=1)
    order_value: ValueRange | None = None


@dataclass(frozen=True, slots=True)
class Conditions:
    """What an event must be for a rule to fire on it; empty: every event."""

    sources: frozenset[str] | None = None
    carriers: frozenset[str] | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None

    @classmethod
    def of(cls, parsed: ConditionsIn | None) -> Conditions:
        """From the validated rules-file block."""
        if parsed is None:
            return cls()
        value = parsed.order_value
        return cls(
            sources=frozenset(parsed.source) if parsed.source else None,
            carriers=frozenset(c.casefold() for c in parsed.carrier) if parsed.carrier else None,
            min_value=value.min if value else None,
            max_value=value.max if value else None,
        )

    def allow(self, event: OrderEvent) -> bool:
        """Whether ``event`` (the one the rule would speak of) meets every condition.

        A carrier condition needs a shipment event that names its carrier; a value
        condition needs ``attributes.order_value`` as a number: without them, no match.
        """
        if self.sources is not None and event.source not in self.sources:
            return False
        if self.carriers is not None:
            carrier = event.shipment.carrier if event.shipment else None
            if carrier is None or carrier.casefold() not in self.carriers:
                return False
        if self.min_value is None and self.max_value is None:
            return True
        value = order_value(event.attributes)
        if value is None:
            return False
        if self.min_value is not None and value < self.min_value:
            return False
        return self.max_value is None or value <= self.max_value


def order_value(attributes: dict[str, Any]) -> Decimal | None:
    """``attributes.order_value`` as a number (a JSON number or a numeric string)."""
    raw = attributes.get("order_value")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None
