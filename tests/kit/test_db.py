"""The idempotent insert by business key, and one declarative registry per domain database."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from db.metadata import metadata_for
from domains.payments.models import PaymentIdempotencyKey, PaymentWebhookEvent
from kit.db import DomainDatabase, insert_if_absent, insert_or_get
from kit.orm import domain_registry
from kit.settings import DOMAINS, Settings

# Any domain table with a unique business key serves; nothing of payments' logic runs here.
DOMAIN = "payments"


def _key_row(key: str, request_hash: str) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "key": key, "request_hash": request_hash}


async def _count(db: DomainDatabase, key: str) -> int:
    async with db.begin() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PaymentIdempotencyKey)
            .where(PaymentIdempotencyKey.key == key)
        )
        return int(count or 0)


async def test_first_call_creates_and_the_next_returns_that_row(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases[DOMAIN]
    key = f"test:{uuid.uuid4()}"
    async with db.begin() as session:
        first, created = await insert_or_get(
            session, PaymentIdempotencyKey, _key_row(key, "a"), key=[PaymentIdempotencyKey.key]
        )
        assert created
        assert first.key == key
        assert first.created_at is not None  # RETURNING filled the server default
        first_id = first.id

    # Another id and other values under the same key: the stored row wins, nothing changes.
    async with db.begin() as session:
        again, created = await insert_or_get(
            session, PaymentIdempotencyKey, _key_row(key, "b"), key=[PaymentIdempotencyKey.key]
        )
        assert not created
        assert (again.id, again.request_hash) == (first_id, "a")

    assert await _count(db, key) == 1


async def test_concurrent_calls_make_one_row_and_one_creator(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases[DOMAIN]
    key = f"test:{uuid.uuid4()}"
    attempts = 8
    # Every transaction is open before any inserts, so they truly race on the unique key.
    everyone_in = asyncio.Barrier(attempts)

    async def attempt(n: int) -> tuple[uuid.UUID, bool]:
        async with db.begin() as session:
            await session.execute(text("SELECT 1"))
            await everyone_in.wait()
            row, created = await insert_or_get(
                session,
                PaymentIdempotencyKey,
                _key_row(key, str(n)),
                key=[PaymentIdempotencyKey.key],
            )
            return row.id, created

    results = await asyncio.gather(*(attempt(n) for n in range(attempts)))

    assert sum(created for _, created in results) == 1
    assert len({row_id for row_id, _ in results}) == 1
    assert await _count(db, key) == 1


async def test_a_composite_key_matches_on_every_column(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases[DOMAIN]
    webhook_id = f"msg_{uuid.uuid4().hex}"
    key = [PaymentWebhookEvent.provider, PaymentWebhookEvent.webhook_id]

    def event(provider: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "provider": provider,
            "webhook_id": webhook_id,
            "event_type": "payment_intent.succeeded",
            "payload": {},
        }

    async with db.begin() as session:
        stripe, created_stripe = await insert_or_get(session, PaymentWebhookEvent, event("a"), key)
        other, created_other = await insert_or_get(session, PaymentWebhookEvent, event("b"), key)
        again, created_again = await insert_or_get(session, PaymentWebhookEvent, event("a"), key)

    assert (created_stripe, created_other, created_again) == (True, True, False)
    assert stripe.id != other.id
    assert again.id == stripe.id


async def test_insert_if_absent_reports_an_existing_key_as_none(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases[DOMAIN]
    key = f"test:{uuid.uuid4()}"
    async with db.begin() as session:
        row = await insert_if_absent(
            session, PaymentIdempotencyKey, _key_row(key, "a"), [PaymentIdempotencyKey.key]
        )
        assert row is not None
        assert row.request_hash == "a"
    async with db.begin() as session:
        assert (
            await insert_if_absent(
                session, PaymentIdempotencyKey, _key_row(key, "b"), [PaymentIdempotencyKey.key]
            )
            is None
        )
    assert await _count(db, key) == 1


async def test_lock_holds_a_found_row_for_the_transaction(
    databases: dict[str, DomainDatabase],
) -> None:
    db = databases[DOMAIN]
    key = f"test:{uuid.uuid4()}"
    async with db.begin() as session:
        await insert_or_get(
            session, PaymentIdempotencyKey, _key_row(key, "a"), [PaymentIdempotencyKey.key]
        )

    async with db.begin() as holder:
        key_column = [PaymentIdempotencyKey.key]
        _, created = await insert_or_get(
            holder, PaymentIdempotencyKey, _key_row(key, "a"), key_column, lock=True
        )
        assert not created
        with pytest.raises(DBAPIError, match="could not obtain lock"):
            async with db.begin() as other:
                await other.execute(
                    select(PaymentIdempotencyKey)
                    .where(PaymentIdempotencyKey.key == key)
                    .with_for_update(nowait=True)
                )


def test_each_registry_is_a_database_of_its_own_with_the_outbox() -> None:
    plain, consuming = domain_registry(), domain_registry(inbox=True)

    assert plain.metadata is not consuming.metadata
    assert set(plain.metadata.tables) == {"domain_outbox_events", "outbox_relay_leases"}
    assert set(consuming.metadata.tables) == {
        "domain_outbox_events",
        "outbox_relay_leases",
        "consumer_inbox",
        "consumer_dead_letters",
    }
    assert plain.metadata.naming_convention["uq"] == "uq_%(table_name)s_%(column_0_N_name)s"


def test_every_domain_keeps_its_own_metadata() -> None:
    metadatas = [metadata_for(domain) for domain in DOMAINS]

    assert len({id(metadata) for metadata in metadatas}) == len(DOMAINS)
    assert all("domain_outbox_events" in metadata.tables for metadata in metadatas)


async def test_behind_pgbouncer_no_statement_is_cached_or_named_twice(migrated: Settings) -> None:
    """DB_PGBOUNCER: the same work, with asyncpg's and SQLAlchemy's statement caches off and
    every statement SQLAlchemy prepares uniquely named (what transaction pooling needs)."""
    db = DomainDatabase.from_settings(DOMAIN, migrated.updated(database={"pgbouncer": True}))
    try:
        key = f"pgbouncer-{uuid.uuid4()}"
        for _ in range(3):  # a cached statement would be reused from the second round on
            async with db.begin() as session:
                await insert_or_get(
                    session,
                    PaymentIdempotencyKey,
                    _key_row(key, "h"),
                    key=[PaymentIdempotencyKey.key],
                )
        assert await _count(db, key) == 1
        async with db.engine.connect() as conn:
            names = (await conn.scalars(text("SELECT name FROM pg_prepared_statements"))).all()
        # Only uniquely named statements (asyncpg's own are `__asyncpg_stmt_<n>__`, which two
        # clients sharing a server connection would both use).
        assert names
        assert all(re.fullmatch(r"__asyncpg_[0-9a-f]{32}__", name) for name in names), names
    finally:
        await db.dispose()


async def _backend_pid(db: DomainDatabase) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)


async def _terminate(databases: dict[str, DomainDatabase], pid: int) -> None:
    """End a server process, as a PostgreSQL restart or an idle timeout would."""
    async with databases[DOMAIN].engine.connect() as conn:
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.sleep(0.1)


async def test_a_rested_connection_that_died_is_replaced_unseen(
    migrated: Settings, databases: dict[str, DomainDatabase]
) -> None:
    """Pinged at checkout because it rested longer than the threshold: the caller never sees
    the dead connection."""
    url = migrated.domain_database_url(DOMAIN)
    db = DomainDatabase(DOMAIN, url, pool_size=1, max_overflow=0, ping_after_idle_s=0.0)
    try:
        dead = await _backend_pid(db)
        await _terminate(databases, dead)

        assert await _backend_pid(db) not in (0, dead)
    finally:
        await db.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged_and_one_failure_renews_the_pool(
    migrated: Settings, databases: dict[str, DomainDatabase]
) -> None:
    """No ping within the threshold: a connection that broke in steady use fails the statement
    that meets it, as a disconnect; the pool is renewed, and the next statement runs."""
    url = migrated.domain_database_url(DOMAIN)
    db = DomainDatabase(DOMAIN, url, pool_size=2, max_overflow=0, ping_after_idle_s=60.0)
    try:
        async with db.engine.connect() as one, db.engine.connect() as two:
            pids = [
                int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0) for conn in (one, two)
            ]
        for pid in pids:
            await _terminate(databases, pid)

        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(db)
        assert failed.value.connection_invalidated
        assert await _backend_pid(db) not in pids  # the other pooled connection was renewed too
    finally:
        await db.dispose()
