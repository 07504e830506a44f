"""The coupons' activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid
from datetime import datetime

from activities.shared import ActivityName, MoneyValue, OrderRef, Payload, ReleaseInput


class ReserveCouponInput(Payload):
    """Hold one redemption of a coupon for a checkout."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    code: str
    subtotal: MoneyValue
    at: datetime


class CouponReservation(Payload):
    """The held redemption and the discount it grants."""

    redemption_id: uuid.UUID
    code: str
    discount: MoneyValue


RESERVE = ActivityName("coupons.reserve", ReserveCouponInput, CouponReservation)
RELEASE = ActivityName("coupons.release", ReleaseInput, bool)
CONFIRM = ActivityName("coupons.confirm", OrderRef, bool)
