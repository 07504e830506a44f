"""The two shapes of `payment` in `POST /v1/checkouts` (README, "The HTTP API"): Stripe's
`{provider: "stripe", payment_method}` and the sandbox's older `{provider: "sandbox", token}`."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import Caller
from tests.api.shop import Shop
from tests.api.test_routes import assert_problem, checkout_body
from tests.platform import Platform

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def shop(http: httpx.AsyncClient, operator: Caller, alice: Caller, platform: Platform) -> Shop:
    return Shop(http, operator, alice, platform)


def stripe(payment_method: str) -> dict[str, Any]:
    """The `payment` of a checkout paid with a Stripe payment method."""
    return {"provider": "stripe", "payment_method": payment_method}


async def test_a_stripe_payment_method_completes(shop: Shop) -> None:
    cart_id = await shop.cart((await shop.variant(price="30.00"), 1))
    checkout_id = await shop.checkout(cart_id, payment=stripe("pm_card_visa"))
    done = await shop.wait(checkout_id)
    assert done["status"] == "completed", done
    assert done["order"]["total_amount"] == "30.00"
    assert done["payment"]["status"] == "captured"
    assert await shop.invariants(checkout_id) == []


@pytest.mark.parametrize("payment_method", ["pm_card_chargeDeclined", "pm_nonsense"])
async def test_a_declined_or_unknown_payment_method_fails(shop: Shop, payment_method: str) -> None:
    cart_id = await shop.cart((await shop.variant(), 1))
    checkout_id = await shop.checkout(cart_id, payment=stripe(payment_method))
    done = await shop.wait(checkout_id)
    assert (done["status"], done["failure"]["code"]) == ("failed", "payment_declined"), done
    assert await shop.invariants(checkout_id) == []


async def test_a_3ds_payment_method_requires_action(shop: Shop) -> None:
    cart_id = await shop.cart((await shop.variant(), 1))
    checkout_id = await shop.checkout(cart_id, payment=stripe("pm_card_threeDSecure2Required"))
    deadline = asyncio.get_running_loop().time() + 60
    while (waiting := await shop.status(checkout_id))["status"] != "requires_action":
        assert asyncio.get_running_loop().time() < deadline, waiting
        await asyncio.sleep(0.1)
    url = waiting["payment"]["next_action"]["url"]
    assert (await shop.http.get(url)).status_code == 200  # the buyer passes 3-D Secure
    assert (await shop.wait(checkout_id))["status"] == "completed"


@pytest.mark.parametrize(
    "payment",
    [
        {"provider": "stripe", "payment_method": "pm_card_visa", "token": "tok_visa"},
        {"provider": "sandbox", "token": "tok_visa", "payment_method": "pm_card_visa"},
        {"provider": "adyen", "payment_method": "pm_card_visa"},
        {"provider": "stripe", "token": "tok_visa"},
        {"payment_method": "pm_card_visa"},
    ],
)
async def test_a_mixed_or_unknown_payment_shape_is_refused(
    shop: Shop, payment: dict[str, Any]
) -> None:
    cart_id = await shop.cart((await shop.variant(), 1))
    assert_problem(await shop.start(cart_id, payment=payment), 422, "validation_error")


async def test_the_same_key_replays_a_stripe_shaped_checkout(shop: Shop) -> None:
    cart_id = await shop.cart((await shop.variant(), 1))
    key = uuid.uuid4().hex
    first = await shop.start(cart_id, key=key, payment=stripe("pm_card_visa"))
    assert first.status_code == 202, first.text
    again = await shop.start(cart_id, key=key, payment=stripe("pm_card_visa"))
    assert again.status_code == 202, again.text
    assert again.json()["checkout_id"] == first.json()["checkout_id"]
    # The other shape is another body, even when it names the same behaviour.
    other = await shop.http.post(
        "/v1/checkouts",
        json=checkout_body(cart_id, "tok_visa"),
        headers={**shop.buyer.headers, "Idempotency-Key": key},
    )
    assert_problem(other, 422, "idempotency_key_mismatch")
    assert (await shop.wait(first.json()["checkout_id"]))["status"] == "completed"
