"""The orders domain's reactions to other domains' events: the carrier's tracking moves the order,
and the payment's refunds reach it.

A shipment in transit makes the order `shipped`, a delivered one `delivered`. A refund's change
(the platform's or one made in the provider's dashboard) sets the order's `refunded_amount` to
what the payment's succeeded refunds add up to, and the order `partially_refunded` or `refunded`.
Each event is read into this domain's own model of it (only the fields used here; a domain imports
no other domain).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from domains.orders import service
from domains.orders.statuses import OrderStatus
from kit.consumer import Reactions
from kit.subjects import EventName

SHIPMENT_IN_TRANSIT = EventName("shipping", "shipment", "shipment.in_transit")
SHIPMENT_DELIVERED = EventName("shipping", "shipment", "shipment.delivered")

# Each refund status the payments domain reports; all carry the payment's refunded total.
REFUND_EVENTS = [
    EventName("payments", "payment", f"payment.refund_{status}")
    for status in ("pending", "succeeded", "failed", "canceled")
]

# Who moves the order, in its transition history.
REASON = "carrier"
REFUND_REASON = "provider_refund"


class ShipmentTracked(BaseModel):
    """`shipment.in_transit`, `shipment.delivered`, as far as orders reads them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    checkout_id: uuid.UUID


async def follow_parcel(session: AsyncSession, checkout_id: uuid.UUID, to: OrderStatus) -> None:
    """Move the checkout's order to `to` (shipped or delivered); a finished order stays put."""
    order = await service.order_for_checkout(session, checkout_id, lock=True)
    # Forward only: tracking may skip in_transit or arrive before the checkout marks the order
    # fulfilling; a cancelled or refunded order keeps its status (the parcel is recorded anyway).
    await service.advance(session, order, to, REASON)


# Registration order is subscription order: it fixes the durable consumer's subject filter.
reactions = Reactions()


@reactions.on(SHIPMENT_IN_TRANSIT, ShipmentTracked)
async def shipped(session: AsyncSession, event: ShipmentTracked) -> None:
    """The parcel left: the order is shipped."""
    await follow_parcel(session, event.checkout_id, OrderStatus.SHIPPED)


@reactions.on(SHIPMENT_DELIVERED, ShipmentTracked)
async def delivered(session: AsyncSession, event: ShipmentTracked) -> None:
    """The parcel arrived: the order is delivered."""
    await follow_parcel(session, event.checkout_id, OrderStatus.DELIVERED)


class RefundReported(BaseModel):
    """`payment.refund_<status>`, as far as orders reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    checkout_id: uuid.UUID
    refunded_total: Decimal
    # A checkout's or an order cancellation's own refund: they move the order's status.
    compensation: bool = False


async def refunds_changed(session: AsyncSession, event: RefundReported) -> None:
    """The order shows what went back to the buyer; its status follows refunds made after the
    sale (in the dashboard, or an operator's retry), not a compensation's."""
    await service.record_refunds(
        session,
        event.checkout_id,
        event.refunded_total,
        REFUND_REASON,
        move=not event.compensation,
    )


# A consumer of its own (its own durables): the tracking consumer's subject filters stay as
# deployed durables know them.
refund_reactions = Reactions()
for _name in REFUND_EVENTS:
    refund_reactions.on(_name, RefundReported)(refunds_changed)
