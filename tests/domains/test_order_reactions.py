"""The carrier's tracking moves the order along, once per event, read through orders' own model."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from domains.orders import reactions as r
from domains.orders import service
from domains.orders.errors import OrderNotFound
from domains.orders.statuses import OrderStatus
from kit.consumer import Envelope, EventConsumer, InvalidEvent
from kit.db import DomainDatabase
from kit.money import Money
from kit.subjects import EventName
from tests.domains.envelopes import consumer as make_consumer
from tests.domains.envelopes import envelope

CONSUMER = "order-tracking"


@pytest.fixture
def db(databases: dict[str, DomainDatabase]) -> DomainDatabase:
    return databases["orders"]


@pytest.fixture
def consumer(db: DomainDatabase) -> EventConsumer:
    return make_consumer(CONSUMER, db, r.reactions)


async def _order(db: DomainDatabase, *moves: OrderStatus) -> uuid.UUID:
    """A new order moved through `moves`; its checkout id."""
    checkout_id = uuid.uuid4()
    price = Money.of(Decimal("10.00"), "EUR")
    line = service.NewOrderLine(uuid.uuid4(), uuid.uuid4(), "SKU-1", 1, price)
    spec = service.NewOrder(
        checkout_id=checkout_id,
        user_id=uuid.uuid4(),
        lines=[line],
        subtotal=price,
        discount=Money.zero("EUR"),
        total=price,
        coupon_code=None,
        shipping_address={"line1": "1 Test Street", "city": "Testville", "country": "DE"},
        billing_address=None,
    )
    async with db.begin() as session:
        await service.create_order(session, spec)
        for status in moves:
            await service.transition_checkout_order(session, checkout_id, status, "test")
    return checkout_id


async def _history(db: DomainDatabase, checkout_id: uuid.UUID) -> tuple[str, list[str]]:
    """The order's status and the events it published, in publication order."""
    async with db.begin() as session:
        order = await service.order_for_checkout(session, checkout_id)
        events = await session.scalars(
            text(
                "SELECT event_type FROM domain_outbox_events WHERE aggregate_id = :o ORDER BY seq"
            ),
            {"o": order.id},
        )
        return order.status, list(events)


def _tracked(name: EventName, checkout_id: uuid.UUID) -> dict[str, str]:
    """The shipping domain's payload (more than orders reads)."""
    return {
        "shipment_id": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "checkout_id": str(checkout_id),
        "carrier": "sandbox",
        "tracking_number": "TRK-1",
        "status": name.event_type.removeprefix("shipment."),
    }


def _event(name: EventName, checkout_id: uuid.UUID) -> Envelope:
    """A fresh tracking event of the checkout's shipment."""
    return envelope(name, _tracked(name, checkout_id))


async def test_a_delivered_parcel_moves_a_fulfilling_order_through_shipped_once(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    checkout_id = await _order(db, OrderStatus.PAID, OrderStatus.FULFILLING)
    delivered = _event(r.SHIPMENT_DELIVERED, checkout_id)

    assert await consumer.apply(delivered) is True
    assert await consumer.apply(delivered) is False  # redelivered: the inbox has it
    # The same fact again under another id (a carrier retry): the order is already there.
    again = _event(r.SHIPMENT_DELIVERED, checkout_id)
    assert await consumer.apply(again) is True

    assert await _history(db, checkout_id) == (
        "delivered",
        ["order.created", "order.paid", "order.fulfilling", "order.shipped", "order.delivered"],
    )


async def test_in_transit_ships_the_order_and_a_late_one_changes_nothing(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    checkout_id = await _order(db, OrderStatus.PAID, OrderStatus.FULFILLING)

    await consumer.apply(_event(r.SHIPMENT_IN_TRANSIT, checkout_id))
    assert (await _history(db, checkout_id))[0] == "shipped"
    await consumer.apply(_event(r.SHIPMENT_DELIVERED, checkout_id))
    await consumer.apply(_event(r.SHIPMENT_IN_TRANSIT, checkout_id))

    assert await _history(db, checkout_id) == (
        "delivered",
        ["order.created", "order.paid", "order.fulfilling", "order.shipped", "order.delivered"],
    )


async def test_a_tracking_event_without_its_checkout_is_rejected(consumer: EventConsumer) -> None:
    payload = _tracked(r.SHIPMENT_DELIVERED, uuid.uuid4())
    del payload["checkout_id"]

    with pytest.raises(InvalidEvent, match="checkout_id"):
        await consumer.apply(envelope(r.SHIPMENT_DELIVERED, payload))


async def test_tracking_of_an_unknown_order_fails_and_is_not_recorded(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    lost = _event(r.SHIPMENT_IN_TRANSIT, uuid.uuid4())

    with pytest.raises(OrderNotFound):
        await consumer.apply(lost)

    async with db.begin() as session:
        recorded = await session.scalar(
            text("SELECT count(*) FROM consumer_inbox WHERE consumer = :c AND event_id = :e"),
            {"c": CONSUMER, "e": lost.id},
        )
    assert recorded == 0  # rolled back with the failure: a redelivery tries again
