"""What the buyer is told, and when: the notifications domain's reactions to other domains' events.

Each event is read into this domain's own model of it: the fields used here, anything else the
producer sends ignored. The producers' models stay theirs (a domain imports no other domain);
`tests/domains/test_event_contracts.py` holds the two sides together.

Payment and shipment events name the order, not the buyer: `order.created` teaches who an order
belongs to, and an event about an order not learned yet waits (`NotYet`: redelivered later).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from domains.notifications import service
from kit.consumer import NotYet, Reaction, Reactions
from kit.money import Money
from kit.subjects import EventName


class NotificationKind(StrEnum):
    """What a notification tells the buyer (its `type`)."""

    ORDER_CONFIRMED = "order_confirmed"
    PAYMENT_CAPTURED = "payment_captured"
    SHIPMENT_CREATED = "shipment_created"
    SHIPMENT_DELIVERED = "shipment_delivered"
    CHECKOUT_FAILED = "checkout_failed"
    CHECKOUT_EXPIRED = "checkout_expired"
    ORDER_PARTIALLY_REFUNDED = "order_partially_refunded"
    ORDER_REFUNDED = "order_refunded"
    ORDER_CANCELLED = "order_cancelled"
    # To the operators (OPERATORS), not a buyer: a buyer's bank disputes a payment.
    PAYMENT_DISPUTED = "payment_disputed"
    # A return of some of an order's units, at each step the buyer cares about.
    RETURN_REQUESTED = "return_requested"
    RETURN_APPROVED = "return_approved"
    RETURN_REJECTED = "return_rejected"
    RETURN_RECEIVED = "return_received"
    RETURN_REFUNDED = "return_refunded"
    # To the operators: a return's step failed for good and waits for them.
    RETURN_NEEDS_ATTENTION = "return_needs_attention"


# An order's status until its checkout captured the payment.
UNPAID = "pending_payment"

# The recipient of notifications meant for the shop's operators (the nil UUID: no buyer has it).
OPERATORS = uuid.UUID(int=0)


ORDER_CREATED = EventName("orders", "order", "order.created")
ORDER_PAID = EventName("orders", "order", "order.paid")
PAYMENT_CAPTURED = EventName("payments", "payment", "payment.captured")
SHIPMENT_CREATED = EventName("shipping", "shipment", "shipment.created")
SHIPMENT_DELIVERED = EventName("shipping", "shipment", "shipment.delivered")
CHECKOUT_FAILED = EventName("checkout", "checkout", "checkout.failed")
CHECKOUT_EXPIRED = EventName("checkout", "checkout", "checkout.expired")
ORDER_PARTIALLY_REFUNDED = EventName("orders", "order", "order.partially_refunded")
ORDER_REFUNDED = EventName("orders", "order", "order.refunded")
ORDER_CANCELLED = EventName("orders", "order", "order.cancelled")
DISPUTE_OPENED = EventName("payments", "payment", "payment.dispute_opened")


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderCreated(_Read):
    """`order.created`, as far as notifications reads it."""

    order_id: uuid.UUID
    user_id: uuid.UUID


class OrderPaid(_Read):
    """`order.paid`."""

    order_id: uuid.UUID
    order_number: str
    user_id: uuid.UUID


class PaymentCaptured(_Read):
    """`payment.captured`."""

    order_id: uuid.UUID
    captured_amount: Decimal
    currency: str


class ShipmentChanged(_Read):
    """`shipment.created`, `shipment.delivered`."""

    order_id: uuid.UUID
    carrier: str
    tracking_number: str


class CheckoutEnded(_Read):
    """`checkout.failed`, `checkout.expired`."""

    checkout_id: uuid.UUID
    user_id: uuid.UUID
    failure_code: str | None


# Registration order is subscription order: it fixes each durable consumer's subject filter.
reactions = Reactions()


@reactions.on(ORDER_CREATED, OrderCreated)
async def learn_buyer(session: AsyncSession, event: OrderCreated) -> None:
    """Remember who the order belongs to."""
    await service.remember_recipient(session, event.order_id, event.user_id)


@reactions.on(ORDER_PAID, OrderPaid)
async def order_confirmed(session: AsyncSession, event: OrderPaid) -> None:
    """The order is paid: confirm it."""
    body = {"order_id": str(event.order_id), "order_number": event.order_number}
    await service.notify(session, event.user_id, NotificationKind.ORDER_CONFIRMED, body)


async def _buyer(session: AsyncSession, order_id: uuid.UUID) -> uuid.UUID:
    user_id = await service.recipient(session, order_id)
    if user_id is None:
        raise NotYet(f"order {order_id} not known yet")
    return user_id


@reactions.on(PAYMENT_CAPTURED, PaymentCaptured)
async def payment_captured(session: AsyncSession, event: PaymentCaptured) -> None:
    """The money was taken: say how much."""
    body = {
        "order_id": str(event.order_id),
        "amount": str(event.captured_amount),
        "currency": event.currency,
    }
    user_id = await _buyer(session, event.order_id)
    await service.notify(session, user_id, NotificationKind.PAYMENT_CAPTURED, body)


def _parcel_notice(kind: NotificationKind) -> Reaction[ShipmentChanged]:
    """Tell the buyer about their parcel (`kind`): the carrier and tracking number."""

    async def notify(session: AsyncSession, event: ShipmentChanged) -> None:
        body = {
            "order_id": str(event.order_id),
            "carrier": event.carrier,
            "tracking_number": event.tracking_number,
        }
        await service.notify(session, await _buyer(session, event.order_id), kind, body)

    return notify


def _no_order_notice(kind: NotificationKind) -> Reaction[CheckoutEnded]:
    """Tell the buyer their checkout ended without an order (`kind`), and why."""

    async def notify(session: AsyncSession, event: CheckoutEnded) -> None:
        body = {"checkout_id": str(event.checkout_id), "failure_code": event.failure_code}
        await service.notify(session, event.user_id, kind, body)

    return notify


# A parcel is on its way, then it arrived.
reactions.on(SHIPMENT_CREATED, ShipmentChanged)(_parcel_notice(NotificationKind.SHIPMENT_CREATED))
reactions.on(SHIPMENT_DELIVERED, ShipmentChanged)(
    _parcel_notice(NotificationKind.SHIPMENT_DELIVERED)
)
# The checkout failed, or it ran out of time.
reactions.on(CHECKOUT_FAILED, CheckoutEnded)(_no_order_notice(NotificationKind.CHECKOUT_FAILED))
reactions.on(CHECKOUT_EXPIRED, CheckoutEnded)(_no_order_notice(NotificationKind.CHECKOUT_EXPIRED))


class OrderRefunded(_Read):
    """`order.partially_refunded`, `order.refunded`, `order.cancelled` (events published before
    the order's amounts travelled with them have none)."""

    order_id: uuid.UUID
    order_number: str
    user_id: uuid.UUID
    from_state: str | None = None
    reason: str | None = None
    total_amount: Decimal | None = None
    refunded_amount: Decimal | None = None
    currency: str | None = None


def _amounts(event: OrderRefunded) -> dict[str, str]:
    """What went back and what the order came to, at the currency's minor unit."""
    if event.currency is None or event.refunded_amount is None or event.total_amount is None:
        return {}
    shown = {
        "refunded_amount": Money.rounded(event.refunded_amount, event.currency).amount,
        "total_amount": Money.rounded(event.total_amount, event.currency).amount,
    }
    return {**{k: str(v) for k, v in shown.items()}, "currency": event.currency}


def _refund_notice(kind: NotificationKind) -> Reaction[OrderRefunded]:
    """Tell the buyer money went back to them (`kind`: in part, or all of it): how much in all,
    of what total."""

    async def notify(session: AsyncSession, event: OrderRefunded) -> None:
        body = {
            "order_id": str(event.order_id),
            "order_number": event.order_number,
            **_amounts(event),
        }
        await service.notify(session, event.user_id, kind, body)

    return notify


async def order_cancelled(session: AsyncSession, event: OrderRefunded) -> None:
    """Tell the buyer their paid order is cancelled (by them or an operator), its payment
    refunded. An order cancelled before it was paid belongs to a checkout that failed or expired:
    the buyer is told of that instead (`checkout_failed`, `checkout_expired`)."""
    if event.from_state in (None, UNPAID):
        return
    body = {
        "order_id": str(event.order_id),
        "order_number": event.order_number,
        "reason": event.reason,
        **_amounts(event),
    }
    await service.notify(session, event.user_id, NotificationKind.ORDER_CANCELLED, body)


# Money after the sale has a consumer of its own (its own durables): the first consumer's
# subject filters stay as deployed durables know them.
after_sale_reactions = Reactions()
after_sale_reactions.on(ORDER_PARTIALLY_REFUNDED, OrderRefunded)(
    _refund_notice(NotificationKind.ORDER_PARTIALLY_REFUNDED)
)
after_sale_reactions.on(ORDER_REFUNDED, OrderRefunded)(
    _refund_notice(NotificationKind.ORDER_REFUNDED)
)


class DisputeOpened(_Read):
    """`payment.dispute_opened`."""

    order_id: uuid.UUID | None
    provider_dispute_id: str
    amount: Decimal
    currency: str
    reason: str
    evidence_due_by: datetime | None


@after_sale_reactions.on(DISPUTE_OPENED, DisputeOpened)
async def payment_disputed(session: AsyncSession, event: DisputeOpened) -> None:
    """Tell the operators: a dispute has a deadline for the shop's evidence."""
    body = {
        "order_id": str(event.order_id) if event.order_id else None,
        "dispute": event.provider_dispute_id,
        "amount": str(event.amount),
        "currency": event.currency,
        "reason": event.reason,
        "evidence_due_by": event.evidence_due_by.isoformat() if event.evidence_due_by else None,
    }
    await service.notify(session, OPERATORS, NotificationKind.PAYMENT_DISPUTED, body)


# Cancelled orders came later still: a consumer of its own, so the durables above keep theirs.
cancellation_reactions = Reactions()
cancellation_reactions.on(ORDER_CANCELLED, OrderRefunded)(order_cancelled)


class ReturnChanged(_Read):
    """`return.<status>`, as far as notifications reads it."""

    return_id: uuid.UUID
    order_id: uuid.UUID
    order_number: str
    user_id: uuid.UUID
    to_state: str
    refund_amount: Decimal
    currency: str


def _return_notice(
    kind: NotificationKind, *, to_operators: bool = False
) -> Reaction[ReturnChanged]:
    """Tell the buyer (or the operators) where a return stands: `kind`, and its refund."""

    async def notify(session: AsyncSession, event: ReturnChanged) -> None:
        body = {
            "return_id": str(event.return_id),
            "order_id": str(event.order_id),
            "order_number": event.order_number,
            "refund_amount": str(Money.rounded(event.refund_amount, event.currency).amount),
            "currency": event.currency,
        }
        recipient = OPERATORS if to_operators else event.user_id
        await service.notify(session, recipient, kind, body)

    return notify


# Returns came later still: a consumer of their own, so the durables above keep theirs.
return_reactions = Reactions()
for _status, _kind in (
    ("requested", NotificationKind.RETURN_REQUESTED),
    ("approved", NotificationKind.RETURN_APPROVED),
    ("rejected", NotificationKind.RETURN_REJECTED),
    ("received", NotificationKind.RETURN_RECEIVED),
    ("refunded", NotificationKind.RETURN_REFUNDED),
):
    return_reactions.on(EventName("orders", "order_return", f"return.{_status}"), ReturnChanged)(
        _return_notice(_kind)
    )
return_reactions.on(EventName("orders", "order_return", "return.needs_attention"), ReturnChanged)(
    _return_notice(NotificationKind.RETURN_NEEDS_ATTENTION, to_operators=True)
)
