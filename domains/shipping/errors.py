"""Shipping failures with stable codes."""

from __future__ import annotations

from kit.errors import DomainError, NotFound


class ShipmentNotFound(NotFound, code="shipment_not_found"):
    """The order has no shipment."""


class CarrierRejected(DomainError, code="shipping_unavailable"):
    """The carrier refused the booking (e.g. an address it cannot serve)."""


class CarrierUnavailable(Exception):
    """The carrier failed or did not answer: retry with the same idempotency key (transient)."""
