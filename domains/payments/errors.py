"""Payment failures with stable codes."""

from __future__ import annotations

from kit.errors import Conflict, DomainError, NotFound


class PaymentNotFound(NotFound, code="payment_not_found"):
    """The checkout has no payment."""


class PaymentDeclined(DomainError, code="payment_declined", http_status=402):
    """The provider refused the authorization or the capture."""


class AmountBelowMinimum(DomainError, code="amount_below_minimum"):
    """The total is below the smallest amount the provider charges in its currency; nothing
    was sent (domains/payments/minimums.py)."""


class IdempotencyKeyReused(Conflict, code="idempotency_key_reused"):
    """The same idempotency key was used for a different request; nothing was sent."""


class TaxUnavailable(DomainError, code="tax_unavailable", http_status=503):
    """The tax could not be calculated (the service is down, or refused the request): with
    TAX_ON_FAILURE=fail the checkout ends here, before anything is held."""


class TaxNotRecorded(Conflict, code="tax_not_recorded"):
    """A reversal of tax that was never recorded as a transaction (not captured yet)."""


class TaxAlreadyRecorded(Conflict, code="tax_already_recorded"):
    """A new calculation for a checkout whose tax is already recorded as a transaction."""


class TaxReversalTooLarge(DomainError, code="tax_reversal_too_large"):
    """A reversal of more than remains of a line or of the shipping, or of a line the
    checkout does not have; nothing was sent."""


class ProviderUnavailable(Exception):
    """The provider failed or did not answer in time: retry with the same idempotency key.

    Deliberately not a DomainError: it is transient, and activities leave it to Temporal's retry.
    """


class UnknownIntentStatus(ProviderUnavailable):
    """The provider reported an intent status the platform does not know (a new API version, a
    provider's bug). Never read as some other status: the call fails, is retried like an outage,
    and the payments worker counts it (`payments_unknown_intent_status`) until the mapping in
    domains/payments/statuses.py learns it.
    """

    def __init__(self, status: str, intent_id: str) -> None:
        super().__init__(f"intent {intent_id} has a status the platform does not know: {status!r}")
        self.status = status
        self.intent_id = intent_id


class RefundNotFound(NotFound, code="refund_not_found"):
    """No refund with this id."""


class RefundNotFailed(Conflict, code="refund_not_failed"):
    """Only a failed refund that no operator has settled yet can be retried or resolved."""


class RefundOwnedByReturn(Conflict, code="refund_owned_by_return"):
    """The failed refund is a return's: retry it on the return (`/v1/ops/returns/{id}/retry`),
    which asks the provider again itself; retrying it here as well could give the money back
    twice."""

    public_details = ("return_id",)


class RefundExceedsCaptured(DomainError, code="refund_exceeds_captured"):
    """A refund of more than is left of the capture (captured, less what was refunded and what
    refunds still pending hold); nothing was recorded or sent."""


class PaymentNotCaptured(Conflict, code="payment_not_captured"):
    """A refund of an order whose payment has captured nothing (yet); nothing was recorded."""


class RefundCurrencyMismatch(DomainError, code="refund_currency_mismatch"):
    """A refund in another currency than the payment's; nothing was recorded."""
