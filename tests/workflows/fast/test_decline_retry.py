"""A second try after a decline (`on_decline: retry`): the checkout waits at
`requires_payment_method`, the buyer's next method confirms the same intent, and the payment
window, a cancel, the bound on attempts and the default (`fail`) end it as before."""

from __future__ import annotations

from typing import Any

import pytest

from activities.payments import contract as payments
from tests.workflows.fast.harness import Run, Shop, undone
from workflows.checkout.client import CheckoutNotRunning, UpdateRefused
from workflows.checkout.contract import CHECKOUT_STATUS, FailureCode
from workflows.checkout.models import CheckoutStatusBody, PaymentEvent
from workflows.checkout.payment import MAX_CONFIRMATIONS

pytestmark = pytest.mark.timeout(60)

WAITING = "requires_payment_method"


async def _declined(shop: Shop, **world: Any) -> tuple[Run, CheckoutStatusBody]:
    run = await shop.start(payment="failed", on_decline="retry", **world)
    body = await run.wait_for(WAITING, "awaiting_payment")
    return run, body


async def _confirmed(run: Run, attempts: int) -> None:
    """Wait until the checkout waits again after its `attempts`-th new method."""
    await run.wait_for(WAITING, until=lambda _: len(run.world.confirmed) == attempts)


async def _search_status(run: Run) -> str | None:
    described = await run.handle.describe()
    return described.typed_search_attributes.get(CHECKOUT_STATUS)


async def test_a_new_method_after_a_decline_completes_with_the_same_intent(shop: Shop) -> None:
    run, waiting = await _declined(shop, coupon=True)

    assert waiting.payment is not None
    assert waiting.payment.last_error is not None
    assert waiting.payment.last_error.code == "card_declined"
    assert waiting.payment.last_error.message == "Your card was declined."
    assert run.recorded() == waiting  # published: the API serves it at once
    assert await _search_status(run) == WAITING
    assert run.world.stock == "held"  # reservations held while the buyer picks another card
    await run.checkouts.retry_payment(run.id, "pm_card_visa", update_id="retry-1")
    await run.checkouts.retry_payment(run.id, "pm_card_visa", update_id="retry-1")  # a repeat
    body = await run.handle.result()

    assert body.status == "completed", body
    assert run.world.confirmed == ["pm_card_visa"]
    assert run.world.called(payments.AUTHORIZE.name) == 1  # one intent
    assert run.world.called(payments.CONFIRM.name) == 1
    assert run.world.called(payments.CAPTURE.name) == 1
    assert run.world.completed(coupon=True) == []
    assert await _search_status(run) == "completed"


async def test_declined_again_waits_again_then_a_good_card_completes(shop: Shop) -> None:
    run, _ = await _declined(shop)

    await run.checkouts.retry_payment(run.id, "pm_card_chargeDeclinedInsufficientFunds")
    await _confirmed(run, 1)
    await run.checkouts.retry_payment(run.id, "pm_card_visa")
    body = await run.handle.result()

    assert body.status == "completed", body
    assert run.world.confirmed == ["pm_card_chargeDeclinedInsufficientFunds", "pm_card_visa"]
    assert run.world.completed(coupon=False) == []


async def test_a_new_method_asking_for_3ds_waits_for_the_buyer_then_completes(
    shop: Shop,
) -> None:
    run, _ = await _declined(shop)

    await run.checkouts.retry_payment(run.id, "pm_card_threeDSecure2Required")
    waiting = await run.wait_for("requires_action", "awaiting_payment")
    assert waiting.payment is not None
    assert waiting.payment.next_action is not None
    run.world.approve()
    await run.checkouts.deliver_payment_event(
        run.id,
        PaymentEvent(
            id="evt_ok", type="payment_intent.amount_capturable_updated", intent=run.world.intent_id
        ),
    )
    body = await run.handle.result()

    assert body.status == "completed", body
    assert run.world.completed(coupon=False) == []


async def test_the_payment_window_passing_expires_it_and_releases_everything(
    shop: Shop,
) -> None:
    run, _ = await _declined(shop, payment_timeout_s=120)

    body = await run.handle.result()  # the window's timer falls due in skipped time

    assert body.status == "expired", body
    assert body.failure is not None
    assert body.failure.code == FailureCode.PAYMENT_TIMEOUT
    assert await run.compensations() == undone(5, coupon=False)
    assert run.world.intent == "canceled"  # nobody can confirm the declined intent later
    assert run.world.given_back() == []
    assert await _search_status(run) == "expired"
    with pytest.raises(CheckoutNotRunning):
        await run.checkouts.retry_payment(run.id, "pm_card_visa")


async def test_the_buyers_cancel_while_waiting_releases_everything(shop: Shop) -> None:
    run, _ = await _declined(shop, coupon=True)

    assert await run.checkouts.request_cancel(run.id)
    body = await run.handle.result()

    assert body.status == "cancelled", body
    assert await run.compensations() == undone(5, coupon=True)
    assert run.world.given_back() == []
    assert run.world.confirmed == []


async def test_a_new_method_is_refused_unless_the_checkout_waits_for_one(shop: Shop) -> None:
    run = await shop.start(payment="requires_action", on_decline="retry")
    await run.wait_for("requires_action")

    with pytest.raises(UpdateRefused) as refused:
        await run.checkouts.retry_payment(run.id, "pm_card_visa")

    assert refused.value.code == FailureCode.NOT_AWAITING_PAYMENT_METHOD
    assert run.world.confirmed == []
    await run.checkouts.request_cancel(run.id)
    assert (await run.handle.result()).status == "cancelled"


async def test_declines_are_bounded(shop: Shop) -> None:
    run, _ = await _declined(shop)

    for attempt in range(1, MAX_CONFIRMATIONS + 1):
        await run.checkouts.retry_payment(run.id, "pm_card_chargeDeclined")
        if attempt < MAX_CONFIRMATIONS:
            await _confirmed(run, attempt)
    body = await run.handle.result()

    assert body.status == "failed", body
    assert body.failure is not None
    assert body.failure.code == FailureCode.PAYMENT_DECLINED
    assert len(run.world.confirmed) == MAX_CONFIRMATIONS
    assert run.world.given_back() == []


async def test_by_default_a_decline_still_fails_the_checkout(shop: Shop) -> None:
    run = await shop.start(payment="failed")

    body = await run.handle.result()

    assert body.status == "failed", body
    assert body.failure is not None
    assert body.failure.code == FailureCode.PAYMENT_DECLINED
    assert body.failure.message == "Your card was declined. (card_declined)"
    assert run.world.intent == "failed"  # the default path leaves the declined intent as is
    assert run.world.called(payments.CONFIRM.name) == 0
    assert run.world.given_back() == []
