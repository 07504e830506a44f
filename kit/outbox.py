"""Transactional outbox: every database has its own `domain_outbox_events`, written in the caller's
transaction so that a state change and the event announcing it commit or vanish together, and
beside it `outbox_relay_leases`, which relay publishes which partition of it (kit/relay.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UpdateBase,
    false,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import TIMESTAMP, row_arrays, rows_insert

OUTBOX_TABLE = "domain_outbox_events"
# The relay LISTENs on this channel; a NOTIFY sent in the writing transaction is delivered when
# (and only if) it commits. Several in one transaction collapse into one.
NOTIFY_CHANNEL = "domain_outbox_events"
LEASE_TABLE = "outbox_relay_leases"
# Relays announce here that they joined (payload: the relay's owner id) or handed partitions
# over, so that the others rebalance at once instead of at their next lease renewal.
LEASE_CHANNEL = "outbox_relay_leases"


def outbox_table(metadata: MetaData) -> Table:
    """Declare `domain_outbox_events` in one domain's metadata.

    Beyond the seed's columns:
    - `seq`: a monotonically allocated number; the relay publishes each aggregate's events in `seq`
      order (`created_at` ties inside one transaction).
    - `processed_at`: when the relay marked the row; cleanup deletes processed rows older than the
      consumers' dedup window, and never an unprocessed one.
    - `headers`: correlation data (checkout id, trace context) carried to the broker untouched.

    The relays' lease table is declared with it (`lease_table`): a database with an outbox has
    relays to coordinate.
    """
    lease_table(metadata)
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
        Column("aggregate_type", String(64), nullable=False),
        Column("aggregate_id", UUID(as_uuid=True), nullable=False),
        Column("event_type", String(128), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", TIMESTAMP, nullable=False, server_default=func.now()),
        Column("processed", Boolean, nullable=False, server_default=false()),
        Column("processed_at", TIMESTAMP, nullable=True),
        # The relay's work queue: only unprocessed rows, in publication order.
        Index(
            "ix_domain_outbox_events_unprocessed",
            "seq",
            postgresql_where=text("NOT processed"),
        ),
        # Per-aggregate order lookups.
        Index("ix_domain_outbox_events_aggregate", "aggregate_type", "aggregate_id", "seq"),
        # Cleanup of processed rows by age.
        Index(
            "ix_domain_outbox_events_processed_at",
            "processed_at",
            postgresql_where=text("processed"),
        ),
    )


def lease_table(metadata: MetaData) -> Table:
    """Declare `outbox_relay_leases`: one row per relay partition of the outbox.

    A partition is published only by its `owner` (a relay's id), inside a transaction holding the
    row locked; another relay may take the row over once `expires_at` has passed. Rows are
    created by the relays (one per partition); a NULL owner is a partition handed over.
    """
    return Table(
        LEASE_TABLE,
        metadata,
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("owner", String(128), nullable=True),
        Column("expires_at", TIMESTAMP, nullable=False, server_default=func.now()),
    )


# The table shape for DML; the name and columns are the same in every domain database.
_OUTBOX = outbox_table(MetaData())


@dataclass(frozen=True)
class NewEvent:
    """One event to append: what `append_events` writes as one outbox row."""

    aggregate_type: str
    aggregate_id: uuid.UUID
    event_type: str
    payload: BaseModel
    headers: dict[str, Any] | None = None


async def append_event(
    session: AsyncSession,
    aggregate_type: str,
    aggregate_id: uuid.UUID,
    event_type: str,
    payload: BaseModel,
    *,
    headers: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Write one event in the session's current transaction and return its id.

    Nothing is published here: the relay reads committed rows, so a rolled-back transaction
    leaves no trace.
    """
    (event_id,) = await append_events(
        session, [NewEvent(aggregate_type, aggregate_id, event_type, payload, headers)]
    )
    return event_id


async def append_events(session: AsyncSession, events: Sequence[NewEvent]) -> list[uuid.UUID]:
    """Write `events` in the session's current transaction, in order; their ids."""
    return await write_with_events(session, (), events)


# The columns an append fills, and its INSERT (`kit.db.rows_insert`: built once, compiled once
# per shape of the changes beside it; a multi-row VALUES was built and compiled at every append).
_APPENDED = ("id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers")
_APPEND = rows_insert(_OUTBOX, _APPENDED)


def _appended(ids: Sequence[uuid.UUID], events: Sequence[NewEvent]) -> dict[str, list[Any]]:
    """The parameters of `_APPEND` for `events` with their `ids`, in list order."""
    rows = [
        {
            "id": event_id,
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id,
            "event_type": event.event_type,
            "payload": event.payload.model_dump(mode="json"),
            "headers": event.headers or {},
        }
        for event_id, event in zip(ids, events, strict=True)
    ]
    return row_arrays(_OUTBOX, _APPENDED, rows)


async def write_with_events(
    session: AsyncSession, changes: Sequence[UpdateBase], events: Sequence[NewEvent]
) -> list[uuid.UUID]:
    """Run `changes` (INSERT, UPDATE or DELETE statements, without RETURNING) and append `events`
    (in order) in the session's current transaction, as one statement; the events' ids.

    The statement is a SELECT of `pg_notify` on the relay's channel (delivered at commit) under
    one data-modifying CTE per change and one INSERT of the events (rows take `seq` in list
    order). The CTEs run against one snapshot: each change must stand on its own (no change
    may need to see another's rows; a row inserted here is not visible to an UPDATE beside it).
    """
    if not session.in_transaction():
        raise RuntimeError("append_event needs the caller's open transaction")
    if not changes and not events:
        return []
    ids = [uuid.uuid4() for _ in events]
    statements = [*changes, *([_APPEND] if events else [])]
    ctes = [statement.cte(f"change_{n}") for n, statement in enumerate(statements)]
    signal = func.pg_notify(NOTIFY_CHANNEL, "") if events else literal(None)
    await session.flush()  # pending ORM changes first: the statement may depend on them
    connection = await session.connection()
    await connection.execute(
        select(signal).add_cte(*ctes), _appended(ids, events) if events else {}
    )
    return ids
