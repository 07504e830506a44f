"""Events the payments domain publishes through its outbox."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import BaseModel

AGGREGATE = "payment"


class PaymentChanged(BaseModel):
    """`payment.<status>`: authorized, requires_action, captured, failed, voided, refunded."""

    payment_id: uuid.UUID
    checkout_id: uuid.UUID
    order_id: uuid.UUID | None
    status: str
    amount: Decimal
    captured_amount: Decimal
    refunded_amount: Decimal
    currency: str
    provider_payment_id: str | None
    error_code: str | None = None
