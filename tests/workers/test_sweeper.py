"""The sweeper frees reservations past their expiry whose checkout is gone, and only those."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import Client

from domains.inventory import service
from domains.inventory.models import InventoryReservation
from kit.db import DomainDatabase
from tests.platform import Platform
from workers.sweeper import sweep_once
from workflows.checkout.contract import workflow_id


async def _status(db: DomainDatabase, checkout_id: uuid.UUID) -> str:
    async with db.begin() as session:
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
    assert await _status(db, orphan) == "expired"
    assert await _status(db, running_id) == "active"
    async with db.begin() as session:
        item = await service.get_stock(session, variant.variant_id)
    assert (item.total_stock, item.reserved) == (5, 0)
    await running.signal("cancel")
    await running.result()


async def test_a_page_of_running_checkouts_never_hides_an_ended_one(
    databases: dict[str, DomainDatabase], temporal_client: Client
) -> None:
    db = databases["inventory"]
    variant, product = uuid.uuid4(), uuid.uuid4()
    async with db.begin() as session:
        await service.set_stock(session, variant, product, 1000)
    # More running checkouts than a page, all ahead (in id order) of one that has ended.
    running = [uuid.UUID(f"00000000{uuid.uuid4().hex[8:]}") for _ in range(101)]
    ended = uuid.UUID(f"ffffffff{uuid.uuid4().hex[8:]}")
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with db.begin() as session:
        for checkout_id in [*running, ended]:
            await service.reserve(session, checkout_id, [service.Line(product, variant, 1)], past)
    # "Running" is all the sweeper asks Temporal: a workflow under the checkout's id that no
    # worker polls stays running until it is terminated.
    queue = f"sweeper-test-{uuid.uuid4().hex[:8]}"
    handles = await asyncio.gather(
        *(
            temporal_client.start_workflow(
                "Idle", id=workflow_id(c), task_queue=queue, execution_timeout=timedelta(minutes=5)
            )
            for c in running
        )
    )
    try:
        await sweep_once(db, temporal_client)

        assert await _status(db, ended) == "expired"
        assert {await _status(db, c) for c in running} == {"active"}
    finally:
        await asyncio.gather(*(h.terminate() for h in handles))
        async with db.begin() as session:
            for checkout_id in running:
                await service.release(session, checkout_id)
