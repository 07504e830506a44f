"""The checkout workflow's input, its signals' payloads and its answer (the status body)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from activities.checkout.contract import (
    CheckoutStatusBody,
    Failure,
    OrderSummary,
    PaymentSummary,
)
from activities.shared import Address, NextAction, Payload

__all__ = [
    "Address",
    "CheckoutInput",
    "CheckoutStatusBody",
    "Failure",
    "NextAction",
    "OrderSummary",
    "PaymentEvent",
    "PaymentSummary",
]


class CheckoutInput(Payload):
    """Everything a checkout needs to run; fixed when it starts."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    cart_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    coupon_code: str | None = None
    shipping_address: Address
    billing_address: Address | None = None
    payment_provider: Literal["sandbox"] = "sandbox"
    payment_token: str
    payment_timeout_s: int = Field(default=900, gt=0)


class PaymentEvent(Payload):
    """The provider's event as signalled to the workflow (`payment_event`)."""

    id: str
    type: str
    intent: str
