"""Releases reservations past their expiry whose checkout is gone (ended without compensating,
or never recorded). A running checkout is left alone: its own compensation will release them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from temporalio.client import Client

from domains.inventory import service
from domains.inventory.models import ReservationStatus
from kit.db import DomainDatabase
from kit.logging import get_logger
from kit.settings import Settings
from workers.periodic import run_every
from workflows.checkout.client import CheckoutClient

log = get_logger(__name__)

# Candidates read per query: a page's checkouts are each looked up in Temporal before the next.
PAGE = 100


async def sweep_once(
    db: DomainDatabase, client: Client, now: datetime | None = None, page: int = PAGE
) -> int:
    """One pass over every candidate; returns how many checkouts had their reservations expired.

    Candidates come in pages behind a keyset cursor (the last checkout id seen), so the running
    checkouts skipped on one page never hide the candidates after them.
    """
    at = now or datetime.now(UTC)
    checkouts = CheckoutClient(client)
    expired = 0
    after: uuid.UUID | None = None
    while True:
        async with db.begin() as session:
            candidates = await service.expired_checkouts(session, at, after=after, limit=page)
        for checkout_id in candidates:
            if await checkouts.is_running(checkout_id):
                continue
            async with db.begin() as session:
                released = await service.release(
                    session, checkout_id, status=ReservationStatus.EXPIRED
                )
            if released:
                expired += 1
                log.warning(
                    "inventory.sweeper.expired", checkout_id=str(checkout_id), count=released
                )
        if len(candidates) < page:
            return expired
        after = candidates[-1]


async def sweep_expired_reservations(
    db: DomainDatabase, client: Client, settings: Settings, stop: asyncio.Event
) -> None:
    """Sweep every `settings.inventory.sweep_interval_s` until `stop` is set."""
    interval_s = settings.inventory.sweep_interval_s
    await run_every("inventory.sweeper", interval_s, stop, lambda: sweep_once(db, client))
