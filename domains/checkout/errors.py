"""Checkout failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class CheckoutNotFound(NotFound):
    """No such checkout (or not the caller's)."""

    code = "checkout_not_found"


class IdempotencyKeyMismatch(DomainError):
    """The Idempotency-Key was used with another request body."""

    code = "idempotency_key_mismatch"


class AlreadyCaptured(Conflict):
    """The payment is captured: the checkout can no longer be cancelled."""

    code = "already_captured"
