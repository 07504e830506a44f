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
    # A buyer's bank contests the capture (a chargeback); see DisputeStatus for how it ends.
    DISPUTED = "disputed"


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


class RefundStatus(StrEnum):
    """Where one refund stands with the provider (Stripe's refund statuses)."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# A refund's status never goes back from these (an older re-read cannot undo a newer one).
REFUND_FINAL = frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED})


class RefundRequestStatus(StrEnum):
    """Where a refund the platform was asked for stands before the provider has it: recorded
    (its amount held against the capture), sent (the provider's refund says the rest), or
    rejected by the provider (nothing was refunded)."""

    REQUESTED = "requested"
    SENT = "sent"
    REJECTED = "rejected"


class RefundOrigin(StrEnum):
    """Who made a refund: the platform itself, or someone in the provider's dashboard."""

    PLATFORM = "platform"
    DASHBOARD = "dashboard"


class RefundPurpose(StrEnum):
    """Why a refund was made, and so who settles it when it fails. The platform writes the same
    word in the provider's metadata of each refund it makes; a refund without it was made in the
    provider's dashboard."""

    # A checkout's or an order cancellation's own refund (their workflow moves the order).
    COMPENSATION = "compensation"
    # An operator's retry of a failed refund (`POST /v1/ops/refunds/{id}/retry`).
    OPERATOR_RETRY = "operator_retry"
    # An operator's partial refund of an order (`POST /v1/ops/orders/{id}/refunds`).
    OPERATOR_REFUND = "operator_refund"
    # A return's refund: its return asks again itself when it fails.
    RETURN = "return"
    DASHBOARD = "dashboard"


# What a refund request (domains/payments/refunds.py) is asked for: the purposes that record one.
REQUEST_PURPOSES = (RefundPurpose.OPERATOR_REFUND, RefundPurpose.RETURN)


class RefundResolution(StrEnum):
    """How an operator settled a failed refund."""

    RETRIED = "retried"
    RESOLVED = "resolved"


class DisputeStatus(StrEnum):
    """Where a dispute (chargeback) stands (Stripe's dispute statuses)."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    PREVENTED = "prevented"


# A closed dispute: the money stays with the merchant (won, prevented, warning closed) or the buyer.
DISPUTE_CLOSED = frozenset(
    {
        DisputeStatus.WON,
        DisputeStatus.LOST,
        DisputeStatus.PREVENTED,
        DisputeStatus.WARNING_CLOSED,
    }
)
