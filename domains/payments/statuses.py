"""Where a payment and each provider call stand: plain enums the workflow and the API speak too."""

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
