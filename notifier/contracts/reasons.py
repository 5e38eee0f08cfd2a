"""Reason codes: why an order was cancelled or held, or why a delivery failed.

A publisher may send ``reason_code`` instead of (or with) the free-text ``reason``: a
code is translated by the templates into every shipped language, where free text
reaches a French customer in whatever language the shop typed it. Each state that
takes a reason has its own list, below and in the README; a code that is not on its
state's list is refused (a dead letter whose detail lists the valid codes), so a typo
is seen at once rather than shown to a customer as a raw code.

Adding a code is a line here and a label in every ``_layouts/reasons.<lang>.j2``;
``tests/unit/test_reasons.py`` fails until every shipped language has it.
"""

from __future__ import annotations

from collections.abc import Mapping

#: state → the codes it takes, each with what it means (the README's table)
REASON_CODES: Mapping[str, Mapping[str, str]] = {
    "cancelled": {
        "customer_request": "the customer asked for it",
        "out_of_stock": "an item could not be supplied",
        "payment_declined": "the payment was refused or not completed",
        "suspected_fraud": "the shop's fraud check refused the order",
        "address_unserviceable": "the shop cannot deliver to the address",
        "pricing_error": "the order was placed at a wrong price",
    },
    "on_hold": {
        "payment_review": "the payment is being verified",
        "identity_check": "the shop needs to confirm the customer's identity",
        "awaiting_stock": "waiting for an item to come back in stock",
        "address_check": "the delivery address needs confirming",
        "customer_request": "the customer asked to pause it",
    },
    "delivery_failed": {
        "recipient_absent": "nobody was there to receive it",
        "address_incomplete": "the address is incomplete or could not be found",
        "access_problem": "the carrier could not get to the door",
        "refused": "the parcel was refused at the door",
        "damaged": "the parcel was damaged in transit",
        "weather": "bad weather or another disruption stopped the delivery",
    },
}


def reason_code_problem(state: str, code: str) -> str | None:
    """Why ``code`` cannot go with ``state`` (naming the valid codes), or None."""
    codes = REASON_CODES.get(state)
    if codes is None:
        states = ", ".join(REASON_CODES)
        return f"state {state} takes no reason code (only {states} do)"
    if code not in codes:
        return f"not a reason code for {state}; valid codes: {', '.join(codes)}"
    return None


def all_reason_codes() -> tuple[str, ...]:
    """Every code of every state, without repeats, for the JSON Schema."""
    return tuple(dict.fromkeys(code for codes in REASON_CODES.values() for code in codes))
