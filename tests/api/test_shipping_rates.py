"""Shipping rates at checkout and the shipping activities against the sandbox's EasyPost API.

Rates: the parcel comes from the cart's variants (weight and dimensions, with defaults), the
carrier prices it (the sandbox's table: a base per service plus a price per started pound), and
the quotes are kept until they expire. Activities: the chosen quote's rate is bought once per
checkout (a retry whose answer was lost finds the label bought), the label is voided in
compensation, return labels buy the cheapest rate; an address no service reaches fails for good.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from easypost.easypost_client import EasyPostClient
from sqlalchemy import text

from activities.shared import Address
from activities.shipping.activities import ShippingActivities
from activities.shipping.contract import (
    CancelShipmentInput,
    CreateShipmentInput,
    ReturnLabelInput,
)
from api.services.shipping import carrier
from domains.shipping import quotes, service
from domains.shipping.carrier import Parcel
from domains.shipping.errors import AddressUnserviceable, ShippingRateExpired
from tests.api.conftest import Caller
from tests.api.test_routes import assert_problem, new_cart, product_body
from tests.platform import Platform

pytestmark = pytest.mark.timeout(120)

ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Navy Yard",
    "city": "Arlington",
    "postal_code": "22202",
    "country": "US",
}


async def _cart(
    http: httpx.AsyncClient, operator: Caller, who: Caller, quantity: int, **parcel: Any
) -> str:
    body = product_body()
    body["variants"][0].update(parcel)
    created = await http.post("/v1/products", json=body, headers=operator.headers)
    assert created.status_code == 201, created.text
    return await new_cart(http, who, created.json()["variants"][0]["id"], quantity)


async def _rates(
    http: httpx.AsyncClient, who: Caller, cart_id: str, **address: str
) -> httpx.Response:
    return await http.post(
        f"/v1/carts/{cart_id}/shipping-rates",
        json={"shipping_address": {**ADDRESS, **address}},
        headers=who.headers,
    )


async def test_rates_are_priced_for_the_carts_parcel_and_kept_as_quotes(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    heavy = {"weight_g": 1200, "length_mm": 400, "width_mm": 300, "height_mm": 50}
    cart_id = await _cart(http, operator, alice, 2, **heavy)
    before = datetime.now(UTC)
    answer = await _rates(http, alice, cart_id)
    assert answer.status_code == 200, answer.text
    rates = answer.json()["rates"]
    # 2 x 1200 g = 84.7 oz, six started pounds: each service's base plus six per-pound prices.
    assert [(r["service"], r["amount"], r["currency"]) for r in rates] == [
        ("GroundAdvantage", "9.10", "USD"),
        ("Priority", "13.30", "USD"),
        ("Express", "37.30", "USD"),
    ]
    assert {r["carrier"] for r in rates} == {"USPS"}
    assert [r["delivery_days"] for r in rates] == [5, 2, 1]
    ttl = timedelta(seconds=platform.settings.shipping.quote_ttl_s)
    for rate in rates:
        expires_at = datetime.fromisoformat(rate["expires_at"])
        assert before + ttl <= expires_at <= datetime.now(UTC) + ttl
    async with platform.databases["shipping"].begin() as session:
        stored = (
            await session.execute(
                text(
                    "SELECT user_id, address_fingerprint, parcel FROM shipping_quotes"
                    " WHERE id = :id"
                ),
                {"id": rates[0]["id"]},
            )
        ).one()
    assert stored.user_id == alice.user_id
    assert stored.address_fingerprint == quotes.address_fingerprint(ADDRESS)
    # Stacked: the units' weights added, the footprint of the largest, their heights summed.
    assert stored.parcel == {
        "weight_g": 2400,
        "length_cm": "40",
        "width_cm": "30",
        "height_cm": "10",
    }


async def test_variants_default_to_500_g_and_the_route_checks_its_caller(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, bob: Caller
) -> None:
    cart_id = await _cart(http, operator, alice, 1)
    answer = await _rates(http, alice, cart_id)
    assert answer.status_code == 200, answer.text
    # 500 g = 17.7 oz: two started pounds.
    assert answer.json()["rates"][0]["amount"] == "6.70"
    assert_problem(await _rates(http, bob, cart_id), 404, "cart_not_found")
    assert_problem(
        await _rates(http, alice, cart_id, postal_code="00000"), 422, "address_unserviceable"
    )
    bad = await _rates(http, alice, cart_id, country="XX")
    assert bad.status_code == 422
    empty = await http.post("/v1/carts", json={"currency": "USD"}, headers=alice.headers)
    assert_problem(await _rates(http, alice, empty.json()["id"]), 422, "cart_empty")
    refused = await http.post(
        "/v1/products",
        json={**product_body(), "variants": [{**product_body()["variants"][0], "weight_g": 0}]},
        headers=operator.headers,
    )
    assert refused.status_code == 422


async def test_a_quote_is_choosable_for_its_cart_and_address_until_it_expires(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    cart_id = await _cart(http, operator, alice, 1)
    rate = (await _rates(http, alice, cart_id)).json()["rates"][0]
    rate_id, cart = uuid.UUID(rate["id"]), uuid.UUID(cart_id)
    expires_at = datetime.fromisoformat(rate["expires_at"])
    now = datetime.now(UTC)
    async with platform.databases["shipping"].begin() as session:
        quote = await quotes.quote_for_checkout(session, rate_id, cart, now, ADDRESS)
        assert (quote.service, quote.amount) == ("GroundAdvantage", Decimal("6.70"))
        # The same address written differently is the same address.
        shouted = {**ADDRESS, "line1": "  1 NAVY   yard "}
        assert await quotes.quote_for_checkout(session, rate_id, cart, now, shouted) is quote
        refusals = [
            quotes.quote_for_checkout(session, rate_id, cart, expires_at),
            quotes.quote_for_checkout(session, rate_id, uuid.uuid4(), now),
            quotes.quote_for_checkout(session, uuid.uuid4(), cart, now),
            quotes.quote_for_checkout(session, rate_id, cart, now, {**ADDRESS, "city": "Paris"}),
        ]
        for refusal in refusals:
            with pytest.raises(ShippingRateExpired) as refused:
                await refusal
            assert (refused.value.code, refused.value.http_status) == (
                "shipping_rate_expired",
                422,
            )


def _activities(platform: Platform) -> ShippingActivities:
    return ShippingActivities(
        platform.databases["shipping"],
        carrier(platform.settings),
        warehouse=platform.settings.shipping.from_address,
    )


def _sdk(platform: Platform) -> EasyPostClient:
    easypost = platform.settings.easypost
    return EasyPostClient(easypost.api_key.get_secret_value(), api_base=easypost.api_base)


async def test_the_chosen_rate_is_bought_once_and_voided_in_compensation(
    http: httpx.AsyncClient, platform: Platform, operator: Caller, alice: Caller
) -> None:
    cart_id = await _cart(http, operator, alice, 1)
    express = (await _rates(http, alice, cart_id)).json()["rates"][-1]
    shipping = _activities(platform)
    order = CreateShipmentInput(
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        ship_to=Address.model_validate(ADDRESS),
        shipping_rate_id=uuid.UUID(express["id"]),
    )
    first = await shipping.create_shipment(order)
    assert await shipping.create_shipment(order) == first  # a retry buys nothing more
    async with platform.databases["shipping"].begin() as session:
        purchase = await service.purchase(session, f"checkout:{order.checkout_id}")
        quote = await quotes.get_quote(session, uuid.UUID(express["id"]))
    assert purchase is not None
    assert quote is not None
    assert purchase.carrier_shipment_id == quote.carrier_shipment_id
    bought = _sdk(platform).shipment.retrieve(purchase.carrier_shipment_id)
    assert bought.selected_rate.id == quote.carrier_rate_id
    assert bought.selected_rate.service == "Express"
    assert (first.carrier, first.tracking_number) == ("easypost", bought.tracking_code)

    cancel = CancelShipmentInput(checkout_id=order.checkout_id, order_id=order.order_id)
    assert await shipping.cancel_shipment(cancel) is True
    assert await shipping.cancel_shipment(cancel) is False
    assert _sdk(platform).shipment.retrieve(bought.id).refund_status == "submitted"


async def test_a_buy_whose_answer_was_lost_is_found_bought(platform: Platform) -> None:
    shipping = _activities(platform)
    order = CreateShipmentInput(
        checkout_id=uuid.uuid4(), order_id=uuid.uuid4(), ship_to=Address.model_validate(ADDRESS)
    )
    # The first attempt recorded its carrier shipment, bought it, and lost the answer.
    shipment = await carrier(platform.settings).create(
        to_address=quotes.carrier_address(ADDRESS),
        from_address=platform.settings.shipping.from_address,
        parcel=Parcel(500, Decimal(30), Decimal(20), Decimal(10)),
        reference=str(order.order_id),
    )
    async with platform.databases["shipping"].begin() as session:
        await service.record_purchase(
            session,
            key=f"checkout:{order.checkout_id}",
            kind="outbound",
            order_id=order.order_id,
            carrier="easypost",
            carrier_shipment_id=shipment.id,
            carrier_rate_id=shipment.cheapest().id,
        )
    sold = _sdk(platform).shipment.buy(shipment.id, rate={"id": shipment.cheapest().id})
    info = await shipping.create_shipment(order)
    assert info.tracking_number == sold.tracking_code
    # Without a chosen rate, the cheapest service was bought (and shipping is free to the buyer).
    assert sold.selected_rate.service == "GroundAdvantage"


async def test_return_labels_and_unserviceable_addresses(platform: Platform) -> None:
    shipping = _activities(platform)
    back = ReturnLabelInput(
        return_id=uuid.uuid4(), order_id=uuid.uuid4(), ship_from=Address.model_validate(ADDRESS)
    )
    label = await shipping.create_return_label(back)
    assert await shipping.create_return_label(back) == label
    assert (label.service, label.amount, label.currency) == (
        "GroundAdvantage",
        Decimal("6.70"),
        "USD",
    )
    returned = _sdk(platform).shipment.retrieve(label.carrier_shipment_id)
    assert returned.is_return is True
    assert returned.tracking_code == label.tracking_number

    nowhere = CreateShipmentInput(
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        ship_to=Address.model_validate({**ADDRESS, "postal_code": "00000"}),
    )
    with pytest.raises(AddressUnserviceable) as failed:
        await shipping.create_shipment(nowhere)
    assert failed.value.code == "address_unserviceable"
