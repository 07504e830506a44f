"""Shipping rates for a cart: the parcel from the cart's variants (read through the cart and
products services), priced by the carrier, kept as quotes the checkout can name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from api.deps import Platform
from api.errors import ApiError
from api.schemas import AddressIn
from api.services import carts
from domains.products import service as products
from domains.shipping import quotes
from domains.shipping.carrier import EasyPostCarrier, Parcel
from domains.shipping.errors import CarrierUnavailable
from domains.shipping.models import ShippingQuote
from kit.logging import get_logger
from kit.settings import Settings

log = get_logger(__name__)

# One client per configuration: the package keeps a connection pool per client.
_carriers: dict[tuple[str, str, int], EasyPostCarrier] = {}


def carrier(settings: Settings) -> EasyPostCarrier:
    """The carrier client for these settings (EASYPOST_API_BASE, _API_KEY, _TIMEOUT_S)."""
    config = settings.easypost
    key = (config.api_base, config.api_key.get_secret_value(), config.timeout_s)
    if key not in _carriers:
        _carriers[key] = EasyPostCarrier(key[1], api_base=key[0], timeout_s=key[2])
    return _carriers[key]


async def _cart_parcel(wired: Platform, cart_id: uuid.UUID, user_id: uuid.UUID) -> Parcel:
    """One box holding every unit of the caller's cart (404 for anybody else's cart, 422
    `cart_empty` for an empty one)."""
    _, items = await carts.view(wired, cart_id, user_id)
    if not items:
        raise ApiError(422, "cart_empty", "the cart has no items")
    async with wired.databases["products"].begin() as session:
        found = await products.variant_parcels(session, {item.variant_id for item in items})
    units = []
    for item in items:
        unit = found.get(item.variant_id)
        if unit is None:
            raise ApiError(422, "product_not_found", "a variant of the cart no longer exists")
        units.append(
            (
                Parcel.of_millimetres(unit.weight_g, unit.length_mm, unit.width_mm, unit.height_mm),
                item.quantity,
            )
        )
    return Parcel.stacked(units)


async def quote_rates(
    wired: Platform, cart_id: uuid.UUID, user_id: uuid.UUID, address: AddressIn
) -> list[ShippingQuote]:
    """The carrier's rates for the cart's parcel to `address`, stored as quotes that expire
    after SHIPPING_QUOTE_TTL_S; 422 `address_unserviceable` when no service reaches it, 503
    `carrier_unavailable` when the carrier does not answer."""
    parcel = await _cart_parcel(wired, cart_id, user_id)
    to_address = address.model_dump(mode="json")
    try:
        shipment = await carrier(wired.settings).create(
            to_address=quotes.carrier_address(to_address),
            from_address=wired.settings.shipping.from_address,
            parcel=parcel,
            reference=f"cart:{cart_id}",
        )
    except CarrierUnavailable as exc:
        log.warning("shipping.rates.carrier_unavailable", error=str(exc))
        raise ApiError(
            503,
            "carrier_unavailable",
            "the carrier did not answer; try again",
            headers={"Retry-After": "5"},
        ) from exc
    shipment.cheapest()  # AddressUnserviceable (422) when it offers none
    expires_at = datetime.now(UTC) + timedelta(seconds=wired.settings.shipping.quote_ttl_s)
    async with wired.databases["shipping"].begin() as session:
        return await quotes.store_quotes(
            session,
            cart_id=cart_id,
            user_id=user_id,
            address=to_address,
            parcel=parcel,
            shipment=shipment,
            expires_at=expires_at,
        )
