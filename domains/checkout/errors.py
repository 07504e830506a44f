"""Checkout failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class CheckoutNotFound(NotFound, code="checkout_not_found"):
    """No such checkout (or not the caller's)."""


class IdempotencyKeyMismatch(DomainError, code="idempotency_key_mismatch"):
    """The Idempotency-Key was used with another request body."""


class AlreadyCaptured(Conflict, code="already_captured"):
    """The payment is captured: the checkout can no longer be cancelled."""


class CheckoutHasEnded(Conflict, code="checkout_ended"):
    """The checkout has ended (or is giving back what it held): nothing more can be asked of it."""


class NotWaitingForOperator(Conflict, code="not_waiting_for_operator"):
    """The checkout is not waiting at `needs_attention`: there is nothing to retry or resolve."""


class NotAwaitingPaymentMethod(Conflict, code="checkout_not_awaiting_payment_method"):
    """The checkout is not at `requires_payment_method`: it takes no new payment method now."""
