"""Where a reservation stands: the inventory domain's vocabulary, plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class ReservationStatus(StrEnum):
    """Lifecycle of a reservation: held, given back, turned into a sale, or lapsed."""

    ACTIVE = "active"
    RELEASED = "released"
    COMMITTED = "committed"
    EXPIRED = "expired"
