"""Inboxes are pruned: consumer inboxes and the webhook inbox lose rows past their retention, in
batches, from the worker processes, and keep every row a redelivery could still need."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import text

from kit.db import DomainDatabase
from kit.settings import Settings
from workers.bootstrap import prune_inboxes
from workers.periodic import run_every


async def _inbox_rows(db: DomainDatabase, consumer: str, *ages: timedelta) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in ages]
    async with db.begin() as session:
        for event_id, age in zip(ids, ages, strict=True):
            await session.execute(
                text(
                    "INSERT INTO consumer_inbox (consumer, event_id, received_at) "
                    "VALUES (:c, :e, now() - CAST(:age AS interval))"
                ),
                {"c": consumer, "e": event_id, "age": age},
            )
    return ids


async def _inbox_left(db: DomainDatabase, consumer: str) -> set[uuid.UUID]:
    async with db.begin() as session:
        rows = await session.scalars(
            text("SELECT event_id FROM consumer_inbox WHERE consumer = :c"), {"c": consumer}
        )
        return set(rows)


async def test_consumer_inboxes_lose_rows_past_the_retention_and_keep_the_rest(
    databases: dict[str, DomainDatabase], settings: Settings
) -> None:
    retention = settings.consumer.inbox_retention
    for domain in ("notifications", "orders"):
        db = databases[domain]
        consumer = f"test-prune-{uuid.uuid4().hex[:8]}"
        old = retention + timedelta(hours=1)
        recent = retention - timedelta(hours=1)
        # More old rows than a batch: the pass goes on until a short batch.
        expired = await _inbox_rows(db, consumer, *[old] * 5)
        kept = await _inbox_rows(db, consumer, recent, timedelta(0))

        deleted = await prune_inboxes(domain, db, settings, batch=2)

        assert deleted >= len(expired)
        assert await _inbox_left(db, consumer) == set(kept)


async def test_the_webhook_inbox_keeps_rows_as_long_as_the_provider_may_redeliver(
    databases: dict[str, DomainDatabase], settings: Settings
) -> None:
    db = databases["payments"]
    retention = settings.stripe.webhook_retention
    assert retention >= timedelta(days=3)  # Stripe and Standard Webhooks retry for ~3 days
    ages = {
        f"msg_old_{uuid.uuid4().hex}": retention + timedelta(minutes=1),
        f"msg_recent_{uuid.uuid4().hex}": retention - timedelta(minutes=1),
    }
    async with db.begin() as session:
        for webhook_id, age in ages.items():
            await session.execute(
                text(
                    "INSERT INTO payment_webhook_events "
                    "(id, provider, webhook_id, event_type, payload, received_at) "
                    "VALUES (:id, 'test', :w, 'payment_intent.succeeded', '{}', "
                    "now() - CAST(:age AS interval))"
                ),
                {"id": uuid.uuid4(), "w": webhook_id, "age": age},
            )

    assert await prune_inboxes("payments", db, settings) >= 1

    async with db.begin() as session:
        left = set(
            await session.scalars(
                text("SELECT webhook_id FROM payment_webhook_events WHERE webhook_id = ANY(:w)"),
                {"w": list(ages)},
            )
        )
    assert left == {w for w in ages if w.startswith("msg_recent_")}


async def test_shipping_quotes_are_pruned_a_day_after_they_expire(
    databases: dict[str, DomainDatabase], settings: Settings
) -> None:
    db = databases["shipping"]
    ages = {uuid.uuid4(): timedelta(days=1, minutes=1), uuid.uuid4(): timedelta(hours=23)}
    async with db.begin() as session:
        for quote_id, age in ages.items():
            await session.execute(
                text(
                    "INSERT INTO shipping_quotes (id, cart_id, address_fingerprint, carrier,"
                    " service, amount, currency, expires_at, carrier_shipment_id,"
                    " carrier_rate_id, parcel) VALUES (:id, :cart, 'f', 'USPS', 'Priority', 7.9,"
                    " 'USD', now() - CAST(:age AS interval), 'shp_x', 'rate_x', '{}')"
                ),
                {"id": quote_id, "cart": uuid.uuid4(), "age": age},
            )

    assert await prune_inboxes("shipping", db, settings) >= 1

    async with db.begin() as session:
        left = set(
            await session.scalars(
                text("SELECT id FROM shipping_quotes WHERE id = ANY(:ids)"), {"ids": list(ages)}
            )
        )
    assert left == {q for q, age in ages.items() if age < timedelta(days=1)}


async def test_a_domain_without_an_inbox_has_nothing_to_prune(
    databases: dict[str, DomainDatabase], settings: Settings
) -> None:
    assert await prune_inboxes("cart", databases["cart"], settings) == 0


async def test_periodic_jobs_run_at_once_then_every_interval_until_stopped() -> None:
    runs: list[int] = []
    stop = asyncio.Event()

    async def job() -> int:
        runs.append(1)
        if len(runs) == 2:
            raise RuntimeError("a failed pass is logged; the next one still runs")
        return 0

    task = asyncio.create_task(run_every("test.job", 0.05, stop, job))
    for _ in range(100):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=1)
    assert len(runs) >= 3
