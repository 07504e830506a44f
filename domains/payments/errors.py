"""Payment failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class PaymentNotFound(NotFound, code="payment_not_found"):
    """The checkout has no payment."""


class PaymentDeclined(DomainError, code="payment_declined", http_status=402):
    """The provider refused the authorization or the capture."""


class IdempotencyKeyReused(Conflict, code="idempotency_key_reused"):
    """The same idempotency key was used for a different request; nothing was sent."""


class ProviderUnavailable(Exception):
    """The provider failed or did not answer in time: retry with the same idempotency key.

    Deliberately not a DomainError: it is transient, and activities leave it to Temporal's retry.
    """
