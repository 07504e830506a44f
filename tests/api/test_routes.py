"""Every route's success and error answers, authorization and limits, through real HTTP."""

from __future__ import annotations

import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

import httpx
import jwt
import pytest

from api.app import create_app
from devstack.services.process import free_port
from tests.api.conftest import Caller
from tests.platform import Platform

PROBLEM = "application/problem+json"
pytestmark = pytest.mark.timeout(120)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


def product_body(*skus: str, price: str = "12.50", currency: str = "USD") -> dict[str, Any]:
    return {
        "seller_id": str(uuid.uuid4()),
        "title": "Linen shirt",
        "description": "Breathes.",
        "category_id": str(uuid.uuid4()),
        "status": "active",
        "variants": [
            {
                "sku": sku,
                "attributes": {"size": "M"},
                "prices": [{"currency": currency, "amount": price}],
            }
            for sku in skus or (f"SKU-{uuid.uuid4().hex[:10]}",)
        ],
        "images": [{"url": "https://img.example/1.jpg", "sort_order": 0}],
    }


async def new_variant(
    http: httpx.AsyncClient, operator: Caller, stock: int = 10, price: str = "12.50"
) -> str:
    created = await http.post(
        "/v1/products", json=product_body(price=price), headers=operator.headers
    )
    assert created.status_code == 201, created.text
    variant_id: str = created.json()["variants"][0]["id"]
    stocked = await http.put(
        f"/v1/inventory/{variant_id}", json={"total_stock": stock}, headers=operator.headers
    )
    assert stocked.status_code == 200
    return variant_id


async def new_cart(http: httpx.AsyncClient, who: Caller, variant_id: str, quantity: int = 1) -> str:
    cart = await http.post("/v1/carts", json={"currency": "USD"}, headers=who.headers)
    assert cart.status_code == 201
    cart_id: str = cart.json()["id"]
    added = await http.post(
        f"/v1/carts/{cart_id}/items",
        json={"variant_id": variant_id, "quantity": quantity},
        headers=who.headers,
    )
    assert added.status_code == 200, added.text
    return cart_id


def checkout_body(cart_id: str, token: str = "tok_visa", **extra: Any) -> dict[str, Any]:
    return {
        "cart_id": cart_id,
        "shipping_address": {
            "name": "Grace Hopper",
            "line1": "1 Navy Yard",
            "city": "Arlington",
            "postal_code": "22202",
            "country": "US",
        },
        "payment": {"provider": "sandbox", "token": token},
        **extra,
    }


# -- authentication ------------------------------------------------------------------------------


async def test_no_or_bad_token_is_401_with_a_challenge(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {
            "Authorization": "Bearer "
            + jwt.encode(
                {"sub": str(uuid.uuid4()), "scopes": ["customer"], "exp": int(time.time()) - 5},
                platform.settings.auth.jwt_secret.get_secret_value(),
                algorithm="HS256",
            )
        },
        {
            "Authorization": "Bearer "
            + jwt.encode(
                {"sub": str(uuid.uuid4()), "scopes": ["operator"], "exp": int(time.time()) + 60},
                "someone-elses-secret-0123456789abcdef",
                algorithm="HS256",
            )
        },
    ):
        response = await http.post("/v1/carts", json={"currency": "USD"}, headers=headers)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_scope_is_403(http: httpx.AsyncClient, alice: Caller, operator: Caller) -> None:
    assert_problem(
        await http.post("/v1/products", json=product_body(), headers=alice.headers),
        403,
        "forbidden",
    )
    assert_problem(
        await http.get(f"/v1/inventory/{uuid.uuid4()}", headers=alice.headers), 403, "forbidden"
    )
    # Operators are not customers: they cannot open carts for themselves.
    assert_problem(
        await http.post("/v1/carts", json={"currency": "USD"}, headers=operator.headers),
        403,
        "forbidden",
    )


async def test_dev_tokens_work(http: httpx.AsyncClient) -> None:
    user_id = str(uuid.uuid4())
    minted = await http.post("/v1/dev/tokens", json={"user_id": user_id, "scopes": ["customer"]})
    assert minted.status_code == 200
    token = minted.json()["access_token"]
    cart = await http.post(
        "/v1/carts", json={"currency": "EUR"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert cart.status_code == 201
    assert cart.json()["status"] == "active"
    assert_problem(
        await http.post("/v1/dev/tokens", json={"user_id": user_id, "scopes": ["root"]}),
        422,
        "validation_error",
    )


# -- users, catalog, stock, coupons ----------------------------------------------------------------


async def test_users(http: httpx.AsyncClient) -> None:
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    created = await http.post("/v1/users", json={"email": email, "phone": "+44 20 7946 0000"})
    assert created.status_code == 201
    assert created.json()["email"] == email
    assert created.json()["status"] == "active"
    assert_problem(await http.post("/v1/users", json={"email": email.upper()}), 409, "email_taken")
    assert_problem(
        await http.post("/v1/users", json={"email": "not-an-email"}), 422, "validation_error"
    )
    assert_problem(
        await http.post("/v1/users", json={"email": email, "admin": True}), 422, "validation_error"
    )


async def test_products_and_prices(http: httpx.AsyncClient, operator: Caller) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    created = await http.post("/v1/products", json=product_body(sku), headers=operator.headers)
    assert created.status_code == 201
    product = created.json()
    variant = product["variants"][0]
    assert variant["prices"][0]["amount"] == "12.50"
    assert product["images"][0]["url"] == "https://img.example/1.jpg"
    assert_problem(
        await http.post("/v1/products", json=product_body(sku), headers=operator.headers),
        409,
        "sku_taken",
    )

    changed = await http.put(
        f"/v1/products/{product['id']}/variants/{variant['id']}/prices",
        json={"currency": "USD", "amount": "9.99"},
        headers=operator.headers,
    )
    assert changed.status_code == 200
    shown = (await http.get(f"/v1/products/{product['id']}")).json()
    assert [p["amount"] for p in shown["variants"][0]["prices"]] == ["9.99"]

    assert_problem(await http.get(f"/v1/products/{uuid.uuid4()}"), 404, "product_not_found")
    for amount in ("-1", "1.999", "abc"):
        bad = await http.put(
            f"/v1/products/{product['id']}/variants/{variant['id']}/prices",
            json={"currency": "USD", "amount": amount},
            headers=operator.headers,
        )
        assert bad.status_code == 422, amount
    # Unknown, or an ISO 4217 code that is no money to pay with (no currency, gold, testing).
    for code in ("XYZ", "XXX", "XAU", "XTS"):
        bad_currency = await http.put(
            f"/v1/products/{product['id']}/variants/{variant['id']}/prices",
            json={"currency": code, "amount": "1.00"},
            headers=operator.headers,
        )
        assert_problem(bad_currency, 422, "validation_error")
        assert code in bad_currency.text, code
    shown = (await http.get(f"/v1/products/{product['id']}")).json()
    assert [p["currency"] for p in shown["variants"][0]["prices"]] == ["USD"]


async def test_variants_keep_the_order_they_were_given_in(
    http: httpx.AsyncClient, operator: Caller
) -> None:
    # The order is the seller's (sizes, then colours...), not the SKUs' alphabetical one.
    prefix = f"SKU-{uuid.uuid4().hex[:10]}"
    skus = [f"{prefix}-{size}" for size in ("XS", "S", "M", "L", "XL")]
    created = await http.post("/v1/products", json=product_body(*skus), headers=operator.headers)
    assert created.status_code == 201, created.text
    assert [v["sku"] for v in created.json()["variants"]] == skus

    shown = (await http.get(f"/v1/products/{created.json()['id']}")).json()
    assert [v["sku"] for v in shown["variants"]] == skus


async def test_inventory(http: httpx.AsyncClient, operator: Caller) -> None:
    variant_id = await new_variant(http, operator, stock=7)
    shown = await http.get(f"/v1/inventory/{variant_id}", headers=operator.headers)
    assert shown.json() == {
        "variant_id": variant_id,
        "total_stock": 7,
        "reserved": 0,
        "available": 7,
    }
    assert_problem(
        await http.put(
            f"/v1/inventory/{variant_id}", json={"total_stock": -1}, headers=operator.headers
        ),
        422,
        "validation_error",
    )
    assert_problem(
        await http.put(
            f"/v1/inventory/{uuid.uuid4()}", json={"total_stock": 1}, headers=operator.headers
        ),
        404,
        "product_not_found",
    )


async def test_coupons(http: httpx.AsyncClient, operator: Caller) -> None:
    code = f"WELCOME{uuid.uuid4().hex[:6]}"
    body = {
        "code": code,
        "discount_type": "fixed",
        "discount_value": "5.00",
        "currency": "USD",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
        "max_redemptions": 10,
    }
    created = await http.post("/v1/coupons", json=body, headers=operator.headers)
    assert created.status_code == 201, created.text
    assert created.json()["code"] == code.upper()
    assert_problem(
        await http.post("/v1/coupons", json=body, headers=operator.headers),
        409,
        "coupon_code_taken",
    )
    shown = await http.get(f"/v1/coupons/{code.lower()}", headers=operator.headers)
    assert shown.json()["redeemed"] == 0
    no_currency = {**body, "code": code + "X", "currency": None}
    assert_problem(
        await http.post("/v1/coupons", json=no_currency, headers=operator.headers),
        422,
        "validation_error",
    )
    # The validity window is required, with a UTC offset, end after start: the 422 names the field.
    no_end = {key: value for key, value in body.items() if key != "valid_to"} | {"code": code + "Z"}
    naive = {**body, "code": code + "W", "valid_from": "2026-01-01T00:00:00"}
    backwards = {**body, "code": code + "V", "valid_to": "2025-01-01T00:00:00Z"}
    for wrong, field in ((no_end, "valid_to"), (naive, "valid_from"), (backwards, "valid_to")):
        refused = await http.post("/v1/coupons", json=wrong, headers=operator.headers)
        assert_problem(refused, 422, "validation_error")
        assert [error["loc"] for error in refused.json()["errors"]] == [["body", field]]
        assert refused.json()["detail"].startswith(f"the request is not valid: {field}: ")
    too_much = {**body, "code": code + "Y", "discount_type": "percentage", "discount_value": "150"}
    assert_problem(
        await http.post("/v1/coupons", json=too_much, headers=operator.headers),
        422,
        "validation_error",
    )


# -- carts ---------------------------------------------------------------------------------------


async def test_cart_lines(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, bob: Caller
) -> None:
    variant_id = await new_variant(http, operator, price="12.50")
    cart_id = await new_cart(http, alice, variant_id, quantity=2)
    merged = await http.post(
        f"/v1/carts/{cart_id}/items",
        json={"variant_id": variant_id, "quantity": 3},
        headers=alice.headers,
    )
    cart = merged.json()
    assert [(i["quantity"], i["unit_price"], i["line_total"]) for i in cart["items"]] == [
        (5, "12.50", "62.50")
    ]
    assert cart["subtotal"] == "62.50"
    item_id = cart["items"][0]["id"]

    changed = await http.patch(
        f"/v1/carts/{cart_id}/items/{item_id}", json={"quantity": 1}, headers=alice.headers
    )
    assert changed.json()["subtotal"] == "12.50"
    for quantity in (0, 100):
        bad = await http.post(
            f"/v1/carts/{cart_id}/items",
            json={"variant_id": variant_id, "quantity": quantity},
            headers=alice.headers,
        )
        assert_problem(bad, 422, "validation_error")
    over = await http.post(
        f"/v1/carts/{cart_id}/items",
        json={"variant_id": variant_id, "quantity": 99},
        headers=alice.headers,
    )
    assert_problem(over, 422, "quantity_out_of_range")

    # Another user's cart does not exist for them.
    assert_problem(
        await http.get(f"/v1/carts/{cart_id}", headers=bob.headers), 404, "cart_not_found"
    )
    assert_problem(
        await http.delete(f"/v1/carts/{cart_id}/items/{item_id}", headers=bob.headers),
        404,
        "cart_not_found",
    )
    removed = await http.delete(f"/v1/carts/{cart_id}/items/{item_id}", headers=alice.headers)
    assert removed.json()["items"] == []

    for code in ("XXX", "XAU"):
        assert_problem(
            await http.post("/v1/carts", json={"currency": code}, headers=alice.headers),
            422,
            "validation_error",
        )
    euro = await http.post("/v1/carts", json={"currency": "EUR"}, headers=alice.headers)
    no_price = await http.post(
        f"/v1/carts/{euro.json()['id']}/items",
        json={"variant_id": variant_id, "quantity": 1},
        headers=alice.headers,
    )
    assert_problem(no_price, 422, "no_price")


async def test_a_cart_holds_at_most_100_lines(
    http: httpx.AsyncClient, operator: Caller, alice: Caller
) -> None:
    skus = [f"L{uuid.uuid4().hex[:12]}" for _ in range(100)]
    many = (
        await http.post("/v1/products", json=product_body(*skus), headers=operator.headers)
    ).json()
    extra = await new_variant(http, operator)
    cart = (await http.post("/v1/carts", json={"currency": "USD"}, headers=alice.headers)).json()
    for variant in many["variants"]:
        added = await http.post(
            f"/v1/carts/{cart['id']}/items",
            json={"variant_id": variant["id"], "quantity": 1},
            headers=alice.headers,
        )
        assert added.status_code == 200
    one_more = await http.post(
        f"/v1/carts/{cart['id']}/items",
        json={"variant_id": extra, "quantity": 1},
        headers=alice.headers,
    )
    assert_problem(one_more, 422, "too_many_lines")


async def test_body_size_is_capped(http: httpx.AsyncClient, platform: Platform) -> None:
    huge = "x" * (platform.settings.api.max_body_bytes + 1)
    response = await http.post(
        "/v1/users", content=f'{{"email": "{huge}"}}', headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "body_too_large")


# -- orders --------------------------------------------------------------------------------------


async def test_orders_belong_to_their_buyer(
    http: httpx.AsyncClient, operator: Caller, alice: Caller, bob: Caller, platform: Platform
) -> None:
    variant_id = await new_variant(http, operator)
    cart_id = await new_cart(http, alice, variant_id, quantity=2)
    started = await http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id),
        headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    checkout_id = started.json()["checkout_id"]
    handle = platform.client.get_workflow_handle(f"checkout-{checkout_id}")
    await handle.result()

    status = (await http.get(f"/v1/checkouts/{checkout_id}", headers=alice.headers)).json()
    assert status["status"] == "completed"
    assert status["order"]["total_amount"] == "25.00"
    order_id = status["order"]["id"]
    order = (await http.get(f"/v1/orders/{order_id}", headers=alice.headers)).json()
    assert order["status"] == "fulfilling"
    assert [t["to_state"] for t in order["transitions"]] == [
        "pending_payment",
        "paid",
        "fulfilling",
    ]
    assert order["addresses"]["shipping"]["country"] == "US"
    assert len(order["shipments"]) == 1
    assert order["items"][0]["total_price"] == "25.00"
    listed = (await http.get("/v1/orders", headers=alice.headers)).json()["data"]
    assert [o["id"] for o in listed] == [order_id]

    assert_problem(
        await http.get(f"/v1/orders/{order_id}", headers=bob.headers), 404, "order_not_found"
    )
    assert (await http.get("/v1/orders", headers=bob.headers)).json()["data"] == []
    assert_problem(
        await http.get(f"/v1/checkouts/{checkout_id}", headers=bob.headers),
        404,
        "checkout_not_found",
    )
    seen_by_operator = await http.get(f"/v1/orders/{order_id}", headers=operator.headers)
    assert seen_by_operator.status_code == 200
    assert (
        await http.get(f"/v1/checkouts/{checkout_id}", headers=operator.headers)
    ).status_code == 200
    # Completed: too late to cancel (checkout_ended after the end).
    assert_problem(
        await http.post(f"/v1/checkouts/{checkout_id}/cancel", headers=alice.headers),
        409,
        "checkout_ended",
    )


async def test_healthz(http: httpx.AsyncClient, platform: Platform) -> None:
    healthy = await http.get("/healthz")
    assert healthy.status_code == 200, healthy.text
    assert set(healthy.json()["checks"]) >= {"postgres", "nats", "temporal", "queue:checkout"}

    broken = platform.settings.updated(nats={"url": f"nats://127.0.0.1:{free_port()}"})
    app = create_app(broken, temporal=platform.client)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        )
        sick = await client.get("/healthz")
        # Liveness ignores dependencies: a NATS outage must not get the API process restarted.
        alive = await client.get("/livez")
    body = assert_problem(sick, 503, "unhealthy")
    assert "nats" in body["detail"]
    assert body["checks"]["postgres"] == "ok"
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})


async def test_an_unreachable_database_is_503_with_retry_after(
    platform: Platform, alice: Caller
) -> None:
    """PostgreSQL down (stopped, restarting, refusing): 503 `service_unavailable` and
    Retry-After, so that clients retry with the same Idempotency-Key; never a 500."""
    down = platform.settings.updated(
        database={"url": f"postgresql://postgres@127.0.0.1:{free_port()}"}
    )
    app = create_app(down, temporal=platform.client)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        )
        answers = [
            await client.get(f"/v1/products/{uuid.uuid4()}"),
            await client.post("/v1/carts", headers=alice.headers, json={"currency": "USD"}),
            await client.get(f"/v1/checkouts/{uuid.uuid4()}", headers=alice.headers),
        ]
    for answer in answers:
        assert_problem(answer, 503, "service_unavailable")
        assert answer.headers["retry-after"] == "5"
