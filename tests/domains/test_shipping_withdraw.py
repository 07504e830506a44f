"""Withdrawing a shipment before pickup, against tracking events that race it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from domains.shipping import service
from domains.shipping.errors import ParcelWithCarrier
from domains.shipping.models import Shipment
from domains.shipping.statuses import ShipmentStatus
from kit.db import DomainDatabase

CARRIER = "easypost"


@pytest.fixture
def db(databases: dict[str, DomainDatabase]) -> DomainDatabase:
    return databases["shipping"]


async def _shipment(db: DomainDatabase) -> tuple[uuid.UUID, str]:
    """A booked shipment (label bought, not picked up): its order id and carrier id."""
    order_id, carrier_id = uuid.uuid4(), f"shp_{uuid.uuid4().hex}"
    async with db.begin() as session:
        session.add(
            Shipment(
                id=uuid.uuid4(),
                order_id=order_id,
                checkout_id=uuid.uuid4(),
                carrier=CARRIER,
                tracking_number=f"TRK{uuid.uuid4().hex[:16]}",
                status=ShipmentStatus.LABEL_CREATED.value,
                carrier_shipment_id=carrier_id,
                ship_to={"country": "US"},
            )
        )
    return order_id, carrier_id


async def _track(db: DomainDatabase, carrier_id: str, status: ShipmentStatus) -> bool:
    async with db.begin() as session:
        return await service.record_tracking(
            session,
            carrier=CARRIER,
            carrier_shipment_id=carrier_id,
            provider_event_id=f"evt_{uuid.uuid4().hex}",
            status=status,
            occurred_at=datetime.now(UTC),
        )


async def _state(db: DomainDatabase, order_id: uuid.UUID) -> tuple[str, list[str]]:
    """The shipment's status and the events it announced, in order."""
    async with db.begin() as session:
        shipment = await service.shipment_for_order(session, order_id)
        assert shipment is not None
        events = await session.scalars(
            text(
                "SELECT event_type FROM domain_outbox_events WHERE aggregate_id = :s ORDER BY seq"
            ),
            {"s": shipment.id},
        )
        return shipment.status, list(events)


async def test_a_tracking_event_after_the_withdrawal_moves_nothing(db: DomainDatabase) -> None:
    order_id, carrier_id = await _shipment(db)
    async with db.begin() as session:
        withdrawn = await service.withdraw(session, order_id)
    assert withdrawn is not None
    assert withdrawn.status == "cancelled"

    assert await _track(db, carrier_id, ShipmentStatus.IN_TRANSIT)  # recorded, not applied
    assert await _state(db, order_id) == ("cancelled", ["shipment.cancelled"])
    async with db.begin() as session:  # withdrawing again answers the same shipment
        again = await service.withdraw(session, order_id)
    assert again is not None
    assert again.id == withdrawn.id
    assert await _state(db, order_id) == ("cancelled", ["shipment.cancelled"])


async def test_a_parcel_in_transit_cannot_be_withdrawn(db: DomainDatabase) -> None:
    order_id, carrier_id = await _shipment(db)
    await _track(db, carrier_id, ShipmentStatus.IN_TRANSIT)

    with pytest.raises(ParcelWithCarrier):
        async with db.begin() as session:
            await service.withdraw(session, order_id)
    assert await _state(db, order_id) == ("in_transit", ["shipment.in_transit"])


async def test_a_refused_void_restores_what_tracking_reached(db: DomainDatabase) -> None:
    """The carrier had the parcel before its tracking reached us: the shipment takes the status
    tracking recorded meanwhile, and announces it so that the order follows."""
    order_id, carrier_id = await _shipment(db)
    async with db.begin() as session:
        withdrawn = await service.withdraw(session, order_id)
    assert withdrawn is not None
    await _track(db, carrier_id, ShipmentStatus.IN_TRANSIT)

    async with db.begin() as session:
        restored = await service.restore_withdrawn(session, withdrawn.id)
    assert restored == ShipmentStatus.IN_TRANSIT
    async with db.begin() as session:
        shipment = await service.shipment_for_order(session, order_id)
        assert shipment is not None
        assert shipment.shipped_at is not None
    assert await _state(db, order_id) == (
        "in_transit",
        ["shipment.cancelled", "shipment.in_transit"],
    )


async def test_a_refused_void_without_tracking_restores_the_label(db: DomainDatabase) -> None:
    order_id, _ = await _shipment(db)
    async with db.begin() as session:
        withdrawn = await service.withdraw(session, order_id)
    assert withdrawn is not None
    async with db.begin() as session:
        restored = await service.restore_withdrawn(session, withdrawn.id)
    assert restored == ShipmentStatus.LABEL_CREATED
    assert (await _state(db, order_id))[0] == "label_created"
