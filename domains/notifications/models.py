"""Tables of the `notifications` database (seed: notifications_db)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domains.notifications.statuses import NotificationStatus
from kit.db import created_at_column, one_of, uuid_pk
from kit.orm import domain_registry


class Base(DeclarativeBase):
    """Declarative base of the notifications database."""

    # Events this domain consumes are deduplicated in its `consumer_inbox` (not in the seed:
    # exactly-once application needs it).
    registry = domain_registry(inbox=True)


class Notification(Base):
    """A message to a user. Added: `attempts`, `last_error`, `sent_at`, `next_attempt_at` for the
    retrying sender."""

    __tablename__ = "notifications"
    __table_args__ = (one_of("status", [s.value for s in NotificationStatus]),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = created_at_column()


class OrderRecipient(Base):
    """Who an order belongs to, learned from `order.created`.

    Not in the seed: payment and shipment events name the order, not the buyer; the
    notifications domain keeps this projection rather than asking another domain's database.
    """

    __tablename__ = "order_recipients"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = created_at_column()
