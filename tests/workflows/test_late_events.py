"""Every provider event in every state, and requests that are decided once.

A payment event reaching a checkout that waits at needs_attention is acted on (the intent it names
is re-read and what it holds released), never acknowledged and dropped. A buyer's or operator's
request sent again under the same id answers the first call's result; an operator's cancel says
what happened to the money.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.api.shop import injected_fault, release_fails
from tests.platform import Platform
from tests.workflows.test_replay import at_step
from tools.seed import new_input
from workflows.checkout.client import CheckoutClient
from workflows.checkout.models import MoneyOutcome, PaymentEvent
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(180)


async def _second_intent(platform: Platform, checkout_id: uuid.UUID) -> str:
    """An authorization made for the checkout outside its workflow (a client that paid twice)."""
    key = platform.settings.stripe.api_key.get_secret_value()
    async with httpx.AsyncClient(base_url=platform.psp_url) as psp:
        created = await psp.post(
            "/v1/payment_intents",
            data={
                "amount": "1250",
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": "true",
                "capture_method": "manual",
                "metadata[checkout_id]": str(checkout_id),
            },
            headers={"Authorization": f"Bearer {key}"},
        )
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "requires_capture"
    return str(created.json()["id"])


async def _intent_status(platform: Platform, checkout_id: uuid.UUID, intent: str) -> str:
    rows = await platform.ledger(checkout_id)
    return str(next(row["status"] for row in rows if row["payment_intent"] == intent))


async def test_an_authorization_reported_while_parked_is_voided(platform: Platform) -> None:
    variant = await platform.seed.variant(stock=3)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, token="tok_declined")
    async with release_fails(platform, str(variant.variant_id)):
        handle = await platform.start(checkout)
        await at_step(handle, "needs_attention")
        intent = await _second_intent(platform, checkout.checkout_id)
        event = PaymentEvent(
            id=f"evt_{uuid.uuid4().hex}",
            type="payment_intent.amount_capturable_updated",
            intent=intent,
        )
        await handle.signal(CheckoutWorkflow.payment_event, event)
        for _ in range(150):  # acted on while the checkout still waits for an operator
            if await _intent_status(platform, checkout.checkout_id, intent) == "canceled":
                break
            await asyncio.sleep(0.2)
        assert await _intent_status(platform, checkout.checkout_id, intent) == "canceled"
        assert (await at_step(handle, "needs_attention")).status == "processing"
        await CheckoutClient(platform.client).resolve(checkout.checkout_id, "released by hand")

    body = await handle.result()
    assert body.status == "failed"


async def test_an_operator_cancel_of_a_zero_total_reports_nothing_to_refund(
    platform: Platform,
) -> None:
    free = await platform.seed.coupon(percent="100")
    checkout, handle = await platform.checkout(coupon_code=free)
    fault = injected_fault(
        platform.databases["shipping"],
        "shipments",
        f"ROW.checkout_id = '{checkout.checkout_id}'",
        sqlstate="40001",  # the booking's record fails (transient): held at create_shipment
        on="INSERT",
    )
    client = CheckoutClient(platform.client)
    async with fault:
        await at_step(handle, "create_shipment")
        answer = await client.force_cancel(checkout.checkout_id, "ops-cancel-1")

    assert answer.money == MoneyOutcome.NOTHING_TO_REFUND
    body = await handle.result()
    assert (body.status, body.payment and body.payment.status) == ("cancelled", "not_required")
    assert await platform.ledger(checkout.checkout_id) == []


async def test_a_buyer_cancel_sent_again_answers_the_first_result(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_3ds")
    await platform.wait_status(handle, "requires_action")
    client = CheckoutClient(platform.client)

    first = await client.request_cancel(checkout.checkout_id, "cancel:key-1")
    again = await client.request_cancel(checkout.checkout_id, "cancel:key-1")

    assert (first, again) == (True, True)  # not 409 checkout_ended: the same request
    body = await handle.result()
    assert body.status == "cancelled"
    assert await platform.invariants(checkout.checkout_id) == []
