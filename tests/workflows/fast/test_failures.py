"""Every forward step failing for good: the failure code, exactly which compensations ran (newest
first), and the world back to nothing held and nobody charged (refunded after the capture)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from activities.cart import contract as cart
from activities.coupons import contract as coupons
from activities.inventory import contract as inventory
from activities.orders import contract as orders
from activities.payments import contract as payments
from activities.products import contract as products
from activities.shared import ActivityName
from activities.shipping import contract as shipping
from tests.workflows.fast.harness import Shop, undone
from tests.workflows.fast.world import Fail, Hang, Transient
from workflows.checkout.contract import FailureCode

pytestmark = pytest.mark.timeout(60)

# Each forward activity, a code its domain fails with, and how many compensations (of UNDO) are
# registered when it runs.
FORWARD: list[tuple[ActivityName[Any, Any], FailureCode, int]] = [
    (cart.LOCK, FailureCode.CART_LOCKED, 1),
    (products.PRICE_CART, FailureCode.PRICE_CHANGED, 3),
    (coupons.RESERVE, FailureCode.COUPON_INVALID, 3),
    (inventory.RESERVE, FailureCode.OUT_OF_STOCK, 3),
    (orders.CREATE, FailureCode.CONFLICT, 4),
    (payments.AUTHORIZE, FailureCode.PROVIDER_REFUSED, 5),
    (payments.CAPTURE, FailureCode.PAYMENT_DECLINED, 5),
    (inventory.COMMIT, FailureCode.INVENTORY_NOT_FOUND, 5),
    (coupons.CONFIRM, FailureCode.COUPON_NOT_FOUND, 5),
    (orders.MARK_PAID, FailureCode.INVALID_ORDER_TRANSITION, 5),
    (shipping.CREATE, FailureCode.SHIPPING_UNAVAILABLE, 6),
    (cart.CONVERT, FailureCode.CART_NOT_FOUND, 6),
    (orders.MARK_FULFILLING, FailureCode.INVALID_ORDER_TRANSITION, 6),
]
CASES = [
    pytest.param(step, code, registered, coupon, id=f"{step.name}-{'coupon' if coupon else 'none'}")
    for step, code, registered in FORWARD
    for coupon in (True, False)
    if coupon or step.domain != "coupons"
]
# After these, money was captured: the compensation refunds it.
AFTER_CAPTURE = {
    inventory.COMMIT.name,
    coupons.CONFIRM.name,
    orders.MARK_PAID.name,
    shipping.CREATE.name,
    cart.CONVERT.name,
    orders.MARK_FULFILLING.name,
}


def _payment_after(step: str) -> str | None:
    """The status body's payment once a checkout failing at `step` has compensated."""
    if step in AFTER_CAPTURE:
        return "refunded"
    if step == payments.CAPTURE.name:
        return "voided"  # the authorization was released, nothing was taken
    return None  # failed before any answer from the provider


def _order_after(step: str, registered: int) -> str | None:
    """The fake order once a checkout failing at `step` has compensated."""
    if registered < 4 or step == orders.CREATE.name:
        return None  # never created
    if step in AFTER_CAPTURE and step != orders.MARK_PAID.name:
        return "refunded"  # it was paid
    return "cancelled"


@pytest.mark.parametrize(("step", "code", "registered", "coupon"), CASES)
async def test_a_step_failing_for_good_undoes_everything_before_it(
    shop: Shop, step: ActivityName[Any, Any], code: FailureCode, registered: int, coupon: bool
) -> None:
    run = await shop.start(coupon=coupon, script={step.name: Fail(code)})

    body = await run.handle.result()

    assert (body.status, body.step) == ("failed", "compensating"), body
    assert body.failure is not None
    assert body.failure.code == code
    assert await run.compensations() == undone(registered, coupon=coupon)
    assert (body.payment.status if body.payment else None) == _payment_after(step.name)
    assert run.world.given_back() == []
    assert run.world.order == _order_after(step.name, registered)
    if step.name in AFTER_CAPTURE:
        assert run.world.refunded == run.world.captured > 0
    assert run.recorded() == body


async def test_a_declined_authorization_cancels_the_order(shop: Shop) -> None:
    run = await shop.start(payment="failed")

    body = await run.handle.result()

    assert body.failure is not None
    assert body.failure.code == FailureCode.PAYMENT_DECLINED
    assert "card_declined" in body.failure.message
    assert body.payment is not None
    assert body.payment.status == "failed"
    assert await run.compensations() == undone(5, coupon=False)
    assert run.world.given_back() == []
    assert run.world.order == "cancelled"
    assert run.world.called(payments.CAPTURE.name) == 0


async def test_a_failure_waits_for_the_sibling_steps_before_undoing(shop: Shop) -> None:
    held = Hang()
    run = await shop.start(
        coupon=True,
        script={
            coupons.RESERVE.name: Fail(FailureCode.COUPON_EXHAUSTED),
            inventory.RESERVE.name: held,
        },
    )
    await asyncio.wait_for(held.entered.wait(), 10)
    await asyncio.sleep(0.2)  # the coupon's failure is in; the stock is still being reserved

    assert run.world.called(inventory.RELEASE.name) == 0
    held.release()
    body = await run.handle.result()

    assert body.failure is not None
    assert body.failure.code == FailureCode.COUPON_EXHAUSTED
    # Released after it was reserved, not before: nothing stays held.
    assert run.world.stock == "released"
    assert run.world.calls.index(inventory.RESERVE.name) < run.world.calls.index(
        inventory.RELEASE.name
    )
    assert run.world.given_back() == []


@pytest.mark.parametrize("after_effect", [False, True], ids=["before", "after-the-write"])
async def test_transient_failures_are_retried_and_change_nothing_twice(
    shop: Shop, after_effect: bool
) -> None:
    flaky = Transient(times=2, after_effect=after_effect)
    steps: list[ActivityName[Any, Any]] = [
        cart.LOCK,
        inventory.RESERVE,
        orders.CREATE,
        payments.CAPTURE,
        shipping.CREATE,
    ]
    run = await shop.start(coupon=True, script={s.name: flaky for s in steps})

    body = await run.handle.result()

    assert body.status == "completed", body
    assert await run.compensations() == []
    assert all(run.world.attempts[s.name] == 3 for s in steps), run.world.attempts
    assert run.world.completed(coupon=True) == []
