"""Checkouts that go forward: paid, 3-D Secure, async, zero total."""

from __future__ import annotations

import pytest

from tests.workflows.fast.harness import Shop

pytestmark = pytest.mark.timeout(60)


async def test_a_paid_checkout_completes(shop: Shop) -> None:
    run = await shop.start(coupon=True)

    body = await run.handle.result()

    assert body.status == "completed", body
    assert await run.compensations() == []
    assert run.world.completed(coupon=True) == []
    assert run.recorded() == body
