"""CheckoutWorkflow against real Temporal, PostgreSQL and the payment-provider sandbox.

Each failure test injects one failure and asserts exactly which compensations ran, what each
domain holds afterwards, and that every invariant (docs/reference/invariants.md) still holds.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.platform import Platform
from tools.seed import new_input
from workflows.checkout.models import CheckoutStatusBody, PaymentEvent
from workflows.checkout.workflow import CheckoutWorkflow

pytestmark = pytest.mark.timeout(120)


async def _one(platform: Platform, domain: str, sql: str, **params: Any) -> Any:
    async with platform.databases[domain].begin() as session:
        return (await session.execute(text(sql), params)).one_or_none()


async def _all(platform: Platform, domain: str, sql: str, **params: Any) -> list[Any]:
    async with platform.databases[domain].begin() as session:
        return list((await session.execute(text(sql), params)).all())


async def _reservations(platform: Platform, checkout_id: uuid.UUID) -> list[str]:
    rows = await _all(
        platform,
        "inventory",
        "SELECT status FROM inventory_reservations WHERE checkout_id = :c",
        c=checkout_id,
    )
    return sorted(r.status for r in rows)


async def _stock(platform: Platform, variant_id: uuid.UUID) -> tuple[int, int]:
    row = await _one(
        platform,
        "inventory",
        "SELECT total_stock, reserved FROM inventory_items WHERE variant_id = :v",
        v=variant_id,
    )
    return row.total_stock, row.reserved


async def _compensations(handle: Any) -> list[str]:
    ran: list[str] = await handle.query(CheckoutWorkflow.compensations)
    return ran


async def test_happy_path_with_a_percentage_coupon(platform: Platform) -> None:
    variant = await platform.seed.variant(price="19.99", stock=10)
    code = await platform.seed.coupon(percent="15")
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 3)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, coupon_code=code.lower())

    body = await (await platform.start(checkout)).result()

    # 59.97 - 15 % (8.9955 -> 9.00) = 50.97
    assert body.status == "completed", body
    assert body.step == "complete"
    assert body.order is not None
    assert str(body.order.total_amount) == "50.97"
    assert body.order.order_number.startswith("ORD-")
    assert body.payment is not None
    assert body.payment.status == "captured"
    order = await _one(
        platform,
        "orders",
        "SELECT id, status, discount_amount FROM orders WHERE checkout_id = :c",
        c=checkout.checkout_id,
    )
    assert order.status == "fulfilling"
    assert str(order.discount_amount) == "9.0000"
    transitions = await _all(
        platform,
        "orders",
        "SELECT to_state FROM order_state_transitions WHERE order_id = :o ORDER BY changed_at",
        o=order.id,
    )
    assert [t.to_state for t in transitions] == ["pending_payment", "paid", "fulfilling"]
    assert await _stock(platform, variant.variant_id) == (7, 0)
    assert await _reservations(platform, checkout.checkout_id) == ["committed"]
    redemption = await _one(
        platform,
        "coupons",
        "SELECT status, order_id FROM coupon_redemptions WHERE checkout_id = :c",
        c=checkout.checkout_id,
    )
    assert (redemption.status, redemption.order_id) == ("confirmed", order.id)
    cart = await _one(platform, "cart", "SELECT status FROM carts WHERE id = :c", c=cart_id)
    assert cart.status == "converted"
    shipments = await _all(
        platform,
        "shipping",
        "SELECT tracking_number FROM shipments WHERE order_id = :o",
        o=order.id,
    )
    assert len(shipments) == 1
    assert shipments[0].tracking_number
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(5097, 0)]
    steps = await _all(
        platform,
        "checkout",
        "SELECT step_name, status FROM checkout_steps WHERE session_id = :c",
        c=checkout.checkout_id,
    )
    assert {s.step_name: s.status for s in steps}["capture_payment"] == "completed"
    assert await _compensations(platform.histories[-1]) == []
    assert await platform.invariants(checkout.checkout_id) == []


async def test_out_of_stock_releases_everything(platform: Platform) -> None:
    checkout, handle = await platform.checkout(quantity=3, stock=2)

    body = await handle.result()

    assert (body.status, body.failure and body.failure.code) == ("failed", "out_of_stock")
    assert await _compensations(handle) == ["release_inventory", "unlock_cart"]
    assert await _reservations(platform, checkout.checkout_id) == []
    assert await platform.ledger(checkout.checkout_id) == []
    assert await platform.invariants(checkout.checkout_id) == []


async def test_invalid_coupon_gives_back_the_stock_reserved_beside_it(platform: Platform) -> None:
    checkout, handle = await platform.checkout(coupon_code="NO-SUCH-COUPON")

    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "coupon_invalid"
    assert await _compensations(handle) == ["release_inventory", "release_coupon", "unlock_cart"]
    # The reservation ran concurrently and succeeded; its compensation released it.
    assert await _reservations(platform, checkout.checkout_id) == ["released"]
    assert await platform.invariants(checkout.checkout_id) == []


async def test_exhausted_coupon(platform: Platform) -> None:
    code = await platform.seed.coupon(fixed="5.00", max_redemptions=1)
    first, first_handle = await platform.checkout(coupon_code=code)
    assert (await first_handle.result()).status == "completed"

    second, handle = await platform.checkout(coupon_code=code)
    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "coupon_exhausted"
    assert await _compensations(handle) == ["release_inventory", "release_coupon", "unlock_cart"]
    assert await platform.invariants(first.checkout_id, second.checkout_id) == []


async def test_price_changed_since_the_cart_was_filled(platform: Platform) -> None:
    variant = await platform.seed.variant(price="10.00")
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 1)])
    await platform.seed.reprice(variant, "12.00")
    checkout = new_input(user_id=user_id, cart_id=cart_id)

    handle = await platform.start(checkout)
    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "price_changed"
    assert await _compensations(handle) == ["release_inventory", "unlock_cart"]
    assert await _reservations(platform, checkout.checkout_id) == ["released"]
    assert await platform.invariants(checkout.checkout_id) == []


@pytest.mark.parametrize(
    ("token", "provider_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("tok_insufficient_funds", "insufficient_funds"),
    ],
)
async def test_declined_payment_cancels_the_order(
    platform: Platform, token: str, provider_code: str
) -> None:
    checkout, handle = await platform.checkout(token=token)

    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "payment_declined"
    assert provider_code in body.failure.message
    assert await _compensations(handle) == [
        "void_payment",
        "cancel_order",
        "release_inventory",
        "unlock_cart",
    ]
    order = await _one(
        platform,
        "orders",
        "SELECT status FROM orders WHERE checkout_id = :c",
        c=checkout.checkout_id,
    )
    assert order.status == "cancelled"
    payment = await _one(
        platform,
        "payments",
        "SELECT status, last_error_code FROM payments WHERE checkout_id = :c",
        c=checkout.checkout_id,
    )
    assert (payment.status, payment.last_error_code) == ("failed", provider_code)
    assert await platform.invariants(checkout.checkout_id) == []


async def _approve(body: CheckoutStatusBody) -> None:
    assert body.payment is not None
    assert body.payment.next_action is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(body.payment.next_action.url)
        assert response.status_code == 200


async def test_3ds_approved_completes(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_3ds")

    waiting = await platform.wait_status(handle, "requires_action")
    assert waiting.step == "awaiting_payment"
    await _approve(waiting)
    body = await handle.result()

    assert body.status == "completed"
    assert await platform.invariants(checkout.checkout_id) == []


async def test_3ds_failure_declines(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_3ds_fail")

    await _approve(await platform.wait_status(handle, "requires_action"))
    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "payment_declined"
    assert await _compensations(handle) == [
        "void_payment",
        "cancel_order",
        "release_inventory",
        "unlock_cart",
    ]
    assert await platform.invariants(checkout.checkout_id) == []


async def test_async_authorization_completes_after_its_webhook(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_async")

    body = await handle.result()

    assert body.status == "completed"
    assert await platform.invariants(checkout.checkout_id) == []


async def test_flaky_provider_charges_exactly_once(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_flaky", price="25.00")

    body = await handle.result()

    assert body.status == "completed", body
    ledger = await platform.ledger(checkout.checkout_id)
    assert len(ledger) == 1, ledger  # retries replayed the first intent, never made a second
    assert (ledger[0]["authorized"], ledger[0]["captured"]) == (2500, 2500)
    attempts = await _all(
        platform,
        "payments",
        "SELECT t.type, t.status FROM payment_transactions t "
        "JOIN payments p ON p.id = t.payment_id "
        "WHERE p.checkout_id = :c ORDER BY t.created_at",
        c=checkout.checkout_id,
    )
    assert [(a.type, a.status) for a in attempts] == [
        ("authorize", "succeeded"),
        ("capture", "succeeded"),
    ]
    assert await platform.invariants(checkout.checkout_id) == []


async def test_capture_declined_refunds_nothing_and_releases_everything(platform: Platform) -> None:
    code = await platform.seed.coupon(percent="10")
    checkout, handle = await platform.checkout(token="tok_capture_fails", coupon_code=code)

    body = await handle.result()

    assert body.failure is not None
    assert body.failure.code == "payment_declined"
    # The answer says what became of the authorization: released, not still held.
    assert body.payment is not None
    assert body.payment.status == "voided"
    assert await _compensations(handle) == [
        "void_payment",
        "cancel_order",
        "release_inventory",
        "release_coupon",
        "unlock_cart",
    ]
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["status"], r["captured"], r["refunded"]) for r in ledger] == [("canceled", 0, 0)]
    assert await _reservations(platform, checkout.checkout_id) == ["released"]
    assert await platform.invariants(checkout.checkout_id) == []


async def test_cancel_while_waiting_for_the_payment_action(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_3ds")
    await platform.wait_status(handle, "requires_action")

    await handle.signal(CheckoutWorkflow.cancel)
    body = await handle.result()

    assert (body.status, body.failure and body.failure.code) == ("cancelled", "cancelled")
    assert await _compensations(handle) == [
        "void_payment",
        "cancel_order",
        "release_inventory",
        "unlock_cart",
    ]
    ledger = await platform.ledger(checkout.checkout_id)
    assert [r["status"] for r in ledger] == ["canceled"]
    assert await platform.invariants(checkout.checkout_id) == []


async def test_duplicate_and_out_of_order_payment_events(platform: Platform) -> None:
    checkout, handle = await platform.checkout(token="tok_3ds")
    waiting = await platform.wait_status(handle, "requires_action")
    intent = (await platform.ledger(checkout.checkout_id))[0]["payment_intent"]

    # A "failed" event for our intent arrives first (stale or forged); the workflow re-reads the
    # intent, finds it still waiting, and keeps waiting. Duplicates and foreign intents are noise.
    stale = PaymentEvent(id="evt_stale", type="payment_intent.payment_failed", intent=intent)
    for event in (
        stale,
        stale,
        PaymentEvent(
            id="evt_other", type="payment_intent.amount_capturable_updated", intent="pi_x"
        ),
    ):
        await handle.signal(CheckoutWorkflow.payment_event, event)
    await asyncio.sleep(1)
    still = await handle.query(CheckoutWorkflow.status)
    assert still.status == "requires_action"

    await _approve(waiting)
    body = await handle.result()

    assert body.status == "completed"
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(1999, 0)]
    assert await platform.invariants(checkout.checkout_id) == []


async def test_forty_checkouts_for_ten_units(platform: Platform) -> None:
    variant = await platform.seed.variant(price="5.00", stock=10)
    checkouts = []
    for _ in range(40):
        user_id = uuid.uuid4()
        cart_id = await platform.seed.cart(user_id, [(variant, 1)])
        checkouts.append(new_input(user_id=user_id, cart_id=cart_id))

    handles = await asyncio.gather(*(platform.start(c) for c in checkouts))
    bodies = await asyncio.gather(*(h.result() for h in handles))

    outcomes = sorted((b.status, b.failure.code.value if b.failure else None) for b in bodies)
    assert outcomes.count(("completed", None)) == 10
    assert outcomes.count(("failed", "out_of_stock")) == 30
    assert await _stock(platform, variant.variant_id) == (0, 0)
    assert await platform.invariants(*(c.checkout_id for c in checkouts)) == []


async def test_twenty_checkouts_on_a_five_use_coupon(platform: Platform) -> None:
    code = await platform.seed.coupon(percent="20", max_redemptions=5)
    variant = await platform.seed.variant(price="10.00", stock=100)
    checkouts = []
    for _ in range(20):
        user_id = uuid.uuid4()
        cart_id = await platform.seed.cart(user_id, [(variant, 1)])
        checkouts.append(new_input(user_id=user_id, cart_id=cart_id, coupon_code=code))

    handles = await asyncio.gather(*(platform.start(c) for c in checkouts))
    bodies = await asyncio.gather(*(h.result() for h in handles))

    codes = [b.failure.code.value if b.failure else b.status for b in bodies]
    assert codes.count("completed") == 5
    assert codes.count("coupon_exhausted") == 15
    confirmed = await _one(
        platform,
        "coupons",
        "SELECT count(*) AS n FROM coupon_redemptions r JOIN coupons c ON c.id = r.coupon_id "
        "WHERE c.code = :code AND r.status = 'confirmed'",
        code=code,
    )
    assert confirmed.n == 5
    assert await platform.invariants(*(c.checkout_id for c in checkouts)) == []


async def test_a_step_failing_for_good_after_capture_refunds_and_cancels(
    platform: Platform,
) -> None:
    code = await platform.seed.coupon(percent="10")
    variant = await platform.seed.variant(price="30.00", stock=5)
    user_id = uuid.uuid4()
    cart_id = await platform.seed.cart(user_id, [(variant, 2)])
    checkout = new_input(user_id=user_id, cart_id=cart_id, coupon_code=code)
    # The sandbox carrier serves no service to this postal code: create_shipment fails for good.
    checkout = checkout.model_copy(
        update={
            "shipping_address": checkout.shipping_address.model_copy(
                update={"postal_code": "00000"}
            )
        }
    )

    handle = await platform.start(checkout)
    body = await handle.result()

    assert body.status == "failed"
    assert body.failure is not None
    assert body.failure.code == "address_unserviceable"
    assert await _compensations(handle) == [
        "cancel_shipment",
        "void_payment",
        "cancel_order",
        "release_inventory",
        "release_coupon",
        "unlock_cart",
    ]
    ledger = await platform.ledger(checkout.checkout_id)
    assert [(r["captured"], r["refunded"]) for r in ledger] == [(5400, 5400)]
    order = await _one(
        platform,
        "orders",
        "SELECT status FROM orders WHERE checkout_id = :c",
        c=checkout.checkout_id,
    )
    assert order.status == "refunded"
    # The units taken at capture are back on the shelf.
    assert await _stock(platform, variant.variant_id) == (5, 0)
    assert await platform.invariants(checkout.checkout_id) == []
