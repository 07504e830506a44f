"""The shipping activities as the workflow calls them: names and payloads."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import Field

from activities.shared import ActivityName, Address, Payload


class ParcelValue(Payload):
    """A parcel in grams and centimetres."""

    weight_g: int = Field(ge=1)
    length_cm: Decimal = Field(gt=0)
    width_cm: Decimal = Field(gt=0)
    height_cm: Decimal = Field(gt=0)


class CreateShipmentInput(Payload):
    """Buy the label of an order's one shipment.

    `shipping_rate_id` is the quote the buyer chose at checkout (its rate is bought); without
    one, shipping is free to the buyer and the cheapest service is bought for `parcel` (unset:
    a default parcel). Both are optional so that histories recorded before them replay.
    """

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    ship_to: Address
    shipping_rate_id: uuid.UUID | None = None
    parcel: ParcelValue | None = None


class ShipmentInfo(Payload):
    """The shipment whose label was bought."""

    shipment_id: uuid.UUID
    carrier: str
    tracking_number: str


class CancelShipmentInput(Payload):
    """Void the label of an order's shipment (the compensation of create).

    `ship_to` is no longer needed (the carrier's shipment is recorded before its label is
    bought); it stays accepted so that histories recorded with it replay."""

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    ship_to: Address | None = None


class ReturnLabelInput(Payload):
    """Buy a return label (the buyer sends the parcel back to the warehouse) for an order;
    idempotent by `return_id`. Without `ship_from`, the parcel leaves from the address the
    order's shipment went to (read from the shipping database: no address in the history)."""

    return_id: uuid.UUID
    order_id: uuid.UUID
    ship_from: Address | None = None
    parcel: ParcelValue | None = None


class ReturnLabel(Payload):
    """A bought return label."""

    carrier_shipment_id: str
    tracking_number: str
    label_url: str | None
    carrier: str
    service: str
    amount: Decimal
    currency: str


class WithdrawInput(Payload):
    """Take an order's parcel back before the carrier has it (the order is being cancelled)."""

    order_id: uuid.UUID


CREATE = ActivityName("shipping.create", CreateShipmentInput, ShipmentInfo)
CANCEL = ActivityName("shipping.cancel", CancelShipmentInput, bool)
RETURN_LABEL = ActivityName("shipping.create_return_label", ReturnLabelInput, ReturnLabel)
WITHDRAW = ActivityName("shipping.withdraw", WithdrawInput, bool)
