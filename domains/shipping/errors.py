"""Shipping failures with stable codes."""

from __future__ import annotations

from kit.errors import DomainError, NotFound


class ShipmentNotFound(NotFound, code="shipment_not_found"):
    """The order has no shipment."""


class CarrierRejected(DomainError, code="shipping_unavailable"):
    """The carrier definitely refused the request (the same request would be refused again)."""


class AddressUnserviceable(CarrierRejected, code="address_unserviceable"):
    """The carrier offers no service to this address: no label can be bought for it."""


class LabelNotVoidable(CarrierRejected, code="label_not_voidable"):
    """The carrier refused to void the label: the parcel is already on its way."""


class ShippingRateExpired(DomainError, code="shipping_rate_expired"):
    """The shipping rate chosen at checkout is unknown, expired, or quoted for another cart or
    address: quote again."""


class CarrierUnavailable(Exception):
    """The carrier failed or did not answer: retry (transient)."""


class ParcelWithCarrier(DomainError, code="already_shipped", http_status=409):
    """The carrier has the parcel (its tracking moved past the bought label): the order can no
    longer be cancelled, only returned."""
