"""The checkout workflow's input, its signals' payloads and its answer (the status body)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from activities.checkout.contract import (
    CheckoutStatusBody,
    Failure,
    OrderSummary,
    PaymentError,
    PaymentSummary,
)
from activities.shared import Address, MoneyValue, NextAction, Payload

__all__ = [
    "Address",
    "Attention",
    "CheckoutInput",
    "CheckoutStatusBody",
    "Failure",
    "MoneyOutcome",
    "NewPaymentMethod",
    "NextAction",
    "OperatorCancelResult",
    "OrderSummary",
    "PaymentError",
    "PaymentEvent",
    "PaymentSummary",
    "Resolution",
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
    # Which PaymentProvider pays (domains/payments/provider.py); "sandbox" is what checkouts
    # started before Stripe's SDK was the client carry: the same provider, under its old name.
    payment_provider: Literal["stripe", "sandbox"] = "stripe"
    # The payment method (`pm_*`, or a `tok_*` alias); named "token" in recorded histories.
    payment_token: str
    payment_timeout_s: int = Field(default=900, gt=0)
    # While waiting for the provider, the intent is re-read this often even without an event:
    # a checkout never depends on one webhook arriving.
    payment_recheck_s: int = Field(default=30, gt=0)
    # What a declined card does: "fail" ends the checkout `failed` (and is what runs started
    # before this field existed do); "retry" waits at `requires_payment_method` for another
    # payment method (`retry_payment`) until the payment window ends.
    on_decline: Literal["fail", "retry"] = "fail"
    # The shipping rate the buyer chose (a quote of `POST /v1/carts/{id}/shipping-rates`,
    # checked by the API before the start) and its price, charged as the order's shipping; the
    # shipment buys that rate. None: shipping is free to the buyer, the cheapest service bought.
    shipping_rate_id: uuid.UUID | None = None
    shipping: MoneyValue | None = None
    # Whether the checkout is taxed (TAX_PROVIDER is not `none` where it started): the tax is
    # calculated before the authorization and recorded after the capture. Runs started before
    # it existed carry False: their totals are what they were.
    tax: bool = False


class NewPaymentMethod(Payload):
    """The buyer's next payment method after a decline (the `retry_payment` update)."""

    payment_method: str = Field(min_length=1, max_length=255)


class PaymentEvent(Payload):
    """The provider's event as signalled to the workflow (`payment_event`)."""

    id: str
    type: str
    intent: str


class FailedCompensation(Payload):
    """A compensation that failed for good, and the error it failed with."""

    name: str
    error: str


class Attention(Payload):
    """Why a checkout waits at `needs_attention`: what could not be given back on its own."""

    since: datetime
    failed: list[FailedCompensation]


class Resolution(Payload):
    """An operator's record that a checkout waiting for attention was settled by hand."""

    note: str = Field(min_length=1, max_length=1000)


class MoneyOutcome(StrEnum):
    """What an operator's cancel did to the buyer's money."""

    REFUNDED = "refunded"  # the capture was refunded in full
    VOIDED = "voided"  # the authorization was released; nothing had been captured
    NOTHING_TO_REFUND = "nothing_to_refund"  # no money was held (a zero total, no payment yet)
    # Giving the money back failed for good: the checkout waits at needs_attention.
    NEEDS_ATTENTION = "needs_attention"


class OperatorCancelResult(Payload):
    """The answer to an operator's cancel, once the payment's compensation has run."""

    status: str
    money: MoneyOutcome
