"""Request bodies, what an operation answers, and the provider's object ids."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
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


class CreateIntentRequest(_Body):
    """`POST /v1/payment_intents`."""

    amount: Amount
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_lower=True)]
    token: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    capture_method: Literal["manual"] = "manual"
    metadata: Metadata = Field(default_factory=dict)
    # Stripe's parameters, as its SDKs send them: the sandbox always confirms at creation.
    confirm: Literal[True] = True
    payment_method_types: list[Literal["card"]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _payment_method_is_token(cls, data: Any) -> Any:
        """`payment_method` (Stripe's name, `pm_*`) is the sandbox's `token`; one of the two."""
        if isinstance(data, dict) and "payment_method" in data:
            if "token" in data:
                raise ValueError("give either token or payment_method, not both")
            data = {**data, "token": data["payment_method"]}
            del data["payment_method"]
        return data


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


class ShipmentRequest(_Body):
    """`POST /v1/carrier/shipments`; the address is kept as given (the sandbox ships nothing)."""

    reference: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    ship_to: Annotated[dict[str, JsonValue], Field(min_length=1)]


class EmptyRequest(_Body):
    """A POST that takes no parameters."""


@dataclass(frozen=True)
class Outcome:
    """What an executed operation answers; stored with its idempotency key when there is one."""

    status: int
    body: dict[str, Any]
