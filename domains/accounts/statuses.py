"""Whether a user may shop: the accounts domain's vocabulary, plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class UserStatus(StrEnum):
    """Whether a user may shop."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"
