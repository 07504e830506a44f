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

from kit.money import Money


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

    async def refund(self, intent_id: str, *, amount: Money | None, key: str) -> None:
        """Refund captured money; `amount=None` refunds whatever is left."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
