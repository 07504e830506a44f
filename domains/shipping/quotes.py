"""Shipping rates quoted for a cart, and the address form the carrier takes.

A quote is one of the carrier's rates for the cart's parcel to one address, kept until it
expires; the checkout names the one the buyer chose (`shipping_rate_id`), checked by
`quote_for_checkout`, and shipping buys that rate once the payment is captured.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domains.shipping.carrier import CarrierShipment, Parcel
from domains.shipping.errors import ShippingRateExpired
from domains.shipping.models import ShippingQuote

# The fields of the platform's address that decide where a parcel goes (not who receives it).
ROUTING_FIELDS = ("line1", "line2", "city", "postal_code", "country")


def carrier_address(address: Mapping[str, Any]) -> dict[str, Any]:
    """The platform's address (`name`, `line1`, `line2`, `city`, `state`, `postal_code`,
    `country`, `phone`) in the carrier's fields (`street1`, `zip`, ...)."""
    fields = {
        "name": address.get("name"),
        "street1": address.get("line1"),
        "street2": address.get("line2"),
        "city": address.get("city"),
        "state": address.get("state"),
        "zip": address.get("postal_code"),
        "country": address.get("country"),
        "phone": address.get("phone"),
    }
    return {key: value for key, value in fields.items() if value is not None}


def address_fingerprint(address: Mapping[str, Any]) -> str:
    """A SHA-256 of where the address sends a parcel, blind to case and spacing."""
    normalized = {
        key: " ".join(str(address.get(key) or "").split()).casefold() for key in ROUTING_FIELDS
    }
    return hashlib.sha256(json.dumps(normalized, sort_keys=True).encode()).hexdigest()


async def store_quotes(
    session: AsyncSession,
    *,
    cart_id: uuid.UUID,
    user_id: uuid.UUID | None,
    address: Mapping[str, Any],
    parcel: Parcel,
    shipment: CarrierShipment,
    expires_at: datetime,
) -> list[ShippingQuote]:
    """One quote per rate of the carrier's shipment, cheapest first."""
    fingerprint = address_fingerprint(address)
    quotes = [
        ShippingQuote(
            id=uuid.uuid4(),
            cart_id=cart_id,
            user_id=user_id,
            address_fingerprint=fingerprint,
            carrier=rate.carrier,
            service=rate.service,
            amount=rate.amount.amount,
            currency=rate.amount.currency,
            delivery_days=rate.delivery_days,
            expires_at=expires_at,
            carrier_shipment_id=shipment.id,
            carrier_rate_id=rate.id,
            parcel=parcel.document(),
        )
        for rate in sorted(shipment.rates, key=lambda r: (r.amount.amount, r.service))
    ]
    session.add_all(quotes)
    await session.flush()
    return quotes


async def quote_for_checkout(
    session: AsyncSession,
    rate_id: uuid.UUID,
    cart_id: uuid.UUID,
    now: datetime,
    address: Mapping[str, Any] | None = None,
) -> ShippingQuote:
    """The quote a checkout names, if it may still be chosen: quoted for this cart (and, given
    `address`, for this address) and not expired; 422 `shipping_rate_expired` otherwise."""
    quote = await session.get(ShippingQuote, rate_id)
    if quote is None or quote.cart_id != cart_id:
        raise ShippingRateExpired("no such shipping rate for this cart", rate_id=str(rate_id))
    if quote.expires_at <= now:
        raise ShippingRateExpired(
            "the shipping rate has expired: quote again", rate_id=str(rate_id)
        )
    if address is not None and quote.address_fingerprint != address_fingerprint(address):
        raise ShippingRateExpired(
            "the shipping rate was quoted for another address: quote again",
            rate_id=str(rate_id),
        )
    return quote


async def get_quote(session: AsyncSession, rate_id: uuid.UUID) -> ShippingQuote | None:
    """A quote by id, whether or not it has expired (shipping buys what the checkout chose)."""
    return await session.get(ShippingQuote, rate_id)
