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


# EasyPost's tracker statuses that move a shipment; the others (`unknown`, `return_to_sender`,
# `failure`, `available_for_pickup`, `cancelled`, `error`) are acknowledged and not applied.
TRACKER_STATUSES: dict[str, ShipmentStatus] = {
    "pre_transit": ShipmentStatus.LABEL_CREATED,
    "in_transit": ShipmentStatus.IN_TRANSIT,
    "out_for_delivery": ShipmentStatus.OUT_FOR_DELIVERY,
    "delivered": ShipmentStatus.DELIVERED,
}
