"""The payments' activities as the workflows call them: names and payloads."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from activities.shared import ActivityName, CheckoutRef, MoneyValue, NextAction, Payload


class AuthorizeInput(Payload):
    """Authorize the order total with the provider (manual capture)."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    amount: MoneyValue
    provider: str
    token: str


class PaymentResult(Payload):
    """Where the payment stands after a call or a re-read."""

    status: str  # a domains.payments.models.PaymentStatus value
    intent_id: str | None = None
    next_action: NextAction | None = None
    # Why it failed, as the buyer may see it: a fraud-related decline (lost, stolen, fraudulent
    # card) is `generic_decline` here; the payment row keeps the issuer's own code.
    error_code: str | None = None
    # The sentence the buyer is shown when the payment failed ("Your card was declined.").
    message: str | None = None


class VoidResult(Payload):
    """What the payment compensation did."""

    action: Literal["nothing", "canceled", "refunded"]
    refunded: MoneyValue | None = None


class SettleInput(Payload):
    """A provider intent of a checkout that has ended, to be left holding nothing."""

    checkout_id: uuid.UUID
    intent_id: str
    # False when the checkout completed: its own captured payment pays its order and stays.
    refund_captured: bool = True


AUTHORIZE = ActivityName("payments.authorize", AuthorizeInput, PaymentResult)
REFRESH = ActivityName("payments.refresh", CheckoutRef, PaymentResult)
CAPTURE = ActivityName("payments.capture", CheckoutRef, PaymentResult)
VOID = ActivityName("payments.void", AuthorizeInput, VoidResult)
SETTLE_ENDED = ActivityName("payments.settle_ended", SettleInput, VoidResult)


class AfterSaleInput(Payload):
    """Provider events about a payment's money after the sale: refunds (the platform's or a
    dashboard's) and disputes. The intent, and each named dispute, is re-read from the provider."""

    checkout_id: uuid.UUID
    intent_id: str
    dispute_ids: list[str] = Field(default_factory=list)


class AfterSaleResult(Payload):
    """What the re-read changed: refunds new or moved, disputes new or moved, failed refunds
    now waiting for an operator."""

    refunds_changed: int = 0
    disputes_changed: int = 0
    refunds_failed: int = 0


class RetryRefundInput(Payload):
    """An operator's retry of a failed refund: the same amount, once more, to the same payment."""

    refund_id: uuid.UUID
    note: str | None = None


class RetryRefundResult(Payload):
    """The provider's id and status of the new refund."""

    provider_refund_id: str
    status: str


AFTER_SALE = ActivityName("payments.after_sale", AfterSaleInput, AfterSaleResult)
RETRY_REFUND = ActivityName("payments.retry_refund", RetryRefundInput, RetryRefundResult)
