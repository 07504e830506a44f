"""The whole price through HTTP: a chosen shipping rate and Stripe Tax (the sandbox's) at checkout.

An API with TAX_PROVIDER=stripe starts the checkouts here (the platform's own API has
`none`): quoted rates, a checkout naming one, the order carrying subtotal, discount, shipping,
tax and total that add up, and the provider capturing exactly that total; a rate that expired
refused before anything starts; the tax service down failing the checkout cleanly with nothing
held.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.schemas import CheckoutIn
from api.services.checkouts import fingerprint
from tests.api.conftest import Caller
from tests.api.shop import Shop
from tests.api.test_routes import checkout_body
from tests.platform import Platform, serve_api, taxing

pytestmark = pytest.mark.timeout(180)

# California: the sandbox's rate table charges 7.25 %.
ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Infinite Loop",
    "city": "Cupertino",
    "postal_code": "95014",
    "country": "US",
    "state": "CA",
}
CA_RATE = Decimal("0.0725")


@pytest.fixture(scope="module")
async def taxed_api(platform: Platform) -> AsyncIterator[str]:
    """An API process with TAX_PROVIDER=stripe."""
    async with serve_api(platform, taxing(platform.settings)) as url:
        yield url


@pytest.fixture
async def shop(
    taxed_api: str, platform: Platform, operator: Caller, alice: Caller
) -> AsyncIterator[Shop]:
    """The buyer and an operator, through the taxed API."""
    async with httpx.AsyncClient(base_url=taxed_api, timeout=30) as http:
        yield Shop(http=http, operator=operator, buyer=alice, platform=platform)


def _tax(amount: Decimal) -> Decimal:
    return (amount * CA_RATE).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def _rate(shop: Shop, cart_id: str, service: str = "Priority") -> dict[str, Any]:
    answer = await shop.http.post(
        f"/v1/carts/{cart_id}/shipping-rates",
        json={"shipping_address": ADDRESS},
        headers=shop.buyer.headers,
    )
    assert answer.status_code == 200, answer.text
    rates: list[dict[str, Any]] = answer.json()["rates"]
    return next(rate for rate in rates if rate["service"] == service)


async def _start(shop: Shop, cart_id: str, key: str | None = None, **extra: Any) -> httpx.Response:
    body = {**checkout_body(cart_id), "shipping_address": ADDRESS, **extra}
    headers = {**shop.buyer.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    return await shop.http.post("/v1/checkouts", json=body, headers=headers)


async def _rows(platform: Platform, domain: str, sql: str, **params: Any) -> list[Any]:
    async with platform.databases[domain].begin() as session:
        return list((await session.execute(text(sql), params)).mappings())


@asynccontextmanager
async def tax_service_down(platform: Platform) -> AsyncIterator[None]:
    """The sandbox's Stripe Tax answers 500 to everything until exit."""
    async with httpx.AsyncClient(base_url=platform.psp_url) as http:
        (await http.post("/v1/test_helpers/tax/fault", json={"mode": "error"})).raise_for_status()
        try:
            yield
        finally:
            await http.post("/v1/test_helpers/tax/fault", json={"mode": "none"})


async def test_a_chosen_rate_and_tax_are_charged_and_captured_exactly(shop: Shop) -> None:
    variant = await shop.variant(price="12.50")
    cart_id = await shop.cart((variant, 2))
    coupon = await shop.coupon("percentage", "10")
    rate = await _rate(shop, cart_id)

    started = await _start(shop, cart_id, coupon_code=coupon, shipping_rate_id=rate["id"])
    assert started.status_code == 202, started.text
    checkout_id = started.json()["checkout_id"]
    ended = await shop.wait(checkout_id)

    assert ended["status"] == "completed", ended
    order = (
        await shop.http.get(f"/v1/orders/{ended['order']['id']}", headers=shop.buyer.headers)
    ).json()
    shipping = Decimal(rate["amount"])
    # 2 x 12.50 = 25.00, 10 % off: 2.50; the line after its share (22.50) and the shipping are
    # taxed at California's 7.25 %, each rounded half-up.
    tax = _tax(Decimal("22.50")) + _tax(shipping)
    total = Decimal("25.00") - Decimal("2.50") + shipping + tax
    assert (order["subtotal"], order["discount_amount"]) == ("25.00", "2.50")
    assert Decimal(order["shipping_amount"]) == shipping
    assert Decimal(order["tax_amount"]) == tax
    assert Decimal(order["total_amount"]) == total
    assert Decimal(ended["order"]["total_amount"]) == total
    assert [Decimal(item["tax_amount"]) for item in order["items"]] == [_tax(Decimal("22.50"))]
    # The provider captured exactly the whole price (invariant 13 checks it too).
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert [int(row["captured"]) for row in ledger] == [int(total * 100)]
    assert await shop.invariants(checkout_id) == []
    # The tax was recorded as a transaction after the capture; the chosen rate was bought.
    taxes = await _rows(
        shop.platform,
        "payments",
        "SELECT status, transaction_id FROM tax_transactions WHERE checkout_id = :c",
        c=checkout_id,
    )
    assert [row["status"] for row in taxes] == ["committed"], taxes
    assert taxes[0]["transaction_id"]
    bought = await _rows(
        shop.platform,
        "shipping",
        "SELECT p.carrier_rate_id FROM label_purchases p "
        "JOIN shipping_quotes q ON q.carrier_rate_id = p.carrier_rate_id WHERE q.id = :r",
        r=rate["id"],
    )
    assert len(bought) == 1, bought


async def test_an_expired_or_foreign_rate_is_refused_and_nothing_starts(shop: Shop) -> None:
    variant = await shop.variant()
    cart_id = await shop.cart((variant, 1))
    rate = await _rate(shop, cart_id)
    async with shop.platform.databases["shipping"].begin() as session:
        await session.execute(
            text(
                "UPDATE shipping_quotes SET expires_at = now() - interval '1 second' WHERE id = :r"
            ),
            {"r": rate["id"]},
        )
    other_cart = await shop.cart((variant, 1))
    fresh = await _rate(shop, other_cart)

    for rate_id in (rate["id"], str(uuid.uuid4()), fresh["id"]):
        key = uuid.uuid4().hex
        refused = await _start(shop, cart_id, key=key, shipping_rate_id=rate_id)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "shipping_rate_expired"
        sessions = await _rows(
            shop.platform,
            "checkout",
            "SELECT id FROM checkout_sessions WHERE idempotency_key = :k",
            k=key,
        )
        assert sessions == []  # nothing recorded, nothing started
    carts = await _rows(shop.platform, "cart", "SELECT status FROM carts WHERE id = :c", c=cart_id)
    assert [row["status"] for row in carts] == ["active"]


async def test_the_same_key_with_another_rate_is_another_request(shop: Shop) -> None:
    variant = await shop.variant()
    cart_id = await shop.cart((variant, 1))
    cheapest = await _rate(shop, cart_id, "GroundAdvantage")
    faster = await _rate(shop, cart_id, "Express")
    key = uuid.uuid4().hex

    first = await _start(shop, cart_id, key=key, shipping_rate_id=cheapest["id"])
    assert first.status_code == 202, first.text
    again = await _start(shop, cart_id, key=key, shipping_rate_id=cheapest["id"])
    other = await _start(shop, cart_id, key=key, shipping_rate_id=faster["id"])

    assert again.status_code == 202
    assert again.json()["checkout_id"] == first.json()["checkout_id"]
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_mismatch"
    assert (await shop.wait(first.json()["checkout_id"]))["status"] == "completed"


async def test_tax_service_down_fails_the_checkout_holding_nothing(shop: Shop) -> None:
    variant = await shop.variant(stock=3)
    cart_id = await shop.cart((variant, 2))
    coupon = await shop.coupon("percentage", "10")
    rate = await _rate(shop, cart_id)

    async with tax_service_down(shop.platform):
        checkout_id = (
            await _start(shop, cart_id, coupon_code=coupon, shipping_rate_id=rate["id"])
        ).json()["checkout_id"]
        ended = await shop.wait(checkout_id, within_s=120)

    assert ended["status"] == "failed", ended
    assert ended["failure"]["code"] == "tax_unavailable"
    assert ended["order"] is None
    assert ended["payment"] is None
    # Nothing held: no payment at the provider, stock, coupon and cart released.
    assert await shop.platform.ledger(uuid.UUID(checkout_id)) == []
    assert await shop.invariants(checkout_id) == []
    stock = await shop.http.get(f"/v1/inventory/{variant}", headers=shop.operator.headers)
    assert stock.json()["reserved"] == 0, stock.text
    redemptions = await _rows(
        shop.platform,
        "coupons",
        "SELECT status FROM coupon_redemptions WHERE checkout_id = :c",
        c=checkout_id,
    )
    assert [row["status"] for row in redemptions] == ["released"]
    carts = await _rows(shop.platform, "cart", "SELECT status FROM carts WHERE id = :c", c=cart_id)
    assert [row["status"] for row in carts] == ["active"]


def test_requests_without_a_rate_or_state_keep_their_identity() -> None:
    """Clients that never send `shipping_rate_id` or `state` keep the fingerprint they had."""
    body = checkout_body(str(uuid.uuid4()))
    plain = fingerprint(CheckoutIn.model_validate(body))
    with_rate = {**body, "shipping_rate_id": str(uuid.uuid4())}
    with_state = {**body, "shipping_address": {**body["shipping_address"], "state": "va"}}

    # The fingerprint of a body is what it was before the fields existed: its JSON, sorted.
    content = CheckoutIn.model_validate(body).model_dump(mode="json")
    content.pop("on_decline")
    content.pop("shipping_rate_id")
    content["shipping_address"].pop("state")
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert plain == hashlib.sha256(canonical.encode()).hexdigest()
    assert fingerprint(CheckoutIn.model_validate(with_rate)) != plain
    assert fingerprint(CheckoutIn.model_validate(with_state)) != plain
    assert CheckoutIn.model_validate(with_state).shipping_address.state == "VA"


async def test_a_repeat_after_the_rate_is_gone_answers_the_running_checkout(shop: Shop) -> None:
    variant = await shop.variant()
    cart_id = await shop.cart((variant, 1))
    rate = await _rate(shop, cart_id)
    key = uuid.uuid4().hex
    # 3-D Secure keeps the checkout running, waiting for the buyer.
    body = {"shipping_rate_id": rate["id"], "payment": {"provider": "sandbox", "token": "tok_3ds"}}
    first = await _start(shop, cart_id, key=key, **body)
    assert first.status_code == 202, first.text
    checkout_id = first.json()["checkout_id"]
    await shop.wait(checkout_id, step="awaiting_payment")
    async with shop.platform.databases["shipping"].begin() as session:
        await session.execute(text("DELETE FROM shipping_quotes WHERE id = :r"), {"r": rate["id"]})

    again = await _start(shop, cart_id, key=key, **body)

    assert again.status_code == 202, again.text
    assert again.json() == {"checkout_id": checkout_id, "status": "requires_action"}
    cancel = await shop.http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=shop.buyer.headers)
    assert cancel.status_code == 202, cancel.text
    assert (await shop.wait(checkout_id))["status"] == "cancelled"
