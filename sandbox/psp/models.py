"""Request bodies, what an operation answers, and the provider's object ids."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

# Stripe's own limits, so a client that passes here also passes against the real provider.
MAX_AMOUNT = 99_999_999
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=50)]
Amount = Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT)]


def new_id(prefix: str) -> str:
    """A Stripe-looking object id: `<prefix>_<24 hex>`."""
    return f"{prefix}_{secrets.token_hex(12)}"


class _Body(BaseModel):
    # Unknown parameters are refused, as Stripe does: a typo must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


PaymentMethodName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class CreateIntentRequest(_Body):
    """`POST /v1/payment_intents`.

    `payment_method` is Stripe's parameter (`pm_*`, or a `tok_*` alias); `token` is the sandbox's
    older name for it, still accepted. One of the two, and errors name the one the caller used.
    """

    amount: Amount
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_lower=True)]
    payment_method: PaymentMethodName | None = None
    token: PaymentMethodName | None = None
    capture_method: Literal["manual"] = "manual"
    metadata: Metadata = Field(default_factory=dict)
    # Stripe's parameters, as its SDKs send them: the sandbox always confirms at creation.
    confirm: Literal[True] = True
    payment_method_types: list[Literal["card"]] | None = None
    # Where Stripe sends the buyer back after a redirect (3-D Secure). Validated and accepted;
    # the sandbox's challenge page shows its outcome instead of redirecting.
    return_url: (
        Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)] | None
    ) = None

    @model_validator(mode="after")
    def _not_both(self) -> CreateIntentRequest:
        if self.payment_method is not None and self.token is not None:
            raise ValueError("give either payment_method or token, not both")
        return self

    @property
    def method(self) -> str | None:
        """The payment method (or token) the caller named, None when neither."""
        return self.token if self.payment_method is None else self.payment_method

    @property
    def method_param(self) -> str:
        """The parameter that named it: `token` only when the caller used that legacy name."""
        return "token" if self.token is not None else "payment_method"


class ConfirmIntentRequest(_Body):
    """`POST /v1/payment_intents/{id}/confirm`: try the intent again, with another payment
    method after a decline (without one, the method it has)."""

    payment_method: PaymentMethodName | None = None
    # As at creation: accepted, the sandbox's challenge page shows the outcome instead.
    return_url: (
        Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)] | None
    ) = None


class CaptureRequest(_Body):
    """`POST /v1/payment_intents/{id}/capture`; without an amount the whole capturable amount."""

    amount_to_capture: Amount | None = None


class CancelRequest(_Body):
    """`POST /v1/payment_intents/{id}/cancel`; the reason is accepted for Stripe compatibility."""

    cancellation_reason: (
        Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None
    ) = None


class RefundRequest(_Body):
    """`POST /v1/refunds`; without an amount whatever is left to refund."""

    payment_intent: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)


# The textual evidence Stripe takes on a dispute (its file fields are not simulated).
EvidenceField = Literal[
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
]


class DisputeUpdateRequest(_Body):
    """`POST /v1/disputes/{id}`: evidence, staged or submitted to the bank (the default).

    As in Stripe test mode, `uncategorized_text` `winning_evidence` or `losing_evidence` decides
    a submitted dispute at once (won or lost); other evidence leaves it `under_review`.
    """

    evidence: dict[EvidenceField, Annotated[str, StringConstraints(max_length=150_000)]] = Field(
        default_factory=dict
    )
    metadata: Metadata = Field(default_factory=dict)
    submit: bool = True


class EmptyRequest(_Body):
    """A POST that takes no parameters."""


@dataclass(frozen=True)
class Outcome:
    """What an executed operation answers; stored with its idempotency key when there is one."""

    status: int
    body: dict[str, Any]
