"""Shipping failures with stable codes."""

from __future__ import annotations

from kit.errors import DomainError, NotFound


class ShipmentNotFound(NotFound):
    """The order has no shipment."""

    code = "shipment_not_found"


class CarrierRejected(DomainError):
    """The carrier refused the booking (e.g. an address it cannot serve)."""

    code = "shipping_unavailable"


class CarrierUnavailable(Exception):
    """The carrier failed or did not answer: retry with the same idempotency key (transient)."""
