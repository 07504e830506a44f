"""Which event tells the buyer what, applied once, read through notifications' own event models."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from domains.notifications import reactions as r
from kit.consumer import EventConsumer, InvalidEvent, NotYet
from kit.db import DomainDatabase
from kit.subjects import EventName
from tests.domains.envelopes import consumer as make_consumer
from tests.domains.envelopes import envelope

CONSUMER = "notifications"


@pytest.fixture
def db(databases: dict[str, DomainDatabase]) -> DomainDatabase:
    return databases["notifications"]


@pytest.fixture
def consumer(db: DomainDatabase) -> EventConsumer:
    return make_consumer(CONSUMER, db, r.reactions)


async def _told(db: DomainDatabase, user_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    async with db.begin() as session:
        rows = await session.execute(
            text(
                "SELECT type, payload FROM notifications WHERE user_id = :u "
                "ORDER BY created_at, type"
            ),
            {"u": user_id},
        )
        return [(row.type, row.payload) for row in rows]


async def _in_inbox(db: DomainDatabase, event_id: uuid.UUID) -> bool:
    async with db.begin() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM consumer_inbox WHERE consumer = :c AND event_id = :e"),
            {"c": CONSUMER, "e": event_id},
        )
        return bool(found)


async def _known_order(consumer: EventConsumer) -> tuple[uuid.UUID, uuid.UUID]:
    """An order whose `order.created` was applied (producer's full payload, extras included)."""
    order_id, user_id = uuid.uuid4(), uuid.uuid4()
    created = {
        "order_id": str(order_id),
        "order_number": "ORD-100001",
        "checkout_id": str(uuid.uuid4()),
        "user_id": str(user_id),
        "total_amount": "42.00",
        "currency": "EUR",
    }
    assert await consumer.apply(envelope(r.ORDER_CREATED, created)) is True
    return order_id, user_id


def _payment(order_id: uuid.UUID) -> dict[str, Any]:
    return {
        "payment_id": str(uuid.uuid4()),
        "checkout_id": str(uuid.uuid4()),
        "order_id": str(order_id),
        "status": "captured",
        "amount": "42.00",
        "captured_amount": "42.00",
        "refunded_amount": "0.00",
        "currency": "EUR",
        "provider_payment_id": "pi_1",
        "error_code": None,
    }


def _shipment(order_id: uuid.UUID, status: str) -> dict[str, Any]:
    return {
        "shipment_id": str(uuid.uuid4()),
        "order_id": str(order_id),
        "checkout_id": str(uuid.uuid4()),
        "carrier": "sandbox",
        "tracking_number": "TRK-1",
        "status": status,
    }


async def test_a_paid_order_is_confirmed_to_its_buyer(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    order_id, user_id = uuid.uuid4(), uuid.uuid4()
    paid = {
        "order_id": str(order_id),
        "order_number": "ORD-100002",
        "user_id": str(user_id),
        "from_state": "pending_payment",
        "to_state": "paid",
        "reason": None,
    }

    assert await consumer.apply(envelope(r.ORDER_PAID, paid)) is True

    assert await _told(db, user_id) == [
        ("order_confirmed", {"order_id": str(order_id), "order_number": "ORD-100002"})
    ]


@pytest.mark.parametrize(
    ("name", "payload", "told"),
    [
        (
            r.PAYMENT_CAPTURED,
            _payment,
            lambda o: ("payment_captured", {"order_id": o, "amount": "42.00", "currency": "EUR"}),
        ),
        (
            r.SHIPMENT_CREATED,
            lambda o: _shipment(o, "label_created"),
            lambda o: (
                "shipment_created",
                {"order_id": o, "carrier": "sandbox", "tracking_number": "TRK-1"},
            ),
        ),
        (
            r.SHIPMENT_DELIVERED,
            lambda o: _shipment(o, "delivered"),
            lambda o: (
                "shipment_delivered",
                {"order_id": o, "carrier": "sandbox", "tracking_number": "TRK-1"},
            ),
        ),
    ],
    ids=["payment.captured", "shipment.created", "shipment.delivered"],
)
async def test_order_events_reach_the_buyer_learned_from_order_created(
    consumer: EventConsumer,
    db: DomainDatabase,
    name: EventName,
    payload: Any,
    told: Any,
) -> None:
    order_id, user_id = await _known_order(consumer)

    assert await consumer.apply(envelope(name, payload(order_id))) is True

    assert await _told(db, user_id) == [told(str(order_id))]


@pytest.mark.parametrize(
    ("name", "kind"),
    [(r.CHECKOUT_FAILED, "checkout_failed"), (r.CHECKOUT_EXPIRED, "checkout_expired")],
    ids=["failed", "expired"],
)
async def test_a_checkout_that_did_not_complete_is_explained(
    consumer: EventConsumer, db: DomainDatabase, name: EventName, kind: str
) -> None:
    checkout_id, user_id = uuid.uuid4(), uuid.uuid4()
    ended = {
        "checkout_id": str(checkout_id),
        "user_id": str(user_id),
        "status": name.event_type.removeprefix("checkout."),
        "order_id": None,
        "order_number": None,
        "failure_code": "card_declined",
    }

    assert await consumer.apply(envelope(name, ended)) is True

    assert await _told(db, user_id) == [
        (kind, {"checkout_id": str(checkout_id), "failure_code": "card_declined"})
    ]


async def test_a_payment_of_an_order_not_learned_yet_waits_and_applies_later(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    order_id, user_id = uuid.uuid4(), uuid.uuid4()
    captured = envelope(r.PAYMENT_CAPTURED, _payment(order_id))

    # Streams are consumed independently: the payment may come before `order.created`.
    with pytest.raises(NotYet):
        await consumer.apply(captured)
    assert not await _in_inbox(db, captured.id)  # rolled back: the redelivery is not a duplicate

    created = {"order_id": str(order_id), "user_id": str(user_id)}
    assert await consumer.apply(envelope(r.ORDER_CREATED, created)) is True
    assert await consumer.apply(captured) is True
    assert await consumer.apply(captured) is False

    assert [kind for kind, _ in await _told(db, user_id)] == ["payment_captured"]


async def test_an_event_missing_a_field_it_reads_is_rejected_before_the_database(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    order_id, user_id = await _known_order(consumer)
    shipment = _shipment(order_id, "label_created")
    del shipment["tracking_number"]
    broken = envelope(r.SHIPMENT_CREATED, shipment)

    with pytest.raises(InvalidEvent, match="tracking_number"):
        await consumer.apply(broken)

    assert not await _in_inbox(db, broken.id)
    assert await _told(db, user_id) == []


async def test_a_wrongly_typed_field_is_rejected(consumer: EventConsumer) -> None:
    paid = {"order_id": "not-a-uuid", "order_number": "ORD-1", "user_id": str(uuid.uuid4())}
    with pytest.raises(InvalidEvent, match="order_id"):
        await consumer.apply(envelope(r.ORDER_PAID, paid))


async def test_an_event_no_reaction_names_is_skipped(
    consumer: EventConsumer, db: DomainDatabase
) -> None:
    shipped = envelope(EventName("orders", "order", "order.shipped"), {"user_id": "x"})

    assert await consumer.apply(shipped) is False
    assert not await _in_inbox(db, shipped.id)
