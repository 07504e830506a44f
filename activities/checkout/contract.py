"""The checkout's own record as the workflow writes it: names and payloads.

`CheckoutStatusBody` is the `GET /v1/checkouts/{id}` body, the workflow's `status` query and
what the checkout database keeps of a session.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from pydantic import Field

from activities.shared import ActivityName, NextAction, Payload
from domains.checkout.statuses import FailureCode


class SessionRecord(Protocol):
    """What the checkout database keeps of a session's status body (its columns)."""

    id: uuid.UUID
    status: str
    step: str
    order_id: uuid.UUID | None
    order_number: str | None
    total_amount: Decimal | None
    currency: str | None
    payment_status: str | None
    next_action: dict[str, Any] | None
    payment_error: dict[str, Any] | None
    failure_code: str | None
    failure_message: str | None
    completed_at: datetime | None


class OrderSummary(Payload):
    """The order part of the status body."""

    id: uuid.UUID
    order_number: str
    total_amount: Decimal
    currency: str


class PaymentError(Payload):
    """Why the last payment method was declined, as the buyer may see it: a decline that says
    something about fraud (a lost or stolen card) is a generic decline here."""

    code: str
    decline_code: str | None = None
    message: str


class PaymentSummary(Payload):
    """The payment part of the status body."""

    status: str
    next_action: NextAction | None = None
    # Set while the checkout waits at `requires_payment_method` (and kept if it then ends).
    last_error: PaymentError | None = None


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

    @classmethod
    def of_record(cls, row: SessionRecord) -> CheckoutStatusBody:
        """The status body as the checkout database last recorded it."""
        order = None
        if row.order_id and row.order_number and row.total_amount is not None and row.currency:
            order = OrderSummary(
                id=row.order_id,
                order_number=row.order_number,
                total_amount=row.total_amount,
                currency=row.currency,
            )
        payment = None
        if row.payment_status:
            action = NextAction(**row.next_action) if row.next_action else None
            error = PaymentError(**row.payment_error) if row.payment_error else None
            payment = PaymentSummary(
                status=row.payment_status, next_action=action, last_error=error
            )
        failure = None
        if row.failure_code:
            failure = Failure(code=FailureCode(row.failure_code), message=row.failure_message or "")
        return cls(
            checkout_id=row.id,
            status=row.status,
            step=row.step,
            order=order,
            payment=payment,
            failure=failure,
        )


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
    # The operator's note when a checkout that waited at needs_attention was settled by hand.
    note: str | None = None
    # When each step in `steps` started (workflow time): a step recorded only once it has ended
    # still shows when it began. Empty from runs that record every step as it starts.
    started_at: dict[str, datetime] = Field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """The session columns the status body fills."""
        order, payment, failure = self.body.order, self.body.payment, self.body.failure
        noted = {"resolution_note": self.note} if self.note is not None else {}
        return noted | {
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
            "payment_error": payment.last_error.model_dump()
            if payment and payment.last_error
            else None,
            "failure_code": failure.code.value if failure else None,
            "failure_message": failure.message if failure else None,
        }


class OpenedSession(Payload):
    """The recorded session: `ended` is its recorded outcome once the checkout has ended."""

    ended: CheckoutStatusBody | None = None


# Histories recorded before `OpenedSession` hold `null` here: the workflow reads it as optional.
OPEN_SESSION = ActivityName("checkout.open_session", OpenSessionInput, OpenedSession)
RECORD_PROGRESS = ActivityName("checkout.record_progress", ProgressInput, type(None))
