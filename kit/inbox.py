"""The consumer inbox: one row per (consumer, event id), written in the same transaction as the
state change the event causes, so a redelivered event changes nothing twice.

Beside it, the consumer's dead letters: events it gave up on (unreadable, or whose reaction kept
failing), kept with the message as published so that an operator can see and replay them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import TIMESTAMP

INBOX_TABLE = "consumer_inbox"
DEAD_LETTER_TABLE = "consumer_dead_letters"


def inbox_table(metadata: MetaData) -> Table:
    """Declare `consumer_inbox` in a consuming domain's metadata."""
    return Table(
        INBOX_TABLE,
        metadata,
        Column("consumer", String(64), nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("received_at", TIMESTAMP, nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
        # The worker processes prune the inbox by age: this keeps that a short index scan.
        Index("ix_consumer_inbox_received_at", "received_at"),
    )


def dead_letter_table(metadata: MetaData) -> Table:
    """Declare `consumer_dead_letters` in a consuming domain's metadata.

    One row per message given up on, keyed by its place in the stream (an unreadable message
    may have no event id); `data` is the message body as published.
    """
    return Table(
        DEAD_LETTER_TABLE,
        metadata,
        Column("consumer", String(64), nullable=False),
        Column("stream", String(64), nullable=False),
        Column("stream_seq", BigInteger, nullable=False),
        Column("subject", String(255), nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=True),
        # `invalid` (it cannot be read) or `failed` (its reaction kept raising).
        Column("reason", String(16), nullable=False),
        Column("deliveries", Integer, nullable=False),
        Column("error", Text, nullable=False),
        Column("data", Text, nullable=False),
        Column("dead_at", TIMESTAMP, nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "stream", "stream_seq"),
    )


_METADATA = MetaData()
# The tables as the functions below (and the pruning worker) address them in any domain.
INBOX = inbox_table(_METADATA)
_DEAD_LETTERS = dead_letter_table(_METADATA)


async def first_delivery(session: AsyncSession, consumer: str, event_id: uuid.UUID) -> bool:
    """Record the event for `consumer`; False if it was recorded before (a redelivery)."""
    recorded = await session.scalar(
        pg_insert(INBOX)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(INBOX.c.event_id)
    )
    return recorded is not None


async def record_dead_letter(
    session: AsyncSession,
    *,
    consumer: str,
    stream: str,
    stream_seq: int,
    subject: str,
    event_id: uuid.UUID | None,
    reason: str,
    deliveries: int,
    error: str,
    data: bytes,
) -> None:
    """Keep a message the consumer gives up on (once: recording it again changes nothing)."""
    await session.execute(
        pg_insert(_DEAD_LETTERS)
        .values(
            consumer=consumer,
            stream=stream,
            stream_seq=stream_seq,
            subject=subject,
            event_id=event_id,
            reason=reason,
            deliveries=deliveries,
            error=error,
            # Text cannot hold NUL; what is not UTF-8 is shown, not lost silently.
            data=data.decode("utf-8", "replace").replace("\x00", "\ufffd"),
        )
        .on_conflict_do_nothing()
    )
