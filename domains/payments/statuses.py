"""Where a payment and each provider call stand: plain enums the workflow and the API speak too,
and how each status of a provider's intent maps onto a payment's."""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    """Where a payment stands with the provider."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    VOIDED = "voided"
    REFUNDED = "refunded"


# The provider has not settled the authorization yet: the buyer acts, or the provider decides.
WAITING = frozenset({PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING})

# Every status of a provider's payment intent (Stripe's vocabulary, the interface's lingua
# franca), each mapped explicitly. A status outside this table is not guessed at: see
# UnknownIntentStatus.
INTENT_TO_PAYMENT: dict[str, PaymentStatus] = {
    # The platform confirms every intent at creation, so an intent back at
    # requires_payment_method was declined (or failed authentication): it holds nothing.
    "requires_payment_method": PaymentStatus.FAILED,
    # Created but never confirmed: nothing is authorized yet, nothing is held.
    "requires_confirmation": PaymentStatus.PENDING,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.PROCESSING,
    "requires_capture": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.CAPTURED,
    "canceled": PaymentStatus.VOIDED,
}
INTENT_STATUSES = frozenset(INTENT_TO_PAYMENT)


class TransactionType(StrEnum):
    """A single call against the provider."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


class TransactionStatus(StrEnum):
    """Outcome of one provider call."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
