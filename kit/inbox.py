"""The consumer inbox: one row per (consumer, event id), written in the same transaction as the
state change the event causes, so a redelivered event changes nothing twice."""

from __future__ import annotations

import uuid

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import TIMESTAMP

INBOX_TABLE = "consumer_inbox"


def inbox_table(metadata: MetaData) -> Table:
    """Declare `consumer_inbox` in a consuming domain's metadata."""
    return Table(
        INBOX_TABLE,
        metadata,
        Column("consumer", String(64), nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("received_at", TIMESTAMP, nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
    )


_INBOX = inbox_table(MetaData())


async def first_delivery(session: AsyncSession, consumer: str, event_id: uuid.UUID) -> bool:
    """Record the event for `consumer`; False if it was recorded before (a redelivery)."""
    recorded = await session.scalar(
        pg_insert(_INBOX)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(_INBOX.c.event_id)
    )
    return recorded is not None
