"""Releases reservations past their expiry whose checkout is gone (ended without compensating,
or never recorded). A running checkout is left alone: its own compensation will release them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio.client import Client

from domains.inventory import service
from domains.inventory.models import ReservationStatus
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.settings import Settings
from workflows.checkout.client import CheckoutClient

log = get_logger(__name__)


async def sweep_once(db: DomainDatabase, client: Client, now: datetime | None = None) -> int:
    """One pass; returns how many checkouts had their reservations expired."""
    async with db.begin() as session:
        candidates = await service.expired_checkouts(session, now or datetime.now(UTC))
    expired = 0
    for checkout_id in candidates:
        if await CheckoutClient(client).is_running(checkout_id):
            continue
        async with db.begin() as session:
            released = await service.release(session, checkout_id, status=ReservationStatus.EXPIRED)
        if released:
            expired += 1
            log.warning("inventory.sweeper.expired", checkout_id=str(checkout_id), count=released)
    return expired


async def sweep_expired_reservations(
    db: DomainDatabase, client: Client, settings: Settings, stop: asyncio.Event
) -> None:
    """Sweep every `inventory_sweep_interval_s` until `stop` is set."""
    while not stop.is_set():
        try:
            await sweep_once(db, client)
        except Exception:
            log.exception("inventory.sweeper.failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.inventory_sweep_interval_s)
        except TimeoutError:
            pass
