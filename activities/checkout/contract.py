"""The checkout's own record as the workflow writes it: names and payloads.

`CheckoutStatusBody` is the `GET /v1/checkouts/{id}` body, the workflow's `status` query and
what the checkout database keeps of a session.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from activities.shared import ActivityName, NextAction, Payload
from domains.checkout.statuses import FailureCode


class OrderSummary(Payload):
    """The order part of the status body."""

    id: uuid.UUID
    order_number: str
    total_amount: Decimal
    currency: str


class PaymentSummary(Payload):
    """The payment part of the status body."""

    status: str
    next_action: NextAction | None = None


class Failure(Payload):
    """Why a checkout ended without an order."""

    code: FailureCode
    message: str


class CheckoutStatusBody(Payload):
    """The `GET /v1/checkouts/{id}` body, also the workflow's `status` query."""

    checkout_id: uuid.UUID
    status: str
    step: str
    order: OrderSummary | None = None
    payment: PaymentSummary | None = None
    failure: Failure | None = None


class OpenSessionInput(Payload):
    """Record the checkout session (idempotent)."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    cart_id: uuid.UUID
    idempotency_key: str
    request_hash: str


class ProgressInput(Payload):
    """Steps that moved (name -> started/completed/failed/compensated) and the status body now."""

    checkout_id: uuid.UUID
    steps: dict[str, str]
    error_code: str | None = None
    body: CheckoutStatusBody

    def details(self) -> dict[str, Any]:
        """The session columns the status body fills."""
        order, payment, failure = self.body.order, self.body.payment, self.body.failure
        return {
            "status": self.body.status,
            "step": self.body.step,
            "order_id": order.id if order else None,
            "order_number": order.order_number if order else None,
            "total_amount": order.total_amount if order else None,
            "currency": order.currency if order else None,
            "payment_status": payment.status if payment else None,
            "next_action": payment.next_action.model_dump()
            if payment and payment.next_action
            else None,
            "failure_code": failure.code.value if failure else None,
            "failure_message": failure.message if failure else None,
        }


OPEN_SESSION = ActivityName("checkout.open_session", OpenSessionInput, type(None))
RECORD_PROGRESS = ActivityName("checkout.record_progress", ProgressInput, type(None))
