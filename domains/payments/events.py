"""Events the payments domain publishes through its outbox."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import AliasChoices, BaseModel, Field

AGGREGATE = "payment"


class PaymentChanged(BaseModel):
    """`payment.<status>`: authorized, requires_action, captured, failed, voided, refunded.

    Read from the `Payment` row as it now is (`model_validate(row, from_attributes=True)`).
    """

    payment_id: uuid.UUID = Field(validation_alias=AliasChoices("payment_id", "id"))
    checkout_id: uuid.UUID
    order_id: uuid.UUID | None
    status: str
    amount: Decimal
    captured_amount: Decimal
    refunded_amount: Decimal
    currency: str
    provider_payment_id: str | None
    error_code: str | None = Field(
        default=None, validation_alias=AliasChoices("error_code", "last_error_code")
    )
