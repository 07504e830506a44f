"""The sweeper frees reservations past their expiry whose checkout is gone, and only those."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from domains.inventory import service
from domains.inventory.models import InventoryReservation
from tests.platform import Platform
from workers.sweeper import sweep_once


async def _status(platform: Platform, checkout_id: uuid.UUID) -> str:
    async with platform.databases["inventory"].begin() as session:
        row = await session.scalar(
            select(InventoryReservation.status).where(
                InventoryReservation.checkout_id == checkout_id
            )
        )
        assert row is not None
        return row


async def test_sweeper_expires_orphans_and_spares_running_checkouts(platform: Platform) -> None:
    db = platform.databases["inventory"]
    variant = await platform.seed.variant(stock=5)
    # A running checkout (waiting for 3-D Secure) whose reservation we age artificially.
    _, running = await platform.checkout(token="tok_3ds")
    await platform.wait_status(running, "requires_action")
    running_id = uuid.UUID(running.id.removeprefix("checkout-"))
    orphan = uuid.uuid4()  # reserved, then its checkout vanished without compensating
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with db.begin() as session:
        await service.reserve(
            session, orphan, [service.Line(variant.product_id, variant.variant_id, 2)], past
        )
    async with db.begin() as session:
        for reservation in await session.scalars(
            select(InventoryReservation).where(InventoryReservation.checkout_id == running_id)
        ):
            reservation.expires_at = past

    expired = await sweep_once(db, platform.client)

    assert expired >= 1
    assert await _status(platform, orphan) == "expired"
    assert await _status(platform, running_id) == "active"
    async with db.begin() as session:
        item = await service.get_stock(session, variant.variant_id)
    assert (item.total_stock, item.reserved) == (5, 0)
    await running.signal("cancel")
    await running.result()
