"""A compensation failing for good: the checkout waits at needs_attention (every other
compensation done), until an operator retries it (after mending the cause) or resolves it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from activities.cart import contract as cart
from activities.coupons import contract as coupons
from activities.inventory import contract as inventory
from activities.orders import contract as orders
from activities.payments import contract as payments
from activities.shared import ActivityName
from activities.shipping import contract as shipping
from tests.workflows.fast.harness import Run, Shop, undone
from tests.workflows.fast.world import Fail
from workflows.checkout.client import UpdateRefused
from workflows.checkout.contract import FailureCode

pytestmark = pytest.mark.timeout(60)

# Each compensation's activity and its name in the saga.
COMPENSATIONS: list[tuple[ActivityName[Any, Any], str]] = [
    (shipping.CANCEL, "cancel_shipment"),
    (payments.VOID, "void_payment"),
    (orders.CANCEL, "cancel_order"),
    (inventory.RELEASE, "release_inventory"),
    (coupons.RELEASE, "release_coupon"),
    (cart.UNLOCK, "unlock_cart"),
]
# The last forward step failing: every compensation is registered by then.
LAST_STEP = {shipping.CREATE.name: Fail(FailureCode.SHIPPING_UNAVAILABLE)}


async def _parked(shop: Shop, undo: ActivityName[Any, Any], times: int | None) -> Run:
    """A checkout whose `undo` fails for good (`times` times) once its shipment failed."""
    refused = Fail(FailureCode.PROVIDER_REFUSED, times=times)
    run = await shop.start(coupon=True, script={**LAST_STEP, undo.name: refused})
    body = await run.ended_or_parked()
    assert (body.status, body.step) == ("processing", "needs_attention"), body
    return run


@pytest.mark.parametrize(("undo", "name"), COMPENSATIONS, ids=[n for _, n in COMPENSATIONS])
async def test_a_failed_compensation_waits_for_the_operators_retry(
    shop: Shop, undo: ActivityName[Any, Any], name: str
) -> None:
    run = await _parked(shop, undo, times=1)

    attention = await run.checkouts.attention(run.id)
    assert attention is not None
    assert [failed.name for failed in attention.failed] == [name]
    others = [n for n in undone(6, coupon=True) if n != name]
    assert await run.compensations() == others  # the others did not wait for it
    assert run.recorded() == await run.status()  # operators see it waiting
    await run.checkouts.retry_compensation(run.id)
    body = await run.handle.result()

    assert (body.status, body.step) == ("failed", "compensating"), body
    assert body.failure is not None
    assert body.failure.code == FailureCode.SHIPPING_UNAVAILABLE
    assert await run.compensations() == [*others, name]
    assert await run.checkouts.attention(run.id) is None
    assert run.world.given_back() == []


async def test_a_retry_failing_again_waits_again_and_a_resolve_ends_it(shop: Shop) -> None:
    run = await _parked(shop, payments.VOID, times=None)

    await run.checkouts.retry_compensation(run.id)
    again = await run.ended_or_parked()
    assert again.step == "needs_attention"
    await run.checkouts.resolve(run.id, "refunded by hand in the provider's dashboard")
    body = await run.handle.result()

    assert (body.status, body.step) == ("failed", "compensating")
    assert "void_payment" not in await run.compensations()
    notes = [getattr(record, "note", None) for record in run.world.records]
    assert "refunded by hand in the provider's dashboard" in notes
    # What the operator settled by hand is all that is left: the captured payment.
    assert run.world.given_back() == [f"captured {run.world.captured} but refunded 0"]


async def test_operators_are_refused_while_a_checkout_does_not_wait_for_them(
    shop: Shop,
) -> None:
    run = await shop.start(payment="requires_action")
    await run.wait_for("requires_action")

    with pytest.raises(UpdateRefused) as retry:
        await run.checkouts.retry_compensation(run.id)
    with pytest.raises(UpdateRefused) as resolve:
        await run.checkouts.resolve(run.id, "nothing to settle")

    assert retry.value.code == resolve.value.code == FailureCode.NOT_WAITING_FOR_OPERATOR
    await run.checkouts.request_cancel(run.id)
    assert (await run.handle.result()).status == "cancelled"


async def test_cancelling_the_run_does_not_end_the_wait_for_an_operator(shop: Shop) -> None:
    run = await _parked(shop, orders.CANCEL, times=1)

    await run.handle.cancel()
    await asyncio.sleep(0.3)
    still = await run.status()
    assert still.step == "needs_attention"
    await run.checkouts.retry_compensation(run.id)
    body = await run.handle.result()

    assert body.status == "failed"
    assert run.world.given_back() == []
