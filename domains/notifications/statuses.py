"""Where a notification's delivery stands: plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class NotificationStatus(StrEnum):
    """Delivery state of a notification."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
