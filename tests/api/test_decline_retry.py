"""A second try after a decline, through the HTTP API on the full stack (Temporal, PostgreSQL,
the Stripe sandbox through the official SDK): `on_decline: retry` waits at
`requires_payment_method` with a buyer-safe `payment.last_error`, and
`POST /v1/checkouts/{id}/payment` confirms the same intent with the new method."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import Caller
from tests.api.shop import Body, Shop
from tests.api.test_routes import assert_problem
from tests.platform import Platform

pytestmark = pytest.mark.timeout(180)

WAITING = "requires_payment_method"


@pytest.fixture
def shop(http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform) -> Shop:
    return Shop(http, operator, alice, platform)


def stripe(payment_method: str) -> dict[str, Any]:
    """The `payment` of a request paid with a Stripe payment method."""
    return {"provider": "stripe", "payment_method": payment_method}


async def _until(shop: Shop, checkout_id: str, status: str, within_s: float = 60) -> Body:
    deadline = asyncio.get_running_loop().time() + within_s
    while (body := await shop.status(checkout_id))["status"] != status:
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)
    return body


async def _declined(shop: Shop, payment_method: str) -> tuple[str, Body]:
    cart_id = await shop.cart((await shop.variant(price="30.00"), 1))
    checkout_id = await shop.checkout(cart_id, payment=stripe(payment_method), on_decline="retry")
    return checkout_id, await _until(shop, checkout_id, WAITING)


async def _pay(
    shop: Shop, checkout_id: str, payment: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {**shop.buyer.headers, **({"Idempotency-Key": key} if key else {})}
    return await shop.http.post(
        f"/v1/checkouts/{checkout_id}/payment", json={"payment": payment}, headers=headers
    )


async def test_a_decline_then_another_card_completes_with_one_intent_and_one_capture(
    shop: Shop,
) -> None:
    checkout_id, waiting = await _declined(shop, "pm_card_chargeDeclined")

    assert waiting["step"] == "awaiting_payment"
    assert waiting["payment"]["last_error"] == {
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
    }
    key = uuid.uuid4().hex
    first = await _pay(shop, checkout_id, stripe("pm_card_visa"), key)
    again = await _pay(shop, checkout_id, stripe("pm_card_visa"), key)  # a retry: same answer
    assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
    done = await shop.wait(checkout_id)

    assert done["status"] == "completed", done
    assert done["payment"]["status"] == "captured"
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert [(row["status"], row["captured"], row["refunded"]) for row in ledger] == [
        ("succeeded", 3000, 0)
    ]
    assert await shop.invariants(checkout_id) == []
    later = await _pay(shop, checkout_id, stripe("pm_card_visa"))
    assert_problem(later, 409, "checkout_ended")


async def test_a_stolen_card_reads_as_a_generic_decline_and_a_cancel_releases_it(
    shop: Shop,
) -> None:
    checkout_id, waiting = await _declined(shop, "pm_card_chargeDeclinedStolenCard")

    error = waiting["payment"]["last_error"]
    assert (error["decline_code"], error["message"]) == (
        "generic_decline",
        "Your card was declined.",
    )
    assert "stolen" not in str(waiting)
    # A payment method the provider does not know: the buyer may try another one.
    unknown = await _pay(shop, checkout_id, stripe("pm_nonsense"))
    assert unknown.status_code == 202, unknown.text
    waiting = await _until_error(shop, checkout_id, code="payment_method_unusable")
    assert waiting["payment"]["last_error"]["message"].startswith("This payment method cannot")
    # Declined again (the sandbox's older shape): it waits again, the same intent.
    again = await _pay(
        shop, checkout_id, {"provider": "sandbox", "token": "tok_insufficient_funds"}
    )
    assert again.status_code == 202, again.text
    waiting = await _until_error(shop, checkout_id, decline_code="insufficient_funds")
    assert waiting["payment"]["last_error"]["message"] == "Your card has insufficient funds."
    cancelled = await shop.http.post(
        f"/v1/checkouts/{checkout_id}/cancel", headers=shop.buyer.headers
    )
    assert cancelled.status_code == 202, cancelled.text
    done = await shop.wait(checkout_id)

    assert done["status"] == "cancelled", done
    ledger = await shop.platform.ledger(uuid.UUID(checkout_id))
    assert [(row["status"], row["authorized"], row["captured"]) for row in ledger] == [
        ("canceled", 0, 0)
    ]
    assert await shop.invariants(checkout_id) == []


async def _until_error(
    shop: Shop, checkout_id: str, *, code: str = "card_declined", decline_code: str | None = None
) -> Body:
    """Poll until the checkout waits again, with that error."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        body = await shop.status(checkout_id)
        error = (body.get("payment") or {}).get("last_error") or {}
        wanted = (error.get("code"), error.get("decline_code")) == (code, decline_code)
        if body["status"] == WAITING and wanted:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def test_a_new_method_is_refused_unless_the_checkout_waits_for_one(
    shop: Shop, bob: Caller
) -> None:
    cart_id = await shop.cart((await shop.variant(), 1))
    checkout_id = await shop.checkout(
        cart_id, payment=stripe("pm_card_threeDSecure2Required"), on_decline="retry"
    )
    await _until(shop, checkout_id, "requires_action")

    refused = await _pay(shop, checkout_id, stripe("pm_card_visa"))
    assert_problem(refused, 409, "checkout_not_awaiting_payment_method")
    assert_problem(await _pay(shop, checkout_id, {"provider": "stripe"}), 422, "validation_error")
    other = await shop.http.post(
        f"/v1/checkouts/{checkout_id}/payment",
        json={"payment": stripe("pm_card_visa")},
        headers=bob.headers,
    )
    assert_problem(other, 404, "checkout_not_found")
    assert (await shop.status(checkout_id))["status"] == "requires_action"
    cancelled = await shop.http.post(
        f"/v1/checkouts/{checkout_id}/cancel", headers=shop.buyer.headers
    )
    assert cancelled.status_code == 202, cancelled.text
    assert (await shop.wait(checkout_id))["status"] == "cancelled"
