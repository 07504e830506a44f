"""Where a shipment stands, as the carrier reports it: plain enums (no ORM)."""

from __future__ import annotations

from enum import StrEnum


class ShipmentStatus(StrEnum):
    """Lifecycle of a shipment as the carrier reports it."""

    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
