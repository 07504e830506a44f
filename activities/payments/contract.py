"""The payments' activities as the workflows call them: names and payloads."""

from __future__ import annotations

import uuid
from typing import Literal

from activities.shared import ActivityName, CheckoutRef, MoneyValue, NextAction, Payload


class AuthorizeInput(Payload):
    """Authorize the order total with the provider (manual capture)."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    amount: MoneyValue
    provider: str
    token: str
    # The checkout takes another method after a decline (`on_decline: retry`): its undo also
    # cancels an intent left declined, which could otherwise still be confirmed later.
    cancel_declined: bool = False


class ConfirmInput(Payload):
    """Confirm the checkout's intent again with another payment method, after a decline."""

    checkout_id: uuid.UUID
    # 1 for the first new method after the authorization, then 2, 3...: each attempt has its
    # own idempotency key, `<checkout_id>:confirm:<attempt>`.
    attempt: int
    payment_method: str


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
    # The kind of failure the buyer is shown (`card_declined`, or
    # `payment_intent_authentication_failure` for a failed 3-D Secure challenge); `error_code`
    # then says more when it differs (the issuer's decline code, generic for fraud).
    error_type: str | None = None


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
CONFIRM = ActivityName("payments.confirm", ConfirmInput, PaymentResult)
CAPTURE = ActivityName("payments.capture", CheckoutRef, PaymentResult)
VOID = ActivityName("payments.void", AuthorizeInput, VoidResult)
SETTLE_ENDED = ActivityName("payments.settle_ended", SettleInput, VoidResult)
