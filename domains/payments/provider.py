"""What the payments domain needs from a payment provider, whichever provider it is.

The activities speak to a `PaymentProvider`; `domains/payments/stripe_provider.py` is the one
implementation today (the official `stripe` package). Another provider (Adyen, Braintree) is one
more class with these calls and the same three outcomes:

- an `Intent`: the provider's view of the payment after the call;
- `ProviderRejected`: a definite refusal (a declined card, an unknown payment method, an intent
  in the wrong state): the same request would be refused again;
- `ProviderUnavailable` (domains/payments/errors.py): no answer, or a transient one (timeout,
  connection, rate limit, 5xx, a concurrent request under the same key): retry with the same
  idempotency key;
- `ProviderMisuse`: the provider says the platform is wrong (an idempotency key reused for
  other parameters, a bad API key). A bug or a misconfiguration, never the customer's doing.

Amounts are `Money` going in; an `Intent` reports integers of minor units, as the provider keeps
them. Every mutating call takes an idempotency key derived from the checkout, so a retry after a
timeout replays the provider's answer instead of charging again. A provider forgets its keys
after a while (Stripe: 24 hours), so a retry days later first looks the intent up by checkout
(`find_intent`) rather than trust the key to prevent a second authorization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from domains.payments.statuses import RefundPurpose
from kit.money import Money

# What the platform writes in the metadata of every refund it makes: who made it, and why. A
# refund without it was made by someone else (in the provider's dashboard).
REFUNDED_BY, PLATFORM = "refunded_by", "platform"
PURPOSE = "purpose"
# Why (a `RefundPurpose`): a compensation (a checkout's or an order cancellation's: their owner
# sets the order's status), or an operator's retry of a failed refund or partial refund of an
# order, or a return (the order follows these like a dashboard one).
COMPENSATION, OPERATOR_RETRY = RefundPurpose.COMPENSATION.value, RefundPurpose.OPERATOR_RETRY.value
OPERATOR_REFUND, RETURN = RefundPurpose.OPERATOR_REFUND.value, RefundPurpose.RETURN.value
# The provider's codes (`ProviderRejected.code`) refusing a refund because less is left of the
# capture than it asks for: refunded in full already, or a refund larger than what is left (the
# provider counts refunds made in its dashboard that the platform may not have recorded yet).
NOTHING_LEFT_TO_REFUND = frozenset({"charge_already_refunded", "amount_too_large"})


@dataclass(frozen=True)
class Refund:
    """One refund of an intent's capture as the provider has it (a `RefundStatus` value)."""

    id: str
    amount: int
    currency: str
    status: str
    reason: str | None = None
    failure_reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def by_platform(self) -> bool:
        """Whether the platform made it (its metadata says so)."""
        return self.metadata.get(REFUNDED_BY) == PLATFORM

    @property
    def purpose(self) -> RefundPurpose:
        """Why it was made: what the platform's metadata says (a compensation when it says
        nothing else), `dashboard` for a refund the platform did not make."""
        if not self.by_platform:
            return RefundPurpose.DASHBOARD
        try:
            return RefundPurpose(self.metadata.get(PURPOSE, COMPENSATION))
        except ValueError:  # a word this release does not know: the platform made it all the same
            return RefundPurpose.COMPENSATION

    @property
    def compensation(self) -> bool:
        """Whether it gives back a checkout or a cancelled order (whose owner moves the order)."""
        return self.by_platform and self.metadata.get(PURPOSE, COMPENSATION) == COMPENSATION


@dataclass(frozen=True)
class Dispute:
    """A buyer's bank contesting an intent's capture (a `DisputeStatus` value); `evidence_due_by`
    is a Unix timestamp, as the provider reports it."""

    id: str
    intent_id: str
    amount: int
    currency: str
    reason: str
    status: str
    evidence_due_by: int | None


@dataclass(frozen=True)
class Intent:
    """The provider's view of a payment intent (Stripe's vocabulary, the lingua franca)."""

    id: str
    # One of statuses.INTENT_STATUSES (Stripe's seven): an implementation raises
    # UnknownIntentStatus rather than return another.
    status: str
    amount: int
    currency: str
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    # Where the customer completes a challenge (3-D Secure), while status is requires_action.
    redirect_url: str | None
    # Why it failed: the issuer's decline code when there is one, else the provider's code.
    last_error_code: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    # Every refund of the capture, whoever made it (the platform or someone in the dashboard).
    refunds: tuple[Refund, ...] = ()


class ProviderRejected(Exception):
    """A definite refusal: the request was understood and will be refused again.

    `code` is the provider's error code (`card_declined`, `resource_missing`, ...),
    `decline_code` the issuer's reason for a declined card (`insufficient_funds`), and `intent`
    the intent as it stands after the refusal when the provider reports one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int,
        decline_code: str | None = None,
        card_error: bool = False,
        intent: Intent | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.status = status
        self.decline_code = decline_code
        self.card_error = card_error
        self.intent = intent

    @property
    def reason(self) -> str:
        """The most specific reason: the decline code when there is one."""
        return self.decline_code or self.code


class ProviderMisuse(Exception):
    """The provider says the platform called it wrongly: a bug or a misconfiguration.

    Deliberately retryable (not a DomainError and not ProviderRejected): the activity keeps
    retrying, loudly logged and listed among stuck checkouts, until the code or the
    configuration is fixed; the checkout then carries on, charging nobody twice.
    """


class PaymentProvider(Protocol):
    """Manual-capture card payments: authorize, re-read, capture, cancel, refund."""

    name: str

    async def authorize(
        self, amount: Money, *, payment_method: str, metadata: dict[str, str], key: str
    ) -> Intent:
        """Create and confirm an intent for `amount`, to be captured later."""
        ...

    async def confirm(self, intent_id: str, *, payment_method: str, key: str) -> Intent:
        """Confirm the same intent again with another payment method (after a decline)."""
        ...

    async def retrieve(self, intent_id: str) -> Intent:
        """The intent as the provider has it now (never trust an event's copy)."""
        ...

    async def find_intent(self, checkout_id: str) -> Intent | None:
        """The intent made for a checkout (its `checkout_id` metadata), if any: how a retry
        after the provider forgot the idempotency key finds what an earlier attempt made."""
        ...

    async def capture(self, intent_id: str, *, key: str) -> Intent:
        """Capture everything the intent holds."""
        ...

    async def cancel(self, intent_id: str, *, key: str) -> Intent:
        """Release an authorization, or an intent still waiting for the customer."""
        ...

    async def refund(
        self, intent_id: str, *, amount: Money | None, key: str, purpose: str = COMPENSATION
    ) -> str:
        """Refund captured money; `amount=None` refunds whatever is left. The refund's id; its
        metadata says the platform made it, and why (`purpose`)."""
        ...

    async def retrieve_dispute(self, dispute_id: str) -> Dispute:
        """A dispute as the provider has it now."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
