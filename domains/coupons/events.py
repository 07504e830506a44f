"""Events the coupons domain publishes through its outbox."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import BaseModel

AGGREGATE = "coupon"


class RedemptionEvent(BaseModel):
    """`coupon.redemption_held`, `..._confirmed`, `..._released`."""

    coupon_id: uuid.UUID
    code: str
    redemption_id: uuid.UUID
    checkout_id: uuid.UUID
    user_id: uuid.UUID
    discount_amount: Decimal
    currency: str
    order_id: uuid.UUID | None = None
