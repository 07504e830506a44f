"""Notifications: what the buyer is told, derived from other domains' events, sent with retries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.notifications.models import Notification, OrderRecipient
from domains.notifications.statuses import NotificationStatus


async def remember_recipient(
    session: AsyncSession, order_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Learn who an order belongs to (from `order.created`)."""
    await session.execute(
        insert(OrderRecipient)
        .values(order_id=order_id, user_id=user_id)
        .on_conflict_do_nothing(index_elements=[OrderRecipient.order_id])
    )


async def recipient(session: AsyncSession, order_id: uuid.UUID) -> uuid.UUID | None:
    """The buyer of an order, if `order.created` has been applied."""
    user_id: uuid.UUID | None = await session.scalar(
        select(OrderRecipient.user_id).where(OrderRecipient.order_id == order_id)
    )
    return user_id


async def notify(
    session: AsyncSession, user_id: uuid.UUID, kind: str, payload: dict[str, Any]
) -> Notification:
    """A pending notification for `user_id`."""
    row = Notification(
        user_id=user_id, type=kind, payload=payload, status=NotificationStatus.PENDING.value
    )
    session.add(row)
    await session.flush()
    return row


async def due(session: AsyncSession, limit: int = 50) -> list[Notification]:
    """Pending notifications whose next attempt is due, locked for this sender."""
    rows = await session.scalars(
        select(Notification)
        .where(
            Notification.status == NotificationStatus.PENDING.value,
            Notification.next_attempt_at <= datetime.now(UTC),
        )
        .order_by(Notification.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


def record_attempt(row: Notification, error: str | None, *, max_attempts: int) -> None:
    """Mark a send attempt: sent, or retried with exponential backoff, or failed for good."""
    row.attempts += 1
    now = datetime.now(UTC)
    if error is None:
        row.status = NotificationStatus.SENT.value
        row.sent_at = now
        row.last_error = None
    elif row.attempts >= max_attempts:
        row.status = NotificationStatus.FAILED.value
        row.last_error = error[:500]
    else:
        row.last_error = error[:500]
        row.next_attempt_at = now + timedelta(seconds=min(300, 2**row.attempts))
