"""Checkouts that go forward: paid with or without a coupon, each step once, the record exact."""

from __future__ import annotations

import pytest

from activities.payments import contract as payments
from tests.workflows.fast.harness import Shop

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("coupon", [True, False], ids=["coupon", "no-coupon"])
async def test_a_paid_checkout_completes(shop: Shop, coupon: bool) -> None:
    run = await shop.start(coupon=coupon)

    body = await run.handle.result()

    assert (body.status, body.step) == ("completed", "complete"), body
    assert body.failure is None
    assert body.order is not None
    # 2 x 19.99 = 39.98; 10 % off is 4.00 (rounded half-up).
    assert str(body.order.total_amount) == ("35.98" if coupon else "39.98")
    assert body.payment is not None
    assert body.payment.status == "captured"
    assert await run.compensations() == []
    assert run.world.completed(coupon=coupon) == []
    assert run.world.captured == body.order.total_amount
    # Each domain step ran once; nothing was undone.
    steps = [name for name in run.world.calls if not name.startswith("checkout.")]
    assert len(steps) == len(set(steps)), steps
    assert payments.VOID.name not in steps
    assert run.recorded() == body  # the API serves this record
