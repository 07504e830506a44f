"""Cancelling at every step: the buyer's cancel is honoured before the capture and refused from
it on; an operator's cancel is honoured anywhere (with a refund after the capture); Temporal's
cancellation of the run undoes everything and still completes the run."""

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
from tests.workflows.fast.harness import Run, Shop, undone
from tests.workflows.fast.world import Hang
from workflows.checkout.client import CheckoutNotRunning, UpdateRefused
from workflows.checkout.contract import FailureCode
from workflows.checkout.models import MoneyOutcome

pytestmark = pytest.mark.timeout(60)

# Steps before the capture: the step held, and how many compensations are registered then.
BEFORE_CAPTURE: list[tuple[ActivityName[Any, Any], int]] = [
    (cart.LOCK, 1),
    (products.PRICE_CART, 3),
    (coupons.RESERVE, 3),
    (inventory.RESERVE, 3),
    (orders.CREATE, 4),
    (payments.AUTHORIZE, 5),
]
# Steps from the capture on, and how many compensations are registered then.
FROM_CAPTURE: list[tuple[ActivityName[Any, Any], int]] = [
    (payments.CAPTURE, 5),
    (inventory.COMMIT, 5),
    (coupons.CONFIRM, 5),
    (orders.MARK_PAID, 5),
    (shipping.CREATE, 6),
    (cart.CONVERT, 6),
    (orders.MARK_FULFILLING, 6),
]


# Activities that run together (with a coupon): a test holds the whole stage. Answering one
# while the cancel is decided would race the time-skipping test server, which refuses a workflow
# task cancelling an activity whose completion it holds but has not yet written (the run then
# never gets another task); the real server takes both.
STAGES: list[tuple[ActivityName[Any, Any], ...]] = [
    (products.PRICE_CART, coupons.RESERVE, inventory.RESERVE),
    (inventory.COMMIT, coupons.CONFIRM, orders.MARK_PAID),
    (cart.CONVERT, orders.MARK_FULFILLING),
]


def _ids(cases: list[tuple[ActivityName[Any, Any], int]]) -> list[str]:
    return [step.name for step, _ in cases]


def _stage(step: ActivityName[Any, Any]) -> tuple[ActivityName[Any, Any], ...]:
    return next((stage for stage in STAGES if step in stage), (step,))


async def _held_at(shop: Shop, step: ActivityName[Any, Any], **world: Any) -> tuple[Run, Held]:
    """A checkout (with a coupon) held in `step` and in every step running beside it."""
    held = Held({s.name: Hang() for s in _stage(step)})
    run = await shop.start(coupon=True, script=dict(held.hangs), **world)
    await asyncio.wait_for(held.entered(), 10)
    return run, held


class Held:
    """The hangs of a stage."""

    def __init__(self, hangs: dict[str, Hang]) -> None:
        self.hangs = hangs

    async def entered(self) -> None:
        """Wait until every step of the stage is held."""
        await asyncio.gather(*(hang.entered.wait() for hang in self.hangs.values()))

    def release(self) -> None:
        """Let every step of the stage go on."""
        for hang in self.hangs.values():
            hang.release()


@pytest.mark.parametrize(("step", "registered"), BEFORE_CAPTURE, ids=_ids(BEFORE_CAPTURE))
async def test_the_buyers_cancel_before_the_capture_undoes_everything(
    shop: Shop, step: ActivityName[Any, Any], registered: int
) -> None:
    run, _ = await _held_at(shop, step)

    assert await run.checkouts.request_cancel(run.id) is True
    body = await run.handle.result()

    assert body.status == "cancelled", body
    assert body.failure is not None
    assert body.failure.code == FailureCode.CANCELLED
    assert await run.compensations() == undone(registered, coupon=True)
    assert run.world.given_back() == []
    # The attempts in flight were cancelled.
    assert all(run.world.called(s.name) == 0 for s in _stage(step))
    assert run.world.called(payments.CAPTURE.name) == 0
    assert run.recorded() == body


async def test_the_buyers_cancel_while_the_buyer_is_asked_to_act(shop: Shop) -> None:
    run = await shop.start(coupon=True, payment="requires_action")
    await run.wait_for("requires_action", "awaiting_payment")

    assert await run.checkouts.request_cancel(run.id) is True
    body = await run.handle.result()

    assert body.status == "cancelled"
    assert body.payment is None  # no 3-D Secure link is left for the buyer
    assert await run.compensations() == undone(5, coupon=True)
    assert run.world.intent == "canceled"
    assert run.world.given_back() == []


async def test_the_buyers_cancel_while_the_provider_decides_says_the_payment_was_voided(
    shop: Shop,
) -> None:
    run = await shop.start(payment="processing")
    await run.wait_for("processing", "awaiting_payment")

    assert await run.checkouts.request_cancel(run.id) is True
    body = await run.handle.result()

    assert body.status == "cancelled"
    # The intent was cancelled undecided: the answer says so, not "processing".
    assert run.world.intent == "canceled"
    assert body.payment is not None
    assert body.payment.status == "voided"
    assert run.world.given_back() == []


@pytest.mark.parametrize(("step", "registered"), FROM_CAPTURE, ids=_ids(FROM_CAPTURE))
async def test_the_buyers_cancel_from_the_capture_on_is_refused(
    shop: Shop, step: ActivityName[Any, Any], registered: int
) -> None:
    run, hang = await _held_at(shop, step)

    with pytest.raises(UpdateRefused) as refused:
        await run.checkouts.request_cancel(run.id)
    await run.handle.signal("cancel")  # the old signal is ignored as well
    hang.release()
    body = await run.handle.result()

    assert refused.value.code == FailureCode.ALREADY_CAPTURED
    assert body.status == "completed", body
    assert await run.compensations() == []
    assert run.world.completed(coupon=True) == []


async def test_a_cancel_after_the_end_finds_no_checkout_to_cancel(shop: Shop) -> None:
    run = await shop.start()
    assert (await run.handle.result()).status == "completed"

    with pytest.raises(CheckoutNotRunning):
        await run.checkouts.request_cancel(run.id)
    with pytest.raises(CheckoutNotRunning):
        await run.checkouts.force_cancel(run.id)
    assert run.world.completed(coupon=False) == []


@pytest.mark.parametrize(
    ("step", "registered"),
    BEFORE_CAPTURE + FROM_CAPTURE[1:],
    ids=_ids(BEFORE_CAPTURE + FROM_CAPTURE[1:]),
)
async def test_an_operators_cancel_undoes_everything_and_refunds_after_the_capture(
    shop: Shop, step: ActivityName[Any, Any], registered: int
) -> None:
    run, _ = await _held_at(shop, step)
    captured = run.world.captured > 0

    answer = await run.checkouts.force_cancel(run.id)
    body = await run.handle.result()

    # The answer says what became of the money, as the world saw it happen.
    if captured:
        assert answer.money == MoneyOutcome.REFUNDED
    elif step == payments.AUTHORIZE:  # the authorization in flight is released, if it exists
        assert answer.money in (MoneyOutcome.VOIDED, MoneyOutcome.NOTHING_TO_REFUND)
    else:
        assert answer.money == MoneyOutcome.NOTHING_TO_REFUND

    assert body.status == "cancelled", body
    assert await run.compensations() == undone(registered, coupon=True)
    assert run.world.given_back() == []
    assert run.world.refunded == run.world.captured
    assert (body.payment.status if body.payment else None) == ("refunded" if captured else None)
    paid = captured and orders.MARK_PAID not in _stage(step)
    created = registered > 4  # the order exists (its creation was not the step held)
    assert run.world.order == ("refunded" if paid else "cancelled" if created else None)


async def test_an_operators_cancel_during_the_capture_refunds_once_it_is_known(
    shop: Shop,
) -> None:
    run, hang = await _held_at(shop, payments.CAPTURE)

    # Answered no sooner than the capture is known (perhaps only once the refund ran).
    cancel = asyncio.ensure_future(run.checkouts.force_cancel(run.id))
    await asyncio.sleep(0.2)
    assert run.world.called(payments.VOID.name) == 0  # the capture is never left unknown
    hang.release()
    await cancel
    body = await run.handle.result()

    assert body.status == "cancelled"
    assert run.world.captured > 0
    assert run.world.given_back() == []


@pytest.mark.parametrize(
    ("step", "registered"),
    [(cart.LOCK, 1), (orders.CREATE, 4), (payments.CAPTURE, 5), (shipping.CREATE, 6)],
    ids=["lock", "order", "capture", "shipment"],
)
async def test_cancelling_the_run_undoes_everything_and_completes_it(
    shop: Shop, step: ActivityName[Any, Any], registered: int
) -> None:
    run, hang = await _held_at(shop, step)

    await run.handle.cancel()
    if step == payments.CAPTURE:
        await asyncio.sleep(0.2)
        hang.release()  # the capture runs to its end, then is refunded
    body = await run.handle.result()

    assert body.status == "cancelled", body
    assert await run.compensations() == undone(registered, coupon=True)
    assert run.world.given_back() == []
