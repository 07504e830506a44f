"""Waiting for the payment: 3-D Secure, an async decision, provider events duplicated, out of
order or for another intent, the payment window expiring, and a zero total that takes none."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from activities.payments import contract as payments
from tests.workflows.fast.harness import Run, Shop, undone
from tests.workflows.fast.world import Hang
from workflows.checkout.client import CheckoutNotRunning
from workflows.checkout.contract import PAYMENT_NOT_REQUIRED, FailureCode
from workflows.checkout.models import PaymentEvent

pytestmark = pytest.mark.timeout(60)

APPROVED = "payment_intent.amount_capturable_updated"
FAILED = "payment_intent.payment_failed"


def _event(
    run: Run, event_id: str, kind: str = APPROVED, intent: str | None = None
) -> PaymentEvent:
    return PaymentEvent(id=event_id, type=kind, intent=intent or run.world.intent_id)


async def test_3ds_approved_completes(shop: Shop) -> None:
    run = await shop.start(coupon=True, payment="requires_action")

    waiting = await run.wait_for("requires_action", "awaiting_payment")
    assert waiting.payment is not None
    assert waiting.payment.next_action is not None
    assert run.world.intent_id in waiting.payment.next_action.url
    assert run.recorded() == waiting  # the buyer's link is published at once
    run.world.approve()
    await run.checkouts.deliver_payment_event(run.id, _event(run, "evt_ok"))
    body = await run.handle.result()

    assert body.status == "completed", body
    assert body.payment is not None
    assert body.payment.next_action is None
    assert run.world.completed(coupon=True) == []


async def test_3ds_failed_declines_and_undoes_everything(shop: Shop) -> None:
    run = await shop.start(payment="requires_action")
    await run.wait_for("requires_action")

    run.world.approve(False)
    await run.checkouts.deliver_payment_event(run.id, _event(run, "evt_failed", FAILED))
    body = await run.handle.result()

    assert body.failure is not None
    assert body.failure.code == FailureCode.PAYMENT_DECLINED
    assert await run.compensations() == undone(5, coupon=False)
    assert run.world.given_back() == []


async def test_an_async_payment_is_settled_by_rereading_without_any_event(shop: Shop) -> None:
    run = await shop.start(payment="processing", approved=True)

    body = await run.handle.result()  # the re-read falls due in skipped time

    assert body.status == "completed", body
    assert run.world.called(payments.REFRESH.name) == 1
    assert run.world.completed(coupon=False) == []


async def test_duplicate_stale_and_foreign_events_change_nothing(shop: Shop) -> None:
    run = await shop.start(payment="requires_action")
    await run.wait_for("requires_action")

    # A "failed" event for the intent arrives first (stale or forged): the intent is re-read,
    # still waits, and so does the checkout. A duplicate is dropped; another intent's event too.
    stale = _event(run, "evt_stale", FAILED)
    for event in (stale, stale, _event(run, "evt_other", intent="pi_someone_else")):
        await run.checkouts.deliver_payment_event(run.id, event)
    await asyncio.sleep(0.3)
    still = await run.status()
    assert (still.status, still.step) == ("requires_action", "awaiting_payment")
    assert run.world.called(payments.REFRESH.name) == 1

    run.world.approve()
    await run.checkouts.deliver_payment_event(run.id, _event(run, "evt_ok"))
    await run.checkouts.deliver_payment_event(run.id, _event(run, "evt_ok"))
    body = await run.handle.result()

    assert body.status == "completed", body
    assert run.world.called(payments.CAPTURE.name) == 1
    assert run.world.completed(coupon=False) == []


async def test_an_event_arriving_before_the_authorization_answers_is_not_lost(
    shop: Shop,
) -> None:
    hang = Hang()
    run = await shop.start(payment="requires_action", script={payments.AUTHORIZE.name: hang})
    await asyncio.wait_for(hang.entered.wait(), 10)

    run.world.approve()  # the buyer approved before the checkout heard of the challenge
    await run.checkouts.deliver_payment_event(run.id, _event(run, "evt_early"))
    hang.release()
    body = await run.handle.result()

    assert body.status == "completed", body
    assert run.world.completed(coupon=False) == []


@pytest.mark.parametrize("window_s", [120, 900])
async def test_no_answer_within_the_payment_window_expires(shop: Shop, window_s: int) -> None:
    run = await shop.start(coupon=True, payment="requires_action", payment_timeout_s=window_s)

    body = await run.handle.result()  # nobody approves: the window passes in skipped time

    assert (body.status, body.step) == ("expired", "compensating")
    assert body.failure is not None
    assert body.failure.code == FailureCode.PAYMENT_TIMEOUT
    assert body.payment is None
    asked, released = (run.world.scheduled[a.name] for a in (payments.AUTHORIZE, payments.VOID))
    assert run.input_window() <= released - asked < run.input_window() + timedelta(seconds=30)
    # The intent was re-read while waiting (a lost webhook decides nothing), then released.
    assert run.world.called(payments.REFRESH.name) >= window_s // 30 - 1
    assert await run.compensations() == undone(5, coupon=True)
    assert run.world.intent == "canceled"
    assert run.world.given_back() == []
    assert run.recorded() == body


async def test_an_approval_after_the_window_is_too_late(shop: Shop) -> None:
    run = await shop.start(payment="requires_action", payment_timeout_s=60)
    await run.wait_for("requires_action")

    body = await run.handle.result()
    run.world.approve()
    with pytest.raises(CheckoutNotRunning):
        await run.checkouts.deliver_payment_event(run.id, _event(run, "evt_late"))

    assert body.status == "expired"
    assert run.world.captured == 0
    assert run.world.given_back() == []


async def test_a_zero_total_completes_without_taking_a_payment(shop: Shop) -> None:
    run = await shop.start(coupon=True, discount_percent=100)

    body = await run.handle.result()

    assert body.status == "completed", body
    assert body.order is not None
    assert body.order.total_amount == 0
    assert body.payment is not None
    assert body.payment.status == PAYMENT_NOT_REQUIRED
    assert not [name for name in run.world.calls if name.startswith("payments.")]
    assert run.world.completed(coupon=True) == []
